package httpapi_test

import (
	"testing"
	"time"
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
