package httpapi

import (
	"net/http"
	"testing"
)

// TestClientIPForms: the client behind trusted proxies is the right-most X-Forwarded-For
// entry that is not a trusted proxy, over all header lines, whatever the entry's form.
func TestClientIPForms(t *testing.T) {
	proxies, err := ParseTrustedProxies("127.0.0.1, 10.0.0.0/8, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{TrustedProxies: proxies}}
	for _, c := range []struct {
		name   string
		remote string
		xff    []string
		want   string
	}{
		{"no header", "127.0.0.1:1234", nil, "127.0.0.1"},
		{"plain v4", "127.0.0.1:1234", []string{"203.0.113.9"}, "203.0.113.9"},
		{"right-most untrusted", "127.0.0.1:1234", []string{"198.51.100.1, 203.0.113.9, 10.1.2.3"}, "203.0.113.9"},
		{"proxy adds a line", "127.0.0.1:1234", []string{"198.51.100.1", "203.0.113.9"}, "203.0.113.9"},
		{"lines and lists", "127.0.0.1:1234", []string{"198.51.100.1, 198.51.100.2", "203.0.113.9, 10.0.0.1", "10.0.0.2"}, "203.0.113.9"},
		{"empty line", "127.0.0.1:1234", []string{"203.0.113.9", ""}, "203.0.113.9"},
		{"v4 with port", "127.0.0.1:1234", []string{"198.51.100.1, 203.0.113.9:5555"}, "203.0.113.9"},
		{"plain v6", "127.0.0.1:1234", []string{"2001:db8::9"}, "2001:db8::9"},
		{"v6 canonical", "127.0.0.1:1234", []string{"2001:DB8:0:0::9"}, "2001:db8::9"},
		{"v6 brackets", "127.0.0.1:1234", []string{"198.51.100.1, [2001:db8::9]"}, "2001:db8::9"},
		{"v6 brackets port", "127.0.0.1:1234", []string{"198.51.100.1, [2001:db8::9]:443"}, "2001:db8::9"},
		{"v4-mapped v6", "127.0.0.1:1234", []string{"::ffff:203.0.113.9"}, "203.0.113.9"},
		{"trusted with port skipped", "127.0.0.1:1234", []string{"203.0.113.9, 10.0.0.1:80, [fd00::1]:80"}, "203.0.113.9"},
		{"v6 peer", "[fd00::5]:1234", []string{"203.0.113.9"}, "203.0.113.9"},
		{"garbage stops the walk", "127.0.0.1:1234", []string{"203.0.113.9, unknown, 10.0.0.1"}, "127.0.0.1"},
		{"all trusted", "127.0.0.1:1234", []string{"10.0.0.1, 10.0.0.2"}, "127.0.0.1"},
		{"untrusted peer ignored", "192.0.2.7:1234", []string{"203.0.113.9"}, "192.0.2.7"},
		{"untrusted peer, lines", "192.0.2.7:1234", []string{"203.0.113.9", "198.51.100.1"}, "192.0.2.7"},
	} {
		r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
		for _, v := range c.xff {
			r.Header.Add("X-Forwarded-For", v)
		}
		if got := s.clientIP(r); got != c.want {
			t.Errorf("%s: clientIP(%q, %q) = %q, want %q", c.name, c.remote, c.xff, got, c.want)
		}
	}
}
