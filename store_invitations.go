package gatehouse

import "time"

// Invitations: an organization's admin invites a person, by user name, to become a member;
// the person becomes one only by accepting. Adding a user who is not the organization's own
// directly would show the organization's admins the user's email and tell them which user
// names exist on the site, so that is left to site administrators (see authz.Person).

// InvitationStatus is where an invitation stands.
type InvitationStatus string

// Invitation statuses. An invitation is pending until it is accepted, declined or revoked;
// a pending invitation past its expiry is expired (StatusAt) and can no longer be accepted.
const (
	InvitationPending  InvitationStatus = "pending"
	InvitationAccepted InvitationStatus = "accepted"
	InvitationDeclined InvitationStatus = "declined"
	InvitationRevoked  InvitationStatus = "revoked"
	InvitationExpired  InvitationStatus = "expired"
)

// DefaultInvitationLifetime is how long an invitation can be accepted unless the inviter
// chooses otherwise.
const DefaultInvitationLifetime = 7 * 24 * time.Hour

// Invitation is an organization's invitation of a user name to become a member with a role.
// It names the user as the inviter typed it; the answer to the inviter says nothing about
// whether such a user exists. It is bound to the user who had the name when it was made
// (UserID): only that user sees and answers it, so an account made later under the name
// (by another organization's admin, say) cannot take it.
type Invitation struct {
	ID       string // assigned by CreateInvitation
	OrgID    int64
	OrgName  string // filled in when read
	UserName string
	// UserID is the invited user's ID; 0 when no user had the name when the invitation was
	// made: such an invitation can never be answered (only revoked or left to expire).
	UserID    int64
	Role      Role
	InvitedBy string // the inviting user's name, or the organization token's name
	Status    InvitationStatus
	Created   time.Time
	Expires   time.Time
	Resolved  time.Time // when it was accepted, declined or revoked; zero while pending
}

// StatusAt is the invitation's status at now: a pending invitation past its expiry is expired.
func (inv *Invitation) StatusAt(now time.Time) InvitationStatus {
	if inv.Status == InvitationPending && !now.Before(inv.Expires) {
		return InvitationExpired
	}
	return inv.Status
}

// InvitationFilter selects invitations, newest first. OrgID or UserID (or both) must be set.
type InvitationFilter struct {
	OrgID  int64
	UserID int64 // the invitations bound to this user (never those of UserID 0)
	// Pending selects only invitations that can still be answered (pending and not expired).
	Pending bool
}

// InvitationTx is the storage of invitations (part of Tx).
type InvitationTx interface {
	// CreateInvitation stores a pending invitation, assigning ID (when empty) and Created.
	// ECONFLICT when the organization has a pending, unexpired invitation for the same user
	// name (an expired one is marked expired and no longer counts).
	CreateInvitation(inv *Invitation) error
	// GetInvitation returns the invitation with this ID; ENOTFOUND when none.
	GetInvitation(id string) (*Invitation, error)
	ListInvitations(f InvitationFilter) ([]Invitation, error)
	// ResolveInvitation ends a pending invitation with status (accepted, declined or revoked)
	// at the transaction's time and returns it. ENOTFOUND when there is no such invitation;
	// ECONFLICT when it is no longer pending, or (for accepted and declined) has expired.
	ResolveInvitation(id string, status InvitationStatus) (*Invitation, error)
}
