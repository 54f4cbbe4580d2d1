package token

import (
	"errors"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that it accepts exactly the strings that
// Pattern matches in full and whose checksum recomputes to the one they carry, and that
// errors are always one of the two sentinels.
//
// The committed corpus in testdata/fuzz/FuzzParse holds only near misses and look-alikes;
// checksum-valid seeds are generated here at run time so that no valid token is committed.
func FuzzParse(f *testing.F) {
	for _, k := range kinds {
		s := build(k, fixedBody)
		f.Add(s)
		f.Add(mustNew(f, k))
		f.Add(s[:len(s)-1] + string(otherBase62(s[len(s)-1])))
		f.Add(s + "x")
	}
	f.Add("")
	f.Add("gatehouse_")
	f.Add("gatehouse_pat_")

	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)

		fullMatch := s != "" && Pattern.FindString(s) == s
		sumOK := fullMatch && recomputed(s) == s
		if (err == nil) != sumOK {
			t.Fatalf("Parse(%q) = %q, %v; but full pattern match = %v, checksum ok = %v", s, k, err, fullMatch, sumOK)
		}
		if err != nil {
			if k != "" {
				t.Fatalf("Parse(%q) returned kind %q with error %v", s, k, err)
			}
			switch {
			case fullMatch && !errors.Is(err, ErrChecksum):
				t.Fatalf("Parse(%q): right shape, wrong checksum, but err = %v", s, err)
			case !fullMatch && !errors.Is(err, ErrMalformed):
				t.Fatalf("Parse(%q): wrong shape but err = %v", s, err)
			}
			return
		}

		// Accepted: the string must equal its re-checksummed form, carry its kind, and
		// have the exact length for that kind.
		if !k.Valid() {
			t.Fatalf("Parse(%q) accepted with invalid kind %q", s, k)
		}
		if !strings.HasPrefix(s, "gatehouse_"+string(k)+"_") {
			t.Fatalf("Parse(%q) = %q, but the kind segment differs", s, k)
		}
		if len(s) != len("gatehouse_")+len(k)+1+bodyLen+checksumLen {
			t.Fatalf("Parse(%q) accepted length %d", s, len(s))
		}
		if r := Redact(s); strings.Contains(r, s[len(s)-checksumLen-bodyLen+4:]) || len(r) >= len(s)+len("(redacted)") {
			t.Fatalf("Redact(%q) = %q keeps too much", s, r)
		}
	})
}

// recomputed returns s with its last checksumLen characters replaced by the checksum of
// the rest, or "" if s is too short.
func recomputed(s string) string {
	if len(s) < checksumLen {
		return ""
	}
	sum := checksum([]byte(s[:len(s)-checksumLen]))
	return s[:len(s)-checksumLen] + string(sum[:])
}
