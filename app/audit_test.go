package app_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

func openStore(t *testing.T) (*sqlstore.DB, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db, dir
}

func mustT(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// appendEvents appends n events (in one transaction each, like requests) at time at (zero:
// the store's clock) and returns their seqs.
func appendEvents(t *testing.T, db gatehouse.Store, n int, at time.Time) []gatehouse.AuditEvent {
	t.Helper()
	out := make([]gatehouse.AuditEvent, 0, n)
	for i := 0; i < n; i++ {
		e := gatehouse.AuditEvent{
			Time: at, OrgID: 1, OrgName: "acme", ActorKind: "user", ActorName: fmt.Sprintf("user%d", i%3), UserID: int64(i%3 + 1),
			SourceIP: "10.0.0.1", UserAgent: "test", Action: "stack:update", Target: fmt.Sprintf("acme/proj/s%d", i),
			Outcome: gatehouse.OutcomeSuccess, RequestID: fmt.Sprintf("req%d", i), Details: map[string]string{"i": fmt.Sprint(i)},
		}
		mustT(t, db.Update(context.Background(), func(tx gatehouse.Tx) error { return tx.AppendAudit(&e) }))
		out = append(out, e)
	}
	return out
}

func testSigner(t *testing.T, dir string) *audit.Signer {
	t.Helper()
	s, err := app.LoadAuditSigner("", dir)
	mustT(t, err)
	return s
}

func verify(t *testing.T, db gatehouse.Store, pub ed25519.PublicKey) audit.Report {
	t.Helper()
	r, _, err := app.VerifyAudit(context.Background(), db, pub)
	mustT(t, err)
	return r
}

func execSQL(t *testing.T, db *sqlstore.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Writer().Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// TestAuditVerifyCatchesTampering edits the SQLite rows behind the store's back: every
// change, removal and reordering is reported at the first bad event.
func TestAuditVerifyCatchesTampering(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*sqlstore.DB, *audit.Signer, []gatehouse.AuditEvent) {
		db, dir := openStore(t)
		s := testSigner(t, dir)
		evs := appendEvents(t, db, 12, time.Time{})
		cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
		mustT(t, err)
		if cp == nil || cp.Seq != 12 {
			t.Fatalf("checkpoint = %+v", cp)
		}
		evs = append(evs, appendEvents(t, db, 3, time.Time{})...) // seq 13 is the checkpoint's event: 14..16
		r := verify(t, db, s.Public())
		if !r.OK || r.Checked != 16 || r.Checkpoints != 1 || r.Unvouched != 4 {
			t.Fatalf("untouched log: %s", r)
		}
		return db, s, evs
	}
	wantBad := func(t *testing.T, r audit.Report, seq int64, id, problem string) {
		t.Helper()
		if r.OK || r.Seq != seq || r.Problem != problem || (id != "" && r.ID != id) {
			t.Fatalf("want %q at seq %d (%s), got %s", problem, seq, id, r)
		}
	}

	t.Run("update", func(t *testing.T) {
		db, s, evs := setup(t)
		execSQL(t, db, `UPDATE audit_events SET target = 'acme/proj/other' WHERE seq = 7`)
		wantBad(t, verify(t, db, s.Public()), 7, evs[6].ID, audit.ProblemHashMismatch)
	})
	t.Run("update details", func(t *testing.T) {
		db, s, evs := setup(t)
		execSQL(t, db, `UPDATE audit_events SET details = '{"i":"99"}' WHERE seq = 3`)
		wantBad(t, verify(t, db, s.Public()), 3, evs[2].ID, audit.ProblemHashMismatch)
	})
	t.Run("update outcome after the checkpoint", func(t *testing.T) {
		db, s, _ := setup(t)
		execSQL(t, db, `UPDATE audit_events SET outcome = 'denied', reason = 'x' WHERE seq = 15`)
		wantBad(t, verify(t, db, s.Public()), 15, "", audit.ProblemHashMismatch)
	})
	t.Run("delete", func(t *testing.T) {
		db, s, evs := setup(t)
		execSQL(t, db, `DELETE FROM audit_events WHERE seq = 5`)
		r := verify(t, db, s.Public())
		wantBad(t, r, 6, evs[5].ID, audit.ProblemChainBroken)
		if !strings.Contains(r.Detail, "events 5..5 are missing") {
			t.Fatalf("detail = %q", r.Detail)
		}
	})
	t.Run("delete the first", func(t *testing.T) {
		db, s, evs := setup(t)
		execSQL(t, db, `DELETE FROM audit_events WHERE seq = 1`)
		wantBad(t, verify(t, db, s.Public()), 2, evs[1].ID, audit.ProblemTruncatedHead)
	})
	t.Run("swap", func(t *testing.T) {
		db, s, evs := setup(t)
		execSQL(t, db, `UPDATE audit_events SET seq = -1 WHERE seq = 3`)
		execSQL(t, db, `UPDATE audit_events SET seq = 3 WHERE seq = 4`)
		execSQL(t, db, `UPDATE audit_events SET seq = 4 WHERE seq = -1`)
		// Position 3 now holds the event that followed 3: its link names the wrong predecessor.
		wantBad(t, verify(t, db, s.Public()), 3, evs[3].ID, audit.ProblemChainBroken)
	})
	t.Run("cut the tail", func(t *testing.T) {
		db, s, _ := setup(t)
		execSQL(t, db, `DELETE FROM audit_events WHERE seq >= 10`)
		// The signed checkpoint at 12 says the log went further.
		wantBad(t, verify(t, db, s.Public()), 12, "", audit.ProblemTruncatedTail)
	})
	t.Run("rewrite and rehash", func(t *testing.T) {
		// Someone with the database but not the key edits an event and recomputes the chain
		// (and the head): only the signed checkpoint can tell.
		db, s, evs := setup(t)
		var all []gatehouse.AuditEvent
		for e, err := range app.AuditEvents(ctx, db) {
			mustT(t, err)
			all = append(all, e)
		}
		all[4].Target = "acme/proj/forged"
		prev := all[3].Hash
		for i := 4; i < len(all); i++ {
			all[i].PrevHash = prev
			all[i].Hash = audit.Hash(prev, &all[i])
			prev = all[i].Hash
			execSQL(t, db, `UPDATE audit_events SET target = ?, prev_hash = ?, hash = ? WHERE seq = ?`, all[i].Target, all[i].PrevHash, all[i].Hash, all[i].Seq)
		}
		execSQL(t, db, `UPDATE audit_head SET hash = ? WHERE id = 1`, prev)
		if r, _, err := app.VerifyAudit(ctx, db, nil); err == nil || r.OK {
			t.Fatalf("verification without the key must refuse, got %s, %v", r, err)
		}
		wantBad(t, verify(t, db, s.Public()), 12, evs[11].ID, audit.ProblemCheckpointMismatch)
	})
	t.Run("forged checkpoint", func(t *testing.T) {
		db, s, _ := setup(t)
		execSQL(t, db, `UPDATE audit_checkpoints SET signature = ? WHERE seq = 12`, make([]byte, ed25519.SignatureSize))
		wantBad(t, verify(t, db, s.Public()), 12, "", audit.ProblemCheckpointSignature)
		// Another key does not verify the genuine checkpoints either.
		other := testSigner(t, t.TempDir())
		db2, s2, _ := setup(t)
		_ = s2
		wantBad(t, verify(t, db2, other.Public()), 12, "", audit.ProblemCheckpointSignature)
	})
}

// TestAuditCheckpointSkipsIdle: a checkpoint is only made when something happened since
// the last one (its own event does not count).
func TestAuditCheckpointSkipsIdle(t *testing.T) {
	ctx := context.Background()
	db, dir := openStore(t)
	s := testSigner(t, dir)
	cp, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp != nil {
		t.Fatal("checkpoint of an empty log")
	}
	appendEvents(t, db, 2, time.Time{})
	cp, err = app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp == nil || cp.Seq != 2 {
		t.Fatalf("checkpoint = %+v", cp)
	}
	for range 3 {
		cp, err = app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
		mustT(t, err)
		if cp != nil {
			t.Fatalf("idle log checkpointed again at %d", cp.Seq)
		}
	}
	var evs []gatehouse.AuditEvent
	mustT(t, db.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{Action: gatehouse.AuditActionCheckpoint, Limit: 10})
		return err
	}))
	if len(evs) != 1 || evs[0].Seq != 3 || evs[0].Details["seq"] != "2" || evs[0].Details["keyId"] != s.KeyID() || evs[0].Details["signature"] == "" {
		t.Fatalf("checkpoint events = %+v", evs)
	}
	appendEvents(t, db, 1, time.Time{})
	cp, err = app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test")
	mustT(t, err)
	if cp == nil || cp.Seq != 4 {
		t.Fatalf("checkpoint after new event = %+v", cp)
	}
	if r := verify(t, db, s.Public()); !r.OK || r.Checkpoints != 2 {
		t.Fatalf("verify: %s", r)
	}
}

