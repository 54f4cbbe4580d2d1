package protocol

import (
	"strings"
	"testing"
	"time"
)

const ms = time.Millisecond

// The choice for a given round trip and stack history. The expectations are the measured
// winners of the table (stock CLI v3.260, N components, a delay proxy) and of the
// README's loopback table; "sequential" stacks learned parallelism 1 (one entry per journal
// batch), "parallel" ones about 2.5 (212 batches of 527 entries for 200 resources).
func TestChoose(t *testing.T) {
	seq := Shape{Updates: 3, Parallelism: 1, Resources: 200}
	par := Shape{Updates: 3, Parallelism: 2.5, Resources: 200}
	seq1k := Shape{Updates: 3, Parallelism: 1, Resources: 1000}
	par1k := Shape{Updates: 3, Parallelism: 2.5, Resources: 1000}
	kernel := func(d time.Duration) Network { return Network{RTT: d, Source: RTTKernel} }
	auto := func(n Network, s Shape) Input { return Input{Mode: Auto, ClientJournal: true, Network: n, Shape: s} }
	destroy := func(n Network, resources int) Input {
		return Input{Mode: Auto, ClientJournal: true, Destroy: true, Network: n, Shape: Shape{Updates: 2, Parallelism: 1, Resources: resources}}
	}
	cases := []struct {
		name   string
		in     Input
		want   Protocol
		reason string
	}{
		// First update of a new stack: nothing learned, assume one step at a time.
		{"new stack, loopback", auto(kernel(0), Shape{}), Checkpoints, ReasonNewStack},
		{"new stack, 40 ms", auto(kernel(40*ms), Shape{}), Checkpoints, ReasonNewStack},
		{"new stack, 80 ms", auto(kernel(80*ms), Shape{}), Checkpoints, ReasonNewStack},
		// Loopback (README): checkpoints at 200 either shape; journal for parallel 1,000.
		{"0 ms sequential 200", auto(kernel(50*time.Microsecond), seq), Checkpoints, ReasonFasterCheckpoints},
		{"0 ms parallel 200", auto(kernel(50*time.Microsecond), par), Checkpoints, ReasonFasterCheckpoints},
		{"0 ms sequential 1000", auto(kernel(50*time.Microsecond), seq1k), Checkpoints, ReasonFasterCheckpoints},
		{"0 ms parallel 1000", auto(kernel(50*time.Microsecond), par1k), Journal, ReasonFasterJournal},
		// The table: sequential always checkpoints; parallel journals from 40 ms,
		// and at 20 ms with 1,000 resources.
		{"20 ms sequential 200", auto(kernel(20*ms), seq), Checkpoints, ReasonFasterCheckpoints},
		{"40 ms sequential 200", auto(kernel(40*ms), seq), Checkpoints, ReasonFasterCheckpoints},
		{"80 ms sequential 200", auto(kernel(80*ms), seq), Checkpoints, ReasonFasterCheckpoints},
		{"20 ms sequential 1000", auto(kernel(20*ms), seq1k), Checkpoints, ReasonFasterCheckpoints},
		{"40 ms parallel 200", auto(kernel(40*ms), par), Journal, ReasonFasterJournal},
		{"80 ms parallel 200", auto(kernel(80*ms), par), Journal, ReasonFasterJournal},
		{"20 ms parallel 1000", auto(kernel(20*ms), par1k), Journal, ReasonFasterJournal},
		// A large stack: the CLI rebuilds the whole state for every checkpoint (2 ms + 18 µs
		// per resource), so even a sequential program journals at 10,000 resources.
		{"20 ms sequential 10000", auto(kernel(20*ms), Shape{Updates: 3, Parallelism: 1, Resources: 10000}), Journal, ReasonFasterJournal},
		{"0 ms sequential 10000", auto(kernel(0), Shape{Updates: 3, Parallelism: 1, Resources: 10000}), Journal, ReasonFasterJournal},
		// A very parallel program journals even on loopback.
		{"0 ms very parallel", auto(kernel(0), Shape{Updates: 1, Parallelism: 20, Resources: 50}), Journal, ReasonFasterJournal},
		// Unknown round trip (behind a proxy that does not say): DefaultRTT is assumed.
		{"unknown rtt, parallel 1000", auto(Network{Source: RTTUnknown}, par1k), Journal, ReasonFasterJournal},
		{"unknown rtt, sequential", auto(Network{}, seq), Checkpoints, ReasonFasterCheckpoints},
		// Overrides and cases without a choice.
		{"--journal=on", Input{Mode: On, ClientJournal: true, Network: kernel(0), Shape: seq}, Journal, ReasonForcedOn},
		{"--journal=off", Input{Mode: Off, ClientJournal: true, Network: kernel(80 * ms), Shape: par}, Checkpoints, ReasonForcedOff},
		{"old CLI", Input{Mode: On, ClientJournal: false, Network: kernel(80 * ms), Shape: par}, Checkpoints, ReasonClientUnsupported},
		{"preview", Input{Mode: On, ClientJournal: true, DryRun: true}, Checkpoints, ReasonDryRun},
		// Destroys: journal wherever the round trip is more than a few ms or the stack large;
		// checkpoints for a small stack next to its server (measured: 0 ms, 200 resources,
		// 3.0-3.6 s against 3.7-4.0 s; 20 ms: 11.7 s against 5.3 s).
		{"destroy 200, loopback", destroy(kernel(50*time.Microsecond), 200), Checkpoints, ReasonFasterCheckpoints},
		{"destroy 200, 20 ms", destroy(kernel(20*ms), 200), Journal, ReasonDestroy},
		{"destroy 200, 80 ms", destroy(kernel(80*ms), 200), Journal, ReasonDestroy},
		{"destroy 1000, loopback", destroy(kernel(50*time.Microsecond), 1000), Journal, ReasonDestroy},
		{"destroy 1000, 20 ms", destroy(kernel(20*ms), 1000), Journal, ReasonDestroy},
		{"destroy 200, unknown rtt", destroy(Network{}, 200), Journal, ReasonDestroy},
		{"destroy, empty stack on loopback", destroy(kernel(0), 0), Checkpoints, ReasonFasterCheckpoints},
		{"destroy, --journal=off", Input{Mode: Off, ClientJournal: true, Destroy: true}, Checkpoints, ReasonForcedOff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := Choose(c.in)
			if d.Protocol != c.want || d.Reason != c.reason {
				t.Errorf("Choose = %s, want %s (%s)", d, c.want, c.reason)
			}
			if d.String() == "" {
				t.Error("no explanation")
			}
		})
	}
}

