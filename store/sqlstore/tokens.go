package sqlstore

import (
	"context"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

const tokenCols = `id, kind, digest, name, description, user_id, org_id, team_id, role, pipeline, created_by, created, expires, revoked, last_used, last_ip, last_agent, issuer`

func scanToken(s interface{ Scan(...any) error }) (*gatehouse.Token, error) {
	var tk gatehouse.Token
	var kind, role string
	var digest []byte
	var pipeline, created, expires, revoked, lastUsed int64
	if err := s.Scan(&tk.ID, &kind, &digest, &tk.Name, &tk.Description, &tk.UserID, &tk.OrgID, &tk.TeamID, &role,
		&pipeline, &tk.CreatedBy, &created, &expires, &revoked, &lastUsed, &tk.LastIP, &tk.LastAgent, &tk.Issuer); err != nil {
		return nil, err
	}
	tk.Kind = gatehouse.TokenKind(kind)
	tk.Digest = digestOf(digest)
	tk.Role = gatehouse.Role(role)
	tk.Pipeline = pipeline != 0
	tk.Created = fromNS(created)
	tk.Expires = fromNS(expires)
	tk.Revoked = fromNS(revoked)
	tk.LastUsed = fromNS(lastUsed)
	return &tk, nil
}

// tokenScope is the name space a token's name is unique in: a user's personal tokens, or
// an organization's team and organization tokens together.
func tokenScope(tk *gatehouse.Token) string {
	if tk.Kind == gatehouse.TokenPersonal {
		return "u:" + strconv.FormatInt(tk.UserID, 10)
	}
	return "o:" + strconv.FormatInt(tk.OrgID, 10)
}

func (t *tx) CreateToken(tk *gatehouse.Token) error {
	if tk.Created.IsZero() {
		tk.Created = t.now
	}
	_, err := t.exec(`INSERT INTO tokens (`+tokenCols+`, scope) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		tk.ID, string(tk.Kind), tk.Digest[:], tk.Name, tk.Description, tk.UserID, tk.OrgID, tk.TeamID, string(tk.Role),
		b2i(tk.Pipeline), tk.CreatedBy, ns(tk.Created), ns(tk.Expires), ns(tk.Revoked), ns(tk.LastUsed), tk.LastIP, tk.LastAgent, tk.Issuer,
		tokenScope(tk))
	return t.conflictOr(err, "a token named '"+tk.Name+"' exists or existed in this scope; token names are never reused")
}

func (t *tx) GetToken(id string) (*gatehouse.Token, error) {
	tk, err := scanToken(t.queryRow(`SELECT `+tokenCols+` FROM tokens WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "token not found")
	}
	return tk, nil
}

func (t *tx) GetTokenByDigest(d [32]byte) (*gatehouse.Token, error) {
	tk, err := scanToken(t.queryRow(`SELECT `+tokenCols+` FROM tokens WHERE digest = ?`, d[:]))
	if err != nil {
		return nil, one(err, "token not found")
	}
	return tk, nil
}

func (t *tx) ListTokens(f gatehouse.TokenFilter) ([]gatehouse.Token, error) {
	var where []string
	var args []any
	if f.Kind != "" {
		where, args = append(where, "kind = ?"), append(args, string(f.Kind))
	}
	if f.UserID != 0 {
		where, args = append(where, "user_id = ?"), append(args, f.UserID)
	}
	if f.OrgID != 0 {
		where, args = append(where, "org_id = ?"), append(args, f.OrgID)
	}
	if f.TeamID != 0 {
		where, args = append(where, "team_id = ?"), append(args, f.TeamID)
	}
	if !f.IncludeRevoked {
		// Not revoked yet: a token in its rotation grace period (revoked in the future) is
		// still live and is listed.
		where, args = append(where, "(revoked = 0 OR revoked > ?)"), append(args, ns(t.now))
	}
	q := `SELECT ` + tokenCols + ` FROM tokens`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	return queryAll(t, scanToken, q+" ORDER BY created, id", args...)
}

func (t *tx) RevokeToken(id string, at time.Time) error {
	if err := t.bump(); err != nil {
		return err
	}
	// A token already revoked earlier keeps its first revocation time; a later time (a
	// rotation grace period) is shortened, never extended.
	r, err := t.exec(`UPDATE tokens SET revoked = ? WHERE id = ? AND (revoked = 0 OR revoked > ?)`, ns(at), id, ns(at))
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		if _, err := t.GetToken(id); err != nil {
			return err
		}
	}
	// Browser sessions the token signed in end with it (at the same time: a rotation's
	// grace period covers them too).
	_, err = t.exec(`UPDATE sessions SET expires = ? WHERE token_id = ? AND expires > ?`, ns(at), id, ns(at))
	return err
}

// TouchTokens records last-used facts in one transaction; it never moves last_used back.
func (db *DB) TouchTokens(ctx context.Context, uses []gatehouse.TokenUse) error {
	if len(uses) == 0 {
		return nil
	}
	return db.Update(ctx, func(gtx gatehouse.Tx) error {
		t := gtx.(*tx)
		for _, u := range uses {
			if _, err := t.exec(`UPDATE tokens SET last_used = ?, last_ip = ?, last_agent = ? WHERE id = ? AND last_used < ?`,
				ns(u.At), validText(u.IP), validText(u.Agent), u.TokenID, ns(u.At)); err != nil {
				return err
			}
		}
		return nil
	})
}
