package deploy_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// server is a Gatehouse behind a proxy whose backend can be replaced (a restart).
type server struct {
	t       *testing.T
	dir     string
	admin   *cliwire.Client
	url     string
	backend atomic.Pointer[url.URL]
	stop    func()
}

func (s *server) start(tok string) string {
	s.t.Helper()
	cfg := httpapi.DefaultConfig()
	cfg.Deploy.LeaseDuration = 4 * time.Second
	srv, err := app.Open(context.Background(), app.Config{DataDir: s.dir}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		s.t.Fatal(err)
	}
	if tok == "" {
		if tok, err = app.Bootstrap(context.Background(), srv.Store, "acme", "alice"); err != nil {
			s.t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler)
	u, _ := url.Parse(hs.URL)
	s.backend.Store(u)
	s.stop = func() { hs.Close(); srv.Close() }
	return tok
}

func newServer(t *testing.T) *server {
	s := &server{t: t, dir: t.TempDir()}
	tok := s.start("")
	proxy := httptest.NewServer(&httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(s.backend.Load()) }})
	t.Cleanup(func() { proxy.Close(); s.stop() })
	s.url = proxy.URL
	s.admin = cliwire.New(proxy.URL, tok)
	return s
}

func (s *server) restart() {
	s.stop()
	s.start(s.admin.Token)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func git(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %v: %v\n%s", args, err, out)
	}
}

// repo makes a git repository with a Pulumi.yaml on branch main.
func repo(t *testing.T) string {
	dir := t.TempDir()
	git(t, dir, "init", "-q", "-b", "main")
	must(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte("name: proj\nruntime: yaml\n"), 0o644))
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "init")
	return dir
}

// fakePulumi is a pulumi that prints what it was given: its arguments, the names of its
// environment, and the secret's length; FAKE_SLEEP makes it take that long, printing.
const fakePulumi = `#!/bin/sh
if [ "$1" = version ]; then echo v3.260.0; exit 0; fi
echo "fake pulumi $*"
echo "env: $(env | sed 's/=.*//' | sort | tr '\n' ' ')"
echo "api-key-length: ${#API_KEY}"
echo "credential: $(echo "$PULUMI_ACCESS_TOKEN" | cut -c1-17)"
test -f Pulumi.yaml && echo "found Pulumi.yaml"
test -e ../ssh-key && echo "ssh key left behind"
test -e ../askpass && echo "askpass left behind"
i=0
while [ "$i" -lt "${FAKE_SLEEP:-0}" ]; do echo "working $i"; sleep 1; i=$((i+1)); done
exit ${FAKE_EXIT:-0}
`

type fixture struct {
	s      *server
	runner *deploy.Runner
	prod   string
	cfg    deploy.RunnerConfig // the runner's configuration (withRunner varies it)
}

// withRunner replaces the fixture's runner by one whose configuration mod changes.
func (f *fixture) withRunner(t *testing.T, mod func(*deploy.RunnerConfig)) {
	t.Helper()
	cfg := f.cfg
	mod(&cfg)
	r, err := deploy.NewRunner(context.Background(), cfg)
	must(t, err)
	f.runner = r
}

func newFixture(t *testing.T) *fixture {
	if runtime.GOOS == "windows" {
		t.Skip("the fake pulumi is a shell script")
	}
	if _, err := exec.LookPath("git"); err != nil {
		skipLoudly(t, "no git binary on this host; the runner's checkout cannot be tested")
	}
	s := newServer(t)
	must(t, s.admin.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: map[string]any{"stackName": "prod"}}, nil))
	var pool struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, s.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/agent-pools", Body: map[string]string{"name": "default"}}, &pool))
	bin := t.TempDir()
	must(t, os.WriteFile(filepath.Join(bin, "pulumi"), []byte(fakePulumi), 0o755))
	t.Setenv("RUNNER_ONLY_SECRET", "must-not-reach-the-run")
	cfg := deploy.RunnerConfig{Server: s.url, Token: pool.TokenValue, Pool: "default", Name: "test-runner",
		Pulumi: filepath.Join(bin, "pulumi"), WorkDir: t.TempDir(), Poll: 100 * time.Millisecond, Container: "none", Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	r, err := deploy.NewRunner(context.Background(), cfg)
	must(t, err)
	if r.PulumiVersion() != "v3.260.0" {
		t.Errorf("pulumi version = %q", r.PulumiVersion())
	}
	return &fixture{s: s, runner: r, prod: "/api/stacks/acme/proj/prod", cfg: cfg}
}

func (f *fixture) settings(t *testing.T, repoURL string, pre []string, env map[string]any) {
	t.Helper()
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
		"sourceContext":    map[string]any{"git": map[string]any{"repoUrl": repoURL, "branch": "main"}},
		"operationContext": map[string]any{"preRunCommands": pre, "environmentVariables": env},
	}}, nil))
}

func (f *fixture) trigger(t *testing.T, op string) string {
	t.Helper()
	var out struct {
		ID string `json:"id"`
	}
	must(t, f.s.admin.Do(cliwire.Call{Method: "POST", Path: f.prod + "/deployments", Body: map[string]any{"operation": op}}, &out))
	return out.ID
}

