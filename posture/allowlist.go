package posture

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Address allow-lists: an organization's list applies to every request its tokens make
// and to every request a personal token makes in it; a token's list applies to the token
// everywhere. A request must be permitted by every list that applies. Entries are CIDR
// networks ("10.0.0.0/8"), single addresses, or "@name": the organization's named range
// (e.g. a CI provider's published ranges, named once and reused).

// MaxEntries bounds an allow-list and a named range.
const MaxEntries = 500

var rangeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidRangeName checks a named range's name.
func ValidRangeName(name string) error {
	if !rangeName.MatchString(name) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid range name %q: letters, digits, '.', '_' and '-', at most 64", name)
	}
	return nil
}

// ParsePrefix parses a CIDR network or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, gatehouse.Errorf(gatehouse.EINVALID, "%q is neither a network in CIDR notation (like 203.0.113.0/24) nor an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// NormalizeCIDRs validates and canonicalizes a named range's networks.
func NormalizeCIDRs(in []string) ([]string, error) {
	if len(in) > MaxEntries {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "at most %d networks", MaxEntries)
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.String())
	}
	return out, nil
}

// NormalizeEntries validates an allow-list's entries: networks, addresses and "@name"
// references to ranges that exist (names lists the organization's ranges).
func NormalizeEntries(in []string, names map[string]bool) ([]string, error) {
	if len(in) > MaxEntries {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "at most %d entries", MaxEntries)
	}
	out := make([]string, 0, len(in))
	for _, s := range in {
		s = strings.TrimSpace(s)
		if n, ok := strings.CutPrefix(s, "@"); ok {
			if !names[n] {
				return nil, gatehouse.Errorf(gatehouse.EINVALID, "no address range named %q in this organization (create it first: PUT .../ranges/%s)", n, n)
			}
			out = append(out, s)
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		out = append(out, p.String())
	}
	return out, nil
}

// Compiled is an allow-list ready to match: its networks with named ranges expanded.
type Compiled struct {
	// Name says whose list it is, for the refusal message ("organization acme", "token ci").
	Name     string
	prefixes []netip.Prefix
}

// Compile expands an allow-list's entries with the organization's ranges. A reference to
// a range that no longer exists matches nothing (deny by default).
func Compile(name string, entries []string, ranges []gatehouse.AddressRange) *Compiled {
	c := &Compiled{Name: name}
	byName := map[string][]string{}
	for _, r := range ranges {
		byName[r.Name] = r.CIDRs
	}
	add := func(s string) {
		if p, err := ParsePrefix(s); err == nil {
			c.prefixes = append(c.prefixes, p)
		}
	}
	for _, e := range entries {
		if n, ok := strings.CutPrefix(e, "@"); ok {
			for _, s := range byName[n] {
				add(s)
			}
			continue
		}
		add(e)
	}
	return c
}

// Permits reports whether the address (as the server saw it) is on the list.
func (c *Compiled) Permits(addr string) bool {
	if c == nil {
		return true
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range c.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Refusal is the message of a request refused by the list.
func (c *Compiled) Refusal(addr string) string {
	return fmt.Sprintf("Access denied: the address %s is not in the address allow-list of %s. Ask an organization admin to add it (gatehouse allowlist).", addr, c.Name)
}
