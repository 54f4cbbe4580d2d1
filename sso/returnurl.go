package sso

import (
	"net/url"
	"strings"
)

// SafeReturn returns raw when it is a same-origin path to return to after a sign-in
// (RelayState, ?return=), else "/". Accepted: an absolute path ("/cli-login?..."), with no
// scheme, host or user info, not starting with "//" or "/\" (which browsers read as
// another host), without control characters or backslashes, at most 2048 bytes.
func SafeReturn(raw string) string {
	if raw == "" || len(raw) > 2048 || raw[0] != '/' {
		return "/"
	}
	if strings.HasPrefix(raw, "//") || strings.ContainsAny(raw, "\\") {
		return "/"
	}
	for _, c := range raw {
		if c < 0x20 || c == 0x7f {
			return "/"
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" || !strings.HasPrefix(u.Path, "/") {
		return "/"
	}
	// The path as the browser will resolve it must stay a path: "/%2F/evil.example" is
	// fine for Go but a browser keeps it on this host too; refuse anything whose decoded
	// path begins with "//" anyway, to stay clear of proxies that decode.
	if strings.HasPrefix(u.Path, "//") || strings.HasPrefix(u.Path, "/\\") {
		return "/"
	}
	return raw
}
