package secrets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// memStore is an in-memory KeyStore and RewrapStore, as a database would behave: one row per
// stack, insert-if-absent, compare-and-swap replace.
type memStore struct {
	mu      sync.Mutex
	keys    map[int64][]byte
	gets    atomic.Int64
	creates atomic.Int64

	// getBarrier, if set, holds every GetStackKey until that many callers are waiting, so
	// that loaders in different Managers all see "no key" and race in CreateStackKey.
	getBarrier *barrier
}

func newMemStore() *memStore { return &memStore{keys: make(map[int64][]byte)} }

func (s *memStore) GetStackKey(ctx context.Context, id int64) ([]byte, error) {
	s.gets.Add(1)
	if s.getBarrier != nil {
		s.mu.Lock()
		_, exists := s.keys[id]
		s.mu.Unlock()
		s.getBarrier.wait()
		if !exists {
			return nil, fmt.Errorf("stack %d: %w", id, ErrNoKey)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	w, ok := s.keys[id]
	if !ok {
		return nil, fmt.Errorf("stack %d: %w", id, ErrNoKey)
	}
	return bytes.Clone(w), nil
}

func (s *memStore) CreateStackKey(ctx context.Context, id int64, wrapped []byte) ([]byte, error) {
	s.creates.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if w, ok := s.keys[id]; ok {
		return bytes.Clone(w), nil
	}
	s.keys[id] = bytes.Clone(wrapped)
	return bytes.Clone(wrapped), nil
}

func (s *memStore) ListStackKeys(ctx context.Context) ([]StackKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []StackKey
	for id, w := range s.keys {
		out = append(out, StackKey{StackID: id, Wrapped: bytes.Clone(w)})
	}
	return out, nil
}

func (s *memStore) ReplaceStackKey(ctx context.Context, id int64, oldWrapped, newWrapped []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !bytes.Equal(s.keys[id], oldWrapped) {
		return fmt.Errorf("stack %d: wrapped key changed concurrently", id)
	}
	s.keys[id] = bytes.Clone(newWrapped)
	return nil
}

// barrier releases its waiters once n of them are waiting (or after a timeout, so a broken
// test does not hang).
type barrier struct {
	mu      sync.Mutex
	n       int
	waiting int
	open    chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, open: make(chan struct{})} }

func (b *barrier) wait() {
	b.mu.Lock()
	b.waiting++
	if b.waiting == b.n {
		close(b.open)
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(5 * time.Second):
	}
}

func TestManagerRoundTrip(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	m := NewManager(openTestKeyring(t), st)
	for _, pt := range []string{"", "hunter2", string(bytes.Repeat([]byte{0}, 5000))} {
		ct, err := m.Encrypt(ctx, 7, []byte(pt))
		if err != nil {
			t.Fatal(err)
		}
		got, err := m.Decrypt(ctx, 7, ct)
		if err != nil || string(got) != pt {
			t.Fatalf("round trip of %d bytes: %v", len(pt), err)
		}
	}
	if len(st.keys) != 1 || st.creates.Load() != 1 || st.gets.Load() != 1 {
		t.Fatalf("keys=%d creates=%d gets=%d, want 1 each (key cached)", len(st.keys), st.creates.Load(), st.gets.Load())
	}
	// The stored value is a wrapped key, not the key.
	for _, w := range st.keys {
		if len(w) == DataKeySize {
			t.Fatal("store holds a 32-byte value; is the key unwrapped?")
		}
	}
}

func TestManagerCrossStackDecryptFails(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	m := NewManager(openTestKeyring(t), st)
	ct, err := m.Encrypt(ctx, 1, []byte("stack one's secret"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Encrypt(ctx, 2, []byte("init stack 2")); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Decrypt(ctx, 2, ct); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("stack 2 decrypted stack 1's secret: %v", err)
	}
	// Even with stack 1's data key copied to stack 3, the AAD (stack ID) keeps it apart.
	st.keys[3] = bytes.Clone(st.keys[1])
	if _, err := m.Decrypt(ctx, 3, ct); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("stack 3 with stack 1's key decrypted stack 1's secret: %v", err)
	}
	// A stack with no key at all.
	_, err = m.Decrypt(ctx, 4, ct)
	if !errors.Is(err, ErrDecrypt) || !errors.Is(err, ErrNoKey) {
		t.Fatalf("stack without key: %v", err)
	}
	if _, ok := st.keys[4]; ok {
		t.Fatal("Decrypt created a key")
	}
	if got, err := m.Decrypt(ctx, 1, ct); err != nil || string(got) != "stack one's secret" {
		t.Fatalf("stack 1: %v", err)
	}
	if _, err := m.Decrypt(ctx, 1, ct[:len(ct)-1]); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("truncated: %v", err)
	}
}

