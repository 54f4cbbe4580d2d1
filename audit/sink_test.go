package audit

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"gocloud.dev/blob"
	"gocloud.dev/blob/memblob"
)

// ---- file sink ----

func readFileEvents(t *testing.T, path string) []gatehouse.AuditEvent {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []gatehouse.AuditEvent
	for e, err := range ReadJSONL(f) {
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, e)
	}
	return out
}

func TestFileSink(t *testing.T) {
	ctx := context.Background()
	chain := buildChain(14)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	s, err := OpenSink(ctx, "file://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "file://"+path {
		t.Errorf("name %q", s.Name())
	}
	for _, b := range [][]gatehouse.AuditEvent{chain[0:5], chain[5:10], chain[5:10], chain[7:9]} {
		if err := s.Write(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %04o, want 0600", fi.Mode().Perm())
	}
	if got := readFileEvents(t, path); len(got) != 10 {
		t.Fatalf("file holds %d events, want 10 (repeated batches absorbed)", len(got))
	}

	// After a restart the last seq is read back: a batch repeated across the restart is
	// absorbed, the new part appended.
	s, err = OpenSink(ctx, "file://"+path+"?name=local")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, chain[8:12]); err != nil {
		t.Fatal(err)
	}
	s.Close()

	// A torn line from a crash mid-write is cut on open.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":13,"id":"torn`)
	f.Close()
	s, err = OpenSink(ctx, "file://"+path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Write(ctx, chain[12:14]); err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := readFileEvents(t, path)
	if len(got) != 14 {
		t.Fatalf("file holds %d events, want 14", len(got))
	}
	rep, err := Verify(ctx, Events(got), nil, nil)
	if err != nil || !rep.OK || rep.Checked != 14 {
		t.Fatalf("verify file: %v %v", rep, err)
	}
	if err := s.Write(ctx, chain[:1]); err == nil {
		t.Error("write after close succeeded")
	}
}

func TestFileSinkFormats(t *testing.T) {
	ctx := context.Background()
	chain := nastyChain()
	for _, format := range []string{FormatCEF, FormatOCSF} {
		path := filepath.Join(t.TempDir(), "audit."+format)
		s, err := OpenSink(ctx, "file://"+path+"?format="+format+"&hostname=gh-1")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, chain[:10]); err != nil {
			t.Fatal(err)
		}
		s.Close()
		// Reopen: the last seq is recovered from the format, so a repeat is absorbed.
		s, err = OpenSink(ctx, "file://"+path+"?format="+format)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(ctx, chain[5:]); err != nil {
			t.Fatal(err)
		}
		s.Close()
		data, _ := os.ReadFile(path)
		lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
		if len(lines) != len(chain) {
			t.Fatalf("%s: %d lines, want %d", format, len(lines), len(chain))
		}
		for i, line := range lines {
			var seq int64
			if format == FormatCEF {
				_, ext, err := ParseCEF(line)
				if err != nil {
					t.Fatalf("line %d: %v", i, err)
				}
				if ext["dvchost"] != "gh-1" && i < 10 {
					t.Errorf("dvchost %q", ext["dvchost"])
				}
				seq, _ = strconv.ParseInt(ext["cn1"], 10, 64)
			} else {
				seq = lastSeqOfLine(FormatOCSF, []byte(line))
			}
			if seq != int64(i+1) {
				t.Fatalf("%s line %d has seq %d", format, i, seq)
			}
		}
	}
}

func TestOpenSinkErrors(t *testing.T) {
	ctx := context.Background()
	t.Setenv("GH_AUDIT_EMPTY", "")
	for _, u := range []string{
		"ftp://x/y",
		"file://relative/path.jsonl",
		"file:///tmp/x.jsonl?format=xml",
		"file:///tmp/x.jsonl?bogus=1",
		"http://example.com/hook",
		"http://10.0.0.1/hook",
		"https://siem.example.com/hook?hmac_secret_env=GH_AUDIT_EMPTY",
		"https://siem.example.com/hook?timeout=soon",
		"syslog+tcp://collector",
		"syslog+tcp://collector:514?facility=99",
		"syslog+tcp://collector:514?ca=/x",
		"syslog+tls://collector:6514?ca=/does/not/exist",
		"syslog+tls://collector:6514?cert=/only/cert",
		"mem://?format=pdf",
		"://bad",
		"https://user:pa ss@host/x",
	} {
		if s, err := OpenSink(ctx, u); err == nil {
			s.Close()
			t.Errorf("OpenSink(%q) succeeded", u)
		} else if strings.Contains(err.Error(), "pa ss") {
			t.Errorf("OpenSink error leaks the password: %v", err)
		}
	}
}

