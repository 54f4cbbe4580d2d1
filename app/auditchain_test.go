package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// chainSetup appends events with three periodic checkpoints: at seq 5 (its event 6), 11
// (event 12) and 17 (event 18), then 3 more events (19..21).
func chainSetup(t *testing.T) (*sqlstore.DB, *audit.Signer) {
	t.Helper()
	ctx := context.Background()
	db, dir := openStore(t)
	s := testSigner(t, dir)
	for _, want := range []int64{5, 11, 17} {
		appendEvents(t, db, 5, time.Time{})
		cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
		mustT(t, err)
		if cp == nil || cp.Seq != want {
			t.Fatalf("checkpoint = %+v, want seq %d", cp, want)
		}
	}
	appendEvents(t, db, 3, time.Time{})
	if r := verify(t, db, s.Public()); !r.OK || r.Checked != 21 || r.Checkpoints != 3 {
		t.Fatalf("untouched log: %s", r)
	}
	return db, s
}

// (a) Deleting the oldest events up to a periodic checkpoint is head truncation.
func TestAuditHeadTruncationAtPeriodicCheckpoint(t *testing.T) {
	db, s := chainSetup(t)
	execSQL(t, db, `DELETE FROM audit_events WHERE seq <= 11`)
	r := verify(t, db, s.Public())
	if r.OK || r.Seq != 12 {
		t.Fatalf("head truncated up to a periodic checkpoint: %s", r)
	}
	t.Log(r)
}

// (d) A periodic checkpoint re-labelled as a retention one (to pass a truncated head off
// as pruning) no longer verifies: the kind is signed.
func TestAuditCheckpointKindRelabelled(t *testing.T) {
	db, s := chainSetup(t)
	execSQL(t, db, `UPDATE audit_checkpoints SET kind = 'retention' WHERE seq = 11`)
	execSQL(t, db, `DELETE FROM audit_events WHERE seq <= 11`)
	r := verify(t, db, s.Public())
	if r.OK || r.Problem != audit.ProblemCheckpointSignature || r.Seq != 11 {
		t.Fatalf("relabelled checkpoint: %s", r)
	}
	t.Log(r)
}

// (e) Deleting a checkpoint from the middle breaks the checkpoint chain.
func TestAuditCheckpointChainBroken(t *testing.T) {
	db, s := chainSetup(t)
	execSQL(t, db, `DELETE FROM audit_checkpoints WHERE seq = 11`)
	r := verify(t, db, s.Public())
	if r.OK || r.Seq != 17 {
		t.Fatalf("middle checkpoint deleted: %s", r)
	}
	t.Log(r)
}

// (b) The tail after checkpoint 11's event cut, together with the checkpoint at 17 that
// covered it: the database alone still verifies, an outside reference does not, and the
// newest checkpoint's age shows.
func TestAuditTailTruncationWithReference(t *testing.T) {
	ctx := context.Background()
	db, s := chainSetup(t)
	dir := t.TempDir()
	// Outside copies made before the tampering: the newest checkpoint's JSON (what
	// `gatehouse audit checkpoint` prints) and a file sink's JSON Lines.
	last, err := app.LastAuditCheckpoint(ctx, db)
	mustT(t, err)
	if last.Seq != 17 || last.Index != 3 || last.Kind != gatehouse.CheckpointPeriodic {
		t.Fatalf("last checkpoint = %+v", last)
	}
	cpFile := filepath.Join(dir, "checkpoint.json")
	b, err := json.Marshal(last)
	mustT(t, err)
	mustT(t, os.WriteFile(cpFile, b, 0o600))
	sinkFile := filepath.Join(dir, "audit.jsonl")
	sink, err := audit.OpenSink(ctx, "file://"+sinkFile)
	mustT(t, err)
	var all []gatehouse.AuditEvent
	for e, err := range app.AuditEvents(ctx, db) {
		mustT(t, err)
		all = append(all, e)
	}
	mustT(t, sink.Write(ctx, all))
	mustT(t, sink.Close())

	refs := map[string]string{"checkpoint JSON": cpFile, "sink JSONL": sinkFile}
	for name, path := range refs {
		ref := readRef(t, path)
		if ref.Seq != 17 || ref.Index != 3 {
			t.Fatalf("%s: reference %+v", name, ref)
		}
		r, _, err := app.VerifyAuditWith(ctx, db, s.Public(), audit.VerifyOptions{Reference: &ref})
		mustT(t, err)
		if !r.OK || r.Reference == nil || !strings.Contains(r.String(), "outside reference") {
			t.Fatalf("%s, untouched log: %s", name, r)
		}
	}

	execSQL(t, db, `DELETE FROM audit_events WHERE seq > 15`)
	execSQL(t, db, `DELETE FROM audit_checkpoints WHERE seq = 17`)
	execSQL(t, db, `UPDATE audit_head SET seq = 15, hash = (SELECT hash FROM audit_events WHERE seq = 15) WHERE id = 1`)
	r := verify(t, db, s.Public())
	if !r.OK || r.LastSeq != 15 {
		t.Fatalf("without a reference the cut is invisible: %s", r)
	}
	// The newest checkpoint left is the one at 11; its age shows, with a warning once it is
	// older than twice the period while events after it are unvouched.
	if r.Newest == nil || r.Newest.Seq != 11 || r.Unvouched != 4 {
		t.Fatalf("newest checkpoint: %+v, unvouched %d", r.Newest, r.Unvouched)
	}
	if age, w := r.StaleCheckpoint(r.Newest.Time.Add(time.Minute), 5*time.Minute); age != time.Minute || w != "" {
		t.Fatalf("fresh: %s, %q", age, w)
	}
	if age, w := r.StaleCheckpoint(r.Newest.Time.Add(11*time.Minute), 5*time.Minute); age != 11*time.Minute || !strings.Contains(w, "11m0s old") {
		t.Fatalf("stale: %s, %q", age, w)
	}
	for name, path := range refs {
		ref := readRef(t, path)
		r, _, err := app.VerifyAuditWith(ctx, db, s.Public(), audit.VerifyOptions{Reference: &ref})
		mustT(t, err)
		if r.OK || r.Problem != audit.ProblemTruncatedTail || r.Seq != 17 || !strings.Contains(r.Detail, "outside reference") {
			t.Fatalf("%s: %s", name, r)
		}
		t.Logf("%s: %s", name, r)
	}
	// The checkpoint row kept but the events cut: the reference still names the cut.
	db2, s2 := chainSetup(t)
	last2, err := app.LastAuditCheckpoint(ctx, db2)
	mustT(t, err)
	execSQL(t, db2, `DELETE FROM audit_events WHERE seq > 15`)
	r, _, err = app.VerifyAuditWith(ctx, db2, s2.Public(), audit.VerifyOptions{Reference: last2})
	mustT(t, err)
	if r.OK || r.Problem != audit.ProblemTruncatedTail || r.Seq != 17 {
		t.Fatalf("events cut, checkpoint kept: %s", r)
	}
	// A reference signed by another key is refused.
	other := testSigner(t, t.TempDir())
	forged := other.Sign(gatehouse.CheckpointPeriodic, nil, 99, last2.Hash, time.Now())
	r, _, err = app.VerifyAuditWith(ctx, db2, s2.Public(), audit.VerifyOptions{Reference: &forged})
	mustT(t, err)
	if r.OK || r.Problem != audit.ProblemCheckpointSignature {
		t.Fatalf("forged reference: %s", r)
	}
}

