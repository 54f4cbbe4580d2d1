//go:build linux

package deploy_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// isoBase is a directory the run uids can reach (0711 on the way), removed after the test:
// the runner's work directory, the fake pulumi and the repositories live there.
func isoBase(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipLoudly(t, "--run-uids needs root; run isolation is NOT tested as uid %d", os.Geteuid())
	}
	base, err := os.MkdirTemp("", "gatehouse-iso-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(base) })
	must(t, os.Chmod(base, 0o711))
	return base
}

// isoRunner makes the fixture's runner isolated with uids: its work directory and pulumi
// where the run uids reach them.
func (f *fixture) isoRunner(t *testing.T, base, uids string) {
	t.Helper()
	bin := filepath.Join(base, "bin")
	must(t, os.MkdirAll(bin, 0o755))
	must(t, os.WriteFile(filepath.Join(bin, "pulumi"), []byte(fakePulumi), 0o755))
	f.cfg.RunUIDs, f.cfg.WorkDir, f.cfg.Pulumi = uids, filepath.Join(base, "work"), filepath.Join(bin, "pulumi")
	f.withRunner(t, func(*deploy.RunnerConfig) {})
}

// isoRepo is repo(t) where the run uids can read it.
func isoRepo(t *testing.T, base string) string {
	t.Helper()
	dir, err := os.MkdirTemp(base, "repo-")
	must(t, err)
	must(t, os.Chmod(dir, 0o755))
	git(t, dir, "init", "-q", "-b", "main")
	must(t, os.WriteFile(filepath.Join(dir, "Pulumi.yaml"), []byte("name: proj\nruntime: yaml\n"), 0o644))
	git(t, dir, "add", ".")
	git(t, dir, "commit", "-q", "-m", "init")
	return dir
}

var runUIDLine = regexp.MustCompile(`its commands run as uid (\d+)`)

func runUID(t *testing.T, logs string) uint32 {
	t.Helper()
	m := runUIDLine.FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("the run does not say its uid:\n%s", logs)
	}
	n, _ := strconv.ParseUint(m[1], 10, 32)
	return uint32(n)
}

// processesOfUID lists the live (not zombie) processes with uid among their uids.
func processesOfUID(t *testing.T, uid uint32) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	must(t, err)
	var out []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		f, err := os.Open(filepath.Join("/proc", e.Name(), "status"))
		if err != nil {
			continue
		}
		var state, name string
		mine := false
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			l := sc.Text()
			switch {
			case strings.HasPrefix(l, "Name:"):
				name = strings.TrimSpace(strings.TrimPrefix(l, "Name:"))
			case strings.HasPrefix(l, "State:"):
				state = strings.TrimSpace(strings.TrimPrefix(l, "State:"))
			case strings.HasPrefix(l, "Uid:"):
				for _, u := range strings.Fields(strings.TrimPrefix(l, "Uid:")) {
					mine = mine || u == strconv.FormatUint(uint64(uid), 10)
				}
			}
		}
		f.Close()
		if mine && !strings.HasPrefix(state, "Z") {
			out = append(out, e.Name()+" "+name)
		}
	}
	return out
}

