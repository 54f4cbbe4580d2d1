package httpapi

import (
	"context"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// BenchmarkAuditQueue is the sustained rate at which the server appends audit events to the
// hash chain on its embedded database: concurrent requests hand their events to the group
// commit queue (auditq.go), which chains and writes every waiting event in one transaction,
// and each caller returns only once its event is committed. Events are realistic (every
// field set, two details), spread over 10 organizations and 50 actors.
//
//	go test ./httpapi -run '^$' -bench BenchmarkAuditQueue -benchtime 100000x
func BenchmarkAuditQueue(b *testing.B) {
	for _, clients := range []int{1, 64} {
		b.Run("clients="+strconv.Itoa(clients), func(b *testing.B) {
			ctx := context.Background()
			db, err := sqlite.Open(ctx, b.TempDir(), sqlite.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			if err := db.EnsureAuditHead(ctx); err != nil {
				b.Fatal(err)
			}
			q := newAuditQueue(db)
			defer q.close()
			var next sync.Mutex
			i := 0
			b.ResetTimer()
			t0, c0 := time.Now(), benchCPU()
			var wg sync.WaitGroup
			for c := 0; c < clients; c++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						next.Lock()
						if i >= b.N {
							next.Unlock()
							return
						}
						i++
						n := i
						next.Unlock()
						org := int64(n%10 + 1)
						ev := &gatehouse.AuditEvent{
							OrgID: org, OrgName: "org" + strconv.FormatInt(org, 10), ActorKind: "user",
							ActorName: "user" + strconv.Itoa(n%50), UserID: int64(n%50 + 1), SourceIP: "10.20.30." + strconv.Itoa(n%250),
							UserAgent: "pulumi/3.260.0 (linux; amd64)", Action: "stack:decrypt", Target: "org/project/stack" + strconv.Itoa(n%13),
							Outcome: gatehouse.OutcomeSuccess, RequestID: strconv.Itoa(n),
							Details: map[string]string{"update": strconv.Itoa(n), "kind": "update"},
						}
						if err := q.append(ctx, ev); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "events/s")
			b.ReportMetric(float64(b.N)/(benchCPU()-c0).Seconds(), "events/cpu-s")
			var head int64
			if err := db.View(ctx, func(tx gatehouse.Tx) error { var err error; head, _, err = tx.AuditHead(); return err }); err != nil {
				b.Fatal(err)
			}
			if head != int64(b.N) {
				b.Fatalf("the chain holds %d events, want %d", head, b.N)
			}
		})
	}
}

func benchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
