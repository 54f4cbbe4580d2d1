package sso

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// ConfigJSON is an organization's SSO configuration as the admin API shows and takes it
// (GET/PUT /api/orgs/{org}/sso). Client secrets are write-only: a PUT without one keeps
// the stored secret; answers only say whether one is set.
type ConfigJSON struct {
	Methods    []string          `json:"methods"`
	Required   bool              `json:"ssoRequired"`
	BreakGlass []string          `json:"breakGlassAdmins"` // user names
	JITRole    string            `json:"jitRole"`
	GroupTeams map[string]string `json:"groupTeams"`
	OIDC       *OIDCJSON         `json:"oidc,omitempty"`
	GitHub     *GitHubJSON       `json:"github,omitempty"`
	// Shown only: where to point the identity providers.
	OIDCRedirectURI   string `json:"oidcRedirectUri,omitempty"`
	GitHubCallbackURL string `json:"githubCallbackUrl,omitempty"`
	SignInURL         string `json:"signInUrl,omitempty"`
}

// OIDCJSON is the OIDC part of ConfigJSON.
type OIDCJSON struct {
	Issuer          string   `json:"issuer"`
	ClientID        string   `json:"clientId"`
	ClientSecret    string   `json:"clientSecret,omitempty"` // write-only
	HasClientSecret bool     `json:"hasClientSecret"`
	Scopes          []string `json:"scopes,omitempty"`
	GroupsClaim     string   `json:"groupsClaim,omitempty"`
}

// GitHubJSON is the GitHub part of ConfigJSON.
type GitHubJSON struct {
	ClientID        string `json:"clientId"`
	ClientSecret    string `json:"clientSecret,omitempty"` // write-only
	HasClientSecret bool   `json:"hasClientSecret"`
	WebURL          string `json:"webUrl,omitempty"`
	APIURL          string `json:"apiUrl,omitempty"`
	RequiredOrg     string `json:"requiredOrg,omitempty"`
}

// ShowConfig returns org's configuration for the admin API (no secret values).
func (m *Manager) ShowConfig(tx gatehouse.Tx, r *http.Request, org *gatehouse.Org) (*ConfigJSON, error) {
	pol, err := m.policy(tx, org.ID)
	if err != nil {
		return nil, err
	}
	out := &ConfigJSON{Methods: pol.Methods, Required: pol.Required, JITRole: string(pol.JITRole), GroupTeams: pol.GroupTeams, BreakGlass: []string{},
		SignInURL: m.BaseURL(r) + "/login/" + url.PathEscape(org.Name)}
	if out.Methods == nil {
		out.Methods = []string{}
	}
	for _, id := range pol.BreakGlass {
		if u, err := tx.GetUser(id); err == nil {
			out.BreakGlass = append(out.BreakGlass, u.Name)
		}
	}
	if c := pol.OIDC; c != nil {
		out.OIDC = &OIDCJSON{Issuer: c.Issuer, ClientID: c.ClientID, HasClientSecret: len(c.ClientSecret) > 0, Scopes: c.Scopes, GroupsClaim: c.GroupsClaim}
		out.OIDCRedirectURI = m.BaseURL(r) + OIDCCallbackPath(org.Name)
	}
	if c := pol.GitHub; c != nil {
		out.GitHub = &GitHubJSON{ClientID: c.ClientID, HasClientSecret: len(c.ClientSecret) > 0, WebURL: c.WebURL, APIURL: c.APIURL, RequiredOrg: c.RequiredOrg}
		out.GitHubCallbackURL = m.BaseURL(r) + GitHubCallbackPath(org.Name)
	}
	return out, nil
}

// SealSecrets seals the client secrets of a configuration about to be saved (outside the
// transaction: sealing may call the keyring).
func (m *Manager) SealSecrets(ctx context.Context, orgID int64, in *ConfigJSON) (oidcSecret, githubSecret []byte, err error) {
	if in.OIDC != nil && in.OIDC.ClientSecret != "" {
		if oidcSecret, err = m.Seal(ctx, orgID, in.OIDC.ClientSecret); err != nil {
			return nil, nil, err
		}
	}
	if in.GitHub != nil && in.GitHub.ClientSecret != "" {
		if githubSecret, err = m.Seal(ctx, orgID, in.GitHub.ClientSecret); err != nil {
			return nil, nil, err
		}
	}
	return oidcSecret, githubSecret, nil
}

var knownMethods = []string{gatehouse.SignInOIDC, gatehouse.SignInGitHub, gatehouse.SignInSAML, gatehouse.SignInToken}