// TestIsolatedRunLeavesNothing: with --run-uids a run's commands run under a uid of the
// range (and its gid), in a directory 0700 of that uid; a background process it detaches
// (setsid, a double fork) is killed when the run ends, succeeded or failed, its directory
// and its files in /tmp are removed; it reads neither the runner's files nor the runner's
// /proc/PID/environ (the pool's token).
func TestIsolatedRunLeavesNothing(t *testing.T) {
	base := isoBase(t)
	f := newFixture(t)
	f.isoRunner(t, base, "61000-61009")
	runnerFile := filepath.Join(base, "runner-config")
	must(t, os.WriteFile(runnerFile, []byte("runner secret"), 0o600))
	src := isoRepo(t, base)
	detach := []string{
		`echo "ids $(id -u):$(id -g) groups $(id -G)"; echo "rundir $(cd .. && pwd)"; stat -c 'perm %a %u:%g' .. "$HOME"; echo "tmpdir $TMPDIR"`,
		`setsid sh -c 'sleep 300' >/dev/null 2>&1 </dev/null &`,
		`(sh -c 'sleep 301 >/dev/null 2>&1 </dev/null &' &)`,
		`echo left > /tmp/gatehouse-iso-left-$(id -u)`,
		`sleep 0.3; for p in /proc/[0-9]*; do grep -qw "^Uid:.*$(id -u)" $p/status 2>/dev/null && echo "alive $(cat $p/comm)"; done; true`,
		`cat ` + runnerFile + ` >/dev/null 2>&1 && echo RUNNER-FILE-READ || echo runner-file-hidden`,
		`cat /proc/$PPID/environ >/dev/null 2>&1 && echo RUNNER-ENV-READ || echo runner-env-hidden`,
	}
	for _, tc := range []struct {
		name   string
		pre    []string
		status string
	}{
		{"succeeded", detach, "succeeded"},
		{"failed", append(append([]string(nil), detach...), "exit 3"), "failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.settings(t, src, tc.pre, nil)
			status, msg, logs := f.runOnce(t)
			if status != tc.status {
				t.Fatalf("status %q, message %q; logs:\n%s", status, msg, logs)
			}
			uid := runUID(t, logs)
			if uid < 61000 || uid > 61009 {
				t.Errorf("run uid %d is not of --run-uids", uid)
			}
			for _, want := range []string{
				fmt.Sprintf("ids %d:%d groups %d\n", uid, uid, uid),
				fmt.Sprintf("perm 700 %d:%d\nperm 700 %d:%d\n", uid, uid, uid, uid),
				"alive sleep\n", "runner-file-hidden", "runner-env-hidden",
			} {
				if !strings.Contains(logs, want) {
					t.Errorf("logs lack %q:\n%s", want, logs)
				}
			}
			if n := strings.Count(logs, "alive sleep\n"); n < 2 {
				t.Errorf("%d background sleeps seen running, want 2:\n%s", n, logs)
			}
			if strings.Contains(logs, "\nRUNNER-FILE-READ\n") || strings.Contains(logs, "\nRUNNER-ENV-READ\n") {
				t.Errorf("the run read the runner's file or environment:\n%s", logs)
			}
			if ps := processesOfUID(t, uid); len(ps) > 0 {
				t.Errorf("processes of run uid %d outlive the run: %v", uid, ps)
				for _, p := range ps { // the test's own cleanup: pids of that uid only
					if pid, err := strconv.Atoi(strings.Fields(p)[0]); err == nil && pid > 1 {
						_ = syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			m := regexp.MustCompile(`(?m)^rundir (/\S+)`).FindStringSubmatch(logs)
			if m == nil || !strings.HasPrefix(m[1], filepath.Join(base, "work")+"/") {
				t.Fatalf("run directory not in the logs (%v):\n%s", m, logs)
			}
			if !strings.Contains(logs, "tmpdir "+m[1]+"/tmp\n") {
				t.Errorf("TMPDIR is not the run's own:\n%s", logs)
			}
			for _, p := range []string{m[1], fmt.Sprintf("/tmp/gatehouse-iso-left-%d", uid)} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s outlives the run: %v", p, err)
					os.RemoveAll(p)
				}
			}
		})
	}
}

