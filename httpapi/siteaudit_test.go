package httpapi_test

import (
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

type alEventJSON struct {
	Timestamp int64  `json:"timestamp"`
	Event     string `json:"event"`
	SourceIP  string `json:"sourceIP"`
	Seq       int64  `json:"seq"`
	Outcome   string `json:"outcome"`
}

type sitePage struct {
	AuditLogEvents    []alEventJSON `json:"auditLogEvents"`
	ContinuationToken *string       `json:"continuationToken"`
}

// TestSiteAuditLog: a site administrator lists the site-wide events (those of no
// organization: failed logins, rate limiting) through GET /api/admin/auditlogs, filtered by
// action, outcome, source address and time; the organization's own listing does not have
// them, and an organization admin who is not a site administrator cannot read them.
func TestSiteAuditLog(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{lo}
	})
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	// 31 failed logins from one address: 30 answered 401, then 429.
	get.Header = from("203.0.113.7")
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(e.url, "garbage"+itoa(i)).Do(get, nil), http.StatusUnauthorized)
	}
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusTooManyRequests)
	get.Header = from("198.51.100.1")
	wantStatus(t, cliwire.New(e.url, bogusToken("DDDD", 1)).Do(get, nil), http.StatusUnauthorized)
	// Something in acme, to see it stays out of the site-wide view.
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))

	var site []int64 // the stored site-wide events, newest first
	for _, ev := range alAll(t, e) {
		if ev.OrgID == 0 {
			site = append([]int64{ev.Seq}, site...)
		}
	}
	list := func(c *cliwire.Client, q url.Values) sitePage {
		t.Helper()
		var pg sitePage
		e.must(c.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs?" + q.Encode()}, &pg))
		return pg
	}
	seqs := func(pg sitePage) []int64 {
		var out []int64
		for _, ev := range pg.AuditLogEvents {
			out = append(out, ev.Seq)
		}
		return out
	}
	all := list(e.admin, url.Values{})
	if got := seqs(all); len(got) == 0 || !slices.Equal(got, site) {
		t.Fatalf("site-wide listing = %v, want the events of no organization %v", got, site)
	}
	var failedFrom7, limited int
	for _, ev := range all.AuditLogEvents {
		if ev.Outcome == gatehouse.OutcomeFailure && ev.SourceIP == "203.0.113.7" {
			failedFrom7++
		}
		if ev.Event == "auth:rate-limited" && ev.Outcome == gatehouse.OutcomeDenied && ev.SourceIP == "203.0.113.7" {
			limited++
		}
	}
	if failedFrom7 == 0 || limited != 1 {
		t.Fatalf("site-wide listing has %d failed logins and %d rate-limit events from 203.0.113.7, want some and 1: %+v", failedFrom7, limited, all)
	}

	// Filters.
	check := func(q url.Values, ok func(ev alEventJSON) bool) {
		t.Helper()
		pg := list(e.admin, q)
		if len(pg.AuditLogEvents) == 0 {
			t.Errorf("%s: no events", q.Encode())
		}
		n := 0
		for _, ev := range all.AuditLogEvents {
			if ok(ev) {
				n++
			}
		}
		for _, ev := range pg.AuditLogEvents {
			if !ok(ev) {
				t.Errorf("%s listed %+v", q.Encode(), ev)
			}
		}
		if len(pg.AuditLogEvents) != n {
			t.Errorf("%s listed %d events, want %d", q.Encode(), len(pg.AuditLogEvents), n)
		}
	}
	check(url.Values{"sourceIp": {"198.51.100.1"}}, func(ev alEventJSON) bool { return ev.SourceIP == "198.51.100.1" })
	check(url.Values{"outcome": {"denied"}}, func(ev alEventJSON) bool { return ev.Outcome == "denied" })
	check(url.Values{"outcome": {"failure"}, "sourceIp": {"203.0.113.7"}}, func(ev alEventJSON) bool {
		return ev.Outcome == "failure" && ev.SourceIP == "203.0.113.7"
	})
	check(url.Values{"eventFilter": {"auth:rate-limited"}}, func(ev alEventJSON) bool { return ev.Event == "auth:rate-limited" })
	newest := all.AuditLogEvents[0].Timestamp
	if pg := list(e.admin, url.Values{"startTime": {strconv.FormatInt(newest+1, 10)}}); len(pg.AuditLogEvents) != 0 {
		t.Errorf("events after the newest: %+v", pg)
	}
	if pg := list(e.admin, url.Values{"endTime": {strconv.FormatInt(newest+1, 10)}, "pageSize": {"1"}}); len(pg.AuditLogEvents) != 1 || pg.ContinuationToken == nil {
		t.Errorf("one page of one: %+v", pg)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs?outcome=maybe"}, nil), 400)

	// The organization's listing keeps to its own events.
	var acme sitePage
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?pageSize=1000"}, &acme))
	for _, ev := range acme.AuditLogEvents {
		if slices.Contains(site, ev.Seq) {
			t.Errorf("acme's listing has the site-wide event %+v", ev)
		}
	}
	// An organization admin who is not a site administrator may not read them.
	carol, _ := alCreateUser(t, e, "carol", "admin")
	wantStatus(t, carol.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs"}, nil), 403)
	e.must(carol.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2"}, nil))
}
