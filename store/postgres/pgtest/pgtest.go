// Package pgtest runs throwaway PostgreSQL clusters for tests: initdb into a temporary
// directory, a server on 127.0.0.1 on a free port (fsync off), one database per test, and
// everything removed at the end.
//
// A package shares one cluster across its tests:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		url := pgtest.NewDatabase(t) // a fresh, empty database, dropped after the test
//		...
//	}
//
// Tests that each need a migrated database copy a template migrated once
// (pgtest.Template, then pgtest.NewDatabaseFrom).
//
// The server binaries (initdb, pg_ctl, postgres) are looked up on PATH, then in
// /usr/lib/postgresql/*/bin (newest version first); PGTEST_BINDIR names their directory
// explicitly. Without them tests are skipped, except when the environment variable CI is
// true: then they fail, so that a CI run never passes by skipping the PostgreSQL suite
// (scripts/install-postgres.sh installs them). Running as root, the cluster runs as the
// "postgres" OS user (PostgreSQL refuses to run as root).
package pgtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
)

// dirPrefix names cluster directories under the temporary directory; Start removes the
// ones whose test process is gone (a run killed before its clean-up).
const dirPrefix = "gatehouse-pgtest-"

// Cluster is a running throwaway PostgreSQL server.
type Cluster struct {
	// Port is the TCP port on 127.0.0.1.
	Port int

	bin   string // directory of initdb, pg_ctl and postgres
	dir   string // everything: data, socket, log
	runAs *user.User

	admin    *sql.DB
	stopOnce sync.Once
	down     atomic.Bool

	tmplMu    sync.Mutex
	templates map[string]*template
}

type template struct {
	done chan struct{}
	err  error
}

// Superuser is the cluster's superuser role (trust authentication, no password).
const Superuser = "postgres"

// Start starts a cluster that tb's clean-up stops. It skips tb when the PostgreSQL
// binaries are missing (fails in CI, see the package doc).
func Start(tb testing.TB) *Cluster {
	tb.Helper()
	c, err := start()
	if err != nil {
		fail(tb, err)
	}
	tb.Cleanup(c.Stop)
	return c
}

// errMissing reports that the server binaries are not installed.
var errMissing = errors.New("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH or in /usr/lib/postgresql/*/bin; install them with scripts/install-postgres.sh (or set PGTEST_BINDIR)")

func fail(tb testing.TB, err error) {
	tb.Helper()
	if errors.Is(err, errMissing) {
		if inCI() {
			tb.Fatalf("pgtest: %v: CI=true, so the PostgreSQL tests must run, not skip", err)
		}
		tb.Skipf("pgtest: %v: skipping the PostgreSQL tests (they fail instead when CI=true)", err)
	}
	tb.Fatalf("pgtest: %v", err)
}

func inCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// URL returns the connection URL of database name.
func (c *Cluster) URL(name string) string {
	return fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", Superuser, c.Port, name)
}

// NewDatabase creates an empty database and returns its URL; tb's clean-up drops it.
func (c *Cluster) NewDatabase(tb testing.TB) (url string) {
	tb.Helper()
	return c.NewDatabaseFrom(tb, "")
}

