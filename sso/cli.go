package sso

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/token"
)

// The stock CLI's browser login: `pulumi login` listens on 127.0.0.1:PORT and opens
// <console>/cli-login?cliSessionPort=PORT&cliSessionNonce=NONCE&cliSessionDescription=...;
// the console signs the person in, mints a personal token with that description and sends
// the browser to http://127.0.0.1:PORT/?accessToken=TOKEN&nonce=NONCE.

// CLIRequest is a validated /cli-login request.
type CLIRequest struct {
	Port        int
	Nonce       string
	Description string
	Command     string
}

var (
	portRE  = regexp.MustCompile(`^[1-9][0-9]{0,4}$`)
	nonceRE = regexp.MustCompile(`^[A-Za-z0-9_-]{16,256}$`)
)

// ParseCLIRequest validates the CLI's parameters: the port an integer 1-65535 in plain
// decimal (no sign, no leading zero, nothing else), the nonce 16-256 URL-safe characters,
// the description and command printable text of at most 1024 and 100 characters.
func ParseCLIRequest(q url.Values) (*CLIRequest, error) {
	p := q.Get("cliSessionPort")
	port, err := strconv.Atoi(p)
	if !portRE.MatchString(p) || err != nil || port < 1 || port > 65535 {
		return nil, refuse(http.StatusBadRequest, "cliSessionPort must be a port number (1-65535), not %q", truncate(p, 20))
	}
	n := q.Get("cliSessionNonce")
	if !nonceRE.MatchString(n) {
		return nil, refuse(http.StatusBadRequest, "cliSessionNonce is missing or malformed")
	}
	req := &CLIRequest{Port: port, Nonce: n, Description: q.Get("cliSessionDescription"), Command: q.Get("cliCommand")}
	if len(req.Description) > 1024 || len(req.Command) > 100 || !printable(req.Description) || !printable(req.Command) {
		return nil, refuse(http.StatusBadRequest, "cliSessionDescription or cliCommand is too long or not plain text")
	}
	return req, nil
}

func printable(s string) bool {
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return false
		}
	}
	return true
}

// Query is the request as /cli-login query parameters.
func (c *CLIRequest) Query() url.Values {
	v := url.Values{"cliSessionPort": {strconv.Itoa(c.Port)}, "cliSessionNonce": {c.Nonce}, "cliSessionDescription": {c.Description}}
	if c.Command != "" {
		v.Set("cliCommand", c.Command)
	}
	return v
}

// RedirectURL is where the browser goes with the new token: the CLI's listener on IPv4
// loopback, nowhere else.
func (c *CLIRequest) RedirectURL(accessToken string) string {
	u := url.URL{Scheme: "http", Host: "127.0.0.1:" + strconv.Itoa(c.Port), Path: "/",
		RawQuery: url.Values{"accessToken": {accessToken}, "nonce": {c.Nonce}}.Encode()}
	return u.String()
}

// CLILoginPage answers GET /cli-login: without a session, the sign-in page (which returns
// here); with one, a confirmation form (POST /cli-login, with the session's CSRF token).
func (m *Manager) CLILoginPage(w http.ResponseWriter, r *http.Request) {
	req, err := ParseCLIRequest(r.URL.Query())
	if err != nil {
		m.ErrorPage(w, r, http.StatusBadRequest, "Pulumi CLI login", err.Error())
		return
	}
	var sess *gatehouse.Session
	var user *gatehouse.User
	lerr := m.store.View(r.Context(), func(tx gatehouse.Tx) (err error) { sess, user, err = m.Lookup(tx, r); return err })
	self := "/cli-login?" + req.Query().Encode()
	if lerr != nil {
		if !gatehouse.IsCode(lerr, gatehouse.ENOTFOUND) && !gatehouse.IsCode(lerr, gatehouse.EUNAUTHORIZED) {
			m.ErrorPage(w, r, http.StatusServiceUnavailable, "Pulumi CLI login", gatehouse.ErrorMessage(lerr))
			return
		}
		m.SignInPage(w, r, "", self, "Sign in to finish `pulumi login`.")
		return
	}
	hidden := []Field{{Name: CSRFField, Value: sess.CSRF}}
	for k, vs := range req.Query() {
		hidden = append(hidden, Field{Name: k, Value: vs[0]})
	}
	(&Page{Title: "Pulumi CLI login", Paragraphs: []string{
		"Signed in as " + user.Name + ".",
		"Create a personal access token for the Pulumi CLI (" + orDefault(req.Description, "no description") + ") and hand it to the CLI listening on this computer (127.0.0.1:" + strconv.Itoa(req.Port) + ")?",
		"Only continue if you just ran pulumi login yourself.",
	}, Forms: []Form{{Method: "post", Action: "/cli-login", Hidden: hidden, Submit: "Log in the CLI"}},
		FormTargets: []string{"http://127.0.0.1:" + strconv.Itoa(req.Port)}}).Render(w, http.StatusOK)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

// MintCLIToken creates the personal token of a browser login for the session's user, in
// tx: refused under an organization's "SSO required" policy unless the session came from
// that organization's SSO (or the user is its break-glass admin); the token expires within
// the strictest maximum token lifetime of the user's organizations. It returns the token
// value (shown to nobody but the CLI) and the token.
func (m *Manager) MintCLIToken(tx gatehouse.Tx, user *gatehouse.User, sess *gatehouse.Session, req *CLIRequest) (string, *gatehouse.Token, error) {
	if err := m.MayMintPersonalToken(tx, user.ID, sess); err != nil {
		return "", nil, err
	}
	value, err := token.New(token.Kind(gatehouse.TokenPersonal))
	if err != nil {
		return "", nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "cannot create a token")
	}
	now := tx.Now()
	tk := &gatehouse.Token{ID: uuid.NewString(), Kind: gatehouse.TokenPersonal, Digest: token.Digest(value), UserID: user.ID,
		Description: req.Description, CreatedBy: user.Name, Created: now}
	tk.Name = "cli-" + strconv.FormatInt(now.Unix(), 10) + "-" + tk.ID[:8]
	oms, err := tx.ListUserOrgs(user.ID)
	if err != nil {
		return "", nil, err
	}
	for _, om := range oms {
		if d := om.Org.Settings.MaxTokenLifetimeDays; d > 0 {
			if limit := now.Add(time.Duration(d) * 24 * time.Hour); tk.Expires.IsZero() || limit.Before(tk.Expires) {
				tk.Expires = limit
			}
		}
	}
	if err := tx.CreateToken(tk); err != nil {
		return "", nil, err
	}
	return value, tk, nil
}

