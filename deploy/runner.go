package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// RunnerConfig configures a runner process (gatehouse runner).
type RunnerConfig struct {
	Server string // the Gatehouse server's URL
	Token  string // the runner pool's token
	Pool   string // the pool's name (checked by the server)
	Name   string // this runner's name (host name by default)
	// Pulumi is the pulumi binary (default: "pulumi" on PATH); Git the git binary.
	Pulumi string
	Git    string
	// WorkDir is where each run gets its fresh directory (default: the system's temp dir).
	WorkDir string
	// PulumiHome, when set, is shared by runs as PULUMI_HOME (a plugin cache); otherwise
	// each run has its own.
	PulumiHome string
	// Poll is the wait between polls when nothing is queued (default 5s).
	Poll time.Duration
	// Container is the container engine for runs whose settings name an executor image:
	// "docker", "podman", "" (the first found) or "none".
	Container string
	// GitCAFile is a PEM file of the certificate authorities git trusts for HTTPS
	// repositories (GIT_SSL_CAINFO), for a server with a private CA; default: the system's.
	GitCAFile string
	// SSHKnownHosts is an OpenSSH known_hosts file with the host keys of the SSH git
	// servers: when set, a server whose key is not in it is refused
	// (StrictHostKeyChecking=yes); when empty, a server's key is accepted as first seen,
	// which the run's log says.
	SSHKnownHosts string
	// RunUIDs, "FIRST-LAST" (Linux, a runner running as root), isolates runs from one
	// another: each run executes all its commands under a uid (and gid) of the range of
	// its own, in a directory only that uid reads; when the run ends every process of the
	// uid is killed and the directory removed before the uid serves another run. The
	// range must be used by nothing else (several runners on a host: disjoint ranges).
	RunUIDs    string
	HTTPClient *http.Client
	Log        *slog.Logger
}

// Runner leases runs from the server and executes them.
type Runner struct {
	cfg     RunnerConfig
	version string
	uids    *uidPool // --run-uids; nil: runs run as the runner's user
}

// NewRunner checks the configuration and the host's pulumi (pulumi version).
func NewRunner(ctx context.Context, cfg RunnerConfig) (*Runner, error) {
	if cfg.Server == "" || cfg.Token == "" {
		return nil, errors.New("runner: --server and the pool's token (GATEHOUSE_RUNNER_TOKEN) are required")
	}
	if cfg.Pulumi == "" {
		cfg.Pulumi = "pulumi"
	}
	if cfg.Git == "" {
		cfg.Git = "git"
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 5 * time.Second
	}
	if cfg.WorkDir == "" {
		cfg.WorkDir = os.TempDir()
	}
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 60 * time.Second}
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	for _, f := range []struct{ flag, path string }{{"--git-ca-file", cfg.GitCAFile}, {"--ssh-known-hosts", cfg.SSHKnownHosts}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("runner: %s: %w", f.flag, err)
		}
	}
	var uids *uidPool
	if cfg.RunUIDs != "" {
		var err error
		if uids, err = checkIsolation(&cfg); err != nil {
			return nil, err
		}
	}
	// The runs are the repository's code and the settings' commands, run as this process's
	// user (without --run-uids): they must not read the pool's token out of this process.
	if err := protectProcess(); err != nil {
		cfg.Log.Warn("runner: cannot make the runner's process undumpable; runs on the host may read its environment (the pool's token)", "err", err)
	}
	p, err := exec.LookPath(cfg.Pulumi)
	if err != nil {
		return nil, fmt.Errorf("runner: the pulumi CLI %q is not installed on this host: %w", cfg.Pulumi, err)
	}
	cfg.Pulumi = p
	if cfg.Container, err = findEngine(ctx, cfg.Container, cfg.Log); err != nil {
		return nil, err
	}
	vctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(vctx, p, "version").Output()
	if err != nil {
		return nil, fmt.Errorf("runner: %s version failed: %w", p, err)
	}
	v := strings.TrimSpace(string(out))
	switch {
	case v == "":
		// A development build of the CLI prints no version.
		cfg.Log.Warn("runner: pulumi version printed nothing (a development build?)", "pulumi", p)
		v = "unknown (development build)"
	case !strings.HasPrefix(strings.TrimPrefix(v, "v"), "3."):
		return nil, fmt.Errorf("runner: %s version says %q; a pulumi v3 CLI is needed", p, v)
	}
	if uids != nil {
		if err := checkReachable(p, false); err != nil {
			return nil, fmt.Errorf("runner: --run-uids: the runs cannot run pulumi: %v", err)
		}
		if g, err := exec.LookPath(cfg.Git); err == nil {
			if err := checkReachable(g, false); err != nil {
				return nil, fmt.Errorf("runner: --run-uids: the runs cannot run git: %v", err)
			}
		}
		cfg.Log.Info("runner: runs are isolated, each under a uid of its own", "run-uids", fmt.Sprintf("%d-%d", uids.lo, uids.hi))
		if _, err := user.LookupId(strconv.FormatUint(uint64(uids.lo), 10)); err != nil {
			cfg.Log.Warn("runner: the first uid of --run-uids has no user entry: git over SSH fails under such uids (ssh wants one); create users for the range (see the README)", "uid", uids.lo, "err", err)
		}
	}
	return &Runner{cfg: cfg, version: v, uids: uids}, nil
}

