package sqlite_test

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) gatehouse.Store {
		db, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	})
}

// TestProcesses races two stores on one database file, as two processes would.
func TestProcesses(t *testing.T) {
	storetest.RunProcesses(t, func(t *testing.T) []gatehouse.Store {
		dir := t.TempDir()
		var stores []gatehouse.Store
		for range 2 {
			db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			stores = append(stores, db)
		}
		return stores
	})
}