// Behind a reverse proxy: only a trusted proxy's header counts; its connection's kernel
// RTT and timing are the proxy's, not the client's. A direct client's header is ignored.
func TestResolveNetwork(t *testing.T) {
	cases := []struct {
		name string
		o    Observed
		want Network
	}{
		{"direct, kernel", Observed{Kernel: 30 * ms}, Network{30 * ms, RTTKernel}},
		{"direct, kernel and shorter timing", Observed{Kernel: 30 * ms, Gap: 10 * ms}, Network{30 * ms, RTTKernel}},
		{"direct, kernel over a network beats the timing (which holds the client's own time)", Observed{Kernel: 20 * ms, Gap: 46 * ms}, Network{20 * ms, RTTKernel}},
		{"direct, kernel on the host: loopback", Observed{Kernel: 50 * time.Microsecond}, Network{50 * time.Microsecond, RTTKernel}},
		{"direct, a loaded host's loopback relay", Observed{Kernel: 4400 * time.Microsecond, Gap: 25 * ms}, Network{25 * ms, RTTRequestTiming}},
		{"direct through a TCP relay: timing sees the far side", Observed{Kernel: 40 * time.Microsecond, Gap: 21 * ms}, Network{21 * ms, RTTRequestTiming}},
		{"direct, timing only", Observed{Gap: 5 * ms}, Network{5 * ms, RTTRequestTiming}},
		{"direct, an idle gap is no round trip", Observed{Gap: 3 * time.Second}, Network{0, RTTUnknown}},
		{"direct, nothing known", Observed{}, Network{0, RTTUnknown}},
		{"direct client sending the header: ignored", Observed{Header: "1", Kernel: 40 * ms}, Network{40 * ms, RTTKernel}},
		{"trusted proxy, header in µs (nginx $tcpinfo_rtt)", Observed{ViaTrustedProxy: true, Header: "41250", Kernel: 50 * time.Microsecond, Gap: time.Millisecond}, Network{41250 * time.Microsecond, RTTProxyHeader}},
		{"trusted proxy, header as a duration", Observed{ViaTrustedProxy: true, Header: "80ms"}, Network{80 * ms, RTTProxyHeader}},
		{"trusted proxy without a header", Observed{ViaTrustedProxy: true, Kernel: 50 * time.Microsecond, Gap: 2 * ms}, Network{0, RTTUnknown}},
		{"trusted proxy, garbage header", Observed{ViaTrustedProxy: true, Header: "fast"}, Network{0, RTTUnknown}},
		{"trusted proxy, absurd header", Observed{ViaTrustedProxy: true, Header: "-5"}, Network{0, RTTUnknown}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Resolve(c.o); got != c.want {
				t.Errorf("Resolve(%+v) = %+v, want %+v", c.o, got, c.want)
			}
		})
	}
}

