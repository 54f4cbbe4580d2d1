package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// DataKeySize is the size in bytes of a data key (AES-256).
const DataKeySize = 32

// sealVersion is the first byte of every ciphertext made by Seal. A new format gets a new
// version so old ciphertexts stay readable.
const sealVersion byte = 1

const (
	nonceSize = 12 // 96-bit random nonce
	tagSize   = 16 // GCM authentication tag
	// SealOverhead is how many bytes Seal adds to the plaintext: version, nonce and tag.
	SealOverhead = 1 + nonceSize + tagSize
)

var (
	// ErrDecrypt is returned (wrapped) by Open, Manager.Decrypt and Manager.DecryptBatch when
	// a ciphertext cannot be opened: unknown version, too short, wrong key, wrong context
	// (AAD) or tampered with. It deliberately does not say which.
	ErrDecrypt = errors.New("secrets: ciphertext cannot be decrypted")

	// ErrNoKey is returned by KeyStore.GetStackKey when a stack has no data key yet.
	ErrNoKey = errors.New("secrets: stack has no data key")
)

// NewDataKey returns a new random 256-bit data key from the system's CSPRNG.
func NewDataKey() ([]byte, error) {
	dek := make([]byte, DataKeySize)
	if _, err := rand.Read(dek); err != nil {
		return nil, fmt.Errorf("secrets: generate data key: %w", err)
	}
	return dek, nil
}

// newAEAD returns AES-256-GCM with random 96-bit nonces (prepended by Seal) for key.
func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != DataKeySize {
		return nil, fmt.Errorf("secrets: key is %d bytes, want %d", len(key), DataKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("secrets: init AES: %w", err)
	}
	aead, err := cipher.NewGCMWithRandomNonce(block)
	if err != nil {
		return nil, fmt.Errorf("secrets: init AES-GCM: %w", err)
	}
	return aead, nil
}

// Seal encrypts plaintext with the 256-bit key dek using AES-256-GCM and a random 96-bit
// nonce. aad is authenticated but not encrypted: it binds the ciphertext to its context and
// must be given again to Open. The output is
//
//	version (1 byte, currently 1) || nonce (12 bytes) || ciphertext || tag (16 bytes)
//
// A key must not seal more than 2^32 messages (random-nonce limit of NIST SP 800-38D).
func Seal(dek, plaintext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, err
	}
	return sealWith(aead, plaintext, aad), nil
}

// Open decrypts and authenticates a ciphertext made by Seal with the same dek and aad. Any
// failure (wrong key, wrong aad, unknown version, truncated or modified input) returns an
// error wrapping ErrDecrypt.
func Open(dek, ciphertext, aad []byte) ([]byte, error) {
	aead, err := newAEAD(dek)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDecrypt, err)
	}
	return openWith(aead, ciphertext, aad)
}

// sealWith seals with an AEAD made by newAEAD.
func sealWith(aead cipher.AEAD, plaintext, aad []byte) []byte {
	out := make([]byte, 1, SealOverhead+len(plaintext))
	out[0] = sealVersion
	return aead.Seal(out, nil, plaintext, aad)
}

// openWith opens with an AEAD made by newAEAD.
func openWith(aead cipher.AEAD, ciphertext, aad []byte) ([]byte, error) {
	if len(ciphertext) < SealOverhead {
		return nil, fmt.Errorf("%w: too short", ErrDecrypt)
	}
	if ciphertext[0] != sealVersion {
		return nil, fmt.Errorf("%w: unknown format version %d", ErrDecrypt, ciphertext[0])
	}
	pt, err := aead.Open(nil, nil, ciphertext[1:], aad)
	if err != nil {
		return nil, fmt.Errorf("%w: authentication failed", ErrDecrypt)
	}
	if pt == nil {
		pt = []byte{}
	}
	return pt, nil
}
