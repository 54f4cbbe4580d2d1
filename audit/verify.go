package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Problems Verify reports. Report.Problem is one of these.
const (
	ProblemHashMismatch        = "hash mismatch (event changed)"
	ProblemChainBroken         = "chain broken (event removed or reordered)"
	ProblemSequenceGap         = "sequence gap"
	ProblemCheckpointSignature = "checkpoint signature invalid"
	ProblemCheckpointMismatch  = "checkpoint does not match chain"
	ProblemCheckpointChain     = "checkpoint chain broken (checkpoint removed)"
	ProblemTruncatedHead       = "log truncated at the head (oldest events removed)"
	ProblemTruncatedTail       = "log truncated at the tail (newest events removed)"
)

// Report is the outcome of Verify. When OK is false, Seq, ID, Problem and Detail name the
// first problem found (Seq and ID are those of the event concerned; ID is empty when the
// problem is at a seq with no event, such as a checkpoint past the end of the log).
type Report struct {
	OK bool
	// Checked is the number of events whose link and hash were checked and found good.
	Checked int64
	// FirstSeq and LastSeq are the first and last good events checked (0 when none).
	FirstSeq, LastSeq int64
	// Head is the hash of the last good event (the anchor's hash when none was checked).
	Head []byte
	// AnchorSeq is where verification started: 0 for the genesis, otherwise the seq of the
	// signed checkpoint that vouches for the PrevHash of the first event (after pruning).
	AnchorSeq int64
	// Checkpoints is the number of signed checkpoints that matched the chain.
	Checkpoints int
	// Unvouched is the number of good events after the last matching checkpoint. They are
	// protected by the hash chain only: someone able to rewrite the database could rewrite
	// them and recompute their hashes undetected. Sign checkpoints often to keep it small.
	Unvouched int64
	// Chained and Legacy count the checkpoints given in the chained format (their chain
	// was checked) and in the old, unchained one.
	Chained, Legacy int
	// Newest is the checkpoint made most recently (the latest Time) among those given; nil
	// when none. See StaleCheckpoint.
	Newest *Checkpoint
	// Reference is the outside reference that was checked (VerifyOptions.Reference).
	Reference *Checkpoint

	Seq     int64
	ID      string
	Problem string
	Detail  string
}

func (r Report) String() string {
	if r.OK {
		s := fmt.Sprintf("OK: %d events verified", r.Checked)
		if r.Checked > 0 {
			s += fmt.Sprintf(" (seq %d..%d)", r.FirstSeq, r.LastSeq)
		}
		if r.AnchorSeq > 0 {
			s += fmt.Sprintf(", anchored at checkpoint seq %d", r.AnchorSeq)
		}
		s += fmt.Sprintf(", %d checkpoints matched, %d events after the last checkpoint", r.Checkpoints, r.Unvouched)
		if r.Reference != nil {
			s += fmt.Sprintf(", outside reference (%s, seq %d) found", r.Reference.describeKind(), r.Reference.Seq)
		}
		return s
	}
	s := fmt.Sprintf("FAILED at seq %d", r.Seq)
	if r.ID != "" {
		s += fmt.Sprintf(" (event %s)", r.ID)
	}
	s += ": " + r.Problem
	if r.Detail != "" {
		s += ": " + r.Detail
	}
	return s + fmt.Sprintf(" (%d events verified before it)", r.Checked)
}

// Events adapts a slice to the iterator form Verify and the Write* functions take.
func Events(events []gatehouse.AuditEvent) iter.Seq2[gatehouse.AuditEvent, error] {
	return func(yield func(gatehouse.AuditEvent, error) bool) {
		for i := range events {
			if !yield(events[i], nil) {
				return
			}
		}
	}
}

// Verify checks a chain of events, streamed in Seq order, against signed checkpoints: it is
// VerifyLog without an outside reference.
func Verify(ctx context.Context, events iter.Seq2[gatehouse.AuditEvent, error], checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	return VerifyLog(ctx, events, checkpoints, pub, VerifyOptions{})
}

// VerifyOptions are the optional inputs of VerifyLog.
type VerifyOptions struct {
	// Reference is a checkpoint kept outside the database: the last one a sink received
	// (the audit:checkpoint events carry them) or a copy saved elsewhere. Its signature must
	// hold, the log must still hold its seq with its hash, and (chained format) the stored
	// checkpoint chain must still hold it. This detects a tail cut together with the
	// checkpoints that covered it, which the database alone cannot show.
	Reference *Checkpoint
}

