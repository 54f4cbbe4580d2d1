package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

type storeFlags struct {
	dataDir, database, keyring, synchronous string
}

func (f *storeFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", envDefault("GATEHOUSE_DATA_DIR", ""), "data directory for the embedded database and key file (env GATEHOUSE_DATA_DIR)")
	envSecretVar(cmd.Flags(), &f.database, "database", "GATEHOUSE_DATABASE", "", "database URL: postgres://... (default: SQLite in the data directory; env GATEHOUSE_DATABASE)")
	cmd.Flags().StringVar(&f.keyring, "keyring", envDefault("GATEHOUSE_KEYRING", ""), "key-encryption key URL: awskms://, gcpkms://, azurekeyvault://, hashivault:// (default: a key file in the data directory; env GATEHOUSE_KEYRING)")
	cmd.Flags().StringVar(&f.synchronous, "sqlite-synchronous", envDefault("GATEHOUSE_SQLITE_SYNCHRONOUS", "NORMAL"), "SQLite durability: NORMAL (survives process crashes) or FULL (also power loss; slower)")
}

func (f *storeFlags) config() app.Config {
	return app.Config{DataDir: f.dataDir, Database: f.database, Keyring: f.keyring, SQLiteSynchronous: f.synchronous}
}

func newServeCmd() *cobra.Command {
	var sf storeFlags
	var addr, logFormat, logLevel string
	var maxBody int64
	var journal string
	var deltaCutoff int
	var blobURL string
	var blobMinBytes int
	var auditKey string
	var auditSinks []string
	var auditEvery time.Duration
	var allowPrivateIssuers bool
	var trustedProxies string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API server",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			api := httpapi.DefaultConfig()
			api.MaxBodyBytes = maxBody
			switch httpapi.JournalMode(journal) {
			case httpapi.JournalAuto, httpapi.JournalOn, httpapi.JournalOff:
				api.Journal = httpapi.JournalMode(journal)
			default:
				return fmt.Errorf("--journal must be auto, on or off, not %q", journal)
			}
			api.DeltaCheckpointCutoff = deltaCutoff
			api.AllowPrivateIssuers = allowPrivateIssuers
			if allowPrivateIssuers {
				log.Warn("--allow-private-issuers: OIDC issuer discovery may reach loopback, private and link-local addresses; every organization administrator can make this server fetch from its network")
			}
			if api.TrustedProxies, err = httpapi.ParseTrustedProxies(trustedProxies); err != nil {
				return fmt.Errorf("--trusted-proxies: %w", err)
			}
			if api.SecretScanningKeys, err = secretScanningKeys(cmd); err != nil {
				return err
			}
			srv, err := app.Open(ctx, sf.config(), api, log)
			if err != nil {
				return err
			}
			defer srv.Close()
			blobs, err := app.AttachBlobStore(ctx, srv.Store, blobURL, blobMinBytes)
			if err != nil {
				return err
			}
			defer blobs.Close()
			stopAudit, err := app.StartAudit(ctx, srv.Store, app.AuditConfig{
				SigningKey: auditKey, Sinks: auditSinks, CheckpointEvery: auditEvery, API: srv.API,
			}, sf.dataDir, log, srv.Registry)
			if err != nil {
				return err
			}
			defer stopAudit() // before srv.Close: ends exporters, releases leases, signs a last checkpoint
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			hs := &http.Server{
				Handler:           srv.Handler,
				ReadHeaderTimeout: 10 * time.Second,
				// A whole request, body included, must arrive within this: a client that
				// trickles a body cannot hold a connection (and its buffer) forever.
				ReadTimeout:    5 * time.Minute,
				IdleTimeout:    120 * time.Second,
				MaxHeaderBytes: 64 << 10,
				ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
			}
			log.Info("gatehouse serving", "addr", ln.Addr().String(), "database", srv.Store.Engine(), "keyring", srv.Keyring.Describe(), "version", gatehouse.Version)
			errc := make(chan error, 1)
			go func() { errc <- hs.Serve(ln) }()
			select {
			case err := <-errc:
				return err
			case <-ctx.Done():
			}
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	sf.add(cmd)
	addSecretScanningKeysFlag(cmd)
	cmd.Flags().StringVar(&addr, "addr", envDefault("GATEHOUSE_ADDR", "127.0.0.1:8080"), "listen address host:port (env GATEHOUSE_ADDR)")
	cmd.Flags().StringVar(&logFormat, "log-format", envDefault("GATEHOUSE_LOG_FORMAT", "json"), "log format: json or text")
	cmd.Flags().StringVar(&logLevel, "log-level", envDefault("GATEHOUSE_LOG_LEVEL", "info"), "log level: debug, info, warn, error")
	cmd.Flags().StringVar(&trustedProxies, "trusted-proxies", envDefault("GATEHOUSE_TRUSTED_PROXIES", ""), "comma-separated networks (CIDR) of reverse proxies whose X-Forwarded-For names the client; from other peers the header is ignored (env GATEHOUSE_TRUSTED_PROXIES)")
	cmd.Flags().Int64Var(&maxBody, "max-body-bytes", envInt64("GATEHOUSE_MAX_BODY_BYTES", 512<<20), "largest request body accepted, after decompression (413 beyond)")
	cmd.Flags().StringVar(&blobURL, "blob-url", envDefault("GATEHOUSE_BLOB_URL", ""), "object storage for checkpoints: file:///dir, s3://bucket?region=..., s3://bucket?endpoint=http://host:9000&region=us-east-1&use_path_style=true (default: in the database; env GATEHOUSE_BLOB_URL)")
	cmd.Flags().IntVar(&blobMinBytes, "blob-min-bytes", int(envInt64("GATEHOUSE_BLOB_MIN_BYTES", 64<<10)), "with --blob-url, checkpoints smaller than this stay in the database (env GATEHOUSE_BLOB_MIN_BYTES)")
	cmd.Flags().StringVar(&auditKey, "audit-signing-key", envDefault("GATEHOUSE_AUDIT_SIGNING_KEY", ""), "Ed25519 key that signs audit checkpoints (created if missing; default: audit-signing.key in the data directory)")
	cmd.Flags().StringArrayVar(&auditSinks, "audit-sink", strings.Fields(os.Getenv("GATEHOUSE_AUDIT_SINKS")), "continuous audit export sink URL (repeatable; env GATEHOUSE_AUDIT_SINKS, space-separated)")
	everyDef, _ := time.ParseDuration(envDefault("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "5m"))
	cmd.Flags().DurationVar(&auditEvery, "audit-checkpoint-every", everyDef, "how often the audit log's head is signed")
	cmd.Flags().StringVar(&journal, "journal", envDefault("GATEHOUSE_JOURNAL", "auto"), "journaling protocol for CLIs that ask for it: auto (destroys only, where it wins), on (every update) or off")
	cmd.Flags().Lookup("journal").NoOptDefVal = "on" // a bare --journal means on
	cmd.Flags().IntVar(&deltaCutoff, "delta-checkpoints", int(envInt64("GATEHOUSE_DELTA_CHECKPOINTS", 0)), "advertise delta checkpoints for states of at least this many bytes (0: off)")
	cmd.Flags().BoolVar(&allowPrivateIssuers, "allow-private-issuers", envBool("GATEHOUSE_ALLOW_PRIVATE_ISSUERS"), "let OIDC issuer discovery fetch from loopback, private, link-local and metadata addresses (tests, issuers on an internal network; env GATEHOUSE_ALLOW_PRIVATE_ISSUERS)")
	return cmd
}

// envBool reads a boolean environment variable (1, true, yes, on; anything else is false).
func envBool(name string) bool {
	switch strings.ToLower(strings.TrimSpace(os.Getenv(name))) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func envInt64(name string, def int64) int64 {
	if v := os.Getenv(name); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return def
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("invalid log format %q (json or text)", format)
}
