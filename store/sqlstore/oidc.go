package sqlstore

import (
	"encoding/json"
	"strings"
	"time"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// OIDC issuers and their authorization policies (migration 0004).

const oidcIssuerCols = `id, org_id, name, url, jwks, thumbprints, max_expiration, created, modified, last_used`

func scanOIDCIssuer(sc interface{ Scan(...any) error }) (*gatehouse.OIDCIssuer, error) {
	var is gatehouse.OIDCIssuer
	var jwks []byte
	var thumbs string
	var maxExp, created, modified, lastUsed int64
	if err := sc.Scan(&is.ID, &is.OrgID, &is.Name, &is.URL, &jwks, &thumbs, &maxExp, &created, &modified, &lastUsed); err != nil {
		return nil, err
	}
	if len(jwks) > 0 {
		is.JWKS = jwks
	}
	if err := json.Unmarshal([]byte(thumbs), &is.Thumbprints); err != nil {
		return nil, dbErr(err)
	}
	is.MaxExpiration = time.Duration(maxExp) * time.Second
	is.Created, is.Modified, is.LastUsed = fromNS(created), fromNS(modified), fromNS(lastUsed)
	return &is, nil
}

func thumbprintsJSON(t []string) string {
	if t == nil {
		t = []string{}
	}
	b, _ := json.Marshal(t)
	return string(b)
}

// nullBlob stores an empty JWKS as NULL (discovery).
func nullBlob(b []byte) any {
	if len(b) == 0 {
		return nil
	}
	return b
}

func (t *tx) CreateOIDCIssuer(is *gatehouse.OIDCIssuer) error {
	if is.ID == "" {
		is.ID = uuid.NewString()
	}
	is.Created, is.Modified = t.now, t.now
	_, err := t.exec(`INSERT INTO oidc_issuers (id, org_id, name, name_key, url, jwks, thumbprints, max_expiration, created, modified, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0)`,
		is.ID, is.OrgID, is.Name, strings.ToLower(is.Name), is.URL, nullBlob(is.JWKS), thumbprintsJSON(is.Thumbprints),
		int64(is.MaxExpiration/time.Second), ns(is.Created), ns(is.Modified))
	if err := t.conflictOr(err, "an OIDC issuer with this name or URL is already registered in the organization"); err != nil {
		return err
	}
	_, err = t.exec(`INSERT INTO oidc_auth_policies (id, org_id, issuer_id, version, policies, created, modified) VALUES (?, ?, ?, 1, '[]', ?, ?)`,
		uuid.NewString(), is.OrgID, is.ID, ns(t.now), ns(t.now))
	return err
}

func (t *tx) GetOIDCIssuer(orgID int64, id string) (*gatehouse.OIDCIssuer, error) {
	is, err := scanOIDCIssuer(t.queryRow(`SELECT `+oidcIssuerCols+` FROM oidc_issuers WHERE org_id = ? AND id = ?`, orgID, id))
	if err != nil {
		return nil, one(err, "OIDC issuer not found")
	}
	return is, nil
}

func (t *tx) GetOIDCIssuerByURL(orgID int64, url string) (*gatehouse.OIDCIssuer, error) {
	is, err := scanOIDCIssuer(t.queryRow(`SELECT `+oidcIssuerCols+` FROM oidc_issuers WHERE org_id = ? AND url = ?`, orgID, url))
	if err != nil {
		return nil, one(err, "OIDC issuer not found")
	}
	return is, nil
}

func (t *tx) ListOIDCIssuers(orgID int64) ([]gatehouse.OIDCIssuer, error) {
	return queryAll(t, scanOIDCIssuer, `SELECT `+oidcIssuerCols+` FROM oidc_issuers WHERE org_id = ? ORDER BY name_key, id`, orgID)
}

func (t *tx) UpdateOIDCIssuer(is *gatehouse.OIDCIssuer) error {
	is.Modified = t.now
	r, err := t.exec(`UPDATE oidc_issuers SET name = ?, name_key = ?, jwks = ?, thumbprints = ?, max_expiration = ?, modified = ? WHERE org_id = ? AND id = ?`,
		is.Name, strings.ToLower(is.Name), nullBlob(is.JWKS), thumbprintsJSON(is.Thumbprints), int64(is.MaxExpiration/time.Second),
		ns(is.Modified), is.OrgID, is.ID)
	if err := t.conflictOr(err, "an OIDC issuer named '"+is.Name+"' is already registered in the organization"); err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "OIDC issuer not found")
	}
	return nil
}

