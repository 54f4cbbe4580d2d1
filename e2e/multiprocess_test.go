package e2e

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
)

// TestMultiProcess runs two `gatehouse serve` processes on one PostgreSQL database (a
// throwaway cluster from pgtest), with checkpoints in a shared object-storage directory
// (--blob-url file://, when the binary has the flag), and proves that every coordination
// point holds across processes: the stack lock (exactly one of two concurrent updates wins,
// the other gets 409), token revocation (refused by the other process on its very next
// request), the audit chain (one linear chain after concurrent writes through both), a
// kill -9 of one process mid-update (the other serves on with every acknowledged
// checkpoint), and migrations (two processes starting at once on an empty database migrate
// once). It needs only Go and the PostgreSQL server binaries, and runs in CI.
//
// GATEHOUSE_E2E_BIN names a prebuilt gatehouse binary to test instead of building one.
func TestMultiProcess(t *testing.T) {
	bin := mpBinary(t)
	cluster := pgtest.Start(t)
	t.Run("MigrateOnce", func(t *testing.T) { testMigrateOnce(t, bin, cluster) })
	t.Run("ConcurrentUpdates", func(t *testing.T) { testConcurrentUpdates(t, newPair(t, bin, cluster)) })
	t.Run("Revocation", func(t *testing.T) { testCrossRevocation(t, newPair(t, bin, cluster)) })
	t.Run("RevocationUnderLoad", func(t *testing.T) { testRevocationUnderLoad(t, newPair(t, bin, cluster)) })
	t.Run("AuditChain", func(t *testing.T) { testAuditAcross(t, newPair(t, bin, cluster)) })
	t.Run("Kill9", func(t *testing.T) { testKill9Across(t, newPair(t, bin, cluster)) })
}

func mpBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("GATEHOUSE_E2E_BIN"); bin != "" {
		return bin
	}
	return gatehouseBinary(t)
}