func TestSinkNamesHaveNoSecrets(t *testing.T) {
	ctx := context.Background()
	t.Setenv("GH_AUDIT_HMAC", "s3cr3t-value")
	s, err := OpenSink(ctx, "https://user:hunter2@siem.example.com/ingest?token=abc&hmac_secret_env=GH_AUDIT_HMAC")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Name() != "https://siem.example.com/ingest" {
		t.Errorf("name %q", s.Name())
	}
	s2, err := OpenSink(ctx, "mem://?name=archive")
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.Name() != "archive" {
		t.Errorf("name %q", s2.Name())
	}
}

// ---- webhook sink ----

type webhookServer struct {
	*httptest.Server
	down   atomic.Bool
	fails  atomic.Int64
	mu     sync.Mutex
	seqs   []int64
	errors []string
}

func newWebhookServer(t *testing.T, secret string) *webhookServer {
	w := &webhookServer{}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if w.down.Load() {
			w.fails.Add(1)
			http.Error(rw, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		fail := func(format string, args ...any) {
			w.errors = append(w.errors, fmt.Sprintf(format, args...))
			http.Error(rw, "bad request", http.StatusBadRequest)
		}
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			fail("method %s content type %q", r.Method, r.Header.Get("Content-Type"))
			return
		}
		if r.URL.Query().Get("keep") != "1" || r.URL.Query().Has("hmac_secret_env") || r.URL.Query().Has("name") {
			fail("query %q: ours must be removed, the target's kept", r.URL.RawQuery)
			return
		}
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(body)
		if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(r.Header.Get(HeaderSignature)), []byte(want)) {
			fail("signature %q, want %q", r.Header.Get(HeaderSignature), want)
			return
		}
		var batch []jsonEvent
		if err := json.Unmarshal(body, &batch); err != nil || len(batch) == 0 {
			fail("body: %v", err)
			return
		}
		if want := fmt.Sprintf("%d-%d", batch[0].Seq, batch[len(batch)-1].Seq); r.Header.Get(HeaderBatch) != want {
			fail("batch header %q, want %q", r.Header.Get(HeaderBatch), want)
			return
		}
		for _, e := range batch {
			w.seqs = append(w.seqs, e.Seq)
		}
		rw.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(w.Close)
	return w
}

func (w *webhookServer) received() []int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seqs)
}

func maxSeq(s []int64) int64 {
	if len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// TestWebhookSinkDownThenUp runs the Exporter against a webhook that answers 503 for a
// while, then recovers; then restarts the Exporter and checks it resumes at the cursor.
func TestWebhookSinkDownThenUp(t *testing.T) {
	const secret = "s3cr3t-hmac-value"
	t.Setenv("GH_AUDIT_HMAC", secret)
	ctx := context.Background()
	srv := newWebhookServer(t, secret)
	sinkURL := srv.URL + "/ingest?keep=1&hmac_secret_env=GH_AUDIT_HMAC&name=hook&timeout=2s"
	sink, err := OpenSink(ctx, sinkURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()

	src := newMemSource(20)
	cur := &memCursor{}
	reg := prometheus.NewRegistry()
	opts := fastOpts()
	opts.Registerer = reg
	x := NewExporter(src, cur, sink, opts)
	stop := runExporter(t, x)

	waitFor(t, 10*time.Second, "the first 20 events", func() bool { return maxSeq(srv.received()) == 20 })
	srv.down.Store(true)
	src.add(15)
	waitFor(t, 10*time.Second, "failed deliveries while down", func() bool {
		return srv.fails.Load() >= 3 && testutil.ToFloat64(x.errs) >= 3
	})
	if c := cur.get("hook"); c != 20 {
		t.Fatalf("cursor advanced to %d while the sink was down", c)
	}
	if lag := testutil.ToFloat64(x.lag); lag != 15 {
		t.Errorf("lag while down = %v, want 15", lag)
	}
	srv.down.Store(false)
	waitFor(t, 10*time.Second, "recovery", func() bool { return maxSeq(srv.received()) == 35 })
	waitFor(t, 5*time.Second, "the cursor", func() bool { return cur.get("hook") == 35 })
	stop()
	checkDelivered(t, srv.received(), 35)
	if lag := testutil.ToFloat64(x.lag); lag != 0 {
		t.Errorf("lag after recovery = %v", lag)
	}
	if ts := testutil.ToFloat64(x.lastSuccess); time.Since(time.Unix(int64(ts), 0)) > time.Minute {
		t.Errorf("last success %v", ts)
	}

	// Restart: a new Exporter (and sink) resumes after the cursor.
	before := len(srv.received())
	src.add(5)
	sink2, err := OpenSink(ctx, sinkURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sink2.Close()
	x2 := NewExporter(src, cur, sink2, opts)
	n, err := x2.RunOnce(ctx)
	if err != nil || n != 5 {
		t.Fatalf("RunOnce after restart = %d, %v", n, err)
	}
	if got := srv.received()[before:]; !slices.Equal(got, []int64{36, 37, 38, 39, 40}) {
		t.Fatalf("after restart the sink received %v, want 36..40", got)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.errors) > 0 {
		t.Fatalf("webhook saw bad requests: %q", srv.errors)
	}
}

func TestWebhookSinkErrors(t *testing.T) {
	ctx := context.Background()
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://example.com/steal", http.StatusTemporaryRedirect)
	}))
	defer redirect.Close()
	s, err := OpenSink(ctx, redirect.URL+"/x?token=very-secret-token")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, buildChain(1))
	if err == nil || !strings.Contains(err.Error(), "307") {
		t.Fatalf("redirect: err = %v, want a status error", err)
	}
	s.Close()

	// A dead endpoint: the error names the sink but not the URL's secrets.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	s, err = OpenSink(ctx, "http://"+addr+"/x?token=very-secret-token")
	if err != nil {
		t.Fatal(err)
	}
	err = s.Write(ctx, buildChain(1))
	if err == nil || strings.Contains(err.Error(), "very-secret-token") {
		t.Fatalf("dead endpoint: err = %v", err)
	}
	s.Close()

	// http:// to localhost is allowed.
	s, err = OpenSink(ctx, "http://localhost:1/x")
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
}