func readJSONLFile(t *testing.T, path string) []gatehouse.AuditEvent {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	mustT(t, err)
	defer f.Close()
	var out []gatehouse.AuditEvent
	for e, err := range audit.ReadJSONL(f) {
		mustT(t, err)
		out = append(out, e)
	}
	return out
}

// TestAuditPruneThenVerify: retention archives the old events, prunes them, and what
// remains (and the archive) still verifies; a sink's cursor limits what may go.
func TestAuditPruneThenVerify(t *testing.T) {
	ctx := context.Background()
	db, dir := openStore(t)
	s := testSigner(t, dir)
	old := time.Now().Add(-400 * 24 * time.Hour)
	appendEvents(t, db, 30, old)
	_, err := app.Checkpoint(ctx, db, s, gatehouse.CheckpointPeriodic, "test") // seq 31 records it
	mustT(t, err)
	appendEvents(t, db, 10, time.Time{})

	// The store refuses to prune without an anchor.
	err = db.Update(ctx, func(tx gatehouse.Tx) error { _, err := tx.PruneAudit(10); return err })
	if !gatehouse.IsCode(err, gatehouse.EINVALID) {
		t.Fatalf("prune without a retention checkpoint: %v", err)
	}

	// An export sink that acknowledged only up to seq 20 holds the rest back.
	mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error { return tx.SetExportCursor("siem", 20) }))
	archive := filepath.Join(t.TempDir(), "archive.jsonl")
	sink, err := audit.OpenSink(ctx, "file://"+archive)
	mustT(t, err)
	cutoff := time.Now().Add(-365 * 24 * time.Hour)
	res, err := app.PruneAudit(ctx, db, s, sink, cutoff, "test")
	mustT(t, err)
	if res.Archived != 20 || res.FirstSeq != 1 || res.LastSeq != 20 || res.Deleted != 20 || res.LimitingSink != "siem" {
		t.Fatalf("first prune = %+v", res)
	}
	r := verify(t, db, s.Public())
	if !r.OK || r.AnchorSeq != 20 || r.FirstSeq != 21 {
		t.Fatalf("after prune: %s", r)
	}

	// The sink catches up; the rest of the old events go. The checkpoint at 30 and its event
	// at 31 (recent) stay.
	mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error { return tx.SetExportCursor("siem", 1000) }))
	res, err = app.PruneAudit(ctx, db, s, sink, cutoff, "test")
	mustT(t, err)
	mustT(t, sink.Close())
	if res.Archived != 10 || res.FirstSeq != 21 || res.LastSeq != 30 || res.Deleted != 10 {
		t.Fatalf("second prune = %+v", res)
	}
	r = verify(t, db, s.Public())
	if !r.OK || r.AnchorSeq != 30 || r.FirstSeq != 31 || r.Checkpoints < 1 {
		t.Fatalf("after second prune: %s", r)
	}
	// Nothing older is left: a third prune does nothing.
	sink2, err := audit.OpenSink(ctx, "file://"+archive)
	mustT(t, err)
	res, err = app.PruneAudit(ctx, db, s, sink2, cutoff, "test")
	mustT(t, err)
	mustT(t, sink2.Close())
	if res.Archived != 0 || res.Deleted != 0 {
		t.Fatalf("third prune = %+v", res)
	}

	// The archive holds 1..30 and verifies from the genesis against the stored checkpoints.
	cps, err := app.AuditCheckpoints(ctx, db)
	mustT(t, err)
	archived := readJSONLFile(t, archive)
	if len(archived) != 30 {
		t.Fatalf("archive has %d events", len(archived))
	}
	ar, err := audit.VerifyFrom(ctx, 0, audit.Genesis(), audit.Events(archived), cpsUpTo(cps, 30), s.Public())
	mustT(t, err)
	if !ar.OK || ar.Checked != 30 {
		t.Fatalf("archive: %s", ar)
	}
	// The prunes are in the log.
	var prunes []gatehouse.AuditEvent
	mustT(t, db.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		prunes, err = tx.ListAudit(gatehouse.AuditFilter{Action: gatehouse.AuditActionPrune, Ascending: true})
		return err
	}))
	if len(prunes) != 2 || prunes[1].Details["seq"] != "30" || prunes[1].Details["archived"] != "10" {
		t.Fatalf("prune events = %+v", prunes)
	}
	// Tampering with what remains is still caught after pruning.
	execSQL(t, db, `UPDATE audit_events SET action = 'stack:read' WHERE seq = 35`)
	if r := verify(t, db, s.Public()); r.OK || r.Seq != 35 {
		t.Fatalf("tamper after prune: %s", r)
	}
	// Removing the anchor (the newest checkpoint, the retention one) makes the pruned
	// prefix look removed: the periodic checkpoint at the same seq cannot stand in for it.
	execSQL(t, db, `UPDATE audit_events SET action = 'stack:update' WHERE seq = 35`)
	if r := verify(t, db, s.Public()); !r.OK {
		t.Fatalf("restored: %s", r)
	}
	execSQL(t, db, `DELETE FROM audit_checkpoints WHERE seq = 30 AND kind = 'retention'`)
	if r := verify(t, db, s.Public()); r.OK || r.Problem != audit.ProblemTruncatedHead || r.Seq != 31 {
		t.Fatalf("anchor removed: %s", r)
	}
	// Removing the periodic one too (the first of the checkpoint chain) breaks that chain.
	execSQL(t, db, `DELETE FROM audit_checkpoints WHERE seq = 30`)
	if r := verify(t, db, s.Public()); r.OK || r.Problem != audit.ProblemCheckpointChain {
		t.Fatalf("anchor and periodic checkpoint removed: %s", r)
	}
}