// VerifyLog checks a whole log: a chain of events, streamed in Seq order, against every
// stored checkpoint.
//
// Each event must follow the one before it: its PrevHash is the previous event's Hash and
// its Seq the previous Seq plus one, and its Hash must be Hash(PrevHash, event). Every
// checkpoint must carry a valid signature by pub and match the chain at its seq; a
// checkpoint past the last event means events were cut from the end of the log. The
// chained checkpoints must form one unbroken chain #1, #2, ... (each naming the digest of
// the one before it); a gap means a checkpoint was removed.
//
// Where the chain starts is inferred from the first event: at Seq 1 its PrevHash must be
// Genesis(). A log that starts later (first Seq N > 1) is accepted only from a retention
// checkpoint at Seq N-1 with Hash equal to the first event's PrevHash (the one pruning
// stores when it archives and deletes the prefix); otherwise it is reported as truncated at
// the head, even if a periodic checkpoint vouches for N-1. A retention checkpoint in the
// old format (whose kind is not signed) is accepted only if the log also holds the
// audit:prune event that recorded it, covered by a valid signed checkpoint (an event after
// the newest checkpoint could have been rewritten into one). With no events at all, the log is taken to be fully
// pruned: the newest retention checkpoint is the anchor.
//
// Load the checkpoints before reading the events, so that a checkpoint made while the
// events are read does not look like a cut tail. pub may be nil only if there are no
// checkpoints.
//
// Tampering yields a Report with OK false and a nil error. The error is for failures to
// verify at all: the iterator's error, ctx ending, a bad argument.
func VerifyLog(ctx context.Context, events iter.Seq2[gatehouse.AuditEvent, error], checkpoints []Checkpoint, pub ed25519.PublicKey, opts VerifyOptions) (Report, error) {
	v, err := newVerifier(checkpoints, pub, opts.Reference)
	if err != nil {
		return Report{}, err
	}
	return v.run(ctx, events, nil)
}

// VerifyFrom checks a segment of the log, such as an archive, with an explicit anchor: the
// events must continue the chain from (anchorSeq, anchorHash), that is start at
// anchorSeq+1 with PrevHash anchorHash. The anchor is either the genesis (0, Genesis()) or
// must be vouched for by a valid signed checkpoint of any kind among checkpoints (for an
// archive: the previous retention checkpoint). The checkpoint chain is not checked (pass
// the checkpoints up to the segment's end). With no events, any checkpoint past the anchor
// is reported as a cut tail.
func VerifyFrom(ctx context.Context, anchorSeq int64, anchorHash []byte, events iter.Seq2[gatehouse.AuditEvent, error], checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	if anchorSeq < 0 {
		return Report{}, fmt.Errorf("audit: anchor seq %d is negative", anchorSeq)
	}
	v, err := newVerifier(checkpoints, pub, nil)
	if err != nil {
		return Report{}, err
	}
	return v.run(ctx, events, &anchor{seq: anchorSeq, hash: anchorHash})
}

type anchor struct {
	seq  int64
	hash []byte
}

// vcp is a checkpoint under verification.
type vcp struct {
	Checkpoint
	ref     bool // it is the outside reference
	outside bool // only the outside reference holds it (not stored)
	sig     int8 // 0 unchecked, 1 valid, -1 invalid
}

// what names the checkpoint in messages.
func (c *vcp) what() string {
	if c.ref {
		return fmt.Sprintf("the outside reference checkpoint (%s) at seq %d", c.describeKind(), c.Seq)
	}
	return fmt.Sprintf("the signed %s checkpoint at seq %d", c.describeKind(), c.Seq)
}

type verifier struct {
	pub ed25519.PublicKey
	cps []vcp // sorted by Seq
	ci  int   // next checkpoint to consume
	ref *vcp

	rep         Report
	prevSeq     int64
	prevHash    []byte
	lastVouched int64
	// needPrune is an old-format retention anchor, which needs its audit:prune event, and
	// pruneSeq the seq of the first such event (0 until met). The event counts only if a
	// valid signed checkpoint covers it (pruneSeq <= lastVouched at the end): after the
	// newest checkpoint, events are protected by the hash chain only, and whoever can
	// rewrite the database can rewrite them into a prune record.
	needPrune *Checkpoint
	pruneSeq  int64
}

