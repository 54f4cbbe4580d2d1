// Package periodic runs a server's background sweeps: one function every interval, in a
// goroutine of its own, until stopped. The deployment sweep (dead runners) and the session
// sweep (ended sessions, expired sign-in states) are two of them.
package periodic

import (
	"sync"
	"time"
)

// Loop is one background loop. Its zero value is ready to Start.
type Loop struct {
	mu      sync.Mutex
	stop    chan struct{}
	done    chan struct{}
	stopped bool
}

// Start runs fn every interval (the first run one interval from now) until Stop. Starting a
// running loop, or one already stopped, does nothing; so does an interval ≤ 0.
func (l *Loop) Start(every time.Duration, fn func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stop != nil || l.stopped || every <= 0 {
		return
	}
	l.stop, l.done = make(chan struct{}), make(chan struct{})
	stop, done := l.stop, l.done
	go func() {
		defer close(done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fn()
			}
		}
	}()
}

// Stop ends the loop, waiting for a run in progress; the loop cannot be started again.
func (l *Loop) Stop() {
	l.mu.Lock()
	stop, done := l.stop, l.done
	l.stop, l.stopped = nil, true
	l.mu.Unlock()
	if stop != nil {
		close(stop)
		<-done
	}
}
