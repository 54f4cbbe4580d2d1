package scim

import (
	"encoding/json"
	"strings"
)

// Filter is the one filter form Pulumi Cloud accepts: attribute eq "value".
type Filter struct {
	Attr  string // as allowed (canonical case), e.g. "userName"
	Value string
}

// maxFilterLen bounds a filter expression (a userName or display name fits many times).
const maxFilterLen = 1024

// ParseFilter parses filter, which may only be `attr eq "value"` with attr one of allowed
// (compared regardless of case, optionally prefixed with the core schema URN schema).
// Anything else is 400 invalidFilter.
func ParseFilter(filter, schema string, allowed ...string) (Filter, error) {
	var f Filter
	if len(filter) > maxFilterLen {
		return f, invalid(InvalidFilter, "The filter is too long.")
	}
	s := strings.TrimSpace(filter)
	attr, rest, ok := cutSpace(s)
	if !ok {
		return f, invalid(InvalidFilter, "Unsupported filter: %s. Only %s eq \"value\" is supported.", quoteFilter(filter), strings.Join(allowed, " or "))
	}
	op, val, ok := cutSpace(rest)
	if !ok || !strings.EqualFold(op, "eq") {
		return f, invalid(InvalidFilter, "Unsupported filter: %s. Only %s eq \"value\" is supported.", quoteFilter(filter), strings.Join(allowed, " or "))
	}
	if len(attr) > len(schema)+1 && strings.EqualFold(attr[:len(schema)+1], schema+":") {
		attr = attr[len(schema)+1:]
	}
	for _, a := range allowed {
		if strings.EqualFold(attr, a) {
			f.Attr = a
		}
	}
	if f.Attr == "" {
		return f, invalid(InvalidFilter, "Unsupported filter attribute: %s. Only %s eq \"value\" is supported.", quoteFilter(attr), strings.Join(allowed, " or "))
	}
	val = strings.TrimSpace(val)
	if len(val) < 2 || val[0] != '"' {
		return f, invalid(InvalidFilter, "The filter value must be a quoted string.")
	}
	var v string
	dec := json.NewDecoder(strings.NewReader(val))
	if err := dec.Decode(&v); err != nil || dec.More() || int(dec.InputOffset()) != len(val) {
		return f, invalid(InvalidFilter, "The filter value must be one quoted string (and nothing after it: only eq is supported, no and/or).")
	}
	f.Value = v
	return f, nil
}

// cutSpace splits s at its first run of spaces.
func cutSpace(s string) (before, after string, ok bool) {
	i := strings.IndexAny(s, " \t")
	if i <= 0 {
		return s, "", false
	}
	return s[:i], strings.TrimLeft(s[i:], " \t"), true
}

// quoteFilter shortens a caller's filter for an error message.
func quoteFilter(s string) string {
	if len(s) > 100 {
		s = s[:100] + "…"
	}
	return s
}