// NewDatabaseFrom creates a database that is a copy of template (made with Template; ""
// means an empty database) and returns its URL; tb's clean-up drops it.
func (c *Cluster) NewDatabaseFrom(tb testing.TB, template string) (url string) {
	tb.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	name := "t_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	q := `CREATE DATABASE ` + name
	if template != "" {
		if !validName(template) {
			tb.Fatalf("pgtest: bad template name %q", template)
		}
		q += ` TEMPLATE ` + template
	}
	if _, err := c.admin.ExecContext(ctx, q); err != nil {
		tb.Fatalf("pgtest: create database: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE ends sessions a test left open. The cluster may already be gone when a
		// test outlives it (a shared cluster stopped by Main): nothing left to drop then.
		if _, err := c.admin.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil && !c.down.Load() {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return c.URL(name)
}

// Template makes a template database called name once per cluster: an empty database
// that prepare (given its URL) fills, for instance by migrating it. It returns the name
// to pass to NewDatabaseFrom, which copies it much faster than preparing each database.
// Concurrent callers wait for the first; if prepare fails, every caller fails.
func (c *Cluster) Template(tb testing.TB, name string, prepare func(url string) error) string {
	tb.Helper()
	name = "tmpl_" + name
	if !validName(name) {
		tb.Fatalf("pgtest: bad template name %q: lower-case letters, digits and _", name)
	}
	c.tmplMu.Lock()
	if c.templates == nil {
		c.templates = map[string]*template{}
	}
	tp, ok := c.templates[name]
	if !ok {
		tp = &template{done: make(chan struct{})}
		c.templates[name] = tp
	}
	c.tmplMu.Unlock()
	if !ok {
		func() {
			defer close(tp.done) // even if prepare panics: the waiters then fail
			tp.err = errors.New("preparing it did not finish")
			tp.err = c.makeTemplate(name, prepare)
		}()
	}
	<-tp.done
	if tp.err != nil {
		tb.Fatalf("pgtest: template %s: %v", name, tp.err)
	}
	return name
}

func (c *Cluster) makeTemplate(name string, prepare func(url string) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.admin.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		return err
	}
	if err := prepare(c.URL(name)); err != nil {
		return err
	}
	// No connections from now on: a template being copied must have none (and prepare's
	// may take a moment to go away).
	if _, err := c.admin.ExecContext(ctx, `ALTER DATABASE `+name+` WITH ALLOW_CONNECTIONS false IS_TEMPLATE true`); err != nil {
		return err
	}
	_, err := c.admin.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, name)
	return err
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// Stop stops the server at once (no shutdown checkpoint: the data is thrown away) and
// removes its directory. It may be called more than once.
func (c *Cluster) Stop() {
	c.stopOnce.Do(func() {
		c.down.Store(true)
		if c.admin != nil {
			c.admin.Close()
		}
		_ = stopServer(c.bin, c.dir, c.runAs)
		_ = os.RemoveAll(c.dir)
	})
}

// Log returns the server's log (for diagnosing a failed test).
func (c *Cluster) Log() string {
	b, _ := os.ReadFile(filepath.Join(c.dir, "postgres.log"))
	return string(b)
}

func start() (*Cluster, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, err
	}
	var runAs *user.User
	if os.Geteuid() == 0 {
		if runAs, err = user.Lookup("postgres"); err != nil {
			return nil, fmt.Errorf("running as root, the cluster must run as the OS user postgres: %w", err)
		}
	}
	reapStale()
	dir, err := os.MkdirTemp(baseDir(runAs != nil), dirPrefix)
	if err != nil {
		return nil, err
	}
	c := &Cluster{bin: bin, dir: dir, runAs: runAs}
	if err := c.setUp(); err != nil {
		log := c.Log()
		c.Stop()
		if log != "" {
			err = fmt.Errorf("%w\nserver log:\n%s", err, log)
		}
		return nil, err
	}
	return c, nil
}

func (c *Cluster) setUp() error {
	if err := os.WriteFile(filepath.Join(c.dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return err
	}
	sock := filepath.Join(c.dir, "sock")
	if err := os.Mkdir(sock, 0o700); err != nil {
		return err
	}
	if c.runAs != nil {
		uid, _ := strconv.Atoi(c.runAs.Uid)
		gid, _ := strconv.Atoi(c.runAs.Gid)
		for _, p := range []string{c.dir, sock} {
			if err := os.Chown(p, uid, gid); err != nil {
				return err
			}
		}
	}
	data := filepath.Join(c.dir, "data")
	if out, err := c.run("initdb", "-D", data, "-U", Superuser, "-A", "trust", "-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		return fmt.Errorf("initdb: %v\n%s", err, out)
	}
	// A port that was free a moment ago may be taken by the time the server binds it:
	// try a few.
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port, err := freePort()
		if err != nil {
			return err
		}
		opts := strings.Join([]string{
			"-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			"-k", shellQuote(sock),
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "max_connections=300",
			"-c", "shared_buffers=32MB",
		}, " ")
		out, err := c.run("pg_ctl", "start", "-D", data, "-l", filepath.Join(c.dir, "postgres.log"), "-w", "-t", "60", "-s", "-o", opts)
		if err == nil {
			c.Port = port
			lastErr = nil
			break
		}
		lastErr = fmt.Errorf("pg_ctl start: %v\n%s", err, out)
		_ = stopServer(c.bin, c.dir, c.runAs)
	}
	if lastErr != nil {
		return lastErr
	}
	admin, err := sql.Open("pgx", c.URL("postgres"))
	if err != nil {
		return err
	}
	admin.SetMaxOpenConns(4)
	c.admin = admin
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return admin.PingContext(ctx)
}

// run runs one of the server binaries, as the postgres OS user when running as root.
func (c *Cluster) run(name string, args ...string) ([]byte, error) {
	cmd := command(c.bin, c.runAs, name, args...)
	cmd.Dir = c.dir
	return cmd.CombinedOutput()
}

func command(bin string, runAs *user.User, name string, args ...string) *exec.Cmd {
	path := filepath.Join(bin, name)
	var cmd *exec.Cmd
	if runAs == nil {
		cmd = exec.Command(path, args...)
	} else if runuser, err := exec.LookPath("runuser"); err == nil {
		cmd = exec.Command(runuser, append([]string{"-u", runAs.Username, "--", path}, args...)...)
	} else {
		uid, _ := strconv.Atoi(runAs.Uid)
		gid, _ := strconv.Atoi(runAs.Gid)
		cmd = exec.Command(path, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	}
	// Keep the caller's PG* settings (PGDATABASE, PGPORT, ...) away from the tools.
	env := []string{}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "LC_ALL=C")
	return cmd
}

func stopServer(bin, dir string, runAs *user.User) error {
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err != nil {
		return nil // not running
	}
	cmd := command(bin, runAs, "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w", "-t", "30", "-s")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v\n%s", err, out)
	}
	return nil
}