func cpsUpTo(cps []audit.Checkpoint, seq int64) []audit.Checkpoint {
	var out []audit.Checkpoint
	for _, c := range cps {
		if c.Seq <= seq {
			out = append(out, c)
		}
	}
	return out
}

// TestExportLeaseStore: the lease and the fenced cursor at the store level.
func TestExportLeaseStore(t *testing.T) {
	ctx := context.Background()
	db, _ := openStore(t)
	now := time.Now()
	var clk atomic.Int64
	clk.Store(now.UnixNano())
	db.SetClock(func() time.Time { return time.Unix(0, clk.Load()) })
	acquire := func(owner string) bool {
		var ok bool
		mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error {
			var err error
			ok, err = tx.AcquireExportLease("s", owner, tx.Now().Add(30*time.Second))
			return err
		}))
		return ok
	}
	advance := func(owner string, seq int64) bool {
		var ok bool
		mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error {
			var err error
			ok, err = tx.AdvanceExportCursor("s", owner, seq)
			return err
		}))
		return ok
	}
	if !acquire("a") || acquire("b") || !acquire("a") {
		t.Fatal("a takes and renews; b is refused")
	}
	if !advance("a", 5) || advance("b", 9) {
		t.Fatal("only the holder moves the cursor")
	}
	clk.Add(int64(31 * time.Second))
	if advance("a", 6) {
		t.Fatal("an expired lease moves the cursor")
	}
	if !acquire("b") || acquire("a") {
		t.Fatal("b takes over the expired lease")
	}
	mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error { return tx.ReleaseExportLease("s", "a") })) // not a's: nothing
	if acquire("a") {
		t.Fatal("a's release of b's lease released it")
	}
	mustT(t, db.Update(ctx, func(tx gatehouse.Tx) error { return tx.ReleaseExportLease("s", "b") }))
	if !acquire("a") {
		t.Fatal("a released lease is free")
	}
	var cs []gatehouse.ExportCursor
	mustT(t, db.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		cs, err = tx.ListExportCursors()
		return err
	}))
	if len(cs) != 1 || cs[0].Seq != 5 || cs[0].LeaseOwner != "a" {
		t.Fatalf("cursors = %+v", cs)
	}
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name, sink string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	mustT(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "sink", sink) {
				return m.GetGauge().GetValue()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkInOrder checks that seqs are non-decreasing and cover 1..want (at least once each).
func checkInOrder(t *testing.T, seqs []int64, want int64) {
	t.Helper()
	var prev int64
	for _, s := range seqs {
		if s < prev {
			t.Fatalf("seq %d delivered after %d", s, prev)
		}
		if s > prev+1 {
			t.Fatalf("seqs %d..%d missing", prev+1, s-1)
		}
		prev = s
	}
	if prev < want {
		t.Fatalf("delivered up to %d, want %d", prev, want)
	}
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fastAudit(sinkURL, owner string) app.AuditConfig {
	return app.AuditConfig{
		Sinks: []string{sinkURL}, CheckpointEvery: time.Hour, LeaseTTL: 300 * time.Millisecond, Owner: owner,
		Export: audit.ExporterOptions{BatchSize: 16, PollInterval: 10 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 50 * time.Millisecond},
	}
}

// TestExportLeaseTwoProcesses: two servers on one database and one file sink. Exactly one
// exports at a time; when it stops the other takes over, and the file gets every event, in
// order.
func TestExportLeaseTwoProcesses(t *testing.T) {
	ctx := context.Background()
	db, dir := openStore(t)
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	url := "file://" + path + "?name=siem"
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	stopA, err := app.StartAudit(ctx, db, fastAudit(url, "a"), dir, quietLog(), regA)
	mustT(t, err)
	stopB, err := app.StartAudit(ctx, db, fastAudit(url, "b"), dir, quietLog(), regB)
	mustT(t, err)
	stops := map[string]func(){"a": stopA, "b": stopB}
	regs := map[string]*prometheus.Registry{"a": regA, "b": regB}
	defer stopA()
	defer stopB()

	// A writer appends while the exporters run; one checks that never both hold the lease.
	var wg sync.WaitGroup
	done := make(chan struct{})
	var both atomic.Bool
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case <-time.After(3 * time.Millisecond):
			}
			if gaugeValue(t, regA, "gatehouse_audit_export_lease_held", "siem")+gaugeValue(t, regB, "gatehouse_audit_export_lease_held", "siem") > 1 {
				both.Store(true)
			}
		}
	}()
	head := func() int64 {
		var seq int64
		mustT(t, db.View(ctx, func(tx gatehouse.Tx) error { var err error; seq, _, err = tx.AuditHead(); return err }))
		return seq
	}
	owner := func() string {
		var cs []gatehouse.ExportCursor
		mustT(t, db.View(ctx, func(tx gatehouse.Tx) error { var err error; cs, err = tx.ListExportCursors(); return err }))
		if len(cs) != 1 {
			return ""
		}
		return cs[0].LeaseOwner
	}
	delivered := func(want int64) func() bool {
		return func() bool {
			evs := readJSONLFile(t, path)
			return len(evs) > 0 && evs[len(evs)-1].Seq >= want
		}
	}

	appendEvents(t, db, 60, time.Time{})
	waitUntil(t, 10*time.Second, "the first 60 events in the file", delivered(60))
	first := owner()
	if first != "a" && first != "b" {
		t.Fatalf("lease owner = %q", first)
	}
	second := map[string]string{"a": "b", "b": "a"}[first]
	if gaugeValue(t, regs[first], "gatehouse_audit_export_lease_held", "siem") != 1 || gaugeValue(t, regs[second], "gatehouse_audit_export_lease_held", "siem") != 0 {
		t.Fatal("the lease gauges disagree with the store")
	}

	// The holder shuts down (releases the lease, signs a last checkpoint); the other takes over.
	stops[first]()
	appendEvents(t, db, 60, time.Time{})
	want := head()
	waitUntil(t, 10*time.Second, "every event in the file after the handover", delivered(want))
	if o := owner(); o != second {
		t.Fatalf("after the handover the lease owner is %q, want %q", o, second)
	}
	close(done)
	wg.Wait()
	if both.Load() {
		t.Fatal("both processes held the lease at once")
	}
	stops[second]()

	evs := readJSONLFile(t, path)
	seqs := make([]int64, len(evs))
	var dedup []gatehouse.AuditEvent
	for i, e := range evs {
		seqs[i] = e.Seq
		if i == 0 || e.Seq != evs[i-1].Seq {
			dedup = append(dedup, e)
		}
	}
	checkInOrder(t, seqs, want)
	// What the SIEM got is the chain itself: it verifies, checkpoint included.
	s := testSigner(t, dir)
	cps, err := app.AuditCheckpoints(ctx, db)
	mustT(t, err)
	r, err := audit.Verify(ctx, audit.Events(dedup), cpsUpTo(cps, dedup[len(dedup)-1].Seq), s.Public())
	mustT(t, err)
	if !r.OK || r.Checkpoints < 1 {
		t.Fatalf("exported file: %s", r)
	}
}

