// Package app assembles a Gatehouse server from its configuration: the store, the keyring
// (checked against its canary), the secrets manager and the HTTP API. cmd/gatehouse and the
// end-to-end tests both build servers through it.
package app

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/keystore"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// Config says where the data lives.
type Config struct {
	// DataDir holds the embedded database and the default key file.
	DataDir string
	// Database is a database URL; empty means SQLite in DataDir.
	Database string
	// Keyring is the key-encryption key's URL; empty means the key file in DataDir.
	Keyring string
	// SQLiteSynchronous is "NORMAL" (default) or "FULL".
	SQLiteSynchronous string
}

// OpenStore opens (and migrates) the configured database.
func OpenStore(ctx context.Context, cfg Config) (gatehouse.Store, error) {
	switch {
	case cfg.Database == "" || strings.HasPrefix(cfg.Database, "sqlite://"):
		if cfg.Database != "" {
			return sqlite.OpenFile(ctx, strings.TrimPrefix(cfg.Database, "sqlite://"), sqlite.Options{Synchronous: cfg.SQLiteSynchronous})
		}
		if cfg.DataDir == "" {
			return nil, errors.New("no data directory: set --data-dir (or GATEHOUSE_DATA_DIR) or --database")
		}
		return sqlite.Open(ctx, cfg.DataDir, sqlite.Options{Synchronous: cfg.SQLiteSynchronous})
	case strings.HasPrefix(cfg.Database, "postgres://") || strings.HasPrefix(cfg.Database, "postgresql://"):
		return openPostgres(ctx, cfg.Database)
	}
	return nil, fmt.Errorf("unsupported database URL %q (want sqlite://PATH or postgres://...)", redactURL(cfg.Database))
}

// SQLitePath is the SQLite database file cfg names ("" for another engine).
func SQLitePath(cfg Config) string {
	switch {
	case strings.HasPrefix(cfg.Database, "sqlite://"):
		return strings.TrimPrefix(cfg.Database, "sqlite://")
	case cfg.Database == "" && cfg.DataDir != "":
		return filepath.Join(cfg.DataDir, sqlite.FileName)
	}
	return ""
}

// StoreExists says whether the configured SQLite database exists (always true for a
// database server: it is not created by Gatehouse).
func StoreExists(cfg Config) (bool, error) {
	p := SQLitePath(cfg)
	if p == "" {
		return true, nil
	}
	_, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// OpenExistingStore is OpenStore for commands that must not create an instance: a missing
// SQLite database (a mistyped --data-dir) is an error and nothing is created.
func OpenExistingStore(ctx context.Context, cfg Config) (gatehouse.Store, error) {
	if cfg.Database == "" && cfg.DataDir == "" {
		return nil, errors.New("no data directory: set --data-dir (or GATEHOUSE_DATA_DIR) or --database")
	}
	ok, err := StoreExists(cfg)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("no Gatehouse database at %s (is --data-dir right?); nothing was created", SQLitePath(cfg))
	}
	return OpenStore(ctx, cfg)
}

// openPostgres is set by the postgres engine when it is linked in.
var openPostgres = func(ctx context.Context, url string) (gatehouse.Store, error) {
	return nil, errors.New("this gatehouse was built without PostgreSQL support")
}

func redactURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}

const canaryKey = "keyring_canary"

