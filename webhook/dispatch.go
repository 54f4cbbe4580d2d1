package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/orgkeys"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Headers of a delivery.
const (
	HeaderID        = "Pulumi-Webhook-ID"
	HeaderKind      = "Pulumi-Webhook-Kind"
	HeaderSignature = "Pulumi-Webhook-Signature"
)

// Sign is the Pulumi-Webhook-Signature of body: lowercase hex HMAC-SHA256 keyed with the
// webhook's secret.
func Sign(secret, body []byte) string {
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// KeyLabel is the AAD label of webhook secrets.
const KeyLabel = "gatehouse/webhook-secret/v1:"

// Keys returns the secrets manager of webhook secrets: the stacks' keyring (the same
// envelope scheme) with one data key per organization, kept in the store's meta table.
// A secret is sealed under its organization's key with the organization ID as AAD.
func Keys(stackKeys *secrets.Manager, store gatehouse.Store) *secrets.Manager {
	return orgkeys.Manager(stackKeys, store, keyUse)
}

// keyUse is where webhook data keys live: meta "webhook-key/<org ID>".
var keyUse = orgkeys.Use{Prefix: "webhook-key/", Label: KeyLabel}

// CheckURL refuses payload URLs that are not http(s), carry credentials, or name an
// address or host the delivery guard refuses (loopback, private, link-local, metadata),
// unless allowPrivate. permit exempts single addresses (as netguard.Options.Permit). Host
// names are resolved only when delivering: the guard checks every address then.
func CheckURL(raw string, allowPrivate bool, permit func(netip.AddrPort) bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("payloadUrl must be an absolute http or https URL")
	}
	if u.User != nil {
		return fmt.Errorf("payloadUrl must not carry credentials")
	}
	if allowPrivate {
		return nil
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); err == nil && permit != nil {
		port := u.Port()
		if port == "" {
			port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
		}
		if p, err := strconv.ParseUint(port, 10, 16); err == nil && permit(netip.AddrPortFrom(ip.WithZone("").Unmap(), uint16(p))) {
			return nil
		}
	}
	if r := netguard.ClassifyHost(host); r != "" {
		return fmt.Errorf("payloadUrl %s is not allowed: %s (webhooks are not delivered to this server's own network; an operator may allow it with --allow-private-webhooks)", host, r)
	}
	return nil
}

// Options configure a Dispatcher.
type Options struct {
	// AllowPrivate and Permit are the delivery guard's (netguard.Options).
	AllowPrivate bool
	Permit       func(netip.AddrPort) bool
	// Timeout bounds one delivery (default 10 s).
	Timeout time.Duration
	// Poll is how often the queue is polled when idle (default 1 s).
	Poll time.Duration
	// Lease is how long a claim lasts (default 1 minute; longer than Timeout).
	Lease time.Duration
	// MaxAttempts is how many attempts a delivery gets before it is marked failed (default 5).
	MaxAttempts int
	// Backoff is the wait after the first failed attempt, doubled after each (default 10 s,
	// at most 1 hour).
	Backoff time.Duration
	// Batch is how many deliveries one poll claims (default 16).
	Batch int
	// Retention is how long delivered and failed deliveries stay in the log (default 30
	// days); pruned hourly.
	Retention time.Duration
	// Client overrides the HTTP client (tests); nil: a netguard client with the options above.
	Client *http.Client
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Lease < 2*o.Timeout {
		o.Lease = 2 * o.Timeout
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Backoff <= 0 {
		o.Backoff = 10 * time.Second
	}
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.Retention <= 0 {
		o.Retention = 30 * 24 * time.Hour
	}
}

// Dispatcher delivers queued deliveries. Several, in several processes, may run on one
// store: each delivery is claimed by one at a time.
type Dispatcher struct {
	store  gatehouse.Store
	keys   *secrets.Manager
	log    *slog.Logger
	opt    Options
	client *http.Client

	// inflight counts the worker's attempts under way (at most Batch); running waits for
	// them on Close.
	inflight atomic.Int32
	running  sync.WaitGroup

	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}
	wake    chan struct{}
	started bool
}

// NewDispatcher returns a dispatcher; keys is the webhook secrets' manager (Keys).
func NewDispatcher(store gatehouse.Store, keys *secrets.Manager, log *slog.Logger, opt Options) *Dispatcher {
	opt.defaults()
	c := opt.Client
	if c == nil {
		c = netguard.NewClient(netguard.Options{AllowPrivate: opt.AllowPrivate, Permit: opt.Permit, Timeout: opt.Timeout, MaxRedirects: -1, MaxBodyBytes: 64 << 10})
		// Redirects are not followed: a 3xx is the receiver's answer (a failed attempt).
		c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	}
	return &Dispatcher{store: store, keys: keys, log: log, opt: opt, client: c, wake: make(chan struct{}, 1)}
}

