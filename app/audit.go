package app

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"log/slog"
	mrand "math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// The audit log's server-side jobs: a periodic checkpointer that signs the chain's head, and
// the continuous export to sinks, each run by at most one of the processes that serve the
// database (under a lease in the store). Also the store adapters and the verify and prune
// procedures that `gatehouse audit` runs directly on a database.

// AuditKeyFile is the checkpoint signing key's file name in the data directory.
const AuditKeyFile = "audit-signing.key"

// AuditConfig configures the audit jobs of `gatehouse serve`.
type AuditConfig struct {
	// SigningKey is the path of the Ed25519 checkpoint signing key (PEM, PKCS #8), created
	// with mode 0600 if missing. Default: audit-signing.key in the data directory. Every
	// process serving one database must use the same key.
	SigningKey string
	// Sinks are the continuous export sinks' URLs (see package audit for the forms).
	Sinks []string
	// CheckpointEvery is how often the chain's head is signed (default 5 minutes); the head
	// is also signed at shutdown.
	CheckpointEvery time.Duration

	// LeaseTTL is how long a sink's export lease lasts without renewal (default 30s). The
	// holder renews it every third of that and stops exporting when it cannot.
	LeaseTTL time.Duration
	// Owner names this process in export leases (default: host, pid and a random suffix).
	Owner string
	// Export tunes the exporters (batch size, poll interval, backoff). Logger and
	// Registerer are StartAudit's.
	Export audit.ExporterOptions
	// NewSigningKey allows creating a new signing key although the log has checkpoints
	// signed by another one (the old key is lost for good).
	NewSigningKey bool
	// API, if set, receives the public key that GET /api/admin/auditlogs/verify checks the
	// checkpoints with, and the checkpoint period it judges the newest checkpoint's age by.
	API *httpapi.Server
}

// AuditSigningKeyPath returns the signing key's path: cfg.SigningKey, or the default in dataDir.
func AuditSigningKeyPath(keyPath, dataDir string) (string, error) {
	if keyPath != "" {
		return keyPath, nil
	}
	if dataDir == "" {
		return "", errors.New("no audit signing key: set the key's path or a data directory")
	}
	return filepath.Join(dataDir, AuditKeyFile), nil
}

// LoadAuditSigner loads (or creates) the checkpoint signing key and returns its signer.
func LoadAuditSigner(keyPath, dataDir string) (*audit.Signer, error) {
	path, err := AuditSigningKeyPath(keyPath, dataDir)
	if err != nil {
		return nil, err
	}
	key, err := audit.LoadOrCreateSigningKey(path)
	if err != nil {
		return nil, err
	}
	return audit.NewSigner(key)
}

// auditMetrics are the checkpointer's and the lease holders' metrics.
type auditMetrics struct {
	checkpoints      prometheus.Counter
	checkpointErrors prometheus.Counter
	lastSeq          prometheus.Gauge
	lastTime         prometheus.Gauge
	leaseHeld        *prometheus.GaugeVec
}

func newAuditMetrics(reg prometheus.Registerer) *auditMetrics {
	m := &auditMetrics{
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_checkpoints_total", Help: "Signed audit checkpoints this process stored."}),
		checkpointErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_audit_checkpoint_errors_total", Help: "Failed attempts to sign and store an audit checkpoint."}),
		lastSeq: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_audit_last_checkpoint_seq", Help: "Seq of the last audit checkpoint this process stored."}),
		lastTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "gatehouse_audit_last_checkpoint_timestamp_seconds", Help: "Unix time of the last audit checkpoint this process stored."}),
		leaseHeld: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_audit_export_lease_held", Help: "1 while this process holds the sink's export lease (and exports to it)."}, []string{"sink"}),
	}
	if reg != nil {
		m.checkpoints = registerOrReuse(reg, m.checkpoints)
		m.checkpointErrors = registerOrReuse(reg, m.checkpointErrors)
		m.lastSeq = registerOrReuse(reg, m.lastSeq)
		m.lastTime = registerOrReuse(reg, m.lastTime)
		m.leaseHeld = registerOrReuse(reg, m.leaseHeld)
	}
	return m
}

