package audit

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestVerifyOldFormatCheckpoints: a log checkpointed before checkpoints were chained still
// verifies; the first chained checkpoint names the newest old one; an old-format retention
// anchor (its kind is not signed) needs the audit:prune event that recorded it.
func TestVerifyOldFormatCheckpoints(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(60)
	// Event 35 records the (old) prune through seq 30.
	chain[34].Action = gatehouse.AuditActionPrune
	chain[34].Details = map[string]string{"kind": "retention", "seq": "30", "hash": hex.EncodeToString(chain[29].Hash)}
	rehash(chain, 34)

	old := []Checkpoint{
		s.signV1(gatehouse.CheckpointPeriodic, 10, chain[9].Hash, baseTime),
		s.signV1(gatehouse.CheckpointPeriodic, 20, chain[19].Hash, baseTime),
		s.signV1(gatehouse.CheckpointRetention, 30, chain[29].Hash, baseTime),
	}
	// Old checkpoints alone verify under the old rule.
	rep := verifySlice(t, chain, old, s)
	if !rep.OK || rep.Checkpoints != 3 || rep.Legacy != 3 || rep.Chained != 0 {
		t.Fatalf("old checkpoints: %+v", rep)
	}
	// After the upgrade the first new checkpoint starts the chain after the newest old one.
	cps := append([]Checkpoint(nil), old...)
	cps = append(cps, s.Sign(gatehouse.CheckpointPeriodic, &cps[2], 40, chain[39].Hash, baseTime))
	cps = appendCheckpoints(s, cps, chain, gatehouse.CheckpointPeriodic, 50)
	if cps[3].Index != 1 || cps[3].PrevSeq != 30 || cps[4].Index != 2 {
		t.Fatalf("chain after old checkpoints: %+v", cps[3:])
	}
	rep = verifySlice(t, chain, cps, s)
	if !rep.OK || rep.Checkpoints != 5 || rep.Legacy != 3 || rep.Chained != 2 {
		t.Fatalf("mixed: %+v", rep)
	}
	// Pruned through 30 with the old retention checkpoint: the prune event confirms it.
	rep = verifySlice(t, cloneChain(chain[30:]), cps, s)
	if !rep.OK || rep.AnchorSeq != 30 {
		t.Fatalf("old retention anchor: %+v", rep)
	}
	// Without that event the old retention checkpoint's (unsigned) kind is not believed.
	noPrune := cloneChain(chain)
	noPrune[34].Action = "stack:update"
	rehash(noPrune, 34)
	var cps2 []Checkpoint
	cps2 = append(cps2, old...)
	cps2 = append(cps2, s.Sign(gatehouse.CheckpointPeriodic, &cps2[2], 40, noPrune[39].Hash, baseTime))
	wantProblem(t, verifySlice(t, noPrune[30:], cps2, s), 31, ProblemTruncatedHead)
	// An old periodic checkpoint re-labelled as retention (its signature still holds: the
	// old format did not sign the kind) does not pass the truncation off as pruning.
	relabelled := append([]Checkpoint(nil), cps...)
	relabelled[1].Kind = gatehouse.CheckpointRetention
	wantProblem(t, verifySlice(t, cloneChain(chain[20:]), relabelled, s), 21, ProblemTruncatedHead)
	// The newest old checkpoint removed: the first chained one names it.
	wantProblem(t, verifySlice(t, chain, []Checkpoint{cps[0], cps[1], cps[3], cps[4]}, s), 40, ProblemCheckpointChain)
	// Removing an older old-format checkpoint is not detectable (they were never chained).
	if rep := verifySlice(t, chain, cps[1:], s); !rep.OK {
		t.Fatalf("old checkpoint removed: %+v", rep)
	}
}

// TestVerifyCheckpointKindSigned: a chained periodic checkpoint re-labelled as retention
// fails its signature, so a truncated head cannot be passed off as pruning.
func TestVerifyCheckpointKindSigned(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(30)
	cps := checkpointsAt(s, chain, 10, 20)
	wantProblem(t, verifySlice(t, cloneChain(chain[10:]), cps, s), 11, ProblemTruncatedHead)
	cps[0].Kind = gatehouse.CheckpointRetention
	wantProblem(t, verifySlice(t, cloneChain(chain[10:]), cps, s), 10, ProblemCheckpointSignature)
}