// TestIsolatedRunsApart: two runs at once (two stacks) of one isolated runner have uids of
// their own: the second can read neither the first's directory nor the environment of its
// process (the deployment credential, secret variables).
func TestIsolatedRunsApart(t *testing.T) {
	base := isoBase(t)
	f := newFixture(t)
	f.isoRunner(t, base, "61010-61019")
	src := isoRepo(t, base)
	shared := filepath.Join(base, "shared")
	must(t, os.Mkdir(shared, 0o777))
	must(t, os.Chmod(shared, 0o1777))
	must(t, f.s.admin.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: map[string]any{"stackName": "staging"}}, nil))
	stack := func(name string, pre []string) string {
		p := "/api/stacks/acme/proj/" + name
		must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: p + "/deployments/settings", Body: map[string]any{
			"sourceContext":    map[string]any{"git": map[string]any{"repoUrl": src, "branch": "main"}},
			"operationContext": map[string]any{"preRunCommands": pre, "environmentVariables": map[string]any{"API_KEY": map[string]string{"secret": "first-runs-secret"}}},
		}}, nil))
		var out struct {
			ID string `json:"id"`
		}
		must(t, f.s.admin.Do(cliwire.Call{Method: "POST", Path: p + "/deployments", Body: map[string]any{"operation": "update"}}, &out))
		return out.ID
	}
	first := stack("prod", []string{`echo $$ > ` + shared + `/pid.tmp; mv ` + shared + `/pid.tmp ` + shared + `/pid; (cd .. && pwd) > ` + shared + `/dir.tmp; mv ` + shared + `/dir.tmp ` + shared + `/dir; ` +
		`i=0; while [ ! -e ` + shared + `/done ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done`})
	second := stack("staging", []string{`i=0; while [ ! -e ` + shared + `/dir ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; ` +
		`cat /proc/$(cat ` + shared + `/pid)/environ >/dev/null 2>&1 && echo OTHER-ENV-READ || echo other-env-hidden; ` +
		`ls "$(cat ` + shared + `/dir)" >/dev/null 2>&1 && echo OTHER-DIR-READ || echo other-dir-hidden; ` +
		`kill -0 $(cat ` + shared + `/pid) 2>/dev/null && echo OTHER-SIGNALLED || echo other-not-signalled; touch ` + shared + `/done`})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ran, err := f.runner.RunOne(context.Background()); !ran || err != nil {
				t.Errorf("RunOne = %v, %v", ran, err)
			}
		}()
	}
	wg.Wait()
	var d1, d2 map[string]any
	var logs1, logs2 string
	must(t, f.s.admin.Do(cliwire.Call{Method: "GET", Path: "/api/stacks/acme/proj/prod/deployments/" + first}, &d1))
	_, logs1 = f.deployment(t, first)
	f.prod = "/api/stacks/acme/proj/staging"
	d2, logs2 = f.deployment(t, second)
	if d1["status"] != "succeeded" || d2["status"] != "succeeded" {
		t.Fatalf("statuses %v, %v; logs:\n%s\n----\n%s", d1["status"], d2["status"], logs1, logs2)
	}
	if u1, u2 := runUID(t, logs1), runUID(t, logs2); u1 == u2 {
		t.Errorf("two runs at once share uid %d", u1)
	}
	for _, want := range []string{"other-env-hidden", "other-dir-hidden", "other-not-signalled"} {
		if !strings.Contains(logs2, want) {
			t.Errorf("the second run's logs lack %q:\n%s", want, logs2)
		}
	}
	if _, err := os.Stat(filepath.Join(shared, "done")); err != nil {
		t.Errorf("the second run did not finish its checks: %v", err)
	}
}

