package httpapi_test

import (
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestCrossTenant: names and IDs that belong to another organization are refused on every
// route that takes them, with the same 404 a missing resource gets.
func TestCrossTenant(t *testing.T) {
	w := newWorld(t, "none")
	e := w.e
	// An acme admin who has nothing to do with globex (alice created globex, so she is in both).
	var created struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "acme-admin", "role": "admin"}}, &created))
	acmeAdmin := cliwire.New(e.url, created.TokenValue)
	must(t, acmeAdmin.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "proj", "name": "cross"}}, nil))
	// globex gets a team, a stack with a running update, and a team token.
	g := w.client("otheradmin")
	must(t, g.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/teams/pulumi", Body: map[string]string{"name": "g-team"}}, nil))
	var tok struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	must(t, g.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/teams/g-team/tokens", Body: map[string]string{"name": "g-pipe"}}, &tok))
	gstack := stackPath("globex", "gproj", "gstack")
	gr, err := e.startRun(g, gstack, "update", false)
	must(t, err)
	// ... and an environment with an open session (environments.go).
	must(t, g.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/globex", Body: map[string]string{"project": "gproj", "name": "genv"}}, nil))
	var gsess, gyaml struct {
		ID string `json:"id"`
	}
	must(t, g.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/globex/gproj/genv/open?duration=1h"}, &gsess))
	must(t, g.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/globex/yaml/open?duration=1h", Body: []byte(`{"imports":["gproj/genv"]}`)}, &gyaml))

	// acme's routes with globex's names and IDs in them.
	subst := func(p string) []string {
		r := strings.NewReplacer("{org}", "acme", "{project}", "proj", "{stack}", "prod", "{team}", "t-read", "{user}", "member", "{version}", "1", "{tokenID}", "x", "{issuerId}", "x", "{policyId}", "x")
		var out []string
		if strings.Contains(p, "{updateID}") {
			out = append(out, strings.ReplaceAll(r.Replace(strings.ReplaceAll(p, "{updateID}", gr.ID)), "", ""))
		}
		if strings.Contains(p, "{stack}") {
			// globex's stack name under acme: absent in acme.
			out = append(out, strings.NewReplacer("{org}", "acme", "{project}", "gproj", "{stack}", "gstack", "{updateID}", gr.ID, "{version}", "1").Replace(p))
		}
		if strings.Contains(p, "{env}") {
			// globex's environment name under acme: absent in acme; globex's session ids on
			// acme's environment.
			out = append(out, strings.NewReplacer("{org}", "acme", "{project}", "gproj", "{env}", "genv", "{version}", "1", "{tag}", "t1", "{sub}", "decrypt", "{what}", "decrypt", "{session}", gsess.ID).Replace(p))
			if strings.Contains(p, "{session}") {
				out = append(out, strings.NewReplacer("{org}", "acme", "{project}", "proj", "{env}", "cross", "{session}", gsess.ID).Replace(p))
			}
		} else if strings.Contains(p, "{session}") {
			out = append(out, strings.NewReplacer("{org}", "acme", "{session}", gyaml.ID).Replace(p))
		}
		if strings.Contains(p, "{team}") {
			out = append(out, strings.NewReplacer("{org}", "acme", "{team}", "g-team", "{tokenID}", tok.ID).Replace(p))
		}
		if strings.Contains(p, "{tokenID}") && strings.HasPrefix(p, "/api/orgs/{org}/teams/") {
			out = append(out, r.Replace(strings.ReplaceAll(p, "{tokenID}", tok.ID)))
		}
		if strings.Contains(p, "{org}") && !strings.Contains(p, "{stack}") && !strings.Contains(p, "{team}") {
			// acme's admin on globex's organization.
			out = append(out, strings.NewReplacer("{org}", "globex", "{project}", "gproj", "{user}", "nonmember", "{tokenID}", tok.ID, "{issuerId}", "x", "{policyId}", "x").Replace(p))
		}
		return out
	}
	checked := 0
	for _, rt := range e.srv.API.Routes() {
		if rt.Auth != 1 { // access-token routes only; lease routes are covered by TestLeaseTokensAreBound
			continue
		}
		for _, path := range subst(rt.Pattern) {
			var body any
			if rt.Method != "GET" && rt.Method != "DELETE" && rt.Method != "HEAD" {
				body = map[string]any{}
			}
			err := acmeAdmin.Do(cliwire.Call{Method: rt.Method, Path: path, Body: body}, nil)
			if cliwire.Status(err) != 404 {
				t.Errorf("%s %s (pattern %s) as acme's admin: want 404, got %v", rt.Method, path, rt.Pattern, err)
			}
			checked++
		}
	}
	if checked < 40 {
		t.Fatalf("only %d cross-tenant calls checked", checked)
	}
	// globex's team token on acme's resources: hidden, like to a stranger.
	gt := cliwire.New(e.url, tok.TokenValue)
	for _, p := range []string{stackPath("acme", "proj", "prod"), "/api/orgs/acme/teams", "/api/orgs/acme/members", stackPath("acme", "proj", "prod") + "/export"} {
		if err := gt.Do(cliwire.Call{Method: "GET", Path: p}, nil); cliwire.Status(err) != 404 {
			t.Errorf("globex team token on %s: want 404, got %v", p, err)
		}
	}
	// Stack listings never show another organization's stacks.
	var list struct {
		Stacks []struct{ OrgName string } `json:"stacks"`
	}
	must(t, acmeAdmin.Do(cliwire.Call{Method: "GET", Path: "/api/user/stacks"}, &list))
	for _, s := range list.Stacks {
		if s.OrgName != "acme" {
			t.Fatalf("acme admin's listing shows %s's stack", s.OrgName)
		}
	}
	must(t, gt.Do(cliwire.Call{Method: "GET", Path: "/api/user/stacks?organization=acme"}, &list))
	if len(list.Stacks) != 0 {
		t.Fatalf("globex token lists acme stacks: %+v", list)
	}
}
