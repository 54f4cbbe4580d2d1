// Package token mints, validates and fingerprints Gatehouse access tokens.
//
// A token looks like
//
//	gatehouse_<kind>_<body><checksum>
//
// where kind is one of the [Kind] constants, body is 32 characters drawn uniformly from the
// base62 alphabet 0-9A-Za-z with crypto/rand (about 190 bits of entropy), and checksum is the
// CRC32 (IEEE) of everything before it ("gatehouse_<kind>_<body>"), base62-encoded big-endian
// and left-padded with '0' to 6 characters.
//
// The layout follows GitHub's token format: a prefix that names the issuer and the kind, an
// underscore separator so that a double click selects the whole token, and a 32-bit checksum
// so that scanners can tell a real token from a look-alike offline. Unlike GitHub, the
// checksum also covers the prefix and the kind, so a token whose kind segment was edited is
// rejected. The prefix is deliberately not Pulumi's "pul-": leaks of self-hosted tokens must
// reach this server's operator, not Pulumi, and must not be sent to api.pulumi.com by
// verifying scanners.
//
// The checksum is not a secret and not an authenticator: it only lets [Parse] shed garbage
// before a database lookup. A token is authenticated by looking up its [Digest]; only the
// digest is ever stored.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"regexp"
	"strconv"
	"strings"
)

// Kind is the kind of a token; its value is the kind segment of the token string.
type Kind string

// Token kinds.
const (
	Personal Kind = "pat"   // a personal access token; acts as its user
	Team     Kind = "team"  // a team token (a pipeline credential)
	Org      Kind = "org"   // an organization token (a pipeline credential)
	Lease    Kind = "lease" // an update-lease token, valid only for one update
	// SCIM is an organization's SCIM provisioning token: the identity provider's bearer
	// token for /scim/v2/{org}, one per organization, valid for nothing else.
	SCIM Kind = "scim"
	// Runner is a runner pool's token: it leases the pool's queued deployments, nothing else.
	Runner Kind = "runner"
	// Deploy is a deployment credential: one run's stack and operation, for the run's life.
	Deploy Kind = "deploy"
)

// kinds lists every valid Kind.
var kinds = [...]Kind{Personal, Team, Org, Lease, SCIM, Runner, Deploy}

// Valid reports whether k is one of the defined kinds.
func (k Kind) Valid() bool {
	switch k {
	case Personal, Team, Org, Lease, SCIM, Runner, Deploy:
		return true
	}
	return false
}

// Errors returned by Parse. Errors from Parse never contain the token or any part of it.
var (
	// ErrMalformed reports a string that does not have the shape of a Gatehouse token:
	// wrong prefix, unknown kind, wrong length or a character outside the base62 alphabet.
	ErrMalformed = errors.New("token: malformed")
	// ErrChecksum reports a string that has the shape of a token but whose checksum does
	// not match: a typo, a truncated copy, or a look-alike.
	ErrChecksum = errors.New("token: checksum mismatch")
)

const (
	prefix      = "gatehouse_"
	bodyLen     = 32
	checksumLen = 6
	alphabet    = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// maxLen is the length of the longest token (kind "runner").
	maxLen = len(prefix) + len(Runner) + 1 + bodyLen + checksumLen
)

// Pattern matches candidate tokens in arbitrary text. A match is bounded by ASCII word
// boundaries on both sides (so it is never part of a longer identifier) and consists only
// of ASCII word characters. A match is only a candidate: confirm it with Parse, which
// verifies the checksum.
var Pattern = regexp.MustCompile(`\b` + regexp.QuoteMeta(prefix) + `(?:` + kindAlternation() + `)_[0-9A-Za-z]{` +
	strconv.Itoa(bodyLen+checksumLen) + `}\b`)

func kindAlternation() string {
	alts := make([]string, len(kinds))
	for i, k := range kinds {
		alts[i] = regexp.QuoteMeta(string(k))
	}
	return strings.Join(alts, "|")
}

// New returns a fresh token of kind k. The error is non-nil only if k is not a valid kind
// or the system's random number generator fails.
func New(k Kind) (string, error) {
	return newFrom(rand.Reader, k)
}