func (t *tx) DeleteOIDCIssuer(orgID int64, id string) error {
	if _, err := t.exec(`DELETE FROM oidc_auth_policies WHERE org_id = ? AND issuer_id = ?`, orgID, id); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM oidc_issuers WHERE org_id = ? AND id = ?`, orgID, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "OIDC issuer not found")
	}
	return nil
}

func (t *tx) TouchOIDCIssuer(id string, at time.Time) error {
	_, err := t.exec(`UPDATE oidc_issuers SET last_used = ? WHERE id = ? AND last_used < ?`, ns(at), id, ns(at))
	return err
}

// oidcPolicyRow is the stored form of one policy (the document is internal to the store).
type oidcPolicyRow struct {
	Decision              string            `json:"decision"`
	TokenType             string            `json:"tokenType,omitempty"`
	TeamName              string            `json:"teamName,omitempty"`
	UserLogin             string            `json:"userLogin,omitempty"`
	AuthorizedPermissions []string          `json:"authorizedPermissions,omitempty"`
	Rules                 map[string]string `json:"rules,omitempty"`
	MaxExpiration         int64             `json:"maxExpiration,omitempty"` // seconds
}

const oidcPolicyCols = `id, org_id, issuer_id, version, policies, created, modified`

func scanOIDCAuthPolicy(sc interface{ Scan(...any) error }) (*gatehouse.OIDCAuthPolicy, error) {
	var p gatehouse.OIDCAuthPolicy
	var doc string
	var version, created, modified int64
	if err := sc.Scan(&p.ID, &p.OrgID, &p.IssuerID, &version, &doc, &created, &modified); err != nil {
		return nil, err
	}
	var rows []oidcPolicyRow
	if err := json.Unmarshal([]byte(doc), &rows); err != nil {
		return nil, dbErr(err)
	}
	p.Policies = make([]gatehouse.OIDCPolicy, len(rows))
	for i, r := range rows {
		p.Policies[i] = gatehouse.OIDCPolicy{
			Decision: r.Decision, TokenType: r.TokenType, TeamName: r.TeamName, UserLogin: r.UserLogin,
			AuthorizedPermissions: r.AuthorizedPermissions, Rules: r.Rules,
			MaxExpiration: time.Duration(r.MaxExpiration) * time.Second,
		}
	}
	p.Version = int(version)
	p.Created, p.Modified = fromNS(created), fromNS(modified)
	return &p, nil
}

func (t *tx) GetOIDCAuthPolicy(orgID int64, issuerID string) (*gatehouse.OIDCAuthPolicy, error) {
	p, err := scanOIDCAuthPolicy(t.queryRow(`SELECT `+oidcPolicyCols+` FROM oidc_auth_policies WHERE org_id = ? AND issuer_id = ?`, orgID, issuerID))
	if err != nil {
		return nil, one(err, "authorization policy not found")
	}
	return p, nil
}

func (t *tx) GetOIDCAuthPolicyByID(orgID int64, id string) (*gatehouse.OIDCAuthPolicy, error) {
	p, err := scanOIDCAuthPolicy(t.queryRow(`SELECT `+oidcPolicyCols+` FROM oidc_auth_policies WHERE org_id = ? AND id = ?`, orgID, id))
	if err != nil {
		return nil, one(err, "authorization policy not found")
	}
	return p, nil
}

func (t *tx) PutOIDCAuthPolicy(p *gatehouse.OIDCAuthPolicy) error {
	rows := make([]oidcPolicyRow, len(p.Policies))
	for i, pol := range p.Policies {
		rows[i] = oidcPolicyRow{
			Decision: pol.Decision, TokenType: pol.TokenType, TeamName: pol.TeamName, UserLogin: pol.UserLogin,
			AuthorizedPermissions: pol.AuthorizedPermissions, Rules: pol.Rules,
			MaxExpiration: int64(pol.MaxExpiration / time.Second),
		}
	}
	doc, err := json.Marshal(rows)
	if err != nil {
		return err
	}
	r, err := t.exec(`UPDATE oidc_auth_policies SET policies = ?, version = version + 1, modified = ? WHERE org_id = ? AND id = ?`,
		string(doc), ns(t.now), p.OrgID, p.ID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "authorization policy not found")
	}
	cur, err := t.GetOIDCAuthPolicyByID(p.OrgID, p.ID)
	if err != nil {
		return err
	}
	*p = *cur
	return nil
}

// --- replay protection (migration 0011) ---

func (t *tx) ConsumeOIDCToken(orgID int64, key string, expires time.Time) (bool, error) {
	if key == "" {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "an exchanged ID token needs a key")
	}
	// One statement: of concurrent callers with one key exactly one inserts (or replaces an
	// expired record); the others find a live record and change nothing (SQLite has one
	// writer; PostgreSQL waits for the first inserter and re-checks the WHERE clause).
	r, err := t.exec(`INSERT INTO oidc_exchanged_tokens (org_id, token_key, expires) VALUES (?, ?, ?)
		ON CONFLICT (org_id, token_key) DO UPDATE SET expires = excluded.expires
		WHERE oidc_exchanged_tokens.expires <= ?`,
		orgID, validText(key), ns(expires), ns(t.now))
	if err != nil {
		return false, err
	}
	return affected(r) == 1, nil
}

func (t *tx) PruneConsumedOIDCTokens() (int64, error) {
	r, err := t.exec(`DELETE FROM oidc_exchanged_tokens WHERE expires <= ?`, ns(t.now))
	if err != nil {
		return 0, err
	}
	return affected(r), nil
}