// serveFlags returns the flags for checkpoints in object storage in dir, if the binary's
// serve command has them (every checkpoint there: minimum size 0).
func serveFlags(t *testing.T, bin, blobDir string) []string {
	t.Helper()
	out, err := exec.Command(bin, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("gatehouse serve --help: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("--blob-url")) {
		t.Logf("this gatehouse has no serve --blob-url: checkpoints stay in the database")
		return nil
	}
	flags := []string{"--blob-url", (&url.URL{Scheme: "file", Path: blobDir}).String()}
	if bytes.Contains(out, []byte("--blob-min-bytes")) {
		flags = append(flags, "--blob-min-bytes", "0")
	}
	return flags
}

// pair is two gatehouse processes serving one bootstrapped PostgreSQL database.
type pair struct {
	t       *testing.T
	bin     string
	dbURL   string
	dataDir string // shared: the key file and the audit signing key
	blobDir string
	blobs   bool
	token   string
	a, b    *server
	ca, cb  *cliwire.Client
	extra   []string
}

func newPair(t *testing.T, bin string, cluster *pgtest.Cluster) *pair {
	t.Helper()
	p := &pair{t: t, bin: bin, dbURL: cluster.NewDatabase(t), dataDir: t.TempDir(), blobDir: filepath.Join(t.TempDir(), "blobs")}
	p.extra = append([]string{"--database", p.dbURL}, serveFlags(t, bin, p.blobDir)...)
	p.blobs = len(p.extra) > 2
	p.token = bootstrapDB(t, bin, p.dataDir, p.dbURL)
	p.a = startServer(t, bin, p.dataDir, freeAddr(t), p.extra...)
	p.b = startServer(t, bin, p.dataDir, freeAddr(t), p.extra...)
	p.ca, p.cb = client(p.a.URL, p.token), client(p.b.URL, p.token)
	return p
}

// bootstrapDB runs `gatehouse bootstrap` on a database and returns the admin token.
func bootstrapDB(t *testing.T, bin, dataDir, dbURL string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(bin, "bootstrap", "--data-dir", dataDir, "--database", dbURL, "--org", crashOrg, "--admin", "alice")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("gatehouse bootstrap --database: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

func (p *pair) sql() *sql.DB {
	p.t.Helper()
	db, err := sql.Open("pgx", p.dbURL)
	must(p.t, err)
	p.t.Cleanup(func() { db.Close() })
	return db
}

func (p *pair) createStack(c *cliwire.Client, project, stack string) string {
	p.t.Helper()
	must(p.t, c.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/" + crashOrg + "/" + project,
		Body: apitype.CreateStackRequest{StackName: stack}}, &json.RawMessage{}))
	return "/api/stacks/" + crashOrg + "/" + project + "/" + stack
}

// via returns the update as seen through another process (its lease token works there too).
func (u *wireUpdate) via(c *cliwire.Client) *wireUpdate {
	v := *u
	v.c = c
	return &v
}

// testMigrateOnce starts two processes at the same moment on an empty database: both serve,
// and every migration was applied exactly once.
func testMigrateOnce(t *testing.T, bin string, cluster *pgtest.Cluster) {
	dbURL := cluster.NewDatabase(t)
	dataDir := t.TempDir()
	var servers []*server
	for range 2 {
		logf, err := os.CreateTemp(t.TempDir(), "serve-*.log")
		must(t, err)
		addr := freeAddr(t)
		cmd := exec.Command(bin, "serve", "--data-dir", dataDir, "--database", dbURL, "--addr", addr, "--log-format", "text")
		cmd.Stdout, cmd.Stderr = logf, logf
		s := &server{t: t, URL: "http://" + addr, addr: addr, cmd: cmd, done: make(chan struct{}), logPath: logf.Name()}
		servers = append(servers, s)
	}
	for _, s := range servers { // back to back: both open the empty database at once
		must(t, s.cmd.Start())
		go func() { s.waitErr = s.cmd.Wait(); close(s.done) }()
		t.Cleanup(s.stop)
	}
	for i, s := range servers {
		if err := s.waitHealthy(90 * time.Second); err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, s.logTail(40))
		}
		must(t, cliwire.New(s.URL, "").Do(cliwire.Call{Method: http.MethodGet, Path: "/readyz", NoAuth: true}, nil))
	}
	files, err := filepath.Glob(filepath.Join(moduleRoot(t), "store", "sqlstore", "migrations", "*.sql"))
	must(t, err)
	db, err := sql.Open("pgx", dbURL)
	must(t, err)
	defer db.Close()
	var rows, versions, latest, heads, canaries int
	must(t, db.QueryRow(`SELECT COUNT(*), COUNT(DISTINCT version), MAX(version) FROM schema_migrations`).Scan(&rows, &versions, &latest))
	must(t, db.QueryRow(`SELECT COUNT(*) FROM audit_head`).Scan(&heads))
	must(t, db.QueryRow(`SELECT COUNT(*) FROM meta WHERE key = 'keyring_canary'`).Scan(&canaries))
	// Migrations are numbered 1..N without gaps (Migrate applies those above the newest
	// applied one, so a gap filled later would be skipped).
	if rows != len(files) || versions != len(files) || latest != len(files) {
		t.Fatalf("schema_migrations: %d rows, %d distinct versions, newest %d; want each of the %d migrations once", rows, versions, latest, len(files))
	}
	if heads != 1 || canaries != 1 {
		t.Fatalf("after two concurrent first starts: %d audit heads, %d keyring canaries; want 1 each", heads, canaries)
	}
	t.Logf("two processes started together: %d migrations applied once each", rows)
}

