package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestPostureCLI: gatehouse posture as a table, JSON and SARIF, --fail-on high exits 3
// (and --fail-on with nothing that severe exits 0); gatehouse token usage; gatehouse
// allowlist set / ls / range.
func TestPostureCLI(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	// A production stack without protection: a high finding.
	if code, body := apiCall(t, url, admin, "POST", "/api/stacks/acme/web", map[string]any{"stackName": "prod", "tags": map[string]string{"env": "production"}}); code != 200 {
		t.Fatal(code, body)
	}
	out, _, code := runCLI(t, "posture", "--org", "acme", "--server", url)
	if code != 0 || !strings.Contains(out, "stacks/production-unprotected") || !strings.Contains(out, "Fixes:") {
		t.Fatalf("posture (table), exit %d:\n%s", code, out)
	}
	out, _, code = runCLI(t, "posture", "--org", "acme", "--server", url, "--fail-on", "high")
	if code != 3 {
		t.Fatalf("posture --fail-on high exit %d, want 3:\n%s", code, out)
	}
	out, _, code = runCLI(t, "posture", "--org", "acme", "--server", url, "--sarif")
	var sarif struct {
		Version string `json:"version"`
		Runs    []struct {
			Results []struct {
				RuleID string `json:"ruleId"`
			} `json:"results"`
		} `json:"runs"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sarif) != nil || sarif.Version != "2.1.0" || len(sarif.Runs[0].Results) == 0 {
		t.Fatalf("posture --sarif exit %d:\n%s", code, out)
	}
	out, _, code = runCLI(t, "posture", "--org", "acme", "--server", url, "--json")
	var rep struct {
		Org      string `json:"org"`
		Findings []struct {
			Severity string `json:"severity"`
		} `json:"findings"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || rep.Org != "acme" {
		t.Fatalf("posture --json exit %d:\n%s", code, out)
	}
	// Protect it: nothing high remains, --fail-on high passes.
	if code, body := apiCall(t, url, admin, "POST", "/api/orgs/acme/protections", map[string]string{"tag": "env=production"}); code != 200 {
		t.Fatal(code, body)
	}
	if out, _, code = runCLI(t, "posture", "--org", "acme", "--server", url, "--fail-on", "high"); code != 0 {
		t.Fatalf("posture --fail-on high after the fix exit %d:\n%s", code, out)
	}

	// token usage: the admin's own token, used by the commands above.
	code2, created := apiCall(t, url, admin, "POST", "/api/orgs/acme/tokens", map[string]any{"name": "deployer"})
	if code2 != 200 {
		t.Fatal(code2, created)
	}
	id := created["id"].(string)
	if out := mustCLI(t, "token", "usage", id, "--org", "acme", "--server", url); !strings.Contains(out, "CLIENTS (these stop working if the token is revoked)") || !strings.Contains(out, "deployer") {
		t.Errorf("token usage:\n%s", out)
	}

	// allowlist.
	mustCLI(t, "allowlist", "range", "set", "ci", "10.0.0.0/8", "192.0.2.0/24", "--org", "acme", "--server", url)
	mustCLI(t, "allowlist", "set", "@ci", "--org", "acme", "--token", id, "--server", url)
	if out := mustCLI(t, "allowlist", "ls", "--org", "acme", "--server", url); !strings.Contains(out, "range @ci") || !strings.Contains(out, "token "+id) {
		t.Errorf("allowlist ls:\n%s", out)
	}
	if _, _, err := runCLIErr(t, "allowlist", "set", "203.0.113.0/24", "--org", "acme", "--server", url); err == nil || !strings.Contains(err.Error(), "lock you out") {
		t.Errorf("an org list without the caller's address: %v", err)
	}
}