// checkIsolation checks what --run-uids needs: Linux, root, no shared --pulumi-home, a
// work directory the run uids can reach.
func checkIsolation(cfg *RunnerConfig) (*uidPool, error) {
	if err := isolationSupported(); err != nil {
		return nil, err
	}
	uids, err := parseUIDRange(cfg.RunUIDs)
	if err != nil {
		return nil, err
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("runner: --run-uids needs the runner to run as root (it starts each run's commands under a uid of the range and kills what they leave behind); this runner runs as uid %d: run it as root, or drop --run-uids", os.Geteuid())
	}
	if cfg.PulumiHome != "" {
		return nil, errors.New("runner: --pulumi-home cannot be used with --run-uids: a plugin cache shared by runs lets one run plant plugins that later runs execute; with --run-uids each run has a PULUMI_HOME of its own")
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o711); err != nil {
		return nil, fmt.Errorf("runner: --work-dir: %w", err)
	}
	if err := checkReachable(cfg.WorkDir, true); err != nil {
		return nil, fmt.Errorf("runner: --run-uids: the runs cannot reach their directories in --work-dir: %v", err)
	}
	return uids, nil
}

// PulumiVersion is the host's pulumi version.
func (r *Runner) PulumiVersion() string { return r.version }

// Run leases and executes runs until ctx ends.
func (r *Runner) Run(ctx context.Context) error {
	r.cfg.Log.Info("runner started", "server", r.cfg.Server, "pool", r.cfg.Pool, "name", r.cfg.Name, "pulumi", r.version)
	for {
		ran, err := r.RunOne(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			r.cfg.Log.Warn("runner: lease failed", "err", err)
		}
		if ran && err == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.cfg.Poll):
		}
	}
}

// call posts body to the server; 204 and 410 are returned as their status.
func (r *Runner) call(ctx context.Context, path string, body, out any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(r.cfg.Server, "/")+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "token "+r.cfg.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatehouse-runner")
	resp, err := r.cfg.HTTPClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	switch {
	case resp.StatusCode == http.StatusNoContent:
		return resp.StatusCode, nil
	case resp.StatusCode == http.StatusGone || resp.StatusCode == http.StatusForbidden && strings.HasSuffix(path, "beat") || resp.StatusCode == http.StatusForbidden && strings.HasSuffix(path, "complete"):
		// The lease passed (the server answers 403, as to the CLI's lease calls).
		return http.StatusGone, nil
	case resp.StatusCode/100 != 2:
		var e struct {
			Message string `json:"message"`
		}
		_ = json.Unmarshal(data, &e)
		return resp.StatusCode, fmt.Errorf("server answered %d: %s", resp.StatusCode, e.Message)
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			return resp.StatusCode, err
		}
	}
	return resp.StatusCode, nil
}

// RunOne leases one run and executes it; false when nothing was queued.
func (r *Runner) RunOne(ctx context.Context) (bool, error) {
	// With --run-uids, a run is leased only when a uid is free for it (a runner whose
	// uids are all taken or quarantined leases nothing, rather than failing runs).
	var uid uint32
	if r.uids != nil {
		var err error
		if uid, err = r.uids.acquire(); err != nil {
			return false, err
		}
	}
	var job Job
	code, err := r.call(ctx, "/api/deployments/runner/lease", LeaseRequest{Runner: r.cfg.Name, Pool: r.cfg.Pool}, &job)
	if err != nil || code == http.StatusNoContent {
		if uid != 0 {
			r.uids.release(uid) // it ran nothing
		}
		return false, err
	}
	r.cfg.Log.Info("runner: run leased", "deployment", job.ID, "stack", job.Org+"/"+job.Project+"/"+job.Stack, "operation", job.Operation)
	r.execute(ctx, &job, uid)
	return true, nil
}

// session is one run in progress: its output buffer and its lease.
type session struct {
	r      *Runner
	job    *Job
	mu     sync.Mutex
	lines  []LogLine
	cancel context.CancelFunc
	lost   bool // the lease passed (the server gave up on this run)
	stop   bool // the server asked to cancel
	// secrets are masked in the run's output (the git credentials: git may echo them).
	secrets []string
	// tail, when not nil, keeps the last output lines of a command (for its error).
	tail *[]string
	// uid is the run's own uid (--run-uids), 0 when the run runs as the runner's user.
	uid uint32
}

func (s *session) emit(header, line string) {
	s.mu.Lock()
	line = s.mask(line)
	if s.tail != nil && line != "" {
		*s.tail = append(*s.tail, line)
		if len(*s.tail) > 20 {
			*s.tail = (*s.tail)[1:]
		}
	}
	s.lines = append(s.lines, LogLine{Header: Sanitize(header), Line: Sanitize(line), At: time.Now().UTC()})
	s.mu.Unlock()
}

// mask replaces the run's secret values in text by "***".
func (s *session) mask(text string) string {
	for _, v := range s.secrets {
		text = strings.ReplaceAll(text, v, "***")
	}
	return text
}

