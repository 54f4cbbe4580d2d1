package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/loudskip"
)

// scratch is a directory shared by every test of this binary (the gatehouse binary, the
// Node.js dependencies); it is removed when the tests end.
var scratch string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gatehouse-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	scratch = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// skipLoudly skips t with a banner on stderr (internal/loudskip).
func skipLoudly(t *testing.T, format string, args ...any) {
	t.Helper()
	loudskip.Skip(t, "E2E", format, args...)
}

// moduleRoot is the directory of this module's go.mod (the parent of e2e/).
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

var (
	buildOnce sync.Once
	buildBin  string
	buildErr  error
)

// gatehouseBinary builds ./cmd/gatehouse once per test binary and returns its path.
func gatehouseBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		goBin, err := exec.LookPath("go")
		if err != nil {
			if root := os.Getenv("GOROOT"); root != "" {
				goBin = filepath.Join(root, "bin", "go")
			} else {
				buildErr = fmt.Errorf("no go command on PATH to build gatehouse: %w", err)
				return
			}
		}
		out := filepath.Join(scratch, "bin", "gatehouse")
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, goBin, "build", "-buildvcs=false", "-o", out, "./cmd/gatehouse")
		cmd.Dir = moduleRoot(t)
		start := time.Now()
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/gatehouse: %v\n%s", err, b)
			return
		}
		t.Logf("built %s in %.1fs", out, time.Since(start).Seconds())
		buildBin = out
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// bootstrap runs `gatehouse bootstrap` on dataDir and returns the admin token, which must
// be printed alone on one line.
func bootstrap(t *testing.T, bin, dataDir, org, admin string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "bootstrap", "--data-dir", dataDir, "--org", org, "--admin", admin)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gatehouse bootstrap: %v\nstdout: %s\nstderr: %s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 1 || strings.TrimSpace(lines[0]) != lines[0] || lines[0] == "" || !strings.HasSuffix(out, "\n") {
		t.Fatalf("bootstrap stdout must be the token alone on one line, got %q", out)
	}
	return lines[0]
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is one `gatehouse serve` process.
type server struct {
	t       *testing.T
	URL     string
	addr    string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	waitErr error
	logPath string
}

// startServer runs `gatehouse serve --data-dir dataDir --addr addr extra...` and waits
// until /healthz answers 200. The process is stopped when the test ends.
func startServer(t *testing.T, bin, dataDir, addr string, extra ...string) *server {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "serve-*.log")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"serve", "--data-dir", dataDir, "--addr", addr, "--log-format", "text"}, extra...)
	// The port may still be held for a moment by a process that just died: retry briefly.
	for attempt := 0; ; attempt++ {
		cmd := exec.Command(bin, args...)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start gatehouse serve: %v", err)
		}
		s := &server{t: t, URL: "http://" + addr, addr: addr, cmd: cmd, done: make(chan struct{}), logPath: logf.Name()}
		go func() { s.waitErr = cmd.Wait(); close(s.done) }()
		err := s.waitHealthy(90 * time.Second)
		if err == nil {
			t.Cleanup(func() {
				s.stop()
				if t.Failed() {
					t.Logf("gatehouse serve log (%s):\n%s", addr, s.logTail(60))
				}
			})
			return s
		}
		s.kill()
		if attempt < 5 && strings.Contains(s.logTail(5), "address already in use") {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		t.Fatalf("gatehouse serve did not become healthy: %v\nlog:\n%s", err, s.logTail(60))
	}
}

func (s *server) waitHealthy(limit time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return errors.New("the server process exited")
		default:
		}
		resp, err := hc.Get(s.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("no 200 from %s/healthz within %v", s.URL, limit)
}

// kill9 kills the server with SIGKILL (no chance to flush or close anything) and waits
// for it to be gone.
func (s *server) kill9() {
	s.t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		s.t.Fatalf("kill -9 gatehouse: %v", err)
	}
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.t.Fatal("gatehouse did not die after SIGKILL")
	}
	if st := s.cmd.ProcessState; st == nil || st.Success() || !strings.Contains(st.String(), "killed") {
		s.t.Fatalf("gatehouse after SIGKILL: %v", st)
	}
}

func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.done
}

// stop asks the server to shut down (SIGTERM), and kills it if it does not within 30s.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = terminate(s.cmd)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.kill()
	}
}

func (s *server) logTail(n int) string {
	b, _ := os.ReadFile(s.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
