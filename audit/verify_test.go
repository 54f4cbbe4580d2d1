package audit

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// checkpointsAt signs periodic checkpoints of chain at the given seqs, chained in that order.
func checkpointsAt(s *Signer, chain []gatehouse.AuditEvent, seqs ...int64) []Checkpoint {
	return appendCheckpoints(s, nil, chain, gatehouse.CheckpointPeriodic, seqs...)
}

// appendCheckpoints signs checkpoints of the kind at seqs, chained after cps.
func appendCheckpoints(s *Signer, cps []Checkpoint, chain []gatehouse.AuditEvent, kind string, seqs ...int64) []Checkpoint {
	for _, seq := range seqs {
		e := chain[seq-1]
		var prev *Checkpoint
		if len(cps) > 0 {
			prev = &cps[len(cps)-1]
		}
		cps = append(cps, s.Sign(kind, prev, e.Seq, e.Hash, baseTime.Add(time.Duration(seq)*time.Second)))
	}
	return cps
}

func verifySlice(t *testing.T, chain []gatehouse.AuditEvent, cps []Checkpoint, s *Signer) Report {
	t.Helper()
	var pub []byte
	if s != nil {
		pub = s.Public()
	}
	rep, err := Verify(context.Background(), Events(chain), cps, pub)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	return rep
}

func wantProblem(t *testing.T, rep Report, seq int64, problem string) {
	t.Helper()
	if rep.OK {
		t.Fatalf("Verify OK (%v), want %q at seq %d", rep, problem, seq)
	}
	if rep.Seq != seq || rep.Problem != problem {
		t.Fatalf("got %v\nwant %q at seq %d", rep, problem, seq)
	}
	if !strings.Contains(rep.String(), problem) {
		t.Fatalf("String() = %q does not name the problem", rep.String())
	}
}

func TestVerifyGood(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(50)
	cps := checkpointsAt(s, chain, 40, 10, 25) // any order
	rep := verifySlice(t, chain, cps, s)
	if !rep.OK || rep.Checked != 50 || rep.FirstSeq != 1 || rep.LastSeq != 50 || rep.Checkpoints != 3 || rep.Unvouched != 10 || rep.AnchorSeq != 0 {
		t.Fatalf("report %+v", rep)
	}
	if !bytes.Equal(rep.Head, chain[49].Hash) {
		t.Error("Head is not the last hash")
	}
	t.Log(rep)
	// No checkpoints, no key.
	if rep := verifySlice(t, chain, nil, nil); !rep.OK || rep.Checked != 50 || rep.Unvouched != 50 {
		t.Fatalf("report %+v", rep)
	}
	// Empty log.
	if rep := verifySlice(t, nil, nil, nil); !rep.OK || rep.Checked != 0 {
		t.Fatalf("empty: %+v", rep)
	}
	// Checkpoints need a key.
	if _, err := Verify(context.Background(), Events(chain), cps, nil); err == nil {
		t.Error("checkpoints without a key accepted")
	}
}

