package sqlstore

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Single sign-on: sessions, linked identities, organization SSO configuration and sign-in
// states (migration 0019).

const sessionCols = `id, digest, user_id, org_id, method, created, last_seen, idle_expires, expires, idp_not_after, csrf, ip, agent, token_id`

func scanSession(s interface{ Scan(...any) error }) (*gatehouse.Session, error) {
	var ss gatehouse.Session
	var digest []byte
	var org sql.NullInt64
	var created, seen, idle, exp, idp int64
	if err := s.Scan(&ss.ID, &digest, &ss.UserID, &org, &ss.Method, &created, &seen, &idle, &exp, &idp, &ss.CSRF, &ss.IP, &ss.Agent, &ss.TokenID); err != nil {
		return nil, err
	}
	ss.Digest = digestOf(digest)
	ss.OrgID = org.Int64
	ss.Created, ss.LastSeen, ss.IdleExpires, ss.Expires, ss.IdPNotAfter = fromNS(created), fromNS(seen), fromNS(idle), fromNS(exp), fromNS(idp)
	return &ss, nil
}

func nullOrg(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func (t *tx) CreateSession(s *gatehouse.Session) error {
	if s.UserID == 0 || s.Method == "" || s.Expires.IsZero() || s.IdleExpires.IsZero() || s.CSRF == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a session needs a user, a method, expiries and a CSRF token")
	}
	if s.ID == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		s.ID = hex.EncodeToString(b[:])
	}
	if s.Created.IsZero() {
		s.Created = t.now
	}
	if s.LastSeen.IsZero() {
		s.LastSeen = s.Created
	}
	if s.IdleExpires.After(s.Expires) {
		s.IdleExpires = s.Expires
	}
	s.IP, s.Agent = validText(s.IP), validText(s.Agent)
	_, err := t.exec(`INSERT INTO sessions (`+sessionCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		s.ID, s.Digest[:], s.UserID, nullOrg(s.OrgID), s.Method, ns(s.Created), ns(s.LastSeen), ns(s.IdleExpires), ns(s.Expires),
		ns(s.IdPNotAfter), s.CSRF, s.IP, s.Agent, validText(s.TokenID))
	return t.conflictOr(err, "the session exists")
}

func (t *tx) GetSessionByDigest(d [32]byte) (*gatehouse.Session, error) {
	s, err := scanSession(t.queryRow(`SELECT `+sessionCols+` FROM sessions WHERE digest = ?`, d[:]))
	if err != nil {
		return nil, one(err, "session not found")
	}
	return s, nil
}

func (t *tx) TouchSession(id string, at, idleExpires time.Time) error {
	r, err := t.exec(`UPDATE sessions SET last_seen = CASE WHEN last_seen < ? THEN ? ELSE last_seen END,
		idle_expires = CASE WHEN ? < expires THEN ? ELSE expires END WHERE id = ?`,
		ns(at), ns(at), ns(idleExpires), ns(idleExpires), id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "session not found")
	}
	return nil
}