// ---- syslog sink ----

type syslogServer struct {
	t     *testing.T
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
	seqs  []int64
}

func startSyslog(t *testing.T, addr string, cfg *tls.Config) *syslogServer {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	s := &syslogServer{t: t, ln: ln}
	s.wg.Add(1)
	go s.accept()
	return s
}

func (s *syslogServer) addr() string { return s.ln.Addr().String() }

func (s *syslogServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.wg.Add(1)
		go s.read(c)
	}
}

func (s *syslogServer) read(c net.Conn) {
	defer s.wg.Done()
	br := bufio.NewReader(c)
	for {
		lenStr, err := br.ReadString(' ')
		if err != nil {
			return
		}
		n, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || n <= 0 || n > 1<<20 {
			s.t.Errorf("bad octet count %q", lenStr)
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(br, msg); err != nil {
			return
		}
		// <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG
		parts := strings.SplitN(string(msg), " ", 8)
		if len(parts) != 8 || !strings.HasPrefix(parts[0], "<") || !strings.HasSuffix(parts[0], ">1") ||
			parts[3] != "gatehouse" || parts[5] != "audit" || parts[6] != "-" {
			s.t.Errorf("bad RFC 5424 message %q", msg)
			return
		}
		if _, err := time.Parse(time.RFC3339Nano, parts[1]); err != nil {
			s.t.Errorf("bad timestamp %q", parts[1])
		}
		_, ext, err := ParseCEF(parts[7])
		if err != nil {
			s.t.Errorf("bad CEF payload %q: %v", parts[7], err)
			return
		}
		pri, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(parts[0], "<"), ">1"))
		if pri/8 != syslogFacilityAudit || pri%8 != syslogSeverity(ext["outcome"]) {
			s.t.Errorf("PRI %d for outcome %q", pri, ext["outcome"])
		}
		seq, _ := strconv.ParseInt(ext["cn1"], 10, 64)
		s.mu.Lock()
		s.seqs = append(s.seqs, seq)
		s.mu.Unlock()
	}
}

func (s *syslogServer) received() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seqs)
}

