package audit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/prometheus/client_golang/prometheus"
)

// Source reads the audit log in seq order (the store implements it).
type Source interface {
	// AuditEventsAfter returns up to limit events with Seq > afterSeq, in ascending Seq.
	AuditEventsAfter(ctx context.Context, afterSeq int64, limit int) ([]gatehouse.AuditEvent, error)
}

// HeadSource is optionally implemented by a Source that can tell the seq of the newest
// event cheaply; the Exporter then reports its lag exactly instead of as a lower bound.
type HeadSource interface {
	AuditHeadSeq(ctx context.Context) (int64, error)
}

// CursorStore keeps, per sink name, the seq of the last event the sink acknowledged.
type CursorStore interface {
	// ExportCursor returns the sink's cursor, 0 if it has none yet.
	ExportCursor(ctx context.Context, sink string) (int64, error)
	SetExportCursor(ctx context.Context, sink string, seq int64) error
}

// ExporterOptions configure an Exporter. Zero values take the defaults.
type ExporterOptions struct {
	BatchSize    int           // events per batch; default 500
	PollInterval time.Duration // wait when caught up; default 5s
	MinBackoff   time.Duration // first retry delay after a failure; default 1s (capped at MaxBackoff)
	MaxBackoff   time.Duration // retry delay cap; default 5m
	WriteTimeout time.Duration // limit on one Sink.Write; default 1m
	Logger       *slog.Logger  // default: discard
	// Registerer receives the export metrics (nil: not registered). Several exporters may
	// share one; each exports its own sink label.
	Registerer prometheus.Registerer
}

// Exporter copies the audit log to one sink continuously: at least once, in seq order,
// resuming from a persistent cursor. It reads the events after the cursor, writes them as
// a batch, and advances the cursor only after the sink acknowledged the batch. While the
// sink is down it retries the same batch with capped exponential backoff (with jitter), so
// a sink that keys objects by batch (blob) overwrites rather than duplicates.
//
// Run exactly one Exporter per sink name across all Gatehouse processes (for example under
// a lease in the store): two exporters sharing a cursor would interleave batches.
//
// Metrics (label sink = Sink.Name()):
//
//	gatehouse_audit_export_lag_events                      events not yet acknowledged
//	gatehouse_audit_export_last_success_timestamp_seconds  time of the last acknowledged batch
//	gatehouse_audit_export_errors_total                    failed reads, writes and cursor updates
type Exporter struct {
	src  Source
	cur  CursorStore
	sink Sink
	opts ExporterOptions
	log  *slog.Logger

	lag         prometheus.Gauge
	lastSuccess prometheus.Gauge
	errs        prometheus.Counter

	running sync.Mutex
}

// Export metric vectors, shared by every exporter registered on the same Registerer.
func exportMetrics(reg prometheus.Registerer) (lag, last *prometheus.GaugeVec, errs *prometheus.CounterVec) {
	lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_audit_export_lag_events",
		Help: "Audit events not yet acknowledged by the sink (a lower bound when the source cannot tell its head).",
	}, []string{"sink"})
	last = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "gatehouse_audit_export_last_success_timestamp_seconds",
		Help: "Unix time of the last audit batch the sink acknowledged.",
	}, []string{"sink"})
	errs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "gatehouse_audit_export_errors_total",
		Help: "Failed audit export attempts (reading events, writing to the sink, saving the cursor).",
	}, []string{"sink"})
	if reg != nil {
		lag = register(reg, lag)
		last = register(reg, last)
		errs = register(reg, errs)
	}
	return lag, last, errs
}

// register registers c, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		// A conflicting metric of the same name: keep ours unregistered rather than fail.
	}
	return c
}

// NewExporter returns an exporter from src to sink, keeping its cursor in cur under
// sink.Name(). It does not own sink: the caller closes it after Run returns.
func NewExporter(src Source, cur CursorStore, sink Sink, opts ExporterOptions) *Exporter {
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = 5 * time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 5 * time.Minute
	}
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	opts.MinBackoff = min(opts.MinBackoff, opts.MaxBackoff)
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = time.Minute
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	lag, last, errs := exportMetrics(opts.Registerer)
	name := sink.Name()
	return &Exporter{
		src: src, cur: cur, sink: sink, opts: opts,
		log:         log.With("component", "audit-export", "sink", name),
		lag:         lag.WithLabelValues(name),
		lastSuccess: last.WithLabelValues(name),
		errs:        errs.WithLabelValues(name),
	}
}

