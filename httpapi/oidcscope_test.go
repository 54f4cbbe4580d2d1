package httpapi_test

import (
	"context"
	"net/http"
	"slices"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestOIDCPersonalTokenStaysInItsOrganization: acme's issuer issues bob a personal token
// (bob belongs to acme only, as exchange requires); bob later joins beta, as an admin. The
// OIDC-issued token must stay valid in acme only: beta's organization and stacks are hidden
// from it, and the user-level routes list acme alone; bob's ordinary personal token works in
// both.
func TestOIDCPersonalTokenStaysInItsOrganization(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	e := w.e
	oidcTok := cliwire.New(e.url, granted(t, w.exchange(t, exchangeParams(w.token("acme/bob-sandbox", "", nil), "personal", "user:bob"), false), "personal", "user:bob", 7200))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultStackPermission": "read"}}, nil))
	e.must(e.createStack(e.admin, "acme", "proj", "dev", map[string]string{"env": "dev"}))

	// Later: bob joins beta (as an admin) and has an ordinary personal token.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "beta"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/members/bob", Body: map[string]string{"role": "admin"}}, nil))
	e.must(e.createStack(e.admin, "beta", "app", "prod", nil))
	var patValue string
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		bob, err := tx.GetUserByName("bob")
		if err != nil {
			return err
		}
		v, tk := mintTestToken(t, gatehouse.TokenPersonal)
		tk.Name, tk.UserID = "laptop", bob.ID
		patValue = v
		return tx.CreateToken(tk)
	}))
	pat := cliwire.New(e.url, patValue)

	betaStack := stackPath("beta", "app", "prod")
	for _, c := range []cliwire.Call{
		{Method: "GET", Path: betaStack},
		{Method: "GET", Path: betaStack + "/export"},
		{Method: "POST", Path: betaStack + "/encrypt", Body: map[string]any{"plaintext": "aGk="}},
		{Method: "PATCH", Path: betaStack + "/tags", Body: map[string]string{"x": "y"}},
		{Method: "GET", Path: "/api/orgs/beta"},
		{Method: "GET", Path: "/api/orgs/beta/members"},
		{Method: "POST", Path: "/api/stacks/beta/app", Body: apitype.CreateStackRequest{StackName: "mine"}},
	} {
		wantStatus(t, oidcTok.Do(c, nil), http.StatusNotFound)
		if c.Method == "GET" {
			e.must(pat.Do(c, nil))
		}
	}
	// In acme it acts as bob.
	e.must(oidcTok.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil))
	e.must(oidcTok.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev")}, nil))

	// User-level routes: acme only for the OIDC-issued token, both for the ordinary one.
	orgsOf := func(c *cliwire.Client) []string {
		var u whoami
		e.must(c.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, &u))
		var names []string
		for _, o := range u.Organizations {
			names = append(names, o.GitHubLogin)
		}
		slices.Sort(names)
		return names
	}
	if got := orgsOf(oidcTok); !slices.Equal(got, []string{"acme"}) {
		t.Fatalf("GET /api/user with the OIDC-issued token lists organizations %v, want [acme]", got)
	}
	if got := orgsOf(pat); !slices.Equal(got, []string{"acme", "beta"}) {
		t.Fatalf("GET /api/user with the ordinary token lists organizations %v, want [acme beta]", got)
	}
	var def struct {
		GitHubLogin string `json:"gitHubLogin"`
	}
	e.must(oidcTok.Do(cliwire.Call{Method: "GET", Path: "/api/user/organizations/default"}, &def))
	if def.GitHubLogin != "acme" {
		t.Fatalf("default organization of the OIDC-issued token = %q", def.GitHubLogin)
	}
	stacksOf := func(c *cliwire.Client, query string) []string {
		var resp apitype.ListStacksResponse
		e.must(c.Do(cliwire.Call{Method: "GET", Path: "/api/user/stacks" + query}, &resp))
		var refs []string
		for _, s := range resp.Stacks {
			refs = append(refs, s.OrgName+"/"+s.ProjectName+"/"+s.StackName)
		}
		slices.Sort(refs)
		return refs
	}
	if got := stacksOf(oidcTok, ""); !slices.Equal(got, []string{"acme/proj/dev"}) {
		t.Fatalf("GET /api/user/stacks with the OIDC-issued token = %v, want [acme/proj/dev]", got)
	}
	if got := stacksOf(oidcTok, "?organization=beta"); len(got) != 0 {
		t.Fatalf("GET /api/user/stacks?organization=beta with the OIDC-issued token = %v, want none", got)
	}
	if got := stacksOf(pat, ""); !slices.Equal(got, []string{"acme/proj/dev", "beta/app/prod"}) {
		t.Fatalf("GET /api/user/stacks with the ordinary token = %v", got)
	}
}
