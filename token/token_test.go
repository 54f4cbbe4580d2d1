package token

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

// Test tokens are built at run time and never written out as literals, so that scanning
// this repository with `gatehouse scan` does not report its own test fixtures.

// fixedBody is a 32-character base62 body used for known-answer tests.
const fixedBody = "0123456789ABCDEFGHIJabcdefghijKL"

// build returns the token of kind k with the given body and a correct checksum.
func build(k Kind, body string) string {
	s := prefix + string(k) + "_" + body
	sum := checksum([]byte(s))
	return s + string(sum[:])
}

func mustNew(t testing.TB, k Kind) string {
	t.Helper()
	s, err := New(k)
	if err != nil {
		t.Fatalf("New(%q): %v", k, err)
	}
	return s
}

func TestChecksumGitHubVectors(t *testing.T) {
	// GitHub's classic tokens use the same encoding (CRC32 IEEE, base62 0-9A-Za-z,
	// big-endian, '0'-padded to 6), computed over the body only. Published vectors:
	for body, want := range map[string]string{
		"zQWBuTSOoRi4A9spHcVY5ncnsDkxkJ": "0mLq17",
		"adE7dp8rHP6gUTuPwxLTZjZdtya3sV": "0UQzQM",
		"H3xbiBdlzffNx7Y56iNsPw3joObj7U": "2nO29h",
		"":                               "000000",
	} {
		if got := checksum([]byte(body)); string(got[:]) != want {
			t.Errorf("checksum(%q) = %s, want %s", body, got, want)
		}
	}
}

func TestChecksumKnownAnswers(t *testing.T) {
	// Computed independently with Python: zlib.crc32(b"gatehouse_<kind>_" + body),
	// then base62 with the same alphabet. The checksum covers prefix and kind.
	for k, want := range map[Kind]string{
		Personal: "40ACR9",
		Team:     "2nBQMs",
		Org:      "2qwyjz",
		Lease:    "4bDQya",
		SCIM:     "3CuZ0W",
		Runner:   "36mg9W",
		Deploy:   "3J8w4z",
	} {
		s := build(k, fixedBody)
		if got := s[len(s)-checksumLen:]; got != want {
			t.Errorf("checksum for kind %q = %s, want %s", k, got, want)
		}
		got, err := Parse(s)
		if err != nil || got != k {
			t.Errorf("Parse(known-answer %q token) = %q, %v; want %q, nil", k, got, err, k)
		}
	}
}

func TestPatternString(t *testing.T) {
	// This regular expression is what operators put in gitleaks/trufflehog custom rules and
	// GitHub push-protection custom patterns; changing it is a compatibility event.
	const want = `\bgatehouse_(?:pat|team|org|lease|scim|runner|deploy)_[0-9A-Za-z]{38}\b`
	if got := Pattern.String(); got != want {
		t.Errorf("Pattern = %s, want %s", got, want)
	}
}

func TestNewRoundTrip(t *testing.T) {
	for _, k := range kinds {
		t.Run(string(k), func(t *testing.T) {
			s := mustNew(t, k)
			wantPrefix := "gatehouse_" + string(k) + "_"
			if !strings.HasPrefix(s, wantPrefix) {
				t.Fatalf("token %s lacks prefix %q", Redact(s), wantPrefix)
			}
			if want := len(wantPrefix) + 32 + 6; len(s) != want {
				t.Fatalf("len = %d, want %d", len(s), want)
			}
			for i := len(wantPrefix); i < len(s); i++ {
				if !strings.ContainsRune(alphabet, rune(s[i])) {
					t.Fatalf("non-base62 character %q at %d", s[i], i)
				}
			}
			got, err := Parse(s)
			if err != nil {
				t.Fatalf("Parse(New(%q)): %v", k, err)
			}
			if got != k {
				t.Fatalf("Parse(New(%q)) kind = %q", k, got)
			}
			if m := Pattern.FindString("x " + s + " y"); m != s {
				t.Fatalf("Pattern does not match a fresh token exactly: got %q", Redact(m))
			}
		})
	}
}

func TestNewUnknownKind(t *testing.T) {
	for _, k := range []Kind{"", "PAT", "pul", "team_", "gatehouse", "stack"} {
		if s, err := New(k); err == nil {
			t.Errorf("New(%q) = %s, want error", k, Redact(s))
		}
		if k.Valid() {
			t.Errorf("Kind(%q).Valid() = true", k)
		}
	}
	for _, k := range kinds {
		if !k.Valid() {
			t.Errorf("Kind(%q).Valid() = false", k)
		}
	}
}

