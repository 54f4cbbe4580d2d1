package sso

import (
	"net/url"
	"strings"
	"unicode"
)

const maxReturnPath = 2048

// SafeReturnPath turns a RelayState (or a returnTo parameter) into a path on this server
// that the browser may be sent to after signing in, or "" when it is not one: only a
// same-origin path ("/x?y") or an absolute URL on origin (whose path is then taken), never
// another host, a scheme-relative "//host", backslashes (which browsers read as slashes),
// control characters, or the organization's sign-in start (startPath, which would loop).
func SafeReturnPath(raw string, origin *url.URL, startPath string) string {
	if raw == "" || len(raw) > maxReturnPath {
		return ""
	}
	for _, r := range raw {
		if r == '\\' || unicode.IsControl(r) || unicode.IsSpace(r) {
			return ""
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Opaque != "" || u.User != nil {
		return ""
	}
	if u.Scheme != "" || u.Host != "" {
		if origin == nil || !strings.EqualFold(u.Scheme, origin.Scheme) || !strings.EqualFold(u.Host, origin.Host) {
			return ""
		}
	}
	p := u.EscapedPath()
	if p == "" {
		p = "/"
	}
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return ""
	}
	// Dot segments could climb out of the path a check looked at; nothing legitimate uses them.
	for _, seg := range strings.Split(u.Path, "/") {
		if seg == "." || seg == ".." {
			return ""
		}
	}
	if startPath != "" && strings.TrimSuffix(u.Path, "/") == strings.TrimSuffix(startPath, "/") {
		return ""
	}
	out := p
	if u.RawQuery != "" {
		out += "?" + u.RawQuery
	}
	// What is returned must parse back as the same local path.
	if v, err := url.Parse(out); err != nil || v.Scheme != "" || v.Host != "" || !strings.HasPrefix(out, "/") || strings.HasPrefix(out, "//") {
		return ""
	}
	return out
}
