package httpapi_test

import (
	"database/sql"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver
)

// TestLeaseExpiryMetric: a call with an expired update lease counts in
// gatehouse_update_lease_expired_total (an alert for CLIs dying mid-update).
func TestLeaseExpiryMetric(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	r, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.clock.Advance(6 * time.Minute)
	wantStatus(t, r.checkpoint(deployment(1, "")), 403)
	mfs, err := e.srv.Registry.Gather()
	e.must(err)
	for _, mf := range mfs {
		if mf.GetName() == "gatehouse_update_lease_expired_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 1 {
				t.Fatalf("gatehouse_update_lease_expired_total = %v, want 1", v)
			}
			return
		}
	}
	t.Fatal("no gatehouse_update_lease_expired_total")
}

// metricValue is the value of the counter name{reason=reason} (-1: no such series).
func metricValue(t *testing.T, e *env, name, reason string) float64 {
	t.Helper()
	mfs, err := e.srv.Registry.Gather()
	e.must(err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// TestRateLimitedMetric: every 429 of the failed-authentication limiter counts in
// gatehouse_rate_limited_requests_total, by reason: the source address or the credential's
// token prefix.
func TestRateLimitedMetric(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{lo}
	})
	const name = "gatehouse_rate_limited_requests_total"
	for _, r := range []string{"address", "token_prefix"} {
		if v := metricValue(t, e, name, r); v != 0 {
			t.Fatalf("%s{reason=%q} = %v at start, want 0", name, r, v)
		}
	}
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	// One prefix from many addresses: blocked by prefix.
	for i := 0; i < 30; i++ {
		get.Header = from("198.51.100." + itoa(i+1))
		wantStatus(t, cliwire.New(e.url, bogusToken("BBBB", i)).Do(get, nil), http.StatusUnauthorized)
	}
	get.Header = from("198.51.100.200")
	wantStatus(t, cliwire.New(e.url, bogusToken("BBBB", 99)).Do(get, nil), http.StatusTooManyRequests)
	wantStatus(t, cliwire.New(e.url, bogusToken("BBBB", 98)).Do(get, nil), http.StatusTooManyRequests)
	// Many prefixes from one address: blocked by address.
	get.Header = from("203.0.113.9")
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(e.url, "garbage"+itoa(i)).Do(get, nil), http.StatusUnauthorized)
	}
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusTooManyRequests)
	if v := metricValue(t, e, name, "token_prefix"); v != 2 {
		t.Errorf("%s{reason=token_prefix} = %v, want 2", name, v)
	}
	if v := metricValue(t, e, name, "address"); v != 1 {
		t.Errorf("%s{reason=address} = %v, want 1", name, v)
	}
}

// TestAuditWriteFailureMetric: a change whose own audit record cannot be written fails (and
// stores nothing), and counts in gatehouse_audit_write_failures_total, like a failed record of
// a refused or failed call does.
func TestAuditWriteFailureMetric(t *testing.T) {
	e := newEnv(t)
	db, err := sql.Open("sqlite", "file:"+filepath.Join(e.dir, "gatehouse.db")+"?_pragma=busy_timeout(10000)")
	e.must(err)
	defer db.Close()
	_, err = db.Exec(`CREATE TRIGGER audit_full BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'disk full'); END`)
	e.must(err)
	before := counterValue(t, e, "gatehouse_audit_write_failures_total")
	err = e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil)
	if cliwire.Status(err) < 500 {
		t.Fatalf("a change whose audit record cannot be written: %v, want a 5xx", err)
	}
	// One for the change's own record (in its transaction), one for the record of the failed call.
	if got := counterValue(t, e, "gatehouse_audit_write_failures_total") - before; got != 2 {
		t.Fatalf("gatehouse_audit_write_failures_total grew by %v, want 2", got)
	}
	_, err = db.Exec(`DROP TRIGGER audit_full`)
	e.must(err)
	var team map[string]any
	if err := e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/ops"}, &team); cliwire.Status(err) != 404 {
		t.Fatalf("the failed change was stored: %v %v", err, team)
	}
}

// counterValue is the value of the unlabelled counter name.
func counterValue(t *testing.T, e *env, name string) float64 {
	t.Helper()
	mfs, err := e.srv.Registry.Gather()
	e.must(err)
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) > 0 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
