// Package jsondepth bounds the nesting depth of JSON documents before they are decoded, and
// counts a JSON array's elements without decoding it (ArrayLen).
//
// The JSON decoder of the request path (segmentio/encoding/json) recurses once per level of
// nesting and has no limit of its own: a few megabytes of '[' (a few kilobytes gzipped)
// made it recurse until Go's stack limit, a "fatal error: stack overflow" that no recover
// catches, and the whole process went down. Its cost also grows with depth: decoding a
// value nested 10,000 deep into an interface took seconds. Every decoder of untrusted JSON
// therefore calls Check first.
package jsondepth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
)

// Max is the deepest nesting accepted: 1,000 levels of arrays and objects.
//
// No real Pulumi document comes near it. A resource's properties reach the engine as
// protobuf Structs (three message levels per JSON level), and protobuf decoders stop at 100
// (C++, so Python providers: ~33 JSON levels) or 10,000 (Go: ~3,300) message levels;
// checkpoints add about five levels around the properties. encoding/json stops at 10,000,
// but that is too deep for the request decoder: at 10,000 levels one 20 KB document costs
// it seconds of CPU and megabytes of stack; at 1,000, a fraction of a megabyte.
const Max = 1000

// ErrTooDeep is returned (wrapped) for a document nested deeper than the limit.
var ErrTooDeep = errors.New("JSON nested too deeply")

const (
	ones = 0x0101010101010101
	lo7  = 0x7F7F7F7F7F7F7F7F
)

// zeroBytes returns 0x80 in every byte of v that is zero, 0 in the others (exactly: no
// carries between bytes).
func zeroBytes(v uint64) uint64 { return ^((v&lo7 + lo7) | v | lo7) }

// Check returns an error wrapping ErrTooDeep when the JSON text b nests arrays and objects
// more than max levels deep (Max when max <= 0). It does not validate b otherwise: brackets
// inside strings do not count, and malformed text is left to the decoder to reject (up to
// the first syntax error, which is as far as a decoder goes, the depth is exact).
//
// It reads b eight bytes at a time and finds the quotes and brackets of each word without
// branching on each byte: about a quarter of the time the request decoder takes for a
// checkpoint.
func Check(b []byte, max int) error {
	if max <= 0 {
		max = Max
	}
	if len(b) <= max {
		return nil // each level takes at least one byte
	}
	s := scanner{max: max}
	i := 0
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		if s.esc || zeroBytes(x^ones*'\\') != 0 {
			// Escapes are rare (except in strings of JSON): one byte at a time.
			for _, c := range b[i : i+8] {
				if !s.step(c) {
					return s.err()
				}
			}
			continue
		}
		q := zeroBytes(x ^ ones*'"')
		y := x | ones*0x20 // '[' and '{' become '{', ']' and '}' become '}'
		open := zeroBytes(y ^ ones*'{')
		shut := zeroBytes(y ^ ones*'}')
		if open|shut == 0 {
			// No brackets: only whether the word ends inside a string matters.
			s.inStr ^= -uint64(bits.OnesCount64(q) & 1)
			continue
		}
		if !s.brackets(q, open, shut) {
			return s.err()
		}
	}
	for _, c := range b[i:] {
		if !s.step(c) {
			return s.err()
		}
	}
	return nil
}

// scanner is Check's state between bytes.
type scanner struct {
	max, depth int
	inStr      uint64 // all ones inside a string, else 0
	esc        bool   // the last byte was an escaping backslash
}

// brackets takes a word without backslashes whose quotes are q and brackets open and shut
// (0x80 in the bytes that are); false when the depth went past the limit.
func (s *scanner) brackets(q, open, shut uint64) bool {
	// The prefix XOR of the quotes marks the bytes from an opening quote to before its
	// closing one; a string carried over from the last word flips it all.
	in := q ^ q<<8
	in ^= in << 16
	in ^= in << 32
	in ^= s.inStr
	s.inStr = -(in >> 63) // whether the last byte is inside a string
	open &^= in
	shut &^= in
	if n := bits.OnesCount64(open); s.depth+n <= s.max {
		s.depth += n - bits.OnesCount64(shut)
		return true
	}
	for k := 7; k < 64; k += 8 { // in order: the word may reach the limit
		if open>>k&1 != 0 {
			if s.depth++; s.depth > s.max {
				return false
			}
		} else if shut>>k&1 != 0 {
			s.depth--
		}
	}
	return true
}

// step takes one byte; false when the depth went past the limit.
func (s *scanner) step(c byte) bool {
	if s.inStr != 0 {
		switch {
		case s.esc:
			s.esc = false
		case c == '\\':
			s.esc = true
		case c == '"':
			s.inStr = 0
		}
		return true
	}
	switch c {
	case '"':
		s.inStr = ^uint64(0)
	case '[', '{':
		s.depth++
		return s.depth <= s.max
	case ']', '}':
		s.depth--
	}
	return true
}

func (s *scanner) err() error {
	return fmt.Errorf("%w: more than %d levels of arrays and objects", ErrTooDeep, s.max)
}