// TestExportSinkOutage: a webhook that is down for a while, then back, gets every event
// at least once and in order, and the lag metric returns to 0.
func TestExportSinkOutage(t *testing.T) {
	ctx := context.Background()
	db, dir := openStore(t)
	var mu sync.Mutex
	var got []int64
	var down atomic.Bool
	down.Store(true)
	var refused atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			refused.Add(1)
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		var batch []struct {
			Seq int64 `json:"seq"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &batch); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		mu.Lock()
		for _, e := range batch {
			got = append(got, e.Seq)
		}
		mu.Unlock()
	}))
	defer srv.Close()
	reg := prometheus.NewRegistry()
	stop, err := app.StartAudit(ctx, db, fastAudit(srv.URL+"/ingest?name=hook", "a"), dir, quietLog(), reg)
	mustT(t, err)
	defer stop()
	appendEvents(t, db, 50, time.Time{})
	waitUntil(t, 10*time.Second, "the webhook refusing a few batches", func() bool { return refused.Load() >= 3 })
	if gaugeValue(t, reg, "gatehouse_audit_export_lag_events", "hook") == 0 {
		t.Fatal("lag is 0 while the sink is down")
	}
	down.Store(false)
	appendEvents(t, db, 20, time.Time{})
	waitUntil(t, 10*time.Second, "all 70 events at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0 && got[len(got)-1] >= 70
	})
	waitUntil(t, 5*time.Second, "lag 0", func() bool { return gaugeValue(t, reg, "gatehouse_audit_export_lag_events", "hook") == 0 })
	stop()
	mu.Lock()
	defer mu.Unlock()
	checkInOrder(t, got, 70)
}