// shellQuote quotes s for the shell pg_ctl starts the server with.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// findBinaries returns the directory that holds initdb, pg_ctl and postgres.
func findBinaries() (string, error) {
	ok := func(dir string) bool {
		for _, n := range []string{"initdb", "pg_ctl", "postgres"} {
			if fi, err := os.Stat(filepath.Join(dir, n)); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	if dir := os.Getenv("PGTEST_BINDIR"); dir != "" {
		if ok(dir) {
			return dir, nil
		}
		return "", fmt.Errorf("%w (PGTEST_BINDIR=%s does not hold them)", errMissing, dir)
	}
	if p, err := exec.LookPath("initdb"); err == nil {
		// pg_ctl starts the postgres next to its real path: use the directory the
		// binaries really live in (Debian links them from /usr/lib/postgresql/N/bin).
		if real, err := filepath.EvalSymlinks(p); err == nil && ok(filepath.Dir(real)) {
			return filepath.Dir(real), nil
		}
		if ok(filepath.Dir(p)) {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	return "", errMissing
}

func version(binDir string) float64 {
	v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(binDir)), 64)
	return v
}

// baseDir is where cluster directories go. The postgres OS user must be able to reach
// it, which a private TMPDIR (such as one under /root) does not allow: use /tmp then.
func baseDir(otherUser bool) string {
	d := os.TempDir()
	if !otherUser {
		return d
	}
	for p := d; ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return "/tmp"
		}
		if p == filepath.Dir(p) {
			return d
		}
	}
}

// reapStale stops and removes the clusters of test processes that died without cleaning
// up (killed by a test timeout, say), so that their servers do not pile up.
func reapStale() {
	for _, base := range []string{os.TempDir(), "/tmp"} {
		dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
		for _, dir := range dirs {
			b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
			if err != nil {
				continue
			}
			pid, err := strconv.Atoi(string(bytes.TrimSpace(b)))
			if err != nil || pid <= 0 || processAlive(pid) {
				continue
			}
			bin, err := findBinaries()
			if err != nil {
				return
			}
			var runAs *user.User
			if fi, err := os.Stat(dir); err == nil {
				if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
					runAs, _ = user.LookupId(strconv.Itoa(int(st.Uid)))
				}
			}
			if stopServer(bin, dir, runAs) == nil {
				_ = os.RemoveAll(dir)
			}
		}
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// --- one cluster per test package ---

var shared struct {
	sync.Mutex
	c   *Cluster
	err error
}

// Main runs a package's tests (call it from TestMain) and stops the package's shared
// cluster, if a test started one, when they are done.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// Shared returns the package's shared cluster, starting it on first use (so that a run
// that selects no PostgreSQL test starts no server). Use Main in TestMain to stop it.
func Shared(tb testing.TB) *Cluster {
	tb.Helper()
	shared.Lock()
	defer shared.Unlock()
	if shared.c == nil && shared.err == nil {
		shared.c, shared.err = start()
	}
	if shared.err != nil {
		fail(tb, shared.err)
	}
	return shared.c
}

// StopShared stops the shared cluster if it runs.
func StopShared() {
	shared.Lock()
	defer shared.Unlock()
	if shared.c != nil {
		shared.c.Stop()
		shared.c = nil
	}
}

// NewDatabase creates an empty database on the package's shared cluster and returns its
// URL; tb's clean-up drops it.
func NewDatabase(tb testing.TB) (url string) {
	tb.Helper()
	return Shared(tb).NewDatabase(tb)
}

// Template makes a template database on the package's shared cluster (see
// Cluster.Template).
func Template(tb testing.TB, name string, prepare func(url string) error) string {
	tb.Helper()
	return Shared(tb).Template(tb, name, prepare)
}

// NewDatabaseFrom creates a copy of a template database on the package's shared cluster
// and returns its URL; tb's clean-up drops it.
func NewDatabaseFrom(tb testing.TB, template string) (url string) {
	tb.Helper()
	return Shared(tb).NewDatabaseFrom(tb, template)
}
