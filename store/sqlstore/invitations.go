package sqlstore

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Invitations to join an organization (migrations 0010 and 0017).

const invitationCols = `i.id, i.org_id, o.name, i.user_name, i.user_id, i.role, i.invited_by, i.status, i.created, i.expires, i.resolved`

func scanInvitation(s interface{ Scan(...any) error }) (*gatehouse.Invitation, error) {
	var inv gatehouse.Invitation
	var role, status string
	var created, expires, resolved int64
	if err := s.Scan(&inv.ID, &inv.OrgID, &inv.OrgName, &inv.UserName, &inv.UserID, &role, &inv.InvitedBy, &status, &created, &expires, &resolved); err != nil {
		return nil, err
	}
	inv.Role, inv.Status = gatehouse.Role(role), gatehouse.InvitationStatus(status)
	inv.Created, inv.Expires, inv.Resolved = fromNS(created), fromNS(expires), fromNS(resolved)
	return &inv, nil
}

func (t *tx) CreateInvitation(inv *gatehouse.Invitation) error {
	if inv.UserName == "" || !inv.Role.Valid() || inv.Expires.IsZero() {
		return gatehouse.Errorf(gatehouse.EINVALID, "an invitation needs a user name, a valid role and an expiry")
	}
	if inv.ID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		inv.ID = hex.EncodeToString(b[:])
	}
	key := strings.ToLower(inv.UserName)
	// An expired invitation no longer holds the organization's one pending place for the name.
	if _, err := t.exec(`UPDATE invitations SET status = ?, resolved = expires WHERE org_id = ? AND user_key = ? AND status = ? AND expires <= ?`,
		string(gatehouse.InvitationExpired), inv.OrgID, key, string(gatehouse.InvitationPending), ns(t.now)); err != nil {
		return err
	}
	inv.Created, inv.Status, inv.Resolved = t.now, gatehouse.InvitationPending, time.Time{}
	inv.UserName, inv.InvitedBy = validText(inv.UserName), validText(inv.InvitedBy)
	_, err := t.exec(`INSERT INTO invitations (id, org_id, user_name, user_key, user_id, role, invited_by, status, created, expires) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		inv.ID, inv.OrgID, inv.UserName, key, inv.UserID, string(inv.Role), inv.InvitedBy, string(inv.Status), ns(inv.Created), ns(inv.Expires))
	if err := t.conflictOr(err, "a pending invitation for "+inv.UserName+" already exists: revoke it first"); err != nil {
		return err
	}
	if inv.OrgName == "" {
		o, err := t.GetOrg(inv.OrgID)
		if err != nil {
			return err
		}
		inv.OrgName = o.Name
	}
	return nil
}

func (t *tx) GetInvitation(id string) (*gatehouse.Invitation, error) {
	inv, err := scanInvitation(t.queryRow(`SELECT `+invitationCols+` FROM invitations i JOIN orgs o ON o.id = i.org_id WHERE i.id = ?`, id))
	if err != nil {
		return nil, one(err, "invitation not found")
	}
	return inv, nil
}

func (t *tx) ListInvitations(f gatehouse.InvitationFilter) ([]gatehouse.Invitation, error) {
	if f.OrgID == 0 && f.UserID == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "list invitations of an organization or of a user")
	}
	q := `SELECT ` + invitationCols + ` FROM invitations i JOIN orgs o ON o.id = i.org_id WHERE 1 = 1`
	var args []any
	if f.OrgID != 0 {
		q += ` AND i.org_id = ?`
		args = append(args, f.OrgID)
	}
	if f.UserID != 0 {
		q += ` AND i.user_id = ?`
		args = append(args, f.UserID)
	}
	if f.Pending {
		q += ` AND i.status = ? AND i.expires > ?`
		args = append(args, string(gatehouse.InvitationPending), ns(t.now))
	}
	q += ` ORDER BY i.created DESC, i.id`
	return queryAll(t, scanInvitation, q, args...)
}

func (t *tx) ResolveInvitation(id string, status gatehouse.InvitationStatus) (*gatehouse.Invitation, error) {
	switch status {
	case gatehouse.InvitationAccepted, gatehouse.InvitationDeclined, gatehouse.InvitationRevoked:
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "an invitation is accepted, declined or revoked, not %s", status)
	}
	inv, err := t.GetInvitation(id)
	if err != nil {
		return nil, err
	}
	switch now := inv.StatusAt(t.now); {
	case now == gatehouse.InvitationExpired && status != gatehouse.InvitationRevoked:
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "the invitation expired on %s", inv.Expires.Format(time.RFC3339))
	case inv.Status != gatehouse.InvitationPending:
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "the invitation was already %s", inv.Status)
	}
	// The status condition makes two concurrent answers settle on one.
	r, err := t.exec(`UPDATE invitations SET status = ?, resolved = ? WHERE id = ? AND status = ?`,
		string(status), ns(t.now), id, string(gatehouse.InvitationPending))
	if err != nil {
		return nil, err
	}
	if affected(r) == 0 {
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "the invitation was answered or revoked meanwhile")
	}
	inv.Status, inv.Resolved = status, t.now
	return inv, nil
}
