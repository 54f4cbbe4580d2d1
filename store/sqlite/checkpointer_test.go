package sqlite_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// TestWALCheckpointedInBackground: the writer only checkpoints the WAL itself at 40 MB, so
// without the background checkpointer 30 MB of writes would stay in the WAL and the database
// file would not grow. With it, the pages reach the database file within moments.
func TestWALCheckpointedInBackground(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	stackID, err := createStack(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	doc := bytes.Repeat([]byte("x"), 500<<10)
	const writes = 60 // 30 MB
	for i := 0; i < writes; i++ {
		doc[i] = 'y' // every write differs
		if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.PutCheckpoint(stackID, i+1, doc) }); err != nil {
			t.Fatal(err)
		}
	}
	main := filepath.Join(dir, sqlite.FileName)
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(main)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() >= 25<<20 {
			t.Logf("database file %.1f MB after %d MB of writes", float64(fi.Size())/(1<<20), writes/2)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d KB 10 s after %d MB of writes: nothing checkpointed the WAL", fi.Size()>>10, writes/2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createStack creates the organization acme and its stack p/s and returns the stack's ID.
func createStack(ctx context.Context, db *sqlstore.DB) (id int64, err error) {
	err = db.Update(ctx, func(tx gatehouse.Tx) error {
		o := &gatehouse.Org{Name: "acme"}
		if err := tx.CreateOrg(o); err != nil {
			return err
		}
		s := &gatehouse.Stack{OrgID: o.ID, Project: "p", Name: "s"}
		if err := tx.CreateStack(s); err != nil {
			return err
		}
		id = s.ID
		return nil
	})
	return id, err
}
