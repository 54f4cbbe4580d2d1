// Package protocol chooses, per update, how the CLI sends its state: full checkpoints (a
// PATCH of the whole state per step, one at a time) or journaling (small entries, batched
// by the CLI every 50 ms). Which one is faster depends on the client's round trip and on
// how many steps of the program run at once (see Choose); this package holds that
// decision and what it learns, and nothing of HTTP or storage.
//
// The model, fitted to the stock CLI v3.260 (README, "Checkpoint protocol" and
// "Performance"):
//
//   - full checkpoints: about CheckpointsPerStep requests per step, sent strictly one after
//     the other, each costing a round trip plus the CLI's own work of rebuilding,
//     serializing and compressing the whole state (which grows with the stack's size);
//   - journaling: about JournalEntriesPerStep entries per step; the CLI sends whatever
//     entries are waiting every BatchPeriod (one batch in flight at a time), so a step
//     costs (BatchPeriod + round trip) divided by the entries that share its batch, i.e.
//     the program's parallelism.
//
// The batch period is the CLI's own setting (PULUMI_JOURNALING_BATCH_PERIOD, 50 ms by
// default), which no server can change. The CLI's update metadata says whether it is set
// (pulumi.env.PULUMI_JOURNALING_BATCH_PERIOD: "set", never the value); a stack whose
// client sets it journals once to learn the period from the gaps between its batches
// (Observation.BatchPeriod), and the model then uses what it learned. With a short period
// journaling wins everywhere: on loopback it created 1,000 resources in 15 s where
// checkpoints took 68 s (README, "Under latency").
//
// Delta checkpoints are never chosen: the CLI's delta serializer drops pending operations
// when fewer than ten are in flight, which is not crash-safe (README).
package protocol

import (
	"fmt"
	"math"
	"time"
)

// Protocol is how an update's state travels.
type Protocol string

// Protocols.
const (
	Checkpoints Protocol = "checkpoint"
	Journal     Protocol = "journal"
)

// Mode is the operator's setting (--journal): Auto lets Choose decide, On and Off force.
type Mode string

// Modes.
const (
	Auto Mode = "auto"
	On   Mode = "on"
	Off  Mode = "off"
)

// Reasons of a Decision: a small fixed set (a metric label).
const (
	ReasonForcedOn          = "forced_on"          // --journal=on
	ReasonForcedOff         = "forced_off"         // --journal=off
	ReasonClientUnsupported = "client_unsupported" // the CLI did not offer journaling
	ReasonDryRun            = "dry_run"            // a preview: no state is written
	ReasonDestroy           = "destroy"            // a destroy journals: its deletes fill the CLI's batches
	ReasonNewStack          = "new_stack"          // no history yet: assume a sequential program
	ReasonFasterCheckpoints = "faster_checkpoints" // the model predicts checkpoints to be faster
	ReasonFasterJournal     = "faster_journal"     // the model predicts journaling to be faster
	// The CLI sets its own journaling batch period, not yet learned for this stack: journal
	// this update to learn it.
	ReasonLearnBatchPeriod = "learn_batch_period"
)

// Reasons lists every reason (the metric exports them all from the start).
var Reasons = []string{ReasonForcedOn, ReasonForcedOff, ReasonClientUnsupported, ReasonDryRun,
	ReasonDestroy, ReasonNewStack, ReasonFasterCheckpoints, ReasonFasterJournal, ReasonLearnBatchPeriod}

// Model constants (see the package comment).
const (
	CheckpointsPerStep    = 3.0                   // 603 PATCHes for 200 resources, either shape
	JournalEntriesPerStep = 2.6                   // 527 one-entry batches for 200 sequential resources
	BatchPeriod           = 50 * time.Millisecond // the CLI's PULUMI_JOURNALING_BATCH_PERIOD default
	MaxBatch              = 100                   // the CLI's PULUMI_JOURNALING_BATCH_SIZE default
	// The CLI's work per full checkpoint: CheckpointBase + CheckpointPerResource × resources
	// (5.7 ms at 200 resources, 19.5 ms at 1,000, measured on loopback).
	CheckpointBase        = 2 * time.Millisecond
	CheckpointPerResource = 18 * time.Microsecond
	// Destroys (both shapes, N = 200, stock CLI v3.260): about CheckpointsPerDelete full
	// checkpoints per deleted resource (424 PATCHes for 200), but only JournalBatchesPerDelete
	// journal batches (74 for 200: deletes run side by side and share batches).
	CheckpointsPerDelete    = 2.12
	JournalBatchesPerDelete = 0.37
	// JournalMargin: journaling is chosen only when predicted at least this much faster
	// (checkpoints keep the stored state exactly what the CLI holds at every step, and
	// need no replay when the update ends).
	JournalMargin = 0.05
	// DefaultRTT is assumed when the round trip is unknown (a client behind a proxy that
	// does not pass its measurement).
	DefaultRTT = 20 * time.Millisecond
)

