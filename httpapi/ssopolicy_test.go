package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/sso/ssotest"
)

// TestGitHubSignIn: GitHub sign-in through a fake GitHub Enterprise on loopback: users
// keyed by GitHub's numeric ID, the required GitHub organization enforced.
func TestGitHubSignIn(t *testing.T) {
	e := ssoEnv(t)
	gh := ssotest.StartGitHub(t)
	e.must(putSSO(t, e, "acme", map[string]any{"jitRole": "member", "github": map[string]any{
		"clientId": gh.ClientID, "clientSecret": gh.ClientSecret, "webUrl": gh.URL, "requiredOrg": "acme-inc"}}))
	signIn := func(u ssotest.GitHubUser) (*browser, page) {
		gh.SignInAs(u)
		b := newBrowser(t)
		start := b.get(e.url + "/login/acme/sso/github?return=/welcome/cli")
		if start.code != http.StatusFound || !strings.HasPrefix(start.loc, gh.URL+"/login/oauth/authorize") {
			t.Fatalf("start GitHub sign-in = %d %q %s", start.code, start.loc, start.body)
		}
		p := b.get(start.loc)
		return b, b.get(p.loc)
	}
	_, p := signIn(ssotest.GitHubUser{ID: 4242, Login: "octodev", Name: "Octo Dev", Email: "octo@example.com", EmailVerified: true, Orgs: []string{"acme-inc"}})
	if p.code != http.StatusSeeOther || p.loc != "/welcome/cli" {
		t.Fatalf("GitHub callback = %d %q %s", p.code, p.loc, p.body)
	}
	_, p = signIn(ssotest.GitHubUser{ID: 777, Login: "outsider", Email: "out@example.com", EmailVerified: true})
	if p.code != http.StatusForbidden || !strings.Contains(p.body, "not an active member of the GitHub organization acme-inc") {
		t.Errorf("GitHub user outside the required org = %d %s, want 403", p.code, p.body)
	}
	// The same GitHub ID with another login is the same person.
	b, p := signIn(ssotest.GitHubUser{ID: 4242, Login: "renamed", Email: "octo@example.com", EmailVerified: true, Orgs: []string{"acme-inc"}})
	if p.code != http.StatusSeeOther {
		t.Fatalf("renamed GitHub user = %d %s", p.code, p.body)
	}
	if p := b.get(e.url + "/api/user"); !strings.Contains(p.body, `"githubLogin":"octodev"`) {
		t.Errorf("renamed GitHub user signed in as %s, want octodev (keyed by GitHub's user ID)", p.body)
	}
}

// TestSSORequired: in an organization that requires SSO, a member gets personal tokens
// only through its SSO sign-in: not with a personal token, not after a token sign-in;
// the break-glass admin keeps both.
func TestSSORequired(t *testing.T) {
	e := ssoEnv(t)
	op := ssotest.StartOP(t, e.url+sso.OIDCCallbackPath("acme"), idpBob)
	var bob struct {
		Token string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "email": "bob@example.com", "role": "member"}}, &bob))
	// Not without a break-glass admin, not with a non-admin one.
	if err := putSSO(t, e, "acme", map[string]any{"ssoRequired": true, "oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}}); err == nil {
		t.Errorf("ssoRequired without a break-glass admin was accepted")
	}
	if err := putSSO(t, e, "acme", map[string]any{"ssoRequired": true, "breakGlassAdmins": []string{"bob"}, "oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}}); err == nil {
		t.Errorf("a member as break-glass admin was accepted")
	}
	e.must(putSSO(t, e, "acme", map[string]any{"ssoRequired": true, "breakGlassAdmins": []string{"alice"}, "oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}}))

	bobc := cliwire.New(e.url, bob.Token)
	err := bobc.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]string{"description": "x"}}, nil)
	if ce := wantStatus(t, err, 403); ce != nil && !strings.Contains(ce.Message, "requires single sign-on") {
		t.Errorf("bob minting a token with a token: %v", err)
	}
	// A token sign-in is refused to bob ...
	b := newBrowser(t)
	if p := b.do("POST", e.url+"/login/token", url.Values{"token": {bob.Token}, "return": {"/"}}); p.code != 403 || !strings.Contains(p.body, "requires single sign-on") {
		t.Errorf("bob's token sign-in = %d %s, want 403", p.code, p.body)
	}
	// ... but allowed to the break-glass admin, who may also mint tokens.
	ab := newBrowser(t)
	if p := ab.do("POST", e.url+"/login/token", url.Values{"token": {e.admin.Token}, "return": {"/welcome/cli"}}); p.code != http.StatusSeeOther || p.loc != "/welcome/cli" {
		t.Errorf("break-glass token sign-in = %d %q %s", p.code, p.loc, p.body)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]string{"description": "break-glass"}}, nil))
	// bob through the organization's SSO: the CLI login works.
	nonce := strings.Repeat("cd", 32)
	cli := "/cli-login?" + url.Values{"cliSessionPort": {"5000"}, "cliSessionNonce": {nonce}, "cliSessionDescription": {"d"}}.Encode()
	b = newBrowser(t)
	if p := oidcSignIn(t, e, b, op, "acme", cli, idpBob); p.code != http.StatusSeeOther {
		t.Fatalf("bob's OIDC sign-in = %d %s", p.code, p.body)
	}
	p := b.get(e.url + cli)
	if p = b.do("POST", e.url+"/cli-login", formFields(t, p.body, "/cli-login")); p.code != http.StatusFound || !strings.HasPrefix(p.loc, "http://127.0.0.1:5000/?") {
		t.Errorf("bob's CLI login after SSO = %d %q %s", p.code, p.loc, p.body)
	}
}

