package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

var baseTime = time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)

// sampleEvent returns a realistic event i (unhashed, Seq unset).
func sampleEvent(i int) gatehouse.AuditEvent {
	outcomes := []string{gatehouse.OutcomeSuccess, gatehouse.OutcomeDenied, gatehouse.OutcomeFailure}
	kinds := []string{"user", "team-token", "org-token", "system"}
	e := gatehouse.AuditEvent{
		ID:        fmt.Sprintf("%08x-1111-4222-8333-444444444444", i),
		Time:      baseTime.Add(time.Duration(i) * time.Second),
		OrgID:     int64(1 + i%3),
		OrgName:   fmt.Sprintf("org%d", i%3),
		ActorKind: kinds[i%len(kinds)],
		ActorName: fmt.Sprintf("actor-%d", i%5),
		UserID:    int64(i % 7),
		TokenID:   fmt.Sprintf("tok_%d", i%4),
		SourceIP:  "203.0.113.7",
		UserAgent: "pulumi-cli/3.243.0 (go1.26; linux)",
		Action:    "stack:update",
		Target:    fmt.Sprintf("org%d/web/prod", i%3),
		Outcome:   outcomes[i%len(outcomes)],
		RequestID: fmt.Sprintf("req-%06d", i),
		Details:   map[string]string{"update": fmt.Sprintf("u-%d", i), "kind": "update"},
	}
	if e.Outcome != gatehouse.OutcomeSuccess {
		e.Reason = "stack is protected: changes only from pipelines"
	}
	return e
}

// chainAppend appends e to chain as the store would: next Seq, PrevHash, Hash.
func chainAppend(chain []gatehouse.AuditEvent, e gatehouse.AuditEvent) []gatehouse.AuditEvent {
	prev := Genesis()
	var seq int64
	if n := len(chain); n > 0 {
		prev, seq = chain[n-1].Hash, chain[n-1].Seq
	}
	e.Seq = seq + 1
	e.PrevHash = prev
	e.Hash = Hash(prev, &e)
	return append(chain, e)
}

func buildChain(n int) []gatehouse.AuditEvent {
	var chain []gatehouse.AuditEvent
	for i := 0; i < n; i++ {
		chain = chainAppend(chain, sampleEvent(i))
	}
	return chain
}

// rehash recomputes the hashes of chain[from:] (what an attacker with database access but
// no signing key can do).
func rehash(chain []gatehouse.AuditEvent, from int) {
	for i := from; i < len(chain); i++ {
		prev := Genesis()
		if i > 0 {
			prev = chain[i-1].Hash
		}
		chain[i].PrevHash = prev
		chain[i].Hash = Hash(prev, &chain[i])
	}
}

// cloneChain deep-copies events (Details and hashes included).
func cloneChain(in []gatehouse.AuditEvent) []gatehouse.AuditEvent {
	out := make([]gatehouse.AuditEvent, len(in))
	for i, e := range in {
		if e.Details != nil {
			d := make(map[string]string, len(e.Details))
			for k, v := range e.Details {
				d[k] = v
			}
			e.Details = d
		}
		e.PrevHash = append([]byte(nil), e.PrevHash...)
		e.Hash = append([]byte(nil), e.Hash...)
		out[i] = e
	}
	return out
}

// memSource is an in-memory audit log (Source and HeadSource).
type memSource struct {
	mu     sync.Mutex
	events []gatehouse.AuditEvent
	reads  atomic.Int64
	fail   atomic.Bool
}

func newMemSource(n int) *memSource {
	s := &memSource{}
	s.add(n)
	return s
}

// add appends n sample events to the chain.
func (s *memSource) add(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 0; i < n; i++ {
		var e gatehouse.AuditEvent
		if k := len(s.events); k > 0 {
			e = sampleEvent(int(s.events[k-1].Seq))
		} else {
			e = sampleEvent(0)
		}
		s.events = chainAppend(s.events, e)
	}
}

// prune deletes the events with seq <= through.
func (s *memSource) prune(through int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := 0
	for i < len(s.events) && s.events[i].Seq <= through {
		i++
	}
	s.events = append([]gatehouse.AuditEvent(nil), s.events[i:]...)
}

func (s *memSource) snapshot() []gatehouse.AuditEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cloneChain(s.events)
}

func (s *memSource) AuditEventsAfter(ctx context.Context, after int64, limit int) ([]gatehouse.AuditEvent, error) {
	s.reads.Add(1)
	if s.fail.Load() {
		return nil, errors.New("database is down")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []gatehouse.AuditEvent
	for _, e := range s.events {
		if e.Seq > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return cloneChain(out), nil
}

func (s *memSource) AuditHeadSeq(ctx context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) == 0 {
		return 0, nil
	}
	return s.events[len(s.events)-1].Seq, nil
}

// memCursor is an in-memory CursorStore.
type memCursor struct {
	mu   sync.Mutex
	m    map[string]int64
	fail atomic.Bool
}

func (c *memCursor) ExportCursor(ctx context.Context, sink string) (int64, error) {
	if c.fail.Load() {
		return 0, errors.New("cursor store down")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sink], nil
}

func (c *memCursor) SetExportCursor(ctx context.Context, sink string, seq int64) error {
	if c.fail.Load() {
		return errors.New("cursor store down")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[sink] = seq
	return nil
}

func (c *memCursor) get(sink string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[sink]
}

// waitFor polls cond every few milliseconds until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(3 * time.Millisecond)
	}
}

// checkDelivered checks that got (seqs in arrival order) holds every seq 1..want, and that
// apart from repeats of batches already delivered, seqs arrive in ascending order.
func checkDelivered(t *testing.T, got []int64, want int64) {
	t.Helper()
	var high int64
	seen := map[int64]bool{}
	for i, s := range got {
		if !seen[s] {
			if s != high+1 {
				t.Fatalf("delivery %d: new seq %d after highest %d (out of order or skipped)", i, s, high)
			}
			high = s
			seen[s] = true
		}
	}
	if high != want {
		t.Fatalf("delivered up to seq %d, want %d", high, want)
	}
}

// fastOpts are exporter options for tests: small batches, quick polls and retries.
func fastOpts() ExporterOptions {
	return ExporterOptions{
		BatchSize:    7,
		PollInterval: 5 * time.Millisecond,
		MinBackoff:   2 * time.Millisecond,
		MaxBackoff:   20 * time.Millisecond,
		WriteTimeout: 2 * time.Second,
	}
}

// runExporter starts x.Run and returns a stop function that cancels it and checks it ended
// with context.Canceled (bounded by a timeout).
func runExporter(t *testing.T, x *Exporter) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	return func() {
		t.Helper()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Run returned %v, want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
	}
}