func TestManagerRenameKeepsSecrets(t *testing.T) {
	// Secrets are bound to the stack ID, not its name: a rename is invisible here. A cold
	// Manager (another process, or after restart) reads them from the stored key.
	ctx := context.Background()
	k := openTestKeyring(t)
	st := newMemStore()
	ct, _ := NewManager(k, st).Encrypt(ctx, 9, []byte("v"))
	if got, err := NewManager(k, st).Decrypt(ctx, 9, ct); err != nil || string(got) != "v" {
		t.Fatalf("cold manager: %v", err)
	}
}

// Many goroutines in two Managers (two processes) encrypt for the same new stack at once.
// Each Manager loads once; both race in CreateStackKey; everyone ends up on the stored key.
func TestManagerConcurrentNewStack(t *testing.T) {
	ctx := context.Background()
	k := openTestKeyring(t)
	st := newMemStore()
	st.getBarrier = newBarrier(2)
	m1, m2 := NewManager(k, st), NewManager(k, st)

	const perManager = 64
	const stack = 42
	cts := make([][]byte, 2*perManager)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 2 * perManager {
		m := m1
		if i%2 == 1 {
			m = m2
		}
		wg.Go(func() {
			<-start
			ct, err := m.Encrypt(ctx, stack, fmt.Appendf(nil, "secret %d", i))
			if err != nil {
				t.Error(err)
				return
			}
			cts[i] = ct
		})
	}
	close(start)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	if g, c := st.gets.Load(), st.creates.Load(); g != 2 || c != 2 {
		t.Fatalf("GetStackKey %d times, CreateStackKey %d times; want 2 and 2 (one load per Manager, both racing)", g, c)
	}
	if len(st.keys) != 1 {
		t.Fatalf("%d keys stored", len(st.keys))
	}
	st.getBarrier = nil
	cold := NewManager(k, st)
	for i, ct := range cts {
		for _, m := range []*Manager{m1, m2, cold} {
			got, err := m.Decrypt(ctx, stack, ct)
			if err != nil || string(got) != fmt.Sprintf("secret %d", i) {
				t.Fatalf("ciphertext %d does not decrypt with the stored key: %v", i, err)
			}
		}
	}
}

