package gatehouse

import "time"

// SCIM 2.0 provisioning (package scim): each organization's SCIM token, the people the
// organization's identity provider provisioned (with the SCIM attributes Gatehouse keeps)
// and the teams it manages.

// SCIMToken is an organization's SCIM bearer token: one per organization, its value shown
// once and stored only as a digest.
type SCIMToken struct {
	OrgID     int64
	ID        string // random, not secret (audit)
	Digest    [32]byte
	CreatedBy string
	Created   time.Time
}

// SCIMUser is a person provisioned into an organization by its identity provider. The
// account is the User (its name is a Gatehouse login derived from UserName); UserName,
// the names and the active flag are the SCIM resource's.
type SCIMUser struct {
	OrgID  int64
	UserID int64
	// UserName is the SCIM userName (immutable once created), unique in the organization
	// regardless of case.
	UserName    string
	ExternalID  string
	GivenName   string
	FamilyName  string
	DisplayName string
	// Email is the account's email (User.Email), filled in by the store on reads.
	Email  string
	Active bool
	// Role is the organization role the person had when deprovisioned, restored on
	// reactivation ("" while active: the membership holds the role).
	Role     Role
	Created  time.Time
	Modified time.Time
}

// SCIMUserFilter selects an organization's provisioned people.
type SCIMUserFilter struct {
	UserName string // "" for all; matched regardless of case
	// Offset and Limit page the list (ordered by user ID); Limit 0 returns none.
	Offset, Limit int
}

// SCIMTx is the SCIM part of Tx.
type SCIMTx interface {
	// PutSCIMToken sets the organization's SCIM token, replacing (and so ending) any
	// earlier one; it bumps the security epoch.
	PutSCIMToken(t *SCIMToken) error
	// GetSCIMToken returns the organization's token; ENOTFOUND when it has none.
	GetSCIMToken(orgID int64) (*SCIMToken, error)
	// GetSCIMTokenByDigest finds a SCIM token by its digest (a leaked value); ENOTFOUND
	// when it is no organization's current token.
	GetSCIMTokenByDigest(d [32]byte) (*SCIMToken, error)
	// DeleteSCIMToken ends the organization's SCIM token (a leak) and bumps the security
	// epoch; ENOTFOUND when it has none.
	DeleteSCIMToken(orgID int64) error

	// CreateSCIMUser records a provisioned person; ECONFLICT when the user name is taken
	// in the organization or the user is provisioned there already.
	CreateSCIMUser(u *SCIMUser) error
	// GetSCIMUser returns the record of userID in orgID; ENOTFOUND when not provisioned.
	GetSCIMUser(orgID, userID int64) (*SCIMUser, error)
	// ListSCIMUsers returns the selected records and how many match in all.
	ListSCIMUsers(orgID int64, f SCIMUserFilter) ([]SCIMUser, int, error)
	// UpdateSCIMUser stores the record's names, external ID, active flag and saved role
	// (never the user name); ENOTFOUND when not provisioned.
	UpdateSCIMUser(u *SCIMUser) error
	// DeleteSCIMUser forgets the record (the account stays); ENOTFOUND when none.
	DeleteSCIMUser(orgID, userID int64) error
	// FindUsersByEmail returns the accounts whose email is email (regardless of case).
	FindUsersByEmail(email string) ([]User, error)
	// SetUserEmail changes an account's email; ENOTFOUND for an unknown user.
	SetUserEmail(userID int64, email string) error

	// MarkSCIMTeam records that the identity provider manages the team (its members and
	// name are then read-only through the other APIs); it bumps the security epoch.
	MarkSCIMTeam(orgID, teamID int64) error
	// ReleaseSCIMTeam ends the identity provider's management of a team (an admin's
	// decision: the team is an ordinary team again, and SCIM can no longer change it); it
	// bumps the security epoch. ENOTFOUND when the team is not managed.
	ReleaseSCIMTeam(teamID int64) error
	// IsSCIMTeam reports whether the identity provider manages the team.
	IsSCIMTeam(teamID int64) (bool, error)
	// TouchSCIMTeam records a change of a managed team at the transaction's time (it also
	// makes concurrent changes of one team conflict and retry rather than interleave).
	TouchSCIMTeam(teamID int64) error
	// SCIMTeamTimes returns when a managed team was created and last changed.
	SCIMTeamTimes(teamID int64) (created, modified time.Time, err error)
}
