package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
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
