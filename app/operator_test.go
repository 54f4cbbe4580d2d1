package app_test

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestDeletedKeyFileIsNotReplaced: a start without the key file the data was encrypted
// with is refused with a message saying what to restore, and leaves no new key file.
func TestDeletedKeyFileIsNotReplaced(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Open(ctx, app.Config{DataDir: dir}, httpapi.DefaultConfig(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	keyFile := filepath.Join(dir, secrets.KeyFileName)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err = app.Open(ctx, app.Config{DataDir: dir}, httpapi.DefaultConfig(), quiet)
	if err == nil || !strings.Contains(err.Error(), "restore "+secrets.KeyFileName) {
		t.Fatalf("start without the key file: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused start left a key file behind (%v)", err)
	}
}

// TestMissingAuditSigningKeyRefused: the log has checkpoints; a start without their
// signing key is refused (a new key would make verification report tampering) and creates
// no key; --audit-new-signing-key overrides it.
func TestMissingAuditSigningKeyRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Open(ctx, app.Config{DataDir: dir}, httpapi.DefaultConfig(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := app.Bootstrap(ctx, srv.Store, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	stop, err := app.StartAudit(ctx, srv.Store, app.AuditConfig{}, dir, quiet, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop() // signs a checkpoint of the bootstrap event
	keyFile := filepath.Join(dir, app.AuditKeyFile)
	if err := os.Remove(keyFile); err != nil {
		t.Fatal(err)
	}
	_, err = app.StartAudit(ctx, srv.Store, app.AuditConfig{}, dir, quiet, nil)
	if err == nil || !strings.Contains(err.Error(), "restore "+app.AuditKeyFile) {
		t.Fatalf("start without the signing key: %v", err)
	}
	if _, err := os.Stat(keyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the refused start created a signing key (%v)", err)
	}
	stop, err = app.StartAudit(ctx, srv.Store, app.AuditConfig{NewSigningKey: true}, dir, quiet, nil)
	if err != nil {
		t.Fatalf("with NewSigningKey: %v", err)
	}
	stop() // signs a checkpoint with the new key

	// A key that is there but is not the one that signed the newest checkpoint (another
	// process's, a wrong file): refused too, and it names the key to restore.
	other := filepath.Join(t.TempDir(), "other-signing.key")
	if _, err := audit.LoadOrCreateSigningKey(other); err != nil {
		t.Fatal(err)
	}
	_, err = app.StartAudit(ctx, srv.Store, app.AuditConfig{SigningKey: other}, dir, quiet, nil)
	if err == nil || !strings.Contains(err.Error(), "is not the one that signed") || !strings.Contains(err.Error(), "--audit-new-signing-key") {
		t.Fatalf("start with another signing key: %v", err)
	}
	// The key that signed it still starts.
	stop, err = app.StartAudit(ctx, srv.Store, app.AuditConfig{}, dir, quiet, nil)
	if err != nil {
		t.Fatalf("start with the signing key: %v", err)
	}
	stop()
}

// TestInstanceLockPostgres: on PostgreSQL the instance lock is an advisory lock: servers
// share it, maintenance (keys rotate) is refused while one holds it and gets it after.
func TestInstanceLockPostgres(t *testing.T) {
	ctx := context.Background()
	cluster := pgtest.Start(t)
	cfg := app.Config{DataDir: t.TempDir(), Database: cluster.NewDatabase(t)}
	a, err := app.Open(ctx, cfg, httpapi.DefaultConfig(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	b, err := app.Open(ctx, cfg, httpapi.DefaultConfig(), quiet) // a second process
	if err != nil {
		t.Fatalf("a second server on the same database: %v", err)
	}
	store, err := app.OpenExistingStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := app.LockStore(ctx, cfg, store, true); !errors.Is(err, app.ErrServerRunning) {
		t.Fatalf("exclusive lock with servers running: %v", err)
	}
	a.Close()
	if _, err := app.LockStore(ctx, cfg, store, true); !errors.Is(err, app.ErrServerRunning) {
		t.Fatalf("exclusive lock with one server running: %v", err)
	}
	b.Close()
	unlock, err := app.LockStore(ctx, cfg, store, true)
	if err != nil {
		t.Fatalf("exclusive lock with no server: %v", err)
	}
	if _, err := app.Open(ctx, cfg, httpapi.DefaultConfig(), quiet); err == nil {
		t.Fatal("a server started during maintenance")
	}
	unlock()
	c, err := app.Open(ctx, cfg, httpapi.DefaultConfig(), quiet)
	if err != nil {
		t.Fatalf("a server after maintenance: %v", err)
	}
	c.Close()
}
