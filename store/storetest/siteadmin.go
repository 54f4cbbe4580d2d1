package storetest

import (
	"slices"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testSiteAuditFilter: the filters of the site-wide audit view: events of no organization
// only, by outcome and by source address, with the others.
func testSiteAuditFilter(t *testing.T, e *env) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	specs := []struct {
		org     int64
		action  string
		outcome string
		src     string
	}{
		{1, "stack:create", "success", "192.0.2.1"},        // seq 1
		{0, "auth", "failure", "192.0.2.1"},                // seq 2
		{0, "auth:rate-limited", "denied", "192.0.2.1"},    // seq 3
		{0, "auth", "failure", "198.51.100.7"},             // seq 4
		{1, "stack:delete", "denied", "198.51.100.7"},      // seq 5
		{0, "site:user:disable", "success", "203.0.113.5"}, // seq 6
	}
	e.update(func(tx gatehouse.Tx) error {
		for i, s := range specs {
			ev := &gatehouse.AuditEvent{OrgID: s.org, Action: s.action, Outcome: s.outcome, SourceIP: s.src, Time: t0.Add(time.Duration(i) * time.Minute)}
			if err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		return nil
	})
	seqs := func(f gatehouse.AuditFilter) []int64 {
		t.Helper()
		var out []int64
		e.view(func(tx gatehouse.Tx) error {
			evs, err := tx.ListAudit(f)
			for _, ev := range evs {
				out = append(out, ev.Seq)
			}
			return err
		})
		return out
	}
	for _, c := range []struct {
		f    gatehouse.AuditFilter
		want []int64
	}{
		{gatehouse.AuditFilter{SiteOnly: true}, []int64{6, 4, 3, 2}},
		{gatehouse.AuditFilter{SiteOnly: true, Ascending: true, Limit: 2}, []int64{2, 3}},
		{gatehouse.AuditFilter{SiteOnly: true, Outcome: "failure"}, []int64{4, 2}},
		{gatehouse.AuditFilter{Outcome: "denied"}, []int64{5, 3}},
		{gatehouse.AuditFilter{SourceIP: "192.0.2.1"}, []int64{3, 2, 1}},
		{gatehouse.AuditFilter{SiteOnly: true, SourceIP: "198.51.100.7"}, []int64{4}},
		{gatehouse.AuditFilter{SiteOnly: true, Action: "auth", Since: t0.Add(2 * time.Minute)}, []int64{4}},
		{gatehouse.AuditFilter{SiteOnly: true, Until: t0.Add(2 * time.Minute)}, []int64{2}},
		{gatehouse.AuditFilter{SiteOnly: true, BeforeSeq: 4}, []int64{3, 2}},
		{gatehouse.AuditFilter{OrgID: 1, Outcome: "success"}, []int64{1}},
		{gatehouse.AuditFilter{SiteOnly: true, SourceIP: "192.0.2"}, nil},
	} {
		if got := seqs(c.f); !slices.Equal(got, c.want) {
			t.Errorf("ListAudit(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
}

// testClearAuthFailures: the counters of current windows are listed (highest count
// first) and cleared by key; clearing bumps the security epoch, so that every process
// drops the refusals it remembers.
func testClearAuthFailures(t *testing.T, e *env) {
	const window = 5 * time.Minute
	record := func(key string, n int) {
		t.Helper()
		e.update(func(tx gatehouse.Tx) error {
			for i := 0; i < n; i++ {
				if _, _, err := tx.RecordAuthFailure(key, window); err != nil {
					return err
				}
			}
			return nil
		})
	}
	list := func() []gatehouse.AuthFailureCount {
		t.Helper()
		var out []gatehouse.AuthFailureCount
		e.view(func(tx gatehouse.Tx) (err error) { out, err = tx.ListAuthFailures(window, 0); return err })
		return out
	}
	epoch := func() int64 {
		t.Helper()
		var n int64
		e.view(func(tx gatehouse.Tx) (err error) { n, err = tx.SecurityEpoch(); return err })
		return n
	}
	if got := list(); len(got) != 0 {
		t.Fatalf("ListAuthFailures on a new store = %v, want none", got)
	}
	record("auth:ip:192.0.2.1", 3)
	record("auth:tok:gatehouse_pat_AAAA", 5)
	record("auth:ip:192.0.2.9", 3)
	got := list()
	var keys []string
	for _, c := range got {
		keys = append(keys, c.Key)
		if c.WindowStart.IsZero() {
			t.Errorf("counter %s has no window start", c.Key)
		}
	}
	if want := []string{"auth:tok:gatehouse_pat_AAAA", "auth:ip:192.0.2.1", "auth:ip:192.0.2.9"}; !slices.Equal(keys, want) {
		t.Errorf("ListAuthFailures keys = %q, want %q", keys, want)
	}
	if got[0].Count != 5 || got[1].Count != 3 {
		t.Errorf("ListAuthFailures counts = %v, want 5 then 3", got)
	}
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.ListAuthFailures(window, 2); return err })
	if len(got) != 2 || got[0].Key != "auth:tok:gatehouse_pat_AAAA" {
		t.Errorf("ListAuthFailures with limit 2 = %v, want the two highest", got)
	}

	before := epoch()
	var n int64
	e.update(func(tx gatehouse.Tx) (err error) {
		n, err = tx.ClearAuthFailures("auth:ip:192.0.2.1", "auth:ip:203.0.113.1")
		return err
	})
	if n != 1 {
		t.Errorf("ClearAuthFailures deleted %d, want 1", n)
	}
	if after := epoch(); after <= before {
		t.Errorf("ClearAuthFailures left the security epoch at %d (was %d): processes would keep refusing", after, before)
	}
	var c int
	e.view(func(tx gatehouse.Tx) (err error) {
		c, _, err = tx.AuthFailures("auth:ip:192.0.2.1", window)
		return err
	})
	if c != 0 {
		t.Errorf("AuthFailures after clearing = %d, want 0", c)
	}
	if got := list(); len(got) != 2 {
		t.Errorf("ListAuthFailures after clearing one = %v, want the two others", got)
	}
	// A new failure starts from one.
	record("auth:ip:192.0.2.1", 1)
	e.view(func(tx gatehouse.Tx) (err error) {
		c, _, err = tx.AuthFailures("auth:ip:192.0.2.1", window)
		return err
	})
	if c != 1 {
		t.Errorf("AuthFailures after clearing and one failure = %d, want 1", c)
	}
	// Ended windows are not listed.
	if e.clock != nil {
		e.clock.Advance(window + time.Second)
		if got := list(); len(got) != 0 {
			t.Errorf("ListAuthFailures after the window = %v, want none", got)
		}
	}
}
