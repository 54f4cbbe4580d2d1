package posture

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Anomaly kinds.
const (
	AnomalyNewAddress  = "new-address"  // a network the token never used before
	AnomalyOddHour     = "odd-hour"     // an hour of the day (UTC) the token was never active in
	AnomalyDenialBurst = "denial-burst" // many denied requests by the token in one clock hour
	AnomalySpike       = "rate-spike"   // a clock hour far above the token's usual rate
	AnomalyPersonalCI  = "personal-token-in-ci"
)

// AnomalyKinds lists every kind (metrics, docs).
var AnomalyKinds = []string{AnomalyNewAddress, AnomalyOddHour, AnomalyDenialBurst, AnomalySpike, AnomalyPersonalCI}

// AuditActionAnomaly is the audit action of a flagged anomaly (actor: the system).
const AuditActionAnomaly = "posture:anomaly"

// Use is one authenticated request made with an access token.
type Use struct {
	Token *gatehouse.Token
	// OrgID is the organization the request was made in (0: none).
	OrgID int64
	IP    string
	Agent string
	// CISystem is the CI system the request said it runs in (the stock CLI sends
	// "ci.system" in an update's metadata), "" when none.
	CISystem string
	Target   string // "stack:org/project/stack", "env:org/project/env" or ""
	At       time.Time
	Denied   bool
}

// Options configure a Recorder.
type Options struct {
	// Window is how long the inventory remembers a client or target (default 90 days).
	Window time.Duration
	// Limits bound the inventory per token (default 50 clients, 100 targets).
	Limits gatehouse.UsageLimits
	// MaxPending bounds the distinct (token, client, target) keys held between flushes
	// (default 100,000); uses beyond are dropped and counted (Dropped).
	MaxPending int
	// Now is the clock of flushes (anomaly windows use each request's own time).
	Now func() time.Time
	// OnAnomaly is called for every anomaly flagged (after it is committed).
	OnAnomaly func(a gatehouse.Anomaly)
	Log       *slog.Logger
}

type useKey struct {
	tokenID string
	org     int64
	ip      string
	agent   string
	ci      string
	target  string
}

type useAgg struct {
	tok         *gatehouse.Token
	first, last time.Time
	requests    int64
	denied      int64
	hours       uint32
	hourCounts  map[int64][2]int64
}

// Recorder aggregates token uses in memory (Record is a map update under a lock, on the
// request path) and merges them into the store's inventory in one transaction per Flush
// (off the request path), flagging anomalies against what the inventory knew before.
type Recorder struct {
	store   gatehouse.Store
	opts    Options
	mu      sync.Mutex
	pending map[useKey]*useAgg
	dropped atomic.Int64
	flushMu sync.Mutex
}

