package gatehouse

import "time"

// AuthFailureCount is one failed-authentication counter: its key ("auth:ip:"+address or
// "auth:tok:"+token prefix), the failures counted in its current window and when that
// window started.
type AuthFailureCount struct {
	Key         string
	Count       int
	WindowStart time.Time
}

// RateLimitAdminTx is the site administration of the failed-authentication counters.
type RateLimitAdminTx interface {
	// ListAuthFailures returns the counters whose window (of this length) has not ended,
	// highest count first (then by key), at most limit of them (limit <= 0: 1000).
	ListAuthFailures(window time.Duration, limit int) ([]AuthFailureCount, error)
	// ClearAuthFailures deletes the counters of keys and returns how many it deleted. It
	// bumps the security epoch, so that every process drops the refusals it remembers
	// (see httpapi's authLimiter).
	ClearAuthFailures(keys ...string) (int64, error)
}
