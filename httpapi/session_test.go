package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// signIn completes a sign-in of identity id for org through the server's sso.Manager (as
// the SAML and OIDC handlers do) and returns the session cookie and the response.
func signIn(t *testing.T, e *env, org string, id sso.Identity, returnTo string) (*http.Cookie, *httptest.ResponseRecorder) {
	t.Helper()
	r := httptest.NewRequest("POST", strings.Replace(e.url, "127.0.0.1", "127.0.0.1", 1)+"/login/"+org+"/sso/test", nil)
	w := httptest.NewRecorder()
	_ = e.srv.API.SSO().Complete(context.Background(), w, r, org, id, returnTo)
	for _, c := range w.Result().Cookies() {
		if c.Name == sso.DevCookieName && c.Value != "" {
			return c, w
		}
	}
	return nil, w
}

// sessionDo makes a request with the session cookie (and, when csrf is set, the token).
func sessionDo(t *testing.T, e *env, c *http.Cookie, method, path, csrf, origin string, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		req.AddCookie(c)
	}
	if csrf != "" {
		req.Header.Set(sso.CSRFHeader, csrf)
	}
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func setSSO(t *testing.T, e *env, org string, c gatehouse.OrgSSO) {
	t.Helper()
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(org)
		if err != nil {
			return err
		}
		c.OrgID = o.ID
		return tx.PutOrgSSO(&c)
	}))
}

// TestSessionFoundation: a sign-in through Complete gives a session cookie (HttpOnly,
// SameSite=Lax, the loopback variant on plain HTTP) that authenticates API calls as the
// person (audit method=session); state-changing calls need the CSRF token and a
// same-site Origin; sign-out and deleting the user's sessions end it at once; a new
// sign-in gets a new session (no fixation).
func TestSessionFoundation(t *testing.T) {
	e := newEnv(t)
	setSSO(t, e, "acme", gatehouse.OrgSSO{JITRole: gatehouse.RoleMember})
	id := sso.Identity{Provider: gatehouse.SignInOIDC, Issuer: "https://idp.example", Subject: "00u-bob", Email: "bob@example.com", EmailVerified: true, Name: "Bob"}
	c, w := signIn(t, e, "acme", id, "/cli-login?cliSessionPort=1234")
	if c == nil {
		t.Fatalf("no session cookie; response %d %s", w.Code, w.Body)
	}
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/cli-login?cliSessionPort=1234" {
		t.Errorf("Complete answered %d to %q, want 303 to the return path", w.Code, w.Header().Get("Location"))
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || len(c.Value) < 40 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/, a long random value", c)
	}
	code, body := sessionDo(t, e, c, "GET", "/api/user", "", "", "")
	if code != 200 || !strings.Contains(string(body), `"githubLogin":"bob"`) {
		t.Fatalf("GET /api/user with the session = %d %s", code, body)
	}
	code, body = sessionDo(t, e, c, "GET", "/api/user/session", "", "", "")
	var info struct {
		CSRF   string `json:"csrfToken"`
		Method string `json:"method"`
		Org    string `json:"organization"`
	}
	if code != 200 || json.Unmarshal(body, &info) != nil || info.CSRF == "" || info.Method != "oidc" || info.Org != "acme" {
		t.Fatalf("GET /api/user/session = %d %s", code, body)
	}
	// A state-changing call: refused without the token, with a wrong one, or cross-site.
	tokBody := `{"description":"from the console"}`
	if code, body := sessionDo(t, e, c, "POST", "/api/user/tokens", "", "", tokBody); code != 403 || !strings.Contains(string(body), "CSRF") {
		t.Errorf("POST without CSRF token = %d %s, want 403", code, body)
	}
	if code, _ := sessionDo(t, e, c, "POST", "/api/user/tokens", "wrong", "", tokBody); code != 403 {
		t.Errorf("POST with a wrong CSRF token = %d, want 403", code)
	}
	if code, body := sessionDo(t, e, c, "POST", "/api/user/tokens", info.CSRF, "https://evil.example", tokBody); code != 403 || !strings.Contains(string(body), "cross-site") {
		t.Errorf("POST from another origin = %d %s, want 403", code, body)
	}
	if code, body := sessionDo(t, e, c, "POST", "/api/user/tokens", info.CSRF, e.url, tokBody); code != 200 {
		t.Errorf("POST with the CSRF token and our Origin = %d %s, want 200", code, body)
	}
	// The audit log shows the session.
	evs, err := listAudit(e)
	e.must(err)
	var sawLogin, sawLink, sawJIT, sawSessionCall bool
	for _, ev := range evs {
		switch {
		case ev.Action == sso.ActionLogin && ev.Outcome == "success" && ev.ActorName == "bob":
			sawLogin = true
		case ev.Action == sso.ActionIdentityLinked:
			sawLink = true
		case ev.Action == sso.ActionJITMember:
			sawJIT = true
		case ev.Action == "user:tokens" && ev.Outcome == "success" && ev.Details["method"] == "session":
			sawSessionCall = true
		}
	}
	if !sawLogin || !sawLink || !sawJIT || !sawSessionCall {
		t.Errorf("audit: login %v, identity linked %v, JIT member %v, token call with method=session %v", sawLogin, sawLink, sawJIT, sawSessionCall)
	}

	// A second sign-in from the same browser: a new session; the old cookie is dead.
	r := httptest.NewRequest("POST", e.url+"/login/acme/sso/test", nil)
	r.AddCookie(c)
	w2 := httptest.NewRecorder()
	e.must(e.srv.API.SSO().Complete(context.Background(), w2, r, "acme", id, ""))
	var c2 *http.Cookie
	for _, ck := range w2.Result().Cookies() {
		if ck.Name == sso.DevCookieName {
			c2 = ck
		}
	}
	if c2 == nil || c2.Value == c.Value {
		t.Fatalf("second sign-in: cookie %+v, want a new value", c2)
	}
	if code, _ := sessionDo(t, e, c, "GET", "/api/user", "", "", ""); code != 401 {
		t.Errorf("old session after a new sign-in = %d, want 401", code)
	}
	// Deleting every session of the user (SCIM) ends it on the next request.
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUserByName("bob")
		if err != nil {
			return err
		}
		_, err = sso.EndSessions(tx, u.ID, 0)
		return err
	}))
	if code, _ := sessionDo(t, e, c2, "GET", "/api/user", "", "", ""); code != 401 {
		t.Errorf("session after DeleteUserSessions = %d, want 401", code)
	}

	// Sign-out: needs the CSRF token; then the session is gone.
	c3, _ := signIn(t, e, "acme", id, "")
	if code, _ := sessionDo(t, e, c3, "POST", "/logout", "", "", ""); code != 403 {
		t.Errorf("POST /logout without CSRF = %d, want 403", code)
	}
	_, body = sessionDo(t, e, c3, "GET", "/api/user/session", "", "", "")
	_ = json.Unmarshal(body, &info)
	if code, body := sessionDo(t, e, c3, "POST", "/logout", info.CSRF, "", ""); code != 200 || !strings.Contains(string(body), "Signed out") {
		t.Errorf("POST /logout = %d %s", code, body)
	}
	if code, _ := sessionDo(t, e, c3, "GET", "/api/user", "", "", ""); code != 401 {
		t.Errorf("session after sign-out = %d, want 401", code)
	}
	// Idle timeout.
	c4, _ := signIn(t, e, "acme", id, "")
	e.clock.Advance(sso.DefaultIdleTimeout + time.Minute)
	if code, body := sessionDo(t, e, c4, "GET", "/api/user", "", "", ""); code != 401 || !strings.Contains(string(body), "expired") {
		t.Errorf("session after the idle timeout = %d %s, want 401 expired", code, body)
	}
}