func TestNewUniqueness(t *testing.T) {
	const n = 20000
	seen := make(map[string]struct{}, n)
	bodies := make(map[string]struct{}, n)
	for i := range n {
		s := mustNew(t, kinds[i%len(kinds)])
		if _, dup := seen[s]; dup {
			t.Fatalf("duplicate token after %d tokens", i)
		}
		seen[s] = struct{}{}
		body := s[strings.LastIndexByte(s, '_')+1:][:bodyLen]
		if _, dup := bodies[body]; dup {
			t.Fatalf("duplicate body after %d tokens", i)
		}
		bodies[body] = struct{}{}
	}
}

func TestNewCharacterDistribution(t *testing.T) {
	// A coarse statistical check on real output: with 62 symbols and 64000 draws every
	// symbol is expected 1032 times (sd ~ 32); a modulo bias or a broken alphabet would
	// show up far outside [800, 1300]. The exact uniformity of the sampler is proven by
	// TestFillBase62Uniform.
	counts := make(map[byte]int)
	for range 2000 {
		s := mustNew(t, Personal)
		for _, c := range []byte(s[len("gatehouse_pat_"):][:bodyLen]) {
			counts[c]++
		}
	}
	if len(counts) != len(alphabet) {
		t.Fatalf("saw %d distinct symbols, want %d", len(counts), len(alphabet))
	}
	for c, n := range counts {
		if n < 800 || n > 1300 {
			t.Errorf("symbol %q drawn %d times, expected about 1032", c, n)
		}
	}
}

// cycleReader yields 0, 1, ..., 255, 0, 1, ... forever.
type cycleReader struct{ next byte }

func (r *cycleReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = r.next
		r.next++
	}
	return len(p), nil
}

func TestFillBase62Uniform(t *testing.T) {
	// Feeding every byte value exactly once must yield every symbol exactly 4 times:
	// 248 = 4*62 bytes are accepted, 248..255 are rejected. With a naive b%62 the first
	// 8 symbols would come up 5 times.
	dst := make([]byte, 248)
	if err := fillBase62(dst, &cycleReader{}); err != nil {
		t.Fatal(err)
	}
	counts := make(map[byte]int)
	for _, c := range dst {
		counts[c]++
	}
	if len(counts) != 62 {
		t.Fatalf("%d distinct symbols, want 62", len(counts))
	}
	for c, n := range counts {
		if n != 4 {
			t.Errorf("symbol %q: %d, want 4", c, n)
		}
	}
}

func TestFillBase62RejectsHighBytes(t *testing.T) {
	// Only bytes >= 248 for a while, then a single 61 (which maps to 'z').
	src := append(bytes.Repeat([]byte{248, 249, 255}, 100), bytes.Repeat([]byte{61}, 64)...)
	dst := make([]byte, 1)
	if err := fillBase62(dst, bytes.NewReader(src)); err != nil {
		t.Fatal(err)
	}
	if dst[0] != 'z' {
		t.Fatalf("got %q, want 'z'", dst[0])
	}
}

func TestNewRandomError(t *testing.T) {
	boom := errors.New("entropy exhausted")
	_, err := newFrom(iotest.ErrReader(boom), Personal)
	if !errors.Is(err, boom) {
		t.Fatalf("newFrom with failing reader: err = %v, want wrapping %v", err, boom)
	}
	_, err = newFrom(bytes.NewReader(make([]byte, 10)), Team) // short read
	if err == nil {
		t.Fatal("newFrom with short reader: want error")
	}
}

// otherBase62 returns a base62 character different from c (which must be base62).
func otherBase62(c byte) byte {
	return alphabet[(strings.IndexByte(alphabet, c)+1)%len(alphabet)]
}

// substitutes are characters tried at every position of a token: all of base62, the
// separator and a few look-alike or dangerous bytes.
var substitutes = alphabet + "_-+/=. \x00\n\xff"

