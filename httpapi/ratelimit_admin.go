package httpapi

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

// limitReason names what a 429 of the failed-authentication limiter was for, for
// gatehouse_rate_limited_requests_total: "address" when the source address is blocked,
// otherwise "token_prefix" (the credential's token prefix is). It reads the blocked map
// the refusal was just answered from.
func (l *authLimiter) limitReason(src, prefix string, now time.Time) string {
	keys := limiterKeys(src, prefix)
	l.mu.Lock()
	defer l.mu.Unlock()
	if u, ok := l.blocked[keys[0]]; ok && now.Before(u) {
		return "address"
	}
	if len(keys) > 1 {
		if u, ok := l.blocked[keys[1]]; ok && now.Before(u) {
			return "token_prefix"
		}
	}
	return "address"
}

// rateLimited counts a request answered 429 by the failed-authentication limiter.
func (s *Server) rateLimited(src, prefix string, now time.Time) {
	s.metrics.rateLimit(s.limiter.limitReason(src, prefix, now))
}

// The site administration of the failed-authentication limiter:
//
//	GET    /api/admin/ratelimits           the counters of current windows, highest first
//	DELETE /api/admin/ratelimits/{source}  end a block: delete the counters of an address
//	                                       ("ip:ADDR" or a bare address) or of a token
//	                                       prefix ("tok:PREFIX" or a bare prefix)
//
// A cleared source is refused by no process from its next request on: the counters are
// the store's, and clearing bumps the security epoch, which every request reads; a process
// that sees a newer epoch drops the refusals it remembers (syncLimiter) and asks the store
// again at the next failure (one write), which blocks anew only what is still over the
// limit.

func (s *Server) registerRateLimitRoutes() {
	s.handle(http.MethodGet, "/api/admin/ratelimits", authz.SiteRateLimitRead, s.listRateLimits)
	s.handle(http.MethodDelete, "/api/admin/ratelimits/{source...}", authz.SiteRateLimitClear, s.clearRateLimit)
}

// syncLimiter drops the refusals this process remembers when the security epoch moved past
// the newest it has seen (a block may have been cleared by any process).
func (s *Server) syncLimiter(epoch int64) {
	for {
		seen := s.limiterEpoch.Load()
		if epoch <= seen {
			return
		}
		if s.limiterEpoch.CompareAndSwap(seen, epoch) {
			s.limiter.forget()
			return
		}
	}
}

// limiterFailed counts a failed authentication of rq (authLimiter.failed). A request
// that read its epoch before a block was cleared may have counted before the clearing and
// remember the block after this process dropped its refusals: when the epoch moved since
// rq read it, what this process remembers is dropped again (the store decides at the next
// failure), so that a clearing is never undone by a request in flight.
func (s *Server) limiterFailed(rq *Request, src, prefix string, now time.Time) error {
	err := s.limiter.failed(rq.Context(), s.store, src, prefix, now)
	if s.limiterEpoch.Load() > rq.epoch {
		s.limiter.forget()
	}
	return err
}

// forget drops every remembered refusal (the store's counters stay).
func (l *authLimiter) forget() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.blocked) > 0 {
		l.blocked = map[string]time.Time{}
	}
}

// RateLimitJSON is one counter of the failed-authentication limiter.
type RateLimitJSON struct {
	Source       string `json:"source"` // as DELETE /api/admin/ratelimits/{source} takes it
	Kind         string `json:"kind"`   // address, token_prefix (or other)
	Failures     int    `json:"failures"`
	WindowStart  string `json:"windowStart"` // RFC 3339
	Blocked      bool   `json:"blocked"`
	BlockedUntil string `json:"blockedUntil,omitempty"`
}

// RateLimitsJSON is the answer of GET /api/admin/ratelimits.
type RateLimitsJSON struct {
	Limit         int             `json:"limit"`         // failures per window (0: no limit)
	WindowSeconds int             `json:"windowSeconds"` // the window's length
	RateLimits    []RateLimitJSON `json:"rateLimits"`
	// Truncated: there are more counters than listed (the highest rateLimitListMax are).
	Truncated bool `json:"truncated,omitempty"`
}

