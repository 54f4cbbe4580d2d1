package postgres_test

import (
	"context"
	"database/sql"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/postgres"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
	"github.com/gatehouse-dev/gatehouse/store/storetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// migrated returns the URL of a new database, a copy of one migrated once (Open then
// finds the migrations done).
func migrated(t *testing.T) string {
	t.Helper()
	tmpl := pgtest.Template(t, "migrated", func(url string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		db, err := postgres.Open(ctx, url)
		if err != nil {
			return err
		}
		return db.Close()
	})
	return pgtest.NewDatabaseFrom(t, tmpl)
}

func open(t *testing.T) gatehouse.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := postgres.Open(ctx, migrated(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestConformance(t *testing.T) {
	storetest.Run(t, open)
}

// TestProcesses races two stores (two connection pools) on one database, as two Gatehouse
// processes would.
func TestProcesses(t *testing.T) {
	storetest.RunProcesses(t, func(t *testing.T) []gatehouse.Store {
		url := migrated(t)
		var stores []gatehouse.Store
		for range 2 {
			db, err := postgres.Open(context.Background(), url)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			stores = append(stores, db)
		}
		return stores
	})
}

// TestConcurrentOpen starts several processes' worth of Open on one empty database at once:
// all succeed, and the migrations ran once (the advisory lock serialized them).
func TestConcurrentOpen(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := postgres.Open(ctx, url)
			if err == nil {
				err = db.Ping(ctx)
				db.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Open %d: %v", i, err)
		}
	}
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	var migrations, distinct, heads int
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*), COUNT(DISTINCT version) FROM schema_migrations`).Scan(&migrations, &distinct); err != nil {
		t.Fatal(err)
	}
	if migrations == 0 || migrations != distinct {
		t.Errorf("schema_migrations: %d rows, %d versions; want each migration recorded once", migrations, distinct)
	}
	if err := raw.QueryRowContext(ctx, `SELECT COUNT(*) FROM audit_head`).Scan(&heads); err != nil {
		t.Fatal(err)
	}
	if heads != 1 {
		t.Errorf("audit_head has %d rows, want 1", heads)
	}
}

func TestOpenUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := postgres.Open(ctx, "postgres://gatehouse@127.0.0.1:1/none?sslmode=disable&connect_timeout=5")
	if err == nil {
		db.Close()
		t.Fatal("Open of an unreachable server succeeded")
	}
}

func TestEngine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url := pgtest.NewDatabase(t)
	// Even on a database whose default isolation is another.
	raw, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	name := url[strings.LastIndex(url, "/")+1 : strings.Index(url, "?")]
	if _, err := raw.ExecContext(ctx, `ALTER DATABASE `+name+` SET default_transaction_isolation = 'serializable'`); err != nil {
		t.Fatal(err)
	}
	raw.Close()
	db, err := postgres.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got := db.Engine(); got != "postgres" {
		t.Errorf("Engine() = %q, want postgres", got)
	}
	// The store's transactions run at READ COMMITTED whatever the server's default.
	tx, err := db.Writer().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	var level string
	if err := tx.QueryRowContext(ctx, `SHOW transaction_isolation`).Scan(&level); err != nil {
		t.Fatal(err)
	}
	if level != "read committed" {
		t.Errorf("transaction isolation = %q, want read committed", level)
	}
}
