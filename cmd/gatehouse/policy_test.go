package main

import (
	"strings"
	"testing"
)

// TestPolicyCommands: groups with selectors, the provider allow-list and results through
// the admin CLI.
func TestPolicyCommands(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	base := []string{"--server", url, "--org", "acme"}
	run := func(args ...string) string {
		t.Helper()
		return mustCLI(t, append(append([]string{"policy"}, args...), base...)...)
	}
	if out := run("group", "create", "prod-guard"); !strings.Contains(out, "created policy group prod-guard") {
		t.Fatalf("group create: %s", out)
	}
	run("group", "select", "prod-guard", "--tag", "env=production")
	if out := run("group", "show", "prod-guard"); !strings.Contains(out, "tag") || !strings.Contains(out, "env=production") {
		t.Fatalf("group show: %s", out)
	}
	if out := run("group", "ls"); !strings.Contains(out, "default-policy-group") || !strings.Contains(out, "prod-guard") {
		t.Fatalf("group ls: %s", out)
	}
	if _, _, err := runCLIErr(t, append([]string{"policy", "group", "enable", "prod-guard", "missing", "1.0.0"}, base...)...); err == nil {
		t.Fatal("enabling a pack that was never published succeeded")
	}
	out := run("providers", "set", "aws@>=6.0.0 <7.0.0", "random")
	if !strings.Contains(out, "aws") || !strings.Contains(out, ">=6.0.0 <7.0.0") || !strings.Contains(out, "true") {
		t.Fatalf("providers set: %s", out)
	}
	if _, _, err := runCLIErr(t, append([]string{"policy", "providers", "set", "Bad Name!"}, base...)...); err == nil {
		t.Fatal("an odd provider name was accepted")
	}
	if out := run("providers", "off"); !strings.Contains(out, "false") {
		t.Fatalf("providers off: %s", out)
	}
	if out := run("results"); !strings.Contains(out, "TIME") {
		t.Fatalf("results: %s", out)
	}
	run("group", "rm", "prod-guard")
}
