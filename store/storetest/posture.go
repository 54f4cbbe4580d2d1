package storetest

import (
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testPosture: the usage inventory merges deltas (counts add up, first seen only moves
// back and last seen only forward, hours OR together), caps clients and targets per token
// and counts the overflow; anomalies are stored once per (token, kind, window);
// allow-lists and ranges round-trip and bump the security epoch; settings round-trip;
// pruning forgets what is out of the window and the inventory of deleted tokens.
func testPosture(t *testing.T, e *env) {
	o := e.org("acme")
	tk := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenOrg, Digest: randDigest(), Name: "ci", OrgID: o.ID, Role: gatehouse.RoleMember}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(tk) })
	now := e.now()
	limits := gatehouse.UsageLimits{MaxClients: 2, MaxTargets: 1}
	d := func(ip string, first, last time.Time, n int64, target string) gatehouse.UsageDelta {
		return gatehouse.UsageDelta{TokenID: tk.ID, OrgID: o.ID, IP: ip, Agent: "cli", First: first, Last: last, Requests: n, Denied: 1,
			Hours: 1 << uint(first.UTC().Hour()), HourCounts: map[int64][2]int64{first.Unix() / 3600: {n, 1}}, Target: target}
	}
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordTokenUsage([]gatehouse.UsageDelta{d("10.0.0.1", now, now.Add(time.Minute), 3, "stack:acme/p/s")}, limits)
	})
	// An older batch (a process whose clock is behind) and a third client over the cap.
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordTokenUsage([]gatehouse.UsageDelta{
			d("10.0.0.1", now.Add(-time.Hour), now.Add(-time.Hour), 2, "stack:acme/p/s"),
			d("10.0.0.2", now, now, 1, "env:acme/p/e"),
			d("10.0.0.3", now, now, 4, ""),
		}, limits)
	})
	var u *gatehouse.TokenUsage
	e.view(func(tx gatehouse.Tx) (err error) { u, err = tx.GetTokenUsage(tk.ID); return err })
	if u.Requests != 10 || u.Denied != 4 || !u.FirstSeen.Equal(now.Add(-time.Hour)) || !u.LastSeen.Equal(now.Add(time.Minute)) {
		t.Errorf("summary = %+v", u)
	}
	if len(u.Clients) != 2 || u.OverflowClients != 1 || u.OverflowRequests != 4 {
		t.Errorf("clients %d (overflow %d, %d requests), want 2 (1, 4)", len(u.Clients), u.OverflowClients, u.OverflowRequests)
	}
	for _, c := range u.Clients {
		if c.IP == "10.0.0.1" && (c.Requests != 5 || !c.FirstSeen.Equal(now.Add(-time.Hour)) || !c.LastSeen.Equal(now.Add(time.Minute))) {
			t.Errorf("client 10.0.0.1 = %+v", c)
		}
	}
	if len(u.Targets) != 1 || u.Targets[0].Kind != "stack" || u.Targets[0].Name != "acme/p/s" || u.Targets[0].Requests != 5 || u.OverflowTargets != 1 {
		t.Errorf("targets = %+v (overflow %d)", u.Targets, u.OverflowTargets)
	}
	if u.HoursMask == 0 || len(u.Hours) == 0 {
		t.Errorf("hours = %b %v", u.HoursMask, u.Hours)
	}
	e.view(func(tx gatehouse.Tx) (err error) { u, err = tx.GetTokenUsage("never-used"); return err })
	if u.Requests != 0 || len(u.Clients) != 0 {
		t.Errorf("unused token's usage = %+v", u)
	}

	// Anomalies: once per (token, kind, window).
	a := gatehouse.Anomaly{OrgID: o.ID, TokenID: tk.ID, Kind: "new-address", Window: "2031-03-04", At: now, Detail: "d", IP: "10.9.9.9"}
	for i, want := range []bool{true, false} {
		var ok bool
		e.update(func(tx gatehouse.Tx) (err error) { a2 := a; ok, err = tx.RecordAnomaly(&a2); return err })
		if ok != want {
			t.Errorf("RecordAnomaly #%d = %v, want %v", i, ok, want)
		}
	}
	var as []gatehouse.Anomaly
	e.view(func(tx gatehouse.Tx) (err error) {
		as, err = tx.ListAnomalies(o.ID, now.Add(-time.Hour), 0)
		return err
	})
	if len(as) != 1 || as[0].IP != "10.9.9.9" || as[0].Window != "2031-03-04" {
		t.Errorf("anomalies = %+v", as)
	}

	// Allow-lists and ranges bump the epoch.
	epoch := func() (n int64) {
		e.view(func(tx gatehouse.Tx) (err error) { n, err = tx.SecurityEpoch(); return err })
		return n
	}
	e0 := epoch()
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutAddressRange(&gatehouse.AddressRange{OrgID: o.ID, Name: "ci", CIDRs: []string{"10.0.0.0/8"}, ModifiedBy: "alice"})
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutAllowList(&gatehouse.AllowList{OrgID: o.ID, TokenID: tk.ID, Entries: []string{"@ci", "192.0.2.1/32"}, ModifiedBy: "alice"})
	})
	if epoch() < e0+2 {
		t.Errorf("allow-list changes did not bump the epoch")
	}
	var l *gatehouse.AllowList
	e.view(func(tx gatehouse.Tx) (err error) { l, err = tx.GetAllowList(o.ID, tk.ID); return err })
	if len(l.Entries) != 2 || l.Entries[0] != "@ci" || l.ModifiedBy != "alice" {
		t.Errorf("allow-list = %+v", l)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetAllowList(o.ID, "")
		wantCode(t, err, gatehouse.ENOTFOUND, "org list unset")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.PutAllowList(&gatehouse.AllowList{OrgID: o.ID, TokenID: tk.ID}) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetAllowList(o.ID, tk.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "emptied list")
		return nil
	})
	var rs []gatehouse.AddressRange
	e.view(func(tx gatehouse.Tx) (err error) { rs, err = tx.ListAddressRanges(o.ID); return err })
	if len(rs) != 1 || rs[0].CIDRs[0] != "10.0.0.0/8" {
		t.Errorf("ranges = %+v", rs)
	}
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteAddressRange(o.ID, "ci") })
	err := e.try(func(tx gatehouse.Tx) error { return tx.DeleteAddressRange(o.ID, "ci") })
	wantCode(t, err, gatehouse.ENOTFOUND, "deleting a deleted range")

	// Settings.
	e.update(func(tx gatehouse.Tx) error { return tx.PutPostureSettings(o.ID, []byte(`{"denialBurst":5}`)) })
	var b []byte
	e.view(func(tx gatehouse.Tx) (err error) { b, err = tx.GetPostureSettings(o.ID); return err })
	if string(b) != `{"denialBurst":5}` {
		t.Errorf("settings = %s", b)
	}

	// Pruning: everything is older than a cutoff in the future; the summary of a live
	// token stays, a deleted token's goes (inventory rows of a token that does not exist).
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordTokenUsage([]gatehouse.UsageDelta{{TokenID: "ghost", IP: "10.0.0.1", First: now, Last: now, Requests: 1}}, limits)
	})
	var st gatehouse.UsageInventoryStats
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.PruneTokenUsage(now.Add(time.Hour), now.Add(time.Hour))
		return err
	})
	e.view(func(tx gatehouse.Tx) (err error) { st, err = tx.UsageInventoryStats(); return err })
	if st.Tokens != 1 || st.Clients != 0 || st.Targets != 0 || st.Hours != 0 || st.Anomalies != 0 {
		t.Errorf("after pruning: %+v", st)
	}
}

// testRaceRecordAnomaly: processes racing to flag the same anomaly store it exactly once.
func testRaceRecordAnomaly(t *testing.T, e *env) {
	o := e.org("acme")
	var stored atomic.Int32
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			ok, err := tx.RecordAnomaly(&gatehouse.Anomaly{OrgID: o.ID, TokenID: "tok", Kind: "odd-hour", Window: "2031-03-04"})
			if ok {
				stored.Add(1)
			}
			return err
		})
	})
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// A retried transaction may count twice; what the store holds is what matters.
	var as []gatehouse.Anomaly
	e.view(func(tx gatehouse.Tx) (err error) { as, err = tx.ListAnomalies(o.ID, time.Time{}, 0); return err })
	if len(as) != 1 || stored.Load() < 1 {
		t.Fatalf("%d anomalies stored (%d reported stored), want 1", len(as), stored.Load())
	}
}
