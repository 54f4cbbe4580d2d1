package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPulumiEnv drives `pulumi env` (the stock CLI's ESC commands) against a gatehouse
// server process: init, set (plain and --secret), get (with and without --show-secrets),
// edit through $EDITOR, open, run, version history and tags, retract, environment tags, ls,
// rm, and a team member refused what their grant does not allow. It needs only the pulumi
// binary, and skips loudly without it.
func TestPulumiEnv(t *testing.T) {
	pulumiBin, err := exec.LookPath("pulumi")
	if err != nil {
		skipLoudly(t, "no `pulumi` CLI on PATH; install the stock Pulumi CLI to run `pulumi env` against the server")
	}
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t))
	home := t.TempDir()
	p := &pulumiCLI{t: t, bin: pulumiBin, dir: t.TempDir(), env: pulumiEnv(home, token)}
	p.must("login", srv.URL)

	const E = "acme/app/dev"
	p.must("env", "init", E)
	p.must("env", "set", E, "region", "eu-west-1")
	p.must("env", "set", E, "db.password", "--secret", "hunter2")
	p.must("env", "set", E, "environmentVariables.REGION", "${region}")
	p.must("env", "set", E, "environmentVariables.DB_PASSWORD", "${db.password}")

	out := p.must("env", "get", E)
	mustContain(t, "env get", out, "eu-west-1", "[secret]")
	if strings.Contains(out, "hunter2") {
		t.Fatalf("env get shows the secret:\n%s", out)
	}
	mustContain(t, "env get --show-secrets", p.must("env", "get", E, "--show-secrets"), "hunter2")
	if got := strings.TrimSpace(p.stdout("env", "get", E, "region", "--value", "string")); got != "eu-west-1" {
		t.Fatalf("env get region --value string = %q", got)
	}

	var opened map[string]any
	mustJSON(t, "env open", p.stdout("env", "open", E), &opened)
	if db, _ := opened["db"].(map[string]any); db["password"] != "hunter2" || opened["region"] != "eu-west-1" {
		t.Fatalf("env open = %v", opened)
	}
	// env run masks secrets in the command's output; the command itself sees the value.
	pwFile := filepath.Join(t.TempDir(), "pw")
	out = p.must("env", "run", E, "--", "sh", "-c", `echo "region=$REGION pw=$DB_PASSWORD"; printf %s "$DB_PASSWORD" > `+pwFile)
	mustContain(t, "env run", out, "region=eu-west-1 pw=[secret]")
	if b, err := os.ReadFile(pwFile); err != nil || string(b) != "hunter2" {
		t.Fatalf("env run: the command saw DB_PASSWORD %q (%v)", b, err)
	}

	// env edit: $EDITOR rewrites the definition the CLI read; the CLI writes it back with
	// the ETag it read.
	editor := filepath.Join(t.TempDir(), "editor.sh")
	must(t, os.WriteFile(editor, []byte("#!/bin/sh\nsed -i 's/eu-west-1/us-east-2/' \"$1\"\n"), 0o755))
	ed := &pulumiCLI{t: t, bin: pulumiBin, dir: p.dir, env: append(append([]string{}, p.env...), "EDITOR="+editor)}
	ed.must("env", "edit", E)
	if got := strings.TrimSpace(p.stdout("env", "get", E, "region", "--value", "string")); got != "us-east-2" {
		t.Fatalf("after env edit, region = %q", got)
	}

	// Versions: history, a tag, reading a tagged revision, retracting one.
	out = p.must("env", "version", "history", E)
	mustContain(t, "env version history", out, "revision 6", "revision 1")
	p.must("env", "version", "tag", E+"@stable", "5")
	if got := strings.TrimSpace(p.stdout("env", "get", E+"@stable", "region", "--value", "string")); got != "eu-west-1" {
		t.Fatalf("env get @stable region = %q", got)
	}
	p.must("env", "version", "retract", E+"@3", "--reason", "wrong value")
	if r := p.run("env", "get", E+"@3"); r.err == nil {
		t.Fatalf("a retracted revision was read:\n%s", r)
	}
	mustContain(t, "history shows the retraction", p.must("env", "version", "history", E), "retracted")

	// Environment tags (name/value).
	p.must("env", "tag", E, "team", "platform")
	mustContain(t, "env tag ls", p.must("env", "tag", "ls", E), "team", "platform")

	// A member with read only: definitions yes, secrets and open no.
	memberToken := strings.TrimSpace(gatehouseAdmin(t, bin, srv.URL, token, "user", "create", "bob", "--org", "acme", "--role", "member"))
	gatehouseAdmin(t, bin, srv.URL, token, "org", "set", "acme", "--default-environment-permission", "read")
	m := &pulumiCLI{t: t, bin: pulumiBin, dir: t.TempDir(), env: pulumiEnv(t.TempDir(), memberToken)}
	m.must("login", srv.URL)
	mustContain(t, "member env get", m.must("env", "get", E), "[secret]")
	if r := m.run("env", "open", E); r.err == nil || !strings.Contains(r.stderr+r.stdout, "403") && !strings.Contains(r.stderr+r.stdout, "open") {
		t.Fatalf("a reader opened the environment:\n%s", r)
	}

	// ls and rm.
	var ls []string
	out = p.stdout("env", "ls")
	for _, l := range strings.Fields(out) {
		ls = append(ls, l)
	}
	mustContain(t, "env ls", strings.Join(ls, " "), E)
	p.must("env", "rm", E, "--yes")
	if r := p.run("env", "get", E); r.err == nil {
		t.Fatalf("env get after rm:\n%s", r)
	}
}