// registerOrReuse registers c, or returns the collector already registered under its name.
func registerOrReuse[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// auditJobs are the running jobs of one process.
type auditJobs struct {
	store   gatehouse.Store
	signer  *audit.Signer
	cfg     AuditConfig
	log     *slog.Logger
	reg     prometheus.Registerer
	metrics *auditMetrics
}

// StartAudit starts the audit jobs of a serving process: the checkpointer (every
// cfg.CheckpointEvery and at stop) and one exporter per sink in cfg.Sinks, each running
// only while this process holds the sink's lease in the store. Metrics are registered on
// reg (nil: none). The returned stop ends the exporters, gives up their leases and signs a
// last checkpoint; call it before closing the store.
func StartAudit(ctx context.Context, store gatehouse.Store, cfg AuditConfig, dataDir string, log *slog.Logger, reg prometheus.Registerer) (stop func(), err error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log = log.With("component", "audit")
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = 5 * time.Minute
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 30 * time.Second
	}
	if cfg.Owner == "" {
		cfg.Owner = defaultLeaseOwner()
	}
	if err := checkSigningKeyPresent(ctx, store, cfg, dataDir); err != nil {
		return nil, err
	}
	signer, err := LoadAuditSigner(cfg.SigningKey, dataDir)
	if err != nil {
		return nil, err
	}
	if cfg.API != nil {
		cfg.API.SetAuditPublicKey(signer.Public())
		cfg.API.SetAuditCheckpointPeriod(cfg.CheckpointEvery)
	}
	// Sinks are only opened by the lease holder (a file sink repairs a torn last line when
	// it opens, which must not race another process writing it); check the URLs now.
	names := map[string]bool{}
	var sinks []sinkSpec
	for _, raw := range cfg.Sinks {
		name, err := SinkName(raw)
		if err != nil {
			return nil, err
		}
		if names[name] {
			return nil, fmt.Errorf("audit sink %q is configured twice (give one a different name=)", name)
		}
		names[name] = true
		sinks = append(sinks, sinkSpec{url: raw, name: name})
	}
	j := &auditJobs{store: store, signer: signer, cfg: cfg, log: log, reg: reg, metrics: newAuditMetrics(reg)}
	if err := j.checkKey(ctx); err != nil {
		return nil, err
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		j.checkpointLoop(runCtx)
	}()
	for _, sp := range sinks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j.exportLoop(runCtx, sp)
		}()
	}
	log.Info("audit jobs started", "key_id", signer.KeyID(), "checkpoint_every", cfg.CheckpointEvery.String(), "sinks", len(sinks), "owner", cfg.Owner)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer scancel()
			if _, err := j.checkpoint(sctx); err != nil {
				log.Error("audit: final checkpoint failed", "err", err)
			}
		})
	}
	return stop, nil
}

// checkSigningKeyPresent refuses to create a new signing key when the log already has
// checkpoints: they were signed by the missing key, and a new one would make every later
// verification report tampering that never happened. cfg.NewSigningKey overrides it.
func checkSigningKeyPresent(ctx context.Context, store gatehouse.Store, cfg AuditConfig, dataDir string) error {
	path, err := AuditSigningKeyPath(cfg.SigningKey, dataDir)
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) || cfg.NewSigningKey {
		return nil
	}
	last, err := newestCheckpoint(ctx, store)
	if err != nil {
		return err
	}
	if last == nil {
		return nil
	}
	return fmt.Errorf("the audit signing key %s is missing, but the audit log has checkpoints signed by key %s (newest at seq %d); "+
		"refusing to start with a new key, which would make `gatehouse audit verify` report tampering: restore %s (key id %s) from backup, "+
		"or point --audit-signing-key at it; if it is lost for good, start once with --audit-new-signing-key", path, last.KeyID, last.Seq, filepath.Base(path), last.KeyID)
}