// ApplyConfig validates in and replaces org's configuration in tx (sealed secrets from
// SealSecrets; nil keeps the stored ones). It returns a summary of what changed for the
// audit event (never a secret).
func (m *Manager) ApplyConfig(tx gatehouse.Tx, org *gatehouse.Org, in *ConfigJSON, oidcSecret, githubSecret []byte) (map[string]string, error) {
	old, err := m.policy(tx, org.ID)
	if err != nil {
		return nil, err
	}
	c := &gatehouse.OrgSSO{OrgID: org.ID, Required: in.Required, GroupTeams: in.GroupTeams}
	for _, meth := range in.Methods {
		if !slices.Contains(knownMethods, meth) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "unknown sign-in method %q: want oidc, github, saml or token", meth)
		}
		if !slices.Contains(c.Methods, meth) {
			c.Methods = append(c.Methods, meth)
		}
	}
	switch in.JITRole {
	case "":
	case string(gatehouse.RoleMember), string(gatehouse.RoleAdmin), string(gatehouse.RoleBillingManager):
		c.JITRole = gatehouse.Role(in.JITRole)
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "jitRole must be member, admin, billing-manager or empty (no just-in-time membership)")
	}
	for g, t := range in.GroupTeams {
		if g == "" || t == "" || len(g) > 256 || len(t) > 100 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "groupTeams maps non-empty group names to team names")
		}
	}
	for _, name := range in.BreakGlass {
		u, err := tx.GetUserByName(name)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "break-glass admin %q: no such user", name)
		} else if err != nil {
			return nil, err
		}
		mb, err := tx.GetMember(org.ID, u.ID)
		if err != nil || mb.Role != gatehouse.RoleAdmin {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "break-glass admin %q must be an admin of %s", name, org.Name)
		}
		c.BreakGlass = append(c.BreakGlass, u.ID)
	}
	if o := in.OIDC; o != nil {
		if err := checkIssuerURL(o.Issuer); err != nil {
			return nil, err
		}
		if o.ClientID == "" || len(o.ClientID) > 512 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "oidc.clientId is required")
		}
		c.OIDC = &gatehouse.OIDCSSO{Issuer: o.Issuer, ClientID: o.ClientID, Scopes: o.Scopes, GroupsClaim: o.GroupsClaim, ClientSecret: oidcSecret}
		if oidcSecret == nil && old.OIDC != nil && old.OIDC.ClientID == o.ClientID && old.OIDC.Issuer == o.Issuer {
			c.OIDC.ClientSecret = old.OIDC.ClientSecret
		}
	}
	if g := in.GitHub; g != nil {
		if g.ClientID == "" || len(g.ClientID) > 512 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "github.clientId is required")
		}
		for _, u := range []string{g.WebURL, g.APIURL} {
			if u != "" {
				if err := checkIssuerURL(u); err != nil {
					return nil, err
				}
			}
		}
		c.GitHub = &gatehouse.GitHubSSO{ClientID: g.ClientID, WebURL: g.WebURL, APIURL: g.APIURL, RequiredOrg: g.RequiredOrg, ClientSecret: githubSecret}
		if githubSecret == nil && old.GitHub != nil && old.GitHub.ClientID == g.ClientID {
			c.GitHub.ClientSecret = old.GitHub.ClientSecret
		}
		if len(c.GitHub.ClientSecret) == 0 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "github.clientSecret is required (GitHub OAuth apps always have one)")
		}
	}
	if c.Required {
		if c.OIDC == nil && c.GitHub == nil && !slices.Contains(c.Methods, gatehouse.SignInSAML) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "ssoRequired needs a single sign-on method (oidc, github, or saml in methods)")
		}
		if len(c.BreakGlass) == 0 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "ssoRequired needs at least one break-glass admin (breakGlassAdmins), who keeps the token sign-in if the identity provider fails")
		}
	}
	if err := tx.PutOrgSSO(c); err != nil {
		return nil, err
	}
	sum := map[string]string{"methods": strings.Join(c.Methods, ","), "ssoRequired": boolStr(c.Required), "jitRole": string(c.JITRole),
		"breakGlassAdmins": strings.Join(in.BreakGlass, ",")}
	if c.OIDC != nil {
		sum["oidcIssuer"], sum["oidcClientId"] = c.OIDC.Issuer, c.OIDC.ClientID
		if oidcSecret != nil {
			sum["oidcClientSecret"] = "changed"
		}
	}
	if c.GitHub != nil {
		sum["githubClientId"], sum["githubRequiredOrg"] = c.GitHub.ClientID, c.GitHub.RequiredOrg
		if githubSecret != nil {
			sum["githubClientSecret"] = "changed"
		}
	}
	return sum, nil
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// checkIssuerURL accepts an absolute https URL (http only for loopback hosts), without
// credentials, query or fragment. Where it may be fetched from is the HTTP client's guard's
// business (netguard: no private or metadata addresses unless allowed).
func checkIssuerURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" || len(s) > 2048 {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: want an absolute https:// URL without credentials, query or fragment", truncate(s, 200))
	}
	switch u.Scheme {
	case "https":
	case "http":
		h := u.Hostname()
		if h != "localhost" && h != "127.0.0.1" && h != "::1" {
			return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: https is required (plain http only for loopback hosts)", truncate(s, 200))
		}
	default:
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: want an https:// URL", truncate(s, 200))
	}
	return nil
}
