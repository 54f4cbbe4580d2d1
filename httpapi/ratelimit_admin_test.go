package httpapi_test

import (
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestClearRateLimit: a site administrator lists the failed-authentication counters and
// clears an address's and a token prefix's block with DELETE /api/admin/ratelimits/{source};
// both processes serving the database stop refusing it at once (each remembered the block
// in memory), the clearing is audited, and an organization admin may do neither.
func TestClearRateLimit(t *testing.T) {
	trust := func(c *httpapi.Config) {
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{lo}
	}
	e := newEnv(t, trust)
	e2 := openEnv(t, e.dir, e.admin.Token, trust) // a second process on the same database
	e2.clock = e.clock
	get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("203.0.113.7")}
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(e.url, "garbage"+itoa(i)).Do(get, nil), http.StatusUnauthorized)
	}
	for _, u := range []string{e.url, e.url, e2.url, e2.url} { // each process now remembers the block
		wantStatus(t, cliwire.New(u, "garbage").Do(get, nil), http.StatusTooManyRequests)
	}
	for i := 0; i < 30; i++ {
		get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("198.51.100." + itoa(i+1))}
		wantStatus(t, cliwire.New(e2.url, bogusToken("EEEE", i)).Do(get, nil), http.StatusUnauthorized)
	}
	tokGet := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("192.0.2.200")}
	for _, u := range []string{e.url, e2.url} {
		wantStatus(t, cliwire.New(u, bogusToken("EEEE", 99)).Do(tokGet, nil), http.StatusTooManyRequests)
	}

	var list httpapi.RateLimitsJSON
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/ratelimits"}, &list))
	found := map[string]httpapi.RateLimitJSON{}
	for _, r := range list.RateLimits {
		found[r.Source] = r
	}
	if r := found["ip:203.0.113.7"]; r.Kind != "address" || r.Failures < 30 || !r.Blocked || r.BlockedUntil == "" {
		t.Fatalf("ratelimits: address entry %+v in %+v", r, list)
	}
	if r := found["tok:gatehouse_pat_EEEE"]; r.Kind != "token_prefix" || r.Failures < 30 || !r.Blocked {
		t.Fatalf("ratelimits: prefix entry %+v in %+v", r, list)
	}
	if list.Limit != 30 || list.WindowSeconds != 300 {
		t.Errorf("limit %d per %ds, want 30 per 300s", list.Limit, list.WindowSeconds)
	}

	// Organization admins may neither list nor clear.
	carol, _ := alCreateUser(t, e, "carol", "admin")
	wantStatus(t, carol.Do(cliwire.Call{Method: "GET", Path: "/api/admin/ratelimits"}, nil), 403)
	wantStatus(t, carol.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/203.0.113.7"}, nil), 403)
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusTooManyRequests)

	// Clearing the address (given bare) on one process ends the refusal on both.
	var cleared struct {
		Source  string `json:"source"`
		Kind    string `json:"kind"`
		Cleared int64  `json:"cleared"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/203.0.113.7"}, &cleared))
	if cleared.Kind != "address" || cleared.Cleared != 1 {
		t.Fatalf("clear 203.0.113.7 = %+v", cleared)
	}
	for _, u := range []string{e2.url, e.url} {
		wantStatus(t, cliwire.New(u, "garbage").Do(get, nil), http.StatusUnauthorized)
	}
	// The prefix (given as tok:...) likewise; the address stays as it is.
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/tok:gatehouse_pat_EEEE"}, &cleared))
	if cleared.Kind != "token_prefix" || cleared.Cleared != 1 {
		t.Fatalf("clear tok:gatehouse_pat_EEEE = %+v", cleared)
	}
	for _, u := range []string{e2.url, e.url} {
		wantStatus(t, cliwire.New(u, bogusToken("EEEE", 98)).Do(tokGet, nil), http.StatusUnauthorized)
	}
	// A blocked source elsewhere stays blocked on both processes after a clearing.
	get.Header = from("203.0.113.8")
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(e.url, "garbage"+itoa(i)).Do(get, nil), http.StatusUnauthorized)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/ip:192.0.2.55"}, &cleared))
	if cleared.Cleared != 0 {
		t.Errorf("clearing an address never counted = %+v", cleared)
	}
	for _, u := range []string{e2.url, e.url, e2.url} {
		wantStatus(t, cliwire.New(u, "garbage").Do(get, nil), http.StatusTooManyRequests)
	}
	// An IPv6 network (with its slash) is a source too; nonsense is a 400.
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/ip:2001:db8::" + url.PathEscape("/64")}, &cleared))
	if cleared.Source != "ip:2001:db8::/64" || cleared.Kind != "address" {
		t.Errorf("clear ip:2001:db8::/64 = %+v", cleared)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/tok:" + strings.Repeat("x", 300)}, nil), 400)

	// Audited: who cleared what.
	n := 0
	for _, ev := range alAll(t, e) {
		if ev.Action == "site:ratelimit:clear" && ev.Outcome == "success" && ev.ActorName == "alice" &&
			(ev.Target == "203.0.113.7" && ev.Details["cleared"] == "1" || ev.Target == "tok:gatehouse_pat_EEEE") {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d audit events of the two clearings, want 2", n)
	}
}

// TestClearRateLimitIPv6: an IPv6 client's block is cleared by its address as it is given
// (whatever network the limiter counts it by), and the listing names a source that clear
// takes as it is.
func TestClearRateLimitIPv6(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		c.AuthFailureLimit = 3
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{lo}
	})
	block := func() {
		t.Helper()
		get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("2001:db8::7")}
		for i := 0; i < 3; i++ {
			wantStatus(t, cliwire.New(e.url, "garbage"+itoa(i)).Do(get, nil), http.StatusUnauthorized)
		}
		wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusTooManyRequests)
	}
	served := func() {
		t.Helper()
		get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("2001:db8::7")}
		wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusUnauthorized)
	}
	block()
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/2001:db8::7"}, nil))
	served()
	e.clock.Advance(10 * time.Minute) // a new window
	block()
	var list httpapi.RateLimitsJSON
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/ratelimits"}, &list))
	if len(list.RateLimits) != 1 || !strings.HasPrefix(list.RateLimits[0].Source, "ip:2001:db8:") || !list.RateLimits[0].Blocked {
		t.Fatalf("ratelimits = %+v", list)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/admin/ratelimits/" + url.PathEscape(list.RateLimits[0].Source)}, nil))
	served()
}
