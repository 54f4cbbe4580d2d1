package app_test

import (
	"context"
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
	for i, want := range []int64{5, 11, 17} {
		appendEvents(t, db, 5, time.Time{})
		if i > 0 {
			want = want - 0
		}
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

// (b, without the outside reference) The tail after checkpoint 11 and the checkpoint at 17
// deleted: only an outside reference can tell.
func TestAuditTailTruncationPreFix(t *testing.T) {
	db, s := chainSetup(t)
	execSQL(t, db, `DELETE FROM audit_events WHERE seq > 12`)
	execSQL(t, db, `DELETE FROM audit_checkpoints WHERE seq = 17`)
	execSQL(t, db, `UPDATE audit_head SET seq = 12, hash = (SELECT hash FROM audit_events WHERE seq = 12) WHERE id = 1`)
	r := verify(t, db, s.Public())
	t.Logf("without a reference: %s", r)
}
