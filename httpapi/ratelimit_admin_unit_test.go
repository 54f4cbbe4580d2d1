package httpapi

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// TestLimiterFailedAfterClearing: a failing request that read the security epoch before a
// block was cleared (and counted before the clearing) must not leave the block remembered
// after this process dropped its refusals for the newer epoch.
func TestLimiterFailedAfterClearing(t *testing.T) {
	db, err := sqlite.Open(context.Background(), t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// (a literal: newAuthLimiter's parameters are changing on another branch)
	s := &Server{store: db, limiter: &authLimiter{limit: 2, window: time.Hour, blocked: map[string]time.Time{}}}
	now := time.Now()
	rq := &Request{Request: httptest.NewRequest("GET", "/api/user", nil), epoch: 5}
	s.syncLimiter(5)
	for i := 0; i < 2; i++ {
		_ = s.limiterFailed(rq, "192.0.2.1", "", now)
	}
	if s.limiter.check("192.0.2.1", "", now) == nil {
		t.Fatal("not blocked after reaching the limit")
	}
	// The block is cleared (epoch 6) and a request that saw epoch 6 dropped the refusals;
	// meanwhile the old request's failure was counted before the clearing and remembers
	// the block again.
	s.syncLimiter(6)
	if s.limiter.check("192.0.2.1", "", now) != nil {
		t.Fatal("still refused after a newer epoch was seen")
	}
	_ = s.limiterFailed(rq, "192.0.2.1", "", now) // count 3 (the store was not cleared here)
	if s.limiter.check("192.0.2.1", "", now) != nil {
		t.Fatal("a request of the old epoch left the cleared block remembered")
	}
	// A request of the current epoch blocks as before.
	rq.epoch = 6
	if err := s.limiterFailed(rq, "192.0.2.1", "", now); err == nil {
		t.Fatal("over the limit in the store, yet not refused")
	}
	if s.limiter.check("192.0.2.1", "", now) == nil {
		t.Fatal("not remembered in the current epoch")
	}
}
