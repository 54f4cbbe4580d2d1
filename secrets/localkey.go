package secrets

import (
	"context"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"

	"gocloud.dev/gcerrors"
	gcsecrets "gocloud.dev/secrets"
)

// base64KeyScheme is the keyring URL scheme whose host part is the KEK itself (tests and
// throw-away setups).
const base64KeyScheme = "base64key"

// errLocalAuth is a local KEK's decrypt failure. It is deliberately not ErrDecrypt: a data
// key that does not unwrap is a server-side problem, not a bad ciphertext from a client.
var errLocalAuth = errors.New("local key cannot decrypt this value (different key, or corrupt data)")

// localKEKAAD binds values wrapped by a local KEK to that purpose.
var localKEKAAD = []byte("gatehouse/kek/local/v1")

// localKeeper is a gocloud.dev/secrets driver for a KEK held in memory (the default key file
// and base64key://). It seals with the same AES-256-GCM format as Seal, so its wrapped keys
// do not depend on any third-party format.
type localKeeper struct{ aead cipher.AEAD }

// Encrypt implements driver.Keeper.
func (l *localKeeper) Encrypt(_ context.Context, plaintext []byte) ([]byte, error) {
	return sealWith(l.aead, plaintext, localKEKAAD), nil
}

// Decrypt implements driver.Keeper.
func (l *localKeeper) Decrypt(_ context.Context, ciphertext []byte) ([]byte, error) {
	pt, err := openWith(l.aead, ciphertext, localKEKAAD)
	if err != nil {
		return nil, errLocalAuth
	}
	return pt, nil
}

// Close implements driver.Keeper.
func (l *localKeeper) Close() error { return nil }

// ErrorAs implements driver.Keeper.
func (l *localKeeper) ErrorAs(error, any) bool { return false }

// ErrorCode implements driver.Keeper.
func (l *localKeeper) ErrorCode(err error) gcerrors.ErrorCode {
	if errors.Is(err, errLocalAuth) {
		return gcerrors.InvalidArgument
	}
	return gcerrors.Unknown
}

// newLocalKeyring returns a keyring over the 32-byte key. The caller may clear key
// afterwards.
func newLocalKeyring(key []byte, desc string, created bool) (*Keyring, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	return &Keyring{
		keeper:  gcsecrets.NewKeeper(&localKeeper{aead: aead}),
		desc:    desc + " (key id " + keyID(key) + ")",
		created: created,
	}, nil
}

// keyID is a short one-way fingerprint of a local KEK, so that logs and canary errors can
// tell keys apart without revealing them.
func keyID(key []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("gatehouse/key-id/v1"))
	return hex.EncodeToString(mac.Sum(nil)[:4])
}

// openBase64Key opens base64key://<key>; rest is what follows "://".
func openBase64Key(rest string) (*Keyring, error) {
	// No error message here may contain rest: it is the key.
	if rest == "" {
		return nil, errors.New("secrets: base64key:// needs a key: base64key://<32 random bytes, base64>")
	}
	if strings.ContainsAny(rest, "?#") {
		return nil, errors.New("secrets: base64key:// takes no query parameters or fragment")
	}
	key, ok := decodeKey([]byte(rest))
	if !ok {
		return nil, errors.New("secrets: base64key:// value is not a base64-encoded 32-byte key")
	}
	defer clear(key)
	return newLocalKeyring(key, base64KeyScheme+"://[REDACTED]", false)
}

// decodeKey decodes a base64 32-byte key in URL-safe or standard encoding, padded or not.
func decodeKey(s []byte) ([]byte, bool) {
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(s))+3)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if n, err := enc.Decode(buf, s); err == nil && n == DataKeySize {
			key := make([]byte, DataKeySize)
			copy(key, buf)
			clear(buf)
			return key, true
		}
	}
	clear(buf)
	return nil, false
}

// encodeKey is the key file's encoding of key: standard base64.
func encodeKey(key []byte) []byte {
	out := make([]byte, base64.StdEncoding.EncodedLen(len(key)))
	base64.StdEncoding.Encode(out, key)
	return out
}
