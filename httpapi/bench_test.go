package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sort"
	"syscall"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// Server-side benchmarks of the hot paths, in process (no network): what one request
// costs the server. Run: go test ./httpapi -run '^$' -bench . -benchtime 2s

func benchEnv(b *testing.B) (*app.Server, string) {
	return openServer(b, httpapi.DefaultConfig())
}

// openServer is a server on a fresh embedded store, bootstrapped (org acme, admin alice),
// closed when the test ends; it returns the admin's token.
func openServer(tb testing.TB, cfg httpapi.Config) (*app.Server, string) {
	tb.Helper()
	srv, err := app.Open(tb.Context(), app.Config{DataDir: tb.TempDir()}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { srv.Close() })
	tok, err := app.Bootstrap(tb.Context(), srv.Store, "acme", "alice")
	if err != nil {
		tb.Fatal(err)
	}
	return srv, tok
}

// serveOnce runs one request through the handler and fails on a non-2xx answer.
func serveOnce(b *testing.B, h http.Handler, method, path, auth string, body []byte, gz bool) *httptest.ResponseRecorder {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "pulumi-cli/1 (v3.260.0; linux)")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code >= 300 {
		b.Fatalf("%s %s: %d %s", method, path, rec.Code, rec.Body.String())
	}
	return rec
}

func gzipped(b []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func mustMarshal(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// startBenchUpdate creates acme/proj/dev and starts a real update on it; it returns the
// update path and the lease header value.
// With journal, it starts a destroy that negotiates journaling (what the server grants by default).
func startBenchUpdate(b *testing.B, h http.Handler, auth, stack string, journal bool) (string, string) {
	serveOnce(b, h, "POST", "/api/stacks/acme/proj", auth, mustMarshal(apitype.CreateStackRequest{StackName: stack}), false)
	p := "/api/stacks/acme/proj/" + stack
	kind, start := "/update", `{"tags":{}}`
	if journal {
		kind, start = "/destroy", `{"tags":{},"journalVersion":1}`
	}
	var cr apitype.UpdateProgramResponse
	json.Unmarshal(serveOnce(b, h, "POST", p+kind, auth, mustMarshal(apitype.UpdateProgramRequest{Name: "proj"}), false).Body.Bytes(), &cr)
	var sr apitype.StartUpdateResponse
	json.Unmarshal(serveOnce(b, h, "POST", p+"/update/"+cr.UpdateID, auth, []byte(start), false).Body.Bytes(), &sr)
	return p + "/update/" + cr.UpdateID, "update-token " + sr.Token
}

// realisticDeployment is a deployment of n component resources shaped like the CLI's
// (parents, providers, outputs), about 450 bytes each.
func realisticDeployment(n int) json.RawMessage {
	res := make([]map[string]any, 0, n)
	stackURN := "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev"
	res = append(res, map[string]any{"urn": stackURN, "custom": false, "type": "pulumi:pulumi:Stack", "outputs": map[string]any{}, "created": "2026-11-21T00:00:00Z", "modified": "2026-11-21T00:00:00Z"})
	for i := 1; i < n; i++ {
		res = append(res, map[string]any{
			"urn": fmt.Sprintf("urn:pulumi:dev::proj::bench:index:Comp::comp-%d", i), "custom": false, "type": "bench:index:Comp",
			"parent": stackURN, "inputs": map[string]any{}, "outputs": map[string]any{"index": i, "name": fmt.Sprintf("comp-%d", i)},
			"propertyDependencies": map[string]any{}, "created": "2026-11-21T00:00:00Z", "modified": "2026-11-21T00:00:00Z",
			"sourcePosition": "project:///index.js#12,5",
		})
	}
	return mustMarshal(map[string]any{
		"manifest":          map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "x", "version": "v3.260.0"},
		"secrets_providers": map[string]any{"type": "service", "state": map[string]any{"url": "http://127.0.0.1:8080", "owner": "acme", "project": "proj", "stack": "dev"}},
		"resources":         res,
	})
}

// percentile reports p-th percentile latency of samples as a custom metric.
func reportLatency(b *testing.B, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds())/1000, "p99-ms")
}

// benchStateWrites times b.N state-write requests (PATCH up+route, gzip) of one started
// update on a 1,000- and a 10,000-resource stack and reports their p50/p99. prepare builds
// the bodies for n resources (and may send requests of its own first); body(i) is the i-th.
func benchStateWrites(b *testing.B, route string, prepare func(b *testing.B, h http.Handler, up, lease string, n int) (body func(i int) []byte)) {
	for _, n := range []int{1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			srv, tok := benchEnv(b)
			h := srv.Handler
			up, lease := startBenchUpdate(b, h, "token "+tok, "dev", route == "/journalentries")
			body := prepare(b, h, up, lease, n)
			samples := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				req := body(i)
				t0 := time.Now()
				serveOnce(b, h, "PATCH", up+route, lease, req, true)
				samples = append(samples, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, samples)
		})
	}
}

func BenchmarkCheckpoint(b *testing.B) {
	benchStateWrites(b, "/checkpoint", func(b *testing.B, _ http.Handler, _, _ string, n int) func(int) []byte {
		body := gzipped(mustMarshal(apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: realisticDeployment(n)}))
		b.SetBytes(int64(len(body)))
		return func(int) []byte { return body }
	})
}

