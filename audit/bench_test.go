package audit

import (
	"context"
	"io"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// BenchmarkHash measures hashing one typical event (13 strings, two details).
func BenchmarkHash(b *testing.B) {
	e := sampleEvent(1)
	e.Seq = 123456
	prev := Genesis()
	b.ReportAllocs()
	for b.Loop() {
		prev = Hash(prev, &e)
	}
}

// BenchmarkWriteCEF measures WriteCEF over batches of 1000 typical events; ns/event is the
// figure to compare.
func BenchmarkWriteCEF(b *testing.B) {
	events := buildChain(1000)
	it := Events(events)
	b.ReportAllocs()
	b.SetBytes(0)
	for b.Loop() {
		if err := WriteCEF(io.Discard, "gatehouse-1.example.com", it); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1000, "ns/event")
}

// BenchmarkVerify measures verifying a 10,000-event chain with a checkpoint every 1000.
func BenchmarkVerify(b *testing.B) {
	s := newTestSigner(b)
	events := buildChain(10000)
	var cps []Checkpoint
	for i := 999; i < len(events); i += 1000 {
		var prev *Checkpoint
		if len(cps) > 0 {
			prev = &cps[len(cps)-1]
		}
		cps = append(cps, s.Sign(gatehouse.CheckpointPeriodic, prev, events[i].Seq, events[i].Hash, baseTime))
	}
	b.ReportAllocs()
	for b.Loop() {
		rep, err := Verify(context.Background(), Events(events), cps, s.Public())
		if err != nil || !rep.OK {
			b.Fatal(rep, err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10000, "ns/event")
}
