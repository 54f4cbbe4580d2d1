package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestDeployments: a protected stack changed only through Gatehouse's pipeline. Deployment
// settings (made with pulumi deployment settings edit) point at a local git repository of
// the test program; a person's own pulumi up is refused; pulumi deployment run update
// queues a run that a gatehouse runner process executes with its short-lived credential,
// and the CLI streams it; a signed GitHub push webhook triggers another run.
func TestDeployments(t *testing.T) {
	pulumiBin, version := requirePulumi(t)
	if _, err := exec.LookPath("git"); err != nil {
		skipLoudly(t, "no `git` on PATH; the runner checks the source out with git")
	}
	modules := nodeModules(t, version)
	bin := gatehouseBinary(t)
	const secret = "e2e-webhook-secret"
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t), "--github-webhook-secret", secret)
	api := client(srv.URL, token)

	// The program, in a git repository on branch main.
	repo := t.TempDir()
	writeProject(t, repo, "e2e", 2, modules)
	gitIn(t, repo, "init", "-q", "-b", "main")
	gitIn(t, repo, "add", ".")
	gitIn(t, repo, "commit", "-q", "-m", "the program")

	p := &pulumiCLI{t: t, bin: pulumiBin, dir: repo, env: pulumiEnv(t.TempDir(), token)}
	p.must("login", srv.URL)
	p.must("stack", "init", "acme/prod")
	p.must("stack", "tag", "set", "env", "production")
	must(t, api.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
	// The program's secret configuration, committed (encrypted by the server), and an
	// environment the stack imports (`environment:` in Pulumi.prod.yaml): its count (3,
	// where the program's default is 2) reaches the program only if the runner's CLI opens
	// it with the run's credential.
	p.must("config", "set", "--secret", "dbpass", "e2e-db-"+randomHex(4))
	p.must("env", "init", "acme/app/base")
	p.must("env", "set", "acme/app/base", "pulumiConfig.count", "3")
	stackFile := filepath.Join(repo, "Pulumi.prod.yaml")
	b, err := os.ReadFile(stackFile)
	must(t, err)
	must(t, os.WriteFile(stackFile, append(b, []byte("environment:\n  - app/base\n")...), 0o644))
	gitIn(t, repo, "add", ".")
	gitIn(t, repo, "commit", "-q", "-m", "config")

	// A person (even the admin) cannot change the protected stack.
	r := p.run("up", "--yes", "--skip-preview")
	if r.err == nil || !strings.Contains(r.stdout+r.stderr, "protected") {
		t.Fatalf("a person's pulumi up on a protected stack:\n%s", r)
	}

	// Settings, as the CLI makes them; the GitHub repository the webhook names.
	out := p.must("deployment", "settings", "edit", "--git-url", repo, "--branch", "main",
		"--env", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true", "--secret-env", "APP_SECRET=e2e-s3cret")
	mustContain(t, "deployment settings edit", out, repo, "main")
	// With Gatehouse's own member (pull request runs' environments): the CLI still reads
	// the settings, and its edits (merge patches) keep it.
	must(t, api.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/e2e/prod/deployments/settings",
		Body: map[string]any{"gitHub": map[string]any{"repository": "acme/infra", "deployCommits": true},
			"gatehouse": map[string]any{"pullRequestEnvironments": true}}}, nil))
	out = p.must("deployment", "settings", "get", "--output", "json")
	if strings.Contains(out, "e2e-s3cret") {
		t.Fatalf("settings get shows a secret:\n%s", out)
	}
	mustContain(t, "deployment settings get", out, `"repository": "acme/infra"`, `"branch": "main"`)
	p.must("deployment", "settings", "edit", "--branch", "main")
	var stored map[string]any
	must(t, api.Do(cliwire.Call{Method: "GET", Path: "/api/stacks/acme/e2e/prod/deployments/settings"}, &stored))
	if g, _ := stored["gatehouse"].(map[string]any); g["pullRequestEnvironments"] != true {
		t.Fatalf("the CLI's edit lost gatehouse.pullRequestEnvironments: %v", stored)
	}

	// A runner pool and a runner process with the host's pulumi.
	var pool struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, api.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/agent-pools", Body: map[string]string{"name": "default"}}, &pool))
	startRunner(t, bin, srv.URL, pool.TokenValue, pulumiBin)

	// The pipeline updates the protected stack; the CLI streams the run.
	out = p.must("deployment", "run", "update", "--suppress-stream-logs=false")
	mustContain(t, "deployment run update", out, "View Live:", "Get source:", "pulumi update:", "created")
	var list struct {
		Deployments []struct {
			ID      string `json:"id"`
			Status  string `json:"status"`
			Updates []struct {
				Version int `json:"version"`
			} `json:"updates"`
		} `json:"deployments"`
		Total int `json:"total"`
	}
	// The CLI returns once the update ended; the runner reports the run's end just after
	// (with isolated runs, after its cleanup): poll until it has.
	for deadline := time.Now().Add(cmdTimeout); ; time.Sleep(200 * time.Millisecond) {
		must(t, api.Do(cliwire.Call{Method: "GET", Path: "/api/stacks/acme/e2e/prod/deployments"}, &list))
		if list.Total != 1 || (list.Deployments[0].Status != "running" && list.Deployments[0].Status != "not-started") || time.Now().After(deadline) {
			break
		}
	}
	if list.Total != 1 || list.Deployments[0].Status != "succeeded" || len(list.Deployments[0].Updates) != 1 {
		t.Fatalf("after deployment run: %+v", list)
	}
	if got := strings.TrimSpace(p.stdout("stack", "output", "count")); got != "3" {
		t.Fatalf("stack output count = %q after the run, want 3 (from the imported environment)", got)
	}
	// The open was the run's credential's, acting for alice who triggered the run.
	var audit struct {
		AuditLogEvents []struct {
			Event   string            `json:"event"`
			Outcome string            `json:"outcome"`
			Details map[string]string `json:"details"`
		} `json:"auditLogEvents"`
	}
	must(t, api.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?startTime=0&pageSize=1000"}, &audit))
	opened := false
	for _, ev := range audit.AuditLogEvents {
		if ev.Details["deployment"] == list.Deployments[0].ID && ev.Details["environment"] != "" && ev.Outcome == "success" &&
			strings.Contains(ev.Details["actsFor"], "alice") {
			opened = true
		}
	}
	if !opened {
		t.Errorf("no audited environment open by deployment %s acting for alice", list.Deployments[0].ID)
	}
	// ...and the person still cannot.
	if r := p.run("destroy", "--yes", "--skip-preview"); r.err == nil || !strings.Contains(r.stdout+r.stderr, "protected") {
		t.Fatalf("a person's destroy of the protected stack succeeded:\n%s", r)
	}

	// A push to main, signed as GitHub signs it, runs the stack again.
	body := []byte(`{"ref":"refs/heads/main","after":"` + headCommit(t, repo) + `","repository":{"full_name":"acme/infra"},"sender":{"login":"octocat"},"commits":[]}`)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	anon := cliwire.New(srv.URL, "")
	must(t, anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"push"}, "X-Hub-Signature-256": {"sha256=" + hex.EncodeToString(m.Sum(nil))}}}, nil))
	deadline := time.Now().Add(cmdTimeout)
	for {
		must(t, api.Do(cliwire.Call{Method: "GET", Path: "/api/stacks/acme/e2e/prod/deployments"}, &list))
		if list.Total == 2 && list.Deployments[0].Status == "succeeded" {
			break
		}
		if list.Total == 2 && list.Deployments[0].Status == "failed" || time.Now().After(deadline) {
			t.Fatalf("the webhook's run: %+v", list)
		}
		time.Sleep(time.Second)
	}
}

func gitIn(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=e2e", "GIT_AUTHOR_EMAIL=e2e@example.com", "GIT_COMMITTER_NAME=e2e", "GIT_COMMITTER_EMAIL=e2e@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

func headCommit(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command("git", "rev-parse", "HEAD")
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// startRunner runs `gatehouse runner` with the pool's token and the host's pulumi first
// on PATH; it is stopped when the test ends.
func startRunner(t *testing.T, bin, url, poolToken, pulumiBin string) {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "runner-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(context.Background(), bin, "runner", "--server", url, "--pool", "default", "--poll", "500ms", "--work-dir", t.TempDir())
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PULUMI_") && !strings.HasPrefix(kv, "GATEHOUSE_") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GATEHOUSE_RUNNER_TOKEN="+poolToken, "PATH="+filepath.Dir(pulumiBin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logf, logf
	ownProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start gatehouse runner: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("gatehouse runner log:\n%s", b)
		}
	})
}