// stop closes the listener and every connection: the collector is down.
func (s *syslogServer) stop() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func TestSyslogSinkDownThenUp(t *testing.T) {
	ctx := context.Background()
	srv := startSyslog(t, "127.0.0.1:0", nil)
	addr := srv.addr()
	sinkURL := "syslog+tcp://" + addr + "?name=siem&hostname=gh-1&timeout=1s"
	sink, err := OpenSink(ctx, sinkURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	src := newMemSource(20)
	cur := &memCursor{}
	x := NewExporter(src, cur, sink, fastOpts())
	stop := runExporter(t, x)

	waitFor(t, 10*time.Second, "the first 20 events", func() bool { return maxSeq(srv.received()) == 20 })
	first := srv.received()
	srv.stop() // collector down: listener and connections closed
	src.add(15)
	waitFor(t, 10*time.Second, "failed deliveries while down", func() bool { return testutil.ToFloat64(x.errs) >= 3 })
	if c := cur.get("siem"); c != 20 {
		t.Fatalf("cursor advanced to %d while the collector was down", c)
	}
	srv2 := startSyslog(t, addr, nil) // back up on the same port
	defer srv2.stop()
	waitFor(t, 10*time.Second, "recovery", func() bool { return maxSeq(srv2.received()) == 35 })
	waitFor(t, 5*time.Second, "the cursor", func() bool { return cur.get("siem") == 35 })
	stop()
	checkDelivered(t, append(first, srv2.received()...), 35)

	// Restart the exporter: it resumes after the cursor.
	before := len(srv2.received())
	src.add(4)
	sink2, err := OpenSink(ctx, sinkURL)
	if err != nil {
		t.Fatal(err)
	}
	defer sink2.Close()
	if n, err := NewExporter(src, cur, sink2, fastOpts()).RunOnce(ctx); err != nil || n != 4 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	waitFor(t, 5*time.Second, "events after restart", func() bool { return len(srv2.received()) == before+4 })
	if got := srv2.received()[before:]; !slices.Equal(got, []int64{36, 37, 38, 39}) {
		t.Fatalf("after restart got %v", got)
	}
}

// selfSigned returns a TLS server certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "test collector"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestSyslogSinkTLS(t *testing.T) {
	ctx := context.Background()
	cert, caPEM := selfSigned(t)
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startSyslog(t, "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	defer srv.stop()

	src := newMemSource(12)
	sink, err := OpenSink(ctx, "syslog+tls://"+srv.addr()+"?ca="+ca+"&name=tls&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	x := NewExporter(src, &memCursor{}, sink, fastOpts())
	if n, err := x.RunOnce(ctx); err != nil || n != 12 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	// Second pass on the same (probed, kept) connection.
	src.add(3)
	if n, err := x.RunOnce(ctx); err != nil || n != 3 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	waitFor(t, 5*time.Second, "TLS delivery", func() bool { return len(srv.received()) == 15 })
	checkDelivered(t, srv.received(), 15)

	// Without the CA the collector's certificate is refused.
	bad, err := OpenSink(ctx, "syslog+tls://"+srv.addr()+"?name=tls2&timeout=2s")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	var certErr *tls.CertificateVerificationError
	if err := bad.Write(ctx, src.snapshot()[:1]); !errors.As(err, &certErr) {
		t.Fatalf("unknown CA: err = %v", err)
	}
}

// ---- blob sink ----

// bucketEvents reads every object of a bucket in key order as JSONL events.
func bucketEvents(t *testing.T, b *blob.Bucket) ([]string, []gatehouse.AuditEvent) {
	t.Helper()
	ctx := context.Background()
	var keys []string
	it := b.List(nil)
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, obj.Key)
	}
	slices.Sort(keys)
	var events []gatehouse.AuditEvent
	for _, k := range keys {
		data, err := b.ReadAll(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		for e, err := range ReadJSONL(bytes.NewReader(data)) {
			if err != nil {
				t.Fatal(err)
			}
			events = append(events, e)
		}
	}
	return keys, events
}

func TestBlobSink(t *testing.T) {
	ctx := context.Background()
	bucket := memblob.OpenBucket(nil)
	sink := NewBlobSink(bucket, "mem", "", "gh-1")
	defer sink.Close()
	src := newMemSource(20)
	x := NewExporter(src, &memCursor{}, sink, fastOpts())
	if n, err := x.RunOnce(ctx); err != nil || n != 20 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	// A repeated batch overwrites its object.
	if err := sink.Write(ctx, src.snapshot()[7:14]); err != nil {
		t.Fatal(err)
	}
	keys, events := bucketEvents(t, bucket)
	want := []string{BlobKey(1, 7, FormatJSONL), BlobKey(8, 14, FormatJSONL), BlobKey(15, 20, FormatJSONL)}
	if !slices.Equal(keys, want) {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	if keys[0] != "audit-00000000000000000001-00000000000000000007.jsonl" {
		t.Errorf("key format %q", keys[0])
	}
	rep, err := Verify(ctx, Events(events), nil, nil)
	if err != nil || !rep.OK || rep.Checked != 20 {
		t.Fatalf("verify bucket: %v %v", rep, err)
	}
}

func TestBlobSinkFromURL(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := OpenSink(ctx, "file://"+dir+"?blob=1&name=archive&format=ocsf")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name() != "archive" {
		t.Errorf("name %q", s.Name())
	}
	chain := buildChain(3)
	if err := s.Write(ctx, chain); err != nil {
		t.Fatal(err)
	}
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, BlobKey(1, 3, FormatOCSF)))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("\n")); n != 3 || !bytes.Contains(data, []byte(`"class_uid":6003`)) {
		t.Fatalf("object: %s", data)
	}
	m, err := OpenSink(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Write(ctx, chain); err != nil {
		t.Fatal(err)
	}
	m.Close()
}