// TestSignInRefusals: without just-in-time membership an unknown person is refused and
// nothing is created; the refusal is audited with its reason.
func TestSignInRefusals(t *testing.T) {
	e := newEnv(t)
	id := sso.Identity{Provider: gatehouse.SignInOIDC, Issuer: "https://idp.example", Subject: "stranger", Email: "s@example.com", EmailVerified: true}
	c, w := signIn(t, e, "acme", id, "")
	if c != nil || w.Code != 403 || !strings.Contains(w.Body.String(), "just-in-time") {
		t.Errorf("unknown person without JIT: cookie %v, %d %s", c, w.Code, w.Body)
	}
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		if _, err := tx.GetIdentity(id.Issuer, id.Subject); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			t.Errorf("identity after a refused sign-in: %v", err)
		}
		if n, _ := tx.CountUsers(); n != 1 {
			t.Errorf("%d users after a refused sign-in, want 1", n)
		}
		return nil
	}))
	setSSO(t, e, "acme", gatehouse.OrgSSO{Methods: []string{gatehouse.SignInSAML}, JITRole: gatehouse.RoleMember})
	if c, w := signIn(t, e, "acme", id, ""); c != nil || w.Code != 403 || !strings.Contains(w.Body.String(), "does not accept oidc") {
		t.Errorf("method not allowed: %d %s", w.Code, w.Body)
	}
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == sso.ActionLogin && ev.Outcome == "failure" && ev.Reason != "" && ev.Details["subject"] == "stranger" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d failed sign-ins audited, want 2", n)
	}
}

// TestSessionNotOnOrAfter: the identity provider's SessionNotOnOrAfter ends the session
// before the configured lifetime; one already past refuses the sign-in.
func TestSessionNotOnOrAfter(t *testing.T) {
	e := newEnv(t)
	setSSO(t, e, "acme", gatehouse.OrgSSO{JITRole: gatehouse.RoleMember})
	id := sso.Identity{Provider: gatehouse.SignInSAML, Issuer: "https://idp.example/saml", Subject: "nameid-1", Email: "n@example.com", EmailVerified: true,
		SessionNotOnOrAfter: e.clock.Now().Add(30 * time.Minute)}
	c, w := signIn(t, e, "acme", id, "")
	if c == nil {
		t.Fatalf("no session: %d %s", w.Code, w.Body)
	}
	if c.MaxAge > 30*60 || c.MaxAge < 29*60 {
		t.Errorf("cookie Max-Age %d, want about 30 minutes (the IdP's limit)", c.MaxAge)
	}
	if code, _ := sessionDo(t, e, c, "GET", "/api/user", "", "", ""); code != 200 {
		t.Fatalf("fresh session = %d", code)
	}
	e.clock.Advance(31 * time.Minute)
	if code, _ := sessionDo(t, e, c, "GET", "/api/user", "", "", ""); code != 401 {
		t.Errorf("session past SessionNotOnOrAfter = %d, want 401", code)
	}
	id.SessionNotOnOrAfter = e.clock.Now().Add(-time.Second)
	if c, w := signIn(t, e, "acme", id, ""); c != nil || w.Code != 400 || !strings.Contains(w.Body.String(), "SessionNotOnOrAfter") {
		t.Errorf("sign-in with a past SessionNotOnOrAfter: cookie %v, %d %s", c, w.Code, w.Body)
	}
}
