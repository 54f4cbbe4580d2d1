package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// Environment knobs:
//
//	GATEHOUSE_E2E_NODE_MODULES  a node_modules directory holding @pulumi/pulumi to use instead
//	                            of running `npm install` once per test binary
//	GATEHOUSE_E2E_N             number of component resources in the program (default 5)
const (
	envNodeModules = "GATEHOUSE_E2E_NODE_MODULES"
	envN           = "GATEHOUSE_E2E_N"
)

// agentEnv are variables by which the CLI detects an AI agent (and then offers a sign-up
// flow Gatehouse does not have); they are removed from the CLI's environment, as are all
// PULUMI_* variables of the caller.
var agentEnv = []string{"CLAUDECODE", "CLAUDE_CODE", "AI_AGENT", "CLAUDE_CODE_ENTRYPOINT", "CURSOR_AGENT", "GEMINI_CLI", "REPL_ID"}

// pulumiEnv is the environment for the pulumi CLI: the caller's, without agent markers and
// PULUMI_* settings, plus a private PULUMI_HOME and the access token.
func pulumiEnv(home, token string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PULUMI_") || strings.HasPrefix(k, "CODEX_") || contains(agentEnv, k) {
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"PULUMI_HOME="+home,
		"PULUMI_ACCESS_TOKEN="+token,
		"PULUMI_SKIP_UPDATE_CHECK=true",
		"PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true",
	)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// requirePulumi returns the pulumi binary and its version, or skips loudly.
func requirePulumi(t *testing.T) (bin, version string) {
	t.Helper()
	bin, err := exec.LookPath("pulumi")
	if err != nil {
		skipLoudly(t, "no `pulumi` CLI on PATH; install the stock Pulumi CLI to run the end-to-end test against it")
	}
	if _, err := exec.LookPath("node"); err != nil {
		skipLoudly(t, "no `node` on PATH; the test program is a Node.js project")
	}
	if _, err := exec.LookPath("pulumi-language-nodejs"); err != nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(bin), "pulumi-language-nodejs")); err != nil {
			skipLoudly(t, "no `pulumi-language-nodejs` on PATH or next to %s", bin)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "version")
	cmd.Env = pulumiEnv(t.TempDir(), "")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pulumi version: %v", err)
	}
	return bin, strings.TrimSpace(string(out))
}

var (
	nodeModulesOnce sync.Once
	nodeModulesDir  string
	nodeModulesErr  error
)

// nodeModules returns a node_modules directory holding @pulumi/pulumi, shared by every
// project of this test binary: $GATEHOUSE_E2E_NODE_MODULES, or one `npm install` into the
// scratch directory. It skips loudly when npm is needed and absent.
func nodeModules(t *testing.T, cliVersion string) string {
	t.Helper()
	if dir := os.Getenv(envNodeModules); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "@pulumi", "pulumi", "package.json")); err != nil {
			t.Fatalf("%s=%s does not hold @pulumi/pulumi: %v", envNodeModules, dir, err)
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipLoudly(t, "no `npm` on PATH to install @pulumi/pulumi (or set %s to a node_modules directory holding it)", envNodeModules)
	}
	nodeModulesOnce.Do(func() {
		dir := filepath.Join(scratch, "node")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			nodeModulesErr = err
			return
		}
		if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"gatehouse-e2e-deps","private":true}`+"\n"), 0o644); err != nil {
			nodeModulesErr = err
			return
		}
		// The SDK release matching the CLI (3.260.0 for 3.260.0-dev.0), else the newest 3.x.
		specs := []string{"@pulumi/pulumi@^3"}
		if m := regexp.MustCompile(`^v?(\d+\.\d+\.\d+)`).FindStringSubmatch(cliVersion); m != nil {
			specs = append([]string{"@pulumi/pulumi@" + m[1]}, specs...)
		}
		for _, spec := range specs {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", spec)
			cmd.Dir = dir
			start := time.Now()
			out, err := cmd.CombinedOutput()
			cancel()
			if err == nil {
				t.Logf("npm install %s: %.1fs", spec, time.Since(start).Seconds())
				nodeModulesDir, nodeModulesErr = filepath.Join(dir, "node_modules"), nil
				return
			}
			nodeModulesErr = fmt.Errorf("npm install %s: %v\n%s", spec, err, out)
		}
	})
	if nodeModulesErr != nil {
		t.Fatal(nodeModulesErr)
	}
	return nodeModulesDir
}

// programJS is the test program: n component resources and a secret output. When
// GATEHOUSE_E2E_HOLD names a file (and this is not a preview), the program writes it once
// the components are registered and then holds the update open until the file
// <name>.release appears (or GATEHOUSE_E2E_HOLD_MS passes), registering one more
// component after that: the update is then running and can be cancelled from outside.
const programJS = `"use strict";
const fs = require("fs");
const pulumi = require("@pulumi/pulumi");

