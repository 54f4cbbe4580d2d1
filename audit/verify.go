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

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Problems Verify reports. Report.Problem is one of these.
const (
	ProblemHashMismatch        = "hash mismatch (event changed)"
	ProblemChainBroken         = "chain broken (event removed or reordered)"
	ProblemSequenceGap         = "sequence gap"
	ProblemCheckpointSignature = "checkpoint signature invalid"
	ProblemCheckpointMismatch  = "checkpoint does not match chain"
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

// Verify checks a chain of events, streamed in Seq order, against signed checkpoints.
//
// Each event must follow the one before it: its PrevHash is the previous event's Hash and
// its Seq the previous Seq plus one, and its Hash must be Hash(PrevHash, event). Every
// checkpoint must carry a valid signature by pub and match the chain at its seq; a
// checkpoint past the last event means events were cut from the end of the log.
//
// Where the chain starts is inferred from the first event: at Seq 1 its PrevHash must be
// Genesis(); after retention pruned a prefix (first Seq N > 1) a valid checkpoint at Seq
// N-1 with Hash equal to the first event's PrevHash must vouch for it, otherwise the
// missing prefix is reported as removed. With no events at all, the log is taken to be
// fully pruned and only the checkpoint signatures are checked. Use VerifyFrom when the
// anchor is known (the store records it when it prunes).
//
// Load the checkpoints before reading the events, so that a checkpoint made while the
// events are read does not look like a cut tail. pub may be nil only if there are no
// checkpoints.
//
// Tampering yields a Report with OK false and a nil error. The error is for failures to
// verify at all: the iterator's error, ctx ending, a bad argument.
func Verify(ctx context.Context, events iter.Seq2[gatehouse.AuditEvent, error], checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	v, err := newVerifier(checkpoints, pub)
	if err != nil {
		return Report{}, err
	}
	return v.run(ctx, events, nil)
}

// VerifyFrom is Verify with an explicit anchor: the events must continue the chain from
// (anchorSeq, anchorHash), that is start at anchorSeq+1 with PrevHash anchorHash. The
// anchor is either the genesis (0, Genesis()) or must be vouched for by a valid signed
// checkpoint among checkpoints (the one the store kept when it pruned through anchorSeq).
// With no events, any checkpoint past the anchor is reported as a cut tail.
func VerifyFrom(ctx context.Context, anchorSeq int64, anchorHash []byte, events iter.Seq2[gatehouse.AuditEvent, error], checkpoints []Checkpoint, pub ed25519.PublicKey) (Report, error) {
	if anchorSeq < 0 {
		return Report{}, fmt.Errorf("audit: anchor seq %d is negative", anchorSeq)
	}
	v, err := newVerifier(checkpoints, pub)
	if err != nil {
		return Report{}, err
	}
	return v.run(ctx, events, &anchor{seq: anchorSeq, hash: anchorHash})
}

type anchor struct {
	seq  int64
	hash []byte
}

type verifier struct {
	pub ed25519.PublicKey
	cps []Checkpoint // sorted by Seq
	ci  int          // next checkpoint to consume

	rep         Report
	prevSeq     int64
	prevHash    []byte
	lastVouched int64
}

func newVerifier(checkpoints []Checkpoint, pub ed25519.PublicKey) (*verifier, error) {
	if len(checkpoints) > 0 && len(pub) != ed25519.PublicKeySize {
		return nil, errors.New("audit: verifying checkpoints needs the Ed25519 public key of the signer")
	}
	cps := slices.Clone(checkpoints)
	slices.SortStableFunc(cps, func(a, b Checkpoint) int {
		switch {
		case a.Seq < b.Seq:
			return -1
		case a.Seq > b.Seq:
			return 1
		}
		return 0
	})
	return &verifier{pub: pub, cps: cps}, nil
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

// checkSig verifies the signature of cp; it returns a failure report if it is bad.
func (v *verifier) checkSig(cp *Checkpoint, id string) (Report, bool) {
	if err := VerifyCheckpoint(v.pub, *cp); err != nil {
		return v.fail(cp.Seq, id, ProblemCheckpointSignature, err.Error()), false
	}
	return Report{}, true
}

// setAnchor consumes the checkpoints up to and including a.seq and checks that a valid
// one vouches for a (unless a is the genesis). first is the first event, if any, for
// naming it in a failure.
func (v *verifier) setAnchor(a anchor, inferred bool, first *gatehouse.AuditEvent) (Report, bool) {
	var firstSeq int64
	var firstID string
	if first != nil {
		firstSeq, firstID = first.Seq, first.ID
	}
	vouched := a.seq == 0 && bytes.Equal(a.hash, Genesis())
	var mismatch *Checkpoint
	for ; v.ci < len(v.cps) && v.cps[v.ci].Seq <= a.seq; v.ci++ {
		cp := &v.cps[v.ci]
		if r, ok := v.checkSig(cp, ""); !ok {
			return r, false
		}
		if cp.Seq == a.seq {
			if bytes.Equal(cp.Hash, a.hash) {
				vouched = true
			} else if mismatch == nil {
				mismatch = cp
			}
		}
	}
	v.prevSeq, v.prevHash = a.seq, append([]byte(nil), a.hash...)
	v.rep.AnchorSeq = a.seq
	v.lastVouched = a.seq
	if vouched && mismatch == nil {
		if a.seq > 0 {
			v.rep.Checkpoints++
		}
		return Report{}, true
	}
	switch {
	case mismatch != nil:
		return v.fail(a.seq, "", ProblemCheckpointMismatch, fmt.Sprintf(
			"the signed checkpoint at seq %d has hash %s, but the chain continues from %s",
			a.seq, short(mismatch.Hash), short(a.hash))), false
	case inferred && a.seq == 0:
		return v.fail(firstSeq, firstID, ProblemChainBroken, fmt.Sprintf(
			"the chain starts at seq 1 but its PrevHash %s is not the genesis hash", short(a.hash))), false
	case inferred:
		return v.fail(firstSeq, firstID, ProblemChainBroken, fmt.Sprintf(
			"the log starts at seq %d but no signed checkpoint vouches for seq %d: events 1..%d were removed",
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
		// No events: the log is empty or fully pruned. Take the newest checkpoint as the
		// anchor (after checking every signature).
		a := anchor{seq: 0, hash: Genesis()}
		if len(v.cps) > 0 {
			last := v.cps[len(v.cps)-1]
			a = anchor{seq: last.Seq, hash: last.Hash}
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
		return v.fail(cp.Seq, "", ProblemCheckpointMismatch, fmt.Sprintf(
			"a signed checkpoint vouches for seq %d but the log ends at seq %d: events after %d were removed",
			cp.Seq, v.prevSeq, v.prevSeq)), nil
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
				"the signed checkpoint at seq %d has hash %s, the event's hash is %s", cp.Seq, short(cp.Hash), short(e.Hash))), false
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
