package deploy

import (
	"sync"
	"testing"
)

// TestCommentLocks: a pull request's comment posts are serialized, and its lock is gone
// from the map once nobody holds or waits for it (the map held one lock per pull request
// ever commented on, for the life of the process).
func TestCommentLocks(t *testing.T) {
	s := &Service{commentLocks: map[string]*commentLock{}}
	var wg sync.WaitGroup
	in, most := 0, 0
	var mu sync.Mutex
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock := s.lockComment("github:acme/infra#7")
			mu.Lock()
			in++
			most = max(most, in)
			mu.Unlock()
			mu.Lock()
			in--
			mu.Unlock()
			unlock()
		}()
	}
	wg.Wait()
	if most != 1 {
		t.Errorf("%d holders at once, want 1", most)
	}
	s.lockComment("github:acme/infra#8")()
	if len(s.commentLocks) != 0 {
		t.Errorf("%d locks left after use, want 0", len(s.commentLocks))
	}
}