// addSecret masks v in the run's output from now on; values shorter than 4 bytes are not
// masked (they would mangle every line).
func (s *session) addSecret(v string) {
	if len(v) < 4 {
		return
	}
	s.mu.Lock()
	s.secrets = append(s.secrets, v)
	s.mu.Unlock()
}

func (s *session) take() []LogLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := min(len(s.lines), MaxLinesPerCall)
	out := s.lines[:n:n]
	s.lines = s.lines[n:]
	return out
}

// flush sends buffered lines (as heartbeats); false when the lease is lost.
func (s *session) flush(ctx context.Context) bool {
	for {
		lines := s.take()
		var hb HeartbeatResponse
		code, err := s.r.call(ctx, "/api/deployments/runner/"+s.job.ID+"/heartbeat", LeaseCall{Lease: s.job.Lease, Lines: lines}, &hb)
		if code == http.StatusGone {
			s.mu.Lock()
			s.lost = true
			s.mu.Unlock()
			s.cancel()
			return false
		}
		if err != nil {
			// The server may be restarting: keep the lines and try again at the next beat.
			s.mu.Lock()
			s.lines = append(lines, s.lines...)
			s.mu.Unlock()
			s.r.cfg.Log.Warn("runner: heartbeat failed", "deployment", s.job.ID, "err", err)
			return true
		}
		if hb.Cancel {
			s.mu.Lock()
			s.stop = true
			s.mu.Unlock()
			s.cancel()
		}
		s.mu.Lock()
		more := len(s.lines) >= MaxLinesPerCall
		s.mu.Unlock()
		if !more {
			return true
		}
	}
}

func (r *Runner) execute(parent context.Context, job *Job, uid uint32) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	s := &session{r: r, job: job, cancel: cancel, uid: uid}
	beat := time.Duration(max(job.Heartbeat, 1)) * time.Second
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(min(beat, time.Second))
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				s.mu.Lock()
				n := len(s.lines)
				s.mu.Unlock()
				// Output goes out every second; an idle run still beats.
				if n > 0 || time.Since(last) >= beat {
					if !s.flush(parent) {
						return
					}
					last = time.Now()
				}
			}
		}
	}()
	status, msg := "succeeded", ""
	if err := r.steps(ctx, s); err != nil {
		status, msg = "failed", s.mask(err.Error())
	}
	close(done)
	if parent.Err() != nil {
		// The runner is stopping (a signal): it reports nothing; the lease runs out and
		// the server fails the run.
		return
	}
	s.mu.Lock()
	lost, stop := s.lost, s.stop
	s.mu.Unlock()
	if lost {
		r.cfg.Log.Warn("runner: the run's lease was lost; its result is not reported", "deployment", job.ID)
		return
	}
	if stop {
		status, msg = "failed", "cancelled"
		s.emit("", "The deployment was cancelled.\n")
	}
	// Send the remaining output, then the result (retried while the server is away).
	for i := 0; i < 60; i++ {
		if !s.flush(parent) {
			return
		}
		s.mu.Lock()
		left := len(s.lines)
		s.mu.Unlock()
		if left == 0 {
			break
		}
		time.Sleep(time.Second)
	}
	for i := 0; i < 60; i++ {
		code, err := r.call(parent, "/api/deployments/runner/"+job.ID+"/complete", LeaseCall{Lease: job.Lease, Status: status, Message: msg}, nil)
		if err == nil || code == http.StatusGone || parent.Err() != nil {
			break
		}
		r.cfg.Log.Warn("runner: completing the run failed; retrying", "deployment", job.ID, "err", err)
		time.Sleep(time.Second)
	}
	r.cfg.Log.Info("runner: run ended", "deployment", job.ID, "status", status)
}

// settings is the part of the run's settings the runner uses (secrets in the clear).
type settings struct {
	SourceContext struct {
		Git struct {
			RepoURL string `json:"repoUrl"`
			Branch  string `json:"branch"`
			RepoDir string `json:"repoDir"`
			Commit  string `json:"commit"`
			GitAuth *struct {
				AccessToken string `json:"accessToken"`
				SSHAuth     *struct {
					SSHPrivateKey string `json:"sshPrivateKey"`
					Password      string `json:"password"`
				} `json:"sshAuth"`
				BasicAuth *struct {
					UserName string `json:"userName"`
					Password string `json:"password"`
				} `json:"basicAuth"`
			} `json:"gitAuth"`
		} `json:"git"`
	} `json:"sourceContext"`
	ExecutorContext struct {
		WorkingDirectory string          `json:"workingDirectory"`
		ExecutorImage    json.RawMessage `json:"executorImage"`
	} `json:"executorContext"`
	OperationContext struct {
		PreRunCommands       []string          `json:"preRunCommands"`
		EnvironmentVariables map[string]string `json:"environmentVariables"`
		Options              struct {
			Shell string `json:"shell"`
		} `json:"options"`
	} `json:"operationContext"`
}

