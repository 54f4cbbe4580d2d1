package protocol

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"
)

// MinSample is the least number of journal batches, checkpoints or steps an update must
// show before its parallelism is learned (a no-op update teaches nothing).
const MinSample = 5

// Learn is the weight of the newest update in the learned parallelism when it rises (an
// exponentially weighted average). A fall is taken at once: journaling a sequential program
// costs up to 2.5x, checkpointing a parallel one up to 1.4x, so the model believes less
// parallelism sooner than more.
const Learn = 0.5

// Learning sources (the profile's Source).
const (
	SourceJournal     = "journal_batches"    // entries per journal batch
	SourceCheckpoints = "pending_operations" // pending operations per checkpoint that has any
	SourceEvents      = "engine_events"      // steps in flight when each step starts
)

// Observation is what one update showed of its program's parallelism, counted as its
// state writes and engine events arrived.
type Observation struct {
	JournalEntries, JournalBatches int // journaling: entries and batches
	// Full checkpoints: the pending operations summed over the checkpoints that had any,
	// and how many had any (a sequential program's checkpoints hold one pending operation
	// or none; a parallel one's, about as many as steps are in flight).
	PendingSum, PendingCheckpoints int
	// Engine events: steps in flight (begun, not finished) summed at each step's start,
	// and the number of steps.
	InFlightSum, Steps int
	// Journal batch timing: the shortest gap between the answer to one batch and the
	// arrival of the next, over BatchGaps gaps. The CLI sends the next batch when its
	// batch timer, reset once the previous batch was answered, fires, so the gap is at
	// least the batch period plus a round trip. Not counted: a full batch (sent for its
	// size) and the update's last batch (flushed at once when the CLI closes its journal).
	BatchGapMin time.Duration
	BatchGaps   int
}

// BatchPeriod returns the client's journaling batch period shown by the update's batch
// gaps (the shortest, less the round trip rtt); ok is false when too few were seen.
func (o Observation) BatchPeriod(rtt time.Duration) (period time.Duration, ok bool) {
	if o.BatchGaps < MinSample {
		return 0, false
	}
	return max(o.BatchGapMin-rtt, MinBatchPeriod), true
}

// MinBatchPeriod is the least batch period learned (a gap shorter than the round trip
// measured is a timing artefact, not a period of zero).
const MinBatchPeriod = 100 * time.Microsecond

// Parallelism returns the update's parallelism and where it was read; ok is false when
// the update showed too little. Journal batches are the direct measure of what the journal
// model needs, then engine events (independent of the protocol), then checkpoints.
func (o Observation) Parallelism() (p float64, source string, ok bool) {
	switch {
	case o.JournalBatches >= MinSample:
		return float64(o.JournalEntries) / float64(o.JournalBatches), SourceJournal, true
	case o.Steps >= MinSample:
		return float64(o.InFlightSum) / float64(o.Steps), SourceEvents, true
	case o.PendingCheckpoints >= MinSample:
		return float64(o.PendingSum) / float64(o.PendingCheckpoints), SourceCheckpoints, true
	}
	return 0, "", false
}

// Fold returns the shape after one more observed update of parallelism p, read from
// source: a rise is weighted in by Learn, a fall (and the first observation) taken as it
// is. Journal batches are the direct measure of what the journal model needs; the other
// sources estimate it (a checkpointed update's steps may pile up behind its round trips
// where journaling would batch fewer): once a stack's parallelism comes from journal
// batches, another source may lower it but not raise it, so that the two measures cannot
// flip the choice back and forth between updates.
func Fold(s Shape, p float64, source string) Shape {
	p = min(max(p, 1), MaxBatch)
	switch {
	case s.Updates == 0 || s.Parallelism < 1 || p < s.Parallelism:
		s.Parallelism, s.Source = p, source
	case s.Source == SourceJournal && source != SourceJournal:
		// keep the direct measure
	default:
		s.Parallelism, s.Source = (1-Learn)*s.Parallelism+Learn*p, source
	}
	s.Updates++
	return s
}

// Tracker counts, in memory, what each running update shows of its parallelism, from the
// requests this process serves (behind a load balancer each process sees a sample of an
// update's requests, which estimates the same ratios). Its cost per request is a map
// lookup and a few additions.
type Tracker struct {
	mu      sync.Mutex
	updates map[string]*tracked
	seed    maphash.Seed
	now     func() time.Time
	swept   time.Time // the last sweep of idle updates
}

type tracked struct {
	obs    Observation
	events []stepEvent
	seen   time.Time
	// The last journal batch: when it was answered, and the gap before it (0: none, or
	// not to be counted), counted only once another batch follows it.
	batchDone time.Time
	gap       time.Duration
}