// TestIsolatedRunGitCredentials: an isolated run clones with its credentials: a token over
// HTTP (git's credential helper, under the run's uid), and an SSH key and a pinned
// known_hosts of the runner that the run uid cannot read in place (they are copied into
// the run's directory, the key removed after the checkout).
func TestIsolatedRunGitCredentials(t *testing.T) {
	base := isoBase(t)
	f := newFixture(t)
	const token = "ghp_isolatedRunToken0123456789"
	root := bareRepos(t)
	srv := gitHTTPServer(t, root, false, func(u, p string, ok bool) bool { return ok && p == token })
	f.isoRunner(t, base, "61020-61029")
	f.gitSettings(t, srv.URL+"/git/proj.git", "main", map[string]any{"accessToken": map[string]string{"secret": token}})
	if status, msg, logs := f.runOnce(t); status != "succeeded" || !strings.Contains(logs, "found Pulumi.yaml") || !strings.Contains(logs, "its commands run as uid 610") {
		t.Errorf("HTTP token: status %q, message %q; logs:\n%s", status, msg, logs)
	}

	// ssh wants a user entry for its uid: a run uid without one fails, saying so; nobody
	// (65534) has one everywhere.
	if _, err := exec.LookPath("ssh"); err != nil {
		skipLoudly(t, "no ssh client; the isolated SSH checkout is NOT tested")
	}
	key, pub := sshKey(t, "")
	addr, hostKey := sshGitServer(t, root, pub)
	pinned := filepath.Join(t.TempDir(), "known_hosts") // in a 0700 directory of root's
	must(t, os.WriteFile(pinned, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey)+"\n"), 0o600))
	f.gitSettings(t, "ssh://git@"+addr+"/proj.git", "main", map[string]any{"sshAuth": map[string]any{"sshPrivateKey": map[string]string{"secret": key}}})
	if out, err := exec.Command("getent", "passwd", "61020").Output(); err == nil && len(out) > 0 {
		t.Logf("uid 61020 has a user entry here: the failure of ssh without one is NOT tested")
	} else {
		f.withRunner(t, func(c *deploy.RunnerConfig) { c.RunUIDs, c.SSHKnownHosts = "61020-61020", pinned })
		if status, msg, logs := f.runOnce(t); status != "failed" || !strings.Contains(msg, "create users for the runner's --run-uids") {
			t.Errorf("SSH under a uid without a user entry: status %q, message %q; logs:\n%s", status, msg, logs)
		}
	}
	if out, err := exec.Command("getent", "passwd", "65534").Output(); err != nil || len(out) == 0 {
		skipLoudly(t, "uid 65534 has no user entry; the isolated SSH checkout is NOT tested")
	}
	if ps := processesOfUID(t, 65534); len(ps) > 0 {
		skipLoudly(t, "uid 65534 (nobody) has processes on this host (%v); the isolated SSH checkout is NOT tested", ps)
	}
	f.withRunner(t, func(c *deploy.RunnerConfig) { c.RunUIDs, c.SSHKnownHosts = "65534-65534", pinned })
	status, msg, logs := f.runOnce(t)
	if status != "succeeded" || !strings.Contains(logs, "found Pulumi.yaml") || !strings.Contains(logs, "its commands run as uid 65534") {
		t.Fatalf("SSH key: status %q, message %q; logs:\n%s", status, msg, logs)
	}
	if strings.Contains(logs, "left behind") {
		t.Errorf("the key file outlived the checkout:\n%s", logs)
	}
}