func (r *Runner) steps(ctx context.Context, s *session) error {
	// The run's credential and the settings' secrets never reach its output (a command that
	// prints its environment): the output is for every reader of the stack.
	s.addSecret(s.job.Credential)
	for _, v := range s.job.Secrets {
		s.addSecret(v)
	}
	dir := ""
	defer func() { r.cleanup(s, dir) }()
	var st settings
	if err := json.Unmarshal(s.job.Settings, &st); err != nil {
		return fmt.Errorf("the run's settings cannot be read: %v", err)
	}
	dir, err := os.MkdirTemp(r.cfg.WorkDir, "gatehouse-run-")
	if err != nil {
		return err
	}
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if s.uid != 0 {
		// The run's directory, its HOME and TMPDIR are its uid's alone.
		for _, d := range []string{dir, home, filepath.Join(dir, "tmp")} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return err
			}
			if err := os.Chown(d, int(s.uid), int(s.uid)); err != nil {
				return err
			}
			if err := os.Chmod(d, 0o700); err != nil {
				return err
			}
		}
		s.emit("", fmt.Sprintf("isolated run: its commands run as uid %d (--run-uids)\n", s.uid))
	}
	src := filepath.Join(dir, "src")

	// 1. The source.
	if len(s.job.Withheld) > 0 {
		s.emit("", "secret environment variables withheld ("+strings.Join(s.job.Withheld, ", ")+"): this run acts for nobody (a pull or merge request's unreviewed code); the stack's settings can opt in with {\"gatehouse\":{\"pullRequestEnvironments\":true}}\n")
	}
	s.emit("Get source", "")
	if err := r.clone(ctx, s, &st, dir, home, src); err != nil {
		return err
	}
	work := filepath.Join(src, filepath.FromSlash(st.SourceContext.Git.RepoDir))
	if wd := st.ExecutorContext.WorkingDirectory; wd != "" && st.SourceContext.Git.RepoDir == "" {
		work = filepath.Join(src, filepath.FromSlash(wd))
	}
	if rel, err := filepath.Rel(src, work); err != nil || strings.HasPrefix(rel, "..") {
		return errors.New("repoDir leaves the repository")
	}

	// The run's environment: nothing of the runner's but PATH; the settings' variables;
	// the server and the run's own credential.
	env := map[string]string{
		"PATH":                     os.Getenv("PATH"),
		"HOME":                     home,
		"PULUMI_HOME":              filepath.Join(home, ".pulumi"),
		"PULUMI_SKIP_UPDATE_CHECK": "true",
		"PULUMI_BACKEND_URL":       r.cfg.Server,
		"PULUMI_ACCESS_TOKEN":      s.job.Credential,
		"CI":                       "true",
	}
	if r.cfg.PulumiHome != "" {
		env["PULUMI_HOME"] = r.cfg.PulumiHome
	}
	if runtime.GOOS == "windows" {
		env["SystemRoot"] = os.Getenv("SystemRoot")
	}
	for k, v := range st.OperationContext.EnvironmentVariables {
		if k == "PULUMI_ACCESS_TOKEN" || k == "PULUMI_BACKEND_URL" {
			continue // the run's own credential and server win
		}
		env[k] = v
	}
	image := ""
	if len(st.ExecutorContext.ExecutorImage) > 0 && string(st.ExecutorContext.ExecutorImage) != "null" {
		var ref struct {
			Reference string `json:"reference"`
		}
		if json.Unmarshal(st.ExecutorContext.ExecutorImage, &ref) != nil {
			_ = json.Unmarshal(st.ExecutorContext.ExecutorImage, &ref.Reference)
		}
		image = ref.Reference
	}
	engine := r.containerEngine(image)
	if image != "" && engine == "" {
		s.emit("", "No container engine (docker, podman) on this runner: running on the host instead of in "+image+".\n")
	}
	if _, set := env["TMPDIR"]; s.uid != 0 && engine == "" && !set {
		env["TMPDIR"] = filepath.Join(dir, "tmp")
	}
	if engine != "" {
		// The variables reach the container through the engine's own environment (by name,
		// never on its command line): none may be one the engine itself, on the runner's
		// host, would obey.
		for k := range st.OperationContext.EnvironmentVariables {
			if engineVariable(k) {
				return fmt.Errorf("the variable %s cannot be given to a run in a container: the container engine (%s) on the runner's host would use it itself; set it in the image or a pre-run command", k, filepath.Base(engine))
			}
		}
	}

	// 2. Pre-run commands.
	if len(st.OperationContext.PreRunCommands) > 0 {
		s.emit("Pre-run commands", "")
		shell := st.OperationContext.Options.Shell
		if shell == "" {
			shell = "/bin/sh"
			if _, err := exec.LookPath("bash"); err == nil {
				shell = "bash"
			}
		}
		for _, c := range st.OperationContext.PreRunCommands {
			s.emit("", "$ "+c+"\n")
			if err := r.run(ctx, s, engine, image, dir, work, env, shell, "-c", c); err != nil {
				return fmt.Errorf("pre-run command %q failed: %v", c, err)
			}
		}
	}

	// 3. The operation. The CLI's deployment run switches to the update's engine events
	// when it sees this header.
	s.emit("pulumi "+s.job.Operation, "")
	stack := s.job.Org + "/" + s.job.Project + "/" + s.job.Stack
	args := []string{s.job.Operation, "--stack", stack, "--non-interactive", "--yes", "--skip-preview"}
	switch s.job.Operation {
	case "preview":
		args = []string{"preview", "--stack", stack, "--non-interactive"}
	case "refresh", "destroy":
		args = []string{s.job.Operation, "--stack", stack, "--non-interactive", "--yes", "--skip-preview"}
	case "update":
		args = []string{"up", "--stack", stack, "--non-interactive", "--yes", "--skip-preview"}
	}
	pulumi := r.cfg.Pulumi
	if engine != "" {
		pulumi = "pulumi" // the image's
	}
	if err := r.run(ctx, s, engine, image, dir, work, env, pulumi, args...); err != nil {
		return fmt.Errorf("pulumi %s failed: %v", s.job.Operation, err)
	}
	return nil
}