func newVerifier(checkpoints []Checkpoint, pub ed25519.PublicKey, ref *Checkpoint) (*verifier, error) {
	if (len(checkpoints) > 0 || ref != nil) && len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: verifying checkpoints needs the Ed25519 public key of the signer")
	}
	v := &verifier{pub: pub}
	v.cps = make([]vcp, 0, len(checkpoints)+1)
	for _, c := range checkpoints {
		v.cps = append(v.cps, vcp{Checkpoint: c})
		if v.rep.Newest == nil || c.Time.After(v.rep.Newest.Time) {
			v.rep.Newest = &c
		}
	}
	if ref != nil {
		rc := *ref
		v.rep.Reference = &rc
		d := rc.Digest()
		found := false
		for i := range v.cps {
			if bytes.Equal(v.cps[i].Signature, rc.Signature) && bytes.Equal(v.cps[i].Digest(), d) {
				v.cps[i].ref, found = true, true
			}
		}
		if !found {
			v.cps = append(v.cps, vcp{Checkpoint: rc, ref: true, outside: true})
		}
	}
	slices.SortStableFunc(v.cps, func(a, b vcp) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	for i := range v.cps {
		if v.cps[i].ref {
			v.ref = &v.cps[i]
		}
	}
	return v, nil
}

func (v *verifier) fail(seq int64, id, problem, detail string) Report {
	r := v.rep
	r.OK = false
	r.Seq, r.ID, r.Problem, r.Detail = seq, id, problem, detail
	return v.finish(r)
}

func (v *verifier) finish(r Report) Report {
	r.Head = append([]byte(nil), v.prevHash...)
	if r.Checked > 0 {
		r.LastSeq = v.prevSeq
	}
	if r.Checked > 0 || r.AnchorSeq > 0 {
		r.Unvouched = v.prevSeq - v.lastVouched
	}
	return r
}

// sigOK verifies the signature of cp once.
func (v *verifier) sigOK(cp *vcp) bool {
	if cp.sig == 0 {
		cp.sig = 1
		if VerifyCheckpoint(v.pub, cp.Checkpoint) != nil {
			cp.sig = -1
		}
	}
	return cp.sig > 0
}

// checkSig verifies the signature of cp; it returns a failure report if it is bad.
func (v *verifier) checkSig(cp *vcp, id string) (Report, bool) {
	if !v.sigOK(cp) {
		err := VerifyCheckpoint(v.pub, cp.Checkpoint)
		detail := err.Error()
		if cp.ref {
			detail = "the outside reference: " + detail
		}
		return v.fail(cp.Seq, id, ProblemCheckpointSignature, detail), false
	}
	return Report{}, true
}

// checkChain checks the chain of the stored chained checkpoints, #1 to the newest, and the
// outside reference's place in it. A forged checkpoint is left to the stream, which reports
// it where it meets it (in seq order).
func (v *verifier) checkChain() (Report, bool) {
	var chained []*vcp
	legacy := map[string]bool{}
	for i := range v.cps {
		c := &v.cps[i]
		if !v.sigOK(c) {
			return Report{}, true
		}
		switch {
		case c.outside:
		case c.Index > 0:
			chained = append(chained, c)
		default:
			v.rep.Legacy++
			legacy[string(c.Digest())] = true
		}
	}
	slices.SortStableFunc(chained, func(a, b *vcp) int {
		switch {
		case a.Index < b.Index:
			return -1
		case a.Index > b.Index:
			return 1
		}
		return 0
	})
	v.rep.Chained = len(chained)
	for i, c := range chained {
		want := int64(i) + 1
		switch {
		case c.Index < want:
			return v.fail(c.Seq, "", ProblemCheckpointChain, fmt.Sprintf(
				"two checkpoints claim position #%d (at seq %d and %d)", c.Index, chained[i-1].Seq, c.Seq)), false
		case c.Index > want:
			removed := fmt.Sprintf("checkpoints #%d..#%d were removed", want, c.Index-1)
			if want == c.Index-1 {
				removed = fmt.Sprintf("checkpoint #%d was removed", want)
			}
			return v.fail(c.Seq, "", ProblemCheckpointChain, fmt.Sprintf(
				"checkpoint #%d (%s at seq %d) follows #%d (at seq %d), which is missing: %s",
				c.Index, c.Kind, c.Seq, c.Index-1, c.PrevSeq, removed)), false
		case i == 0:
			if len(c.Prev) > 0 && !legacy[string(c.Prev)] {
				return v.fail(c.Seq, "", ProblemCheckpointChain, fmt.Sprintf(
					"checkpoint #1 (%s at seq %d) follows an old-format checkpoint at seq %d, which is missing", c.Kind, c.Seq, c.PrevSeq)), false
			}
		default:
			p := chained[i-1]
			if c.PrevSeq != p.Seq || !bytes.Equal(c.Prev, p.Digest()) {
				return v.fail(c.Seq, "", ProblemCheckpointChain, fmt.Sprintf(
					"checkpoint #%d (%s at seq %d) follows a checkpoint at seq %d, but the stored #%d (at seq %d) is another one",
					c.Index, c.Kind, c.Seq, c.PrevSeq, p.Index, p.Seq)), false
			}
		}
	}
	if r := v.ref; r != nil && r.outside && r.Index > 0 {
		if int(r.Index) > len(chained) {
			last := "none"
			if n := len(chained); n > 0 {
				last = fmt.Sprintf("#%d at seq %d", chained[n-1].Index, chained[n-1].Seq)
			}
			return v.fail(r.Seq, "", ProblemTruncatedTail, fmt.Sprintf(
				"the outside reference is checkpoint #%d at seq %d, but the newest stored checkpoint is %s: checkpoints (and the events they covered) were removed",
				r.Index, r.Seq, last)), false
		}
		return v.fail(r.Seq, "", ProblemCheckpointMismatch, fmt.Sprintf(
			"the stored checkpoint #%d (at seq %d) differs from the outside reference (at seq %d)",
			r.Index, chained[r.Index-1].Seq, r.Seq)), false
	}
	return Report{}, true
}

