package sqlstore

import (
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// --- SAML sign-in (migration 0020) ---

const samlConfigColumns = `org_id, idp_metadata, metadata_url, entity_id, sso_url, name_id_format, valid_until,
	allow_idp_initiated, email_attribute, name_attribute, groups_attribute, modified_by, created, modified`

func (t *tx) GetSAMLConfig(orgID int64) (*gatehouse.SAMLConfig, error) {
	var c gatehouse.SAMLConfig
	var validUntil, allow, created, modified int64
	err := t.queryRow(`SELECT `+samlConfigColumns+` FROM saml_configs WHERE org_id = ?`, orgID).Scan(
		&c.OrgID, &c.IDPMetadata, &c.MetadataURL, &c.EntityID, &c.SSOURL, &c.NameIDFormat, &validUntil,
		&allow, &c.EmailAttribute, &c.NameAttribute, &c.GroupsAttribute, &c.ModifiedBy, &created, &modified)
	if err != nil {
		return nil, one(err, "the organization has no SAML configuration")
	}
	c.ValidUntil, c.AllowIDPInitiated, c.Created, c.Modified = fromNS(validUntil), allow != 0, fromNS(created), fromNS(modified)
	return &c, nil
}

func (t *tx) PutSAMLConfig(c *gatehouse.SAMLConfig) error {
	if c.IDPMetadata == "" || c.EntityID == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a SAML configuration needs the identity provider's metadata and entity ID")
	}
	_, err := t.exec(`INSERT INTO saml_configs (`+samlConfigColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (org_id) DO UPDATE SET idp_metadata = excluded.idp_metadata, metadata_url = excluded.metadata_url,
			entity_id = excluded.entity_id, sso_url = excluded.sso_url, name_id_format = excluded.name_id_format,
			valid_until = excluded.valid_until, allow_idp_initiated = excluded.allow_idp_initiated,
			email_attribute = excluded.email_attribute, name_attribute = excluded.name_attribute,
			groups_attribute = excluded.groups_attribute, modified_by = excluded.modified_by, modified = excluded.modified`,
		c.OrgID, validText(c.IDPMetadata), validText(c.MetadataURL), validText(c.EntityID), validText(c.SSOURL),
		validText(c.NameIDFormat), ns(c.ValidUntil), b2i(c.AllowIDPInitiated), validText(c.EmailAttribute),
		validText(c.NameAttribute), validText(c.GroupsAttribute), validText(c.ModifiedBy), ns(t.now), ns(t.now))
	if err != nil {
		return err
	}
	if err := t.bump(); err != nil {
		return err
	}
	cur, err := t.GetSAMLConfig(c.OrgID)
	if err != nil {
		return err
	}
	*c = *cur
	return nil
}

func (t *tx) DeleteSAMLConfig(orgID int64) error {
	r, err := t.exec(`DELETE FROM saml_configs WHERE org_id = ?`, orgID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "the organization has no SAML configuration")
	}
	return t.bump()
}

func (t *tx) CreateSAMLRequest(r *gatehouse.SAMLRequest) error {
	if r.ID == "" || r.Expires.IsZero() {
		return gatehouse.Errorf(gatehouse.EINVALID, "a SAML request needs an ID and an expiry")
	}
	_, err := t.exec(`INSERT INTO saml_requests (id, org_id, binding, return_to, expires) VALUES (?, ?, ?, ?, ?)`,
		validText(r.ID), r.OrgID, r.Binding[:], validText(r.ReturnTo), ns(r.Expires))
	return t.conflictOr(err, "a SAML request with this ID exists")
}

func (t *tx) TakeSAMLRequest(orgID int64, id string) (*gatehouse.SAMLRequest, error) {
	r := gatehouse.SAMLRequest{ID: id, OrgID: orgID}
	var binding []byte
	var expires int64
	err := t.queryRow(`SELECT binding, return_to, expires FROM saml_requests WHERE id = ? AND org_id = ?`, validText(id), orgID).
		Scan(&binding, &r.ReturnTo, &expires)
	if err != nil {
		return nil, one(err, "no such SAML request")
	}
	// Deleted whether live or not: a request is answered once. The DELETE decides between
	// two concurrent answers (only one deletes the row).
	res, err := t.exec(`DELETE FROM saml_requests WHERE id = ? AND org_id = ?`, validText(id), orgID)
	if err != nil {
		return nil, err
	}
	if affected(res) == 0 || expires <= ns(t.now) {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such SAML request")
	}
	r.Binding, r.Expires = digestOf(binding), fromNS(expires)
	return &r, nil
}

func (t *tx) ConsumeSAMLAssertion(orgID int64, key string, expires time.Time) (bool, error) {
	if key == "" {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "an accepted assertion needs a key")
	}
	// As ConsumeOIDCToken: one statement, so that of concurrent callers exactly one inserts
	// (or replaces an expired record).
	r, err := t.exec(`INSERT INTO saml_assertions (org_id, assertion_key, expires) VALUES (?, ?, ?)
		ON CONFLICT (org_id, assertion_key) DO UPDATE SET expires = excluded.expires
		WHERE saml_assertions.expires <= ?`,
		orgID, validText(key), ns(expires), ns(t.now))
	if err != nil {
		return false, err
	}
	return affected(r) == 1, nil
}

func (t *tx) PruneSAML() (int64, error) {
	var n int64
	for _, q := range []string{`DELETE FROM saml_requests WHERE expires <= ?`, `DELETE FROM saml_assertions WHERE expires <= ?`} {
		r, err := t.exec(q, ns(t.now))
		if err != nil {
			return 0, err
		}
		n += affected(r)
	}
	return n, nil
}
