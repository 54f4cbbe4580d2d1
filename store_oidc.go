package gatehouse

import "time"

// OIDC token exchange: an organization trusts an OIDC issuer (GitHub Actions, GitLab CI, a
// Kubernetes cluster, ...) and a set of policies over the issuer's claims decides which
// Gatehouse token, if any, a pipeline may get for an ID token of that issuer (RFC 8693).
// Nothing is trusted by default: a new issuer has no policies, and no policy means no token.

// OIDC token types an exchange can issue. The values are Pulumi Cloud's policy tokenType
// names and the last segment of the RFC 8693 requested_token_type
// (urn:pulumi:token-type:access_token:<type>).
const (
	OIDCTokenOrganization = "organization"
	OIDCTokenTeam         = "team"
	OIDCTokenPersonal     = "personal"
)

// OIDC policy decisions.
const (
	OIDCAllow = "allow"
	OIDCDeny  = "deny"
)

// OIDCIssuer is an OIDC issuer an organization trusts.
type OIDCIssuer struct {
	ID    string // assigned by CreateOIDCIssuer
	OrgID int64
	Name  string
	// URL is the issuer identifier: an ID token's iss claim must equal it exactly. Unless JWKS
	// is set, signing keys are discovered from URL + "/.well-known/openid-configuration".
	URL string
	// JWKS is a pinned JSON Web Key Set (closed networks); nil means discovery.
	JWKS []byte
	// Thumbprints are TLS certificate thumbprints as Pulumi Cloud's API accepts them. They
	// are kept and shown but never used: Gatehouse always verifies the issuer's TLS
	// certificate against the system roots (pin a JWKS instead where that is impossible).
	Thumbprints []string
	// MaxExpiration is the longest lifetime of a token issued for this issuer's ID tokens.
	MaxExpiration time.Duration
	Created       time.Time
	Modified      time.Time
	LastUsed      time.Time // zero: never
}

// OIDCPolicy is one rule of an issuer's authorization policy (Pulumi Cloud's
// AuthPolicyDefinition).
type OIDCPolicy struct {
	// Decision is OIDCAllow or OIDCDeny. Deny wins over allow; without an allowing policy
	// the exchange is refused.
	Decision string
	// TokenType is what the policy is about: OIDCTokenOrganization, OIDCTokenTeam or
	// OIDCTokenPersonal. A deny policy may leave it (and TeamName, UserLogin) empty to cover
	// every request whose claims match.
	TokenType string
	TeamName  string // team tokens: the team
	UserLogin string // personal tokens: the user
	// AuthorizedPermissions may hold "admin": an organization token with the admin role may
	// then be issued (when the request's scope is "admin"); otherwise organization tokens get
	// the member role.
	AuthorizedPermissions []string
	// Rules map claim paths (`sub`, `repository_id`, `"kubernetes.io".pod.name`) to patterns
	// (exact, or globs with `*` and `?`); every rule must match.
	Rules map[string]string
	// MaxExpiration caps the lifetime of tokens this policy issues (0: the issuer's cap only).
	MaxExpiration time.Duration
}

// OIDCAuthPolicy is an issuer's authorization policy: the list of its policies, replaced as
// a whole and versioned (Pulumi Cloud's AuthPolicy).
type OIDCAuthPolicy struct {
	ID       string
	OrgID    int64
	IssuerID string
	Version  int
	Policies []OIDCPolicy
	Created  time.Time
	Modified time.Time
}

// OIDCTx is the storage of OIDC issuers and their authorization policies (part of Tx).
// Lookups take the organization so that one organization's issuer is never found through
// another's.
type OIDCTx interface {
	// CreateOIDCIssuer stores a new issuer and its empty (deny-all) authorization policy;
	// it assigns the issuer's ID, Created and Modified. ECONFLICT when the organization
	// already has an issuer with the name or the URL.
	CreateOIDCIssuer(is *OIDCIssuer) error
	GetOIDCIssuer(orgID int64, id string) (*OIDCIssuer, error)
	// GetOIDCIssuerByURL finds the organization's issuer whose URL is exactly url.
	GetOIDCIssuerByURL(orgID int64, url string) (*OIDCIssuer, error)
	ListOIDCIssuers(orgID int64) ([]OIDCIssuer, error)
	// UpdateOIDCIssuer changes the name, JWKS, thumbprints and maximum expiration (the URL
	// never changes) and sets Modified. ECONFLICT when the name is taken.
	UpdateOIDCIssuer(is *OIDCIssuer) error
	// DeleteOIDCIssuer deletes the issuer and its authorization policy.
	DeleteOIDCIssuer(orgID int64, id string) error
	// TouchOIDCIssuer records that the issuer was used for a token exchange.
	TouchOIDCIssuer(id string, at time.Time) error
	// GetOIDCAuthPolicy returns the issuer's authorization policy.
	GetOIDCAuthPolicy(orgID int64, issuerID string) (*OIDCAuthPolicy, error)
	GetOIDCAuthPolicyByID(orgID int64, id string) (*OIDCAuthPolicy, error)
	// PutOIDCAuthPolicy replaces the policies of the authorization policy p.ID, increments
	// its version and sets Modified (p is updated). ENOTFOUND when it does not exist.
	PutOIDCAuthPolicy(p *OIDCAuthPolicy) error

	// ConsumeOIDCToken records that the ID token identified by key (a digest, see
	// oidc.ReplayKey) was exchanged in the organization; the record lasts until expires. It
	// returns false, recording nothing, when the organization holds a record of key that has
	// not expired: the token was exchanged before. Of concurrent callers with one key, in
	// any number of processes, exactly one gets true (the table's primary key decides); the
	// record goes if the transaction rolls back.
	ConsumeOIDCToken(orgID int64, key string, expires time.Time) (bool, error)
	// PruneConsumedOIDCTokens deletes the records ConsumeOIDCToken made that have expired
	// and returns how many.
	PruneConsumedOIDCTokens() (int64, error)
}