// setAnchor consumes the checkpoints up to and including a.seq and checks that a valid
// one vouches for a (unless a is the genesis): when the anchor is inferred from where the
// log starts, only a retention checkpoint may. first is the first event, if any, for
// naming it in a failure.
func (v *verifier) setAnchor(a anchor, inferred bool, first *gatehouse.AuditEvent) (Report, bool) {
	var firstSeq int64
	var firstID string
	if first != nil {
		firstSeq, firstID = first.Seq, first.ID
	}
	vouched := a.seq == 0 && bytes.Equal(a.hash, Genesis())
	var mismatch, periodic, legacy *vcp
	for ; v.ci < len(v.cps) && v.cps[v.ci].Seq <= a.seq; v.ci++ {
		cp := &v.cps[v.ci]
		if r, ok := v.checkSig(cp, ""); !ok {
			return r, false
		}
		if cp.Seq != a.seq {
			continue
		}
		switch {
		case !bytes.Equal(cp.Hash, a.hash):
			if mismatch == nil {
				mismatch = cp
			}
		case inferred && cp.Kind != gatehouse.CheckpointRetention:
			periodic = cp
		case inferred && cp.Index == 0:
			legacy = cp // the kind is not signed: needs its audit:prune event
		default:
			vouched = true
		}
	}
	v.prevSeq, v.prevHash = a.seq, append([]byte(nil), a.hash...)
	v.rep.AnchorSeq = a.seq
	v.lastVouched = a.seq
	if !vouched && legacy != nil && mismatch == nil {
		vouched = true
		v.needPrune = &legacy.Checkpoint
	}
	if vouched && mismatch == nil {
		if a.seq > 0 {
			v.rep.Checkpoints++
		}
		return Report{}, true
	}
	switch {
	case mismatch != nil:
		return v.fail(a.seq, "", ProblemCheckpointMismatch, fmt.Sprintf(
			"%s has hash %s, but the chain continues from %s", mismatch.what(), short(mismatch.Hash), short(a.hash))), false
	case inferred && a.seq == 0:
		return v.fail(firstSeq, firstID, ProblemChainBroken, fmt.Sprintf(
			"the chain starts at seq 1 but its PrevHash %s is not the genesis hash", short(a.hash))), false
	case inferred && first == nil:
		return v.fail(a.seq, "", ProblemTruncatedHead, fmt.Sprintf(
			"the log is empty but checkpoints up to seq %d exist and no signed retention checkpoint vouches for pruning them", a.seq)), false
	case inferred && periodic != nil:
		return v.fail(firstSeq, firstID, ProblemTruncatedHead, fmt.Sprintf(
			"the log starts at seq %d, but the checkpoint at seq %d is a %s one, not a retention checkpoint: events 1..%d were removed outside retention",
			firstSeq, a.seq, periodic.Kind, a.seq)), false
	case inferred:
		return v.fail(firstSeq, firstID, ProblemTruncatedHead, fmt.Sprintf(
			"the log starts at seq %d but no signed retention checkpoint vouches for seq %d: events 1..%d were removed",
			firstSeq, a.seq, a.seq)), false
	default:
		return v.fail(a.seq, "", ProblemCheckpointMismatch, fmt.Sprintf(
			"no valid signed checkpoint vouches for the anchor (seq %d, hash %s)", a.seq, short(a.hash))), false
	}
}