func TestParseRejectsEverySingleCharChange(t *testing.T) {
	for _, k := range kinds {
		s := mustNew(t, k)
		bodyStart := len(prefix) + len(k) + 1
		for i := range len(s) {
			for _, c := range []byte(substitutes) {
				if c == s[i] {
					continue
				}
				mutated := s[:i] + string(c) + s[i+1:]
				_, err := Parse(mutated)
				switch {
				case err == nil:
					t.Fatalf("kind %s: change at %d to %q accepted", k, i, c)
				case i >= bodyStart && isBase62(c):
					// Same shape, so only the checksum can catch it (CRC32 detects every
					// single-byte error).
					if !errors.Is(err, ErrChecksum) {
						t.Fatalf("kind %s: change at %d to %q: err = %v, want ErrChecksum", k, i, c, err)
					}
				default:
					if !errors.Is(err, ErrMalformed) {
						t.Fatalf("kind %s: change at %d to %q: err = %v, want ErrMalformed", k, i, c, err)
					}
				}
			}
		}
	}
}

func TestParseRejectsTranspositions(t *testing.T) {
	for _, k := range kinds {
		s := []byte(mustNew(t, k))
		for i := len(prefix) + len(k) + 1; i+1 < len(s); i++ {
			if s[i] == s[i+1] {
				continue
			}
			m := bytes.Clone(s)
			m[i], m[i+1] = m[i+1], m[i]
			if _, err := Parse(string(m)); !errors.Is(err, ErrChecksum) {
				t.Fatalf("kind %s: swap at %d: err = %v, want ErrChecksum", k, i, err)
			}
		}
	}
}

func TestParseWrongKind(t *testing.T) {
	s := build(Personal, fixedBody)
	tail := s[len("gatehouse_pat_"):]

	// Another valid kind with the original checksum: the checksum binds the kind.
	for _, k := range []Kind{Team, Org, Lease, SCIM} {
		if _, err := Parse(prefix + string(k) + "_" + tail); !errors.Is(err, ErrChecksum) {
			t.Errorf("kind changed to %q: err = %v, want ErrChecksum", k, err)
		}
	}
	// Unknown kinds are malformed even with a correct checksum over them.
	for _, k := range []Kind{"PAT", "Pat", "pa", "pats", "admin", "", "lease2", "tea"} {
		if _, err := Parse(build(k, fixedBody)); !errors.Is(err, ErrMalformed) {
			t.Errorf("kind %q: err = %v, want ErrMalformed", k, err)
		}
	}
}

func TestParseWrongLengths(t *testing.T) {
	for _, n := range []int{0, 1, 31, 33, 37, 39, 64} {
		body := strings.Repeat("a", n)
		// A correct checksum over a wrong-length body.
		if _, err := Parse(build(Personal, body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("body length %d: err = %v, want ErrMalformed", n, err)
		}
	}
	s := build(Org, fixedBody)
	for _, c := range []string{
		"", "gatehouse", "gatehouse_", "gatehouse_org", "gatehouse_org_",
		s[:len(s)-1], s + "0", s[:len(s)-checksumLen], s + s,
	} {
		if _, err := Parse(c); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q): err = %v, want ErrMalformed", Redact(c), err)
		}
	}
}

func TestParseNonBase62(t *testing.T) {
	base := build(Lease, fixedBody)
	start := len("gatehouse_lease_")
	for _, pos := range []int{start, start + 10, len(base) - checksumLen, len(base) - 1} {
		for _, bad := range []string{"-", "_", "+", "/", "=", " ", "\t", "\x00", "\x7f", "é", "Ａ", "\u200b"} {
			// Keep the byte length right so that only the alphabet check can reject it.
			p := min(pos, len(base)-len(bad))
			s := base[:p] + bad + base[p+len(bad):]
			if _, err := Parse(s); !errors.Is(err, ErrMalformed) {
				t.Errorf("pos %d, char %q: err = %v, want ErrMalformed", pos, bad, err)
			}
		}
	}
}

func TestParseLookAlikes(t *testing.T) {
	s := build(Personal, fixedBody)
	body := s[len("gatehouse_pat_"):]
	for _, c := range []string{
		"pul-" + strings.Repeat("0123456789", 4),
		"ghp_" + body[:36],
		"github_pat_" + body,
		"Gatehouse_pat_" + body,
		"GATEHOUSE_pat_" + body,
		"gatehouse-pat-" + body,
		"gatehouse_pat-" + body,
		"gatehouse__pat_" + body,
		"gatehous_pat_" + body,
		"xgatehouse_pat_" + body,
		" " + s,
		s + " ",
		s + "\n",
		"\ufeff" + s,
		"gatehouse_pat_" + strings.ToUpper(body),
	} {
		if _, err := Parse(c); err == nil {
			t.Errorf("Parse(%q) accepted a look-alike", c)
		}
	}
}

