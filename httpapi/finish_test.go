package httpapi

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// TestFinishUsesReplayOnlyIfJournalUnchanged: completing a journaled update replays the
// journal before the write transaction (replayOutside); finish stores that result only if
// the journal is still the same, and replays everything itself when an entry arrived in
// between, so the stored state never misses an acknowledged entry.
func TestFinishUsesReplayOnlyIfJournalUnchanged(t *testing.T) {
	ctx := context.Background()
	open := func() *sqlstore.DB {
		db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	db := open()
	s := &Server{store: db}

	create := func(seq int64, name string) gatehouse.JournalRecord {
		st := apitype.ResourceV3{URN: resource.URN("urn:pulumi:dev::proj::bench:index:Comp::" + name), Type: "bench:index:Comp"}
		e := apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindSuccess, SequenceID: seq, OperationID: seq, State: &st}
		b, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		return gatehouse.JournalRecord{Seq: seq, Data: b}
	}
	run := func(lateEntry bool) int {
		t.Helper()
		var u *gatehouse.Update
		err := db.Update(ctx, func(tx gatehouse.Tx) error {
			o := &gatehouse.Org{Name: "acme"}
			if err := tx.CreateOrg(o); err != nil {
				return err
			}
			st := &gatehouse.Stack{OrgID: o.ID, Project: "proj", Name: "dev"}
			if err := tx.CreateStack(st); err != nil {
				return err
			}
			u = &gatehouse.Update{ID: "u1", StackID: st.ID, Kind: gatehouse.KindUpdate, Program: json.RawMessage(`{}`), Author: "alice"}
			if err := tx.CreateUpdate(u); err != nil {
				return err
			}
			if _, err := tx.StartUpdate(u.ID, nil, [32]byte{1}, time.Now().Add(time.Hour), 1); err != nil {
				return err
			}
			return tx.AppendJournal(u.ID, []gatehouse.JournalRecord{create(1, "a"), create(2, "b")})
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.View(ctx, func(tx gatehouse.Tx) (err error) { u, err = tx.GetUpdate("u1"); return err }); err != nil {
			t.Fatal(err)
		}
		pre := s.replayOutside(ctx, u)
		if pre == nil || pre.count != 2 {
			t.Fatalf("replayOutside = %+v, want the two resources", pre)
		}
		if lateEntry { // a retried or late batch acknowledged after the replay
			if err := db.Update(ctx, func(tx gatehouse.Tx) error {
				return tx.AppendJournal(u.ID, []gatehouse.JournalRecord{create(3, "c")})
			}); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Update(ctx, func(tx gatehouse.Tx) error {
			_, err := finish(tx, u.ID, gatehouse.StatusSucceeded, pre)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		var doc apitype.UntypedDeployment
		if err := db.View(ctx, func(tx gatehouse.Tx) error {
			data, _, err := tx.GetCheckpoint(u.StackID, -1)
			if err != nil {
				return err
			}
			return json.Unmarshal(data, &doc)
		}); err != nil {
			t.Fatal(err)
		}
		var dep apitype.DeploymentV3
		if err := json.Unmarshal(doc.Deployment, &dep); err != nil {
			t.Fatal(err)
		}
		return len(dep.Resources)
	}
	if n := run(false); n != 2 {
		t.Fatalf("unchanged journal: stored state has %d resources, want 2", n)
	}
	db = open() // a fresh store for the second case
	s.store = db
	if n := run(true); n != 3 {
		t.Fatalf("an entry arrived after the early replay: stored state has %d resources, want 3", n)
	}
}
