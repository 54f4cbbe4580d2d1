package httpapi

import (
	"context"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// authLimiter limits failed authentications per source address. Counts live in the store,
// so every process sees every failure; each process also remembers the sources it found
// over the limit, so that a blocked source costs no database read per request.
type authLimiter struct {
	limit   int
	window  time.Duration
	mu      sync.Mutex
	blocked map[string]time.Time // source -> blocked until
}

func newAuthLimiter(limit int, window time.Duration) *authLimiter {
	return &authLimiter{limit: limit, window: window, blocked: map[string]time.Time{}}
}

// check returns a rate-limit error when the source is blocked.
func (l *authLimiter) check(src string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	l.mu.Lock()
	until, ok := l.blocked[src]
	if ok && !now.Before(until) {
		delete(l.blocked, src)
		ok = false
	}
	l.mu.Unlock()
	if ok {
		return tooMany(until.Sub(now))
	}
	return nil
}

func tooMany(wait time.Duration) error {
	secs := int(wait/time.Second) + 1
	return &gatehouse.Error{Code: gatehouse.ERATELIMITED, Message: "too many failed authentication attempts from this address; try again later", RetryAfter: secs}
}

// failed records a failed authentication; it returns a rate-limit error when the source
// has now reached the limit.
func (l *authLimiter) failed(ctx context.Context, store gatehouse.Store, src string, now time.Time) error {
	if l.limit <= 0 {
		return nil
	}
	var count int
	var start time.Time
	err := store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error {
		var err error
		count, start, err = tx.RecordAuthFailure("auth:"+src, l.window)
		return err
	})
	if err != nil {
		return nil // counting is best effort; the request fails with 401 anyway
	}
	if count < l.limit {
		return nil
	}
	until := start.Add(l.window)
	l.mu.Lock()
	if len(l.blocked) > 100000 { // bound memory under a distributed attack
		l.blocked = map[string]time.Time{}
	}
	l.blocked[src] = until
	l.mu.Unlock()
	return tooMany(until.Sub(now))
}