// From a stack's history to the protocol: what updates showed is folded into the stack's
// shape, and the next update's choice follows it.
func TestLearnThenChoose(t *testing.T) {
	net40 := Network{RTT: 40 * ms, Source: RTTKernel}
	choose := func(s Shape) Decision {
		return Choose(Input{Mode: Auto, ClientJournal: true, Network: net40, Shape: s})
	}
	s := Shape{Resources: 200}
	if d := choose(s); d.Protocol != Checkpoints || d.Reason != ReasonNewStack {
		t.Fatalf("first update: %s", d)
	}
	// The first update used checkpoints; its engine events show 12 steps in flight.
	tr := NewTracker()
	for i := 0; i < 40; i++ { // 40 begins, the first 12 all in flight before any ends
		tr.StepEvent("u1", 2*i, urn(i), true)
	}
	for i := 0; i < 40; i++ {
		tr.StepEvent("u1", 100+i, urn(i), false)
	}
	p, src, ok := tr.Take("u1").Parallelism()
	if !ok || src != SourceEvents || p < 10 {
		t.Fatalf("observed parallelism %.2f from %s (%v)", p, src, ok)
	}
	s = Fold(s, p, src)
	if d := choose(s); d.Protocol != Journal || d.Reason != ReasonFasterJournal {
		t.Fatalf("after a parallel update: %s", d)
	}
	// The program became sequential: journal batches of one entry each; one such update
	// is enough to go back to checkpoints.
	for range 1 {
		for range 30 {
			tr.JournalBatch("u2", 1, time.Time{}, time.Time{})
		}
		p, src, ok = tr.Take("u2").Parallelism()
		if !ok || src != SourceJournal || p != 1 {
			t.Fatalf("observed %.2f from %s (%v)", p, src, ok)
		}
		s = Fold(s, p, src)
	}
	if d := choose(s); d.Protocol != Checkpoints || d.Reason != ReasonFasterCheckpoints {
		t.Fatalf("after a sequential update: %s (shape %+v)", d, s)
	}
	if s.Updates != 2 {
		t.Errorf("Updates = %d", s.Updates)
	}
}

func urn(i int) string {
	return "urn:pulumi:dev::p::bench:index:Comp::c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
}

func TestObservation(t *testing.T) {
	tr := NewTracker()
	// A no-op update teaches nothing.
	tr.JournalBatch("noop", 2, time.Time{}, time.Time{})
	if _, _, ok := tr.Take("noop").Parallelism(); ok {
		t.Error("a two-entry update was learned from")
	}
	// Checkpoints: only those with pending operations count.
	for i := 0; i < 10; i++ {
		tr.Checkpoint("c", 0)
		tr.Checkpoint("c", 4)
	}
	if p, src, ok := tr.Take("c").Parallelism(); !ok || src != SourceCheckpoints || p != 4 {
		t.Errorf("checkpoints: %.2f %s %v", p, src, ok)
	}
	// Sequential engine events, out of order and one batch twice: one step in flight.
	var evs []stepEvent
	for i := 0; i < 10; i++ {
		evs = append(evs, stepEvent{seq: 2 * i, urn: uint64(i), begin: true}, stepEvent{seq: 2*i + 1, urn: uint64(i)})
	}
	evs = append(evs, evs[3], evs[0])
	for i, j := 0, len(evs)-1; i < j; i, j = i+1, j-1 {
		evs[i], evs[j] = evs[j], evs[i]
	}
	if sum, steps := stepsInFlight(evs); steps != 10 || sum != 10 {
		t.Errorf("sequential events: %d in flight over %d steps", sum, steps)
	}
	// A second outputs event of a finished step does not make the count negative.
	evs = []stepEvent{{0, 1, true}, {1, 1, false}, {2, 1, false}, {3, 2, true}}
	if sum, steps := stepsInFlight(evs); steps != 2 || sum != 2 {
		t.Errorf("repeated end: %d over %d", sum, steps)
	}
	if got := Fold(Shape{}, 0.2, SourceEvents); got.Parallelism != 1 || got.Updates != 1 {
		t.Errorf("Fold floors at 1: %+v", got)
	}
}

