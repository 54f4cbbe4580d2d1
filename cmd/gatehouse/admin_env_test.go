package main

import (
	"strings"
	"testing"
)

// TestOrgSetDefaultEnvironmentPermission: the org setting for environments from the admin CLI.
func TestOrgSetDefaultEnvironmentPermission(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	out, errOut, code := runCLI(t, "org", "show", "acme", "--server", url, "--token", admin)
	if code != 0 || !strings.Contains(out, "default environment permission") || !strings.Contains(out, "none") {
		t.Fatalf("org show (code %d):\n%s%s", code, out, errOut)
	}
	out, errOut, code = runCLI(t, "org", "set", "acme", "--default-environment-permission", "open", "--server", url, "--token", admin)
	if code != 0 || !strings.Contains(out, "open") {
		t.Fatalf("org set (code %d):\n%s%s", code, out, errOut)
	}
}

// TestGrantEnvCLI: gatehouse grant add/rm --env PROJECT/ENV | --env-project PROJECT give
// and take teams' environment permissions through the team API; team show lists them.
func TestGrantEnvCLI(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	cli := func(args ...string) string { return mustCLI(t, append(args, "--server", url)...) }
	if code, b := apiCall(t, url, admin, "POST", "/api/esc/environments/acme", map[string]string{"project": "app", "name": "dev"}); code != 200 {
		t.Fatal(code, b)
	}
	cli("team", "create", "devs", "--org", "acme")
	if out := cli("grant", "add", "devs", "--org", "acme", "--env", "app/dev", "--permission", "open"); !strings.Contains(out, "granted team devs open on environment app/dev") {
		t.Errorf("grant add --env: %q", out)
	}
	if out := cli("grant", "add", "devs", "--org", "acme", "--env", "app/dev", "--permission", "write"); !strings.Contains(out, "from open to write") {
		t.Errorf("repeated grant add --env: %q", out)
	}
	out := cli("grant", "add", "devs", "--org", "acme", "--env-project", "prod", "--permission", "read", "--json")
	if !strings.Contains(out, `"change": "added"`) || !strings.Contains(out, `"projectName": "prod"`) {
		t.Errorf("grant add --env-project --json: %s", out)
	}
	out = cli("team", "show", "devs", "--org", "acme")
	if !strings.Contains(out, "environment app/dev") || !strings.Contains(out, "environment project prod") {
		t.Errorf("team show lacks the environment grants:\n%s", out)
	}
	code, team := apiCall(t, url, admin, "GET", "/api/orgs/acme/teams/devs", nil)
	if envs, _ := team["environments"].([]any); code != 200 || len(envs) != 2 {
		t.Fatalf("team API environments: %d %v", code, team)
	}
	// Bad input: a permission stacks do not have on environments, --decrypt, a missing
	// environment, two scopes.
	for _, args := range [][]string{
		{"--env", "app/dev", "--permission", "root"},
		{"--env", "app/dev", "--permission", "read", "--decrypt"},
		{"--env", "app/nope", "--permission", "read"},
		{"--env", "app", "--permission", "read"},
		{"--env", "app/dev", "--project", "app"},
	} {
		if _, _, err := runCLIErr(t, append([]string{"grant", "add", "devs", "--org", "acme", "--server", url}, args...)...); err == nil {
			t.Errorf("grant add %v: no error", args)
		}
	}
	if out := cli("grant", "rm", "devs", "--org", "acme", "--env", "app/dev"); !strings.Contains(out, "removed team devs's grant on environment app/dev") {
		t.Errorf("grant rm --env: %q", out)
	}
	cli("grant", "rm", "devs", "--org", "acme", "--env-project", "prod")
	_, team = apiCall(t, url, admin, "GET", "/api/orgs/acme/teams/devs", nil)
	if envs, _ := team["environments"].([]any); len(envs) != 0 {
		t.Fatalf("environment grants after rm: %v", team)
	}
}

// TestProtectEnvCLI: gatehouse protect add/rm --env / --env-project, listed by protect ls.
func TestProtectEnvCLI(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	cli := func(args ...string) string { return mustCLI(t, append(args, "--server", url)...) }
	if code, b := apiCall(t, url, admin, "POST", "/api/esc/environments/acme", map[string]string{"project": "app", "name": "prod"}); code != 200 {
		t.Fatal(code, b)
	}
	if out := cli("protect", "add", "--org", "acme", "--env", "app/prod"); !strings.Contains(out, "protected environment app/prod") {
		t.Errorf("protect add --env: %q", out)
	}
	cli("protect", "add", "--org", "acme", "--env-project", "secrets")
	out := cli("protect", "ls", "--org", "acme")
	if !strings.Contains(out, "environment app/prod") || !strings.Contains(out, "environment project secrets") {
		t.Errorf("protect ls:\n%s", out)
	}
	out = cli("protect", "ls", "--org", "acme", "--json")
	if !strings.Contains(out, `"env": "app/prod"`) || !strings.Contains(out, `"envProject": "secrets"`) {
		t.Errorf("protect ls --json:\n%s", out)
	}
	if code, _ := apiCall(t, url, admin, "POST", "/api/esc/environments/acme/app/prod/open?duration=1h", nil); code != 403 {
		t.Errorf("a person opened a protected environment: %d", code)
	}
	cli("protect", "rm", "--org", "acme", "--env", "app/prod")
	cli("protect", "rm", "--org", "acme", "--env-project", "secrets")
	if out := cli("protect", "ls", "--org", "acme"); strings.Contains(out, "environment") {
		t.Errorf("protect ls after rm:\n%s", out)
	}
}
