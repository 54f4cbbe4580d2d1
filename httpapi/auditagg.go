package httpapi

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// auditAggregator keeps floods from outside out of the audit log's size: failed
// authentications that name no known token (no credential, malformed or unknown tokens)
// and rate-limited calls are summarized per (source address, action, outcome) and window.
// The first event of a kind from a source in a window is recorded at once, as it comes;
// the others are counted in memory and recorded as one event when the window ends (or the
// server closes), with details count (how many it stands for), first_seen and last_seen,
// and aggregated=true. 500 bogus requests from one address make a handful of rows, not 500.
//
// Memory is bounded: past maxAggGroups kinds, new sources share a group per network prefix
// (/24 for IPv4, /48 for IPv6), action and outcome, so that a flood from many addresses
// still names where it comes from (source "", details overflow=true and source_prefix);
// past maxAggGroups+maxAggPrefixGroups, one group per action and outcome (no prefix).
// The first event of every group is recorded at once with its own address.
type auditAggregator struct {
	store  gatehouse.Store
	log    *slog.Logger
	now    func() time.Time
	window time.Duration

	mu      sync.Mutex
	groups  map[aggKey]*aggGroup
	pending []gatehouse.AuditEvent // summaries of groups whose window ended, to write

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

type aggKey struct{ src, action, outcome string }

type aggGroup struct {
	ev          gatehouse.AuditEvent // the first event of the window (already recorded)
	start       time.Time
	count       int // events since the first
	first, last time.Time
}

const (
	aggWindow          = time.Minute
	maxAggGroups       = 10000
	maxAggPrefixGroups = 10000
)

// aggPrefix is the network of src that its events are counted in past maxAggGroups: its
// /24 for IPv4, its /48 for IPv6 ("" when src is no address).
func aggPrefix(src string) string {
	ip := net.ParseIP(src)
	if ip == nil {
		return ""
	}
	bits := 48
	if ip4 := ip.To4(); ip4 != nil {
		ip, bits = ip4, 24
	}
	n := 8 * len(ip)
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(bits, n)), Mask: net.CIDRMask(bits, n)}).String()
}

func newAuditAggregator(store gatehouse.Store, log *slog.Logger, now func() time.Time) *auditAggregator {
	a := &auditAggregator{store: store, log: log, now: now, window: aggWindow, groups: map[aggKey]*aggGroup{},
		stop: make(chan struct{}), done: make(chan struct{})}
	go a.loop()
	return a
}

// add counts ev into its group and reports true, or reports false when ev is the first of
// its kind in the window: the caller records it itself, at once.
func (a *auditAggregator) add(ev *gatehouse.AuditEvent) bool {
	now := a.now()
	k := aggKey{ev.SourceIP, ev.Action, ev.Outcome}
	a.mu.Lock()
	defer a.mu.Unlock()
	g, ok := a.groups[k]
	if !ok && len(a.groups) >= maxAggGroups {
		k.src = aggPrefix(k.src)
		g, ok = a.groups[k]
		if !ok && (k.src == "" || len(a.groups) >= maxAggGroups+maxAggPrefixGroups) {
			k.src = ""
			g, ok = a.groups[k]
		}
	}
	if ok && now.Sub(g.start) >= a.window {
		a.retire(k, g)
		ok = false
	}
	if !ok {
		a.groups[k] = &aggGroup{ev: *ev, start: now}
		return false
	}
	if g.count == 0 {
		g.first = now
	}
	g.count++
	g.last = now
	return true
}

// retire ends g's window: its summary (if it counted any) is written by the next flush.
func (a *auditAggregator) retire(k aggKey, g *aggGroup) {
	delete(a.groups, k)
	if g.count == 0 {
		return
	}
	ev := g.ev
	ev.Seq, ev.ID, ev.Hash, ev.PrevHash = 0, "", nil, nil
	ev.Time = time.Time{}
	ev.SourceIP = k.src
	ev.RequestID = ""
	ev.Details = map[string]string{
		"aggregated": "true",
		"count":      strconv.Itoa(g.count),
		"first_seen": g.first.UTC().Format(time.RFC3339Nano),
		"last_seen":  g.last.UTC().Format(time.RFC3339Nano),
	}
	if k.src == "" || strings.Contains(k.src, "/") {
		// A summary of several sources: SourceIP stays an address or empty (exports put
		// it where an address goes); the prefix, when known, is in the details.
		ev.SourceIP = ""
		ev.Details["overflow"] = "true"
		if k.src != "" {
			ev.Details["source_prefix"] = k.src
		}
	}
	a.pending = append(a.pending, ev)
}

// flush writes the summaries of the windows that ended (all of them when all is set).
func (a *auditAggregator) flush(all bool) {
	now := a.now()
	a.mu.Lock()
	for k, g := range a.groups {
		if all || now.Sub(g.start) >= a.window {
			a.retire(k, g)
		}
	}
	evs := a.pending
	a.pending = nil
	a.mu.Unlock()
	if len(evs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := a.store.Update(ctx, func(tx gatehouse.Tx) error {
		for i := range evs {
			ev := evs[i] // a retried transaction starts from the summaries again
			if err := tx.AppendAudit(&ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		a.log.Error("audit: cannot record the summaries of failed calls", "events", len(evs), "err", err)
	}
}

func (a *auditAggregator) loop() {
	defer close(a.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			a.flush(false)
		case <-a.stop:
			a.flush(true)
			return
		}
	}
}

// close writes every summary and stops.
func (a *auditAggregator) close() {
	a.once.Do(func() { close(a.stop) })
	<-a.done
}

// failAggregated records a failed or denied call that comes from outside in numbers (see
// auditAggregator): the first of its kind from its source in a window at once, the
// others as one summary.
func (rq *Request) failAggregated(outcome string, err error) {
	ev := rq.event
	ev.Outcome = outcome
	if err != nil && ev.Reason == "" {
		ev.Reason = auditReason(err)
	}
	if rq.s.auditAgg.add(&ev) {
		return
	}
	rq.s.appendFailure(rq, &ev)
}
