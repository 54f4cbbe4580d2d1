package httpapi_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/sso/ssotest"
)

// TestSessionInSSORequiredOrg: in an organization that requires single sign-on, a browser
// session acts only if that organization's SSO started it; a session another
// organization's identity provider started (or the token sign-in) is refused there (403,
// audited), while the break-glass admin keeps access. Found in review.
func TestSessionInSSORequiredOrg(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	e.newPerson("bob", "member")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/members/bob", Body: map[string]string{"role": "member"}}, nil))
	acmeRequiresSSO(e)
	get := func(c *http.Cookie, path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", e.url+path, nil)
		req.AddCookie(c)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	fromGlobex := e.session(t, "bob", "globex")
	if code, body := get(fromGlobex, "/api/stacks/acme"); code != 403 || !strings.Contains(body, "requires single sign-on") {
		t.Fatalf("bob's globex session in acme: %d %s", code, body)
	}
	if code, _ := get(fromGlobex, "/api/stacks/globex"); code != 200 {
		t.Fatalf("bob's globex session in globex: %d", code)
	}
	if code, body := get(e.session(t, "bob", "acme"), "/api/stacks/acme"); code != 200 {
		t.Fatalf("bob's acme SSO session in acme: %d %s", code, body)
	}
	if code, body := get(e.session(t, "alice", "globex"), "/api/stacks/acme"); code != 200 {
		t.Fatalf("the break-glass admin's session in acme: %d %s", code, body)
	}
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		found = found || ev.Action == "auth:sso-required" && ev.Outcome == gatehouse.OutcomeDenied
	}
	if !found {
		t.Error("the refusal is not in the audit log")
	}
}

// TestSSORequiredNoExistenceOracle: an organization's single sign-on requirement refuses
// only the sessions of those who may see the organization. A browser session of someone
// who is not a member gets exactly the answer of a missing organization or stack (404, the
// same message), never "organization globex requires single sign-on"; a member's session
// not started by globex's SSO gets that 403 for an existing and a missing stack alike.
// Found in review: the requirement was checked before the decision, so a non-member
// learned that globex and its stack merger/acquisition-target exist.
func TestSSORequiredNoExistenceOracle(t *testing.T) {
	e := ssoEnv(t)
	a := e.admin
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	e.must(e.createStack(a, "globex", "merger", "acquisition-target", nil))
	op := ssotest.StartOP(t, e.url+sso.OIDCCallbackPath("globex"), idpBob)
	e.must(putSSO(t, e, "globex", map[string]any{"ssoRequired": true, "breakGlassAdmins": []string{"alice"}, "oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}}))
	var bob struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &bob))
	b := newBrowser(t)
	if p := b.do("POST", e.url+"/login/token", url.Values{"token": {bob.TokenValue}, "return": {"/"}}); p.code != 303 {
		t.Fatalf("bob's token sign-in = %d %s", p.code, p.body)
	}
	for _, p := range []string{"/api/orgs/globex", "/console/orgs/globex", "/api/stacks/globex/merger/acquisition-target", "/api/stacks/globex/merger/other"} {
		got := b.get(e.url + p)
		missing := b.get(e.url + strings.Replace(p, "globex", "nosuchorg", 1))
		if strings.HasPrefix(p, "/console") {
			got.body, missing.body = "(html)", "(html)"
		}
		if got.code != missing.code || got.body != strings.ReplaceAll(missing.body, "nosuchorg", "globex") {
			t.Errorf("non-member session GET %s = %d %.160s, a missing organization %d %.160s", p, got.code, got.body, missing.code, missing.body)
		}
	}
	// A member's session started by another organization's sign-in: refused, whether or
	// not the stack exists.
	e.newPerson("carol", "member")
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/members/carol", Body: map[string]string{"role": "member"}}, nil))
	c := e.session(t, "carol", "acme")
	for _, p := range []string{"/api/orgs/globex", "/api/stacks/globex/merger/acquisition-target", "/api/stacks/globex/merger/other"} {
		if code, body := e.sessionFrom(t, c, "GET", p, "127.0.0.1"); code != 403 || !strings.Contains(string(body), "organization globex requires single sign-on") {
			t.Errorf("member session GET %s = %d %s", p, code, body)
		}
	}
}

// TestSSORequiredCrossOrgListings: the listings that span organizations (GET /api/user,
// /api/user/stacks, /api/esc/environments, the console's home) leave out an organization
// that requires single sign-on when the caller's session was not started by its SSO, as a
// route naming that organization refuses it. Found in read-back: only routes naming the
// organization applied the policy, so a session from another organization's identity
// provider listed its stacks and environments.
func TestSSORequiredCrossOrgListings(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	e.newPerson("bob", "member")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/members/bob", Body: map[string]string{"role": "admin"}}, nil))
	e.must(e.createStack(e.admin, "acme", "web", "prod", nil))
	e.must(e.createStack(e.admin, "globex", "web", "dev", nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "proj", "name": "base"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/globex", Body: map[string]string{"project": "proj", "name": "base"}}, nil))
	// bob is an admin of both organizations: he reads every stack and environment.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/members/bob", Body: map[string]string{"role": "admin"}}, nil))
	acmeRequiresSSO(e)
	paths := []string{"/api/user", "/api/user/stacks", "/api/esc/environments", "/console?all=1"}
	for _, s := range []struct {
		who, via string
		acme     bool
	}{{"bob", "globex", false}, {"bob", "acme", true}, {"alice", "globex", true}} {
		c := e.session(t, s.who, s.via)
		for _, p := range paths {
			code, b := e.sessionFrom(t, c, "GET", p, "127.0.0.1")
			if code != 200 || !strings.Contains(string(b), "globex") {
				t.Fatalf("%s's %s session, GET %s: %d %s", s.who, s.via, p, code, b)
			}
			if got := strings.Contains(string(b), "acme"); got != s.acme {
				t.Errorf("%s's %s session, GET %s lists acme: %v, want %v\n%s", s.who, s.via, p, got, s.acme, b)
			}
		}
	}
}

// acmeRequiresSSO makes acme require single sign-on, with alice its break-glass admin.
func acmeRequiresSSO(e *env) {
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		alice, err := tx.GetUserByName("alice")
		if err != nil {
			return err
		}
		return tx.PutOrgSSO(&gatehouse.OrgSSO{OrgID: org.ID, Required: true, BreakGlass: []int64{alice.ID}})
	}))
}