// Start starts the background worker (once); Close stops it.
func (d *Dispatcher) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.started {
		return
	}
	d.started = true
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go d.loop(ctx)
}

// Wake makes the worker poll now (after an event was queued).
func (d *Dispatcher) Wake() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Close stops the worker, abandoning attempts in flight (their claims run out and another
// process, or the next start, delivers them again).
func (d *Dispatcher) Close() {
	d.mu.Lock()
	cancel, done := d.cancel, d.done
	d.cancel = nil
	d.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
		d.running.Wait()
	}
}

func (d *Dispatcher) loop(ctx context.Context) {
	defer close(d.done)
	t := time.NewTimer(0)
	defer t.Stop()
	var pruned time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.wake:
		}
		if time.Since(pruned) > time.Hour {
			pruned = time.Now()
			if err := d.Prune(ctx); err != nil && ctx.Err() == nil {
				d.log.Warn("webhooks: pruning the delivery log failed", "err", err)
			}
		}
		free := d.opt.Batch - int(d.inflight.Load())
		n := 0
		if free > 0 {
			var err error
			n, err = d.start(ctx, free)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("webhooks: polling the delivery queue failed", "err", err)
			}
		}
		wait := d.opt.Poll
		if free > 0 && n == free {
			wait = 10 * time.Millisecond // more may be due
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(wait)
	}
}

// Prune deletes delivered and failed deliveries older than the retention.
func (d *Dispatcher) Prune(ctx context.Context) error {
	return d.store.Update(ctx, func(tx gatehouse.Tx) error {
		_, err := tx.PruneWebhookDeliveries(tx.Now().Add(-d.opt.Retention))
		return err
	})
}

func newLease() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// claim claims up to n due deliveries under a new lease.
func (d *Dispatcher) claim(ctx context.Context, n int) (string, []gatehouse.WebhookDelivery, error) {
	lease := newLease()
	var claimed []gatehouse.WebhookDelivery
	err := d.store.Update(ctx, func(tx gatehouse.Tx) (err error) {
		claimed, err = tx.ClaimWebhookDeliveries(lease, d.opt.Lease, n)
		return err
	})
	return lease, claimed, err
}

// start claims up to n due deliveries and attempts each in the background (the worker): a
// slow receiver holds up only its own deliveries.
func (d *Dispatcher) start(ctx context.Context, n int) (int, error) {
	lease, claimed, err := d.claim(ctx, n)
	if err != nil {
		return 0, err
	}
	for i := range claimed {
		d.running.Add(1)
		d.inflight.Add(1)
		go func(dl *gatehouse.WebhookDelivery) {
			defer d.running.Done()
			defer d.inflight.Add(-1)
			d.attempt(ctx, lease, dl)
			d.Wake() // a slot is free
		}(&claimed[i])
	}
	return len(claimed), nil
}

// RunOnce claims the due deliveries (up to a batch) and attempts each, returning when they
// are done; it returns how many it claimed.
func (d *Dispatcher) RunOnce(ctx context.Context) (int, error) {
	lease, claimed, err := d.claim(ctx, d.opt.Batch)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for i := range claimed {
		wg.Add(1)
		go func(dl *gatehouse.WebhookDelivery) {
			defer wg.Done()
			d.attempt(ctx, lease, dl)
		}(&claimed[i])
	}
	wg.Wait()
	return len(claimed), nil
}

// backoff is the wait after the attempt-th failed attempt.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	w := d.opt.Backoff
	for i := 1; i < attempt && w < time.Hour; i++ {
		w *= 2
	}
	return min(w, time.Hour)
}