// TestPulumiStackEnvironment: a stack whose Pulumi.<stack>.yaml imports an environment
// (`environment: [app/base]`) gets a plain value and a secret from it at `pulumi up`; the
// secret stays a secret in the stack's outputs; a member who may read but not open the
// environment cannot preview the stack (the error names the environment). Needs pulumi,
// node and npm (or GATEHOUSE_E2E_NODE_MODULES); skips loudly otherwise.
func TestPulumiStackEnvironment(t *testing.T) {
	pulumiBin, version := requirePulumi(t)
	modules := nodeModules(t, version)
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t))
	proj := t.TempDir()
	writeProject(t, proj, "envapp", 1, modules)
	p := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: pulumiEnv(t.TempDir(), token)}
	p.must("login", srv.URL)

	secret := "env-secret-" + randomHex(6)
	p.must("env", "init", "acme/app/base")
	p.must("env", "set", "acme/app/base", "pulumiConfig.count", "3")
	p.must("env", "set", "acme/app/base", "pulumiConfig.dbpass", "--secret", secret)

	p.must("stack", "init", "acme/dev")
	must(t, os.WriteFile(filepath.Join(proj, "Pulumi.dev.yaml"), []byte("environment:\n  - app/base\n"), 0o644))
	out := p.must("up", "--yes")
	mustContain(t, "up", out, "+ 4 created", "dbpass: [secret]")
	if strings.Contains(out, secret) {
		t.Fatalf("pulumi up printed the environment's secret:\n%s", out)
	}
	if got := strings.TrimSpace(p.stdout("stack", "output", "count")); got != "3" {
		t.Fatalf("stack output count = %q, want 3 (from the environment)", got)
	}
	if got := strings.TrimSpace(p.stdout("stack", "output", "dbpass", "--show-secrets")); got != secret {
		t.Fatalf("stack output dbpass = %q, want the environment's secret", got)
	}

	// A member who may write stacks but only read environments: the import is refused.
	gatehouseAdmin(t, bin, srv.URL, token, "org", "set", "acme", "--default-stack-permission", "write", "--default-environment-permission", "read")
	memberToken := strings.TrimSpace(gatehouseAdmin(t, bin, srv.URL, token, "user", "create", "bob", "--org", "acme", "--role", "member"))
	m := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: pulumiEnv(t.TempDir(), memberToken)}
	m.must("login", srv.URL)
	r := m.run("preview", "--stack", "acme/dev")
	if r.err == nil || !strings.Contains(r.stdout+r.stderr, "app/base") {
		t.Fatalf("a member without open on app/base previewed the stack:\n%s", r)
	}
}