func TestPendingOperations(t *testing.T) {
	cases := map[string]int{
		`{"manifest":{},"resources":[{"urn":"a"}],"pending_operations":[]}`:                                              0,
		`{"resources":[],"pending_operations":[{"resource":{"urn":"a","inputs":{"s":"],\"x"}},"type":"creating"}]}`:      1,
		`{"resources":[],"pending_operations": [ {"type":"creating"}, {"type":"updating","resource":{"a":[1,2,{}]}} ] }`: 2,
		`{"resources":[{"inputs":{"k":"\"pending_operations\":[{},{}]"}}]}`:                                              0,
		`{"resources":[]}`: 0,
		`{"resources":[],"pending_operations":[{"type":"creating"}`: 0,
	}
	big := `{"resources":[{"inputs":{"pad":"` + strings.Repeat("x", 200<<10) + `"}}],"pending_operations":[{"type":"creating"},{"type":"creating"},{"type":"deleting"}],"metadata":{}}`
	cases[big] = 3 // only the tail is searched
	for doc, want := range cases {
		if got := PendingOperations([]byte(doc)); got != want {
			t.Errorf("PendingOperations(%s) = %d, want %d", doc, got, want)
		}
	}
}

func TestConnTiming(t *testing.T) {
	c := NewConn(nil)
	t0 := time.Unix(1000, 0)
	c.Begin(t0) // first request: no gap
	c.End(t0.Add(ms))
	c.Begin(t0.Add(31 * ms)) // 30 ms gap
	c.End(t0.Add(32 * ms))
	c.Begin(t0.Add(53 * ms)) // 21 ms
	c.End(t0.Add(54 * ms))
	c.Begin(t0.Add(10 * time.Second)) // idle: ignored
	if g := c.Gap(); g != 21*ms {
		t.Errorf("Gap = %s, want 21ms", g)
	}
	if c.KernelRTT() != 0 {
		t.Error("kernel RTT of no connection")
	}
	var nilConn *Conn
	if nilConn.Begin(t0) != 0 {
		t.Error("nil conn gap")
	}
	nilConn.End(t0)
	if nilConn.Gap() != 0 {
		t.Error("nil conn")
	}
}

func TestFoldRisesSlowlyFallsAtOnce(t *testing.T) {
	s := Fold(Shape{}, 1, SourceEvents)
	if s = Fold(s, 3, SourceEvents); s.Parallelism != 2 {
		t.Errorf("rise: %.2f, want 2 (weighted by Learn)", s.Parallelism)
	}
	if s = Fold(s, 1.5, SourceEvents); s.Parallelism != 1.5 {
		t.Errorf("fall: %.2f, want 1.5 (taken at once)", s.Parallelism)
	}
	if s = Fold(s, 1000, SourceEvents); s.Parallelism > MaxBatch {
		t.Errorf("capped: %.2f", s.Parallelism)
	}
	// Once measured by journal batches, other sources may lower it, not raise it.
	s = Fold(Shape{}, 2.5, SourceJournal)
	if s = Fold(s, 30, SourceEvents); s.Parallelism != 2.5 || s.Source != SourceJournal || s.Updates != 2 {
		t.Errorf("events after journal batches raised it: %+v", s)
	}
	if s = Fold(s, 1, SourceEvents); s.Parallelism != 1 || s.Source != SourceEvents {
		t.Errorf("a fall from events not taken: %+v", s)
	}
	if s = Fold(s, 3, SourceEvents); s.Parallelism != 2 {
		t.Errorf("rises from events again once events are the source: %+v", s)
	}
}

// An update that sends nothing for an hour (it ended on another process, or its CLI died)
// is forgotten when a new update arrives.
func TestTrackerForgetsIdleUpdates(t *testing.T) {
	tr := NewTracker()
	now := time.Unix(1000, 0)
	tr.now = func() time.Time { return now }
	tr.JournalBatch("gone", 3, time.Time{}, time.Time{})
	now = now.Add(2 * time.Hour)
	tr.JournalBatch("new", 1, time.Time{}, time.Time{})
	if o := tr.Take("gone"); o.JournalBatches != 0 {
		t.Errorf("idle update kept: %+v", o)
	}
	if o := tr.Take("new"); o.JournalBatches != 1 {
		t.Errorf("new update lost: %+v", o)
	}
}

