package httpapi_test

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestEnvProtectionsREST: protection rules scoped to one environment ({"env":
// "project/name"}) or to every environment of an ESC project ({"envProject": ...}) are
// created, listed and removed through the protections API; they protect environments
// only, never the stacks of a project of the same name.
func TestEnvProtectionsREST(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	for _, n := range []string{"dev", "prod"} {
		admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"`+n+`"}`))
	}
	e.must(e.createStack(e.admin, "acme", "app", "s", nil))
	prot := func(method string, body map[string]string) error {
		return e.admin.Do(cliwire.Call{Method: method, Path: "/api/orgs/acme/protections", Body: body}, nil)
	}
	type rule struct {
		Stack, Project, Tag, Env, EnvProject string
	}
	list := func() []rule {
		var out struct{ Protections []rule }
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/protections"}, &out))
		return out.Protections
	}
	stackProtected := func() bool {
		var out struct{ Protected bool }
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "app", "s") + "/access"}, &out))
		return out.Protected
	}

	e.must(prot("POST", map[string]string{"env": "app/prod"}))
	if ls := list(); len(ls) != 1 || ls[0].Env != "app/prod" {
		t.Fatalf("protections: %+v", ls)
	}
	admin.want(403, "POST", escBase+"/acme/app/prod/open?duration=1h", nil)
	admin.want(200, "POST", escBase+"/acme/app/dev/open?duration=1h", nil)

	e.must(prot("POST", map[string]string{"envProject": "app"}))
	admin.want(403, "POST", escBase+"/acme/app/dev/open?duration=1h", nil)
	if stackProtected() {
		t.Fatal("an environment-project rule protects the stacks of that project")
	}
	if ls := list(); len(ls) != 2 {
		t.Fatalf("protections: %+v", ls)
	}

	// Bad scopes are 400 and change nothing.
	for _, b := range []map[string]string{{"env": "app/nope"}, {"env": "prod"}, {"env": "app/prod", "project": "app"}, {"env": "app/prod", "envProject": "app"}, {"envProject": "bad name"}} {
		wantStatus(t, prot("POST", b), 400)
	}

	e.must(prot("DELETE", map[string]string{"envProject": "app"}))
	e.must(prot("DELETE", map[string]string{"env": "app/prod"}))
	if ls := list(); len(ls) != 0 {
		t.Fatalf("protections after removal: %+v", ls)
	}
	admin.want(200, "POST", escBase+"/acme/app/prod/open?duration=1h", nil)
}

// TestEnvTeamTokenPermissions: a team token listing shows what the tokens act with: the
// team's stack permissions beside its environment permissions.
func TestEnvTeamTokenPermissions(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "cidev"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/cidev", Body: map[string]any{"addGrant": map[string]any{"project": "web", "permission": "write"}}}, nil))
	e.envGrant("cidev", "app", "dev", "open")
	e.envGrant("cidev", "prod", "", "read")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/cidev/tokens", Body: map[string]any{"name": "deploy"}}, nil))
	var out struct {
		Tokens []struct {
			Name             string
			StackPermissions []struct {
				Project, Permission string
			} `json:"stackPermissions"`
			EnvironmentPermissions []struct {
				ProjectName, EnvName, Permission string
			} `json:"environmentPermissions"`
		}
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/cidev/tokens"}, &out))
	if len(out.Tokens) != 1 {
		t.Fatalf("tokens: %+v", out)
	}
	tk := out.Tokens[0]
	if len(tk.StackPermissions) != 1 || tk.StackPermissions[0].Project != "web" || tk.StackPermissions[0].Permission != "write" {
		t.Errorf("stack permissions: %+v", tk.StackPermissions)
	}
	envs := map[string]string{}
	for _, p := range tk.EnvironmentPermissions {
		envs[p.ProjectName+"/"+p.EnvName] = p.Permission
	}
	if len(envs) != 2 || envs["app/dev"] != "open" || envs["prod/"] != "read" {
		t.Errorf("environment permissions: %+v", tk.EnvironmentPermissions)
	}
}
