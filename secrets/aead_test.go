package secrets

import (
	"bytes"
	"errors"
	"testing"
)

func mustKey(t testing.TB) []byte {
	t.Helper()
	k, err := NewDataKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewDataKey(t *testing.T) {
	a, b := mustKey(t), mustKey(t)
	if len(a) != DataKeySize || len(b) != DataKeySize {
		t.Fatalf("key sizes %d, %d", len(a), len(b))
	}
	if bytes.Equal(a, b) {
		t.Fatal("two data keys are equal")
	}
}

func TestSealOpenRoundTrip(t *testing.T) {
	dek := mustKey(t)
	aad := []byte("context")
	for _, n := range []int{0, 1, 15, 16, 17, 1024, 1 << 16} {
		pt := bytes.Repeat([]byte{'x'}, n)
		ct, err := Seal(dek, pt, aad)
		if err != nil {
			t.Fatal(err)
		}
		if len(ct) != n+SealOverhead {
			t.Fatalf("len %d: ciphertext %d bytes, want %d", n, len(ct), n+SealOverhead)
		}
		if ct[0] != 1 {
			t.Fatalf("version byte %d", ct[0])
		}
		if n >= 8 && bytes.Contains(ct, pt) {
			t.Fatal("plaintext visible in ciphertext")
		}
		got, err := Open(dek, ct, aad)
		if err != nil {
			t.Fatalf("len %d: %v", n, err)
		}
		if got == nil || !bytes.Equal(got, pt) {
			t.Fatalf("len %d: round trip mismatch", n)
		}
	}
}

func TestSealRandomNonce(t *testing.T) {
	dek := mustKey(t)
	a, _ := Seal(dek, []byte("same"), nil)
	b, _ := Seal(dek, []byte("same"), nil)
	if bytes.Equal(a, b) || bytes.Equal(a[1:13], b[1:13]) {
		t.Fatal("two seals of the same plaintext share a nonce")
	}
}

func TestOpenTamper(t *testing.T) {
	dek := mustKey(t)
	aad := []byte("aad")
	ct, err := Seal(dek, []byte("a secret value"), aad)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ct {
		for _, bit := range []byte{0x01, 0x80} {
			bad := bytes.Clone(ct)
			bad[i] ^= bit
			if _, err := Open(dek, bad, aad); !errors.Is(err, ErrDecrypt) {
				t.Fatalf("flip bit %#x of byte %d: err %v, want ErrDecrypt", bit, i, err)
			}
		}
	}
	if _, err := Open(dek, append(bytes.Clone(ct), 0), aad); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("appended byte: %v", err)
	}
}

func TestOpenTruncated(t *testing.T) {
	dek := mustKey(t)
	ct, _ := Seal(dek, []byte("a secret value"), nil)
	for n := 0; n < len(ct); n++ {
		if _, err := Open(dek, ct[:n], nil); !errors.Is(err, ErrDecrypt) {
			t.Fatalf("truncated to %d: err %v, want ErrDecrypt", n, err)
		}
	}
	if _, err := Open(dek, nil, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("nil: %v", err)
	}
}

func TestOpenWrongKeyAADVersion(t *testing.T) {
	dek := mustKey(t)
	ct, _ := Seal(dek, []byte("v"), []byte("a"))
	if _, err := Open(mustKey(t), ct, []byte("a")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong key: %v", err)
	}
	if _, err := Open(dek, ct, []byte("b")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("wrong aad: %v", err)
	}
	if _, err := Open(dek, ct, nil); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("missing aad: %v", err)
	}
	bad := bytes.Clone(ct)
	bad[0] = 2
	if _, err := Open(dek, bad, []byte("a")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("version 2: %v", err)
	}
	if _, err := Open(dek[:16], ct, []byte("a")); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("short key: %v", err)
	}
}

func TestSealBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33} {
		if _, err := Seal(make([]byte, n), []byte("x"), nil); err == nil {
			t.Fatalf("Seal accepted a %d-byte key", n)
		}
	}
}

func FuzzOpen(f *testing.F) {
	dek := make([]byte, DataKeySize)
	good, _ := Seal(dek, []byte("hello"), []byte("aad"))
	f.Add(good)
	f.Add([]byte{})
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{1}, SealOverhead))
	f.Fuzz(func(t *testing.T, ct []byte) {
		pt, err := Open(dek, ct, []byte("aad"))
		if err != nil {
			if !errors.Is(err, ErrDecrypt) {
				t.Fatalf("error does not wrap ErrDecrypt: %v", err)
			}
			return
		}
		// Only the seed (sealed in whichever process runs this) is a valid ciphertext.
		if string(pt) != "hello" {
			t.Fatalf("forged ciphertext accepted")
		}
	})
}

func BenchmarkSeal(b *testing.B) {
	dek := mustKey(b)
	pt := bytes.Repeat([]byte{'s'}, 1024)
	aad := stackAAD(42)
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(dek, pt, aad); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	dek := mustKey(b)
	pt := bytes.Repeat([]byte{'s'}, 1024)
	aad := stackAAD(42)
	ct, err := Seal(dek, pt, aad)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(pt)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Open(dek, ct, aad); err != nil {
			b.Fatal(err)
		}
	}
}
