package httpapi

import (
	"context"
	"strings"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/token"
)

// authLimiter limits failed authentications, counted both per source address and per
// credential prefix (the non-secret start of the presented token, see credentialPrefix):
// a brute force of one token from many addresses and a spray of tokens from one address
// are both limited. Counts live in the store, so every process sees every failure; each
// process also remembers the sources and prefixes it found over the limit, so that a
// blocked attacker costs no database write per request.
//
// The limiter only ever refuses failing credentials: the request path authenticates
// first, and a valid credential is served whatever its address or prefix has seen.
type authLimiter struct {
	limit   int
	window  time.Duration
	mu      sync.Mutex
	blocked map[string]time.Time // "ip:"+source or "tok:"+prefix -> blocked until
}

// maxBlocked bounds the memory of blocked keys under a distributed attack.
const maxBlocked = 100000

func newAuthLimiter(limit int, window time.Duration) *authLimiter {
	return &authLimiter{limit: limit, window: window, blocked: map[string]time.Time{}}
}

// limiterKeys are the counters a failure from src with a credential of prefix counts in.
func limiterKeys(src, prefix string) []string {
	keys := []string{"ip:" + src}
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