// giveToRun makes a file the runner wrote for the run (a key, a helper) the run uid's.
func (r *Runner) giveToRun(s *session, path string) error {
	if s.uid == 0 {
		return nil
	}
	return os.Chown(path, int(s.uid), int(s.uid))
}

// cleanup ends a run's traces: with --run-uids, every process its uid left behind is
// killed, then its directory (and what it left at the top of the shared temporary
// directories) removed, and only then is the uid free for another run; a uid whose
// processes cannot be killed is never used again by this runner.
func (r *Runner) cleanup(s *session, dir string) {
	if s.uid == 0 {
		if dir != "" {
			os.RemoveAll(dir)
		}
		return
	}
	err := r.uids.killUID(s.uid, 10*time.Second)
	if err == nil {
		sweepTemp(s.uid)
	}
	if dir != "" {
		if rerr := os.RemoveAll(dir); rerr != nil && err == nil {
			err = rerr
		}
	}
	if err != nil {
		r.cfg.Log.Error("runner: a run's uid could not be cleaned up; it is not used again", "deployment", s.job.ID, "uid", s.uid, "err", err)
		return
	}
	r.uids.release(s.uid)
}

func (r *Runner) containerEngine(image string) string {
	if image == "" || r.cfg.Container == "none" {
		return ""
	}
	return r.cfg.Container
}

// findEngine resolves the --container setting on start: a named engine must be installed;
// by default the first of docker and podman that answers "info" (a docker CLI without a
// daemon is passed over), or none.
func findEngine(ctx context.Context, want string, log *slog.Logger) (string, error) {
	switch want {
	case "none":
		return "none", nil
	case "":
	default:
		p, err := exec.LookPath(want)
		if err != nil {
			return "", fmt.Errorf("runner: --container %s: %w", want, err)
		}
		return p, nil
	}
	for _, e := range []string{"docker", "podman"} {
		p, err := exec.LookPath(e)
		if err != nil {
			continue
		}
		ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := exec.CommandContext(ictx, p, "info").CombinedOutput()
		cancel()
		if err != nil {
			log.Warn("runner: container engine does not answer; not used", "engine", p, "err", err, "output", lastLine(string(out)))
			continue
		}
		log.Info("runner: container engine for runs with an executor image", "engine", p)
		return p, nil
	}
	log.Info("runner: no container engine (docker, podman): runs with an executor image run on the host")
	return "none", nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}

