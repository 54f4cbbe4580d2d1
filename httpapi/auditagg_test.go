package httpapi_test

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestAuditAggregatesFloods: 500 bogus requests from one address (30 failed
// authentications, then 470 rate-limited) used to write 500 audit rows; now the first of
// each kind is recorded at once and the rest as one summary per kind and minute, whose
// counts add up to 500.
func TestAuditAggregatesFloods(t *testing.T) {
	e := newEnv(t)
	before, err := listAudit(e)
	e.must(err)
	var seen int64
	for _, ev := range before {
		seen = max(seen, ev.Seq)
	}
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	for i := 0; i < 500; i++ {
		err := cliwire.New(e.url, bogusToken("HHHH", i)).Do(get, nil)
		if s := cliwire.Status(err); s != http.StatusUnauthorized && s != http.StatusTooManyRequests {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	count := func() (rows, total int) {
		evs, err := listAudit(e)
		e.must(err)
		for _, ev := range evs {
			if ev.Seq <= seen || ev.ActorKind != "anonymous" || ev.Outcome == "success" {
				continue
			}
			rows++
			n := 1
			if c, ok := ev.Details["count"]; ok {
				if n, err = strconv.Atoi(c); err != nil {
					t.Fatalf("count %q", c)
				}
			}
			total += n
		}
		return rows, total
	}
	if rows, _ := count(); rows > 2 {
		t.Errorf("%d audit rows before the summaries are written, want the first of each kind only", rows)
	}
	e.srv.API.Close() // writes the summaries
	rows, total := count()
	if rows > 4 || total != 500 {
		t.Errorf("500 bogus requests: %d audit rows standing for %d requests; want at most 4 rows for 500", rows, total)
	}
}

// TestAuditSummaryAtWindowEnd: a summary is written when its minute is over, without
// waiting for the server to close.
func TestAuditSummaryAtWindowEnd(t *testing.T) {
	e := newEnv(t)
	get := cliwire.Call{Method: "GET", Path: "/api/user", NoAuth: true}
	for i := 0; i < 10; i++ {
		wantStatus(t, e.admin.Do(get, nil), http.StatusUnauthorized)
	}
	e.clock.Advance(2 * time.Minute)
	deadline := time.Now().Add(10 * time.Second)
	for {
		evs, err := listAudit(e)
		e.must(err)
		for _, ev := range evs {
			if ev.Details["aggregated"] == "true" {
				if ev.Details["count"] != "9" || ev.SourceIP != "127.0.0.1" || ev.Outcome != "failure" || ev.Reason == "" {
					t.Fatalf("summary %+v", ev)
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no summary written after the window ended")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
