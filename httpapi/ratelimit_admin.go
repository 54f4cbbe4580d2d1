package httpapi

import "time"

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
