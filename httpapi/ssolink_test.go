package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/sso/ssotest"
)

// TestSignInLinksNoOutsider: the admin of another organization (globex) configures OIDC
// with a provider she controls, and a browser signed in as vera (acme only) is sent through
// globex's sign-in (a link: the callback is a top-level GET, so the SameSite=Lax session
// cookie comes along). A new identity is linked to the signed-in account only for a member
// of that organization, so mallory's identity does not become vera's (found in review:
// mallory then signed in as vera and got her tokens).
// The same when vera is also a member of globex (an invitation she accepted): only a
// session globex's own sign-in started may have an identity linked there.
func TestSignInLinksNoOutsider(t *testing.T) {
	for _, alsoInGlobex := range []bool{false, true} {
		t.Run(fmt.Sprintf("member of globex %v", alsoInGlobex), func(t *testing.T) { signInLinksNoOutsider(t, alsoInGlobex) })
	}
}

func signInLinksNoOutsider(t *testing.T, alsoInGlobex bool) {
	e := ssoEnv(t)
	mtok, _ := e.outsider(t, "mallory") // admin of globex
	mc := cliwire.New(e.url, mtok)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "vera", "role": "admin"}}, nil))
	e.must(e.createStack(e.admin, "acme", "web", "prod", nil))
	if alsoInGlobex {
		e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			g, err := tx.GetOrgByName("globex")
			if err != nil {
				return err
			}
			v, err := tx.GetUserByName("vera")
			if err != nil {
				return err
			}
			return tx.PutMember(g.ID, v.ID, gatehouse.RoleMember)
		}))
	}

	if tok := linkThroughGlobex(t, e, mc, "vera"); tok != "" {
		var user struct {
			Login string `json:"githubLogin"`
		}
		e.must(cliwire.New(e.url, tok).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, &user))
		err := cliwire.New(e.url, tok).Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "web", "prod")}, nil)
		t.Errorf("globex's admin, through her own OIDC provider, got a token of %q (GET acme/web/prod: err=%v)", user.Login, err)
	}
}

// TestSignInLinksNoSiteAdmin: the same with the site administrator's browser: a new
// identity is never linked to a site administrator's account by signing in (found in
// review: the signed-in path did not refuse them as the email path does).
func TestSignInLinksNoSiteAdmin(t *testing.T) {
	e := ssoEnv(t)
	mtok, _ := e.outsider(t, "mallory")
	mc := cliwire.New(e.url, mtok)
	if tok := linkThroughGlobex(t, e, mc, "alice"); tok != "" {
		err := cliwire.New(e.url, tok).Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "mallorys"}}, nil)
		t.Errorf("globex's admin got the site administrator's token (POST /api/orgs as alice: err=%v)", err)
	}
}

// linkThroughGlobex is the attack: globex's admin (mc) configures OIDC with a provider she
// runs; victim's browser, signed in through acme, is sent through globex's sign-in; then
// mallory signs in through it and asks the CLI login for a token. It returns that token
// when her session is the victim's ("" otherwise).
func linkThroughGlobex(t *testing.T, e *env, mc *cliwire.Client, victim string) string {
	t.Helper()
	evil := ssotest.User{ID: "evil-1", Username: "x@evil.test", Password: "pw", Email: "x@evil.test", EmailVerified: true, First: "X", Last: "Y"}
	op := ssotest.StartOP(t, e.url+sso.OIDCCallbackPath("globex"), evil)
	e.must(mc.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/globex/sso", Body: map[string]any{"jitRole": "member",
		"oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}}}, nil))
	vb := newBrowser(t)
	u, _ := url.Parse(e.url)
	vb.c.Jar.SetCookies(u, []*http.Cookie{e.session(t, victim, "acme")})
	oidcSignIn(t, e, vb, op, "globex", "/", evil)
	m := newBrowser(t)
	if p := oidcSignIn(t, e, m, op, "globex", "/", evil); p.code != http.StatusSeeOther {
		t.Fatalf("mallory's sign-in: %d %s", p.code, p.body)
	}
	cli := "/cli-login?" + url.Values{"cliSessionPort": {"41234"}, "cliSessionNonce": {strings.Repeat("cd", 32)}, "cliSessionDescription": {"x"}}.Encode()
	p := m.get(e.url + cli)
	if !strings.Contains(p.body, "Signed in as "+victim) {
		return ""
	}
	p = m.do("POST", e.url+"/cli-login", formFields(t, p.body, "/cli-login"))
	to, _ := url.Parse(p.loc)
	return to.Query().Get("accessToken")
}
