package audit

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recSink records what it receives; it fails while failing is set.
type recSink struct {
	name    string
	failing atomic.Bool
	fails   atomic.Int64
	mu      sync.Mutex
	seqs    []int64
	batches int
}

func (s *recSink) Name() string { return s.name }
func (s *recSink) Close() error { return nil }
func (s *recSink) Write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	if s.failing.Load() {
		s.fails.Add(1)
		return errors.New("sink unavailable")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.batches++
	for _, e := range batch {
		s.seqs = append(s.seqs, e.Seq)
	}
	return nil
}

func (s *recSink) received() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seqs)
}

func TestExporterResumesAtCursor(t *testing.T) {
	ctx := context.Background()
	src := newMemSource(30)
	cur := &memCursor{}
	sink := &recSink{name: "rec"}
	x := NewExporter(src, cur, sink, fastOpts())
	n, err := x.RunOnce(ctx)
	if err != nil || n != 30 {
		t.Fatalf("RunOnce = %d, %v", n, err)
	}
	if sink.batches != 5 { // 7+7+7+7+2
		t.Errorf("%d batches, want 5", sink.batches)
	}
	if n, err := x.RunOnce(ctx); err != nil || n != 0 {
		t.Fatalf("second RunOnce = %d, %v", n, err)
	}
	src.add(10)
	x2 := NewExporter(src, cur, sink, fastOpts()) // a restart
	stop := runExporter(t, x2)
	waitFor(t, 10*time.Second, "the new events", func() bool { return cur.get("rec") == 40 })
	stop()
	got := sink.received()
	want := make([]int64, 40)
	for i := range want {
		want[i] = int64(i + 1)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("received %v", got)
	}
}

func TestExporterRetriesSourceSinkAndCursor(t *testing.T) {
	src := newMemSource(10)
	cur := &memCursor{}
	sink := &recSink{name: "rec"}
	reg := prometheus.NewRegistry()
	opts := fastOpts()
	opts.Registerer = reg
	x := NewExporter(src, cur, sink, opts)

	// Everything is down at start.
	src.fail.Store(true)
	cur.fail.Store(true)
	sink.failing.Store(true)
	stop := runExporter(t, x)
	waitFor(t, 5*time.Second, "cursor retries", func() bool { return testutil.ToFloat64(x.errs) >= 3 })
	cur.fail.Store(false)
	reads := src.reads.Load()
	waitFor(t, 5*time.Second, "source retries", func() bool { return src.reads.Load() >= reads+3 })
	src.fail.Store(false)
	waitFor(t, 5*time.Second, "sink retries", func() bool { return sink.fails.Load() >= 3 })
	if len(sink.received()) != 0 || cur.get("rec") != 0 {
		t.Fatal("progress while the sink is down")
	}
	// The cursor store fails when the sink comes back: the batch is delivered, the
	// cursor update retried (not the batch).
	cur.fail.Store(true)
	sink.failing.Store(false)
	waitFor(t, 5*time.Second, "a delivery", func() bool { return len(sink.received()) >= 7 })
	time.Sleep(30 * time.Millisecond)
	if got := len(sink.received()); got != 7 {
		t.Fatalf("%d events delivered while the cursor could not be saved, want the first batch (7) once", got)
	}
	cur.fail.Store(false)
	waitFor(t, 5*time.Second, "catch up", func() bool { return cur.get("rec") == 10 })
	src.add(5)
	waitFor(t, 5*time.Second, "new events", func() bool { return cur.get("rec") == 15 })
	stop()
	checkDelivered(t, sink.received(), 15)
	if got := len(sink.received()); got != 15 {
		t.Errorf("%d deliveries, want exactly 15 here", got)
	}
	if testutil.ToFloat64(x.lag) != 0 {
		t.Errorf("lag %v", testutil.ToFloat64(x.lag))
	}
}

func TestExporterMetricsShared(t *testing.T) {
	ctx := context.Background()
	reg := prometheus.NewRegistry()
	opts := fastOpts()
	opts.Registerer = reg
	src := newMemSource(3)
	cur := &memCursor{}
	a := NewExporter(src, cur, &recSink{name: "a"}, opts)
	b := NewExporter(src, cur, &recSink{name: "b"}, opts)
	if _, err := a.RunOnce(ctx); err != nil {
		t.Fatal(err)
	}
	failing := &recSink{name: "c"}
	failing.failing.Store(true)
	c := NewExporter(src, cur, failing, opts)
	if _, err := c.RunOnce(ctx); err == nil {
		t.Fatal("RunOnce on a failing sink succeeded")
	}
	if cur.get("c") != 0 {
		t.Fatal("cursor advanced on failure")
	}
	_ = b
	n, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	if n != 9 { // 3 metrics x 3 sinks
		t.Errorf("%d series, want 9", n)
	}
	expected := `
# HELP gatehouse_audit_export_errors_total Failed audit export attempts (reading events, writing to the sink, saving the cursor).
# TYPE gatehouse_audit_export_errors_total counter
gatehouse_audit_export_errors_total{sink="a"} 0
gatehouse_audit_export_errors_total{sink="b"} 0
gatehouse_audit_export_errors_total{sink="c"} 1
# HELP gatehouse_audit_export_lag_events Audit events not yet acknowledged by the sink (a lower bound when the source cannot tell its head).
# TYPE gatehouse_audit_export_lag_events gauge
gatehouse_audit_export_lag_events{sink="a"} 0
gatehouse_audit_export_lag_events{sink="b"} 0
gatehouse_audit_export_lag_events{sink="c"} 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expected), "gatehouse_audit_export_errors_total", "gatehouse_audit_export_lag_events"); err != nil {
		t.Error(err)
	}
	if v := testutil.ToFloat64(a.lastSuccess); v < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("last success %v", v)
	}
}

func TestExporterExclusive(t *testing.T) {
	src := newMemSource(1)
	sink := &recSink{name: "rec"}
	sink.failing.Store(true)
	x := NewExporter(src, &memCursor{}, sink, fastOpts())
	stop := runExporter(t, x)
	waitFor(t, 5*time.Second, "Run to start", func() bool { return sink.fails.Load() > 0 })
	if _, err := x.RunOnce(context.Background()); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("concurrent RunOnce: %v", err)
	}
	stop()
}

func TestExporterBackoff(t *testing.T) {
	x := NewExporter(newMemSource(0), &memCursor{}, &recSink{name: "r"}, ExporterOptions{MinBackoff: 100 * time.Millisecond, MaxBackoff: time.Second})
	for attempt := 0; attempt < 70; attempt++ {
		d := x.backoff(attempt)
		ceil := min(100*time.Millisecond<<min(attempt, 20), time.Second)
		if d < ceil/2 || d > ceil {
			t.Fatalf("attempt %d: backoff %v outside [%v, %v]", attempt, d, ceil/2, ceil)
		}
	}
	// Defaults.
	x = NewExporter(newMemSource(0), &memCursor{}, &recSink{name: "r"}, ExporterOptions{})
	if x.opts.BatchSize != 500 || x.opts.PollInterval != 5*time.Second || x.opts.MaxBackoff != 5*time.Minute || x.opts.MinBackoff != time.Second {
		t.Errorf("defaults %+v", x.opts)
	}
}
