//go:build unix

package sqlite_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// Audit log benchmarks on the embedded engine (run with -bench; nothing here runs as a test):
//
//	go test ./store/sqlite -run '^$' -bench 'BenchmarkAudit' -benchtime 5s
//
// Set GATEHOUSE_AUDIT_BENCH_DIR to a directory to build the million-event log there once and
// reuse it in later runs.
//
// BenchmarkAuditAppend is the sustained append rate with the hash chain, one event per
// transaction as requests append them (and, for comparison, 100 per transaction).
// BenchmarkAuditQuery1M builds a log of one million events once (in big transactions
// through Tx.AppendAudit, so the chain is real) and times the query behind the v2 listing:
// one organization, one event type, a time range, the first page of 100, newest first.

func TestMain(m *testing.M) {
	code := m.Run()
	if bigDir != "" && !bigKeep {
		if bigDB != nil {
			bigDB.Close()
		}
		os.RemoveAll(bigDir)
	}
	os.Exit(code)
}

var benchActions = []string{
	"stack:create", "stack:update", "stack:read", "stack:export", "stack:import", "stack:decrypt", "stack:encrypt",
	"stack:delete", "stack:rename", "stack:tags", "stack:cancel", "update:lease", "update:complete", "org:update",
	"org:member:write", "org:team:write", "org:token:write", "org:protect", "user:tokens", "user:read",
}

// benchEvent is a realistic event: every field set, two details.
func benchEvent(i int, at time.Time) gatehouse.AuditEvent {
	org := int64(i%10 + 1)
	return gatehouse.AuditEvent{
		Time: at, OrgID: org, OrgName: "org" + strconv.FormatInt(org, 10), ActorKind: "user",
		ActorName: "user" + strconv.Itoa(i%50), UserID: int64(i%50 + 1), SourceIP: "10.20.30." + strconv.Itoa(i%250),
		UserAgent: "pulumi/3.260.0 (linux; amd64)", Action: benchActions[(i/10)%len(benchActions)],
		Target:  fmt.Sprintf("org%d/project%d/stack%d", org, i%7, i%13),
		Outcome: gatehouse.OutcomeSuccess, RequestID: fmt.Sprintf("%024x", i),
		Details: map[string]string{"update": fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), "kind": "update"},
	}
}

func openBench(b *testing.B, dir string) *sqlstore.DB {
	b.Helper()
	db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return db
}

// cpuTime is the CPU time (user and system) the process used so far. Events per CPU second
// do not depend on what else the machine runs, unlike events per second.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportRate reports events/s (wall clock) and events/cpu-s since cpu0.
func reportRate(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
	if cpu := cpuTime() - cpu0; cpu > 0 {
		b.ReportMetric(float64(b.N)/cpu.Seconds(), "events/cpu-s")
	}
}

