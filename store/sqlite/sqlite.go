// Package sqlite opens Gatehouse's embedded default store: SQLite (modernc.org/sqlite, pure
// Go) in WAL mode, with one writer connection and a pool of readers.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// FileName is the database file inside a data directory.
const FileName = "gatehouse.db"

// Options tune the engine.
type Options struct {
	// Synchronous is SQLite's synchronous pragma: "NORMAL" (default: safe against process
	// crashes, may lose the last transactions on power loss) or "FULL" (fsync per commit).
	Synchronous string
}

// Dialect is SQLite's.
var Dialect = &sqlstore.Dialect{
	Name:         "sqlite",
	AppendInsert: "INSERT OR FAIL",
	Types: map[string]string{
		"ID":     "INTEGER PRIMARY KEY AUTOINCREMENT", // never reuse IDs: a stack ID is bound into its secrets
		"BLOB":   "BLOB",
		"BIGINT": "INTEGER",
		"TEXT":   "TEXT",
	},
	IsUnique: func(err error) bool {
		var se *sqlite.Error
		if errors.As(err, &se) {
			c := se.Code()
			return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
		}
		return false
	},
	IsRetryable: func(err error) bool {
		var se *sqlite.Error
		if errors.As(err, &se) {
			c := se.Code() & 0xff
			return c == sqlite3.SQLITE_BUSY || c == sqlite3.SQLITE_LOCKED
		}
		return false
	},
}

// Open opens (creating if needed) the database in dir and migrates it.
func Open(ctx context.Context, dir string, opts Options) (*sqlstore.DB, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	return OpenFile(ctx, filepath.Join(dir, FileName), opts)
}

// OpenFile opens the database at path and migrates it.
func OpenFile(ctx context.Context, path string, opts Options) (*sqlstore.DB, error) {
	sync := strings.ToUpper(opts.Synchronous)
	if sync == "" {
		sync = "NORMAL"
	}
	if sync != "NORMAL" && sync != "FULL" {
		return nil, fmt.Errorf("sqlite synchronous must be NORMAL or FULL, not %q", opts.Synchronous)
	}
	base := "file:" + (&url.URL{Path: path}).EscapedPath()
	pragmas := "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=foreign_keys(ON)&_pragma=synchronous(" + sync + ")&_pragma=temp_store(MEMORY)"
	// The writer checkpoints the WAL itself only as a safety net (at 10,000 pages, 40 MB):
	// the checkpointer goroutine below does it in the background, so that no request's
	// commit pays for copying the WAL into the database file and syncing it.
	w, err := sql.Open("sqlite", base+pragmas+"&_pragma=wal_autocheckpoint(10000)&_txlock=immediate")
	if err != nil {
		return nil, err
	}
	w.SetMaxOpenConns(1) // SQLite has one writer; queue in Go rather than spin on SQLITE_BUSY
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", base+pragmas+"&_pragma=query_only(ON)")
	if err != nil {
		w.Close()
		return nil, err
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	db := sqlstore.New(w, r, Dialect)
	if err := db.Migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.EnsureAuditHead(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		db.Close()
		return nil, err
	}
	ck, err := sql.Open("sqlite", base+pragmas)
	if err != nil {
		db.Close()
		return nil, err
	}
	ck.SetMaxOpenConns(1)
	db.OnClose(startCheckpointer(ck, checkpointEvery))
	return db, nil
}

// checkpointEvery is how often the checkpointer copies the WAL into the database file.
const checkpointEvery = 100 * time.Millisecond

// startCheckpointer runs PASSIVE WAL checkpoints on its own connection every period: they
// copy committed pages into the database file, and sync it, without blocking the writer or
// readers. When writes pause, the next write starts the WAL over from its beginning; under
// a continuous stream of writes the writer's own checkpoint at 10,000 pages does that, and
// finds the copying already done. It returns the function that stops the checkpointer and
// closes its connection.
func startCheckpointer(ck *sql.DB, period time.Duration) func() error {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				// Errors (SQLITE_BUSY while another process checkpoints) only mean "later".
				_, _ = ck.ExecContext(ctx, `PRAGMA wal_checkpoint(PASSIVE)`)
			}
		}
	}()
	return func() error {
		cancel()
		<-done
		return ck.Close()
	}
}