// testConcurrentUpdates races two updates of one stack, one through each process, several
// times: exactly one starts, the other gets 409; the winner's lease works through either
// process; a cancel through one process ends the lease on the other.
func testConcurrentUpdates(t *testing.T, p *pair) {
	sp := p.createStack(p.ca, crashProject, "race")
	const rounds = 6
	for round := 1; round <= rounds; round++ {
		var wg sync.WaitGroup
		start := make(chan struct{})
		results := make([]*wireUpdate, 2)
		errs := make([]error, 2)
		for i, c := range []*cliwire.Client{p.ca, p.cb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				results[i], errs[i] = tryStartUpdate(c, sp, false)
			}()
		}
		close(start)
		wg.Wait()
		var winner *wireUpdate
		for i := range 2 {
			switch {
			case errs[i] == nil:
				if winner != nil {
					t.Fatalf("round %d: both concurrent updates started (%s and %s)", round, winner.ID, results[i].ID)
				}
				winner = results[i]
			case cliwire.Status(errs[i]) != http.StatusConflict:
				t.Fatalf("round %d: the losing update through process %c: want 409, got %v", round, 'A'+i, errs[i])
			}
		}
		if winner == nil {
			t.Fatalf("round %d: neither update started: %v / %v", round, errs[0], errs[1])
		}
		if winner.Version != round {
			t.Fatalf("round %d: the winner produces version %d", round, winner.Version)
		}
		// The lease works through both processes, alternately.
		other := winner.via(p.cb)
		if winner.c == p.cb {
			other = winner.via(p.ca)
		}
		rs := []apitype.ResourceV3{stackResource(), comp(fmt.Sprintf("round-%d", round))}
		must(t, other.events(0, 1))
		must(t, winner.checkpoint(deploymentOf("race", rs)))
		must(t, other.checkpoint(deploymentOf("race", rs)))
		if round < rounds {
			must(t, other.complete(apitype.UpdateStatusSucceeded))
			continue
		}
		// The last one is cancelled through one process; its lease is dead on the other.
		must(t, winner.c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + winner.ID + "/cancel"}, nil))
		if err := other.checkpoint(deploymentOf("race", rs)); cliwire.Status(err) != http.StatusForbidden {
			t.Fatalf("checkpoint through the other process after cancel: want 403, got %v", err)
		}
	}
	var st apitype.Stack
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != "" || st.Version != rounds {
		t.Fatalf("stack after %d races: version %d, active update %q", rounds, st.Version, st.ActiveUpdate)
	}
}

// testCrossRevocation: a token revoked through process A is refused by process B on the very
// next request, although B has just authenticated it (and may cache it).
func testCrossRevocation(t *testing.T, p *pair) {
	for i := range 5 {
		var tok struct {
			ID         string `json:"id"`
			TokenValue string `json:"tokenValue"`
		}
		must(t, p.ca.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/user/tokens", Body: map[string]any{"name": fmt.Sprintf("laptop-%d", i)}}, &tok))
		onB := client(p.b.URL, tok.TokenValue)
		for range 3 { // B authenticates it, and may cache it
			must(t, onB.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
		}
		must(t, p.ca.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/user/tokens/" + tok.ID}, nil))
		if err := onB.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil); cliwire.Status(err) != http.StatusUnauthorized {
			t.Fatalf("token %d revoked through A, next request through B: want 401, got %v", i, err)
		}
		if err := client(p.a.URL, tok.TokenValue).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil); cliwire.Status(err) != http.StatusUnauthorized {
			t.Fatalf("token %d revoked, request through A: want 401, got %v", i, err)
		}
	}
	// Removing a member through B takes effect on A at once too (the security epoch).
	var user struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/" + crashOrg + "/users", Body: map[string]string{"name": "bob", "role": "member"}}, &user))
	bobOnA := client(p.a.URL, user.TokenValue)
	must(t, bobOnA.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/" + crashOrg}, nil))
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/orgs/" + crashOrg + "/members/bob"}, nil))
	if err := bobOnA.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/" + crashOrg}, nil); cliwire.Status(err) < 400 {
		t.Fatalf("bob removed through B still reads the organization through A: %v", err)
	}
}

// clientFrom is a client whose connections come from the loopback address src: the
// server's limit on failed authentications counts per source address (and across
// processes), and a revoked token hammered from one address would soon get 429s instead
// of the 401s the test looks for.
func clientFrom(url, token, src string) *cliwire.Client {
	c := cliwire.New(url, token)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	c.HTTP = &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 2}}
	return c
}

