package secrets

import (
	"container/list"
	"context"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
)

// KeyStore stores the wrapped data key of each stack. The store engines implement it.
type KeyStore interface {
	// GetStackKey returns the wrapped DEK of a stack, or an error wrapping ErrNoKey.
	GetStackKey(ctx context.Context, stackID int64) ([]byte, error)
	// CreateStackKey stores wrapped for stackID unless one exists; it returns the key that is
	// stored afterwards (the winner of a race).
	CreateStackKey(ctx context.Context, stackID int64, wrapped []byte) ([]byte, error)
}

// DefaultCacheSize is the default number of unwrapped data keys a Manager keeps.
const DefaultCacheSize = 4096

// ManagerOption configures a Manager.
type ManagerOption func(*Manager)

// WithCacheSize sets how many unwrapped data keys the Manager caches (least recently used
// are dropped first). n < 1 means 1.
func WithCacheSize(n int) ManagerOption {
	return func(m *Manager) { m.max = max(n, 1) }
}

// WithLabel sets the AAD label of the Manager's secrets (default: stack secrets). A Manager
// for another kind of owner (environments) uses its own label and key store, so that a
// ciphertext of one kind never opens as the other's even where IDs coincide.
func WithLabel(label string) ManagerOption {
	return func(m *Manager) { m.label = label }
}

// Derive returns a new Manager with the same keyring over another key store (for another
// kind of owner of data keys, e.g. environments), configured by opts.
func (m *Manager) Derive(ks KeyStore, opts ...ManagerOption) *Manager {
	return NewManager(m.k, ks, opts...)
}

// Manager encrypts and decrypts stack secrets with per-stack data keys. A stack's data key
// is created on its first Encrypt. Unwrapped keys are kept in a bounded LRU cache so the
// keyring (KMS) is called once per stack, not per request; concurrent first requests for a
// stack share one load. A Manager is safe for concurrent use, also by several processes on
// one KeyStore: CreateStackKey decides which data key a new stack gets.
//
// Stacks are identified by their int64 ID, which must stay stable across renames and must
// never be reused for another stack. The ID is the AAD of every secret, so a ciphertext of one
// stack does not decrypt as another stack's even if keys or rows are copied between them.
type Manager struct {
	k     *Keyring
	ks    KeyStore
	label string // AAD label; "" = stack secrets

	mu       sync.Mutex
	max      int
	entries  map[int64]*list.Element // of *cacheEntry
	lru      list.List               // front: most recently used
	inflight map[int64]*keyLoad
	forgets  uint64 // incremented by Forget; loads started before a Forget are not cached
}

type cacheEntry struct {
	stackID int64
	aead    cipher.AEAD
	aad     []byte
}

// keyLoad is an in-progress load of one stack's key that other callers wait for.
type keyLoad struct {
	done   chan struct{}
	create bool
	entry  *cacheEntry
	err    error
}

// NewManager returns a Manager that wraps data keys with k and stores them in ks.
func NewManager(k *Keyring, ks KeyStore, opts ...ManagerOption) *Manager {
	m := &Manager{
		k:        k,
		ks:       ks,
		max:      DefaultCacheSize,
		entries:  make(map[int64]*list.Element),
		inflight: make(map[int64]*keyLoad),
	}
	for _, o := range opts {
		o(m)
	}
	return m
}

// stackAAD is the additional authenticated data of stack secrets.
func stackAAD(stackID int64) []byte { return labeledAAD("gatehouse/stack-secret/v1:", stackID) }

func labeledAAD(label string, stackID int64) []byte {
	aad := make([]byte, len(label), len(label)+8)
	copy(aad, label)
	return binary.BigEndian.AppendUint64(aad, uint64(stackID))
}

func (m *Manager) aad(id int64) []byte {
	if m.label != "" {
		return labeledAAD(m.label, id)
	}
	return stackAAD(id)
}

// Encrypt seals plaintext for the stack, creating the stack's data key if it has none.
func (m *Manager) Encrypt(ctx context.Context, stackID int64, plaintext []byte) ([]byte, error) {
	e, err := m.key(ctx, stackID, true)
	if err != nil {
		return nil, err
	}
	return sealWith(e.aead, plaintext, e.aad), nil
}

// Decrypt opens a ciphertext made by Encrypt for the same stack. A ciphertext that cannot be
// opened (tampered with, another stack's, or a stack without a data key) gives an error
// wrapping ErrDecrypt; other errors mean the data key could not be loaded (store or keyring
// failure) and are server-side.
func (m *Manager) Decrypt(ctx context.Context, stackID int64, ciphertext []byte) ([]byte, error) {
	e, err := m.key(ctx, stackID, false)
	if err != nil {
		return nil, m.decryptKeyErr(stackID, err)
	}
	pt, err := openWith(e.aead, ciphertext, e.aad)
	if err != nil {
		return nil, fmt.Errorf("secrets: decrypt for stack %d: %w", stackID, err)
	}
	return pt, nil
}

// EncryptBatch is Encrypt for many values with one key lookup. The result has one
// ciphertext per plaintext, in order.
func (m *Manager) EncryptBatch(ctx context.Context, stackID int64, plaintexts [][]byte) ([][]byte, error) {
	e, err := m.key(ctx, stackID, true)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(plaintexts))
	for i, pt := range plaintexts {
		out[i] = sealWith(e.aead, pt, e.aad)
	}
	return out, nil
}