func (v *verifier) run(ctx context.Context, events iter.Seq2[gatehouse.AuditEvent, error], explicit *anchor) (Report, error) {
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	anchored := false
	if v.ref != nil {
		if r, ok := v.checkSig(v.ref, ""); !ok {
			return r, nil
		}
	}
	if explicit == nil {
		if r, ok := v.checkChain(); !ok {
			return r, nil
		}
	}
	if explicit != nil {
		if r, ok := v.setAnchor(*explicit, false, nil); !ok {
			return r, nil
		}
		anchored = true
	}
	var n int64
	for e, err := range events {
		if err != nil {
			return v.finish(v.rep), fmt.Errorf("audit: reading events to verify: %w", err)
		}
		n++
		if n%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return v.finish(v.rep), err
			}
		}
		if !anchored {
			anchored = true
			if e.Seq < 1 {
				return v.fail(e.Seq, e.ID, ProblemSequenceGap, fmt.Sprintf("seq %d: sequence numbers start at 1", e.Seq)), nil
			}
			// The first event's PrevHash is the anchor: the genesis hash at seq 1, else
			// the hash of the last pruned event, which a checkpoint must vouch for.
			a := anchor{seq: e.Seq - 1, hash: e.PrevHash}
			if r, ok := v.setAnchor(a, true, &e); !ok {
				return r, nil
			}
		}
		if r, ok := v.event(&e); !ok {
			return r, nil
		}
	}
	if !anchored {
		// No events: the log is empty or fully pruned. Take the newest retention checkpoint
		// as the anchor (after checking every signature); checkpoints past it are a cut tail.
		a := anchor{seq: 0, hash: Genesis()}
		for i := len(v.cps) - 1; i >= 0; i-- {
			if c := &v.cps[i]; c.Kind == gatehouse.CheckpointRetention && !c.outside {
				a = anchor{seq: c.Seq, hash: c.Hash}
				break
			}
		}
		if r, ok := v.setAnchor(a, true, nil); !ok {
			return r, nil
		}
	}
	// Checkpoints past the last event: the tail of the log was cut.
	for ; v.ci < len(v.cps); v.ci++ {
		cp := &v.cps[v.ci]
		if r, ok := v.checkSig(cp, ""); !ok {
			return r, nil
		}
		return v.fail(cp.Seq, "", ProblemTruncatedTail, fmt.Sprintf(
			"%s vouches for seq %d but the log ends at seq %d: events after %d were removed",
			cp.what(), cp.Seq, v.prevSeq, v.prevSeq)), nil
	}
	if p := v.needPrune; p != nil && v.pruneSeq == 0 {
		return v.fail(v.rep.FirstSeq, "", ProblemTruncatedHead, fmt.Sprintf(
			"the log starts after the old-format retention checkpoint at seq %d, whose kind is not signed, and no audit:prune event records that retention: events 1..%d may have been removed outside retention",
			p.Seq, p.Seq)), nil
	}
	if p := v.needPrune; p != nil && v.pruneSeq > v.lastVouched {
		return v.fail(v.rep.FirstSeq, "", ProblemTruncatedHead, fmt.Sprintf(
			"the log starts after the old-format retention checkpoint at seq %d, whose kind is not signed, and the audit:prune event that records that retention (seq %d) is not covered by a signed checkpoint (the last one covers seq %d): events 1..%d may have been removed outside retention (if they were pruned just now, verify again after the next checkpoint)",
			p.Seq, v.pruneSeq, v.lastVouched, p.Seq)), nil
	}
	r := v.rep
	r.OK = true
	return v.finish(r), nil
}