func TestVerifyCheckpointChain(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(50)
	cps := checkpointsAt(s, chain, 10, 20, 30, 40)
	if rep := verifySlice(t, chain, cps, s); !rep.OK || rep.Chained != 4 || rep.Newest == nil || rep.Newest.Seq != 40 {
		t.Fatalf("chain: %+v", rep)
	}
	// A middle checkpoint removed.
	rep := verifySlice(t, chain, []Checkpoint{cps[0], cps[1], cps[3]}, s)
	wantProblem(t, rep, 40, ProblemCheckpointChain)
	if !strings.Contains(rep.Detail, "#3 was removed") {
		t.Fatalf("detail %q", rep.Detail)
	}
	// The first removed.
	wantProblem(t, verifySlice(t, chain, cps[1:], s), 20, ProblemCheckpointChain)
	// Replaced by another validly signed checkpoint at the same place (a fork).
	fork := append([]Checkpoint(nil), cps...)
	fork[2] = s.Sign(gatehouse.CheckpointPeriodic, &cps[0], 30, chain[29].Hash, baseTime)
	fork[2].Index = 3 // the index is signed: relabelling it breaks the signature
	wantProblem(t, verifySlice(t, chain, fork, s), 30, ProblemCheckpointSignature)
	fork[2] = s.Sign(gatehouse.CheckpointPeriodic, &cps[0], 30, chain[29].Hash, baseTime) // #2 again
	wantProblem(t, verifySlice(t, chain, fork, s), 30, ProblemCheckpointChain)
	// The newest removed together with the events it covered: invisible without a
	// reference, caught with it.
	if rep := verifySlice(t, chain[:35], cps[:3], s); !rep.OK || rep.Newest.Seq != 30 {
		t.Fatalf("tail cut with its checkpoint: %+v", rep)
	}
	ref := cps[3]
	rep, err := VerifyLog(context.Background(), Events(chain[:35]), cps[:3], s.Public(), VerifyOptions{Reference: &ref})
	if err != nil {
		t.Fatal(err)
	}
	wantProblem(t, rep, 40, ProblemTruncatedTail)
	// The reference's checkpoint kept, the events cut.
	rep, _ = VerifyLog(context.Background(), Events(chain[:35]), cps, s.Public(), VerifyOptions{Reference: &ref})
	wantProblem(t, rep, 40, ProblemTruncatedTail)
	if !strings.Contains(rep.Detail, "outside reference") {
		t.Fatalf("detail %q", rep.Detail)
	}
	// An intact log holds the reference.
	rep, _ = VerifyLog(context.Background(), Events(chain), cps, s.Public(), VerifyOptions{Reference: &ref})
	if !rep.OK || rep.Reference == nil || rep.Checkpoints != 4 {
		t.Fatalf("with reference: %+v", rep)
	}
	// A stored checkpoint that differs from the reference at the same position.
	other := append([]Checkpoint(nil), cps[:3]...)
	other = append(other, s.Sign(gatehouse.CheckpointPeriodic, &cps[2], 45, chain[44].Hash, baseTime))
	rep, _ = VerifyLog(context.Background(), Events(chain), other, s.Public(), VerifyOptions{Reference: &ref})
	wantProblem(t, rep, 40, ProblemCheckpointMismatch)
	// A forged reference.
	bad := ref
	bad.Signature = bytes.Clone(bad.Signature)
	bad.Signature[1] ^= 1
	rep, _ = VerifyLog(context.Background(), Events(chain), cps, s.Public(), VerifyOptions{Reference: &bad})
	wantProblem(t, rep, 40, ProblemCheckpointSignature)
}