// newestCheckpoint is the log's newest checkpoint of either kind (nil: none).
func newestCheckpoint(ctx context.Context, store gatehouse.Store) (*gatehouse.AuditCheckpoint, error) {
	var last *gatehouse.AuditCheckpoint
	err := store.View(ctx, func(tx gatehouse.Tx) error {
		for _, kind := range []string{gatehouse.CheckpointPeriodic, gatehouse.CheckpointRetention} {
			cp, err := tx.LatestAuditCheckpoint(kind)
			if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			if cp != nil && (last == nil || cp.Seq > last.Seq) {
				last = cp
			}
		}
		return nil
	})
	return last, err
}

func defaultLeaseOwner() string {
	host, _ := os.Hostname()
	var b [4]byte
	_, _ = rand.Read(b[:])
	return host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(b[:])
}

// checkKey refuses to start when the newest checkpoint was signed by another key (unless
// cfg.NewSigningKey): verification takes one public key, so every process must sign with the
// same one, and a process with another key would make audit verify report tampering that
// never happened.
func (j *auditJobs) checkKey(ctx context.Context) error {
	last, err := newestCheckpoint(ctx, j.store)
	if err != nil {
		return err
	}
	if last == nil || last.KeyID == j.signer.KeyID() {
		return nil
	}
	if j.cfg.NewSigningKey {
		// Record the change and sign it with the new key at once: from here on the newest
		// checkpoint is the new key's, so the next start needs no flag.
		j.log.Warn("audit: starting with a new signing key (--audit-new-signing-key); checkpoints before this one verify only with the old public key",
			"stored_key_id", last.KeyID, "key_id", j.signer.KeyID())
		if err := j.store.Update(ctx, func(tx gatehouse.Tx) error {
			return tx.AppendAudit(&gatehouse.AuditEvent{
				ActorKind: "system", ActorName: "gatehouse", Action: "audit:signing-key-replaced", Target: "audit-log",
				Outcome: gatehouse.OutcomeSuccess, Details: map[string]string{"old_key_id": last.KeyID, "key_id": j.signer.KeyID()},
			})
		}); err != nil {
			return err
		}
		_, err := j.checkpoint(ctx)
		return err
	}
	return fmt.Errorf("the audit signing key %s is not the one that signed the audit log's newest checkpoint (key %s, seq %d); "+
		"refusing to start, which would make gatehouse audit verify report tampering: every process serving this database must use the same "+
		"key: restore the key with id %s (or point --audit-signing-key at it); if it is lost for good, start once with --audit-new-signing-key",
		j.signer.KeyID(), last.KeyID, last.Seq, last.KeyID)
}

func (j *auditJobs) checkpointLoop(ctx context.Context) {
	t := time.NewTicker(j.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := j.checkpoint(ctx); err != nil && ctx.Err() == nil {
				j.log.Error("audit: checkpoint failed", "err", err)
			}
		}
	}
}

// checkpoint signs the chain's head, stores the checkpoint and records it as an event (so
// that it reaches the sinks too), in one transaction. It does nothing when the log is
// empty or nothing but the last checkpoint's own event was appended since.
func (j *auditJobs) checkpoint(ctx context.Context) (*audit.Checkpoint, error) {
	cp, err := Checkpoint(ctx, j.store, j.signer, gatehouse.CheckpointPeriodic, j.cfg.Owner)
	if err != nil {
		j.metrics.checkpointErrors.Inc()
		return nil, err
	}
	if cp != nil {
		j.metrics.checkpoints.Inc()
		j.metrics.lastSeq.Set(float64(cp.Seq))
		j.metrics.lastTime.Set(float64(cp.Time.UnixNano()) / 1e9)
		j.log.Debug("audit checkpoint", "seq", cp.Seq)
	}
	return cp, nil
}