// DecryptBatch is Decrypt for many values with one key lookup. It fails as a whole if any
// value cannot be opened; the error names the index of the first such value.
func (m *Manager) DecryptBatch(ctx context.Context, stackID int64, ciphertexts [][]byte) ([][]byte, error) {
	if len(ciphertexts) == 0 {
		return [][]byte{}, nil
	}
	e, err := m.key(ctx, stackID, false)
	if err != nil {
		return nil, m.decryptKeyErr(stackID, err)
	}
	out := make([][]byte, len(ciphertexts))
	for i, ct := range ciphertexts {
		pt, err := openWith(e.aead, ct, e.aad)
		if err != nil {
			return nil, fmt.Errorf("secrets: decrypt batch item %d for stack %d: %w", i, stackID, err)
		}
		out[i] = pt
	}
	return out, nil
}

func (m *Manager) decryptKeyErr(stackID int64, err error) error {
	if errors.Is(err, ErrNoKey) {
		// Nothing was ever encrypted for this stack, so no ciphertext can be valid.
		return fmt.Errorf("%w: stack %d has no data key: %w", ErrDecrypt, stackID, err)
	}
	return err
}

// Forget drops the stack's data key from this Manager's cache, e.g. when the stack is
// deleted. Other processes keep their cached copy until it is evicted, which is harmless as
// long as stack IDs are never reused.
func (m *Manager) Forget(stackID int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgets++
	if el, ok := m.entries[stackID]; ok {
		m.lru.Remove(el)
		delete(m.entries, stackID)
	}
}

// cached returns the stack's cached key, if any, marking it recently used. m.mu must be held.
func (m *Manager) cached(stackID int64) *cacheEntry {
	el, ok := m.entries[stackID]
	if !ok {
		return nil
	}
	m.lru.MoveToFront(el)
	return el.Value.(*cacheEntry)
}

// key returns the stack's data key from the cache or, once per stack for concurrent callers,
// from the store. With create, a stack without a key gets one.
func (m *Manager) key(ctx context.Context, stackID int64, create bool) (*cacheEntry, error) {
	for {
		m.mu.Lock()
		if e := m.cached(stackID); e != nil {
			m.mu.Unlock()
			return e, nil
		}
		if l, ok := m.inflight[stackID]; ok {
			m.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, fmt.Errorf("secrets: wait for data key of stack %d: %w", stackID, ctx.Err())
			}
			if l.err == nil {
				return l.entry, nil
			}
			// Retry as the loader if the other load failed for a reason that is not ours:
			// it did not create a missing key we need, or its caller gave up.
			if (create && !l.create && errors.Is(l.err, ErrNoKey)) ||
				(ctx.Err() == nil && (errors.Is(l.err, context.Canceled) || errors.Is(l.err, context.DeadlineExceeded))) {
				continue
			}
			return nil, l.err
		}
		l := &keyLoad{done: make(chan struct{}), create: create}
		m.inflight[stackID] = l
		forgets := m.forgets
		m.mu.Unlock()

		l.entry, l.err = m.load(ctx, stackID, create)

		m.mu.Lock()
		delete(m.inflight, stackID)
		if l.err == nil && m.forgets == forgets {
			m.insert(l.entry)
		}
		m.mu.Unlock()
		close(l.done)
		return l.entry, l.err
	}
}

// insert caches e, evicting the least recently used keys beyond the bound. m.mu must be held.
func (m *Manager) insert(e *cacheEntry) {
	if el, ok := m.entries[e.stackID]; ok {
		el.Value = e
		m.lru.MoveToFront(el)
		return
	}
	m.entries[e.stackID] = m.lru.PushFront(e)
	for m.lru.Len() > m.max {
		last := m.lru.Back()
		m.lru.Remove(last)
		delete(m.entries, last.Value.(*cacheEntry).stackID)
	}
}

// load reads (or with create, makes) the stack's data key and unwraps it.
func (m *Manager) load(ctx context.Context, stackID int64, create bool) (*cacheEntry, error) {
	wrapped, err := m.ks.GetStackKey(ctx, stackID)
	var dek []byte
	switch {
	case err == nil:
		dek, err = m.k.Unwrap(ctx, wrapped)
		if err != nil {
			return nil, fmt.Errorf("secrets: data key of stack %d: %w", stackID, err)
		}
	case errors.Is(err, ErrNoKey) && create:
		dek, err = m.createKey(ctx, stackID)
		if err != nil {
			return nil, err
		}
	case errors.Is(err, ErrNoKey):
		return nil, err
	default:
		return nil, fmt.Errorf("secrets: read data key of stack %d: %w", stackID, err)
	}
	defer clear(dek)
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, fmt.Errorf("secrets: data key of stack %d: %w", stackID, err)
	}
	return &cacheEntry{stackID: stackID, aead: aead, aad: m.aad(stackID)}, nil
}

// createKey makes, wraps and stores a new data key for the stack, and returns the data key
// the store kept: ours, or the one another process stored first.
func (m *Manager) createKey(ctx context.Context, stackID int64) ([]byte, error) {
	dek, err := NewDataKey()
	if err != nil {
		return nil, err
	}
	wrapped, err := m.k.Wrap(ctx, dek)
	if err != nil {
		clear(dek)
		return nil, fmt.Errorf("secrets: new data key of stack %d: %w", stackID, err)
	}
	stored, err := m.ks.CreateStackKey(ctx, stackID, wrapped)
	if err != nil {
		clear(dek)
		return nil, fmt.Errorf("secrets: store data key of stack %d: %w", stackID, err)
	}
	if equalKeys(stored, wrapped) {
		return dek, nil
	}
	clear(dek)
	dek, err = m.k.Unwrap(ctx, stored)
	if err != nil {
		return nil, fmt.Errorf("secrets: data key of stack %d (stored concurrently): %w", stackID, err)
	}
	return dek, nil
}