// clone checks the source out with the git binary. Credentials reach git through its
// environment (a credential helper that reads them from variables, GIT_SSH_COMMAND with a
// key file), never its arguments.
func (r *Runner) clone(ctx context.Context, s *session, st *settings, dir, home, src string) error {
	g := st.SourceContext.Git
	if g.RepoURL == "" {
		return errors.New("the settings name no repository (sourceContext.git.repoUrl)")
	}
	env := map[string]string{
		"PATH": os.Getenv("PATH"), "HOME": home, "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
	}
	if r.cfg.GitCAFile != "" {
		env["GIT_SSL_CAINFO"] = r.cfg.GitCAFile
		if s.uid != 0 {
			// The runner's files are not the run uid's to read: a copy of its own.
			p, err := copyForRun(r.cfg.GitCAFile, dir, "git-ca.pem", s.uid)
			if err != nil {
				return fmt.Errorf("--git-ca-file: %v", err)
			}
			env["GIT_SSL_CAINFO"] = p
		}
	}
	// SSH: the host key is checked against --ssh-known-hosts when given; otherwise it is
	// accepted as first seen (a fresh known_hosts per run), and the log says so.
	knownHosts, strict := filepath.Join(dir, "known_hosts"), "accept-new"
	if r.cfg.SSHKnownHosts != "" {
		knownHosts, strict = r.cfg.SSHKnownHosts, "yes"
		if s.uid != 0 {
			p, err := copyForRun(r.cfg.SSHKnownHosts, dir, "ssh_known_hosts", s.uid)
			if err != nil {
				return fmt.Errorf("--ssh-known-hosts: %v", err)
			}
			knownHosts = p
		}
	} else if isSSHURL(g.RepoURL) {
		s.emit("", "warning: the SSH host key of the repository's server is not verified (accepted as first seen); give the runner --ssh-known-hosts to pin it\n")
	}
	ssh := "ssh -o StrictHostKeyChecking=" + strict + " -o UserKnownHostsFile=" + shellQuote(knownHosts) + " -o UpdateHostKeys=no"
	if strict == "yes" {
		ssh += " -o GlobalKnownHostsFile=/dev/null"
	}
	batch := true
	if a := g.GitAuth; a != nil {
		switch {
		case a.SSHAuth != nil && a.SSHAuth.SSHPrivateKey != "":
			key := filepath.Join(dir, "ssh-key")
			k := a.SSHAuth.SSHPrivateKey
			if !strings.HasSuffix(k, "\n") {
				k += "\n"
			}
			if err := os.WriteFile(key, []byte(k), 0o600); err != nil {
				return err
			}
			if err := r.giveToRun(s, key); err != nil {
				return err
			}
			ssh += " -o IdentitiesOnly=yes -o IdentityAgent=none -o PreferredAuthentications=publickey -i " + shellQuote(key)
			if a.SSHAuth.Password != "" {
				// ssh asks for the key's passphrase through SSH_ASKPASS, which prints it
				// from the environment (batch mode would not ask at all).
				askpass := filepath.Join(dir, "askpass")
				if err := os.WriteFile(askpass, []byte("#!/bin/sh\nprintf '%s\\n' \"$GATEHOUSE_SSH_PASSPHRASE\"\n"), 0o700); err != nil {
					return err
				}
				if err := r.giveToRun(s, askpass); err != nil {
					return err
				}
				env["SSH_ASKPASS"], env["SSH_ASKPASS_REQUIRE"], env["GATEHOUSE_SSH_PASSPHRASE"], env["DISPLAY"] = askpass, "force", a.SSHAuth.Password, ":0"
				s.addSecret(a.SSHAuth.Password)
				batch = false
			}
		case a.AccessToken != "":
			// As GitHub and GitLab take a token over HTTPS: the password of any user.
			gitCredentials(env, g.RepoURL, "x-access-token", a.AccessToken)
			s.addSecret(a.AccessToken)
		case a.BasicAuth != nil:
			gitCredentials(env, g.RepoURL, a.BasicAuth.UserName, a.BasicAuth.Password)
			s.addSecret(a.BasicAuth.Password)
		}
	}
	if batch {
		ssh += " -o BatchMode=yes"
	}
	if p := localRepoPath(g.RepoURL); p != "" && s.uid != 0 {
		// A repository on the runner's disk is another user's to the run's uid: git
		// refuses it as of dubious ownership unless told it is safe (that one only), in
		// its global configuration (git passes no command-line configuration to the
		// upload-pack of a local clone).
		if abs, err := filepath.Abs(p); err == nil {
			cfgFile := filepath.Join(dir, "clone.gitconfig")
			body := fmt.Sprintf("[safe]\n\tdirectory = %s\n\tdirectory = %s\n", abs, filepath.Join(abs, ".git"))
			if err := os.WriteFile(cfgFile, []byte(body), 0o600); err != nil {
				return err
			}
			if err := r.giveToRun(s, cfgFile); err != nil {
				return err
			}
			env["GIT_CONFIG_GLOBAL"] = cfgFile
			defer os.Remove(cfgFile)
		}
	}
	env["GIT_SSH_COMMAND"] = ssh
	args := []string{"clone", "--quiet"}
	if g.Branch != "" && g.Commit == "" {
		args = append(args, "--branch", strings.TrimPrefix(g.Branch, "refs/heads/"), "--single-branch")
	}
	args = append(args, "--", g.RepoURL, src)
	s.emit("", "git clone "+redactURL(g.RepoURL)+"\n")
	// The key file and the passphrase helper go once the source is checked out: the
	// repository's program and the pre-run commands never see them.
	defer os.Remove(filepath.Join(dir, "ssh-key"))
	defer os.Remove(filepath.Join(dir, "askpass"))
	if err := r.gitRun(ctx, s, dir, dir, env, args...); err != nil {
		return fmt.Errorf("the repository %s cannot be cloned: %v", redactURL(g.RepoURL), err)
	}
	if g.Commit != "" {
		if err := r.gitRun(ctx, s, dir, src, env, "checkout", "--quiet", "--detach", g.Commit); err != nil {
			return fmt.Errorf("commit %s cannot be checked out: %v", g.Commit, err)
		}
	}
	return nil
}

// gitCredentials gives git a user and password for the repository's host through a
// credential helper that reads them from its environment (so that they are in no command
// line and go to no other host).
func gitCredentials(env map[string]string, repoURL, user, password string) {
	key := "credential.helper"
	if u, err := url.Parse(repoURL); err == nil && u.Scheme != "" && u.Host != "" {
		key = "credential." + u.Scheme + "://" + u.Host + ".helper"
	}
	addGitConfig(env, key, `!f() { test "$1" = get || exit 0; printf 'username=%s\npassword=%s\n' "$GATEHOUSE_GIT_USERNAME" "$GATEHOUSE_GIT_PASSWORD"; }; f`)
	env["GATEHOUSE_GIT_USERNAME"], env["GATEHOUSE_GIT_PASSWORD"] = user, password
}

// addGitConfig gives git one more configuration value through its environment
// (GIT_CONFIG_COUNT, GIT_CONFIG_KEY_n, GIT_CONFIG_VALUE_n: the command line's scope).
func addGitConfig(env map[string]string, key, value string) {
	n, _ := strconv.Atoi(env["GIT_CONFIG_COUNT"])
	env["GIT_CONFIG_KEY_"+strconv.Itoa(n)], env["GIT_CONFIG_VALUE_"+strconv.Itoa(n)] = key, value
	env["GIT_CONFIG_COUNT"] = strconv.Itoa(n + 1)
}

