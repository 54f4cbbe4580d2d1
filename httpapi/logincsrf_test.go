package httpapi_test

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/sso/ssotest"
)

// TestSSOStartFromAnotherSite: a page of another site that sends its visitor to an
// organization's sign-in start (OIDC, GitHub, SAML) gets a page asking the person to
// continue, not a redirect to the identity provider: otherwise it signs the visitor in
// with an account of the page author's choosing (login CSRF: an identity provider an
// organization admin runs, or the author's own account at it), replacing their session
// (found in review). From this site, a bookmark or a typed URL, the start redirects.
func TestSSOStartFromAnotherSite(t *testing.T) {
	e := ssoEnv(t)
	op, gh := acmeOIDCAndGitHub(t, e)
	w := newSAMLWorld(t)
	// A CLI login's return, longer than sso.SafeReturn takes once escaped.
	ret := "?return=" + url.QueryEscape("/cli-login?"+url.Values{"cliSessionPort": {"4000"}, "cliSessionDescription": {strings.Repeat("laptop/", 140)}}.Encode())
	for _, tc := range []struct{ name, start, idp string }{
		{"oidc", e.url + "/login/acme/sso/oidc" + ret, op.Issuer},
		{"github", e.url + "/login/acme/sso/github" + ret, gh.URL},
		{"saml", w.base + "/login/acme/sso" + ret, w.idp.url},
	} {
		do := func(site string, referer ...string) (*http.Response, string) {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, tc.start, nil)
			if site != "" {
				req.Header.Set("Sec-Fetch-Site", site)
			}
			for _, r := range referer {
				req.Header.Set("Referer", r)
			}
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp, string(b)
		}
		u, _ := url.Parse(tc.start)
		// Another site; and another host of the same site (a sibling subdomain: a wiki, user
		// content), with its own Referer or none (found in review: same-site went straight on).
		for _, from := range [][]string{{"cross-site"}, {"same-site"}, {"same-site", "https://wiki.example.com/page"}} {
			resp, page := do(from[0], from[1:]...)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" || len(resp.Cookies()) != 0 ||
				!strings.Contains(page, "another site") || !strings.Contains(page, `href="`+strings.ReplaceAll(u.RequestURI(), "&", "&amp;")+`"`) ||
				resp.Header.Get("X-Frame-Options") != "DENY" {
				t.Errorf("%s started from %v: %d to %q, cookies %v, want the page asking to continue:\n%s", tc.name, from, resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), page)
			}
		}
		// The same site's own origin as Referer (the console host's hop to the API host).
		if resp, page := do("same-site", u.Scheme+"://"+u.Host+"/"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), tc.idp) {
			t.Errorf("%s started same-site from this site: %d to %q, want the identity provider\n%s", tc.name, resp.StatusCode, resp.Header.Get("Location"), page)
		}
		for _, site := range []string{"", "same-origin", "none"} {
			if resp, page := do(site); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), tc.idp) {
				t.Errorf("%s started with Sec-Fetch-Site %q: %d to %q, want the identity provider\n%s", tc.name, site, resp.StatusCode, resp.Header.Get("Location"), page)
			}
		}
	}
}

// TestSSOCallbackFromIdentityProvider: the identity provider's redirect back to the
// callback is always a cross-site navigation in a browser (Sec-Fetch-Site: cross-site,
// from github.com or the OpenID provider); the callback is bound to the browser by its
// state cookie and must finish the sign-in. The GitHub callback answered it with the
// "another site sent you here" page after spending the state, so its Continue link
// failed with "bad state" and no GitHub sign-in could finish in a browser (found in review).
func TestSSOCallbackFromIdentityProvider(t *testing.T) {
	e := ssoEnv(t)
	op, gh := acmeOIDCAndGitHub(t, e)
	crossSite := func(b *browser, u string) page {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := b.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		bb, _ := io.ReadAll(resp.Body)
		return page{code: resp.StatusCode, loc: resp.Header.Get("Location"), body: string(bb)}
	}

	gh.SignInAs(ssotest.GitHubUser{ID: 4242, Login: "octodev", Name: "Octo Dev", Email: "octo@example.com", EmailVerified: true})
	b := newBrowser(t)
	start := b.get(e.url + "/login/acme/sso/github?return=/welcome/cli")
	if start.code != http.StatusFound || !strings.HasPrefix(start.loc, gh.URL) {
		t.Fatalf("start GitHub sign-in = %d %q %s", start.code, start.loc, start.body)
	}
	if p := crossSite(b, b.get(start.loc).loc); p.code != http.StatusSeeOther || p.loc != "/welcome/cli" {
		t.Errorf("GitHub callback from github.com (cross-site) = %d %q, want 303 to /welcome/cli\n%s", p.code, p.loc, p.body)
	}

	b = newBrowser(t)
	start = b.get(e.url + "/login/acme/sso/oidc?return=/welcome/cli")
	if start.code != http.StatusFound || !strings.HasPrefix(start.loc, op.Issuer) {
		t.Fatalf("start OIDC sign-in = %d %q %s", start.code, start.loc, start.body)
	}
	cb := op.Login(t, start.loc, idpBob.Username, idpBob.Password)
	if p := crossSite(b, cb.String()); p.code != http.StatusSeeOther || p.loc != "/welcome/cli" {
		t.Errorf("OIDC callback from the provider (cross-site) = %d %q, want 303 to /welcome/cli\n%s", p.code, p.loc, p.body)
	}
}

// acmeOIDCAndGitHub gives organization acme an OpenID provider (knowing idpBob) and a GitHub
// sign-in, both on loopback, with just-in-time membership.
func acmeOIDCAndGitHub(t *testing.T, e *env) (*ssotest.OP, *ssotest.GitHub) {
	t.Helper()
	op := ssotest.StartOP(t, e.url+sso.OIDCCallbackPath("acme"), idpBob)
	gh := ssotest.StartGitHub(t)
	e.must(putSSO(t, e, "acme", map[string]any{"jitRole": "member",
		"oidc":   map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret},
		"github": map[string]any{"clientId": gh.ClientID, "clientSecret": gh.ClientSecret, "webUrl": gh.URL}}))
	return op, gh
}
