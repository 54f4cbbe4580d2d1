package gatehouse

import "time"

// SAML 2.0 sign-in: an organization trusts one SAML identity provider (Okta, Entra ID, ...)
// whose metadata an administrator saved; Gatehouse is the service provider (package sso).

// SAMLConfig is an organization's SAML identity provider, with the facts validated from
// its metadata when it was saved.
type SAMLConfig struct {
	OrgID int64
	// IDPMetadata is the identity provider's metadata XML (an EntityDescriptor), as given
	// or as fetched from MetadataURL.
	IDPMetadata string
	// MetadataURL is where IDPMetadata was fetched from; "" when it was pasted.
	MetadataURL  string
	EntityID     string // the identity provider's entity ID
	SSOURL       string // its SingleSignOnService location
	NameIDFormat string
	// ValidUntil is the earliest expiry of the identity provider's signing certificates.
	ValidUntil time.Time
	// AllowIDPInitiated accepts sign-ins the identity provider starts (a tile in Okta's or
	// Entra's app list), which answer no request of Gatehouse's.
	AllowIDPInitiated bool
	// Attribute names of the email, display name and groups in assertions; "" for the
	// defaults (see package sso).
	EmailAttribute  string
	NameAttribute   string
	GroupsAttribute string
	ModifiedBy      string
	Created         time.Time
	Modified        time.Time
}

// SAMLRequest is an AuthnRequest Gatehouse sent (an SP-initiated sign-in), kept until its
// answer arrives or it expires.
type SAMLRequest struct {
	ID    string // the AuthnRequest's ID
	OrgID int64
	// Binding is the SHA-256 of a random value kept in the cookie of the browser that
	// started the sign-in: only that browser can finish it.
	Binding  [32]byte
	ReturnTo string // where the person goes after signing in (a path), "" for the default
	Expires  time.Time
}

// SAMLTx is the storage of SAML sign-in.
type SAMLTx interface {
	// GetSAMLConfig returns the organization's SAML configuration; ENOTFOUND when none.
	GetSAMLConfig(orgID int64) (*SAMLConfig, error)
	// PutSAMLConfig creates or replaces the organization's SAML configuration (Created is
	// kept on replacement) and bumps the security epoch.
	PutSAMLConfig(c *SAMLConfig) error
	// DeleteSAMLConfig removes it (ENOTFOUND when none) and bumps the security epoch.
	DeleteSAMLConfig(orgID int64) error

	// CreateSAMLRequest records an AuthnRequest (ECONFLICT when its ID is taken).
	CreateSAMLRequest(r *SAMLRequest) error
	// TakeSAMLRequest returns and deletes the organization's live request id; ENOTFOUND
	// when there is none (unknown, taken already, another organization's, or expired).
	TakeSAMLRequest(orgID int64, id string) (*SAMLRequest, error)

	// ConsumeSAMLAssertion records an accepted assertion's key until expires. It returns
	// false when a live record of the key exists already (a replay); of concurrent callers
	// with one key exactly one gets true, across processes.
	ConsumeSAMLAssertion(orgID int64, key string, expires time.Time) (bool, error)
	// PruneSAML deletes expired requests and assertion records and returns how many.
	PruneSAML() (int64, error)
}