// TestIsolationRefused: --run-uids stops the runner on start when runs could not be
// isolated: a range that is not one (or of the system's uids), a runner that is not root,
// a shared --pulumi-home (runs would plant plugins for one another), a work directory or
// a pulumi the run uids cannot reach.
func TestIsolationRefused(t *testing.T) {
	sh, err := exec.LookPath("sh")
	must(t, err)
	cfg := func(mod func(*deploy.RunnerConfig)) deploy.RunnerConfig {
		c := deploy.RunnerConfig{Server: "http://127.0.0.1:1", Token: "t", Pulumi: sh, Container: "none", WorkDir: os.TempDir(), RunUIDs: "61000-61999"}
		mod(&c)
		return c
	}
	hidden := filepath.Join(t.TempDir(), "work") // under a 0700 directory
	cases := []struct {
		cfg  deploy.RunnerConfig
		want string
	}{
		{cfg(func(c *deploy.RunnerConfig) { c.RunUIDs = "many" }), "want FIRST-LAST"},
		{cfg(func(c *deploy.RunnerConfig) { c.RunUIDs = "62000-61000" }), "want FIRST-LAST"},
		{cfg(func(c *deploy.RunnerConfig) { c.RunUIDs = "0-2000" }), "want FIRST-LAST"},
		{cfg(func(c *deploy.RunnerConfig) { c.RunUIDs = "100-200" }), "below 1000"},
	}
	if os.Geteuid() == 0 {
		cases = append(cases,
			struct {
				cfg  deploy.RunnerConfig
				want string
			}{cfg(func(c *deploy.RunnerConfig) { c.PulumiHome = t.TempDir() }), "--pulumi-home cannot be used with --run-uids"},
			struct {
				cfg  deploy.RunnerConfig
				want string
			}{cfg(func(c *deploy.RunnerConfig) { c.WorkDir = hidden }), "not searchable by the run uids"},
		)
	} else {
		cases = append(cases, struct {
			cfg  deploy.RunnerConfig
			want string
		}{cfg(func(*deploy.RunnerConfig) {}), "--run-uids needs the runner to run as root"})
	}
	for _, tc := range cases {
		if _, err := deploy.NewRunner(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewRunner(RunUIDs %q, PulumiHome %q, WorkDir %q) = %v, want an error with %q", tc.cfg.RunUIDs, tc.cfg.PulumiHome, tc.cfg.WorkDir, err, tc.want)
		}
	}
	if os.Geteuid() == 0 {
		// A pulumi only root reaches (as in /root/.pulumi/bin).
		bin := t.TempDir()
		must(t, os.WriteFile(filepath.Join(bin, "pulumi"), []byte(fakePulumi), 0o755))
		_, err := deploy.NewRunner(context.Background(), cfg(func(c *deploy.RunnerConfig) { c.Pulumi = filepath.Join(bin, "pulumi") }))
		if err == nil || !strings.Contains(err.Error(), "the runs cannot run pulumi") {
			t.Errorf("NewRunner with an unreachable pulumi = %v", err)
		}
	} else {
		skipLoudly(t, "not root: the checks of a root runner's --run-uids are NOT tested")
	}
}

// TestIsolatedRunStoppedOrNoUID: a runner stopped mid-run (a signal) still kills what its
// run left running; a runner whose uids all have processes (another runner's runs, say)
// leases nothing, and the run waits in the queue until a uid is free.
func TestIsolatedRunStoppedOrNoUID(t *testing.T) {
	base := isoBase(t)
	f := newFixture(t)
	f.isoRunner(t, base, "61040-61040")
	src := isoRepo(t, base)

	// A process of uid 61040 that is no run's.
	other := exec.Command("sleep", "60")
	other.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 61040, Gid: 61040, Groups: []uint32{}}}
	must(t, other.Start())
	f.settings(t, src, []string{`setsid sh -c 'sleep 303' >/dev/null 2>&1 </dev/null &`}, map[string]any{"FAKE_SLEEP": "30"})
	id := f.trigger(t, "update")
	if ran, err := f.runner.RunOne(context.Background()); ran || err == nil || !strings.Contains(err.Error(), "no free uid") {
		t.Errorf("RunOne with no free uid = %v, %v", ran, err)
	}
	if d, _ := f.deployment(t, id); d["status"] != "not-started" {
		t.Errorf("the run is %v, want still queued (not-started)", d["status"])
	}
	must(t, other.Process.Kill())
	_ = other.Wait()

	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := f.runner.RunOne(ctx); done <- err }()
	waitFor(t, func() bool { _, logs := f.deployment(t, id); return strings.Contains(logs, "working 0") })
	if ps := processesOfUID(t, 61040); len(ps) < 2 {
		t.Errorf("processes of the run: %v, want its pulumi and the detached sleep", ps)
	}
	stop()
	<-done
	if ps := processesOfUID(t, 61040); len(ps) > 0 {
		t.Errorf("processes of the stopped run outlive it: %v", ps)
	}
}
