package gatehouse

import "time"

// Single sign-on for people (package sso): server-side browser sessions, the identities
// (issuer, subject) linked to users, each organization's SSO configuration, and the
// short-lived state of sign-ins in progress (OIDC state, nonce and PKCE verifier).

// Sign-in methods: how a session was started.
const (
	SignInOIDC   = "oidc"
	SignInGitHub = "github"
	SignInSAML   = "saml"
	// SignInToken is a sign-in with an access token pasted into the sign-in form (the
	// break-glass path of an organization that requires SSO).
	SignInToken = "token"
)

// Session is a person's browser session. Its secret value (the cookie) is never stored,
// only its digest.
type Session struct {
	ID     string // random, not secret (audit, listings); assigned by CreateSession when empty
	Digest [32]byte
	UserID int64
	// OrgID is the organization whose sign-in (SSO configuration) started the session; 0
	// when none (a token sign-in, or an identity provider of the site).
	OrgID    int64
	Method   string // SignIn*
	Created  time.Time
	LastSeen time.Time
	// IdleExpires is when the session ends unless it is used (moved forward by
	// TouchSession); Expires is when it ends regardless (absolute lifetime).
	IdleExpires time.Time
	Expires     time.Time
	// IdPNotAfter is the identity provider's SessionNotOnOrAfter (zero: none).
	IdPNotAfter time.Time
	// CSRF is the session's synchronizer token: every state-changing request made with the
	// session's cookie must carry it (header X-Gatehouse-CSRF or form field csrf).
	CSRF  string
	IP    string
	Agent string
	// TokenID is the access token that proved a token sign-in ("" otherwise): revoking
	// the token ends the session (RevokeToken), as its expiry does.
	TokenID string
}

// Live reports whether the session is usable at now.
func (s *Session) Live(now time.Time) bool {
	if !now.Before(s.IdleExpires) || !now.Before(s.Expires) {
		return false
	}
	return s.IdPNotAfter.IsZero() || now.Before(s.IdPNotAfter)
}

// UserIdentity is an identity at an identity provider linked to a user: users are found
// by (Issuer, Subject), never by email alone.
type UserIdentity struct {
	Issuer    string
	Subject   string
	UserID    int64
	OrgID     int64  // the organization whose configuration linked it (0: none)
	Provider  string // SignInOIDC, SignInGitHub, SignInSAML
	Email     string // as last asserted (verified only)
	Created   time.Time
	LastLogin time.Time
}

// OrgSSO is an organization's single sign-on configuration and policy. Secrets (client
// secrets) are kept sealed by the keyring's envelope; the store never sees them in the
// clear.
type OrgSSO struct {
	OrgID int64
	// Methods are the sign-in methods the organization accepts for its members: any of
	// SignInOIDC, SignInGitHub, SignInSAML, SignInToken. Empty: every configured one.
	Methods []string `json:"methods,omitempty"`
	// Required: members get personal tokens only through an SSO sign-in of this
	// organization; the break-glass admins keep the token sign-in.
	Required   bool    `json:"required,omitempty"`
	BreakGlass []int64 `json:"breakGlass,omitempty"` // user IDs
	// JITRole is the role of people the identity provider sends who are not members yet
	// (just-in-time membership); "" refuses them.
	JITRole Role `json:"jitRole,omitempty"`
	// GroupTeams maps identity-provider group names to team names: when not empty, every
	// sign-in makes the person a member of exactly the mapped teams whose group they are in
	// (teams not in the map are left alone).
	GroupTeams map[string]string `json:"groupTeams,omitempty"`

	OIDC   *OIDCSSO   `json:"oidc,omitempty"`
	GitHub *GitHubSSO `json:"github,omitempty"`

	Modified time.Time `json:"-"`
}

// OIDCSSO is an organization's OpenID Connect sign-in (Okta, Entra ID, Google, GitLab,
// Keycloak, Dex, ...).
type OIDCSSO struct {
	Issuer   string `json:"issuer"`
	ClientID string `json:"clientId"`
	// ClientSecret is the sealed client secret (keyring envelope); never returned by the API.
	ClientSecret []byte   `json:"clientSecret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`      // besides openid; default email profile
	GroupsClaim  string   `json:"groupsClaim,omitempty"` // default "groups"
}

// GitHubSSO is an organization's GitHub sign-in (GitHub's OAuth apps, not OIDC).
type GitHubSSO struct {
	ClientID     string `json:"clientId"`
	ClientSecret []byte `json:"clientSecret,omitempty"` // sealed
	// WebURL and APIURL are github.com's by default; GitHub Enterprise Server uses
	// https://HOST and https://HOST/api/v3.
	WebURL string `json:"webUrl,omitempty"`
	APIURL string `json:"apiUrl,omitempty"`
	// RequiredOrg, when set, admits only members of that GitHub organization.
	RequiredOrg string `json:"requiredOrg,omitempty"`
}

// SSOState is the server-side state of a sign-in in progress, found by the digest of the
// random state value sent through the browser; it is taken (deleted) once.
type SSOState struct {
	Digest  [32]byte
	OrgID   int64
	Kind    string // SignIn*
	Data    []byte // the flow's own facts (nonce, PKCE verifier, return URL), JSON
	Expires time.Time
}

// SSOTx is the single sign-on part of Tx.
type SSOTx interface {
	// CreateSession stores a new session (ID assigned when empty; Created and LastSeen
	// default to the transaction's time).
	CreateSession(s *Session) error
	// GetSessionByDigest finds a session by its digest, live or not (the caller checks
	// Live); ENOTFOUND when there is none.
	GetSessionByDigest(d [32]byte) (*Session, error)
	// TouchSession records a use at at and moves the idle expiry to idleExpires (never
	// past the absolute expiry); ENOTFOUND when the session is gone.
	TouchSession(id string, at, idleExpires time.Time) error
	// DeleteSession ends one session; ENOTFOUND when there is none.
	DeleteSession(id string) error
	// DeleteUserSessions ends every session of the user (orgID 0), or those started by
	// orgID's sign-in; it returns how many it ended.
	DeleteUserSessions(userID, orgID int64) (int, error)
	// ListUserSessions returns the user's sessions (live or not), newest first.
	ListUserSessions(userID int64) ([]Session, error)
	// PruneSessions deletes the sessions that ended before now and the expired sign-in
	// states; it returns how many rows it deleted.
	PruneSessions(now time.Time) (int64, error)

	// GetIdentity finds the identity (issuer, subject); ENOTFOUND when unlinked.
	GetIdentity(issuer, subject string) (*UserIdentity, error)
	// PutIdentity links an identity to a user, or records a new sign-in of a linked one
	// (LastLogin, Email); ECONFLICT when it is linked to another user.
	PutIdentity(id *UserIdentity) error
	ListUserIdentities(userID int64) ([]UserIdentity, error)
	// DeleteIdentity unlinks an identity; ENOTFOUND when unlinked.
	DeleteIdentity(issuer, subject string) error

	// GetOrgSSO returns the organization's configuration; ENOTFOUND when it has none.
	GetOrgSSO(orgID int64) (*OrgSSO, error)
	// PutOrgSSO replaces the organization's configuration (and bumps the security epoch).
	PutOrgSSO(c *OrgSSO) error

	// PutSSOState stores a sign-in state; TakeSSOState returns and deletes it (ENOTFOUND
	// when unknown, already taken or expired).
	PutSSOState(s *SSOState) error
	TakeSSOState(d [32]byte) (*SSOState, error)
}
