package scim

import (
	"strings"
)

// Path is a parsed PATCH path (RFC 7644 section 3.5.2): an attribute, optionally a value
// filter on it and a sub-attribute, optionally qualified by a schema URN.
type Path struct {
	URN    string  // "" when not qualified
	Attr   string  // as written
	Filter *Filter // [attr eq "value"], nil when none
	Sub    string  // sub-attribute, "" when none
}

// maxPathLen bounds a PATCH path.
const maxPathLen = 512

// ParsePath parses a PATCH path. Only the shapes IdPs send are accepted: attr, attr.sub,
// attr[sub eq "value"] and attr[sub eq "value"].sub, optionally after a schema URN.
// Anything else is 400 invalidPath.
func ParsePath(p string) (Path, error) {
	var out Path
	bad := func() (Path, error) { return Path{}, invalid(InvalidPath, "Unknown path: %s.", quoteFilter(p)) }
	if p == "" || len(p) > maxPathLen {
		return bad()
	}
	s := p
	if len(s) > 4 && strings.EqualFold(s[:4], "urn:") {
		head := s
		if i := strings.IndexByte(s, '['); i >= 0 {
			head = s[:i]
		}
		i := strings.LastIndexByte(head, ':')
		if i < 0 || i == len(s)-1 {
			return bad()
		}
		out.URN, s = s[:i], s[i+1:]
	}
	if i := strings.IndexByte(s, '['); i >= 0 {
		j := strings.IndexByte(s, ']')
		if j < i {
			return bad()
		}
		out.Attr = s[:i]
		f, err := parseValueFilter(s[i+1 : j])
		if err != nil {
			return bad()
		}
		out.Filter = &f
		rest := s[j+1:]
		if rest != "" {
			if rest[0] != '.' {
				return bad()
			}
			out.Sub = rest[1:]
			if !validAttr(out.Sub) {
				return bad()
			}
		}
	} else {
		out.Attr, out.Sub, _ = strings.Cut(s, ".")
		if strings.Contains(s, ".") && !validAttr(out.Sub) {
			return bad()
		}
	}
	if !validAttr(out.Attr) {
		return bad()
	}
	return out, nil
}

// parseValueFilter parses the inside of attr[...]: sub eq "value".
func parseValueFilter(s string) (Filter, error) {
	a, rest, ok := cutSpace(strings.TrimSpace(s))
	if !ok || !validAttr(a) {
		return Filter{}, invalid(InvalidPath, "bad value filter")
	}
	f, err := ParseFilter(a+" "+rest, "", a)
	if err != nil {
		return Filter{}, err
	}
	return f, nil
}

// validAttr reports whether s is an attribute name: ALPHA *(nameChar) (RFC 7643 2.1).
func validAttr(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '-' || c == '_' || c == '$'):
		default:
			return false
		}
	}
	return true
}

// Is reports whether the path names attr (and sub, "" for none) of schema (unqualified or
// qualified with it), regardless of case, with no value filter.
func (p Path) Is(schema, attr, sub string) bool {
	return p.Filter == nil && p.inSchema(schema) && strings.EqualFold(p.Attr, attr) && strings.EqualFold(p.Sub, sub)
}

func (p Path) inSchema(schema string) bool { return p.URN == "" || strings.EqualFold(p.URN, schema) }

func (p Path) String() string {
	var b strings.Builder
	if p.URN != "" {
		b.WriteString(p.URN + ":")
	}
	b.WriteString(p.Attr)
	if p.Filter != nil {
		b.WriteString("[" + p.Filter.Attr + " eq \"" + p.Filter.Value + "\"]")
	}
	if p.Sub != "" {
		b.WriteString("." + p.Sub)
	}
	return b.String()
}