// Checkpoint signs the audit chain's head with signer, chained to the last checkpoint made,
// stores the checkpoint (of the kind, normally gatehouse.CheckpointPeriodic) and appends an
// audit:checkpoint event carrying it, in one transaction. It returns nil (and stores
// nothing) when the log is empty, the head is already checkpointed, or the only event
// since the last periodic checkpoint is that checkpoint's own event and it is younger than
// audit.IdleCheckpointEvery (an idle log is re-signed that often, so that the newest
// checkpoint's age tells whether checkpoints were removed), or another process extended
// the checkpoint chain at the same moment. by names the process in the event.
func Checkpoint(ctx context.Context, store gatehouse.Store, signer *audit.Signer, kind, by string) (*audit.Checkpoint, error) {
	var made *audit.Checkpoint
	err := store.Update(ctx, func(tx gatehouse.Tx) error {
		made = nil
		seq, hash, err := tx.AuditHead()
		if err != nil || seq == 0 {
			return err
		}
		last, err := tx.LatestAuditCheckpoint(gatehouse.CheckpointPeriodic)
		switch {
		case err == nil:
			if last.Seq >= seq {
				return nil
			}
			if last.Seq == seq-1 && tx.Now().Sub(last.Time) < audit.IdleCheckpointEvery {
				evs, err := tx.ListAudit(gatehouse.AuditFilter{AfterSeq: seq - 1, Ascending: true, Limit: 1})
				if err != nil {
					return err
				}
				if len(evs) == 1 && evs[0].Action == gatehouse.AuditActionCheckpoint {
					return nil
				}
			}
		case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return err
		}
		prev, err := lastCheckpoint(tx)
		if err != nil {
			return err
		}
		cp := signer.Sign(kind, prev, seq, hash, tx.Now())
		ok, err := tx.PutAuditCheckpoint(cp.Stored())
		if err != nil || !ok {
			return err
		}
		if err := tx.AppendAudit(checkpointEvent(cp, by)); err != nil {
			return err
		}
		made = &cp
		return nil
	})
	return made, err
}

// lastCheckpoint returns the checkpoint a new one chains to (nil when there is none).
func lastCheckpoint(tx gatehouse.Tx) (*audit.Checkpoint, error) {
	c, err := tx.LastAuditCheckpoint()
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	cp := audit.FromStored(*c)
	return &cp, nil
}

// checkpointEvent is the audit event that records a checkpoint: everything needed to check
// it later from a SIEM's copy of the log (kind, chain position and predecessor, seq, hash,
// time, key and signature), so that a sink's last one can serve as an outside reference
// (`gatehouse audit verify --checkpoint`).
func checkpointEvent(cp audit.Checkpoint, by string) *gatehouse.AuditEvent {
	d := audit.CheckpointDetails(cp)
	d["by"] = by
	return &gatehouse.AuditEvent{
		ActorKind: "system", ActorName: "gatehouse", Action: gatehouse.AuditActionCheckpoint,
		Target: "audit-log", Outcome: gatehouse.OutcomeSuccess, Details: d,
	}
}

// ToAuditCheckpoint converts a stored checkpoint to the form package audit verifies.
func ToAuditCheckpoint(c gatehouse.AuditCheckpoint) audit.Checkpoint { return audit.FromStored(c) }

// --- continuous export ---

type sinkSpec struct{ url, name string }

// SinkName returns the name a sink URL exports under (its cursor and lease key): the name
// parameter, or the URL without credentials and query, as audit.OpenSink names it.
func SinkName(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the URL, which may hold credentials
		}
		return "", fmt.Errorf("bad audit sink URL: %v", err)
	}
	if u.Scheme == "" {
		return "", errors.New("bad audit sink URL: no scheme (file://, syslog+tcp://, syslog+tls://, https://, s3://, ...)")
	}
	if n := u.Query().Get("name"); n != "" {
		return n, nil
	}
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, Opaque: u.Opaque}
	return r.String(), nil
}