// RTT sources.
const (
	RTTKernel        = "tcp_info"       // the kernel's smoothed RTT of a direct connection
	RTTRequestTiming = "request_timing" // the shortest gap between a response and the next request
	RTTProxyHeader   = "proxy_header"   // measured by a trusted reverse proxy (X-Client-RTT)
	RTTUnknown       = "unknown"        // DefaultRTT assumed
)

// Network is what is known of the client's round trip.
type Network struct {
	RTT    time.Duration
	Source string // one of the RTT* sources
}

// Shape is what the stack's history says about its programs.
type Shape struct {
	// Updates is how many earlier updates were observed (0: a new stack).
	Updates int
	// Parallelism is the learned number of steps in flight at once (≥ 1): journal entries
	// per batch, pending operations per checkpoint, or steps in flight in engine events.
	Parallelism float64
	// Resources is the stack's current resource count.
	Resources int
	// Source is where Parallelism was last read (Source*).
	Source string
	// BatchPeriod is the client's journaling batch period, learned from the newest journaled
	// update whose CLI set PULUMI_JOURNALING_BATCH_PERIOD (0: never learned).
	BatchPeriod time.Duration
}

// Input is everything the choice depends on.
type Input struct {
	Mode          Mode
	ClientJournal bool // the CLI offered journaling (journalVersion ≥ 1 in its start request)
	DryRun        bool
	Destroy       bool
	Network       Network
	Shape         Shape
	// BatchPeriodSet: the CLI's update metadata says PULUMI_JOURNALING_BATCH_PERIOD is set
	// (ClientSetsBatchPeriod); without it the CLI's default BatchPeriod is assumed.
	BatchPeriodSet bool
}

// Decision is the protocol of one update and why.
type Decision struct {
	Protocol Protocol `json:"protocol"`
	Reason   string   `json:"reason"`
	// The inputs and the model's predictions (per step), for operators.
	RTT         time.Duration `json:"-"`
	RTTSource   string        `json:"rttSource"`
	Parallelism float64       `json:"parallelism"`
	Resources   int           `json:"resources"`
	// BatchPeriod is the client's journaling batch period the model used (0: unknown, the
	// update journals to learn it); BatchPeriodSet that the CLI set its own.
	BatchPeriod     time.Duration `json:"-"`
	BatchPeriodSet  bool          `json:"-"`
	CheckpointsStep time.Duration `json:"-"`
	JournalStep     time.Duration `json:"-"`
}

// String is a one-line explanation.
func (d Decision) String() string {
	s := fmt.Sprintf("%s (%s; rtt %s from %s, parallelism %.2f, %d resources, batch period %s",
		d.Protocol, d.Reason, d.RTT.Round(100*time.Microsecond), d.RTTSource, d.Parallelism, d.Resources, d.BatchPeriod)
	if d.BatchPeriodSet {
		s += " (the client's own)"
	}
	if d.CheckpointsStep > 0 {
		s += fmt.Sprintf(", predicted per step: checkpoints %s, journal %s",
			d.CheckpointsStep.Round(100*time.Microsecond), d.JournalStep.Round(100*time.Microsecond))
	}
	return s + ")"
}

// Predict returns the model's cost per step of each protocol, for a client whose CLI sends
// journal batches every period.
func Predict(rtt time.Duration, parallelism float64, resources int, period time.Duration) (checkpoints, journal time.Duration) {
	p := math.Min(math.Max(parallelism, 1), MaxBatch)
	cli := CheckpointBase + time.Duration(max(resources, 0))*CheckpointPerResource
	checkpoints = time.Duration(CheckpointsPerStep * float64(rtt+cli))
	journal = time.Duration(JournalEntriesPerStep / p * float64(period+rtt))
	return checkpoints, journal
}

