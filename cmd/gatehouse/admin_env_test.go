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
