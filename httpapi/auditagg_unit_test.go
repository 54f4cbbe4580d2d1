package httpapi

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestAuditAggOverflowNamesPrefix: past the group cap (a flood from 10,001 IPv6 addresses),
// new sources used to be counted in one summary with source "" that hid them all; now each
// is counted per /24 (IPv4) or /48 (IPv6), its first event is recorded with its address,
// and the summary names the prefix. Past the prefix cap too, one summary per kind remains.
func TestAuditAggOverflowNamesPrefix(t *testing.T) {
	now := time.Now()
	a := &auditAggregator{now: func() time.Time { return now }, window: aggWindow, groups: map[aggKey]*aggGroup{}}
	recorded := map[string]int{} // source -> events recorded at once
	add := func(src string) {
		ev := gatehouse.AuditEvent{SourceIP: src, Action: "auth:failed", Outcome: gatehouse.OutcomeFailure}
		if !a.add(&ev) {
			recorded[ev.SourceIP]++
		}
	}
	for i := 0; i < maxAggGroups+1; i++ {
		add(fmt.Sprintf("2001:db8::%x", i+1))
	}
	for i := 0; i < 50; i++ {
		add("198.51.100.77") // the real attacker
		add(fmt.Sprintf("2001:db8:aaaa:%x::1", i))
	}
	add("198.51.100.78")
	if recorded["198.51.100.77"] != 1 || recorded["2001:db8:aaaa:0::1"] != 1 {
		t.Errorf("the first event of an overflow prefix was not recorded with its address: %d, %d",
			recorded["198.51.100.77"], recorded["2001:db8:aaaa:0::1"])
	}
	a.mu.Lock()
	for k, g := range a.groups {
		a.retire(k, g)
	}
	a.mu.Unlock()
	counts := map[string]int{}
	for _, ev := range a.pending {
		if ev.Details["overflow"] != "true" {
			continue
		}
		if ev.SourceIP != "" {
			t.Errorf("an overflow summary has source %q", ev.SourceIP)
		}
		n, _ := strconv.Atoi(ev.Details["count"])
		counts[ev.Details["source_prefix"]] += n
	}
	want := map[string]int{"198.51.100.0/24": 50, "2001:db8:aaaa::/48": 49, "2001:db8::/48": 0}
	for p, n := range want {
		if counts[p] != n {
			t.Errorf("overflow summary of %s counts %d, want %d (all: %v)", p, counts[p], n, counts)
		}
	}

	// Past the prefix cap as well: new prefixes share one summary without a prefix.
	a.pending = nil
	a.groups = map[aggKey]*aggGroup{}
	for i := 0; i < maxAggGroups+maxAggPrefixGroups; i++ {
		add(fmt.Sprintf("10.%d.%d.1", i/250, i%250))
	}
	if len(a.groups) != maxAggGroups+maxAggPrefixGroups {
		t.Fatalf("%d groups", len(a.groups))
	}
	for i := 0; i < 20; i++ {
		add(fmt.Sprintf("192.0.%d.1", i))
	}
	if len(a.groups) != maxAggGroups+maxAggPrefixGroups+1 {
		t.Errorf("%d groups past both caps, want %d", len(a.groups), maxAggGroups+maxAggPrefixGroups+1)
	}
	a.mu.Lock()
	for k, g := range a.groups {
		a.retire(k, g)
	}
	a.mu.Unlock()
	for _, ev := range a.pending {
		if ev.Details["overflow"] == "true" && (ev.Details["source_prefix"] != "" || ev.Details["count"] != "19") {
			t.Errorf("the last overflow summary: %v", ev.Details)
		}
	}
}
