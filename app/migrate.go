package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// MigrateResult is what Migrate copied: per table, the row count and checksum read from the
// source and read back from the target.
type MigrateResult struct {
	From, To string // engines
	Tables   []sqlstore.TableCopy
}

// Rows is the number of rows copied.
func (r MigrateResult) Rows() int64 {
	var n int64
	for _, t := range r.Tables {
		n += t.Source.Rows
	}
	return n
}

// Migrate copies the whole database of from into the database of to (any engine to any
// engine: SQLite in a data directory or a file, PostgreSQL), with every ID, the keyring
// canary, the security epoch and the audit chain as they are, then verifies every table's
// row count and checksum on the target. The target must hold no data (no organizations,
// users, stacks, tokens, audit events, ...): a target that does is refused with ECONFLICT
// before anything is changed. The target's schema is created as `serve` would create it;
// the source is brought to this gatehouse's schema version first, as `serve` would. Stop
// the servers of both databases before migrating.
//
// Stack secrets stay readable with the same keyring (the wrapped data keys are copied as they
// are); checkpoints kept in object storage are copied as references (serve the target with
// the same --blob-url).
func Migrate(ctx context.Context, from, to Config) (MigrateResult, error) {
	var res MigrateResult
	fromID, err := databaseIdentity(from)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	toID, err := databaseIdentity(to)
	if err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	if fromID == toID {
		return res, fmt.Errorf("source and target are the same database (%s)", redactURL(fromID))
	}
	if strings.HasPrefix(fromID, "sqlite:") {
		// Opening a missing SQLite file would create an empty database and copy nothing.
		if _, err := os.Stat(strings.TrimPrefix(fromID, "sqlite:")); err != nil {
			return res, fmt.Errorf("source: %w", err)
		}
	}
	// Refuse a target that holds data before opening it: opening migrates its schema.
	if err := precheckEmpty(ctx, toID); err != nil {
		return res, err
	}
	src, err := OpenExistingStore(ctx, from)
	if err != nil {
		return res, fmt.Errorf("source: %w", err)
	}
	defer src.Close()
	dst, err := OpenStore(ctx, to)
	if err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	defer dst.Close()
	sdb, ok1 := src.(*sqlstore.DB)
	ddb, ok2 := dst.(*sqlstore.DB)
	if !ok1 || !ok2 {
		return res, errors.New("migrate needs SQL stores on both sides")
	}
	res.From, res.To = sdb.Engine(), ddb.Engine()
	res.Tables, err = sdb.CopyTo(ctx, ddb)
	return res, err
}

// databaseIdentity names the database cfg opens: "sqlite:" and the file's absolute path,
// or the PostgreSQL URL.
func databaseIdentity(cfg Config) (string, error) {
	switch {
	case cfg.Database == "":
		if cfg.DataDir == "" {
			return "", errors.New("no database: give a database URL or a data directory")
		}
		p, err := filepath.Abs(filepath.Join(cfg.DataDir, sqlite.FileName))
		return "sqlite:" + p, err
	case strings.HasPrefix(cfg.Database, "sqlite://"):
		p, err := filepath.Abs(strings.TrimPrefix(cfg.Database, "sqlite://"))
		return "sqlite:" + p, err
	case strings.HasPrefix(cfg.Database, "postgres://"), strings.HasPrefix(cfg.Database, "postgresql://"):
		return cfg.Database, nil
	}
	return "", fmt.Errorf("unsupported database URL %q (want sqlite://PATH or postgres://...)", redactURL(cfg.Database))
}

// precheckEmpty looks into the target without migrating it: if it already has Gatehouse's
// tables and any of them holds data, the copy is refused and nothing is changed.
func precheckEmpty(ctx context.Context, id string) error {
	var driver, dsn, exists string
	if path, ok := strings.CutPrefix(id, "sqlite:"); ok {
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil // a new file
		}
		driver, dsn = "sqlite", "file:"+(&url.URL{Path: path}).EscapedPath()+"?mode=ro&_pragma=busy_timeout(10000)"
		exists = `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	} else {
		driver, dsn = "pgx", id
		exists = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return fmt.Errorf("target: %w", err)
	}
	defer db.Close()
	var held []string
	for _, table := range []string{"orgs", "users", "stacks", "tokens", "audit_events"} {
		var n int64
		if err := db.QueryRowContext(ctx, exists, table).Scan(&n); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if n == 0 {
			continue
		}
		if err := db.QueryRowContext(ctx, `SELECT COUNT(*) FROM `+table).Scan(&n); err != nil {
			return fmt.Errorf("target: %w", err)
		}
		if n > 0 {
			held = append(held, fmt.Sprintf("%s: %d", table, n))
		}
	}
	if len(held) > 0 {
		return gatehouse.Errorf(gatehouse.ECONFLICT, "the target database is not empty (%s): gatehouse migrate copies only into a new, empty database; nothing was changed", strings.Join(held, ", "))
	}
	return nil
}