// SignInPage shows the sign-in choices: for an organization (its OIDC, GitHub and SAML
// sign-ins, and the token form), or a form asking for the organization. returnTo is
// where a successful sign-in goes (SafeReturn).
func (m *Manager) SignInPage(w http.ResponseWriter, r *http.Request, orgName, returnTo, intro string) {
	ret := SafeReturn(returnTo)
	p := &Page{Title: "Sign in to Gatehouse"}
	if intro != "" {
		p.Paragraphs = append(p.Paragraphs, intro)
	}
	tokenForm := Form{Method: "post", Action: "/login/token", Hidden: []Field{{Name: "return", Value: ret}},
		Fields: []Field{{Name: "token", Label: "Access token", Type: "password"}}, Submit: "Sign in with a token"}
	if orgName == "" {
		p.Paragraphs = append(p.Paragraphs, "Single sign-on: enter your organization.")
		p.Forms = append(p.Forms, Form{Method: "get", Action: "/login", Hidden: []Field{{Name: "return", Value: ret}},
			Fields: []Field{{Name: "org", Label: "Organization", Type: "text"}}, Submit: "Continue"})
		p.Paragraphs = append(p.Paragraphs, "Or, where your organization allows it, sign in with a personal access token:")
		p.Forms = append(p.Forms, tokenForm)
		p.Render(w, http.StatusOK)
		return
	}
	_, pol, err := m.orgConfig(r.Context(), orgName)
	if err != nil {
		m.ErrorPage(w, r, errStatus(err), "Sign in", errText(err))
		return
	}
	q := "?return=" + url.QueryEscape(ret)
	base := "/login/" + url.PathEscape(orgName) + "/sso"
	// Links, not forms: the page's CSP form-action ('self') also governs the redirect to
	// the identity provider that answers a form, and browsers block it.
	if pol.OIDC != nil && pol.allows(gatehouse.SignInOIDC) {
		p.Links = append(p.Links, Link{Href: base + "/oidc" + q, Text: "Sign in with " + orgName + "'s identity provider (OpenID Connect)"})
	}
	if pol.GitHub != nil && pol.allows(gatehouse.SignInGitHub) {
		p.Links = append(p.Links, Link{Href: base + "/github" + q, Text: "Sign in with GitHub"})
	}
	if len(pol.Methods) == 0 || pol.allows(gatehouse.SignInSAML) {
		// SAML is configured through its own API; its start URL takes the same ?return=.
		p.Links = append(p.Links, Link{Href: base + q, Text: "Sign in with SAML"})
	}
	if !pol.Required || len(pol.BreakGlass) > 0 {
		p.Paragraphs = append(p.Paragraphs, "Administrators with break-glass access (or where the organization allows it) may sign in with a personal access token:")
		p.Forms = append(p.Forms, tokenForm)
	}
	p.Render(w, http.StatusOK)
}

func errStatus(err error) int {
	if se, ok := err.(*SignInError); ok {
		return se.Status
	}
	return http.StatusInternalServerError
}

func errText(err error) string {
	if se, ok := err.(*SignInError); ok {
		return se.Reason
	}
	return gatehouse.ErrorMessage(err)
}