// A client's shortest gap is remembered across its connections, for ten minutes.
func TestClientsRemember(t *testing.T) {
	c := NewClients()
	t0 := time.Unix(1000, 0)
	c.Observe("192.0.2.1", 30*ms, t0)
	c.Observe("192.0.2.1", 45*ms, t0.Add(time.Second)) // longer: kept the shorter
	c.Observe("192.0.2.2", 5*ms, t0)
	if g := c.Gap("192.0.2.1", t0.Add(time.Minute)); g != 30*ms {
		t.Errorf("gap %s, want 30ms", g)
	}
	if g := c.Gap("192.0.2.9", t0); g != 0 {
		t.Errorf("unknown client: %s", g)
	}
	if g := c.Gap("192.0.2.1", t0.Add(11*time.Minute)); g != 0 {
		t.Errorf("stale gap still used: %s", g)
	}
	c.Observe("192.0.2.1", 50*ms, t0.Add(11*time.Minute)) // the old one is stale: replaced
	if g := c.Gap("192.0.2.1", t0.Add(12*time.Minute)); g != 50*ms {
		t.Errorf("after a stale entry: %s", g)
	}
	if len(c.gaps) != 1 {
		t.Errorf("stale clients not swept: %d", len(c.gaps))
	}
}

// The stack's root resource is open for the whole update; it is not a step in flight (a
// sequential program measured 2.1 steps in flight with the stock CLI before it was left out).
func TestStepsIgnoreTheStackRoot(t *testing.T) {
	tr := NewTracker()
	root := "urn:pulumi:dev::bench::pulumi:pulumi:Stack::bench-dev"
	marks := []StepMark{{Seq: 0, URN: root, Begin: true}}
	seq := 1
	for i := 0; i < 10; i++ {
		u := "urn:pulumi:dev::bench::pulumi:pulumi:Stack$bench:index:Comp::comp-" + string(rune('a'+i))
		marks = append(marks, StepMark{Seq: seq, URN: u, Begin: true}, StepMark{Seq: seq + 1, URN: u})
		seq += 2
	}
	marks = append(marks, StepMark{Seq: seq, URN: root})
	tr.StepEvents("u", marks)
	if p, src, ok := tr.Take("u").Parallelism(); !ok || src != SourceEvents || p != 1 {
		t.Errorf("sequential steps under the root: %.2f from %s (%v), want 1", p, src, ok)
	}
}