// localRepoPath is the directory of a repository given as a local path (or file:// URL),
// "" for a remote one.
func localRepoPath(u string) string {
	if p, ok := strings.CutPrefix(u, "file://"); ok {
		return p
	}
	if strings.Contains(u, "://") || isSSHURL(u) {
		return ""
	}
	return u
}

// gitRun runs git; its error carries git's own reason (its last "fatal:" line) and, for the
// usual failures, what to check.
func (r *Runner) gitRun(ctx context.Context, s *session, runDir, dir string, env map[string]string, args ...string) error {
	var tail []string
	s.mu.Lock()
	s.tail = &tail
	s.mu.Unlock()
	err := r.run(ctx, s, "", "", runDir, dir, env, r.cfg.Git, args...)
	s.mu.Lock()
	s.tail = nil
	s.mu.Unlock()
	if err == nil || ctx.Err() != nil {
		return err
	}
	out := strings.Join(tail, "")
	reason := ""
	sshReason := ""
	for _, l := range tail {
		switch l = strings.TrimSpace(l); {
		case strings.HasPrefix(l, "fatal: "):
			reason = strings.TrimPrefix(l, "fatal: ")
		case strings.Contains(l, "Permission denied (") || strings.Contains(l, "Host key verification failed") ||
			strings.Contains(l, "host key is known for") || strings.HasPrefix(l, "ssh: ") || strings.HasPrefix(l, "No user exists for uid"):
			sshReason = l // ssh's own reason says more than git's "Could not read from remote repository"
		}
	}
	if sshReason != "" {
		reason = sshReason
	}
	hint := ""
	switch {
	case strings.Contains(out, "No user exists for uid"):
		hint = "ssh runs only under a uid with a user entry: create users for the runner's --run-uids (see the README)"
	case strings.Contains(out, "Host key verification failed"):
		hint = "the SSH server's host key is not the one in the runner's --ssh-known-hosts"
	case strings.Contains(out, "Permission denied (publickey") || strings.Contains(out, "Authentication failed") ||
		strings.Contains(out, "could not read Username") || strings.Contains(out, "could not read Password") ||
		strings.Contains(out, "incorrect passphrase") || strings.Contains(out, "error in libcrypto"):
		hint = "the git server refused the credentials: check gitAuth in the deployment settings"
		if env["GATEHOUSE_GIT_PASSWORD"] == "" && !strings.Contains(env["GIT_SSH_COMMAND"], " -i ") {
			hint = "the git server wants credentials: set gitAuth in the deployment settings"
		}
	case strings.Contains(out, "SSL certificate problem") || strings.Contains(out, "server certificate verification failed"):
		hint = "the server's certificate is not trusted: give the runner --git-ca-file"
	case strings.Contains(out, "Remote branch") && strings.Contains(out, "not found"):
		hint = "check the branch in the deployment settings"
	}
	msg := err.Error()
	if reason != "" {
		msg = reason
	}
	if hint != "" {
		msg += " (" + hint + ")"
	}
	return errors.New(msg)
}

// isSSHURL says whether git reaches url over SSH (ssh:// or the scp-like user@host:path).
func isSSHURL(u string) bool {
	if strings.Contains(u, "://") {
		return strings.HasPrefix(u, "ssh://") || strings.HasPrefix(u, "git+ssh://") || strings.HasPrefix(u, "ssh+git://")
	}
	colon := strings.Index(u, ":")
	return colon > 0 && !strings.Contains(u[:colon], "/")
}

// shellQuote quotes s for sh (GIT_SSH_COMMAND is run by a shell).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// redactURL hides credentials in a URL's user info: a password, or over HTTP(S) the user
// (often a token); an SSH user (git@) stays.
func redactURL(u string) string {
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		if at := strings.Index(rest, "@"); at >= 0 && at < strings.IndexAny(rest+"/", "/") {
			if isSSHURL(u) && !strings.Contains(rest[:at], ":") {
				return u
			}
			return u[:i+3] + "***@" + rest[at+1:]
		}
	}
	return u
}

// commandHook, when set (by tests), sees every command before it starts.
var commandHook func(*exec.Cmd)

// run runs a command in dir with exactly env, streaming its output as log lines; in a
// container of image when engine is set.
func (r *Runner) run(ctx context.Context, s *session, engine, image, runDir, dir string, env map[string]string, name string, args ...string) error {
	runAs := ""
	if s.uid != 0 {
		runAs = fmt.Sprintf("%d:%d", s.uid, s.uid)
	}
	cmd, container := r.command(ctx, engine, image, runAs, runDir, dir, env, name, args...)
	setProcessGroup(cmd)
	if s.uid != 0 && engine == "" {
		setCredential(cmd, s.uid)
	}
	if commandHook != nil {
		commandHook(cmd)
	}
	if engine != "" {
		// Killing the engine's client leaves the container running: remove it.
		kill := cmd.Cancel
		cmd.Cancel = func() error {
			rm := exec.Command(engine, "rm", "-f", container)
			rm.Env = cmd.Env
			_ = rm.Run()
			if kill != nil {
				return kill()
			}
			return cmd.Process.Kill()
		}
	}
	cmd.WaitDelay = 10 * time.Second
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readLines(pr, func(l string) { s.emit("", l) })
	}()
	err := cmd.Start()
	if err == nil {
		err = cmd.Wait()
	}
	pw.Close()
	wg.Wait()
	if ctx.Err() != nil {
		return errors.New("stopped")
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return errors.New("exit status " + strconv.Itoa(ee.ExitCode()))
	}
	return err
}

