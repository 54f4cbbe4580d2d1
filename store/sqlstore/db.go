// Package sqlstore implements gatehouse.Store on SQL databases. The SQL is shared by every
// engine; a Dialect supplies what differs (types in the schema, placeholders, error codes,
// row locks). Engines live in store/sqlite and store/postgres and only open connections.
package sqlstore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Dialect is what differs between SQL engines.
type Dialect struct {
	Name string
	// Types replaces the @NAME@ tokens of the schema.
	Types map[string]string
	// Numbered placeholders ($1, $2, ...) instead of "?".
	Numbered bool
	// ForUpdate is appended to SELECTs that must lock the rows they read.
	ForUpdate string
	// AppendInsert is the verb of multi-row INSERTs into append-only tables whose
	// transaction is rolled back whole on any error: SQLite's "INSERT OR FAIL" spares it the
	// statement journal that a multi-row "INSERT" keeps to undo a failed statement alone
	// (measured: a quarter of the CPU time of a batch of audit events). Default "INSERT".
	AppendInsert string
	// IsUnique reports a unique-constraint violation.
	IsUnique func(error) bool
	// IsRetryable reports a transient conflict (serialization failure, deadlock, busy) after
	// which the whole transaction may be run again.
	IsRetryable func(error) bool
	// LockMigrations takes a lock that makes concurrent migrations by several processes
	// run once; it returns the function that releases it.
	LockMigrations func(ctx context.Context, conn *sql.Conn) (func(), error)
}

// DB is a gatehouse.Store on a SQL database.
type DB struct {
	w, r    *sql.DB // writer and reader pools (the same pool where the engine allows)
	d       *Dialect
	Clock   func() time.Time
	queries sync.Map // query text -> dialect-specific text
	stmts   sync.Map // stmtKey -> *sql.Stmt
	nstmts  atomic.Int64
	onClose []func() error // engine-specific work to stop before the pools close (OnClose)
	// Background prepares in flight; Close waits for them so that no connection outlives it.
	prepMu     sync.Mutex
	prepWG     sync.WaitGroup
	prepClosed bool
}

var _ gatehouse.Store = (*DB)(nil)

// New wraps open pools. The writer pool runs read-write transactions, the reader pool
// read-only ones; they may be the same *sql.DB.
func New(writer, reader *sql.DB, d *Dialect) *DB {
	return &DB{w: writer, r: reader, d: d, Clock: time.Now}
}

// Engine names the engine.
func (db *DB) Engine() string { return db.d.Name }

// Writer returns the writer pool (for engine-specific maintenance).
func (db *DB) Writer() *sql.DB { return db.w }

// OnClose registers f to run first when the store closes (an engine's background work).
func (db *DB) OnClose(f func() error) { db.onClose = append(db.onClose, f) }

// Close stops the engine's background work (OnClose), then closes both pools.
func (db *DB) Close() error {
	var errs []error
	for _, f := range db.onClose {
		errs = append(errs, f())
	}
	db.onClose = nil
	db.prepMu.Lock()
	db.prepClosed = true
	db.prepMu.Unlock()
	db.prepWG.Wait()
	db.stmts.Range(func(_, v any) bool {
		if st := v.(*sql.Stmt); st != nil {
			st.Close()
		}
		return true
	})
	errs = append(errs, db.w.Close())
	if db.r != db.w {
		errs = append(errs, db.r.Close())
	}
	return errors.Join(errs...)
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	var one int
	if err := db.r.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "database unavailable")
	}
	return nil
}

// Migrate applies the embedded migrations that have not run yet, each in its own
// transaction, under the dialect's migration lock. It refuses a database whose schema is
// newer than this binary.
func (db *DB) Migrate(ctx context.Context) error {
	conn, err := db.w.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if db.d.LockMigrations != nil {
		unlock, err := db.d.LockMigrations(ctx, conn)
		if err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		defer unlock()
	}
	if _, err := conn.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied BIGINT NOT NULL)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	var current int
	if err := conn.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	names, err := fs.Glob(migrationFS, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	latest := 0
	for _, name := range names {
		v, err := migrationVersion(name)
		if err != nil {
			return err
		}
		latest = max(latest, v)
		if v <= current {
			continue
		}
		body, err := migrationFS.ReadFile(name)
		if err != nil {
			return err
		}
		if err := db.applyMigration(ctx, conn, v, db.expandTypes(string(body))); err != nil {
			return fmt.Errorf("migrate: %s: %w", name, err)
		}
	}
	if current > latest {
		return fmt.Errorf("the database schema is version %d but this gatehouse knows only up to %d: upgrade gatehouse", current, latest)
	}
	return nil
}

func migrationVersion(name string) (int, error) {
	base := strings.TrimPrefix(name, "migrations/")
	num, _, ok := strings.Cut(base, "_")
	v, err := strconv.Atoi(num)
	if !ok || err != nil || v <= 0 {
		return 0, fmt.Errorf("bad migration file name %q", name)
	}
	return v, nil
}

func (db *DB) applyMigration(ctx context.Context, conn *sql.Conn, version int, body string) error {
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, stmt := range splitStatements(body) {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("%w\n%s", err, stmt)
		}
	}
	if _, err := tx.ExecContext(ctx, db.rebind(`INSERT INTO schema_migrations (version, applied) VALUES (?, ?)`), version, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}