func BenchmarkAuditAppend(b *testing.B) {
	ctx := context.Background()
	b.Run("one-per-tx", func(b *testing.B) {
		db := openBench(b, b.TempDir())
		defer db.Close()
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := 0; i < b.N; i++ {
			e := benchEvent(i, time.Time{})
			if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.AppendAudit(&e) }); err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, cpu0)
	})
	b.Run("one-per-tx-parallel", func(b *testing.B) {
		// Concurrent requests: the chain's head serializes them.
		db := openBench(b, b.TempDir())
		defer db.Close()
		b.SetParallelism(4)
		b.ResetTimer()
		cpu0 := cpuTime()
		var n sync.Mutex
		i := 0
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				n.Lock()
				i++
				e := benchEvent(i, time.Time{})
				n.Unlock()
				if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.AppendAudit(&e) }); err != nil {
					b.Error(err)
					return
				}
			}
		})
		reportRate(b, cpu0)
	})
	b.Run("100-per-tx", func(b *testing.B) {
		db := openBench(b, b.TempDir())
		defer db.Close()
		b.ResetTimer()
		cpu0 := cpuTime()
		for i := 0; i < b.N; i += 100 {
			err := db.Update(ctx, func(tx gatehouse.Tx) error {
				for j := i; j < min(i+100, b.N); j++ {
					e := benchEvent(j, time.Time{})
					if err := tx.AppendAudit(&e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
		}
		reportRate(b, cpu0)
	})
}

const bigEvents = 1_000_000

var (
	bigOnce  sync.Once
	bigDir   string
	bigKeep  bool // GATEHOUSE_AUDIT_BENCH_DIR: build the log there once and keep it
	bigDB    *sqlstore.DB
	bigStart time.Time // time of the first event; events are 30 s apart (about a year)
	bigErr   error
)

// bigLog builds the million-event log once per test binary run.
func bigLog(b *testing.B) *sqlstore.DB {
	bigOnce.Do(func() {
		ctx := context.Background()
		if bigDir = os.Getenv("GATEHOUSE_AUDIT_BENCH_DIR"); bigDir != "" {
			bigKeep = true
		} else if bigDir, bigErr = os.MkdirTemp("", "gatehouse-audit-bench-"); bigErr != nil {
			return
		}
		db, err := sqlite.Open(ctx, bigDir, sqlite.Options{})
		if err != nil {
			bigErr = err
			return
		}
		bigDB = db
		bigStart = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
		var head int64
		if bigErr = db.View(ctx, func(tx gatehouse.Tx) error { var err error; head, _, err = tx.AuditHead(); return err }); bigErr != nil {
			return
		}
		if head == bigEvents {
			return // built by an earlier run
		}
		if head != 0 {
			bigErr = fmt.Errorf("%s holds a log of %d events, not %d: remove it", bigDir, head, bigEvents)
			return
		}
		start := time.Now()
		const perTx = 20_000
		for i := 0; i < bigEvents; i += perTx {
			err := db.Update(ctx, func(tx gatehouse.Tx) error {
				for j := i; j < i+perTx; j++ {
					e := benchEvent(j, bigStart.Add(time.Duration(j)*30*time.Second))
					if err := tx.AppendAudit(&e); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				bigErr = err
				return
			}
		}
		b.Logf("built %d events in %s (%.0f events/s in %d-event transactions)", bigEvents, time.Since(start).Round(time.Millisecond),
			float64(bigEvents)/time.Since(start).Seconds(), perTx)
	})
	if bigErr != nil {
		b.Fatal(bigErr)
	}
	return bigDB
}

func BenchmarkAuditQuery1M(b *testing.B) {
	db := bigLog(b)
	ctx := context.Background()
	end := bigStart.Add(time.Duration(bigEvents) * 30 * time.Second)
	cases := []struct {
		name string
		f    gatehouse.AuditFilter
	}{
		// The v2 listing without filters, and with only a time range.
		{"org", gatehouse.AuditFilter{OrgID: 3}},
		{"org+30d", gatehouse.AuditFilter{OrgID: 3, Since: end.Add(-30 * 24 * time.Hour), Until: end}},
		// The v2 listing: org + event + the last 30 days, first page.
		{"org+event+30d", gatehouse.AuditFilter{OrgID: 3, Action: "stack:update", Since: end.Add(-30 * 24 * time.Hour), Until: end}},
		// A range in the middle of the year.
		{"org+event+mid-90d", gatehouse.AuditFilter{OrgID: 3, Action: "stack:update", Since: bigStart.Add(100 * 24 * time.Hour), Until: bigStart.Add(190 * 24 * time.Hour)}},
		// An old day: the index is walked back to it.
		{"org+event+first-day", gatehouse.AuditFilter{OrgID: 3, Action: "stack:update", Since: bigStart, Until: bigStart.Add(24 * time.Hour)}},
		// A user's events over the year.
		{"org+user+year", gatehouse.AuditFilter{OrgID: 3, ActorName: "user12", Since: bigStart, Until: end}},
		// A rare event type over the whole log (few matches).
		{"org+event+all", gatehouse.AuditFilter{OrgID: 7, Action: "org:protect"}},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			f := c.f
			f.Limit = 101 // as the v2 handler asks: a page of 100 and one to tell there is more
			var n int
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				err := db.View(ctx, func(tx gatehouse.Tx) error {
					evs, err := tx.ListAudit(f)
					n = len(evs)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
			b.ReportMetric(float64(n), "rows")
		})
	}
}
