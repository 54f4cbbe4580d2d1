package sso

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/oauth2"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// stateTTL is how long a sign-in may take at the identity provider.
const stateTTL = 10 * time.Minute

// State cookie: binds a sign-in in progress to the browser that started it, so that
// nobody can make someone else's browser finish a sign-in they started (login CSRF).
const (
	stateCookie    = "__Host-gatehouse_signin"
	devStateCookie = "gatehouse_signin"
)

// flowData is what a sign-in in progress remembers server-side (sso_states).
type flowData struct {
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"` // PKCE
	Return   string `json:"return,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"clientId,omitempty"`
}

func stateDigest(state string) [32]byte { return sha256.Sum256([]byte("gatehouse-sso-state:" + state)) }

// beginFlow stores the state of a new sign-in and sets the state cookie; it returns the
// state value to send to the identity provider.
func (m *Manager) beginFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, orgID int64, kind string, d flowData) (string, error) {
	name := stateCookie
	if !m.secure(r) {
		if !loopbackHost(r) {
			return "", refuse(http.StatusBadRequest, "sign-in needs HTTPS: serve Gatehouse over TLS (or behind a trusted proxy that sets X-Forwarded-Proto), or use a loopback address for development")
		}
		name = devStateCookie
	}
	state := randomString(32)
	data, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	now := m.cfg.Now()
	err = m.store.Update(ctx, func(tx gatehouse.Tx) error {
		return tx.PutSSOState(&gatehouse.SSOState{Digest: stateDigest(state), OrgID: orgID, Kind: kind, Data: data, Expires: now.Add(stateTTL)})
	})
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: state, Path: "/", HttpOnly: true, Secure: name == stateCookie,
		SameSite: http.SameSiteLaxMode, MaxAge: int(stateTTL.Seconds())})
	return state, nil
}

// finishFlow takes the sign-in state named by the callback's state parameter: it must be
// the one this browser started (state cookie), of this organization and kind, unused and
// not expired.
func (m *Manager) finishFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, orgID int64, kind, state string) (*flowData, error) {
	if state == "" {
		return nil, refuse(http.StatusBadRequest, "the identity provider's answer has no state parameter")
	}
	var cookie string
	for _, name := range []string{stateCookie, devStateCookie} {
		if c, err := r.Cookie(name); err == nil && c.Value != "" && (name == stateCookie || !m.secure(r)) {
			cookie = c.Value
		}
	}
	// The state cookie is spent either way.
	for _, name := range []string{stateCookie, devStateCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: name == stateCookie, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	}
	if cookie == "" || subtle.ConstantTimeCompare([]byte(cookie), []byte(state)) != 1 {
		return nil, refuse(http.StatusBadRequest, "bad state: this sign-in was not started by this browser (or the sign-in cookie expired); start again")
	}
	var st *gatehouse.SSOState
	err := m.store.Update(ctx, func(tx gatehouse.Tx) (err error) { st, err = tx.TakeSSOState(stateDigest(state)); return err })
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, refuse(http.StatusBadRequest, "bad state: unknown, used or expired sign-in; start again")
		}
		return nil, err
	}
	if st.OrgID != orgID || st.Kind != kind {
		return nil, refuse(http.StatusBadRequest, "bad state: the sign-in was started for another organization or method")
	}
	var d flowData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		return nil, err
	}
	return &d, nil
}

// callbackFlow is the common start of an OAuth callback (OIDC, GitHub): the organization and
// its policy, the sign-in this browser started (finishFlow, by the state parameter), and a
// refusal when the provider (who) answered with an error. The flow comes back with the
// error too when it was found, so that a failure can name its issuer.
func (m *Manager) callbackFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, orgName, kind, who string) (*gatehouse.Org, *policy, *flowData, error) {
	org, pol, err := m.orgConfig(ctx, orgName)
	if err != nil {
		return nil, nil, nil, err
	}
	q := r.URL.Query()
	d, err := m.finishFlow(ctx, w, r, org.ID, kind, q.Get("state"))
	if err != nil {
		return nil, nil, nil, err
	}
	if e := q.Get("error"); e != "" {
		return nil, nil, d, refuse(http.StatusForbidden, "%s refused the sign-in: %s %s", who, truncate(e, 100), truncate(q.Get("error_description"), 300))
	}
	return org, pol, d, nil
}

// exchangeCode trades the callback's code for tokens with the flow's PKCE verifier: a
// refusal by the provider (who) is a 403, its failure a 502 (what names the step).
func (m *Manager) exchangeCode(ctx context.Context, oc *oauth2.Config, code string, d *flowData, who, what string) (*oauth2.Token, error) {
	tok, err := oc.Exchange(m.clientContext(ctx), code, oauth2.VerifierOption(d.Verifier))
	if err != nil {
		var re *oauth2.RetrieveError
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode < 500 {
			return nil, refuse(http.StatusForbidden, "%s refused the code: %s", who, truncate(re.ErrorCode+" "+re.ErrorDescription, 300))
		}
		return nil, idpDown(what, err)
	}
	return tok, nil
}

// ConfirmCrossSiteStart answers the start of a sign-in that a page of another site made
// the browser open (Sec-Fetch-Site: cross-site) with a page that asks the person to
// continue (a link to the same URL, which then comes from this site), and reports true;
// otherwise it writes nothing and reports false. Without it any page could sign its
// visitor in with an account of its author's choosing (login CSRF): through an
// identity provider an organization's admin runs, or the author's own account at an
// organization's, the visitor's session is replaced by the author's account, and what
// they do next (a pulumi login they confirm, secrets they store) happens in it.
// Bookmarks and typed URLs (Sec-Fetch-Site: none) and this site's own links
// (same-origin) go straight on. A same-site start goes on only when its Referer is one of
// this site's origins (the console host's hop to the API host, whose redirect sends the
// console's origin as Referer): any other host of the registrable domain (a wiki, a blog,
// a page of user content on a sibling subdomain) is another site to the person, and was
// one to an attacker too (found in review).
func (m *Manager) ConfirmCrossSiteStart(w http.ResponseWriter, r *http.Request, orgName string) bool {
	switch site := strings.ToLower(r.Header.Get("Sec-Fetch-Site")); {
	case site == "cross-site":
	case site == "same-site" && !m.refererIsThisSite(r):
	default:
		return false
	}
	// The same start, as a path on this site (the query may be longer than SafeReturn takes).
	again := r.URL.EscapedPath()
	if !strings.HasPrefix(again, "/") || strings.HasPrefix(again, "//") || strings.ContainsAny(again, "\\") {
		again = "/"
	} else if r.URL.RawQuery != "" {
		again += "?" + r.URL.RawQuery
	}
	(&Page{Title: "Sign in to " + orgName + "?", Paragraphs: []string{
		"A page on another site sent you here to sign in to organization " + orgName + " through its identity provider.",
		"Continue only if you meant to: Gatehouse acts as the account you sign in with (and so does a pulumi login you confirm afterwards).",
	}, Links: []Link{{Href: again, Text: "Continue to " + orgName + "'s sign-in"}}}).Render(w, http.StatusOK)
	return true
}

// refererIsThisSite reports whether the request's Referer is one of this site's origins.
func (m *Manager) refererIsThisSite(r *http.Request) bool {
	u, err := url.Parse(r.Header.Get("Referer"))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return false
	}
	return sameOrigin(u.Scheme+"://"+u.Host, m.siteOrigins(r))
}