// command builds a run's command: name with exactly env on the host or, with an engine,
// "engine run" of image with the run's directory mounted at the same path and the
// variables passed by name (-e NAME: their values are in the engine's environment, never
// on its command line).
//
// user ("UID:GID", --run-uids) is the container's user (docker run --user); on the host
// the caller sets the command's credential.
func (r *Runner) command(ctx context.Context, engine, image, user, runDir, dir string, env map[string]string, name string, args ...string) (cmd *exec.Cmd, container string) {
	keys := make([]string, 0, len(env))
	for k := range env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	environ := make([]string, 0, len(env))
	for _, k := range keys {
		environ = append(environ, k+"="+env[k])
	}
	if engine == "" {
		cmd := exec.CommandContext(ctx, name, args...)
		cmd.Dir = dir
		cmd.Env = environ
		return cmd, ""
	}
	container = containerName()
	cargs := []string{"run", "--rm", "--name", container, "--network", "host"}
	if user != "" {
		cargs = append(cargs, "--user", user)
	}
	cargs = append(cargs, "-v", runDir+":"+runDir)
	if ph := env["PULUMI_HOME"]; ph != "" && !within(runDir, ph) {
		cargs = append(cargs, "-v", ph+":"+ph) // the runner's shared --pulumi-home
	}
	cargs = append(cargs, "-w", dir, "--entrypoint", name)
	// The engine itself is the runner's tool: it runs with the runner's environment (its
	// DOCKER_HOST, XDG_RUNTIME_DIR, CONTAINERS_CONF, its HOME with its configuration) but
	// the pool's token, plus the run's variables, which alone enter the container. The
	// run's HOME (a path, no secret) is given by value.
	engineEnv := map[string]string{}
	for _, kv := range os.Environ() {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "GATEHOUSE_RUNNER_TOKEN" {
			engineEnv[k] = v
		}
	}
	for _, k := range keys {
		switch k {
		case "PATH": // the image's
		case "HOME":
			cargs = append(cargs, "-e", "HOME="+env[k])
		default:
			engineEnv[k] = env[k]
			cargs = append(cargs, "-e", k)
		}
	}
	cargs = append(append(cargs, image), args...)
	cmd = exec.CommandContext(ctx, engine, cargs...)
	cmd.Dir = dir
	cmd.Env = make([]string, 0, len(engineEnv))
	for k, v := range engineEnv {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	sort.Strings(cmd.Env)
	return cmd, container
}

// engineVariable reports whether the container engine's client (docker, podman), or the
// dynamic loader that starts it, reads variable k: its daemon, socket, configuration,
// storage and registry credentials, TLS and proxy settings, libraries to preload.
func engineVariable(k string) bool {
	u := strings.ToUpper(k)
	for _, p := range []string{"LD_", "DYLD_", "DOCKER_", "CONTAINER_", "CONTAINERS_", "PODMAN_", "BUILDAH_", "XDG_",
		"STORAGE_", "REGISTRY_", "SSL_CERT_", "GODEBUG", "GOTRACEBACK", "TMPDIR", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY"} {
		if strings.HasPrefix(u, p) {
			return true
		}
	}
	return false
}

// containerName names a run's container (to remove it when the run is stopped).
func containerName() string {
	h, _ := randomHex(8) // crypto/rand.Read does not fail (it crashes the program instead)
	return "gatehouse-run-" + h
}

// within says whether path is dir or under it.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// readLines splits output into lines of at most MaxLineBytes (a longer line is cut and the
// rest of it dropped), each ending in a newline.
func readLines(rd io.Reader, emit func(string)) {
	br := bufio.NewReaderSize(rd, 64<<10)
	var cur []byte
	dropped := 0
	for {
		frag, err := br.ReadSlice('\n')
		switch {
		case len(cur)+len(frag) <= MaxLineBytes:
			cur = append(cur, frag...)
		default:
			room := MaxLineBytes - len(cur)
			if room > 0 {
				cur = append(cur, frag[:room]...)
			}
			dropped += len(frag) - max(room, 0)
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		if len(cur) > 0 || dropped > 0 {
			line := string(cur)
			if dropped > 0 {
				n := len(cur) + dropped
				if err == nil {
					n-- // the newline
				}
				line = strings.TrimSuffix(line, "\n") + " …[line truncated: " + strconv.Itoa(n) + " bytes]\n"
			} else if !strings.HasSuffix(line, "\n") {
				line += "\n"
			}
			emit(line)
		}
		cur, dropped = cur[:0], 0
		if err != nil {
			return
		}
	}
}
