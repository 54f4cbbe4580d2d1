package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
)

// The instance lock keeps offline maintenance (keys rotate, restore) from racing a running
// server: every serving process holds it shared for its lifetime, maintenance takes it
// exclusively and is refused while any server holds it. SQLite: flock(2) on a lock file
// next to the database; PostgreSQL: a session advisory lock.

// pgLockKey is the PostgreSQL advisory lock's key ("gatehous" in ASCII).
const pgLockKey int64 = 0x6761746568617573

// ErrServerRunning is returned by LockStore(exclusive) while a server holds the lock.
var ErrServerRunning = errors.New("a Gatehouse server is running on this database")

// LockStore takes the instance lock of cfg's database (store already open): shared for a
// server, exclusive for maintenance. It never waits. release gives it up.
func LockStore(ctx context.Context, cfg Config, store any, exclusive bool) (release func(), err error) {
	if p := SQLitePath(cfg); p != "" {
		return flockFile(p+".lock", exclusive)
	}
	w, ok := store.(interface{ Writer() *sql.DB })
	if !ok {
		return func() {}, nil
	}
	conn, err := w.Writer().Conn(ctx)
	if err != nil {
		return nil, err
	}
	fn := "pg_try_advisory_lock_shared"
	if exclusive {
		fn = "pg_try_advisory_lock"
	}
	var got bool
	if err := conn.QueryRowContext(ctx, "SELECT "+fn+"($1)", pgLockKey).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if !got {
		conn.Close()
		return nil, lockRefused(exclusive)
	}
	unlock := "pg_advisory_unlock_shared"
	if exclusive {
		unlock = "pg_advisory_unlock"
	}
	return func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), "SELECT "+unlock+"($1)", pgLockKey)
		conn.Close()
	}, nil
}

func lockRefused(exclusive bool) error {
	if exclusive {
		return fmt.Errorf("%w; stop every server first (the command changes what running servers have cached)", ErrServerRunning)
	}
	return errors.New("offline maintenance (keys rotate or restore) is running on this database; start the server when it has finished")
}

// flockFile locks path (created if missing); closing the file releases the lock.
func flockFile(path string, exclusive bool) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	if err := flock(f, exclusive); err != nil {
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, lockRefused(exclusive)
		}
		return nil, fmt.Errorf("instance lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}
