package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

func newTestSigner(t testing.TB) *Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestLoadOrCreateSigningKey(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keys", "audit.key")
	k1, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %04o, want 0600", fi.Mode().Perm())
	}
	k2, err := LoadOrCreateSigningKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if !k1.Equal(k2) {
		t.Fatal("reloading returned a different key")
	}
	// No temporary files left behind.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("key directory has %d entries, want 1", len(entries))
	}

	for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644} {
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrCreateSigningKey(path); err == nil || !strings.Contains(err.Error(), "group or others") {
			t.Errorf("mode %04o: err = %v, want refusal", mode, err)
		}
	}
	if err := os.Chmod(path, 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSigningKey(path); err != nil {
		t.Errorf("mode 0400: %v", err)
	}

	bad := filepath.Join(dir, "bad.key")
	if err := os.WriteFile(bad, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateSigningKey(bad); err == nil {
		t.Error("garbage key file accepted")
	}
	if _, err := LoadOrCreateSigningKey(dir); err == nil {
		t.Error("directory accepted as key file")
	}
}

func TestLoadOrCreateSigningKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.key")
	const n = 8
	keys := make([]ed25519.PrivateKey, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], errs[i] = LoadOrCreateSigningKey(path)
		}()
	}
	wg.Wait()
	for i := 0; i < n; i++ {
		if errs[i] != nil {
			t.Fatalf("goroutine %d: %v", i, errs[i])
		}
		if !keys[i].Equal(keys[0]) {
			t.Fatalf("goroutine %d got a different key", i)
		}
	}
}

func TestCheckpointSignVerify(t *testing.T) {
	s := newTestSigner(t)
	hash := bytes.Repeat([]byte{0xab}, 32)
	now := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.FixedZone("Y", 3600))
	prev := s.Sign("periodic", nil, 90, hash, now)
	cp := s.Sign("retention", &prev, 99, hash, now)
	if cp.Index != 2 || cp.PrevSeq != 90 || !bytes.Equal(cp.Prev, prev.Digest()) || cp.Kind != "retention" {
		t.Fatalf("chained checkpoint %+v", cp)
	}
	if cp.Seq != 99 || !bytes.Equal(cp.Hash, hash) || cp.KeyID != s.KeyID() || cp.KeyID != KeyID(s.Public()) {
		t.Fatalf("checkpoint %+v", cp)
	}
	if !cp.Time.Equal(now.Truncate(time.Microsecond)) || cp.Time.Location() != time.UTC {
		t.Errorf("checkpoint time %v, want %v in UTC", cp.Time, now.Truncate(time.Microsecond))
	}
	if err := VerifyCheckpoint(s.Public(), cp); err != nil {
		t.Fatal(err)
	}
	hash[0] = 0 // Sign copied it
	if err := VerifyCheckpoint(s.Public(), cp); err != nil {
		t.Fatal("checkpoint aliases the caller's hash")
	}

	tamper := map[string]func(c *Checkpoint){
		"seq":       func(c *Checkpoint) { c.Seq++ },
		"hash":      func(c *Checkpoint) { c.Hash = bytes.Clone(c.Hash); c.Hash[5] ^= 1 },
		"time":      func(c *Checkpoint) { c.Time = c.Time.Add(time.Microsecond) },
		"signature": func(c *Checkpoint) { c.Signature = bytes.Clone(c.Signature); c.Signature[0] ^= 1 },
		"no sig":    func(c *Checkpoint) { c.Signature = nil },
		"key id":    func(c *Checkpoint) { c.KeyID = "ed25519:0000000000000000" },
		"kind":      func(c *Checkpoint) { c.Kind = "periodic" },
		"index":     func(c *Checkpoint) { c.Index = 1 },
		"old index": func(c *Checkpoint) { c.Index = 0 },
		"prev seq":  func(c *Checkpoint) { c.PrevSeq = 89 },
		"prev":      func(c *Checkpoint) { c.Prev = nil },
	}
	for name, f := range tamper {
		c := cp
		f(&c)
		if err := VerifyCheckpoint(s.Public(), c); !errors.Is(err, ErrBadSignature) {
			t.Errorf("tampered %s: err = %v, want ErrBadSignature", name, err)
		}
	}
	other := newTestSigner(t)
	if err := VerifyCheckpoint(other.Public(), cp); !errors.Is(err, ErrBadSignature) {
		t.Errorf("other key: err = %v", err)
	}
	// A forger with their own key who also writes their key ID still fails.
	forged := other.Sign(cp.Kind, &prev, cp.Seq, cp.Hash, cp.Time)
	if err := VerifyCheckpoint(s.Public(), forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged: err = %v", err)
	}
	forged.KeyID = s.KeyID()
	if err := VerifyCheckpoint(s.Public(), forged); !errors.Is(err, ErrBadSignature) {
		t.Errorf("forged with right key id: err = %v", err)
	}
	if err := VerifyCheckpoint(nil, cp); err == nil {
		t.Error("nil public key accepted")
	}
	if _, err := NewSigner(ed25519.PrivateKey{1, 2, 3}); err == nil {
		t.Error("short private key accepted")
	}
}

func TestPublicKeyPEM(t *testing.T) {
	s := newTestSigner(t)
	p, err := MarshalPublicKey(s.Public())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(p, []byte("-----BEGIN PUBLIC KEY-----")) {
		t.Fatalf("PEM: %s", p)
	}
	pub, err := ParsePublicKey(p)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.Public()) {
		t.Fatal("public key round trip")
	}
	if _, err := ParsePublicKey([]byte("junk")); err == nil {
		t.Error("junk accepted")
	}
}