// TestCLILoginInput: the CLI's parameters are validated strictly; the redirect goes only
// to 127.0.0.1; agent sign-up is a clear 404; /welcome/cli answers.
func TestCLILoginInput(t *testing.T) {
	e := ssoEnv(t)
	nonce := strings.Repeat("ef", 32)
	for _, port := range []string{"", "0", "65536", "-1", "+80", "080", "80.0", "0x50", "80 ", "1e3", "99999999999999999999", "80@evil.example", "80/", "evil.example"} {
		u := e.url + "/cli-login?" + url.Values{"cliSessionPort": {port}, "cliSessionNonce": {nonce}}.Encode()
		if p := newBrowser(t).get(u); p.code != 400 || !strings.Contains(p.body, "cliSessionPort") {
			t.Errorf("cliSessionPort %q = %d, want 400", port, p.code)
		}
	}
	for _, n := range []string{"", "short", strings.Repeat("a", 300), "abc def ghi jkl mno", "<script>alert(1)</script>xx"} {
		u := e.url + "/cli-login?" + url.Values{"cliSessionPort": {"8080"}, "cliSessionNonce": {n}}.Encode()
		if p := newBrowser(t).get(u); p.code != 400 {
			t.Errorf("cliSessionNonce %q = %d, want 400", n, p.code)
		}
	}
	req, err := sso.ParseCLIRequest(url.Values{"cliSessionPort": {"65535"}, "cliSessionNonce": {nonce}})
	if err != nil {
		t.Fatal(err)
	}
	if got := req.RedirectURL("tok&x=y"); got != "http://127.0.0.1:65535/?accessToken=tok%26x%3Dy&nonce="+nonce {
		t.Errorf("RedirectURL = %s", got)
	}
	if p := newBrowser(t).get(e.url + "/welcome/cli"); p.code != 200 || !strings.Contains(p.body, "logged in") {
		t.Errorf("/welcome/cli = %d %s", p.code, p.body)
	}
	for _, m := range []string{"GET", "POST"} {
		p := newBrowser(t).do(m, e.url+"/api/agents/signup", nil)
		if p.code != 404 || !strings.Contains(p.body, "PULUMI_ACCESS_TOKEN") {
			t.Errorf("%s /api/agents/signup = %d %s, want a clear 404", m, p.code, p.body)
		}
	}
	// POST /cli-login with a personal token (no session) mints nothing.
	err = e.admin.Do(cliwire.Call{Method: "POST", Path: "/cli-login", Body: []byte("cliSessionPort=80&cliSessionNonce=" + nonce), Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}}, nil)
	wantStatus(t, err, 403)
}