// refused reports whether status is the round's refusal. A revoked token is refused with 401
// until the failures counted against its (non-secret) prefix reach the limit, then with 429:
// both are refusals.
func (r round) refused(status int) bool {
	return status == r.want || (r.want == http.StatusUnauthorized && status == http.StatusTooManyRequests)
}

// round is one revocation of testRevocationUnderLoad.
type round struct {
	name   string
	onB    *cliwire.Client
	probe  cliwire.Call
	revoke func() // through A
	want   int
}

// testRevocationUnderLoad: while many goroutines hammer process B with a credential (and
// other callers keep B's caches busy), process A revokes it: a token revoked, a member
// removed, round after round. Every request to B that began after A's answer arrived is
// refused, B's very next request included; requests that began earlier may go either way.
// Each worker calls from its own loopback address and stops after a few refusals, so that
// no address reaches the limit on failed authentications.
func testRevocationUnderLoad(t *testing.T, p *pair) {
	var bob struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, p.ca.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/" + crashOrg + "/users", Body: map[string]string{"name": "bob", "role": "member"}}, &bob))
	rounds := func(i int) round {
		if i%2 == 0 { // (the probe client is replaced per worker, with its own address)
			var tok struct {
				ID         string `json:"id"`
				TokenValue string `json:"tokenValue"`
			}
			must(t, p.ca.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/user/tokens", Body: map[string]any{"name": fmt.Sprintf("load-%d", i)}}, &tok))
			return round{"token revoked", client(p.b.URL, tok.TokenValue), cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, func() {
				must(t, p.ca.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/user/tokens/" + tok.ID}, nil))
			}, http.StatusUnauthorized}
		}
		if i > 1 { // bob back in the organization
			must(t, p.ca.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/" + crashOrg + "/members/bob", Body: map[string]string{"role": "member"}}, nil))
		}
		return round{"member removed", client(p.b.URL, bob.TokenValue), cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/" + crashOrg}, func() {
			must(t, p.ca.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/orgs/" + crashOrg + "/members/bob"}, nil))
		}, http.StatusNotFound}
	}
	const nRounds, workers, maxCalls, maxAfter = 6, 8, 500, 20
	deadline := time.Now().Add(2 * time.Minute)
	var began, refusedAfter int64
	for i := 0; i < nRounds && time.Now().Before(deadline); i++ {
		r := rounds(i)
		for range 3 { // B authenticates it, and caches it
			must(t, r.onB.Do(r.probe, nil))
		}
		var revokedAt atomic.Int64 // unix nanos once A's answer arrived; 0 before
		var stop atomic.Bool
		var mu sync.Mutex
		var bad []string
		var before, after atomic.Int64
		var wg sync.WaitGroup
		for w := range workers + 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if w >= workers { // other callers on B: they move its cache to each new epoch
					for k := 0; k < maxCalls && !stop.Load() && time.Now().Before(deadline); k++ {
						_ = p.cb.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/" + crashOrg}, nil)
					}
					return
				}
				onB := clientFrom(p.b.URL, r.onB.Token, fmt.Sprintf("127.0.%d.%d", i+1, w+2))
				for k, n := 0, 0; k < maxCalls && n < maxAfter && !stop.Load() && time.Now().Before(deadline); k++ {
					start := time.Now().UnixNano()
					rev := revokedAt.Load()
					err := onB.Do(r.probe, nil)
					if rev == 0 || start < rev {
						before.Add(1)
						continue
					}
					n++
					after.Add(1)
					if !r.refused(cliwire.Status(err)) {
						mu.Lock()
						bad = append(bad, fmt.Sprintf("worker %d call %d: want %d, got %v", w, k, r.want, err))
						mu.Unlock()
					}
				}
			}()
		}
		time.Sleep(100 * time.Millisecond) // the load on B builds up
		r.revoke()
		revokedAt.Store(time.Now().UnixNano())
		// The very next request to B.
		if err := r.onB.Do(r.probe, nil); !r.refused(cliwire.Status(err)) {
			mu.Lock()
			bad = append(bad, fmt.Sprintf("the next request after A's answer: want %d, got %v", r.want, err))
			mu.Unlock()
		}
		time.Sleep(300 * time.Millisecond)
		stop.Store(true)
		wg.Wait()
		if len(bad) > 0 {
			t.Fatalf("round %d (%s through A): %d requests to B that began after A's answer were not refused, e.g. %s", i, r.name, len(bad), bad[0])
		}
		began += before.Load()
		refusedAfter += after.Load()
	}
	t.Logf("%d requests to B began during the rounds before A's answer, %d after it (all refused)", began, refusedAfter)
	if refusedAfter == 0 {
		t.Fatal("no request to B began after a revocation: the test proved nothing")
	}
}

// testAuditAcross hammers both processes concurrently with audited calls, then checks that
// the log is one verifiable chain holding every one of them.
func testAuditAcross(t *testing.T, p *pair) {
	db := p.sql()
	count := func() (n int64) {
		must(t, db.QueryRow(`SELECT COUNT(*) FROM audit_events`).Scan(&n))
		return n
	}
	sp := p.createStack(p.ca, "hammer", "secrets")
	before := count()
	const workers, calls = 8, 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed error
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range calls {
				c := p.ca
				if (w+i)%2 == 1 {
					c = p.cb
				}
				var err error
				if i%3 == 0 {
					err = c.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/" + crashOrg + "/hammer",
						Body: apitype.CreateStackRequest{StackName: fmt.Sprintf("s-%d-%d", w, i)}}, &json.RawMessage{})
				} else {
					err = c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/encrypt",
						Body: apitype.EncryptValueRequest{Plaintext: []byte(fmt.Sprintf("v-%d-%d", w, i))}}, &json.RawMessage{})
				}
				if err != nil {
					mu.Lock()
					failed = fmt.Errorf("worker %d call %d: %w", w, i, err)
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed != nil {
		t.Fatal(failed)
	}
	after := count()
	if after-before < workers*calls {
		t.Fatalf("%d audit events recorded for %d audited calls", after-before, workers*calls)
	}
	var minSeq, maxSeq, distinct int64
	must(t, db.QueryRow(`SELECT MIN(seq), MAX(seq), COUNT(DISTINCT prev_hash) FROM audit_events`).Scan(&minSeq, &maxSeq, &distinct))
	if minSeq != 1 || maxSeq != after || distinct != after {
		t.Fatalf("audit chain: seq %d..%d, %d distinct predecessors for %d events; want one gapless line", minSeq, maxSeq, distinct, after)
	}
	out, err := exec.Command(p.bin, "audit", "verify", "--database", p.dbURL, "--data-dir", p.dataDir).CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "OK: ") {
		t.Fatalf("gatehouse audit verify after concurrent writes through both processes: %v\n%s", err, out)
	}
	t.Logf("%d audited calls through two processes: %s", workers*calls, strings.SplitN(string(out), "\n", 2)[0])
}