// TokenSignIn handles POST /login/token: a person signs in with one of their personal
// access tokens (a break-glass admin of an organization that requires SSO, or anyone
// where the organizations allow token sign-in). The token must be a live personal token
// a person made (not a pipeline or OIDC-issued one). It always writes the response.
//
// failed (optional) counts a sign-in refused because the value is no live personal token
// (a 401: malformed, unknown, revoked or expired), as a failed authentication of the
// request's client (the server's failed-authentication limiter). When it returns an error
// with a Retry-After (ERATELIMITED), the refusal is answered 429 with that Retry-After; the
// failure is audited (auth:login, outcome failure) either way. Refusals of a valid token
// (policy, disabled user) are not counted.
func (m *Manager) TokenSignIn(w http.ResponseWriter, r *http.Request, failed func(value string) error) {
	ctx := r.Context()
	if err := m.CheckOrigin(r); err != nil {
		m.ErrorPage(w, r, http.StatusForbidden, "Sign-in refused", gatehouse.ErrorMessage(err))
		return
	}
	value := strings.TrimSpace(r.PostFormValue("token"))
	ret := r.PostFormValue("return")
	var cookie *http.Cookie
	var ev *gatehouse.AuditEvent
	var tokenID string
	err := m.store.Update(ctx, func(tx gatehouse.Tx) error {
		kind, err := token.Parse(value)
		if err != nil || kind != token.Kind(gatehouse.TokenPersonal) {
			return refuse(http.StatusUnauthorized, "that is not a personal access token")
		}
		d := token.Digest(value)
		tk, err := tx.GetTokenByDigest(d)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || err == nil && !token.Equal(tk.Digest, d) {
			return refuse(http.StatusUnauthorized, "unknown token")
		} else if err != nil {
			return err
		}
		tokenID = tk.ID
		if !tk.Live(tx.Now()) {
			return refuse(http.StatusUnauthorized, "the token is revoked or expired")
		}
		if tk.Kind != gatehouse.TokenPersonal || tk.Pipeline || tk.Issuer != "" {
			return refuse(http.StatusForbidden, "only a personal token a person made can sign in")
		}
		u, err := tx.GetUser(tk.UserID)
		if err != nil {
			return err
		}
		if !u.Disabled.IsZero() {
			return refuse(http.StatusForbidden, "this user account is disabled")
		}
		if err := m.MayUseTokenSignIn(tx, u.ID); err != nil {
			return refuse(http.StatusForbidden, "%s", gatehouse.ErrorMessage(err))
		}
		// The session ends when the token does (its expiry, or the end of its rotation's
		// grace period, or its revocation: RevokeToken ends the sessions of the token):
		// a sign-in must not outlive the credential that proved it.
		s, c, err := m.startSession(tx, r, u.ID, 0, gatehouse.SignInToken, tk.Ends(), tk.ID)
		if err != nil {
			if gatehouse.IsCode(err, gatehouse.EINVALID) {
				return refuse(http.StatusBadRequest, "%s", gatehouse.ErrorMessage(err))
			}
			return err
		}
		cookie = c
		ev = m.event(r, w, ActionLogin, nil, u, gatehouse.OutcomeSuccess, "")
		ev.TokenID = tk.ID
		ev.Details["method"], ev.Details["session"] = gatehouse.SignInToken, s.ID
		return tx.AppendAudit(ev)
	})
	if err != nil {
		status, reason := errStatus(err), errText(err)
		if status >= 500 {
			m.cfg.Log.Error("token sign-in failed", "err", err)
			reason = "the sign-in failed (internal error)"
		}
		var limited *gatehouse.Error
		if status == http.StatusUnauthorized && failed != nil {
			if lerr := failed(value); lerr != nil && errors.As(lerr, &limited) && limited.RetryAfter > 0 {
				reason += " (throttled: too many failed authentication attempts)"
			} else {
				limited = nil
			}
		}
		m.recordTokenFailure(ctx, w, r, tokenID, reason)
		if limited != nil {
			w.Header().Set("Retry-After", strconv.Itoa(limited.RetryAfter))
			m.ErrorPage(w, r, http.StatusTooManyRequests, "Sign-in refused", gatehouse.ErrorMessage(limited))
			return
		}
		m.ErrorPage(w, r, status, "Sign-in failed", reason)
		return
	}
	m.notify(ev)
	http.SetCookie(w, cookie)
	http.Redirect(w, r, SafeReturn(ret), http.StatusSeeOther)
}

func (m *Manager) recordTokenFailure(ctx context.Context, w http.ResponseWriter, r *http.Request, tokenID, reason string) {
	ev := m.event(r, w, ActionLogin, nil, nil, gatehouse.OutcomeFailure, reason)
	ev.TokenID = tokenID
	ev.Details["method"] = gatehouse.SignInToken
	if err := m.store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error { return tx.AppendAudit(ev) }); err != nil {
		m.cfg.Log.Error("audit: cannot record a failed sign-in", "err", err)
		return
	}
	m.notify(ev)
}

// WelcomeCLI is the page the CLI sends the browser to after a browser login.
func (m *Manager) WelcomeCLI(w http.ResponseWriter, r *http.Request) {
	(&Page{Title: "You are logged in", Paragraphs: []string{"The Pulumi CLI is logged in to Gatehouse. You can close this tab."}}).Render(w, http.StatusOK)
}
