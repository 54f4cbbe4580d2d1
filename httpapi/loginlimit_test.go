package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// tokenSignInFrom posts the token sign-in form (POST /login/token) as a client at addr
// (behind the trusted proxy 127.0.0.1) and returns the status, the Retry-After header and
// whether a session cookie was set.
func tokenSignInFrom(t *testing.T, e *env, addr, value string) (int, string, bool) {
	t.Helper()
	req, err := http.NewRequest("POST", e.url+"/login/token", strings.NewReader(url.Values{"token": {value}, "return": {"/"}}.Encode()))
	e.must(err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Forwarded-For", addr)
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	e.must(err)
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	cookie := false
	for _, ck := range resp.Cookies() {
		if (ck.Name == sso.DevCookieName || ck.Name == sso.CookieName) && ck.Value != "" {
			cookie = true
		}
	}
	return resp.StatusCode, resp.Header.Get("Retry-After"), cookie
}

// TestTokenSignInRateLimited: failed token sign-ins (POST /login/token) count against the
// same per-address failed-authentication limiter as the API. After limit failures from an
// address, the next attempt is 429 with a Retry-After, even with a correct token, until
// the window passes; another address is unaffected; API failures and form failures add up
// for one address; the attempts are audited without the token values.
func TestTokenSignInRateLimited(t *testing.T) {
	const limit = 5
	e := newEnv(t, func(c *httpapi.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow = limit, time.Minute
		c.TrustedProxies, _ = httpapi.ParseTrustedProxies("127.0.0.1, ::1")
	})
	good := e.admin.Token
	const attacker, other, mixed = "198.51.100.7", "198.51.100.8", "198.51.100.9"
	var bogus []string
	for i := 0; i < limit; i++ {
		v := bogusToken("QQQQ", i)
		bogus = append(bogus, v)
		if st, _, ck := tokenSignInFrom(t, e, attacker, v); st != http.StatusUnauthorized || ck {
			t.Fatalf("wrong token %d: status %d (cookie %v), want 401", i, st, ck)
		}
	}
	if n := authFailures(t, e, "auth:ip:"+attacker); n != limit {
		t.Errorf("failed sign-ins counted for the address: %d, want %d", n, limit)
	}
	// The next failure is throttled.
	st, ra, _ := tokenSignInFrom(t, e, attacker, bogusToken("QQQQ", 99))
	if st != http.StatusTooManyRequests {
		t.Fatalf("wrong token past the limit: status %d, want 429", st)
	}
	if secs, err := strconv.Atoi(ra); err != nil || secs <= 0 || secs > 61 {
		t.Errorf("Retry-After = %q, want seconds within the window", ra)
	}
	// So is a correct token from that address, and the API from it (one limiter).
	if st, ra, ck := tokenSignInFrom(t, e, attacker, good); st != http.StatusTooManyRequests || ra == "" || ck {
		t.Fatalf("correct token from the throttled address: status %d, Retry-After %q, cookie %v; want 429 without a session", st, ra, ck)
	}
	get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from(attacker)}
	wantStatus(t, cliwire.New(e.url, bogusToken("RRRR", 0)).Do(get, nil), http.StatusTooManyRequests)
	// The block holds when this process forgets what it remembers (clearing another
	// address's counters bumps the security epoch; a process that did not serve the
	// failures remembers nothing either): the store's count decides.
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/ip:203.0.113.99"}, nil))
	if st, _, ck := tokenSignInFrom(t, e, attacker, good); st != http.StatusTooManyRequests || ck {
		t.Fatalf("correct token from the throttled address after an epoch change: status %d, cookie %v; want 429", st, ck)
	}
	// Another address is unaffected.
	if st, _, ck := tokenSignInFrom(t, e, other, good); st != http.StatusSeeOther || !ck {
		t.Fatalf("correct token from another address: status %d, cookie %v; want 303 with a session", st, ck)
	}
	// API failures count for the form: limit failed API calls, then the form refuses.
	get.Header = from(mixed)
	for i := 0; i < limit; i++ {
		wantStatus(t, cliwire.New(e.url, bogusToken("SSSS", i)).Do(get, nil), http.StatusUnauthorized)
	}
	if st, _, ck := tokenSignInFrom(t, e, mixed, good); st != http.StatusTooManyRequests || ck {
		t.Fatalf("correct token after API failures from the address: status %d, cookie %v; want 429", st, ck)
	}
	// Once the window has passed, the correct token signs in again.
	e.clock.Advance(2 * time.Minute)
	if st, _, ck := tokenSignInFrom(t, e, attacker, good); st != http.StatusSeeOther || !ck {
		t.Fatalf("correct token after the window: status %d, cookie %v; want 303 with a session", st, ck)
	}
	// A successful sign-in counts nothing.
	var n int
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) {
		n, _, err = tx.AuthFailures("auth:ip:"+attacker, time.Minute)
		return err
	}))
	if n != 0 {
		t.Errorf("failures counted in the new window after a successful sign-in: %d", n)
	}

	evs, err := listAudit(e)
	e.must(err)
	failed, limited := 0, 0
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		for _, v := range append(bogus, good) {
			if strings.Contains(string(b), v) {
				t.Fatalf("audit event %s carries a token value", b)
			}
		}
		if ev.SourceIP != attacker {
			continue
		}
		switch {
		case ev.Action == sso.ActionLogin && ev.Outcome == "failure" && ev.Details["method"] == "token":
			failed++
		case ev.Action == "auth:rate-limited" && ev.Outcome == "denied":
			limited++
		}
	}
	if failed < limit {
		t.Errorf("%d failed token sign-ins audited for the address, want at least %d", failed, limit)
	}
	if limited == 0 {
		t.Errorf("no auth:rate-limited event for the throttled address")
	}
}