func (f *fixture) deployment(t *testing.T, id string) (map[string]any, string) {
	t.Helper()
	var d map[string]any
	must(t, f.s.admin.Do(cliwire.Call{Method: "GET", Path: f.prod + "/deployments/" + id}, &d))
	var text strings.Builder
	tok := ""
	for range 100 {
		var page deploy.LogsView
		p := f.prod + "/deployments/" + id + "/logs"
		if tok != "" {
			p += "?continuationToken=" + tok
		}
		must(t, f.s.admin.Do(cliwire.Call{Method: "GET", Path: p}, &page))
		for _, l := range page.Lines {
			if l.Header != "" {
				text.WriteString("## " + l.Header + "\n")
			}
			text.WriteString(l.Line)
		}
		if page.NextToken == "" || page.NextToken == tok {
			break
		}
		tok = page.NextToken
	}
	return d, text.String()
}

// TestRunnerRunsAStack: a run checks the source out of a local git repository, runs the
// pre-run commands and pulumi with only the settings' variables and its own credential,
// and streams the output back.
func TestRunnerRunsAStack(t *testing.T) {
	f := newFixture(t)
	f.settings(t, repo(t), []string{"echo pre-run says hi"}, map[string]any{"PLAIN": "p", "API_KEY": map[string]string{"secret": "0123456789"}})
	id := f.trigger(t, "update")
	ran, err := f.runner.RunOne(context.Background())
	if err != nil || !ran {
		t.Fatalf("RunOne = %v, %v", ran, err)
	}
	d, logs := f.deployment(t, id)
	if d["status"] != "succeeded" {
		t.Fatalf("status %v; logs:\n%s", d["status"], logs)
	}
	for _, want := range []string{"## Get source", "## Pre-run commands", "pre-run says hi", "## pulumi update",
		"fake pulumi up --stack acme/proj/prod --non-interactive --yes --skip-preview", "api-key-length: 10", "credential: gatehouse_deploy_", "found Pulumi.yaml"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	envLine := ""
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, "env: ") {
			envLine = l
		}
	}
	for _, want := range []string{" PLAIN ", " API_KEY ", " PULUMI_ACCESS_TOKEN ", " PULUMI_BACKEND_URL "} {
		if !strings.Contains(envLine+" ", want) {
			t.Errorf("the run's environment lacks %s: %s", want, envLine)
		}
	}
	if strings.Contains(envLine, "RUNNER_ONLY_SECRET") || strings.Contains(logs, "0123456789") {
		t.Errorf("the runner's environment or a secret reached the run's output: %s", envLine)
	}
}

// TestRunnerFailures: an unclonable repository and a failing pre-run command fail the run
// with the reason; pulumi's exit status fails it too.
func TestRunnerFailures(t *testing.T) {
	f := newFixture(t)
	for _, tc := range []struct {
		name, repo, want string
		pre              []string
		env              map[string]any
	}{
		{"unclonable", filepath.Join(t.TempDir(), "no-such-repo"), "cannot be cloned", nil, nil},
		{"pre-run", "", "pre-run command \"exit 3\" failed: exit status 3", []string{"exit 3"}, nil},
		{"pulumi", "", "pulumi update failed: exit status 2", nil, map[string]any{"FAKE_EXIT": "2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.repo
			if r == "" {
				r = repo(t)
			}
			f.settings(t, r, tc.pre, tc.env)
			id := f.trigger(t, "update")
			if ran, err := f.runner.RunOne(context.Background()); !ran || err != nil {
				t.Fatalf("RunOne = %v, %v", ran, err)
			}
			d, logs := f.deployment(t, id)
			if d["status"] != "failed" || !strings.Contains(d["message"].(string), tc.want) {
				t.Errorf("status %v, message %q; want failed with %q; logs:\n%s", d["status"], d["message"], tc.want, logs)
			}
		})
	}
}

// TestRunnerKilledAndServerRestarted: the server restarts in the middle of a run (the run
// goes on and reports to the new process); a runner killed mid-run loses its lease and
// its run fails, never to run twice at once.
func TestRunnerKilledAndServerRestarted(t *testing.T) {
	f := newFixture(t)
	f.settings(t, repo(t), nil, map[string]any{"FAKE_SLEEP": "4"})
	id := f.trigger(t, "update")
	done := make(chan error, 1)
	go func() { _, err := f.runner.RunOne(context.Background()); done <- err }()
	waitFor(t, func() bool { _, logs := f.deployment(t, id); return strings.Contains(logs, "working 0") })
	f.s.restart()
	must(t, <-done)
	d, logs := f.deployment(t, id)
	if d["status"] != "succeeded" || !strings.Contains(logs, "working 3") {
		t.Fatalf("after a server restart: status %v; logs:\n%s", d["status"], logs)
	}

	// Killed: the runner's context ends mid-run (its process would be gone).
	f.settings(t, repo(t), nil, map[string]any{"FAKE_SLEEP": "30"})
	id = f.trigger(t, "update")
	ctx, kill := context.WithCancel(context.Background())
	go func() { _, err := f.runner.RunOne(ctx); done <- err }()
	waitFor(t, func() bool { _, logs := f.deployment(t, id); return strings.Contains(logs, "working 0") })
	kill()
	<-done
	waitFor(t, func() bool { d, _ := f.deployment(t, id); return d["status"] == "failed" })
	d, _ = f.deployment(t, id)
	if !strings.Contains(d["message"].(string), "lease") {
		t.Errorf("a killed runner's run: %v", d)
	}
	b, _ := json.Marshal(d)
	t.Logf("killed run: %s", b)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("timed out waiting")
}

var _ = http.StatusOK
