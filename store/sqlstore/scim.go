package sqlstore

import (
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// --- SCIM provisioning (store_scim.go) ---

func (t *tx) PutSCIMToken(st *gatehouse.SCIMToken) error {
	if err := t.bump(); err != nil {
		return err
	}
	if st.Created.IsZero() {
		st.Created = t.now
	}
	if _, err := t.exec(`DELETE FROM scim_tokens WHERE org_id = ?`, st.OrgID); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO scim_tokens (org_id, id, digest, created_by, created) VALUES (?, ?, ?, ?, ?)`,
		st.OrgID, st.ID, st.Digest[:], st.CreatedBy, ns(st.Created))
	return t.conflictOr(err, "SCIM token digest collision")
}

func (t *tx) GetSCIMToken(orgID int64) (*gatehouse.SCIMToken, error) {
	return t.scimToken(`org_id = ?`, orgID)
}

func (t *tx) GetSCIMTokenByDigest(d [32]byte) (*gatehouse.SCIMToken, error) {
	return t.scimToken(`digest = ?`, d[:])
}

func (t *tx) scimToken(where string, arg any) (*gatehouse.SCIMToken, error) {
	var st gatehouse.SCIMToken
	var digest []byte
	var created int64
	err := t.queryRow(`SELECT org_id, id, digest, created_by, created FROM scim_tokens WHERE `+where, arg).
		Scan(&st.OrgID, &st.ID, &digest, &st.CreatedBy, &created)
	if err != nil {
		return nil, one(err, "no such SCIM token")
	}
	st.Digest, st.Created = digestOf(digest), fromNS(created)
	return &st, nil
}

func (t *tx) DeleteSCIMToken(orgID int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM scim_tokens WHERE org_id = ?`, orgID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "no such SCIM token")
	}
	return nil
}

const scimUserCols = `s.org_id, s.user_id, s.user_name, s.external_id, s.given_name, s.family_name, s.display_name, u.email, s.active, s.saved_role, s.created, s.modified`

func scanSCIMUser(sc interface{ Scan(...any) error }) (*gatehouse.SCIMUser, error) {
	var u gatehouse.SCIMUser
	var active, created, modified int64
	var role string
	if err := sc.Scan(&u.OrgID, &u.UserID, &u.UserName, &u.ExternalID, &u.GivenName, &u.FamilyName, &u.DisplayName, &u.Email,
		&active, &role, &created, &modified); err != nil {
		return nil, err
	}
	u.Active, u.Role = active != 0, gatehouse.Role(role)
	u.Created, u.Modified = fromNS(created), fromNS(modified)
	return &u, nil
}

func (t *tx) CreateSCIMUser(u *gatehouse.SCIMUser) error {
	if u.Created.IsZero() {
		u.Created = t.now
	}
	u.Modified = u.Created
	_, err := t.exec(`INSERT INTO scim_users (org_id, user_id, user_name, user_name_key, external_id, given_name, family_name, display_name, active, saved_role, created, modified)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.OrgID, u.UserID, u.UserName, strings.ToLower(u.UserName), u.ExternalID, u.GivenName, u.FamilyName, u.DisplayName,
		b2i(u.Active), string(u.Role), ns(u.Created), ns(u.Modified))
	return t.conflictOr(err, "User with userName "+u.UserName+" already exists.")
}

func (t *tx) GetSCIMUser(orgID, userID int64) (*gatehouse.SCIMUser, error) {
	u, err := scanSCIMUser(t.queryRow(`SELECT `+scimUserCols+` FROM scim_users s JOIN users u ON u.id = s.user_id WHERE s.org_id = ? AND s.user_id = ?`, orgID, userID))
	if err != nil {
		return nil, one(err, "user not provisioned")
	}
	return u, nil
}

func (t *tx) ListSCIMUsers(orgID int64, f gatehouse.SCIMUserFilter) ([]gatehouse.SCIMUser, int, error) {
	where, args := `s.org_id = ?`, []any{orgID}
	if f.UserName != "" {
		where, args = where+` AND s.user_name_key = ?`, append(args, strings.ToLower(f.UserName))
	}
	var total int
	if err := t.queryRow(`SELECT COUNT(*) FROM scim_users s WHERE `+where, args...).Scan(&total); err != nil {
		return nil, 0, dbErr(err)
	}
	if f.Limit <= 0 {
		return nil, total, nil
	}
	out, err := queryAll(t, scanSCIMUser, `SELECT `+scimUserCols+` FROM scim_users s JOIN users u ON u.id = s.user_id WHERE `+where+
		` ORDER BY s.user_id LIMIT ? OFFSET ?`, append(args, f.Limit, max(f.Offset, 0))...)
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

func (t *tx) UpdateSCIMUser(u *gatehouse.SCIMUser) error {
	u.Modified = t.now
	r, err := t.exec(`UPDATE scim_users SET external_id = ?, given_name = ?, family_name = ?, display_name = ?, active = ?, saved_role = ?, modified = ?
		WHERE org_id = ? AND user_id = ?`,
		u.ExternalID, u.GivenName, u.FamilyName, u.DisplayName, b2i(u.Active), string(u.Role), ns(u.Modified), u.OrgID, u.UserID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "user not provisioned")
	}
	return nil
}

func (t *tx) DeleteSCIMUser(orgID, userID int64) error {
	r, err := t.exec(`DELETE FROM scim_users WHERE org_id = ? AND user_id = ?`, orgID, userID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "user not provisioned")
	}
	return nil
}

func (t *tx) FindUsersByEmail(email string) ([]gatehouse.User, error) {
	if email == "" {
		return nil, nil
	}
	return queryAll(t, scanUser, `SELECT `+userCols+` FROM users WHERE LOWER(email) = ? ORDER BY id`, strings.ToLower(email))
}

func (t *tx) SetUserEmail(userID int64, email string) error {
	r, err := t.exec(`UPDATE users SET email = ? WHERE id = ?`, email, userID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "user not found")
	}
	return nil
}

func (t *tx) MarkSCIMTeam(orgID, teamID int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO scim_teams (team_id, org_id, created, modified) VALUES (?, ?, ?, ?)`, teamID, orgID, ns(t.now), ns(t.now))
	return t.conflictOr(err, "the team is managed by SCIM already")
}

func (t *tx) ReleaseSCIMTeam(teamID int64) error {
	res, err := t.exec(`DELETE FROM scim_teams WHERE team_id = ?`, teamID)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil {
		return dbErr(err)
	} else if n == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "the team is not managed by SCIM")
	}
	return t.bump()
}

func (t *tx) IsSCIMTeam(teamID int64) (bool, error) {
	var n int
	if err := t.queryRow(`SELECT COUNT(*) FROM scim_teams WHERE team_id = ?`, teamID).Scan(&n); err != nil {
		return false, dbErr(err)
	}
	return n > 0, nil
}

func (t *tx) TouchSCIMTeam(teamID int64) error {
	_, err := t.exec(`UPDATE scim_teams SET modified = ? WHERE team_id = ?`, ns(t.now), teamID)
	return err
}

func (t *tx) SCIMTeamTimes(teamID int64) (created, modified time.Time, err error) {
	var c, m int64
	if err := t.queryRow(`SELECT created, modified FROM scim_teams WHERE team_id = ?`, teamID).Scan(&c, &m); err != nil {
		return time.Time{}, time.Time{}, one(err, "the team is not managed by SCIM")
	}
	return fromNS(c), fromNS(m), nil
}