class Comp extends pulumi.ComponentResource {
    constructor(name, args, opts) {
        super("e2e:index:Comp", name, {}, opts);
        this.registerOutputs({ index: args.index });
    }
}

const config = new pulumi.Config();
const n = config.getNumber("count") ?? %d;
for (let i = 0; i < n; i++) {
    new Comp("comp-" + i, { index: i });
}
exports.count = n;
exports.dbpass = pulumi.secret(config.requireSecret("dbpass"));

const hold = process.env.GATEHOUSE_E2E_HOLD;
if (hold && !pulumi.runtime.isDryRun()) {
    const limit = Date.now() + parseInt(process.env.GATEHOUSE_E2E_HOLD_MS || "300000", 10);
    exports.held = new Promise((resolve) => {
        fs.writeFileSync(hold, "running\n");
        const poll = () => {
            if (fs.existsSync(hold + ".release") || Date.now() > limit) {
                new Comp("late", { index: -1 });
                resolve("released");
            } else {
                setTimeout(poll, 100);
            }
        };
        poll();
    });
}
`

// writeProject writes a Node.js Pulumi project into dir with n components, linked to the
// shared node_modules.
func writeProject(t *testing.T, dir, name string, n int, modules string) {
	t.Helper()
	files := map[string]string{
		"Pulumi.yaml":  "name: " + name + "\nruntime: nodejs\ndescription: Gatehouse end-to-end test program\n",
		"package.json": `{"name":"` + name + `","main":"index.js","private":true,"dependencies":{"@pulumi/pulumi":"^3"}}` + "\n",
		"index.js":     fmt.Sprintf(programJS, n),
	}
	for f, body := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
}

// pulumiCLI runs the pulumi binary in a project directory.
type pulumiCLI struct {
	t   *testing.T
	bin string
	dir string
	env []string
}

type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("error: %v\n--- stdout:\n%s\n--- stderr:\n%s", r.err, r.stdout, r.stderr)
}

// cmdTimeout bounds every pulumi command; the machine may be slow and loaded.
const cmdTimeout = 10 * time.Minute

// start starts `pulumi args...` with extra environment variables; wait for its result.
func (p *pulumiCLI) start(extraEnv []string, args ...string) func() result {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	cmd := exec.CommandContext(ctx, p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(append([]string{}, p.env...), extraEnv...)
	cmd.Stdin = nil
	ownProcessGroup(cmd)
	cmd.WaitDelay = 10 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Start()
	return func() result {
		if err == nil {
			err = cmd.Wait()
		}
		cancel()
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %v: %w", cmdTimeout, err)
		}
		p.t.Logf("$ pulumi %s  (%.1fs, %v)", strings.Join(args, " "), time.Since(start).Seconds(), exitText(err))
		return result{stdout: stdout.String(), stderr: stderr.String(), err: err}
	}
}

func exitText(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

func (p *pulumiCLI) run(args ...string) result { return p.start(nil, args...)() }

// must runs pulumi and fails the test when it fails; it returns stdout and stderr (the
// CLI prints some confirmations on stderr).
func (p *pulumiCLI) must(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	if r.err != nil {
		p.t.Fatalf("pulumi %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout + r.stderr
}

// stdout runs pulumi and fails the test when it fails; it returns stdout alone (JSON).
func (p *pulumiCLI) stdout(args ...string) string {
	p.t.Helper()
	r := p.run(args...)
	if r.err != nil {
		p.t.Fatalf("pulumi %s failed:\n%s", strings.Join(args, " "), r)
	}
	return r.stdout
}

// mustContain asserts that out contains every one of wants.
func mustContain(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Fatalf("%s: output lacks %q:\n%s", what, w, out)
		}
	}
}

func mustJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("%s: not JSON (%v):\n%s", what, err, out)
	}
}

// gatehouseAdmin runs an administration command of the gatehouse binary against srv.
func gatehouseAdmin(t *testing.T, bin, url, token string, args ...string) string {
	t.Helper()
	args = append(args, "--server", url, "--token", token)
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gatehouse %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

// TestPulumiCLI drives the stock pulumi CLI through a stack's whole life against a
// gatehouse server process.
func TestPulumiCLI(t *testing.T) {
	pulumiBin, version := requirePulumi(t)
	t.Logf("pulumi %s (%s)", version, pulumiBin)
	modules := nodeModules(t, version)
	n := 5
	if v := os.Getenv(envN); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			t.Fatalf("%s=%q is not a positive number", envN, v)
		}
	}
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t))
	api := client(srv.URL, token)

	proj := t.TempDir()
	writeProject(t, proj, "e2e", n, modules)
	p := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: pulumiEnv(t.TempDir(), token)}
	secret := "s3cret-" + randomHex(8)
	resources := n + 1 // the components and the stack

	// Login and identity.
	out := p.must("login", srv.URL)
	mustContain(t, "login", out, "Logged in to "+srv.URL+" as alice")
	out = p.must("whoami", "-v")
	mustContain(t, "whoami -v", out, "User: alice", "Organizations: acme", "Token type: personal")
	if out := strings.TrimSpace(p.stdout("whoami")); out != "alice" {
		t.Fatalf("whoami = %q, want alice", out)
	}

	// A team made with the admin CLI, and a stack created for it.
	gatehouseAdmin(t, bin, srv.URL, token, "team", "create", "ops", "--org", "acme", "--description", "e2e operators")
	out = p.must("stack", "init", "acme/dev", "--teams", "ops")
	mustContain(t, "stack init", out, "Created stack 'dev'")
	wantTeamGrant(t, bin, srv.URL, token, "ops", "e2e/dev")

	// A secret config value: encrypted by the server, never in the clear on disk.
	p.must("config", "set", "--secret", "dbpass", secret)
	cfg, err := os.ReadFile(filepath.Join(proj, "Pulumi.dev.yaml"))
	must(t, err)
	mustContain(t, "Pulumi.dev.yaml", string(cfg), "e2e:dbpass:", "secure: ")
	if strings.Contains(string(cfg), secret) || strings.Contains(string(cfg), "encryptionsalt") {
		t.Fatalf("Pulumi.dev.yaml holds the plaintext or a passphrase salt:\n%s", cfg)
	}
	if out := strings.TrimSpace(p.stdout("config", "get", "dbpass")); out != secret {
		t.Fatalf("config get dbpass = %q", out)
	}

	// up, preview, refresh.
	out = p.must("up", "--yes")
	mustContain(t, "up", out, fmt.Sprintf("+ %d created", resources), "dbpass: [secret]")
	out = p.must("preview")
	mustContain(t, "preview", out, fmt.Sprintf("%d unchanged", resources))
	out = p.must("refresh", "--yes")
	mustContain(t, "refresh", out, fmt.Sprintf("%d unchanged", resources))

	// Outputs, with and without secrets.
	wantOutputs(t, p, n, secret)
	if out := strings.TrimSpace(p.stdout("stack", "output", "dbpass")); out != "[secret]" {
		t.Fatalf("stack output dbpass without --show-secrets = %q", out)
	}

	// Export and import.
	exp := filepath.Join(t.TempDir(), "export.json")
	p.must("stack", "export", "--file", exp)
	doc := readDeployment(t, exp)
	if len(doc.Deployment.Resources) != resources || doc.Deployment.SecretsProviders == nil || doc.Deployment.SecretsProviders.Type != "service" {
		t.Fatalf("export: %d resources (want %d), secrets provider %+v", len(doc.Deployment.Resources), resources, doc.Deployment.SecretsProviders)
	}
	if raw, _ := os.ReadFile(exp); bytes.Contains(raw, []byte(secret)) {
		t.Fatal("stack export (without --show-secrets) holds the secret in the clear")
	}
	out = p.must("stack", "import", "--file", exp)
	mustContain(t, "stack import", out, "Import complete.")
	again := filepath.Join(t.TempDir(), "export2.json")
	p.must("stack", "export", "--file", again)
	if got := readDeployment(t, again); !sameURNs(got, doc) {
		t.Fatalf("export after import differs: %v vs %v", urnList(got), urnList(doc))
	}
	wantOutputs(t, p, n, secret)

	// History: newest first, the preview left no entry.
	hist := history(t, p)
	wantKinds(t, hist, "import", "refresh", "update")
	if hist[2].Result != "succeeded" || hist[2].ResourceChanges["create"] != resources || hist[0].Version != 3 {
		t.Fatalf("history = %+v", hist)
	}

	// Tags.
	p.must("stack", "tag", "set", "owner", "platform-team")
	var tags map[string]string
	mustJSON(t, "stack tag ls", p.stdout("stack", "tag", "ls", "--json"), &tags)
	if tags["owner"] != "platform-team" || tags["pulumi:project"] != "e2e" {
		t.Fatalf("tags = %v", tags)
	}
	p.must("stack", "tag", "rm", "owner")
	tags = nil
	mustJSON(t, "stack tag ls", p.stdout("stack", "tag", "ls", "--json"), &tags)
	if _, ok := tags["owner"]; ok {
		t.Fatalf("tag owner still set after rm: %v", tags)
	}

	// pulumi cancel of a running update, from a second process.
	testCancel(t, p, api, resources)

	// Rename: the secrets stay readable, the team's grant follows, the state follows.
	out = p.must("stack", "rename", "acme/e2e/dev2")
	mustContain(t, "stack rename", out, "Renamed dev to dev2")
	if _, err := os.Stat(filepath.Join(proj, "Pulumi.dev2.yaml")); err != nil {
		t.Fatalf("the CLI did not move the stack's config file: %v", err)
	}
	var stacks []struct {
		Name string `json:"name"`
	}
	mustJSON(t, "stack ls", p.stdout("stack", "ls", "--json"), &stacks)
	if len(stacks) != 1 || !strings.HasSuffix(stacks[0].Name, "dev2") {
		t.Fatalf("stack ls after rename = %+v", stacks)
	}
	if err := api.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/e2e/dev"}, nil); cliwire.Status(err) != http.StatusNotFound {
		t.Fatalf("GET of the old stack name after rename: want 404, got %v", err)
	}
	wantOutputs(t, p, n, secret)
	if out := strings.TrimSpace(p.stdout("config", "get", "dbpass")); out != secret {
		t.Fatalf("config get dbpass after rename = %q", out)
	}
	wantTeamGrant(t, bin, srv.URL, token, "ops", "e2e/dev2")
	// The CLI's file backend and the hosted service rewrite every URN of the checkpoint on
	// rename (pkg/resource/edit.RenameStack in pulumi/pulumi); without that the next update
	// replaces every resource of the stack. A subtest, so that it can be told apart (and
	// skipped with -skip while the server lacks it).
	t.Run("rename_rewrites_URNs", func(t *testing.T) {
		p := &pulumiCLI{t: t, bin: p.bin, dir: p.dir, env: p.env}
		renamed := filepath.Join(t.TempDir(), "renamed.json")
		p.must("stack", "export", "--file", renamed)
		for _, u := range urnList(readDeployment(t, renamed)) {
			if !strings.HasPrefix(u, "urn:pulumi:dev2::e2e::") {
				t.Errorf("after `pulumi stack rename` the checkpoint still holds %s (want the stack part of every URN renamed to dev2)", u)
				break
			}
		}
		out := p.must("preview")
		if !strings.Contains(out, fmt.Sprintf("%d unchanged", resources)) {
			t.Errorf("preview after rename plans changes (want %d unchanged):\n%s", resources, out)
		}
	})

	// A secret never reaches the server's disk or logs in the clear.
	scanForSecret(t, dataDir, secret)
	if strings.Contains(srv.logTail(1<<20), secret) {
		t.Fatal("the server log holds the secret in the clear")
	}

	// stack rm refuses while resources remain; destroy; then stack rm.
	r := p.run("stack", "rm", "--yes")
	if r.err == nil {
		t.Fatalf("stack rm of a stack with resources succeeded:\n%s", r)
	}
	mustContain(t, "stack rm with resources", r.stdout+r.stderr, "still has resources")
	out = p.must("destroy", "--yes")
	mustContain(t, "destroy", out, fmt.Sprintf("- %d deleted", resources))
	hist = history(t, p)
	if hist[0].Kind != "destroy" || hist[0].Result != "succeeded" || hist[0].ResourceChanges["delete"] != resources {
		t.Fatalf("history after destroy: %+v", hist[0])
	}
	out = p.must("stack", "rm", "--yes")
	mustContain(t, "stack rm", out, "has been removed")
	stacks = nil
	mustJSON(t, "stack ls", p.stdout("stack", "ls", "--json"), &stacks)
	if len(stacks) != 0 {
		t.Fatalf("stack ls after stack rm = %+v", stacks)
	}
	if _, err := os.Stat(filepath.Join(proj, "Pulumi.dev2.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stack rm left the stack's config file: %v", err)
	}
	if err := api.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/e2e/dev2"}, nil); cliwire.Status(err) != http.StatusNotFound {
		t.Fatalf("GET of the removed stack: want 404, got %v", err)
	}
	p.must("logout")
}

// testCancel starts `pulumi up` with a program that holds the update open, cancels it with
// `pulumi cancel` from a second process, and checks that the running up fails and a later
// up succeeds.
func testCancel(t *testing.T, p *pulumiCLI, api *cliwire.Client, resources int) {
	t.Helper()
	marker := filepath.Join(t.TempDir(), "held")
	wait := p.start([]string{"GATEHOUSE_E2E_HOLD=" + marker}, "up", "--yes", "--skip-preview")
	deadline := time.Now().Add(cmdTimeout)
	for {
		if _, err := os.Stat(marker); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the held update never started:\n%s", wait())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var st apitype.Stack
	must(t, api.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/e2e/dev"}, &st))
	if st.ActiveUpdate == "" {
		t.Fatal("the held update is running but the stack has no active update")
	}
	out := p.must("cancel", "--yes")
	mustContain(t, "cancel", out, "has been canceled")
	st = apitype.Stack{}
	must(t, api.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/e2e/dev"}, &st))
	if st.ActiveUpdate != "" {
		t.Fatalf("after pulumi cancel the stack still has active update %s", st.ActiveUpdate)
	}
	must(t, os.WriteFile(marker+".release", nil, 0o644))
	r := wait()
	if r.err == nil {
		t.Fatalf("the cancelled up succeeded:\n%s", r)
	}
	mustContain(t, "cancelled up", r.stdout+r.stderr, "error: ")
	hist := history(t, p)
	if hist[0].Kind != "update" || hist[0].Result != "failed" {
		t.Fatalf("history after cancel: newest %+v", hist[0])
	}
	// The next up succeeds; nothing of the cancelled update's late component remains.
	out = p.must("up", "--yes", "--skip-preview")
	mustContain(t, "up after cancel", out, fmt.Sprintf("%d unchanged", resources))
	hist = history(t, p)
	if hist[0].Kind != "update" || hist[0].Result != "succeeded" {
		t.Fatalf("history after the up that followed the cancel: newest %+v", hist[0])
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func wantOutputs(t *testing.T, p *pulumiCLI, n int, secret string) {
	t.Helper()
	var outs map[string]any
	mustJSON(t, "stack output", p.stdout("stack", "output", "--show-secrets", "--json"), &outs)
	if outs["dbpass"] != secret || outs["count"] != float64(n) {
		t.Fatalf("stack output --show-secrets = %v", outs)
	}
}

func wantTeamGrant(t *testing.T, bin, url, token, team, stack string) {
	t.Helper()
	var show struct {
		Grants []struct {
			Stack      string `json:"stack"`
			Permission string `json:"permission"`
		} `json:"grants"`
	}
	mustJSON(t, "team show", gatehouseAdmin(t, bin, url, token, "team", "show", team, "--org", "acme", "--json"), &show)
	for _, g := range show.Grants {
		if g.Stack == stack && g.Permission == "write" {
			return
		}
	}
	t.Fatalf("team %s has no write grant on %s: %+v", team, stack, show.Grants)
}

type historyEntry struct {
	Version         int            `json:"version"`
	Kind            string         `json:"kind"`
	Result          string         `json:"result"`
	ResourceChanges map[string]int `json:"resourceChanges"`
}

func history(t *testing.T, p *pulumiCLI) []historyEntry {
	t.Helper()
	var h []historyEntry
	mustJSON(t, "stack history", p.stdout("stack", "history", "--json"), &h)
	if len(h) == 0 {
		t.Fatal("stack history is empty")
	}
	return h
}

func wantKinds(t *testing.T, h []historyEntry, kinds ...string) {
	t.Helper()
	var got []string
	for _, e := range h {
		got = append(got, e.Kind)
	}
	if strings.Join(got, ",") != strings.Join(kinds, ",") {
		t.Fatalf("history kinds = %v, want %v", got, kinds)
	}
}

func readDeployment(t *testing.T, path string) apitype.TypedDeployment {
	t.Helper()
	raw, err := os.ReadFile(path)
	must(t, err)
	var doc apitype.UntypedDeployment
	must(t, json.Unmarshal(raw, &doc))
	var d apitype.DeploymentV3
	must(t, json.Unmarshal(doc.Deployment, &d))
	return apitype.TypedDeployment{Version: doc.Version, Deployment: &d}
}

func urnList(d apitype.TypedDeployment) []string {
	var out []string
	for _, r := range d.Deployment.Resources {
		out = append(out, string(r.URN))
	}
	return out
}

func sameURNs(a, b apitype.TypedDeployment) bool {
	return strings.Join(urnList(a), "\n") == strings.Join(urnList(b), "\n")
}

// scanForSecret fails if any file of the data directory holds the plaintext.
func scanForSecret(t *testing.T, dir, secret string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s holds the secret in the clear", path)
		}
		return nil
	})
	must(t, err)
}