// newFrom is New with the source of randomness as a parameter, for tests.
func newFrom(random io.Reader, k Kind) (string, error) {
	if !k.Valid() {
		return "", fmt.Errorf("token: new: unknown kind %q", string(k))
	}
	var buf [maxLen]byte
	b := append(buf[:0], prefix...)
	b = append(b, k...)
	b = append(b, '_')
	n := len(b)
	b = b[:n+bodyLen]
	if err := fillBase62(b[n:], random); err != nil {
		return "", fmt.Errorf("token: new: %w", err)
	}
	sum := checksum(b)
	b = append(b, sum[:]...)
	return string(b), nil
}

// fillBase62 fills dst with characters drawn uniformly from the base62 alphabet. It uses
// rejection sampling: a random byte b is used only if b < 248 (= 4*62), and then maps to
// alphabet[b%62], so that every character has probability exactly 1/62.
func fillBase62(dst []byte, random io.Reader) error {
	const limit = 256 - 256%len(alphabet) // 248
	var buf [64]byte
	for n := 0; n < len(dst); {
		if _, err := io.ReadFull(random, buf[:]); err != nil {
			return fmt.Errorf("reading random bytes: %w", err)
		}
		for _, c := range buf {
			if int(c) >= limit {
				continue
			}
			dst[n] = alphabet[int(c)%len(alphabet)]
			n++
			if n == len(dst) {
				break
			}
		}
	}
	return nil
}

// checksum returns the CRC32 (IEEE) of s, base62-encoded big-endian and left-padded with
// '0' to checksumLen characters. 62^6 > 2^32, so every CRC32 fits.
func checksum(s []byte) [checksumLen]byte {
	v := crc32.ChecksumIEEE(s)
	var out [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		out[i] = alphabet[v%uint32(len(alphabet))]
		v /= uint32(len(alphabet))
	}
	return out
}

// Parse checks that s is a well-formed Gatehouse token with a valid checksum and returns
// its kind. It returns an error wrapping ErrMalformed if s does not have the shape of a
// token, or ErrChecksum if only the checksum is wrong. Parse does not tell whether the
// token was ever issued or is still valid; that takes a lookup by Digest.
func Parse(s string) (Kind, error) {
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return "", fmt.Errorf("%w: missing %q prefix", ErrMalformed, prefix)
	}
	k, tail, ok := strings.Cut(rest, "_")
	if !ok {
		return "", fmt.Errorf("%w: missing kind separator", ErrMalformed)
	}
	kind := Kind(k)
	if !kind.Valid() {
		return "", fmt.Errorf("%w: unknown kind", ErrMalformed)
	}
	if len(tail) != bodyLen+checksumLen {
		return "", fmt.Errorf("%w: wrong length", ErrMalformed)
	}
	for i := 0; i < len(tail); i++ {
		if !isBase62(tail[i]) {
			return "", fmt.Errorf("%w: invalid character", ErrMalformed)
		}
	}
	split := len(s) - checksumLen
	sum := checksum([]byte(s[:split]))
	if string(sum[:]) != s[split:] {
		return "", ErrChecksum
	}
	return kind, nil
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Digest returns the SHA-256 digest of the full token string. Store and index tokens by
// their digest; never store the token itself. Tokens carry about 190 bits of entropy, so a
// fast unsalted hash is sufficient (a slow password KDF would add latency, not security).
func Digest(s string) [32]byte {
	return sha256.Sum256([]byte(s))
}

// Equal reports whether two digests are equal, in time independent of their contents.
func Equal(a, b [32]byte) bool {
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Redact returns a form of s that is safe to log. For a string with the shape of a token it
// keeps the prefix, the kind and the first 4 characters of the body (about 24 of the 190
// bits), e.g. "gatehouse_pat_AbCd…(redacted)". For a string with a token prefix and kind but
// the wrong shape it keeps only the prefix and kind, and for anything else it returns
// "(redacted)". The result never contains anything but the prefix, a known kind and base62
// characters, so it is also safe against log injection.
func Redact(s string) string {
	const mark = "(redacted)"
	rest, ok := strings.CutPrefix(s, prefix)
	if !ok {
		return mark
	}
	k, tail, ok := strings.Cut(rest, "_")
	if !ok || !Kind(k).Valid() {
		return mark
	}
	keep := 0
	if len(tail) == bodyLen+checksumLen {
		for keep < 4 && isBase62(tail[keep]) {
			keep++
		}
	}
	return prefix + k + "_" + tail[:keep] + "…" + mark
}