func TestParseErrorsDoNotLeak(t *testing.T) {
	s := mustNew(t, Personal)
	secret := s[len("gatehouse_pat_"):]
	for _, c := range []string{
		s[:len(s)-1] + "!",                           // malformed
		s[:20] + string(otherBase62(s[20])) + s[21:], // checksum
		"gatehouse_nope_" + secret,
		"prefix-" + secret,
	} {
		_, err := Parse(c)
		if err == nil {
			t.Fatalf("Parse accepted a corrupted token")
		}
		if strings.Contains(err.Error(), secret[:8]) {
			t.Errorf("error %q leaks token material", err)
		}
	}
}

func TestPatternInText(t *testing.T) {
	s := build(Team, fixedBody)
	for _, tc := range []struct {
		text string
		want int // number of matches
	}{
		{s, 1},
		{"PULUMI_ACCESS_TOKEN=" + s + "\n", 1},
		{`{"token":"` + s + `"}`, 1},
		{"Authorization: token " + s + "\r\n", 1},
		{"https://h/?t=" + s + "&x=1", 1},
		{s + "," + s, 2},
		{"é" + s + "é", 1}, // non-ASCII bytes are not word characters
		{"x" + s, 0},
		{s + "x", 0},
		{s + "_", 0},
		{"_" + s, 0},
		{"9" + s, 0},
		{s[:len(s)-1], 0},
		{strings.Replace(s, "team", "teams", 1), 0},
	} {
		if got := len(Pattern.FindAllStringIndex(tc.text, -1)); got != tc.want {
			t.Errorf("Pattern in %q: %d matches, want %d", tc.text, got, tc.want)
		}
	}
}

func TestDigestAndEqual(t *testing.T) {
	a, b := mustNew(t, Personal), mustNew(t, Personal)
	da, db := Digest(a), Digest(b)
	if da != sha256.Sum256([]byte(a)) {
		t.Fatal("Digest is not SHA-256 of the token string")
	}
	if !Equal(da, Digest(a)) {
		t.Fatal("Equal(d, d) = false")
	}
	if Equal(da, db) {
		t.Fatal("Equal on digests of different tokens = true")
	}
	flipped := da
	flipped[31] ^= 1
	if Equal(da, flipped) {
		t.Fatal("Equal ignores the last byte")
	}
	var zero [32]byte
	if Equal(da, zero) || !Equal(zero, zero) {
		t.Fatal("Equal wrong on zero digest")
	}
}

func TestRedact(t *testing.T) {
	s := build(Personal, fixedBody)
	for in, want := range map[string]string{
		s:                                   "gatehouse_pat_0123…(redacted)",
		build(Lease, fixedBody):             "gatehouse_lease_0123…(redacted)",
		s[:len(s)-1] + "!":                  "gatehouse_pat_0123…(redacted)", // right shape, bad checksum
		s[:len(s)-1]:                        "gatehouse_pat_…(redacted)",     // wrong length
		"gatehouse_pat_\nINJECTED" + s[23:]: "gatehouse_pat_…(redacted)",     // control chars never copied
		"gatehouse_pat_":                    "gatehouse_pat_…(redacted)",     //
		"gatehouse_evil\n_" + fixedBody:     "(redacted)",                    // unknown kind
		"pul-0123456789abcdef":              "(redacted)",                    // someone else's token
		"":                                  "(redacted)",                    //
		"gatehouse_":                        "(redacted)",                    //
		"hunter2":                           "(redacted)",                    //
		" " + s:                             "(redacted)",                    //
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
	// The redacted form of a real token must not be accepted as, or match, a token.
	r := Redact(mustNew(t, Org))
	if _, err := Parse(r); err == nil || Pattern.MatchString(r) {
		t.Fatalf("Redact output %q still looks like a token", r)
	}
}

func BenchmarkParseDigest(b *testing.B) {
	s := mustNew(b, Personal)
	want := Digest(s)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
		if !Equal(Digest(s), want) {
			b.Fatal("digest mismatch")
		}
	}
}

func BenchmarkParseReject(b *testing.B) {
	s := mustNew(b, Personal)
	bad := s[:len(s)-1] + string(otherBase62(s[len(s)-1]))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(bad); err == nil {
			b.Fatal("accepted")
		}
	}
}

func BenchmarkNew(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := New(Personal); err != nil {
			b.Fatal(err)
		}
	}
}