func TestVerifyEditedField(t *testing.T) {
	s := newTestSigner(t)
	for _, edit := range []struct {
		name string
		f    func(e *gatehouse.AuditEvent)
	}{
		{"outcome", func(e *gatehouse.AuditEvent) { e.Outcome = gatehouse.OutcomeSuccess + "!" }},
		{"actor", func(e *gatehouse.AuditEvent) { e.ActorName = "mallory" }},
		{"time", func(e *gatehouse.AuditEvent) { e.Time = e.Time.Add(-1) }},
		{"details", func(e *gatehouse.AuditEvent) { e.Details["update"] = "other" }},
		{"details removed", func(e *gatehouse.AuditEvent) { e.Details = nil }},
	} {
		t.Run(edit.name, func(t *testing.T) {
			chain := buildChain(30)
			cps := checkpointsAt(s, chain, 10, 30)
			edit.f(&chain[16])
			rep := verifySlice(t, chain, cps, s)
			wantProblem(t, rep, 17, ProblemHashMismatch)
			if rep.ID != chain[16].ID || rep.Checked != 16 || rep.LastSeq != 16 {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

func TestVerifyEditedAndRehashed(t *testing.T) {
	s := newTestSigner(t)
	// The attacker recomputes the edited event's hash only: the next link breaks.
	chain := buildChain(30)
	chain[16].Reason = "nothing to see"
	chain[16].Hash = Hash(chain[16].PrevHash, &chain[16])
	wantProblem(t, verifySlice(t, chain, nil, nil), 18, ProblemChainBroken)

	// The attacker recomputes the whole chain after the edit: only a checkpoint catches it.
	chain = buildChain(30)
	cps := checkpointsAt(s, chain, 10, 20)
	chain[16].Reason = "nothing to see"
	rehash(chain, 16)
	if rep := verifySlice(t, chain, nil, nil); !rep.OK {
		t.Fatalf("without checkpoints a rewritten chain verifies (expected): %v", rep)
	}
	wantProblem(t, verifySlice(t, chain, cps, s), 20, ProblemCheckpointMismatch)
}

func TestVerifyDeletedEvent(t *testing.T) {
	chain := buildChain(30)
	deleted := append(cloneChain(chain[:11]), cloneChain(chain[12:])...)
	rep := verifySlice(t, deleted, nil, nil)
	wantProblem(t, rep, 13, ProblemChainBroken)
	if !strings.Contains(rep.Detail, "events 12..12 are missing") {
		t.Errorf("detail %q", rep.Detail)
	}

	// Deleting and renumbering (without the key to rehash) breaks the link too.
	renum := cloneChain(deleted)
	for i := 11; i < len(renum); i++ {
		renum[i].Seq--
	}
	wantProblem(t, verifySlice(t, renum, nil, nil), 12, ProblemChainBroken)

	// Deleting the first event.
	wantProblem(t, verifySlice(t, cloneChain(chain[1:]), nil, nil), 2, ProblemTruncatedHead)
}

func TestVerifySwapped(t *testing.T) {
	// Two events delivered in swapped order.
	chain := buildChain(30)
	chain[9], chain[10] = chain[10], chain[9]
	wantProblem(t, verifySlice(t, chain, nil, nil), 11, ProblemChainBroken)

	// Two rows whose seq values were swapped (read back in seq order, contents swapped).
	chain = buildChain(30)
	chain[9], chain[10] = chain[10], chain[9]
	chain[9].Seq, chain[10].Seq = 10, 11
	wantProblem(t, verifySlice(t, chain, nil, nil), 10, ProblemChainBroken)

	// Swapped contents but hashes kept in place.
	chain = buildChain(30)
	h9, p9, h10, p10 := chain[9].Hash, chain[9].PrevHash, chain[10].Hash, chain[10].PrevHash
	chain[9], chain[10] = chain[10], chain[9]
	chain[9].Seq, chain[9].Hash, chain[9].PrevHash = 10, h9, p9
	chain[10].Seq, chain[10].Hash, chain[10].PrevHash = 11, h10, p10
	wantProblem(t, verifySlice(t, chain, nil, nil), 10, ProblemHashMismatch)
}

func TestVerifySequenceGap(t *testing.T) {
	// A chain whose links are intact but whose seq skips (a store bug).
	var chain []gatehouse.AuditEvent
	for i := 0; i < 5; i++ {
		chain = chainAppend(chain, sampleEvent(i))
	}
	e := sampleEvent(5)
	e.Seq = 7
	e.PrevHash = chain[4].Hash
	e.Hash = Hash(e.PrevHash, &e)
	chain = append(chain, e)
	wantProblem(t, verifySlice(t, chain, nil, nil), 7, ProblemSequenceGap)

	// Seq 0.
	bad := buildChain(1)
	bad[0].Seq = 0
	wantProblem(t, verifySlice(t, bad, nil, nil), 0, ProblemSequenceGap)
}

func TestVerifyCheckpoints(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(30)

	// Forged signature.
	cps := checkpointsAt(s, chain, 10, 20)
	cps[1].Signature = bytes.Clone(cps[1].Signature)
	cps[1].Signature[7] ^= 0x40
	rep := verifySlice(t, chain, cps, s)
	wantProblem(t, rep, 20, ProblemCheckpointSignature)
	if rep.ID != chain[19].ID || rep.Checkpoints != 1 {
		t.Fatalf("report %+v", rep)
	}

	// Signed by another key (an attacker's), even with our key ID.
	mallory := newTestSigner(t)
	forged := checkpointsAt(mallory, chain, 15)
	forged[0].KeyID = s.KeyID()
	wantProblem(t, verifySlice(t, chain, append(checkpointsAt(s, chain, 10), forged...), s), 15, ProblemCheckpointSignature)

	// Validly signed, but for a different hash.
	wrong := s.Sign(gatehouse.CheckpointPeriodic, nil, 12, bytes.Repeat([]byte{1}, 32), baseTime)
	wantProblem(t, verifySlice(t, chain, []Checkpoint{wrong}, s), 12, ProblemCheckpointMismatch)

	// Tail cut: a checkpoint beyond the last event.
	cps = checkpointsAt(s, chain, 10, 30)
	rep = verifySlice(t, chain[:25], cps, s)
	wantProblem(t, rep, 30, ProblemTruncatedTail)
	if rep.Checked != 25 || !strings.Contains(rep.Detail, "removed") {
		t.Fatalf("report %+v", rep)
	}
	// Forged checkpoint past the end is reported as a bad signature, not a cut tail.
	cps[1].Signature = bytes.Clone(cps[1].Signature)
	cps[1].Signature[0] ^= 1
	wantProblem(t, verifySlice(t, chain[:25], cps, s), 30, ProblemCheckpointSignature)
}

func TestVerifyFromAnchorAfterPruning(t *testing.T) {
	s := newTestSigner(t)
	ctx := context.Background()
	chain := buildChain(100)
	cps := checkpointsAt(s, chain, 20, 40)                                    // periodic
	cps = appendCheckpoints(s, cps, chain, gatehouse.CheckpointRetention, 40) // the prune's
	cps = appendCheckpoints(s, cps, chain, gatehouse.CheckpointPeriodic, 90)
	remaining := cloneChain(chain[40:]) // pruned through seq 40

	rep, err := Verify(ctx, Events(remaining), cps, s.Public())
	if err != nil || !rep.OK || rep.AnchorSeq != 40 || rep.Checked != 60 || rep.FirstSeq != 41 || rep.Checkpoints != 2 || rep.Unvouched != 10 || rep.Chained != 4 {
		t.Fatalf("Verify after pruning: %+v, %v", rep, err)
	}
	rep, err = VerifyFrom(ctx, 40, chain[39].Hash, Events(remaining), cps, s.Public())
	if err != nil || !rep.OK || rep.AnchorSeq != 40 || rep.Checked != 60 {
		t.Fatalf("VerifyFrom: %+v, %v", rep, err)
	}
	// The oldest checkpoint removed: the checkpoint chain no longer starts at #1.
	wantProblem(t, verifySlice(t, remaining, cps[1:], s), 40, ProblemCheckpointChain)

	// Pruned at a point no checkpoint vouches for: the prefix counts as removed.
	wantProblem(t, verifySlice(t, cloneChain(chain[35:]), cps, s), 36, ProblemTruncatedHead)
	// Pruned at a periodic checkpoint: not retention, the prefix counts as removed.
	wantProblem(t, verifySlice(t, cloneChain(chain[20:]), cps, s), 21, ProblemTruncatedHead)
	// The anchor checkpoint was dropped: the checkpoint chain shows it.
	wantProblem(t, verifySlice(t, remaining, []Checkpoint{cps[0], cps[1], cps[3]}, s), 90, ProblemCheckpointChain)
	// The anchor checkpoint forged.
	bad := append([]Checkpoint(nil), cps...)
	bad[2].Signature = bytes.Clone(bad[2].Signature)
	bad[2].Signature[3] ^= 2
	wantProblem(t, verifySlice(t, remaining, bad, s), 40, ProblemCheckpointSignature)
	// The first remaining event's PrevHash altered: the anchor does not match.
	alt := cloneChain(remaining)
	alt[0].PrevHash[0] ^= 1
	wantProblem(t, verifySlice(t, alt, cps, s), 40, ProblemCheckpointMismatch)

	// VerifyFrom with an anchor no checkpoint vouches for.
	rep, err = VerifyFrom(ctx, 40, bytes.Repeat([]byte{9}, 32), Events(remaining), cps, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, 40, ProblemCheckpointMismatch)
	// VerifyFrom where events do not start right after the anchor.
	rep, err = VerifyFrom(ctx, 20, chain[19].Hash, Events(remaining), cps, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, 41, ProblemChainBroken)
	// VerifyFrom the genesis over a full chain.
	rep, err = VerifyFrom(ctx, 0, Genesis(), Events(chain), cps, s.Public())
	if err != nil || !rep.OK || rep.Checked != 100 {
		t.Fatalf("VerifyFrom genesis: %+v, %v", rep, err)
	}

	// Everything pruned: only the checkpoints remain, the newest retention one anchors.
	rep, err = Verify(ctx, Events(nil), cps[:3], s.Public())
	if err != nil || !rep.OK || rep.AnchorSeq != 40 || rep.Checked != 0 {
		t.Fatalf("fully pruned: %+v, %v", rep, err)
	}
	// ... and a checkpoint after it means a cut tail.
	rep, err = Verify(ctx, Events(nil), cps, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, 90, ProblemTruncatedTail)
	// With an explicit anchor, checkpoints after it and no events mean a cut tail.
	rep, err = VerifyFrom(ctx, 40, chain[39].Hash, Events(nil), cps, s.Public())
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, 90, ProblemTruncatedTail)
}

func TestVerifyErrors(t *testing.T) {
	chain := buildChain(3000)
	boom := errors.New("disk on fire")
	events := iter.Seq2[gatehouse.AuditEvent, error](func(yield func(gatehouse.AuditEvent, error) bool) {
		for i, e := range chain {
			if i == 5 {
				yield(gatehouse.AuditEvent{}, boom)
				return
			}
			if !yield(e, nil) {
				return
			}
		}
	})
	rep, err := Verify(context.Background(), events, nil, nil)
	if !errors.Is(err, boom) || rep.Checked != 5 {
		t.Fatalf("iterator error: %+v, %v", rep, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Verify(ctx, Events(chain), nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled: %v", err)
	}
	// Cancel in the middle of a long stream.
	ctx, cancel = context.WithCancel(context.Background())
	mid := iter.Seq2[gatehouse.AuditEvent, error](func(yield func(gatehouse.AuditEvent, error) bool) {
		for i, e := range chain {
			if i == 1500 {
				cancel()
			}
			if !yield(e, nil) {
				return
			}
		}
	})
	if _, err := Verify(ctx, mid, nil, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled midway: %v", err)
	}
	if _, err := VerifyFrom(context.Background(), -1, nil, Events(chain), nil, nil); err == nil {
		t.Fatal("negative anchor accepted")
	}
}