// OpenKeyring opens the keyring and proves it is the one the data was encrypted with: the
// first start stores a canary, every later start must unwrap it. A wrong or missing key
// stops the start instead of corrupting data.
func OpenKeyring(ctx context.Context, cfg Config, store gatehouse.Store) (_ *secrets.Keyring, err error) {
	// A KMS or Vault that does not answer must not hang the start forever.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var canary []byte
	var nkeys int
	err = store.View(ctx, func(tx gatehouse.Tx) error {
		c, err := tx.GetMeta(canaryKey)
		if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		canary = c
		keys, err := tx.ListStackKeys()
		nkeys = len(keys)
		return err
	})
	if err != nil {
		return nil, err
	}
	if (canary != nil || nkeys > 0) && strings.TrimSpace(cfg.Keyring) == "" && cfg.DataDir != "" {
		// The data was encrypted with the default key file: never create a new one in its
		// place (it could not decrypt anything, and would be left behind).
		path := filepath.Join(cfg.DataDir, secrets.KeyFileName)
		if _, serr := os.Stat(path); errors.Is(serr, fs.ErrNotExist) {
			return nil, fmt.Errorf("the key file %s is missing, but this database's stack secrets were encrypted with it; "+
				"refusing to start: restore %s from backup (or point --keyring at the key the data was encrypted with)", path, secrets.KeyFileName)
		}
	}
	kr, err := secrets.OpenKeyring(ctx, cfg.Keyring, cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer func() {
		if err != nil {
			kr.Close()
		}
	}()
	if canary == nil {
		if nkeys > 0 {
			return nil, fmt.Errorf("the database holds %d stack data keys but no keyring canary; refusing to start with keyring %s", nkeys, kr.Describe())
		}
		c, err := kr.MakeCanary(ctx)
		if err != nil {
			return nil, fmt.Errorf("keyring: %w", err)
		}
		// Insert-if-absent: of several processes starting on an empty database, one canary
		// wins and every process verifies against it.
		if err := store.Update(ctx, func(tx gatehouse.Tx) error {
			var err error
			canary, err = tx.CreateMeta(canaryKey, c)
			return err
		}); err != nil {
			return nil, err
		}
	}
	if err := kr.VerifyCanary(ctx, canary); err != nil {
		return nil, fmt.Errorf("%w; refusing to start: point --keyring at the key this data was encrypted with, or restore the key file", err)
	}
	return kr, nil
}

// StoreKeys adapts a gatehouse.Store to the secrets manager's key storage.
type StoreKeys = keystore.Store

// txKeys adapts one transaction to secrets.RewrapStore (rotation runs in one transaction).
type txKeys struct{ tx gatehouse.Tx }

func (k txKeys) ListStackKeys(context.Context) ([]secrets.StackKey, error) {
	keys, err := k.tx.ListStackKeys()
	out := make([]secrets.StackKey, len(keys))
	for i, sk := range keys {
		out[i] = secrets.StackKey{StackID: sk.StackID, Wrapped: sk.Wrapped}
	}
	return out, err
}

func (k txKeys) ReplaceStackKey(_ context.Context, stackID int64, oldWrapped, newWrapped []byte) error {
	return k.tx.ReplaceStackKey(stackID, oldWrapped, newWrapped)
}

// txEnvKeys adapts one transaction's environment data keys to secrets.RewrapStore.
type txEnvKeys struct{ tx gatehouse.Tx }

func (k txEnvKeys) ListStackKeys(context.Context) ([]secrets.StackKey, error) {
	keys, err := k.tx.ListEnvKeys()
	out := make([]secrets.StackKey, len(keys))
	for i, ek := range keys {
		out[i] = secrets.StackKey{StackID: ek.EnvID, Wrapped: ek.Wrapped}
	}
	return out, err
}

func (k txEnvKeys) ReplaceStackKey(_ context.Context, envID int64, oldWrapped, newWrapped []byte) error {
	return k.tx.ReplaceEnvKey(envID, oldWrapped, newWrapped)
}

// RotateKeys re-wraps every stack, environment, webhook, SSO and VCS webhook data key from the current keyring to a
// new one and replaces the canary, all in one transaction: either every key moves or none
// does.
func RotateKeys(ctx context.Context, store gatehouse.Store, from, to *secrets.Keyring) (int, error) {
	var n int
	err := store.Update(ctx, func(tx gatehouse.Tx) error {
		// Every store of wrapped data keys: a new one belongs in this list, or rotation
		// leaves its keys under the old keyring.
		for _, rs := range []secrets.RewrapStore{txKeys{tx}, txEnvKeys{tx}, webhook.RewrapKeys(tx), sso.RewrapKeys(tx), deploy.RewrapVCSKeys(tx)} {
			m, err := secrets.Rewrap(ctx, from, to, rs)
			n += m
			if err != nil {
				return err
			}
		}
		c, err := to.MakeCanary(ctx)
		if err != nil {
			return err
		}
		return tx.SetMeta(canaryKey, c)
	})
	return n, err
}

// Server is an assembled Gatehouse.
type Server struct {
	Store    gatehouse.Store
	Keyring  *secrets.Keyring
	API      *httpapi.Server
	Handler  http.Handler
	Registry *prometheus.Registry

	unlock func() // the instance lock, held shared while serving
}

// Open assembles a server.
func Open(ctx context.Context, cfg Config, api httpapi.Config, log *slog.Logger) (*Server, error) {
	store, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	unlock, err := LockStore(ctx, cfg, store, false)
	if err != nil {
		store.Close()
		return nil, err
	}
	kr, err := OpenKeyring(ctx, cfg, store)
	if err != nil {
		store.Close()
		unlock()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sm := secrets.NewManager(kr, StoreKeys{Store: store})
	srv := httpapi.New(store, sm, log, reg, api)
	mux := http.NewServeMux()
	// /metrics is the one route outside the API table: Prometheus' own handler.
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.Handle("/", srv)
	return &Server{Store: store, Keyring: kr, API: srv, Handler: mux, Registry: reg, unlock: unlock}, nil
}

// Close releases everything.
// StartWorkers starts the background workers (webhook deliveries, the sweep of dead
// deployment runners, the sweep of ended browser sessions); Close stops them.
func (s *Server) StartWorkers() {
	s.API.StartWebhooks()
	s.API.StartDeploySweeper()
	s.API.StartSessionSweeper()
}

func (s *Server) Close() error {
	s.API.Close()
	if s.unlock != nil {
		s.unlock()
	}
	return errors.Join(s.Keyring.Close(), s.Store.Close())
}