// BenchmarkCheckpointDelta: the delta protocol (--delta-checkpoints). A verbatim document
// first, then deltas that each change one resource's output, alternating between two
// documents; the server applies each to the stored text and checks the hash.
func BenchmarkCheckpointDelta(b *testing.B) {
	benchStateWrites(b, "/checkpointdelta", func(b *testing.B, h http.Handler, up, lease string, n int) func(int) []byte {
		docA := mustMarshal(apitype.UntypedDeployment{Version: 3, Deployment: realisticDeployment(n)})
		docB := bytes.Replace(docA, []byte(`"name":"comp-7"`), []byte(`"name":"comp-X"`), 1)
		if bytes.Equal(docA, docB) {
			b.Fatal("the two documents do not differ")
		}
		delta := func(from, to []byte) []byte {
			p := 0
			for p < len(from) && from[p] == to[p] {
				p++
			}
			sfx := 0
			for sfx < len(from)-p && from[len(from)-1-sfx] == to[len(to)-1-sfx] {
				sfx++
			}
			text, _ := json.Marshal(string(to[p : len(to)-sfx]))
			sum := sha256.Sum256(to)
			return []byte(fmt.Sprintf(`{"version":3,"checkpointHash":%q,"sequenceNumber":%%d,"deploymentDelta":[{"Span":{"uri":"","start":{"line":1,"column":1,"offset":%d},"end":{"line":1,"column":1,"offset":%d}},"NewText":%s}]}`,
				hex.EncodeToString(sum[:]), p, len(from)-sfx, text))
		}
		ab, ba := delta(docA, docB), delta(docB, docA)
		serveOnce(b, h, "PATCH", up+"/checkpointverbatim", lease,
			gzipped(mustMarshal(apitype.PatchUpdateVerbatimCheckpointRequest{Version: 3, UntypedDeployment: docA, SequenceNumber: 1})), true)
		return func(i int) []byte {
			tmpl := ab
			if i%2 == 1 {
				tmpl = ba
			}
			return gzipped([]byte(fmt.Sprintf(string(tmpl), i+2)))
		}
	})
}

// BenchmarkJournalBatch: batches of 100 entries (the CLI's batch size), each a success
// entry with a resource state; n sizes the stack the entries belong to.
func BenchmarkJournalBatch(b *testing.B) {
	benchStateWrites(b, "/journalentries", func(b *testing.B, _ http.Handler, _, _ string, n int) func(int) []byte {
		var dep apitype.DeploymentV3
		json.Unmarshal(realisticDeployment(n), &dep)
		seq := int64(0)
		batch := func() []byte {
			entries := make([]apitype.JournalEntry, 100)
			for i := range entries {
				seq++
				r := dep.Resources[int(seq)%len(dep.Resources)]
				entries[i] = apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindSuccess, SequenceID: seq, OperationID: seq, State: &r}
			}
			return gzipped(mustMarshal(map[string]any{"entries": entries}))
		}
		bodies := make([][]byte, 64)
		for i := range bodies {
			bodies[i] = batch()
		}
		return func(i int) []byte { return bodies[i%len(bodies)] }
	})
}

// BenchmarkAuditedNoop is an authenticated, authorized and audited request that changes
// nothing else: the CLI's log-decryption call. Parallel, to measure throughput.
func BenchmarkAuditedNoop(b *testing.B) {
	srv, tok := benchEnv(b)
	h := srv.Handler
	auth := "token " + tok
	serveOnce(b, h, "POST", "/api/stacks/acme/proj", auth, mustMarshal(apitype.CreateStackRequest{StackName: "dev"}), false)
	body := []byte(`{"commandName":"pulumi stack output"}`)
	b.SetParallelism(16) // 32 concurrent clients on 2 cores, as behind a load balancer
	b.ResetTimer()
	t0, c0 := time.Now(), cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			serveOnce(b, h, "POST", "/api/stacks/acme/proj/dev/decrypt/log-decryption", auth, body, false)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "req/s")
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// cpuTime is the process's user+system CPU time: steadier than wall time on a busy machine.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuthenticate: token authentication and the identity read (GET /api/user). It
// reports the process's CPU per request (cpu-µs/op), which includes the background work
// the request causes (token touches and the usage inventory, flushed every second).
func BenchmarkAuthenticate(b *testing.B) {
	benchAuthenticate(b, httpapi.DefaultConfig())
}

// BenchmarkAuthenticateNoUsage is BenchmarkAuthenticate without the token usage inventory
// (posture): the difference is what recording usage costs.
func BenchmarkAuthenticateNoUsage(b *testing.B) {
	cfg := httpapi.DefaultConfig()
	cfg.DisableUsageInventory = true
	benchAuthenticate(b, cfg)
}

func benchAuthenticate(b *testing.B, cfg httpapi.Config) {
	srv, tok := openServer(b, cfg)
	h := srv.Handler
	auth := "token " + tok
	serveOnce(b, h, "GET", "/api/user", auth, nil, false)
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		serveOnce(b, h, "GET", "/api/user", auth, nil, false)
	}
	srv.API.FlushUsage(b.Context()) // the background work the requests caused, in the measure
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// BenchmarkGetStack: an authenticated, authorized read (no audit).
func BenchmarkGetStack(b *testing.B) {
	srv, tok := benchEnv(b)
	h := srv.Handler
	auth := "token " + tok
	serveOnce(b, h, "POST", "/api/stacks/acme/proj", auth, mustMarshal(apitype.CreateStackRequest{StackName: "dev"}), false)
	b.ResetTimer()
	c0 := cpuTime()
	for i := 0; i < b.N; i++ {
		serveOnce(b, h, "GET", "/api/stacks/acme/proj/dev", auth, nil, false)
	}
	b.ReportMetric(float64((cpuTime()-c0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