// A client that sets its own journaling batch period (PULUMI_JOURNALING_BATCH_PERIOD): the
// first update journals to learn it, and the model then uses what it learned. Measured
// (stock CLI v3.260, Go program, loopback, README "Under latency"): with a 1 ms period a
// journaled create of 1,000 resources took 15.2 s where checkpoints took 67.5 s, and of 200
// resources 4.2 s against 5.5 s.
func TestClientBatchPeriod(t *testing.T) {
	loop := Network{RTT: 50 * time.Microsecond, Source: RTTKernel}
	seq := Shape{Updates: 3, Parallelism: 1, Resources: 200}
	in := func(n Network, s Shape, set bool) Input {
		return Input{Mode: Auto, ClientJournal: true, Network: n, Shape: s, BatchPeriodSet: set}
	}
	// Not set: the CLI's default 50 ms, whatever was learned before.
	fast := seq
	fast.BatchPeriod = ms
	if d := Choose(in(loop, fast, false)); d.Protocol != Checkpoints || d.BatchPeriod != BatchPeriod || d.BatchPeriodSet {
		t.Errorf("period not set: %s", d)
	}
	// Set, never learned: journal to learn it, new stack or not, destroy too.
	for _, s := range []Shape{{}, seq} {
		if d := Choose(in(loop, s, true)); d.Protocol != Journal || d.Reason != ReasonLearnBatchPeriod || d.BatchPeriod != 0 || !d.BatchPeriodSet {
			t.Errorf("period set, unknown (%+v): %s", s, d)
		}
	}
	// Learned short: journaling wins for a sequential program on loopback, and at 80 ms.
	for _, c := range []struct {
		n Network
		s Shape
	}{{loop, fast}, {Network{RTT: 80 * ms, Source: RTTKernel}, fast}, {loop, Shape{Updates: 3, Parallelism: 1, Resources: 1000, BatchPeriod: ms}}} {
		if d := Choose(in(c.n, c.s, true)); d.Protocol != Journal || d.Reason != ReasonFasterJournal || d.BatchPeriod != ms {
			t.Errorf("learned 1 ms (%+v, %+v): %s", c.n, c.s, d)
		}
	}
	// A new stack with a learned period follows the model too.
	if d := Choose(in(loop, Shape{BatchPeriod: ms}, true)); d.Protocol != Journal || d.Reason != ReasonNewStack {
		t.Errorf("new stack, learned 1 ms: %s", d)
	}
	// Learned long (a client that slowed its batches): checkpoints, as with the default.
	slow := seq
	slow.BatchPeriod = 200 * ms
	if d := Choose(in(loop, slow, true)); d.Protocol != Checkpoints || d.BatchPeriod != 200*ms {
		t.Errorf("learned 200 ms: %s", d)
	}
	// A destroy of a small stack on loopback journals with a short period (checkpoints
	// win there with the default 50 ms).
	destroy := Input{Mode: Auto, ClientJournal: true, Destroy: true, Network: loop, Shape: Shape{Updates: 2, Parallelism: 1, Resources: 200}}
	if d := Choose(destroy); d.Protocol != Checkpoints {
		t.Errorf("destroy, default period: %s", d)
	}
	destroy.BatchPeriodSet, destroy.Shape.BatchPeriod = true, ms
	if d := Choose(destroy); d.Protocol != Journal {
		t.Errorf("destroy, learned 1 ms: %s", d)
	}
	// Forced modes and previews ignore it.
	if d := Choose(Input{Mode: Off, ClientJournal: true, Network: loop, BatchPeriodSet: true}); d.Protocol != Checkpoints {
		t.Errorf("--journal=off: %s", d)
	}
	if d := Choose(Input{Mode: Auto, ClientJournal: true, DryRun: true, Network: loop, BatchPeriodSet: true}); d.Protocol != Checkpoints {
		t.Errorf("preview: %s", d)
	}
	if d := Choose(Input{Mode: Auto, ClientJournal: false, Network: loop, BatchPeriodSet: true}); d.Protocol != Checkpoints {
		t.Errorf("client without journaling: %s", d)
	}
}

// The batch period read from journal batch timing: the shortest gap between an answer and
// the next batch, less the round trip; a full batch and the update's last batch do not
// count, nor does an update with too few gaps.
func TestObservedBatchPeriod(t *testing.T) {
	tr := NewTracker()
	t0 := time.Unix(1_700_000_000, 0)
	at := t0
	batch := func(update string, n int, gap, handler time.Duration) {
		arrived := at.Add(gap)
		at = arrived.Add(handler)
		tr.JournalBatch(update, n, arrived, at)
	}
	batch("u", 1, 0, ms) // the first batch: no gap before it
	for _, gap := range []time.Duration{9 * ms, 7 * ms, 30 * ms, 8 * ms, 12 * ms} {
		batch("u", 1, gap, ms)
	}
	batch("u", MaxBatch, ms/10, ms) // full: sent for its size, not its timer
	batch("u", 2, 5*ms, ms)         // counted: another batch follows
	batch("u", 1, ms/2, ms)         // the last (the CLI's close flushes at once): not counted
	o := tr.Take("u")
	if o.BatchGaps != 6 || o.BatchGapMin != 5*ms {
		t.Fatalf("gaps %d, shortest %s; want 6, 5ms", o.BatchGaps, o.BatchGapMin)
	}
	if p, ok := o.BatchPeriod(2 * ms); !ok || p != 3*ms {
		t.Errorf("BatchPeriod(2ms) = %s %v, want 3ms", p, ok)
	}
	if p, ok := o.BatchPeriod(10 * ms); !ok || p != MinBatchPeriod {
		t.Errorf("a round trip longer than the gap: %s %v, want the floor %s", p, ok, MinBatchPeriod)
	}
	// Too few gaps: nothing learned.
	at = t0
	for range 4 {
		batch("short", 1, 4*ms, ms)
	}
	if _, ok := tr.Take("short").BatchPeriod(0); ok {
		t.Error("learned from three gaps")
	}
}