func TestCheckpointJSONAndEvents(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(5)
	cps := checkpointsAt(s, chain, 2, 4)
	b, err := json.Marshal(cps[1])
	if err != nil {
		t.Fatal(err)
	}
	var back Checkpoint
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := VerifyCheckpoint(s.Public(), back); err != nil || !bytes.Equal(back.Digest(), cps[1].Digest()) {
		t.Fatalf("round trip %s: %v", b, err)
	}
	old := s.signV1(gatehouse.CheckpointPeriodic, 3, chain[2].Hash, baseTime)
	e := gatehouse.AuditEvent{Seq: 9, Action: gatehouse.AuditActionCheckpoint, Details: CheckpointDetails(old)}
	got, ok, err := CheckpointFromEvent(&e)
	if err != nil || !ok || VerifyCheckpoint(s.Public(), got) != nil || got.Index != 0 {
		t.Fatalf("old checkpoint from event: %+v, %v, %v", got, ok, err)
	}
	// A file of JSON Lines events: the last checkpoint event is the reference.
	var buf bytes.Buffer
	evs := []gatehouse.AuditEvent{
		{Seq: 3, Action: gatehouse.AuditActionCheckpoint, Details: CheckpointDetails(cps[0])},
		{Seq: 4, Action: "stack:update"},
		{Seq: 5, Action: gatehouse.AuditActionCheckpoint, Details: CheckpointDetails(cps[1])},
		{Seq: 6, Action: "stack:update"},
	}
	if err := WriteJSONL(&buf, Events(evs)); err != nil {
		t.Fatal(err)
	}
	ref, err := ReadCheckpointFile(&buf)
	if err != nil || !bytes.Equal(ref.Digest(), cps[1].Digest()) || VerifyCheckpoint(s.Public(), ref) != nil {
		t.Fatalf("from JSONL: %+v, %v", ref, err)
	}
	ref, err = ReadCheckpointFile(bytes.NewReader(b))
	if err != nil || !bytes.Equal(ref.Digest(), cps[1].Digest()) {
		t.Fatalf("from JSON: %+v, %v", ref, err)
	}
	// Webhook batches: JSON arrays of events.
	arr, err := json.Marshal([]jsonEvent{toJSONEvent(&evs[0]), toJSONEvent(&evs[1])})
	if err != nil {
		t.Fatal(err)
	}
	ref, err = ReadCheckpointFile(bytes.NewReader(arr))
	if err != nil || !bytes.Equal(ref.Digest(), cps[0].Digest()) {
		t.Fatalf("from a JSON array: %+v, %v", ref, err)
	}
	if _, err := ReadCheckpointFile(strings.NewReader(`{"seq": 1, "action": "stack:update"}`)); err == nil {
		t.Fatal("no checkpoint accepted")
	}
}

// TestVerifyLegacyRelabelForgedPrune: the audit:prune event that confirms an old-format
// retention anchor counts only where a signed checkpoint covers it. Someone able to write
// the database relabels an old periodic checkpoint as retention, cuts the head up to it and
// rewrites the newest event (after the newest checkpoint, protected by the hash chain only)
// into a prune record for it: the cut is still reported.
func TestVerifyLegacyRelabelForgedPrune(t *testing.T) {
	s := newTestSigner(t)
	chain := buildChain(60)
	old := []Checkpoint{
		s.signV1(gatehouse.CheckpointPeriodic, 10, chain[9].Hash, baseTime),
		s.signV1(gatehouse.CheckpointPeriodic, 20, chain[19].Hash, baseTime),
	}
	cps := append([]Checkpoint(nil), old...)
	cps = append(cps, s.Sign(gatehouse.CheckpointPeriodic, &cps[1], 40, chain[39].Hash, baseTime))
	cps = appendCheckpoints(s, cps, chain, gatehouse.CheckpointPeriodic, 50)
	if rep := verifySlice(t, chain, cps, s); !rep.OK {
		t.Fatalf("baseline: %v", rep)
	}
	tampered := append([]Checkpoint(nil), cps...)
	tampered[1].Kind = gatehouse.CheckpointRetention
	forge := func(at int) []gatehouse.AuditEvent {
		cut := cloneChain(chain[20:])
		cut[at].Action = gatehouse.AuditActionPrune
		cut[at].Details = map[string]string{"kind": "retention", "seq": "20", "hash": hex.EncodeToString(chain[19].Hash)}
		rehash(cut, at)
		return cut
	}
	// The forged prune event is the newest event (seq 60), after the newest checkpoint (50).
	rep := verifySlice(t, forge(39), tampered, s)
	wantProblem(t, rep, 21, ProblemTruncatedHead)
	if !strings.Contains(rep.Detail, "seq 60") {
		t.Fatalf("detail %q does not name the uncovered prune event", rep.Detail)
	}
	// Rewritten under a checkpoint instead (seq 45), it breaks that checkpoint.
	wantProblem(t, verifySlice(t, forge(24), tampered, s), 50, ProblemCheckpointMismatch)
}