func (d *Dispatcher) attempt(ctx context.Context, lease string, dl *gatehouse.WebhookDelivery) {
	var h *gatehouse.Webhook
	var org *gatehouse.Org
	err := d.store.View(ctx, func(tx gatehouse.Tx) (err error) {
		if h, err = tx.GetWebhookByID(dl.WebhookID); err != nil {
			return err
		}
		org, err = tx.GetOrg(h.OrgID)
		return err
	})
	if err != nil {
		if ctx.Err() == nil {
			d.log.Warn("webhooks: cannot load a delivery's webhook", "delivery", dl.ID, "err", err)
		}
		return // the claim runs out and the delivery is tried again (or went with its webhook)
	}
	a := &gatehouse.WebhookAttempt{At: time.Now(), RequestURL: h.PayloadURL}
	if !h.Active {
		// Deactivated since it was queued: not sent.
		a.Status, a.Error = gatehouse.DeliveryCancelled, "cancelled: the webhook was deactivated"
		if err := d.store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error { return tx.RecordWebhookAttempt(dl.ID, lease, a) }); err != nil {
			d.log.Warn("webhooks: cannot record a cancelled delivery", "delivery", dl.ID, "err", err)
		}
		return
	}
	code, err := d.post(ctx, h, org, dl, a)
	if ctx.Err() != nil {
		return // stopped: the claim runs out and it is delivered again
	}
	a.DurationMS = time.Since(a.At).Milliseconds()
	a.ResponseCode = code
	switch {
	case err == nil && code >= 200 && code < 300:
		a.Status = gatehouse.DeliveryDelivered
	case dl.Attempts >= d.opt.MaxAttempts:
		a.Status = gatehouse.DeliveryFailed
	default:
		a.Status, a.RetryAfter = gatehouse.DeliveryPending, d.backoff(dl.Attempts)
	}
	if err != nil {
		a.Error = truncate(err.Error(), 512)
	} else if a.Status != gatehouse.DeliveryDelivered {
		a.Error = "the receiver answered " + strconv.Itoa(code)
	}
	rerr := d.store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error {
		if err := tx.RecordWebhookAttempt(dl.ID, lease, a); err != nil {
			return err
		}
		if a.Status == gatehouse.DeliveryDelivered {
			return nil
		}
		// A failed attempt is audited (the secret and the body never are).
		details := map[string]string{
			"webhook": h.Name, "delivery": dl.UUID, "kind": dl.Kind, "attempt": strconv.Itoa(dl.Attempts),
			"status": a.Status, "response_code": strconv.Itoa(code),
		}
		if h.StackID != 0 {
			details["stack_id"] = strconv.FormatInt(h.StackID, 10)
		}
		return tx.AppendAudit(&gatehouse.AuditEvent{
			OrgID: org.ID, OrgName: org.Name, ActorKind: "system", ActorName: "gatehouse webhooks",
			Action: "webhook:delivery", Target: h.Name, Outcome: gatehouse.OutcomeFailure, Reason: a.Error, Details: details,
		})
	})
	if rerr != nil {
		d.log.Warn("webhooks: cannot record a delivery attempt", "delivery", dl.ID, "err", rerr)
		return
	}
	if a.Status == gatehouse.DeliveryFailed {
		d.log.Warn("webhooks: delivery failed for good", "webhook", h.Name, "delivery", dl.UUID, "attempts", dl.Attempts, "err", a.Error)
	}
}

// post makes one attempt and fills in a's request and response facts.
func (d *Dispatcher) post(ctx context.Context, h *gatehouse.Webhook, org *gatehouse.Org, dl *gatehouse.WebhookDelivery, a *gatehouse.WebhookAttempt) (int, error) {
	if err := CheckURL(h.PayloadURL, d.opt.AllowPrivate, d.opt.Permit); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, d.opt.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.PayloadURL, bytes.NewReader(dl.Payload))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Gatehouse-Webhooks/1")
	req.Header.Set(HeaderID, dl.UUID)
	req.Header.Set(HeaderKind, dl.Kind)
	shown := headerString(req.Header) // before the signature: the log shows it masked
	if h.Secret != nil {
		secret, err := d.keys.Decrypt(ctx, org.ID, h.Secret)
		if err != nil {
			return 0, fmt.Errorf("cannot open the webhook's secret: %w", err)
		}
		req.Header.Set(HeaderSignature, Sign(secret, dl.Payload))
		shown += HeaderSignature + ": <hmac-sha256>\n"
	}
	a.RequestHeaders = shown
	resp, err := d.client.Do(req)
	if err != nil {
		var be *netguard.BlockedError
		if errors.As(err, &be) {
			return 0, be
		}
		// Without the URL (url.Error repeats it): a chat service's incoming-webhook URL is a
		// credential, and the error goes to the audit log and the server's log.
		var ue *url.Error
		if errors.As(err, &ue) {
			return 0, fmt.Errorf("%s: %w", ue.Op, ue.Err)
		}
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	a.ResponseHeaders = truncate(headerString(resp.Header), 4<<10)
	a.ResponseBody = string(body)
	return resp.StatusCode, nil
}

func headerString(h http.Header) string {
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range h[k] {
			b.WriteString(k + ": " + v + "\n")
		}
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// RewrapKeys adapts one transaction's webhook data keys (one per organization, in the meta
// table) to secrets.RewrapStore, for key rotation.
func RewrapKeys(tx gatehouse.Tx) secrets.RewrapStore { return orgkeys.Rewrap(tx, keyUse) }
