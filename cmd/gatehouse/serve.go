package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/sso"
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

// serveOptions are serve's flags.
type serveOptions struct {
	sf                        storeFlags
	addr, logFormat, logLevel string
	maxBody                   int64
	bodyBudget                int64
	journal                   string
	deltaCutoff               int
	blobURL                   string
	blobMinBytes              int
	auditKey                  string
	auditNewKey               bool
	auditSinks                []string
	usageWindow               time.Duration
	usageMaxClients           int
	auditEvery                time.Duration
	tlsCert, tlsKey           string
	requestLog                bool
	bootstrapOrg              string
	bootstrapAdmin            string
	allowPrivateIssuers       bool
	allowPrivateWebhooks      bool
	trustedProxies            string
	sessionIdle, sessionMax   time.Duration // package sso
	sessionSweep              time.Duration // package sso (sweep.go)
	publicURL                 string
	escMaxOpen                time.Duration
	samlBaseURL               string
	samlClockSkew             time.Duration
	deploy                    deployFlags

	ready func(addr string) // tests: called with the listening address
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the API server",
		Long: `serve runs the API server. On a data directory without a database it creates a new
instance (and says so loudly); on a database without users it creates the first organization
(--bootstrap-org) and its admin (--bootstrap-admin) and writes the admin's access token to
admin.token in the data directory (mode 0600), printing how to log in.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runServe(cmd, &o)
		},
	}
	o.sf.add(cmd)
	addSecretScanningKeysFlag(cmd)
	fs := cmd.Flags()
	fs.StringVar(&o.addr, "addr", envDefault("GATEHOUSE_ADDR", "127.0.0.1:8080"), "listen address host:port (env GATEHOUSE_ADDR)")
	fs.StringVar(&o.logFormat, "log-format", envDefault("GATEHOUSE_LOG_FORMAT", "json"), "log format: json or text (env GATEHOUSE_LOG_FORMAT)")
	fs.StringVar(&o.logLevel, "log-level", envDefault("GATEHOUSE_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env GATEHOUSE_LOG_LEVEL)")
	fs.Int64Var(&o.maxBody, "max-body-bytes", 512<<20, "largest request body accepted, after decompression (413 beyond)")
	bindEnv(fs, "max-body-bytes", "GATEHOUSE_MAX_BODY_BYTES")
	fs.Int64Var(&o.bodyBudget, "body-budget-bytes", 1<<30, "request bodies held in memory at once, across all requests (503 beyond; at least twice --max-body-bytes)")
	bindEnv(fs, "body-budget-bytes", "GATEHOUSE_BODY_BUDGET_BYTES")
	fs.StringVar(&o.blobURL, "blob-url", envDefault("GATEHOUSE_BLOB_URL", ""), "object storage for checkpoints: file:///dir, s3://bucket?region=..., s3://bucket?endpoint=http://host:9000&region=us-east-1&use_path_style=true (default: in the database; env GATEHOUSE_BLOB_URL)")
	fs.IntVar(&o.blobMinBytes, "blob-min-bytes", 64<<10, "with --blob-url, checkpoints smaller than this stay in the database")
	bindEnv(fs, "blob-min-bytes", "GATEHOUSE_BLOB_MIN_BYTES")
	fs.StringVar(&o.auditKey, "audit-signing-key", envDefault("GATEHOUSE_AUDIT_SIGNING_KEY", ""), "Ed25519 key that signs audit checkpoints (created on a new instance; default: audit-signing.key in the data directory)")
	fs.BoolVar(&o.auditNewKey, "audit-new-signing-key", false, "create a new audit signing key although the log has checkpoints signed by another one (only when that key is lost for good)")
	fs.StringArrayVar(&o.auditSinks, "audit-sink", strings.Fields(os.Getenv("GATEHOUSE_AUDIT_SINKS")), "continuous audit export sink URL (repeatable; env GATEHOUSE_AUDIT_SINKS, space-separated)")
	fs.DurationVar(&o.auditEvery, "audit-checkpoint-every", 5*time.Minute, "how often the audit log's head is signed")
	bindEnv(fs, "audit-checkpoint-every", "GATEHOUSE_AUDIT_CHECKPOINT_EVERY")
	fs.StringVar(&o.journal, "journal", envDefault("GATEHOUSE_JOURNAL", "auto"), "journaling protocol for CLIs that ask for it: auto (chosen per update from the client's round trip and the stack's learned parallelism; destroys always), on (every update) or off")
	fs.Lookup("journal").NoOptDefVal = "on" // a bare --journal means on
	fs.IntVar(&o.deltaCutoff, "delta-checkpoints", 0, "advertise delta checkpoints for states of at least this many bytes (0: off)")
	bindEnv(fs, "delta-checkpoints", "GATEHOUSE_DELTA_CHECKPOINTS")
	fs.StringVar(&o.tlsCert, "tls-cert", envDefault("GATEHOUSE_TLS_CERT", ""), "serve HTTPS with this certificate (PEM, chain included; re-read when it changes; env GATEHOUSE_TLS_CERT)")
	fs.StringVar(&o.tlsKey, "tls-key", envDefault("GATEHOUSE_TLS_KEY", ""), "the certificate's private key (PEM; env GATEHOUSE_TLS_KEY)")
	fs.BoolVar(&o.requestLog, "request-log", true, "log one line per request at info (method, route, status, duration, caller, request id)")
	bindEnv(fs, "request-log", "GATEHOUSE_REQUEST_LOG")
	fs.StringVar(&o.trustedProxies, "trusted-proxies", envDefault("GATEHOUSE_TRUSTED_PROXIES", ""), "comma-separated networks (CIDR) of reverse proxies whose X-Forwarded-For names the client; from other peers the header is ignored (env GATEHOUSE_TRUSTED_PROXIES)")
	fs.BoolVar(&o.allowPrivateIssuers, "allow-private-issuers", false, "let OIDC issuer discovery fetch from loopback, private, link-local and metadata addresses (tests, issuers on an internal network)")
	bindEnv(fs, "allow-private-issuers", "GATEHOUSE_ALLOW_PRIVATE_ISSUERS")
	fs.DurationVar(&o.escMaxOpen, "esc-max-open-duration", 24*time.Hour, "longest lifetime an environment open session may ask for (pulumi env open --lifetime; longer is a 400)")
	bindEnv(fs, "esc-max-open-duration", "GATEHOUSE_ESC_MAX_OPEN_DURATION")
	fs.DurationVar(&o.sessionIdle, "session-idle-timeout", 2*time.Hour, "a person's browser session ends when unused this long (env GATEHOUSE_SESSION_IDLE_TIMEOUT)")
	bindEnv(fs, "session-idle-timeout", "GATEHOUSE_SESSION_IDLE_TIMEOUT")
	fs.DurationVar(&o.sessionMax, "session-max-lifetime", 12*time.Hour, "a person's browser session ends this long after sign-in, used or not (shorter when the identity provider says so; env GATEHOUSE_SESSION_MAX_LIFETIME)")
	bindEnv(fs, "session-max-lifetime", "GATEHOUSE_SESSION_MAX_LIFETIME")
	fs.DurationVar(&o.sessionSweep, "session-sweep-interval", sso.DefaultSweepInterval, "how often the server deletes ended browser sessions and expired sign-in states (OIDC, GitHub, SAML) when nobody signs in (env GATEHOUSE_SESSION_SWEEP_INTERVAL)")
	bindEnv(fs, "session-sweep-interval", "GATEHOUSE_SESSION_SWEEP_INTERVAL")
	fs.StringVar(&o.publicURL, "public-url", envDefault("GATEHOUSE_PUBLIC_URL", ""), "the console's external URL, e.g. https://app.gatehouse.example.com: base of the sign-in redirect URIs registered at identity providers and of deployments' console links (default: taken from each request; env GATEHOUSE_PUBLIC_URL)")
	fs.BoolVar(&o.allowPrivateWebhooks, "allow-private-webhooks", false, "let webhooks be created for and delivered to loopback, private, link-local and metadata addresses (tests, receivers on an internal network)")
	bindEnv(fs, "allow-private-webhooks", "GATEHOUSE_ALLOW_PRIVATE_WEBHOOKS")
	fs.DurationVar(&o.usageWindow, "usage-window", 90*24*time.Hour, "how long the token usage inventory remembers a client or a stack a token touched (gatehouse token usage)")
	bindEnv(fs, "usage-window", "GATEHOUSE_USAGE_WINDOW")
	fs.IntVar(&o.usageMaxClients, "usage-max-clients", 50, "most distinct clients (address, user agent, CI identity) the usage inventory keeps per token; more are counted as overflow")
	bindEnv(fs, "usage-max-clients", "GATEHOUSE_USAGE_MAX_CLIENTS")
	fs.StringVar(&o.samlBaseURL, "saml-base-url", envDefault("GATEHOUSE_SAML_BASE_URL", ""), "the API host's public origin (https://api.example.com): SAML entity IDs and ACS URLs are made from it (default: the sessions' public URL; without either, SAML sign-in is off; env GATEHOUSE_SAML_BASE_URL)")
	fs.DurationVar(&o.samlClockSkew, "saml-clock-skew", sso.DefaultSAMLClockSkew, "how far an identity provider's clock may be from this server's when SAML assertions are checked (at most 3m)")
	bindEnv(fs, "saml-clock-skew", "GATEHOUSE_SAML_CLOCK_SKEW")
	o.deploy.add(fs)
	fs.StringVar(&o.bootstrapOrg, "bootstrap-org", envDefault("GATEHOUSE_BOOTSTRAP_ORG", "default"), "on a database without users: name of the first organization (env GATEHOUSE_BOOTSTRAP_ORG)")
	fs.StringVar(&o.bootstrapAdmin, "bootstrap-admin", envDefault("GATEHOUSE_BOOTSTRAP_ADMIN", "admin"), "on a database without users: user name of the first admin (env GATEHOUSE_BOOTSTRAP_ADMIN)")
	return cmd
}

// AdminTokenFile is where serve writes the first admin's token on a new instance.
const AdminTokenFile = "admin.token"

func runServe(cmd *cobra.Command, o *serveOptions) error {
	log, err := newLogger(o.logFormat, o.logLevel, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if (o.tlsCert == "") != (o.tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	var certs *app.CertReloader
	if o.tlsCert != "" {
		if certs, err = app.NewCertReloader(o.tlsCert, o.tlsKey); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	api := httpapi.DefaultConfig()
	api.MaxBodyBytes = o.maxBody
	// One body at the limit always fits, with its compressed copy.
	api.BodyBudgetBytes = max(o.bodyBudget, 2*o.maxBody)
	api.UsageWindow, api.UsageMaxClients = o.usageWindow, o.usageMaxClients
	for _, u := range o.auditSinks {
		// Only the kind: a sink URL may carry credentials.
		kind, _, _ := strings.Cut(u, ":")
		api.AuditExportSinks = append(api.AuditExportSinks, kind)
	}
	api.RequestLog = o.requestLog
	api.EnvMaxOpenDuration = o.escMaxOpen
	switch httpapi.JournalMode(o.journal) {
	case httpapi.JournalAuto, httpapi.JournalOn, httpapi.JournalOff:
		api.Journal = httpapi.JournalMode(o.journal)
	default:
		return fmt.Errorf("--journal must be auto, on or off, not %q", o.journal)
	}
	api.DeltaCheckpointCutoff = o.deltaCutoff
	api.Deploy = o.deploy.options(strings.TrimRight(o.publicURL, "/"))
	if o.deploy.sweep <= 0 {
		return fmt.Errorf("--deploy-sweep-interval must be positive, not %s", o.deploy.sweep)
	}
	api.AllowPrivateIssuers = o.allowPrivateIssuers
	if o.allowPrivateIssuers {
		log.Warn("--allow-private-issuers: OIDC issuer discovery may reach loopback, private and link-local addresses; every organization administrator can make this server fetch from its network")
	}
	api.AllowPrivateWebhooks = o.allowPrivateWebhooks
	if o.allowPrivateWebhooks {
		log.Warn("--allow-private-webhooks: webhooks may deliver to loopback, private and link-local addresses; every organization and stack administrator can make this server post to its network")
	}
	if api.TrustedProxies, err = httpapi.ParseTrustedProxies(o.trustedProxies); err != nil {
		return fmt.Errorf("--trusted-proxies: %w", err)
	}
	if api.SecretScanningKeys, err = secretScanningKeys(cmd); err != nil {
		return err
	}
	if o.sessionIdle <= 0 || o.sessionMax <= 0 {
		return fmt.Errorf("--session-idle-timeout and --session-max-lifetime must be positive")
	}
	if o.sessionSweep <= 0 {
		return fmt.Errorf("--session-sweep-interval must be positive, not %s", o.sessionSweep)
	}
	api.Sessions = httpapi.SessionConfig{IdleTimeout: o.sessionIdle, MaxLifetime: o.sessionMax, PublicURL: strings.TrimRight(o.publicURL, "/"), SweepInterval: o.sessionSweep}
	if o.publicURL != "" && !strings.HasPrefix(o.publicURL, "https://") && !strings.HasPrefix(o.publicURL, "http://") {
		return fmt.Errorf("--public-url must be an http(s):// URL, not %q", o.publicURL)
	}
	api.SAML = sso.SAMLOptions{BaseURL: o.samlBaseURL, ClockSkew: o.samlClockSkew}
	if o.samlClockSkew <= 0 || o.samlClockSkew > sso.MaxSAMLClockSkew {
		return fmt.Errorf("--saml-clock-skew must be positive and at most %s, not %s", sso.MaxSAMLClockSkew, o.samlClockSkew)
	}
	if _, err := sso.NewSAML(nil, api.SAML); err != nil {
		return fmt.Errorf("--saml-base-url: %w", err)
	}
	if o.escMaxOpen <= 0 {
		return fmt.Errorf("--esc-max-open-duration must be positive, not %s", o.escMaxOpen)
	}
	cfg := o.sf.config()
	existed, err := app.StoreExists(cfg)
	if err != nil {
		return err
	}
	if !existed {
		log.Warn("no database found: creating a NEW Gatehouse instance (if you meant an existing one, stop and check --data-dir)", "path", app.SQLitePath(cfg))
	}
	srv, err := app.Open(ctx, cfg, api, log)
	if err != nil {
		return err
	}
	defer srv.Close()
	blobs, err := app.AttachBlobStore(ctx, srv.Store, o.blobURL, o.blobMinBytes)
	if err != nil {
		return err
	}
	defer blobs.Close()
	stopAudit, err := app.StartAudit(ctx, srv.Store, app.AuditConfig{
		SigningKey: o.auditKey, NewSigningKey: o.auditNewKey, Sinks: o.auditSinks, CheckpointEvery: o.auditEvery, API: srv.API,
	}, o.sf.dataDir, log, srv.Registry)
	if err != nil {
		return err
	}
	defer stopAudit() // before srv.Close: ends exporters, releases leases, signs a last checkpoint
	// Webhook deliveries; stopped by srv.Close.
	srv.StartWorkers()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	scheme := "http"
	handler := srv.Handler
	if certs != nil {
		scheme = "https"
		handler = hsts(handler)
	} else if host, _, _ := net.SplitHostPort(ln.Addr().String()); !isLoopbackHost(host) {
		log.Warn("serving plain HTTP on a non-loopback address: tokens and secrets travel unencrypted; use --tls-cert/--tls-key or a TLS-terminating proxy", "addr", ln.Addr().String())
	}
	if err := firstStart(ctx, cmd, o, srv.Store, log, scheme+"://"+displayAddr(o.addr, ln.Addr())); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		// A whole request, body included, must arrive within this: a client that
		// trickles a body cannot hold a connection (and its buffer) forever.
		ReadTimeout:    5 * time.Minute,
		IdleTimeout:    120 * time.Second,
		MaxHeaderBytes: 64 << 10,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		// Each connection's round trip, for the per-update protocol choice.
		ConnContext: httpapi.ConnContext,
	}
	if certs != nil {
		hs.TLSConfig = app.TLSConfig(certs)
		ln = tls.NewListener(ln, hs.TLSConfig)
	}
	log.Info("gatehouse serving", "addr", ln.Addr().String(), "scheme", scheme, "database", srv.Store.Engine(), "keyring", srv.Keyring.Describe(), "version", versionString())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	if o.ready != nil {
		o.ready(ln.Addr().String())
	}
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
}

// displayAddr is the address to tell a user to log in to: the configured one, with the
// real port when it was 0.
func displayAddr(configured string, actual net.Addr) string {
	host, port, err := net.SplitHostPort(configured)
	if err != nil || port == "0" {
		return actual.String()
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// hsts tells browsers to keep using HTTPS (only sent when serving TLS).
func hsts(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", "max-age=31536000")
		h.ServeHTTP(w, r)
	})
}

// firstStart bootstraps a database without users: the first organization and its admin,
// whose token goes to a file (mode 0600) in the data directory, never to a log. Without a
// data directory (a database server) it prints the bootstrap command instead.
func firstStart(ctx context.Context, cmd *cobra.Command, o *serveOptions, store gatehouse.Store, log *slog.Logger, url string) error {
	var n int
	if err := store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		n, err = tx.CountUsers()
		return err
	}); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	stderr := cmd.ErrOrStderr()
	if o.sf.dataDir == "" {
		log.Warn("this database has no users yet: nobody can log in")
		fmt.Fprintf(stderr, "\nGatehouse: this database has no users. Create the first organization and admin with:\n  gatehouse bootstrap --database \"$GATEHOUSE_DATABASE\" --org ORG --admin NAME > admin.token\n\n")
		return nil
	}
	// The token goes to a temporary file first, renamed into place only by the process
	// whose bootstrap committed: of several processes starting on one empty database, the
	// losers never touch the winner's file.
	path := filepath.Join(o.sf.dataDir, AdminTokenFile)
	f, err := os.CreateTemp(o.sf.dataDir, ".admin.token.tmp-*") // mode 0600
	if err != nil {
		return fmt.Errorf("first start: %w", err)
	}
	defer os.Remove(f.Name())
	tok, err := app.Bootstrap(ctx, store, o.bootstrapOrg, o.bootstrapAdmin)
	if err != nil {
		f.Close()
		if gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			return nil // another process bootstrapped it meanwhile
		}
		return fmt.Errorf("first start: %w", err)
	}
	_, werr := fmt.Fprintln(f, tok)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(f.Name(), path)
	}
	if werr != nil {
		return fmt.Errorf("first start: writing the admin token to %s: %w", path, werr)
	}
	log.Warn("new instance bootstrapped: first organization and admin created; the admin's token is in the token file", "org", o.bootstrapOrg, "admin", o.bootstrapAdmin, "token_file", path)
	fmt.Fprintf(stderr, `
Gatehouse: new instance. Created organization %q and its admin %q.
The admin's access token is in %s (mode 0600, shown nowhere else; move it somewhere safe):

  export PULUMI_ACCESS_TOKEN=$(cat %s)
  pulumi login %s

`, o.bootstrapOrg, o.bootstrapAdmin, path, path, url)
	return nil
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("invalid log level %q", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("invalid log format %q (json or text)", format)
}
