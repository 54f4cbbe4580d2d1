package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

func runAuditCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

// TestAuditVerifyCheckpointFile: `audit checkpoint` prints the newest checkpoint, and
// `audit verify --checkpoint` with it names a tail cut together with its checkpoint.
func TestAuditVerifyCheckpointFile(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := app.LoadAuditSigner("", dir)
	if err != nil {
		t.Fatal(err)
	}
	add := func(n int) {
		for i := 0; i < n; i++ {
			e := gatehouse.AuditEvent{ActorKind: "user", ActorName: "alice", Action: "stack:update", Target: "acme/p/s", Outcome: gatehouse.OutcomeSuccess}
			if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.AppendAudit(&e) }); err != nil {
				t.Fatal(err)
			}
		}
	}
	for range 2 {
		add(4)
		if _, err := app.Checkpoint(ctx, db, signer, gatehouse.CheckpointPeriodic, "test"); err != nil {
			t.Fatal(err)
		}
	}
	add(2) // 1..4, cp@4 (event 5), 6..9, cp@9 (event 10), 11..12
	out, err := runAuditCLI(t, "audit", "checkpoint", "--data-dir", dir)
	if err != nil || !strings.Contains(out, `"seq":9`) || !strings.Contains(out, `"index":2`) {
		t.Fatalf("audit checkpoint: %v\n%s", err, out)
	}
	ref := filepath.Join(t.TempDir(), "cp.json")
	if err := os.WriteFile(ref, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = runAuditCLI(t, "audit", "verify", "--data-dir", dir, "--checkpoint", ref)
	if err != nil || !strings.Contains(out, "OK: 12 events verified") || !strings.Contains(out, "outside reference") ||
		!strings.Contains(out, "newest checkpoint: periodic (#2) at seq 9") {
		t.Fatalf("verify: %v\n%s", err, out)
	}
	t.Log(out)
	// Cut everything after the first checkpoint's event, and the second checkpoint.
	for _, q := range []string{`DELETE FROM audit_events WHERE seq > 7`, `DELETE FROM audit_checkpoints WHERE seq = 9`,
		`UPDATE audit_head SET seq = 7, hash = (SELECT hash FROM audit_events WHERE seq = 7) WHERE id = 1`} {
		if _, err := db.Writer().Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	// (A checkpoint period of 1ms makes the newest checkpoint, at seq 4, stale at once.)
	time.Sleep(5 * time.Millisecond)
	out, err = runAuditCLI(t, "audit", "verify", "--data-dir", dir, "--checkpoint-every", "1ms")
	if err != nil || !strings.Contains(out, "OK: 7 events") || !strings.Contains(out, "newest checkpoint: periodic (#1) at seq 4") ||
		!strings.Contains(out, "WARNING: the newest checkpoint is") {
		t.Fatalf("verify without the reference: %v\n%s", err, out)
	}
	t.Log(out)
	out, err = runAuditCLI(t, "audit", "verify", "--data-dir", dir, "--checkpoint", ref)
	if err != exitError(1) || !strings.Contains(out, "FAILED at seq 9: log truncated at the tail") {
		t.Fatalf("verify with the reference: %v\n%s", err, out)
	}
	t.Log(out)
}