// NewRecorder returns a recorder writing to store.
func NewRecorder(store gatehouse.Store, o Options) *Recorder {
	if o.Window <= 0 {
		o.Window = 90 * 24 * time.Hour
	}
	if o.Limits.MaxClients <= 0 {
		o.Limits.MaxClients = 50
	}
	if o.Limits.MaxTargets <= 0 {
		o.Limits.MaxTargets = 100
	}
	if o.MaxPending <= 0 {
		o.MaxPending = 100_000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Recorder{store: store, opts: o, pending: map[useKey]*useAgg{}}
}

// Options returns the recorder's options (defaults filled in).
func (r *Recorder) Options() Options { return r.opts }

// Dropped is how many uses were not recorded because too many distinct keys were pending.
func (r *Recorder) Dropped() int64 { return r.dropped.Load() }

// Record notes one use.
func (r *Recorder) Record(u Use) {
	if u.Token == nil {
		return
	}
	k := useKey{tokenID: u.Token.ID, org: u.OrgID, ip: u.IP, agent: u.Agent, ci: u.CISystem, target: u.Target}
	hour := u.At.Unix() / 3600
	bit := uint32(1) << uint(u.At.UTC().Hour())
	r.mu.Lock()
	a := r.pending[k]
	if a == nil {
		if len(r.pending) >= r.opts.MaxPending {
			r.mu.Unlock()
			r.dropped.Add(1)
			return
		}
		a = &useAgg{tok: u.Token, first: u.At, last: u.At, hourCounts: make(map[int64][2]int64, 1)}
		r.pending[k] = a
	}
	a.requests++
	if u.At.Before(a.first) {
		a.first = u.At
	}
	if u.At.After(a.last) {
		a.last = u.At
	}
	c := a.hourCounts[hour]
	c[0]++
	if u.Denied {
		a.denied++
		c[1]++
	}
	a.hourCounts[hour] = c
	a.hours |= bit
	r.mu.Unlock()
}

// Pending is how many distinct keys wait for the next flush.
func (r *Recorder) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

// CIIdentity is the CI identity of a token issued by OIDC token exchange: its issuer and
// the subject claim it was issued for ("" for other tokens).
func CIIdentity(tk *gatehouse.Token) string {
	if tk == nil || tk.Issuer == "" {
		return ""
	}
	sub := strings.TrimPrefix(tk.Description, "issued by OIDC token exchange for ")
	return tk.Issuer + " sub=" + sub
}

// ciAgents are user-agent fragments of CI systems and pipeline tools (lower case).
var ciAgents = []string{
	"github-actions", "githubactions", "gitlab-ci", "gitlab-runner", "jenkins", "buildkite", "circleci",
	"azure-pipelines", "azurepipelines", "teamcity", "travis", "bitbucket-pipelines", "codebuild",
	"drone", "woodpecker", "spacelift", "env0", "tekton", "argo", "atlantis", "pulumi-deployments",
}

// IsCIAgent reports whether a user agent names a CI system.
func IsCIAgent(agent string) bool {
	a := strings.ToLower(agent)
	for _, m := range ciAgents {
		if strings.Contains(a, m) {
			return true
		}
	}
	return false
}

// network is the network an address is judged by for the new-address anomaly: its /24
// (IPv4) or /64 (IPv6), so that a pipeline's pool of neighbouring addresses is one place.
func network(ip string) (netip.Prefix, bool) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	bits := 24
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p, true
}

type tokenBatch struct {
	tok    *gatehouse.Token
	deltas []gatehouse.UsageDelta
}