// stepEvent is an engine event that starts (begin) or ends a step of one resource.
type stepEvent struct {
	seq   int
	urn   uint64
	begin bool
}

// maxEvents bounds the step events kept per update (a 50,000-resource update).
const maxEvents = 100_000

// idle is how long an update may send nothing before its counts are dropped (it ended on
// another process, or its CLI died).
const idle = time.Hour

// NewTracker returns an empty tracker.
func NewTracker() *Tracker {
	return &Tracker{updates: map[string]*tracked{}, seed: maphash.MakeSeed(), now: time.Now}
}

func (t *Tracker) get(id string) *tracked {
	u := t.updates[id]
	now := t.now()
	if u == nil {
		if now.Sub(t.swept) > time.Minute {
			t.swept = now
			for k, v := range t.updates {
				if now.Sub(v.seen) > idle {
					delete(t.updates, k)
				}
			}
		}
		u = &tracked{}
		t.updates[id] = u
	}
	u.seen = now
	return u
}

// JournalBatch counts one journal batch of n entries that arrived at arrived and was
// answered at done.
func (t *Tracker) JournalBatch(update string, n int, arrived, done time.Time) {
	t.mu.Lock()
	u := t.get(update)
	u.obs.JournalBatches++
	u.obs.JournalEntries += n
	if u.gap > 0 { // the gap before the previous batch: not the update's last after all
		if u.obs.BatchGaps == 0 || u.gap < u.obs.BatchGapMin {
			u.obs.BatchGapMin = u.gap
		}
		u.obs.BatchGaps++
	}
	u.gap = 0
	if !u.batchDone.IsZero() && n < MaxBatch && arrived.After(u.batchDone) {
		u.gap = arrived.Sub(u.batchDone)
	}
	u.batchDone = done
	t.mu.Unlock()
}

// Checkpoint counts one full checkpoint holding pending pending operations.
func (t *Tracker) Checkpoint(update string, pending int) {
	if pending <= 0 {
		return
	}
	t.mu.Lock()
	u := t.get(update)
	u.obs.PendingCheckpoints++
	u.obs.PendingSum += pending
	t.mu.Unlock()
}

// StepEvent records an engine event (by its sequence) that begins (resourcePreEvent) or
// ends (resOutputsEvent, resOpFailedEvent) the step of the resource urn.
func (t *Tracker) StepEvent(update string, seq int, urn string, begin bool) {
	h := maphash.String(t.seed, urn)
	t.mu.Lock()
	u := t.get(update)
	if len(u.events) < maxEvents {
		u.events = append(u.events, stepEvent{seq: seq, urn: h, begin: begin})
	}
	t.mu.Unlock()
}

// StepMark is an engine event (by its sequence) that begins (resourcePreEvent) or ends
// (resOutputsEvent, resOpFailedEvent) the step of the resource URN.
type StepMark struct {
	Seq   int
	URN   string
	Begin bool
}

// rootType marks the stack's root resource, whose step is open for the whole update
// (begun first, its outputs registered last): counted, it would add one to every step.
const rootType = "::pulumi:pulumi:Stack::"

// StepEvents records a batch of step events.
func (t *Tracker) StepEvents(update string, marks []StepMark) {
	t.mu.Lock()
	u := t.get(update)
	for _, m := range marks {
		if len(u.events) >= maxEvents {
			break
		}
		if strings.Contains(m.URN, rootType) {
			continue
		}
		u.events = append(u.events, stepEvent{seq: m.Seq, urn: maphash.String(t.seed, m.URN), begin: m.Begin})
	}
	t.mu.Unlock()
}

// Take returns what the update showed and forgets it.
func (t *Tracker) Take(update string) Observation {
	t.mu.Lock()
	u := t.updates[update]
	delete(t.updates, update)
	t.mu.Unlock()
	if u == nil {
		return Observation{}
	}
	o := u.obs
	o.InFlightSum, o.Steps = stepsInFlight(u.events)
	return o
}

// stepsInFlight replays step events in sequence order (batches may arrive out of order or
// twice) and sums, at each step's start, the steps begun and not yet ended, itself included.
func stepsInFlight(evs []stepEvent) (sum, steps int) {
	slices.SortFunc(evs, func(a, b stepEvent) int { return a.seq - b.seq })
	open := map[uint64]bool{}
	last := -1
	for _, e := range evs {
		if e.seq == last {
			continue // a batch sent twice
		}
		last = e.seq
		if e.begin {
			open[e.urn] = true
			steps++
			sum += len(open)
		} else {
			delete(open, e.urn)
		}
	}
	return sum, steps
}