func (t *tx) DeleteSession(id string) error {
	r, err := t.exec(`DELETE FROM sessions WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "session not found")
	}
	return nil
}

func (t *tx) DeleteUserSessions(userID, orgID int64) (int, error) {
	var r sql.Result
	var err error
	if orgID == 0 {
		r, err = t.exec(`DELETE FROM sessions WHERE user_id = ?`, userID)
	} else {
		r, err = t.exec(`DELETE FROM sessions WHERE user_id = ? AND org_id = ?`, userID, orgID)
	}
	if err != nil {
		return 0, err
	}
	return int(affected(r)), nil
}

func (t *tx) ListUserSessions(userID int64) ([]gatehouse.Session, error) {
	return queryAll(t, scanSession, `SELECT `+sessionCols+` FROM sessions WHERE user_id = ? ORDER BY created DESC, id`, userID)
}

func (t *tx) PruneSessions(now time.Time) (int64, error) {
	n := ns(now)
	r, err := t.exec(`DELETE FROM sessions WHERE expires <= ? OR idle_expires <= ? OR (idp_not_after <> 0 AND idp_not_after <= ?)`, n, n, n)
	if err != nil {
		return 0, err
	}
	r2, err := t.exec(`DELETE FROM sso_states WHERE expires <= ?`, n)
	if err != nil {
		return 0, err
	}
	return affected(r) + affected(r2), nil
}

const identityCols = `issuer, subject, user_id, org_id, provider, email, created, last_login`

func scanIdentity(s interface{ Scan(...any) error }) (*gatehouse.UserIdentity, error) {
	var id gatehouse.UserIdentity
	var created, last int64
	if err := s.Scan(&id.Issuer, &id.Subject, &id.UserID, &id.OrgID, &id.Provider, &id.Email, &created, &last); err != nil {
		return nil, err
	}
	id.Created, id.LastLogin = fromNS(created), fromNS(last)
	return &id, nil
}

func (t *tx) GetIdentity(issuer, subject string) (*gatehouse.UserIdentity, error) {
	id, err := scanIdentity(t.queryRow(`SELECT `+identityCols+` FROM user_identities WHERE issuer = ? AND subject = ?`, issuer, subject))
	if err != nil {
		return nil, one(err, "identity not linked")
	}
	return id, nil
}

func (t *tx) PutIdentity(id *gatehouse.UserIdentity) error {
	if id.Issuer == "" || id.Subject == "" || id.UserID == 0 || id.Provider == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "an identity needs an issuer, a subject, a user and a provider")
	}
	id.Issuer, id.Subject, id.Email = validText(id.Issuer), validText(id.Subject), validText(id.Email)
	old, err := t.GetIdentity(id.Issuer, id.Subject)
	switch {
	case err == nil && old.UserID != id.UserID:
		return gatehouse.Errorf(gatehouse.ECONFLICT, "this identity is linked to another account")
	case err == nil:
		id.Created = old.Created
		_, err = t.exec(`UPDATE user_identities SET email = ?, last_login = ? WHERE issuer = ? AND subject = ?`,
			id.Email, ns(id.LastLogin), id.Issuer, id.Subject)
		return err
	case !isNotFound(err):
		return err
	}
	if id.Created.IsZero() {
		id.Created = t.now
	}
	if err := t.bump(); err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO user_identities (`+identityCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		id.Issuer, id.Subject, id.UserID, id.OrgID, id.Provider, id.Email, ns(id.Created), ns(id.LastLogin))
	return t.conflictOr(err, "this identity is linked to another account")
}

func (t *tx) ListUserIdentities(userID int64) ([]gatehouse.UserIdentity, error) {
	return queryAll(t, scanIdentity, `SELECT `+identityCols+` FROM user_identities WHERE user_id = ? ORDER BY created, issuer, subject`, userID)
}

func (t *tx) DeleteIdentity(issuer, subject string) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM user_identities WHERE issuer = ? AND subject = ?`, issuer, subject)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "identity not linked")
	}
	return nil
}

func (t *tx) GetOrgSSO(orgID int64) (*gatehouse.OrgSSO, error) {
	var config string
	var modified int64
	if err := t.queryRow(`SELECT config, modified FROM org_sso WHERE org_id = ?`, orgID).Scan(&config, &modified); err != nil {
		return nil, one(err, "the organization has no single sign-on configuration")
	}
	var c gatehouse.OrgSSO
	if err := json.Unmarshal([]byte(config), &c); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored SSO configuration")
	}
	c.OrgID, c.Modified = orgID, fromNS(modified)
	return &c, nil
}

func (t *tx) PutOrgSSO(c *gatehouse.OrgSSO) error {
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if err := t.bump(); err != nil {
		return err
	}
	c.Modified = t.now
	_, err = t.exec(`INSERT INTO org_sso (org_id, config, modified) VALUES (?, ?, ?)
		ON CONFLICT (org_id) DO UPDATE SET config = excluded.config, modified = excluded.modified`, c.OrgID, string(b), ns(c.Modified))
	return t.wrap(err)
}

func (t *tx) PutSSOState(s *gatehouse.SSOState) error {
	if s.Expires.IsZero() || s.Kind == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a sign-in state needs a kind and an expiry")
	}
	data := s.Data
	if data == nil {
		data = []byte{}
	}
	_, err := t.exec(`INSERT INTO sso_states (digest, org_id, kind, data, expires) VALUES (?, ?, ?, ?, ?)`,
		s.Digest[:], s.OrgID, s.Kind, data, ns(s.Expires))
	return t.conflictOr(err, "the sign-in state exists")
}

func (t *tx) TakeSSOState(d [32]byte) (*gatehouse.SSOState, error) {
	var s gatehouse.SSOState
	var exp int64
	err := t.queryRow(`SELECT org_id, kind, data, expires FROM sso_states WHERE digest = ?`, d[:]).Scan(&s.OrgID, &s.Kind, &s.Data, &exp)
	if err != nil {
		return nil, one(err, "unknown or used sign-in state")
	}
	r, err := t.exec(`DELETE FROM sso_states WHERE digest = ?`, d[:])
	if err != nil {
		return nil, err
	}
	if affected(r) == 0 { // taken by a concurrent transaction
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "unknown or used sign-in state")
	}
	s.Digest, s.Expires = d, fromNS(exp)
	if !t.now.Before(s.Expires) {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "the sign-in state has expired")
	}
	return &s, nil
}
