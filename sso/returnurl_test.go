package sso

import (
	"net/url"
	"strings"
	"testing"
)

func TestSafeReturn(t *testing.T) {
	for raw, want := range map[string]string{
		"":                                "/",
		"/":                               "/",
		"/cli-login?cliSessionPort=1&x=y": "/cli-login?cliSessionPort=1&x=y",
		"/a/b#frag":                       "/a/b#frag",
		"//evil.example/":                 "/",
		"/\\evil.example":                 "/",
		"\\\\evil.example":                "/",
		"https://evil.example/":           "/",
		"javascript:alert(1)":             "/",
		"evil.example":                    "/",
		"/ok\r\nSet-Cookie: x":            "/",
		"/\tevil":                         "/",
		"http:/evil.example":              "/",
		"/" + strings.Repeat("a", 3000):   "/",
	} {
		if got := SafeReturn(raw); got != want {
			t.Errorf("SafeReturn(%q) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzSafeReturn: whatever comes in (RelayState, ?return=), what comes out is a path on
// this host as a browser resolves it against https://gatehouse.example/.
func FuzzSafeReturn(f *testing.F) {
	for _, s := range []string{"/", "/cli-login?a=b", "//x", "/\\x", "https://x/", "/%2F%2Fx", "/..//x", "\x00/", "/@x", "/ok#//x"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://gatehouse.example/sub/")
	f.Fuzz(func(t *testing.T, raw string) {
		got := SafeReturn(raw)
		if got != "/" && got != raw {
			t.Fatalf("SafeReturn(%q) = %q: neither the input nor /", raw, got)
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("SafeReturn(%q) = %q does not parse: %v", raw, got, err)
		}
		if r := base.ResolveReference(u); r.Host != "gatehouse.example" || r.Scheme != "https" || r.User != nil {
			t.Fatalf("SafeReturn(%q) = %q leads to %s", raw, got, r)
		}
		if !strings.HasPrefix(got, "/") || strings.HasPrefix(got, "//") || strings.ContainsAny(got, "\\\r\n\t") {
			t.Fatalf("SafeReturn(%q) = %q is not a plain absolute path", raw, got)
		}
	})
}
