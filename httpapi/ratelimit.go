package httpapi

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/token"
)

// authLimiter limits failed authentications, counted both per source address (an IPv6
// source per /64, see sourceKey) and per credential prefix (the non-secret start of the
// presented token, see credentialPrefix): a brute force of one token from many addresses
// and a spray of tokens from one address are both limited. Counts live in the store, so
// every process sees every failure; each process also remembers the sources and prefixes
// it found over the limit, so that a blocked attacker costs no database write per request.
//
// The limiter only ever refuses failing credentials: the request path authenticates
// first, and a valid credential is served whatever its address or prefix has seen.
type authLimiter struct {
	limit   int
	window  time.Duration
	log     *slog.Logger
	mu      sync.Mutex
	blocked map[string]time.Time // "ip:"+source or "tok:"+prefix -> blocked until
	// lastPrune is when this process last deleted the ended windows' counters (Unix ns).
	lastPrune atomic.Int64
}

// authPruneEvery is how often a process deletes the counters of ended windows, so that
// failures from ever new addresses or prefixes do not grow the table without end.
const authPruneEvery = time.Minute

// maxBlocked bounds the memory of blocked keys under a distributed attack.
const maxBlocked = 100000

func newAuthLimiter(limit int, window time.Duration, log *slog.Logger) *authLimiter {
	return &authLimiter{limit: limit, window: window, log: log, blocked: map[string]time.Time{}}
}

// limiterKeys are the counters a failure from src with a credential of prefix counts in.
func limiterKeys(src, prefix string) []string {
	keys := []string{"ip:" + sourceKey(src)}
	if prefix != "" {
		keys = append(keys, "tok:"+prefix)
	}
	return keys
}

// check returns a rate-limit error when the source or the credential prefix is blocked.
// It reads memory only. Call it for a failed authentication, never before one.
func (l *authLimiter) check(src, prefix string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	var until time.Time
	l.mu.Lock()
	for _, k := range limiterKeys(src, prefix) {
		u, ok := l.blocked[k]
		if ok && !now.Before(u) {
			delete(l.blocked, k)
			continue
		}
		if ok && u.After(until) {
			until = u
		}
	}
	l.mu.Unlock()
	if !until.IsZero() {
		return tooMany(until.Sub(now))
	}
	return nil
}

// checkSource returns a rate-limit error when the address src is blocked: by what this
// process remembers or else by the store's counter of the address (one read), so that a
// source any process saw reach the limit is refused by every process. For sign-in forms
// (POST /login/token), which refuse a blocked address before they look at the credential:
// a form answers a valid token with a session, which a guesser must not get from a blocked
// address. The store is read best effort (an error lets the request through to its own
// checks).
func (l *authLimiter) checkSource(ctx context.Context, store gatehouse.Store, src string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	if err := l.check(src, "", now); err != nil {
		return err
	}
	key := "ip:" + sourceKey(src)
	var n int
	var start time.Time
	err := store.View(ctx, func(tx gatehouse.Tx) (err error) {
		n, start, err = tx.AuthFailures("auth:"+key, l.window)
		return err
	})
	if err != nil || n < l.limit {
		return nil
	}
	until := start.Add(l.window)
	if !now.Before(until) {
		return nil
	}
	l.mu.Lock()
	if len(l.blocked) >= maxBlocked {
		l.blocked = map[string]time.Time{}
	}
	l.blocked[key] = until
	l.mu.Unlock()
	return tooMany(until.Sub(now))
}

// sourceKey is what failures from the address src are counted by: an IPv4 address itself,
// an IPv6 address's /64 (one host usually holds a whole /64 and could rotate through it),
// anything else as it is.
func sourceKey(src string) string {
	ip := net.ParseIP(src)
	if ip == nil {
		return src
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

func tooMany(wait time.Duration) error {
	secs := int(wait/time.Second) + 1
	return &gatehouse.Error{Code: gatehouse.ERATELIMITED, Message: "too many failed authentication attempts; try again later", RetryAfter: secs}
}

// failed records a failed authentication from src with a credential of prefix ("" when
// the credential has none), in one transaction. The failure that reaches the limit is
// still answered as it is; it blocks the address (or prefix) for the rest of the window,
// so later failures get 429 from check. It returns a rate-limit error when the count was
// already past the limit (another process blocked it first).
func (l *authLimiter) failed(ctx context.Context, store gatehouse.Store, src, prefix string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	keys := limiterKeys(src, prefix)
	counts := make([]int, len(keys))
	starts := make([]time.Time, len(keys))
	err := store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error {
		for i, k := range keys {
			var err error
			if counts[i], starts[i], err = tx.RecordAuthFailure("auth:"+k, l.window); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil // counting is best effort; the request fails with 401 anyway
	}
	l.prune(ctx, store, now)
	var over time.Time
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, k := range keys {
		if counts[i] < l.limit {
			continue
		}
		until := starts[i].Add(l.window)
		if len(l.blocked) >= maxBlocked {
			l.blocked = map[string]time.Time{}
		}
		l.blocked[k] = until
		if counts[i] > l.limit && until.After(over) {
			over = until
		}
	}
	if !over.IsZero() {
		return tooMany(over.Sub(now))
	}
	return nil
}

// prune deletes the counters whose window has ended, at most once per authPruneEvery per
// process (best effort: a failure only delays it). It runs in its own transaction, after the
// failure is counted, so that it never holds up or rolls back a count.
func (l *authLimiter) prune(ctx context.Context, store gatehouse.Store, now time.Time) {
	n, last := now.UnixNano(), l.lastPrune.Load()
	if n-last < int64(authPruneEvery) || !l.lastPrune.CompareAndSwap(last, n) {
		return
	}
	err := store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error {
		_, err := tx.PruneAuthFailures(l.window)
		return err
	})
	if err != nil {
		l.log.Warn("cannot prune the failed-authentication counters", "err", err)
	}
}

// credentialPrefix is the part of an Authorization header's credential the limiter counts
// failures by: for a value shaped like a Gatehouse token, its prefix, kind and first four
// characters (token.Redact: about 24 of its 190 bits, safe to store and log); for a
// value with a Gatehouse prefix and kind but the wrong shape, the prefix and kind; for
// anything else, nothing.
func credentialPrefix(authorization string) string {
	_, cred, _ := strings.Cut(authorization, " ")
	r := token.Redact(strings.TrimSpace(cred))
	p, ok := strings.CutSuffix(r, "…(redacted)")
	if !ok {
		return ""
	}
	return p
}