// exportLoop competes for the sink's lease and exports while it holds it.
func (j *auditJobs) exportLoop(ctx context.Context, sp sinkSpec) {
	log := j.log.With("sink", sp.name)
	ttl := j.cfg.LeaseTTL
	for ctx.Err() == nil {
		asked := time.Now()
		held, err := j.acquire(ctx, sp.name)
		if err != nil && ctx.Err() == nil {
			log.Warn("audit: export lease unavailable", "err", err)
		}
		if held {
			j.exportWhileHeld(ctx, sp, log, asked)
			continue
		}
		// Someone else exports: look again within a third of a lease (with jitter, so
		// that processes do not poll in step).
		d := ttl/3 + mrand.N(ttl/6+1)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

func (j *auditJobs) acquire(ctx context.Context, sink string) (bool, error) {
	var ok bool
	err := j.store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		ok, err = tx.AcquireExportLease(sink, j.cfg.Owner, tx.Now().Add(j.cfg.LeaseTTL))
		return err
	})
	return ok && err == nil, err
}

func (j *auditJobs) release(ctx context.Context, sink string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := j.store.Update(ctx, func(tx gatehouse.Tx) error { return tx.ReleaseExportLease(sink, j.cfg.Owner) }); err != nil {
		j.log.Warn("audit: releasing the export lease failed (it will expire)", "sink", sink, "err", err)
	}
}

// exportWhileHeld runs the sink's exporter while the lease lasts: it renews the lease every
// third of its lifetime and stops the exporter as soon as the lease is lost, or when it
// could not be renewed before (most of) its lifetime ran out, then gives the lease up.
// asked is when the lease was requested: it lasts at most until asked + LeaseTTL.
func (j *auditJobs) exportWhileHeld(ctx context.Context, sp sinkSpec, log *slog.Logger, asked time.Time) {
	ttl := j.cfg.LeaseTTL
	// Stop a sixth of a lease before it can have run out (the store measured it from the
	// start of the acquiring transaction, after asked). Processes on other hosts compare
	// against their own clocks: keep them synchronized (NTP) well within that margin.
	deadline := asked.Add(ttl - ttl/6)
	held := j.metrics.leaseHeld.WithLabelValues(sp.name)
	defer j.release(ctx, sp.name)

	xctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sink, err := audit.OpenSink(xctx, sp.url)
	if err != nil {
		log.Error("audit: cannot open sink", "err", err)
		select { // keep the lease a while rather than spin; another process may fare better
		case <-ctx.Done():
		case <-time.After(ttl / 3):
		}
		return
	}
	defer sink.Close()
	if sink.Name() != sp.name {
		log.Warn("audit: sink reports another name; exporting under the configured one", "sink_name", sink.Name())
	}
	held.Set(1)
	defer held.Set(0)
	log.Info("audit: export lease acquired", "owner", j.cfg.Owner)

	opts := j.cfg.Export
	opts.Logger = j.log
	opts.Registerer = j.reg
	x := audit.NewExporter(StoreAuditSource{Store: j.store}, leasedCursors{store: j.store, sink: sp.name, owner: j.cfg.Owner}, sink, opts)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = x.Run(xctx)
	}()
	tick := time.NewTicker(ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			cancel()
			<-done
			return
		case <-tick.C:
			start := time.Now()
			ok, err := j.acquire(ctx, sp.name)
			switch {
			case err == nil && ok:
				deadline = start.Add(ttl - ttl/6)
				continue
			case err == nil:
				log.Warn("audit: export lease lost to another process; stopping the exporter")
			case time.Now().Before(deadline):
				log.Warn("audit: renewing the export lease failed; retrying", "err", err)
				continue
			default:
				log.Error("audit: could not renew the export lease in time; stopping the exporter", "err", err)
			}
			cancel()
			<-done
			return
		}
	}
}

// leasedCursors is the exporter's cursor store: the cursor moves only while this process
// holds the sink's lease (a fence against an exporter that lost it).
type leasedCursors struct {
	store       gatehouse.Store
	sink, owner string
}

var errLeaseLost = errors.New("audit: this process no longer holds the sink's export lease")

func (c leasedCursors) ExportCursor(ctx context.Context, _ string) (int64, error) {
	var seq int64
	err := c.store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		seq, err = tx.ExportCursor(c.sink)
		return err
	})
	return seq, err
}