func (db *DB) expandTypes(s string) string {
	for k, v := range db.d.Types {
		s = strings.ReplaceAll(s, "@"+k+"@", v)
	}
	return s
}

// splitStatements splits a migration on semicolons at line ends, dropping comments.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "--") {
			continue
		}
		if i := strings.Index(line, "--"); i >= 0 {
			line = line[:i]
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(strings.TrimSpace(line), ";") {
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		}
	}
	if s := strings.TrimSpace(cur.String()); s != "" {
		out = append(out, s)
	}
	return out
}

// maxPrepared bounds the statement cache; queries built with variable shapes (IN lists,
// optional filters) past it run unprepared.
const maxPrepared = 512

type stmtKey struct {
	pool *sql.DB
	q    string
}

// prepared returns the pool's prepared statement for q, or nil the first time: preparing
// needs a connection of the pool, and the caller is inside a transaction that may hold the
// pool's only one (SQLite's writer), so the statement is prepared in the background and
// used from the next call on. Parsing SQL was half the CPU of a request before statements
// were cached (modernc.org/sqlite parses every unprepared query).
func (db *DB) prepared(_ context.Context, pool *sql.DB, q string) *sql.Stmt {
	key := stmtKey{pool, q}
	v, loaded := db.stmts.LoadOrStore(key, (*sql.Stmt)(nil))
	if loaded {
		return v.(*sql.Stmt) // nil while being prepared
	}
	if db.nstmts.Add(1) > maxPrepared {
		return nil // the placeholder stays: this query runs unprepared from now on
	}
	db.prepMu.Lock()
	if db.prepClosed {
		db.prepMu.Unlock()
		return nil
	}
	db.prepWG.Add(1)
	db.prepMu.Unlock()
	go func() {
		defer db.prepWG.Done()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		st, err := pool.PrepareContext(ctx, db.rebind(q))
		if err != nil {
			db.stmts.Delete(key) // try again later
			db.nstmts.Add(-1)
			return
		}
		db.stmts.Store(key, st)
	}()
	return nil
}

// multiRowInserts returns, for n from 1 to max, the statement head + n rows + tail, where
// row is one row's "(?, ...)" placeholders: index n is the statement for n rows.
func multiRowInserts(head, row, tail string, max int) []string {
	out := make([]string, max+1)
	for n := 1; n <= max; n++ {
		out[n] = head + strings.Repeat(row+", ", n-1) + row + tail
	}
	return out
}

// rebind turns "?" placeholders into the dialect's form, caching the result.
func (db *DB) rebind(q string) string {
	if !db.d.Numbered {
		return q
	}
	if v, ok := db.queries.Load(q); ok {
		return v.(string)
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(q[i])
	}
	out := b.String()
	db.queries.Store(q, out)
	return out
}

const maxAttempts = 8

// Update runs fn in a read-write transaction, retrying transient conflicts.
func (db *DB) Update(ctx context.Context, fn func(gatehouse.Tx) error) error {
	return db.run(ctx, db.w, false, fn)
}

// View runs fn in a read-only transaction.
func (db *DB) View(ctx context.Context, fn func(gatehouse.Tx) error) error {
	return db.run(ctx, db.r, true, fn)
}

func (db *DB) run(ctx context.Context, pool *sql.DB, readOnly bool, fn func(gatehouse.Tx) error) error {
	var err error
	for attempt := 0; attempt < maxAttempts; attempt++ {
		err = db.runOnce(ctx, pool, readOnly, fn)
		if err == nil || !db.d.IsRetryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 5 * time.Millisecond):
		}
	}
	return gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "database busy, try again")
}

func (db *DB) runOnce(ctx context.Context, pool *sql.DB, readOnly bool, fn func(gatehouse.Tx) error) (err error) {
	stx, err := pool.BeginTx(ctx, &sql.TxOptions{ReadOnly: readOnly && db.d.Name != "sqlite"})
	if err != nil {
		return dbErr(err)
	}
	t := &tx{ctx: ctx, tx: stx, pool: pool, db: db, now: db.Clock().UTC()}
	defer func() {
		if p := recover(); p != nil {
			_ = stx.Rollback()
			panic(p)
		}
	}()
	if err := fn(t); err != nil {
		_ = stx.Rollback()
		return err
	}
	if err := t.flushAudit(); err != nil {
		_ = stx.Rollback()
		return fmt.Errorf("%w: %w", gatehouse.ErrAuditWrite, err) // both stay visible to errors.Is/As (retries)
	}
	if err := stx.Commit(); err != nil {
		return dbErr(err)
	}
	return nil
}

// dbErr wraps a driver error so that it is logged but never shown.
func dbErr(err error) error {
	if err == nil {
		return nil
	}
	var ge *gatehouse.Error
	if errors.As(err, &ge) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return &dbError{err}
}

// dbError is a database failure: internal to the client, retryable if the dialect says so.
type dbError struct{ err error }

func (e *dbError) Error() string { return "database: " + e.err.Error() }
func (e *dbError) Unwrap() error { return e.err }
