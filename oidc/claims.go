package oidc

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

// Claims are a verified ID token's claims as decoded JSON (numbers as json.Number, so that
// numeric IDs keep every digit).
type Claims map[string]any

// ParseClaims decodes a JWT payload.
func ParseClaims(payload []byte) (Claims, error) {
	if err := jsondepth.Check(payload, 0); err != nil {
		return nil, fmt.Errorf("%w: the payload: %v", ErrMalformed, err)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var c Claims
	if err := dec.Decode(&c); err != nil || c == nil {
		return nil, fmt.Errorf("%w: the payload is not a JSON object", ErrMalformed)
	}
	return c, nil
}

// String returns a top-level claim as a string ("" when absent or not a scalar; list
// claims are joined with ",").
func (c Claims) String(name string) string {
	return strings.Join(scalars(c[name]), ",")
}

// Values returns the string forms of the claim at path: one value for a scalar, one per
// scalar element for a list, none when the claim is absent or an object.
func (c Claims) Values(path ClaimPath) []string {
	var cur any = map[string]any(c)
	for _, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		if cur, ok = m[seg]; !ok {
			return nil
		}
	}
	return scalars(cur)
}

func scalars(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case json.Number:
		return []string{x.String()}
	case bool:
		if x {
			return []string{"true"}
		}
		return []string{"false"}
	case []any:
		var out []string
		for _, e := range x {
			switch e.(type) {
			case string, json.Number, bool:
				out = append(out, scalars(e)...)
			}
		}
		return out
	}
	return nil
}

// ClaimPath is a path into the claims: ["sub"], or ["kubernetes.io", "pod", "name"].
type ClaimPath []string

func (p ClaimPath) String() string {
	parts := make([]string, len(p))
	for i, s := range p {
		if strings.ContainsAny(s, `."\`) || s == "" {
			parts[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
		} else {
			parts[i] = s
		}
	}
	return strings.Join(parts, ".")
}

// ParseClaimPath parses a rule's claim path: segments separated by dots, where a segment
// that contains a dot is written in double quotes (`"kubernetes.io".pod.name`; `\"` and
// `\\` escape inside quotes).
func ParseClaimPath(s string) (ClaimPath, error) {
	if s == "" || len(s) > MaxPatternLen || !utf8.ValidString(s) {
		return nil, fmt.Errorf("invalid claim path %q", s)
	}
	var path ClaimPath
	i := 0
	for {
		var seg strings.Builder
		if i < len(s) && s[i] == '"' {
			i++
			closed := false
			for i < len(s) {
				c := s[i]
				if c == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					seg.WriteByte(s[i+1])
					i += 2
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				seg.WriteByte(c)
				i++
			}
			if !closed {
				return nil, fmt.Errorf("invalid claim path %q: unterminated quote", s)
			}
			if i < len(s) && s[i] != '.' {
				return nil, fmt.Errorf("invalid claim path %q: a quoted segment must be followed by '.' or end the path", s)
			}
		} else {
			for i < len(s) && s[i] != '.' {
				if s[i] == '"' {
					return nil, fmt.Errorf("invalid claim path %q: quote inside a segment", s)
				}
				seg.WriteByte(s[i])
				i++
			}
		}
		if seg.Len() == 0 {
			return nil, fmt.Errorf("invalid claim path %q: empty segment", s)
		}
		path = append(path, seg.String())
		if i == len(s) {
			return path, nil
		}
		i++ // the dot
		if i == len(s) {
			return nil, fmt.Errorf("invalid claim path %q: empty segment", s)
		}
	}
}

// Pattern is a rule's value: an exact string, or a glob where `*` matches any run of
// characters (also none) and `?` matches one character or none (Pulumi Cloud's meaning).
// `\` escapes the next character (`\*` is a literal star). A pattern always matches the
// whole value: `repo:org/app:*` does not match `repo:org/app-evil:ref:...`.
//
// Unlike Pulumi Cloud, `.` is an ordinary character: dots are common in real claim values
// (repository and host names), and a wildcard dot would silently widen such rules.
type Pattern struct {
	src   string
	items []patItem
}

type patItem struct {
	kind int // patLit, patStar, patOpt
	r    rune
}

const (
	patLit = iota
	patStar
	patOpt
)

// ParsePattern parses a rule pattern.
func ParsePattern(s string) (Pattern, error) {
	if len(s) > MaxPatternLen || !utf8.ValidString(s) {
		return Pattern{}, fmt.Errorf("invalid pattern %q", s)
	}
	p := Pattern{src: s}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch rs[i] {
		case '\\':
			if i+1 == len(rs) {
				return Pattern{}, fmt.Errorf("invalid pattern %q: trailing backslash", s)
			}
			i++
			p.items = append(p.items, patItem{kind: patLit, r: rs[i]})
		case '*':
			if n := len(p.items); n > 0 && p.items[n-1].kind == patStar {
				continue // "**" is "*"
			}
			p.items = append(p.items, patItem{kind: patStar})
		case '?':
			p.items = append(p.items, patItem{kind: patOpt})
		default:
			p.items = append(p.items, patItem{kind: patLit, r: rs[i]})
		}
	}
	return p, nil
}

func (p Pattern) String() string { return p.src }

// Literal reports whether the pattern contains at least one literal character, i.e. it
// does not match every value.
func (p Pattern) Literal() bool {
	for _, it := range p.items {
		if it.kind == patLit {
			return true
		}
	}
	return false
}

// wild reports whether the pattern has a wildcard.
func (p Pattern) wild() bool {
	for _, it := range p.items {
		if it.kind != patLit {
			return true
		}
	}
	return false
}

// hasLiteralPrefix reports whether the pattern begins with the literal characters of pre.
func (p Pattern) hasLiteralPrefix(pre string) bool {
	rs := []rune(pre)
	if len(p.items) < len(rs) {
		return false
	}
	for i, r := range rs {
		if p.items[i].kind != patLit || p.items[i].r != r {
			return false
		}
	}
	return true
}

// Match reports whether the whole of s matches the pattern. It runs in O(len(p)·len(s))
// whatever the pattern (no backtracking blow-up).
func (p Pattern) Match(s string) bool {
	rs := []rune(s)
	// prev[j]: items[:i] match rs[:j].
	prev := make([]bool, len(rs)+1)
	cur := make([]bool, len(rs)+1)
	prev[0] = true
	for _, it := range p.items {
		switch it.kind {
		case patLit:
			cur[0] = false
			for j := 1; j <= len(rs); j++ {
				cur[j] = prev[j-1] && rs[j-1] == it.r
			}
		case patStar:
			cur[0] = prev[0]
			for j := 1; j <= len(rs); j++ {
				cur[j] = prev[j] || cur[j-1]
			}
		case patOpt:
			cur[0] = prev[0]
			for j := 1; j <= len(rs); j++ {
				cur[j] = prev[j] || prev[j-1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(rs)]
}