func (c leasedCursors) SetExportCursor(ctx context.Context, _ string, seq int64) error {
	var ok bool
	err := c.store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		ok, err = tx.AdvanceExportCursor(c.sink, c.owner, seq)
		return err
	})
	if err == nil && !ok {
		return errLeaseLost
	}
	return err
}

// StoreAuditSource reads the audit log from a store, for the Exporter, the Archiver and
// verification (audit.Source and audit.HeadSource).
type StoreAuditSource struct{ Store gatehouse.Store }

// AuditEventsAfter implements audit.Source.
func (s StoreAuditSource) AuditEventsAfter(ctx context.Context, afterSeq int64, limit int) ([]gatehouse.AuditEvent, error) {
	var evs []gatehouse.AuditEvent
	err := s.Store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{AfterSeq: afterSeq, Ascending: true, Limit: limit})
		return err
	})
	return evs, err
}

// AuditHeadSeq implements audit.HeadSource.
func (s StoreAuditSource) AuditHeadSeq(ctx context.Context) (int64, error) {
	var seq int64
	err := s.Store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		seq, _, err = tx.AuditHead()
		return err
	})
	return seq, err
}

// AuditEvents streams the whole audit log in ascending seq, page by page (one short read
// transaction per page).
func AuditEvents(ctx context.Context, store gatehouse.Store) iter.Seq2[gatehouse.AuditEvent, error] {
	return gatehouse.ScanAudit(ctx, store, gatehouse.AuditFilter{})
}

// LastAuditCheckpoint returns the checkpoint made last (ENOTFOUND when there is none).
func LastAuditCheckpoint(ctx context.Context, store gatehouse.Store) (*audit.Checkpoint, error) {
	var cp *audit.Checkpoint
	err := store.View(ctx, func(tx gatehouse.Tx) error {
		c, err := tx.LastAuditCheckpoint()
		if err != nil {
			return err
		}
		v := audit.FromStored(*c)
		cp = &v
		return nil
	})
	return cp, err
}

// AuditCheckpoints loads every stored checkpoint.
func AuditCheckpoints(ctx context.Context, store gatehouse.Store) ([]audit.Checkpoint, error) {
	var cps []gatehouse.AuditCheckpoint
	err := store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		cps, err = tx.ListAuditCheckpoints()
		return err
	})
	out := make([]audit.Checkpoint, len(cps))
	for i := range cps {
		out[i] = ToAuditCheckpoint(cps[i])
	}
	return out, err
}

// VerifyAudit verifies the whole audit log in the store: the hash chain from the genesis
// (or from the retention checkpoint that anchors it after pruning), every stored
// checkpoint's signature under pub and the checkpoint chain. pub may be nil only when
// there are no checkpoints.
func VerifyAudit(ctx context.Context, store gatehouse.Store, pub ed25519.PublicKey) (audit.Report, int, error) {
	return VerifyAuditWith(ctx, store, pub, audit.VerifyOptions{})
}

// VerifyAuditWith is VerifyAudit with options, such as an outside reference checkpoint.
func VerifyAuditWith(ctx context.Context, store gatehouse.Store, pub ed25519.PublicKey, opts audit.VerifyOptions) (audit.Report, int, error) {
	// Checkpoints first: one made while the events are read must not look like a cut tail.
	cps, err := AuditCheckpoints(ctx, store)
	if err != nil {
		return audit.Report{}, 0, err
	}
	if len(cps) > 0 && pub == nil {
		return audit.Report{}, len(cps), fmt.Errorf("the database holds %d signed audit checkpoints: verifying them needs the signing key or its public key", len(cps))
	}
	if opts.Reference != nil && pub == nil {
		return audit.Report{}, len(cps), errors.New("checking an outside reference checkpoint needs the signing key or its public key")
	}
	r, err := audit.VerifyLog(ctx, AuditEvents(ctx, store), cps, pub, opts)
	return r, len(cps), err
}

// --- retention ---