// Run exports until ctx ends, then returns ctx's error. It never gives up on a failing
// source, sink or cursor store: it counts the error, logs it and retries with backoff.
func (x *Exporter) Run(ctx context.Context) error {
	if !x.running.TryLock() {
		return errors.New("audit: exporter is already running")
	}
	defer x.running.Unlock()
	name := x.sink.Name()

	var cursor int64
	for attempt := 0; ; attempt++ {
		c, err := x.cur.ExportCursor(ctx, name)
		if err == nil {
			cursor = c
			break
		}
		if err := x.retryWait(ctx, "reading the export cursor", err, attempt); err != nil {
			return err
		}
	}
	x.log.Info("audit export started", "cursor", cursor)

	readAttempt := 0
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch, err := x.read(ctx, cursor)
		if err != nil {
			if err := x.retryWait(ctx, "reading audit events", err, readAttempt); err != nil {
				return err
			}
			readAttempt++
			continue
		}
		readAttempt = 0
		if len(batch) == 0 {
			x.setLag(ctx, cursor, 0, false)
			if err := sleepCtx(ctx, x.opts.PollInterval); err != nil {
				return err
			}
			continue
		}
		x.setLag(ctx, cursor, len(batch), len(batch) == x.opts.BatchSize)

		// Deliver this batch, the same one, until the sink acknowledges it.
		for attempt := 0; ; attempt++ {
			err := x.write(ctx, batch)
			if err == nil {
				if attempt > 0 {
					x.log.Info("audit sink recovered", "attempts", attempt+1)
				}
				break
			}
			if err := x.retryWait(ctx, "writing to the audit sink", err, attempt); err != nil {
				return err
			}
		}
		last := batch[len(batch)-1].Seq
		for attempt := 0; ; attempt++ {
			err := x.cur.SetExportCursor(ctx, name, last)
			if err == nil {
				break
			}
			if err := x.retryWait(ctx, "saving the export cursor", err, attempt); err != nil {
				return err
			}
		}
		cursor = last
		x.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		x.log.Debug("audit batch exported", "first", batch[0].Seq, "last", last, "events", len(batch))
		full := len(batch) == x.opts.BatchSize
		x.setLag(ctx, cursor, 0, full)
		if !full {
			if err := sleepCtx(ctx, x.opts.PollInterval); err != nil {
				return err
			}
		}
	}
}

// RunOnce exports everything after the cursor in one pass, batch by batch, without
// retrying: the first error ends it. It returns the number of events acknowledged.
func (x *Exporter) RunOnce(ctx context.Context) (int, error) {
	if !x.running.TryLock() {
		return 0, errors.New("audit: exporter is already running")
	}
	defer x.running.Unlock()
	name := x.sink.Name()
	cursor, err := x.cur.ExportCursor(ctx, name)
	if err != nil {
		x.errs.Inc()
		return 0, fmt.Errorf("audit: reading export cursor of %s: %w", name, err)
	}
	n := 0
	for {
		batch, err := x.read(ctx, cursor)
		if err != nil {
			x.errs.Inc()
			return n, err
		}
		if len(batch) == 0 {
			x.setLag(ctx, cursor, 0, false)
			return n, nil
		}
		x.setLag(ctx, cursor, len(batch), len(batch) == x.opts.BatchSize)
		if err := x.write(ctx, batch); err != nil {
			x.errs.Inc()
			return n, err
		}
		last := batch[len(batch)-1].Seq
		if err := x.cur.SetExportCursor(ctx, name, last); err != nil {
			x.errs.Inc()
			return n, fmt.Errorf("audit: saving export cursor of %s: %w", name, err)
		}
		cursor = last
		n += len(batch)
		x.lastSuccess.Set(float64(time.Now().UnixNano()) / 1e9)
		full := len(batch) == x.opts.BatchSize
		x.setLag(ctx, cursor, 0, full)
		if !full {
			return n, nil
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
	}
}

// read returns the next batch after cursor, checked to be in ascending seq order.
func (x *Exporter) read(ctx context.Context, cursor int64) ([]gatehouse.AuditEvent, error) {
	batch, err := x.src.AuditEventsAfter(ctx, cursor, x.opts.BatchSize)
	if err != nil {
		return nil, fmt.Errorf("audit: reading events after %d: %w", cursor, err)
	}
	// Defensive: drop anything at or before the cursor.
	i := 0
	for i < len(batch) && batch[i].Seq <= cursor {
		i++
	}
	batch = batch[i:]
	prev := cursor
	for j := range batch {
		if batch[j].Seq <= prev {
			return nil, fmt.Errorf("audit: source returned seq %d after %d: not in ascending order", batch[j].Seq, prev)
		}
		if batch[j].Seq != prev+1 {
			x.log.Warn("audit source has a sequence gap (pruned before export?)", "after", prev, "next", batch[j].Seq)
		}
		prev = batch[j].Seq
	}
	return batch, nil
}

func (x *Exporter) write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	wctx, cancel := context.WithTimeout(ctx, x.opts.WriteTimeout)
	defer cancel()
	return x.sink.Write(wctx, batch)
}

// setLag updates the lag gauge: exact when the source tells its head, otherwise pending
// (plus one full batch more when the last read filled a batch: there may be more).
func (x *Exporter) setLag(ctx context.Context, cursor int64, pending int, full bool) {
	if hs, ok := x.src.(HeadSource); ok {
		if head, err := hs.AuditHeadSeq(ctx); err == nil {
			x.lag.Set(float64(max(head-cursor, 0)))
			return
		}
	}
	if full && pending == 0 {
		pending = x.opts.BatchSize
	}
	x.lag.Set(float64(pending))
}

// retryWait counts and logs a failure, then waits the backoff for attempt. It returns an
// error only when ctx ends.
func (x *Exporter) retryWait(ctx context.Context, what string, err error, attempt int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	x.errs.Inc()
	d := x.backoff(attempt)
	x.log.Warn("audit export failed; retrying", "during", what, "err", err, "attempt", attempt+1, "retry_in", d)
	return sleepCtx(ctx, d)
}

// backoff returns the delay before retry attempt (0-based): MinBackoff doubled per attempt,
// capped at MaxBackoff, with "equal jitter" (between half and all of it).
func (x *Exporter) backoff(attempt int) time.Duration {
	d := x.opts.MaxBackoff
	if attempt < 30 {
		if b := x.opts.MinBackoff << attempt; b > 0 && b < d {
			d = b
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
