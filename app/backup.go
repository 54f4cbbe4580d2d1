package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver

	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// Backup writes a consistent copy of the SQLite database of cfg to the new file to, while
// servers keep running: SQLite's VACUUM INTO reads one snapshot (a read transaction in WAL
// mode does not block writers) and writes a compact database. PostgreSQL is backed up with
// its own tools (pg_dump, or base backups with WAL archiving). The key files are not in
// the copy: back up gatehouse.key and audit-signing.key separately.
func Backup(ctx context.Context, cfg Config, to string) error {
	src := SQLitePath(cfg)
	if src == "" {
		return errors.New("backup copies the embedded SQLite database; back up PostgreSQL with pg_dump or its base backups")
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("no Gatehouse database at %s: %w", src, err)
	}
	if _, err := os.Stat(to); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s already exists; backup never overwrites", to)
	}
	db, err := sql.Open("sqlite", "file:"+(&url.URL{Path: src}).EscapedPath()+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", to); err != nil {
		os.Remove(to)
		return fmt.Errorf("backup: %w", err)
	}
	return os.Chmod(to, 0o600)
}

// RestoreReport is what Restore checked.
type RestoreReport struct {
	Audit       audit.Report
	Checkpoints int  // signed checkpoints in the backup
	KeyChecked  bool // the audit signing key matched
}

// Restore replaces the SQLite database of cfg with the backup file from, after proving the
// backup sound: it opens a copy, verifies the audit chain (and its checkpoints with the
// data directory's signing key, if there is one) and the keyring canary with cfg's
// keyring. It refuses while a server runs (instance lock) and, unless force, when the
// data directory already holds a database.
func Restore(ctx context.Context, cfg Config, from string, force bool) (RestoreReport, error) {
	var rep RestoreReport
	dst := SQLitePath(cfg)
	if dst == "" {
		return rep, errors.New("restore replaces the embedded SQLite database; restore PostgreSQL with its own tools")
	}
	if _, err := os.Stat(from); err != nil {
		return rep, err
	}
	if _, err := os.Stat(dst); err == nil && !force {
		return rep, fmt.Errorf("%s already holds a database: pass --force to replace it", dst)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return rep, err
	}
	unlock, err := flockFile(dst+".lock", true)
	if err != nil {
		return rep, err
	}
	defer unlock()

	// Check a copy next to the destination (same file system, so the final step is a rename).
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".restore-*.db")
	if err != nil {
		return rep, err
	}
	tmpName := tmp.Name()
	defer func() {
		for _, s := range []string{"", "-wal", "-shm"} {
			os.Remove(tmpName + s)
		}
	}()
	in, err := os.Open(from)
	if err != nil {
		tmp.Close()
		return rep, err
	}
	_, err = io.Copy(tmp, in)
	in.Close()
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return rep, fmt.Errorf("restore: copying the backup: %w", err)
	}
	if err := verifyBackup(ctx, cfg, tmpName, &rep); err != nil {
		return rep, err
	}
	for _, s := range []string{"-wal", "-shm"} {
		if err := os.Remove(dst + s); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return rep, err
		}
	}
	if err := os.Rename(tmpName, dst); err != nil {
		return rep, err
	}
	syncDirectory(filepath.Dir(dst))
	return rep, nil
}

func verifyBackup(ctx context.Context, cfg Config, path string, rep *RestoreReport) error {
	store, err := sqlite.OpenFile(ctx, path, sqlite.Options{Synchronous: cfg.SQLiteSynchronous})
	if err != nil {
		return fmt.Errorf("restore: the backup does not open: %w", err)
	}
	defer store.Close()
	kcfg := cfg
	kr, err := OpenKeyring(ctx, kcfg, store)
	if err != nil {
		return fmt.Errorf("restore: keyring check failed (restore the key file too, or pass --keyring): %w", err)
	}
	kr.Close()
	var signer *audit.Signer
	if keyPath, err := AuditSigningKeyPath("", cfg.DataDir); err == nil {
		if _, err := os.Stat(keyPath); err == nil {
			if signer, err = LoadAuditSigner(keyPath, ""); err != nil {
				return err
			}
		}
	}
	var pub []byte
	if signer != nil {
		pub = signer.Public()
		rep.KeyChecked = true
	}
	r, stored, err := VerifyAudit(ctx, store, pub)
	if err != nil {
		return err
	}
	rep.Audit, rep.Checkpoints = r, stored
	if !r.OK {
		return fmt.Errorf("restore: the backup's audit log does not verify: %s", r.String())
	}
	return nil
}

func syncDirectory(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