// PruneResult describes what PruneAudit archived and deleted.
type PruneResult struct {
	audit.ArchiveResult
	// Deleted is the number of events deleted from the database.
	Deleted int64
	// ExportLimit is the lowest export cursor (events after it were kept for the sinks that
	// have not received them yet); 0 when no sink has a cursor.
	ExportLimit int64
	// LimitingSink is the sink with that cursor.
	LimitingSink string
	// Checkpoint is the retention checkpoint stored (nil when nothing was pruned).
	Checkpoint *audit.Checkpoint
}

// PruneAudit applies retention: it verifies the log, archives the events older than before
// (but none that an export sink has not acknowledged yet) to sink, then in one transaction
// stores a retention checkpoint signed by signer at the last archived event, deletes the
// archived events and records the prune as an audit event. What remains verifies from that
// checkpoint. It refuses to prune a log that does not verify.
func PruneAudit(ctx context.Context, store gatehouse.Store, signer *audit.Signer, sink audit.Sink, before time.Time, by string) (PruneResult, error) {
	var res PruneResult
	rep, _, err := VerifyAudit(ctx, store, signer.Public())
	if err != nil {
		return res, err
	}
	if !rep.OK {
		return res, fmt.Errorf("refusing to prune: the audit log does not verify: %s", rep)
	}
	var cursors []gatehouse.ExportCursor
	if err := store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		cursors, err = tx.ListExportCursors()
		return err
	}); err != nil {
		return res, err
	}
	for i, c := range cursors {
		if i == 0 || c.Seq < res.ExportLimit {
			res.ExportLimit, res.LimitingSink = c.Seq, c.Sink
		}
	}
	if len(cursors) > 0 && res.ExportLimit == 0 {
		return res, nil // a sink has received nothing yet: nothing may go
	}
	a := audit.Archiver{Source: StoreAuditSource{Store: store}, Sink: sink, MaxSeq: res.ExportLimit}
	ar, aerr := a.Archive(ctx, before)
	res.ArchiveResult = ar
	if ar.Archived == 0 {
		return res, aerr
	}
	errRaced := errors.New("another audit checkpoint was made at the same moment")
	prune := func(tx gatehouse.Tx) error {
		evs, err := tx.ListAudit(gatehouse.AuditFilter{AfterSeq: ar.LastSeq - 1, Ascending: true, Limit: 1})
		if err != nil {
			return err
		}
		if len(evs) != 1 || evs[0].Seq != ar.LastSeq || string(evs[0].Hash) != string(ar.LastHash) {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "the audit event at seq %d changed while it was archived; nothing was pruned", ar.LastSeq)
		}
		// The retention checkpoint is signed here, chained to the last checkpoint made.
		prev, err := lastCheckpoint(tx)
		if err != nil {
			return err
		}
		cp := signer.Sign(gatehouse.CheckpointRetention, prev, ar.LastSeq, ar.LastHash, tx.Now())
		ok, err := tx.PutAuditCheckpoint(cp.Stored())
		if err != nil {
			return err
		}
		if !ok {
			return errRaced // the chain moved on (another process checkpointed): sign again
		}
		res.Checkpoint = &cp
		n, err := tx.PruneAudit(cp.Seq)
		if err != nil {
			return err
		}
		res.Deleted = n
		ev := checkpointEvent(cp, by)
		ev.Action = gatehouse.AuditActionPrune
		ev.Details["archived"] = strconv.Itoa(ar.Archived)
		ev.Details["firstSeq"] = strconv.FormatInt(ar.FirstSeq, 10)
		ev.Details["deleted"] = strconv.FormatInt(n, 10)
		ev.Details["before"] = before.UTC().Format(time.RFC3339)
		ev.Details["archive"] = sink.Name()
		return tx.AppendAudit(ev)
	}
	for range 5 {
		if err = store.Update(ctx, prune); !errors.Is(err, errRaced) {
			break
		}
	}
	if errors.Is(err, errRaced) {
		err = gatehouse.Errorf(gatehouse.ECONFLICT, "%v, five times; nothing was pruned, try again", errRaced)
	}
	if err != nil {
		res.Deleted, res.Checkpoint = 0, nil
		return res, errors.Join(aerr, err)
	}
	return res, aerr
}
