package secrets

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestRewrap(t *testing.T) {
	ctx := context.Background()
	a, b := openTestKeyring(t), openTestKeyring(t)
	st := newMemStore()
	ma := NewManager(a, st)
	cts := map[int64][]byte{}
	for id := int64(1); id <= 10; id++ {
		ct, err := ma.Encrypt(ctx, id, fmt.Appendf(nil, "secret of %d", id))
		if err != nil {
			t.Fatal(err)
		}
		cts[id] = ct
	}

	n, err := Rewrap(ctx, a, b, st)
	if err != nil || n != 10 {
		t.Fatalf("Rewrap = %d, %v; want 10, nil", n, err)
	}
	for id, w := range st.keys {
		if _, err := a.Unwrap(ctx, w); err == nil {
			t.Fatalf("stack %d: old keyring still unwraps the key", id)
		}
		if _, err := b.Unwrap(ctx, w); err != nil {
			t.Fatalf("stack %d: %v", id, err)
		}
	}
	// Everything decrypts with B (cold cache), nothing with A.
	mb, ma2 := NewManager(b, st), NewManager(a, st)
	for id, ct := range cts {
		got, err := mb.Decrypt(ctx, id, ct)
		if err != nil || string(got) != fmt.Sprintf("secret of %d", id) {
			t.Fatalf("stack %d with B: %v", id, err)
		}
		if _, err := ma2.Decrypt(ctx, id, ct); err == nil {
			t.Fatalf("stack %d still decrypts with A", id)
		}
		// A running server with A's keys cached keeps working through the rotation.
		if _, err := ma.Decrypt(ctx, id, ct); err != nil {
			t.Fatalf("stack %d, warm cache: %v", id, err)
		}
	}

	// Running it again is a no-op (resumable).
	if n, err := Rewrap(ctx, a, b, st); err != nil || n != 0 {
		t.Fatalf("second Rewrap = %d, %v; want 0, nil", n, err)
	}
}

func TestRewrapPartialAndFailures(t *testing.T) {
	ctx := context.Background()
	a, b, c := openTestKeyring(t), openTestKeyring(t), openTestKeyring(t)
	st := newMemStore()
	for id := int64(1); id <= 4; id++ {
		if _, err := NewManager(a, st).Encrypt(ctx, id, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	// Stack 2 was already moved to B by an interrupted run; stack 3's key belongs to neither.
	dek, _ := a.Unwrap(ctx, st.keys[2])
	st.keys[2], _ = b.Wrap(ctx, dek)
	dek, _ = a.Unwrap(ctx, st.keys[3])
	st.keys[3], _ = c.Wrap(ctx, dek)

	n, err := Rewrap(ctx, a, b, st)
	if n != 2 || err == nil {
		t.Fatalf("Rewrap = %d, %v; want 2 and an error for stack 3", n, err)
	}
	t.Log(err)
	if _, err := b.Unwrap(ctx, st.keys[3]); err == nil {
		t.Fatal("stack 3 was replaced")
	}
	for _, id := range []int64{1, 2, 4} {
		if _, err := b.Unwrap(ctx, st.keys[id]); err != nil {
			t.Fatalf("stack %d not on B: %v", id, err)
		}
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := Rewrap(cctx, c, b, st); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

// ReplaceStackKey is compare-and-swap: a key changed under Rewrap is reported, not clobbered.
type racingRewrapStore struct{ *memStore }

func (s racingRewrapStore) ReplaceStackKey(ctx context.Context, id int64, old, new []byte) error {
	s.mu.Lock()
	s.keys[id] = append([]byte("changed-"), s.keys[id]...)
	s.mu.Unlock()
	return s.memStore.ReplaceStackKey(ctx, id, old, new)
}

func TestRewrapCompareAndSwap(t *testing.T) {
	ctx := context.Background()
	a, b := openTestKeyring(t), openTestKeyring(t)
	st := newMemStore()
	NewManager(a, st).Encrypt(ctx, 1, []byte("x"))
	n, err := Rewrap(ctx, a, b, racingRewrapStore{st})
	if n != 0 || err == nil {
		t.Fatalf("Rewrap = %d, %v", n, err)
	}
}