// rateLimitListMax bounds the listing (a distributed attack leaves a counter per address).
const rateLimitListMax = 1000

// listRateLimits is GET /api/admin/ratelimits (site administrators).
func (s *Server) listRateLimits(rq *Request) (any, error) {
	window := s.cfg.AuthFailureWindow
	var counts []gatehouse.AuthFailureCount
	if err := rq.View(func(tx gatehouse.Tx) (err error) {
		counts, err = tx.ListAuthFailures(window, rateLimitListMax+1)
		return err
	}); err != nil {
		return nil, err
	}
	out := RateLimitsJSON{Limit: s.cfg.AuthFailureLimit, WindowSeconds: int(window / time.Second), RateLimits: []RateLimitJSON{}}
	if len(counts) > rateLimitListMax {
		counts, out.Truncated = counts[:rateLimitListMax], true
	}
	for _, c := range counts {
		j := RateLimitJSON{Failures: c.Count, WindowStart: c.WindowStart.UTC().Format(time.RFC3339)}
		k := strings.TrimPrefix(c.Key, "auth:")
		switch {
		case strings.HasPrefix(k, "ip:"):
			j.Kind = "address"
		case strings.HasPrefix(k, "tok:"):
			j.Kind = "token_prefix"
		default:
			j.Kind = "other"
		}
		j.Source = k
		if s.cfg.AuthFailureLimit > 0 && c.Count >= s.cfg.AuthFailureLimit {
			j.Blocked, j.BlockedUntil = true, c.WindowStart.Add(window).UTC().Format(time.RFC3339)
		}
		out.RateLimits = append(out.RateLimits, j)
	}
	return out, nil
}

// rateLimitKeys are the store keys a source of DELETE /api/admin/ratelimits/{source} names:
// "ip:ADDR" or an address (also as the limiter counts it, see limiterKeys), "tok:PREFIX" or
// a token prefix.
func rateLimitKeys(source string) (kind string, keys []string, err error) {
	if source == "" || len(source) > 256 || !utf8.ValidString(source) || strings.ContainsFunc(source, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid source: want an address (ip:ADDR) or a token prefix (tok:PREFIX)")
	}
	if p, ok := strings.CutPrefix(source, "tok:"); ok {
		return "token_prefix", []string{"auth:tok:" + p}, nil
	}
	addr, explicit := strings.CutPrefix(source, "ip:")
	_, _, cidrErr := net.ParseCIDR(addr)
	if !explicit && net.ParseIP(addr) == nil && cidrErr != nil {
		return "token_prefix", []string{"auth:tok:" + source}, nil
	}
	keys = []string{"auth:ip:" + addr}
	if k := "auth:" + limiterKeys(addr, "")[0]; k != keys[0] {
		keys = append(keys, k)
	}
	return "address", keys, nil
}

// clearRateLimit is DELETE /api/admin/ratelimits/{source} (site administrators): the
// counters of the source are deleted and the security epoch bumped, in one transaction with
// the audit record, so that no process refuses the source any more.
func (s *Server) clearRateLimit(rq *Request) (any, error) {
	source := rq.PathValue("source")
	kind, keys, err := rateLimitKeys(source)
	if err != nil {
		return nil, err
	}
	rq.event.Target = source
	var n int64
	if err := rq.Change(func(tx gatehouse.Tx) (err error) {
		n, err = tx.ClearAuthFailures(keys...)
		rq.Detail("kind", kind)
		rq.Detail("cleared", strconv.FormatInt(n, 10))
		return err
	}); err != nil {
		return nil, err
	}
	return struct {
		Source  string `json:"source"`
		Kind    string `json:"kind"`
		Cleared int64  `json:"cleared"` // counters deleted (0: none was counted)
	}{source, kind, n}, nil
}