// Concurrent use of many stacks with a tiny cache, under -race.
func TestManagerConcurrentManyStacks(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	m := NewManager(openTestKeyring(t), st, WithCacheSize(3))
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				id := int64((g + i) % 8)
				want := fmt.Sprintf("%d/%d", g, i)
				ct, err := m.Encrypt(ctx, id, []byte(want))
				if err != nil {
					t.Error(err)
					return
				}
				if i%7 == 0 {
					m.Forget(id)
				}
				got, err := m.Decrypt(ctx, id, ct)
				if err != nil || string(got) != want {
					t.Errorf("stack %d: %v", id, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := len(st.keys); n != 8 {
		t.Fatalf("%d keys stored, want 8", n)
	}
	if m.lru.Len() > 3 || len(m.entries) != m.lru.Len() {
		t.Fatalf("cache has %d/%d entries, bound 3", m.lru.Len(), len(m.entries))
	}
}

func TestManagerCacheBoundAndForget(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	m := NewManager(openTestKeyring(t), st, WithCacheSize(2))
	cts := map[int64][]byte{}
	for id := int64(1); id <= 3; id++ {
		cts[id], _ = m.Encrypt(ctx, id, []byte("x"))
	}
	if m.lru.Len() != 2 {
		t.Fatalf("cache holds %d keys, want 2", m.lru.Len())
	}
	if _, ok := m.entries[1]; ok {
		t.Fatal("least recently used key not evicted")
	}
	gets := st.gets.Load()
	if _, err := m.Decrypt(ctx, 3, cts[3]); err != nil || st.gets.Load() != gets {
		t.Fatalf("cached key reloaded (%v)", err)
	}
	if _, err := m.Decrypt(ctx, 1, cts[1]); err != nil || st.gets.Load() != gets+1 {
		t.Fatalf("evicted key not reloaded from the store (%v)", err)
	}
	m.Forget(1)
	if _, ok := m.entries[1]; ok {
		t.Fatal("Forget left the key cached")
	}
	if _, err := m.Decrypt(ctx, 1, cts[1]); err != nil || st.gets.Load() != gets+2 {
		t.Fatalf("forgotten key not reloaded (%v)", err)
	}
	m.Forget(99) // unknown: no-op
}

func TestManagerBatch(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	m := NewManager(openTestKeyring(t), st)
	pts := [][]byte{[]byte("a"), {}, []byte("ccc")}
	cts, err := m.EncryptBatch(ctx, 5, pts)
	if err != nil || len(cts) != 3 {
		t.Fatal(err)
	}
	got, err := m.DecryptBatch(ctx, 5, cts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range pts {
		if !bytes.Equal(got[i], pts[i]) {
			t.Fatalf("item %d mismatch", i)
		}
	}
	if st.gets.Load() != 1 {
		t.Fatalf("%d key lookups", st.gets.Load())
	}
	cts[1] = cts[1][:5]
	if _, err := m.DecryptBatch(ctx, 5, cts); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("bad item: %v", err)
	}
	if out, err := m.DecryptBatch(ctx, 6, nil); err != nil || len(out) != 0 {
		t.Fatalf("empty batch: %v", err)
	}
	if _, err := m.DecryptBatch(ctx, 6, cts); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("other stack: %v", err)
	}
}

func TestManagerWrongKeyringIsServerError(t *testing.T) {
	ctx := context.Background()
	st := newMemStore()
	ct, _ := NewManager(openTestKeyring(t), st).Encrypt(ctx, 1, []byte("x"))
	_, err := NewManager(openTestKeyring(t), st).Decrypt(ctx, 1, ct)
	if err == nil || errors.Is(err, ErrDecrypt) {
		t.Fatalf("err %v: a data key that does not unwrap must not look like a bad ciphertext", err)
	}
}

type failingStore struct{ memStore }

func (s *failingStore) GetStackKey(ctx context.Context, id int64) ([]byte, error) {
	return nil, errors.New("database is down")
}

func TestManagerStoreErrors(t *testing.T) {
	m := NewManager(openTestKeyring(t), &failingStore{})
	_, err := m.Encrypt(context.Background(), 1, []byte("x"))
	if err == nil || errors.Is(err, ErrNoKey) {
		t.Fatalf("store failure: %v", err)
	}
	if _, err := m.Decrypt(context.Background(), 1, []byte("x")); err == nil || errors.Is(err, ErrDecrypt) {
		t.Fatalf("store failure on decrypt: %v", err)
	}
}

func BenchmarkManagerEncryptCached(b *testing.B) {
	ctx := context.Background()
	m := NewManager(openTestKeyring(b), newMemStore())
	pt := bytes.Repeat([]byte{'s'}, 1024)
	if _, err := m.Encrypt(ctx, 1, pt); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Encrypt(ctx, 1, pt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkManagerEncryptCachedParallel(b *testing.B) {
	ctx := context.Background()
	m := NewManager(openTestKeyring(b), newMemStore())
	pt := bytes.Repeat([]byte{'s'}, 1024)
	for id := range int64(64) {
		if _, err := m.Encrypt(ctx, id, pt); err != nil {
			b.Fatal(err)
		}
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	var next atomic.Int64
	b.RunParallel(func(p *testing.PB) {
		id := next.Add(1) % 64
		for p.Next() {
			if _, err := m.Encrypt(ctx, id, pt); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// gatedStore blocks GetStackKey until release is closed (or the caller's ctx ends).
type gatedStore struct {
	*memStore
	entered chan struct{}
	release chan struct{}
	calls   atomic.Int64
}

func (s *gatedStore) GetStackKey(ctx context.Context, id int64) ([]byte, error) {
	if s.calls.Add(1) == 1 {
		close(s.entered)
		select {
		case <-s.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return s.memStore.GetStackKey(ctx, id)
}

// A waiter does not inherit the error of a loader whose caller gave up.
func TestManagerWaiterRetriesAfterLoaderCancel(t *testing.T) {
	st := &gatedStore{memStore: newMemStore(), entered: make(chan struct{}), release: make(chan struct{})}
	m := NewManager(openTestKeyring(t), st)
	lctx, cancel := context.WithCancel(context.Background())
	leaderErr := make(chan error, 1)
	go func() {
		_, err := m.Encrypt(lctx, 1, []byte("x"))
		leaderErr <- err
	}()
	<-st.entered
	waiterErr := make(chan error, 1)
	go func() {
		_, err := m.Encrypt(context.Background(), 1, []byte("y"))
		waiterErr <- err
	}()
	time.Sleep(20 * time.Millisecond) // let the waiter queue behind the loader
	cancel()
	if err := <-leaderErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("leader: %v", err)
	}
	if err := <-waiterErr; err != nil {
		t.Fatalf("waiter failed with the leader's cancellation: %v", err)
	}
}

// A key loaded while Forget runs is not put back into the cache.
func TestManagerForgetDuringLoad(t *testing.T) {
	ctx := context.Background()
	k := openTestKeyring(t)
	base := newMemStore()
	ct, _ := NewManager(k, base).Encrypt(ctx, 1, []byte("x"))
	st := &gatedStore{memStore: base, entered: make(chan struct{}), release: make(chan struct{})}
	m := NewManager(k, st)
	done := make(chan error, 1)
	go func() {
		_, err := m.Decrypt(ctx, 1, ct)
		done <- err
	}()
	<-st.entered
	m.Forget(1)
	close(st.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	n := len(m.entries)
	m.mu.Unlock()
	if n != 0 {
		t.Fatal("key loaded across a Forget was cached")
	}
}