// event checks one event against the chain so far and the checkpoints at its seq.
func (v *verifier) event(e *gatehouse.AuditEvent) (Report, bool) {
	expected := v.prevSeq + 1
	if e.Seq <= v.prevSeq {
		return v.fail(e.Seq, e.ID, ProblemChainBroken, fmt.Sprintf(
			"seq %d comes after seq %d: events out of order or duplicated", e.Seq, v.prevSeq)), false
	}
	if !bytes.Equal(e.PrevHash, v.prevHash) {
		detail := fmt.Sprintf("PrevHash %s does not match the hash %s of seq %d", short(e.PrevHash), short(v.prevHash), v.prevSeq)
		if e.Seq > expected {
			detail = fmt.Sprintf("events %d..%d are missing (%s)", expected, e.Seq-1, detail)
		}
		return v.fail(e.Seq, e.ID, ProblemChainBroken, detail), false
	}
	if e.Seq != expected {
		return v.fail(e.Seq, e.ID, ProblemSequenceGap, fmt.Sprintf(
			"expected seq %d, got %d although the hash links are intact", expected, e.Seq)), false
	}
	if h := Hash(e.PrevHash, e); !bytes.Equal(h, e.Hash) {
		return v.fail(e.Seq, e.ID, ProblemHashMismatch, fmt.Sprintf(
			"stored hash %s, recomputed %s", short(e.Hash), short(h))), false
	}
	v.prevSeq = e.Seq
	v.prevHash = append(v.prevHash[:0], e.Hash...)
	if p := v.needPrune; p != nil && v.pruneSeq == 0 && e.Action == gatehouse.AuditActionPrune &&
		e.Details["seq"] == strconv.FormatInt(p.Seq, 10) && e.Details["hash"] == hex.EncodeToString(p.Hash) {
		v.pruneSeq = e.Seq
	}
	if v.rep.Checked == 0 {
		v.rep.FirstSeq = e.Seq
	}
	v.rep.Checked++
	for ; v.ci < len(v.cps) && v.cps[v.ci].Seq <= e.Seq; v.ci++ {
		cp := &v.cps[v.ci]
		if r, ok := v.checkSig(cp, e.ID); !ok {
			return r, false
		}
		// Seqs are contiguous from the anchor, so cp.Seq == e.Seq here.
		if cp.Seq != e.Seq || !bytes.Equal(cp.Hash, e.Hash) {
			return v.fail(e.Seq, e.ID, ProblemCheckpointMismatch, fmt.Sprintf(
				"%s has hash %s, the event's hash is %s", cp.what(), short(cp.Hash), short(e.Hash))), false
		}
		v.rep.Checkpoints++
		v.lastVouched = e.Seq
	}
	return Report{}, true
}

// short renders a hash for messages: its first 8 bytes in hex.
func short(h []byte) string {
	if len(h) == 0 {
		return "(empty)"
	}
	if len(h) > 8 {
		return hex.EncodeToString(h[:8]) + "…"
	}
	return hex.EncodeToString(h)
}

// StaleCheckpoint describes how old the newest checkpoint is at now, and warns when it is
// older than twice every (the checkpoint period) while events after it are unvouched, or
// older than twice IdleCheckpointEvery (a server signs its head at least that often even
// when nothing happens). A stale newest checkpoint can mean that the newest checkpoints were
// removed with the events they covered (compare with an outside reference), or that the
// server that signs them is not running.
func (r Report) StaleCheckpoint(now time.Time, every time.Duration) (age time.Duration, warning string) {
	if r.Newest == nil {
		return 0, ""
	}
	age = now.Sub(r.Newest.Time)
	switch {
	case every > 0 && age > 2*every && r.Unvouched > 1:
		warning = fmt.Sprintf("the newest checkpoint is %s old, more than twice the checkpoint period (%s), and %d events after it are not covered by one: the newest checkpoints may have been removed with the events they covered, or no server is signing",
			RoundAge(age), every, r.Unvouched)
	case age > 2*IdleCheckpointEvery:
		warning = fmt.Sprintf("the newest checkpoint is %s old, more than twice the idle re-signing period (%s): the newest checkpoints may have been removed with the events they covered, or no server is signing",
			RoundAge(age), IdleCheckpointEvery)
	}
	return age, warning
}

// IdleCheckpointEvery is how often a server signs its head even when nothing but its own
// checkpoint event was appended since the last checkpoint, so that the newest checkpoint's
// age means something (see Report.StaleCheckpoint).
const IdleCheckpointEvery = time.Hour

// RoundAge rounds an age for messages: to the second, or the millisecond below one.
func RoundAge(d time.Duration) time.Duration {
	if d < time.Second && d > -time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(time.Second)
}