// PredictDestroy returns the model's cost per deleted resource of each protocol. A
// destroy's checkpoints hold on average half the stack.
func PredictDestroy(rtt time.Duration, resources int, period time.Duration) (checkpoints, journal time.Duration) {
	cli := CheckpointBase + time.Duration(max(resources, 0)/2)*CheckpointPerResource
	checkpoints = time.Duration(CheckpointsPerDelete * float64(rtt+cli))
	journal = time.Duration(JournalBatchesPerDelete * float64(period+rtt))
	return checkpoints, journal
}

// Choose decides the protocol of one update.
func Choose(in Input) Decision {
	d := Decision{RTT: in.Network.RTT, RTTSource: in.Network.Source, Parallelism: in.Shape.Parallelism, Resources: in.Shape.Resources}
	if d.RTTSource == "" {
		d.RTTSource = RTTUnknown
	}
	switch {
	case in.DryRun:
		return d.with(Checkpoints, ReasonDryRun)
	case !in.ClientJournal:
		return d.with(Checkpoints, ReasonClientUnsupported)
	case in.Mode == On:
		return d.with(Journal, ReasonForcedOn)
	case in.Mode == Off:
		return d.with(Checkpoints, ReasonForcedOff)
	}
	if d.RTTSource == RTTUnknown {
		d.RTT = DefaultRTT
	}
	d.BatchPeriod, d.BatchPeriodSet = BatchPeriod, in.BatchPeriodSet
	if in.BatchPeriodSet {
		// The client chose its own period (to journal faster, as a rule): learn it once by
		// journaling, then let the model use it.
		if in.Shape.BatchPeriod <= 0 {
			d.BatchPeriod = 0
			return d.with(Journal, ReasonLearnBatchPeriod)
		}
		d.BatchPeriod = in.Shape.BatchPeriod
	}
	if in.Destroy {
		// Deletes are independent steps that fill the CLI's batches: journaling wins from a
		// few milliseconds of round trip on (20 ms, 200 resources: 5.3 s against 11.7 s), and
		// on loopback from about 700 resources (1,000: 2.2-2.5x); a small stack next to its
		// server is destroyed faster with checkpoints, which wait for no batch (0 ms, 200
		// resources: 3.0-3.6 s against 3.7-4.0 s). Journaling, which sends 20 times fewer
		// bytes, unless checkpoints are predicted clearly faster.
		d.CheckpointsStep, d.JournalStep = PredictDestroy(d.RTT, d.Resources, d.BatchPeriod)
		if float64(d.CheckpointsStep) < (1-JournalMargin)*float64(d.JournalStep) {
			return d.with(Checkpoints, ReasonFasterCheckpoints)
		}
		return d.with(Journal, ReasonDestroy)
	}
	if in.Shape.Updates == 0 || d.Parallelism < 1 {
		// Nothing learned yet: assume one step at a time, where checkpoints win at every
		// round trip below ~200 ms, and journaling is 1.7-2.5x slower (the CLI waits for
		// each entry's batch).
		d.Parallelism = 1
	}
	d.CheckpointsStep, d.JournalStep = Predict(d.RTT, d.Parallelism, d.Resources, d.BatchPeriod)
	journal := float64(d.JournalStep) < (1-JournalMargin)*float64(d.CheckpointsStep)
	switch {
	case in.Shape.Updates == 0 && !journal:
		return d.with(Checkpoints, ReasonNewStack)
	case in.Shape.Updates == 0:
		return d.with(Journal, ReasonNewStack)
	case journal:
		return d.with(Journal, ReasonFasterJournal)
	}
	return d.with(Checkpoints, ReasonFasterCheckpoints)
}

// BatchPeriodEnv is the key of the CLI's update metadata (UpdateProgramRequest's
// metadata.environment) that is present when PULUMI_JOURNALING_BATCH_PERIOD is set: the
// CLI sends the names of the PULUMI_* variables set, with "set" for a value (or the
// truthiness of a boolean), never the value itself.
const BatchPeriodEnv = "pulumi.env.PULUMI_JOURNALING_BATCH_PERIOD"

// ClientSetsBatchPeriod reports whether an update's metadata environment says its CLI
// sets its own journaling batch period.
func ClientSetsBatchPeriod(env map[string]string) bool {
	v := env[BatchPeriodEnv]
	return v != "" && v != "false"
}

func (d Decision) with(p Protocol, reason string) Decision {
	d.Protocol, d.Reason = p, reason
	return d
}