func readRef(t *testing.T, path string) audit.Checkpoint {
	t.Helper()
	f, err := os.Open(path)
	mustT(t, err)
	defer f.Close()
	ref, err := audit.ReadCheckpointFile(f)
	mustT(t, err)
	return ref
}

// (c) Retention prunes through a seq that also has a periodic checkpoint; what remains
// verifies from the retention checkpoint, which is chained and signed as retention.
func TestAuditRetentionPruneStartsFromRetentionCheckpoint(t *testing.T) {
	ctx := context.Background()
	db, s := chainSetup(t)
	mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error { return tx.SetExportCursor("siem", 11) }))
	sink, err := audit.OpenSink(ctx, "file://"+filepath.Join(t.TempDir(), "archive.jsonl"))
	mustT(t, err)
	res, err := app.PruneAudit(ctx, db, s, sink, time.Now().Add(time.Hour), "test")
	mustT(t, err)
	mustT(t, sink.Close())
	if res.Deleted != 11 || res.Checkpoint == nil || res.Checkpoint.Kind != gatehouse.CheckpointRetention ||
		res.Checkpoint.Index != 4 || res.Checkpoint.PrevSeq != 17 {
		t.Fatalf("prune = %+v, checkpoint %+v", res, res.Checkpoint)
	}
	r := verify(t, db, s.Public())
	if !r.OK || r.AnchorSeq != 11 || r.FirstSeq != 12 || r.Chained != 4 {
		t.Fatalf("after prune: %s", r)
	}
	t.Log(r)
	// The next periodic checkpoint chains after the retention one.
	appendEvents(t, db, 1, time.Time{})
	cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp == nil || cp.Index != 5 || cp.PrevSeq != 11 || !bytes.Equal(cp.Prev, res.Checkpoint.Digest()) {
		t.Fatalf("next checkpoint = %+v", cp)
	}
	if r := verify(t, db, s.Public()); !r.OK || r.Chained != 5 {
		t.Fatalf("after the next checkpoint: %s", r)
	}
}

// An idle log is re-signed once its newest checkpoint is older than IdleCheckpointEvery,
// so that the newest checkpoint's age means something.
func TestAuditIdleLogResigned(t *testing.T) {
	ctx := context.Background()
	db, s := chainSetup(t) // newest checkpoint at 17, its event 18, then 19..21
	cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp == nil || cp.Seq != 21 {
		t.Fatalf("checkpoint = %+v", cp)
	}
	if cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test"); err != nil || cp != nil {
		t.Fatalf("idle log signed again at once: %+v, %v", cp, err)
	}
	execSQL(t, db, `UPDATE audit_checkpoints SET time = time - ? WHERE seq = 21`, int64(2*audit.IdleCheckpointEvery))
	cp, err = app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp == nil || cp.Seq != 22 || cp.Index != 5 {
		t.Fatalf("idle log not re-signed: %+v", cp)
	}
}
