package periodic

import (
	"sync/atomic"
	"testing"
	"time"
)

// The loop runs its function repeatedly, a second Start adds no second loop, Stop waits for
// a run in progress, and a stopped loop neither runs again nor restarts.
func TestLoop(t *testing.T) {
	var l Loop
	var runs, inRun atomic.Int32
	fn := func() {
		inRun.Add(1)
		time.Sleep(5 * time.Millisecond)
		runs.Add(1)
		inRun.Add(-1)
	}
	l.Start(time.Millisecond, fn)
	l.Start(time.Millisecond, func() { t.Error("a second Start started a second loop") })
	deadline := time.Now().Add(10 * time.Second)
	for runs.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("%d runs in 10 s", runs.Load())
		}
		time.Sleep(time.Millisecond)
	}
	l.Stop()
	if inRun.Load() != 0 {
		t.Fatal("Stop returned while a run was in progress")
	}
	n := runs.Load()
	l.Start(time.Millisecond, fn)
	time.Sleep(20 * time.Millisecond)
	if runs.Load() != n {
		t.Fatalf("the loop ran after Stop (%d runs, then %d)", n, runs.Load())
	}
	l.Stop() // twice is fine
}
