package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestGrantRmAndProtectOutputs: gatehouse grant rm (a stack scope and an environment scope)
// and protect add/rm say what they did, in text and in --json (removedGrant /
// removedEnvironment, protected / unprotected), and the change is made.
func TestGrantRmAndProtectOutputs(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	cli := func(args ...string) string { return mustCLI(t, append(args, "--server", url)...) }
	jsonOf := func(out string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(out), &m); err != nil {
			t.Fatalf("not JSON: %v\n%s", err, out)
		}
		return m
	}
	if code, b := apiCall(t, url, admin, "POST", "/api/esc/environments/acme", map[string]string{"project": "app", "name": "dev"}); code != 200 {
		t.Fatal(code, b)
	}
	cli("team", "create", "devs", "--org", "acme")

	cli("grant", "add", "devs", "--org", "acme", "--project", "web", "--permission", "read")
	cli("grant", "add", "devs", "--org", "acme", "--tag", "env=prod", "--permission", "write")
	cli("grant", "add", "devs", "--org", "acme", "--env", "app/dev", "--permission", "open")
	if out := cli("grant", "rm", "devs", "--org", "acme", "--project", "web"); !strings.Contains(out, "removed team devs's grant on project web") {
		t.Errorf("grant rm --project: %q", out)
	}
	m := jsonOf(cli("grant", "rm", "devs", "--org", "acme", "--tag", "env=prod", "--json"))
	if g, _ := m["removedGrant"].(map[string]any); m["team"] != "devs" || g["tag"] != "env=prod" || m["removedEnvironment"] != nil {
		t.Errorf("grant rm --tag --json: %v", m)
	}
	m = jsonOf(cli("grant", "rm", "devs", "--org", "acme", "--env", "app/dev", "--json"))
	if m["team"] != "devs" || m["removedEnvironment"] == nil || m["removedGrant"] != nil {
		t.Errorf("grant rm --env --json: %v", m)
	}
	code, team := apiCall(t, url, admin, "GET", "/api/orgs/acme/teams/devs", nil)
	if gs, _ := team["grants"].([]any); code != 200 || len(gs) != 0 {
		t.Errorf("grants after rm: %d %v", code, team)
	}
	if envs, _ := team["environments"].([]any); len(envs) != 0 {
		t.Errorf("environment grants after rm: %v", team)
	}

	if out := cli("protect", "add", "--org", "acme", "--project", "web"); !strings.Contains(out, "protected project web: changes only through pipeline credentials") {
		t.Errorf("protect add --project: %q", out)
	}
	m = jsonOf(cli("protect", "add", "--org", "acme", "--tag", "env=prod", "--json"))
	if p, _ := m["protected"].(map[string]any); p["tag"] != "env=prod" {
		t.Errorf("protect add --json: %v", m)
	}
	if out := cli("protect", "rm", "--org", "acme", "--project", "web"); !strings.Contains(out, "removed the protection of project web") {
		t.Errorf("protect rm --project: %q", out)
	}
	m = jsonOf(cli("protect", "rm", "--org", "acme", "--tag", "env=prod", "--json"))
	if p, _ := m["unprotected"].(map[string]any); p["tag"] != "env=prod" {
		t.Errorf("protect rm --json: %v", m)
	}
	if out := cli("protect", "ls", "--org", "acme"); strings.Contains(out, "web") || strings.Contains(out, "env=prod") {
		t.Errorf("protect ls after rm:\n%s", out)
	}
	// A scope is required.
	for _, args := range [][]string{{"grant", "rm", "devs"}, {"protect", "add"}, {"protect", "rm"}} {
		if _, _, err := runCLIErr(t, append(args, "--org", "acme", "--server", url)...); err == nil {
			t.Errorf("%v without a scope: no error", args)
		}
	}
}