// testKill9Across kills one process with SIGKILL while an update streams checkpoints through
// it: the other process serves on, export returns the last acknowledged checkpoint, the
// update can be cancelled and the stack updated again through the survivor.
func testKill9Across(t *testing.T, p *pair) {
	sp := p.createStack(p.ca, crashProject, crashStack)
	base := []apitype.ResourceV3{stackResource(), comp("base-0"), comp("base-1")}
	u1 := startUpdate(t, p.ca, sp, false)
	must(t, u1.checkpoint(deployment(base)))
	must(t, u1.complete(apitype.UpdateStatusSucceeded))
	v1 := exportDeployment(t, p.cb, sp, "")

	u2 := startUpdate(t, p.ca, sp, false)
	must(t, u2.events(0, 1))
	stateAt := func(i int) []apitype.ResourceV3 {
		rs := slices.Clone(base)
		for k := 0; k < i; k++ {
			rs = append(rs, comp(fmt.Sprintf("new-%d", k)))
		}
		return rs
	}
	const acks, total = 10, 2000
	var acked, sent atomic.Int64
	var streamErr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			sent.Store(int64(i))
			if err := u2.checkpoint(deployment(stateAt(i))); err != nil {
				streamErr = err
				return
			}
			acked.Store(int64(i))
		}
	}()
	deadline := time.Now().Add(2 * time.Minute)
	for acked.Load() < acks {
		select {
		case <-done:
			t.Fatalf("the checkpoint stream ended before the kill: %v", streamErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d checkpoints acknowledged in 2 minutes", acked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	p.a.kill9()
	<-done
	lastAcked, lastSent := int(acked.Load()), int(sent.Load())
	if streamErr == nil {
		t.Fatal("every checkpoint was acknowledged although the process was killed")
	}
	t.Logf("process A killed with %d checkpoints acknowledged, %d sent", lastAcked, lastSent)

	// B serves on: the interrupted update still holds the stack, and its state is the last
	// acknowledged checkpoint (or the one in flight, if it committed without an answer).
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodGet, Path: "/readyz"}, nil))
	var st apitype.Stack
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != u2.ID {
		t.Fatalf("through B the stack's active update is %q, want the interrupted %q", st.ActiveUpdate, u2.ID)
	}
	candidates := []int{lastAcked}
	if lastSent > lastAcked {
		candidates = append(candidates, lastSent)
	}
	got := exportDeployment(t, p.cb, sp, "")
	n := matchState(got, stateAt, candidates, true)
	if n < 0 {
		t.Fatalf("export through B is none of the acknowledged or in-flight checkpoints %v", candidates)
	}
	t.Logf("export through B = checkpoint %d (last acknowledged %d)", n, lastAcked)
	if got := exportDeployment(t, p.cb, sp, "1"); !jsonEqual(got, v1) {
		t.Fatal("export/1 changed")
	}
	if _, err := tryStartUpdate(p.cb, sp, false); cliwire.Status(err) != http.StatusConflict {
		t.Fatalf("a new update while the interrupted one holds the lease: want 409, got %v", err)
	}
	// The CLI, retrying through the load balancer, reaches B with its lease: it may go on.
	onB := u2.via(p.cb)
	var renewed apitype.RenewUpdateLeaseResponse
	must(t, onB.lease(http.MethodPost, "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, &renewed))
	// pulumi cancel through B, then a new update through B.
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + u2.ID + "/cancel"}, nil))
	if err := onB.checkpoint(deployment(base)); cliwire.Status(err) != http.StatusForbidden {
		t.Fatalf("checkpoint with the cancelled update's lease: want 403, got %v", err)
	}
	afterCancel := exportDeployment(t, p.cb, sp, "")
	if matchState(afterCancel, stateAt, candidates, true) < 0 {
		t.Fatal("the cancel lost acknowledged checkpoints")
	}
	u3 := startUpdate(t, p.cb, sp, false)
	var prev apitype.DeploymentV3
	must(t, json.Unmarshal(afterCancel, &prev))
	final := append(slices.Clone(prev.Resources), comp("after-kill"))
	must(t, u3.checkpoint(deployment(final)))
	must(t, u3.complete(apitype.UpdateStatusSucceeded))
	wantResources(t, exportDeployment(t, p.cb, sp, ""), urnsOf(final), "export after the update through the survivor")
	st = apitype.Stack{}
	must(t, p.cb.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != "" || st.Version != 3 {
		t.Fatalf("stack after the update through the survivor: active %q, version %d", st.ActiveUpdate, st.Version)
	}
	if p.blobs {
		var inBlobs int
		must(t, p.sql().QueryRow(`SELECT COUNT(*) FROM checkpoints WHERE blob_key <> ''`).Scan(&inBlobs))
		objects, _ := filepath.Glob(filepath.Join(p.blobDir, "checkpoints", "sha256", "*"))
		if inBlobs == 0 || len(objects) == 0 {
			t.Fatalf("--blob-url: %d checkpoint rows reference objects, %d objects in %s", inBlobs, len(objects), p.blobDir)
		}
		t.Logf("checkpoints in object storage: %d rows reference %d objects", inBlobs, len(objects))
	}
}