// Flush merges what was recorded since the last flush into the store and flags anomalies.
// It is safe to call from several goroutines (flushes run one at a time).
func (r *Recorder) Flush(ctx context.Context) error {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	if len(r.pending) == 0 {
		r.mu.Unlock()
		return nil
	}
	pending := r.pending
	r.pending = make(map[useKey]*useAgg, len(pending))
	r.mu.Unlock()

	byToken := map[string]*tokenBatch{}
	var ids []string
	for k, a := range pending {
		b := byToken[k.tokenID]
		if b == nil {
			b = &tokenBatch{tok: a.tok}
			byToken[k.tokenID] = b
			ids = append(ids, k.tokenID)
		}
		ci := CIIdentity(a.tok)
		if ci == "" && k.ci != "" {
			ci = "ci.system=" + k.ci
		}
		b.deltas = append(b.deltas, gatehouse.UsageDelta{
			TokenID: k.tokenID, OrgID: k.org, IP: k.ip, Agent: k.agent, CI: ci, Target: k.target,
			First: a.first, Last: a.last, Requests: a.requests, Denied: a.denied, Hours: a.hours, HourCounts: a.hourCounts,
		})
	}
	sort.Strings(ids) // a stable lock order between processes
	var flagged []gatehouse.Anomaly
	err := r.store.Update(ctx, func(tx gatehouse.Tx) error {
		flagged = flagged[:0]
		settings := map[int64]Settings{}
		for _, id := range ids {
			b := byToken[id]
			tk, err := tx.GetToken(id)
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					continue // deleted meanwhile: nothing to record
				}
				return err
			}
			prior, err := tx.GetTokenUsage(id)
			if err != nil {
				return err
			}
			if tk.OrgID == 0 {
				// A personal token's use is attributed to an organization only when its
				// user is a member there: an outsider's requests must not plant
				// anomalies in (or learn targets of) an organization they are not in.
				member := map[int64]bool{}
				for i := range b.deltas {
					o := b.deltas[i].OrgID
					if o == 0 {
						continue
					}
					ok, seen := member[o]
					if !seen {
						_, err := tx.GetMember(o, tk.UserID)
						if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
							return err
						}
						ok = err == nil && tk.UserID != 0
						member[o] = ok
					}
					if !ok {
						b.deltas[i].OrgID, b.deltas[i].Target = 0, ""
					}
				}
			}
			orgID := tk.OrgID
			if orgID == 0 && len(b.deltas) > 0 {
				orgID = b.deltas[0].OrgID
			}
			s, ok := settings[orgID]
			if !ok {
				if s, err = LoadSettings(tx, orgID); err != nil {
					return err
				}
				settings[orgID] = s
			}
			for i := range b.deltas {
				if tk.OrgID != 0 {
					b.deltas[i].OrgID = tk.OrgID
				}
			}
			found := Detect(tk, prior, b.deltas, s)
			if err := tx.RecordTokenUsage(b.deltas, r.opts.Limits); err != nil {
				return err
			}
			for _, a := range found {
				ok, err := tx.RecordAnomaly(&a)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				if err := tx.AppendAudit(anomalyEvent(tk, a)); err != nil {
					return err
				}
				flagged = append(flagged, a)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if r.opts.OnAnomaly != nil {
		for _, a := range flagged {
			r.opts.OnAnomaly(a)
		}
	}
	return nil
}

// Prune forgets clients and targets not seen within the window, hourly counts older than
// eight days and the inventory of tokens that no longer exist.
func (r *Recorder) Prune(ctx context.Context) (int64, error) {
	now := r.opts.Now()
	var n int64
	err := r.store.Update(ctx, func(tx gatehouse.Tx) (err error) {
		n, err = tx.PruneTokenUsage(now.Add(-r.opts.Window), now.Add(-8*24*time.Hour))
		return err
	})
	return n, err
}

func anomalyEvent(tk *gatehouse.Token, a gatehouse.Anomaly) *gatehouse.AuditEvent {
	return &gatehouse.AuditEvent{
		Time: a.At, OrgID: a.OrgID, ActorKind: "system", ActorName: "posture", TokenID: tk.ID,
		SourceIP: a.IP, UserAgent: a.Agent, Action: AuditActionAnomaly, Target: "token " + tk.Name,
		Outcome: gatehouse.OutcomeSuccess,
		Details: map[string]string{"kind": a.Kind, "window": a.Window, "detail": a.Detail, "token": tk.ID},
	}
}

// Detect compares a token's new uses with its inventory before them and returns the
// anomalies they show (each with its window; the store keeps one per token, kind and
// window). It reads no clock: every judgement uses the requests' own times, so processes
// whose clocks differ judge alike.
//
// False positives are kept low by learning: address, hour and rate anomalies are only
// flagged for a token first seen at least s.LearningDays before the use and with at least
// s.LearningRequests requests; an address counts as known when its /24 (IPv4) or /64
// (IPv6) network was used before.
func Detect(tk *gatehouse.Token, prior *gatehouse.TokenUsage, deltas []gatehouse.UsageDelta, s Settings) []gatehouse.Anomaly {
	s = s.withDefaults()
	var out []gatehouse.Anomaly
	add := func(d gatehouse.UsageDelta, kind, window, detail string, at time.Time) {
		for _, a := range out {
			if a.Kind == kind && a.Window == window {
				return
			}
		}
		out = append(out, gatehouse.Anomaly{OrgID: d.OrgID, TokenID: tk.ID, Kind: kind, Window: window, At: at, Detail: detail, IP: d.IP, Agent: d.Agent})
	}
	learned := func(at time.Time) bool {
		return prior != nil && !prior.FirstSeen.IsZero() && at.Sub(prior.FirstSeen) >= days(s.LearningDays) && prior.Requests >= int64(s.LearningRequests)
	}
	known := map[netip.Prefix]bool{}
	if prior != nil {
		for _, c := range prior.Clients {
			if p, ok := network(c.IP); ok {
				known[p] = true
			}
		}
	}
	// Deterministic order: by time.
	ds := slices.Clone(deltas)
	sort.SliceStable(ds, func(i, j int) bool { return ds[i].First.Before(ds[j].First) })
	for _, d := range ds {
		day := d.First.UTC().Format("2006-01-02")
		if learned(d.First) && len(known) > 0 {
			if p, ok := network(d.IP); ok && !known[p] {
				add(d, AnomalyNewAddress, day, fmt.Sprintf("used from %s (network %s), outside the %d network(s) it used before", d.IP, p, len(known)), d.First)
			}
		}
		if learned(d.First) && prior.HoursMask != 0 {
			if extra := d.Hours &^ prior.HoursMask; extra != 0 {
				add(d, AnomalyOddHour, day, fmt.Sprintf("active at %s UTC, hours it was never active in before (known: %s)", hoursString(extra), hoursString(prior.HoursMask)), d.First)
			}
		}
		if tk.Kind == gatehouse.TokenPersonal && tk.Issuer == "" && (d.CI != "" || IsCIAgent(d.Agent)) {
			why := "user agent " + d.Agent
			if d.CI != "" {
				why = d.CI
			}
			add(d, AnomalyPersonalCI, day, "a personal token used from a CI environment ("+why+"); pipelines should use team or organization tokens, or OIDC token exchange", d.First)
		}
	}
	// Per clock hour, over every client of the token.
	type hc struct{ req, den int64 }
	hours := map[int64]*hc{}
	hourDelta := map[int64]gatehouse.UsageDelta{}
	for _, d := range ds {
		for h, c := range d.HourCounts {
			x := hours[h]
			if x == nil {
				x = &hc{}
				hours[h] = x
				hourDelta[h] = d
			}
			x.req += c[0]
			x.den += c[1]
		}
	}
	hs := make([]int64, 0, len(hours))
	for h := range hours {
		hs = append(hs, h)
	}
	slices.Sort(hs)
	for _, h := range hs {
		x, d := hours[h], hourDelta[h]
		at := time.Unix(h*3600, 0).UTC()
		window := at.Format("2006-01-02T15")
		var before [2]int64
		if prior != nil {
			before = prior.Hours[h]
		}
		if den := before[1] + x.den; den >= int64(s.DenialBurst) {
			add(d, AnomalyDenialBurst, window, fmt.Sprintf("%d denied requests in the hour from %s UTC (threshold %d)", den, at.Format("15:04"), s.DenialBurst), at)
		}
		if learned(at) && prior != nil {
			total := before[0] + x.req
			var sum, n int64
			for ph, c := range prior.Hours {
				if ph < h && ph >= h-7*24 && c[0] > 0 {
					sum += c[0]
					n++
				}
			}
			if n > 0 && total >= int64(s.SpikeMin) {
				mean := float64(sum) / float64(n)
				if float64(total) > s.SpikeFactor*mean {
					add(d, AnomalySpike, window, fmt.Sprintf("%d requests in the hour from %s UTC, %.0fx its average active hour (%.1f) of the last 7 days", total, at.Format("15:04"), float64(total)/mean, mean), at)
				}
			}
		}
	}
	return out
}

func hoursString(mask uint32) string {
	var parts []string
	for h := 0; h < 24; h++ {
		if mask&(1<<uint(h)) != 0 {
			parts = append(parts, fmt.Sprintf("%02d", h))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}
