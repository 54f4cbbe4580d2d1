package httpapi_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// bogusToken is a value shaped like a personal access token (with a wrong checksum) whose
// first four characters are prefix.
func bogusToken(prefix string, n int) string {
	body := prefix + strings.Repeat("0", 28-len(itoa(n))) + itoa(n)
	return "gatehouse_pat_" + body + "zzzzzz"
}

func from(addr string) http.Header { return http.Header{"X-Forwarded-For": {addr}} }

func authFailures(t *testing.T, e *env, key string) int {
	t.Helper()
	var n int
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		n, _, err = tx.AuthFailures(key, 5*time.Minute)
		return err
	}))
	return n
}

// TestAuthLimitNeverRefusesValidCredential: 30 failed authentications from one address
// are answered 401, the 31st 429, and a valid token from that same address is still
// served (the limiter used to run before authentication and locked everybody behind one
// address out). A blocked failure costs no database write.
func TestAuthLimitNeverRefusesValidCredential(t *testing.T) {
	e := newEnv(t)
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(e.url, bogusToken("AAAA", i)).Do(get, nil), http.StatusUnauthorized)
	}
	wantStatus(t, cliwire.New(e.url, bogusToken("AAAA", 30)).Do(get, nil), http.StatusTooManyRequests)
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusTooManyRequests)
	e.must(e.admin.Do(get, nil))
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	if n := authFailures(t, e, "auth:ip:127.0.0.1"); n != 30 {
		t.Errorf("the address has %d failures counted, want 30 (blocked failures are not written)", n)
	}
}

// TestAuthLimitPerTokenPrefix: a brute force of one token (one prefix) from many addresses
// is limited too; other prefixes from fresh addresses are not.
func TestAuthLimitPerTokenPrefix(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		_, lo, _ := net.ParseCIDR("127.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{lo}
	})
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	for i := 0; i < 30; i++ {
		get.Header = from("198.51.100." + itoa(i+1))
		wantStatus(t, cliwire.New(e.url, bogusToken("BBBB", i)).Do(get, nil), http.StatusUnauthorized)
	}
	get.Header = from("198.51.100.200")
	wantStatus(t, cliwire.New(e.url, bogusToken("BBBB", 99)).Do(get, nil), http.StatusTooManyRequests)
	wantStatus(t, cliwire.New(e.url, bogusToken("CCCC", 99)).Do(get, nil), http.StatusUnauthorized)
	e.must(e.admin.Do(get, nil))
	if n := authFailures(t, e, "auth:tok:gatehouse_pat_BBBB"); n != 30 {
		t.Errorf("prefix failures = %d, want 30", n)
	}
}

// TestAuthLimitBehindProxy: behind a trusted reverse proxy, one client's failures (by its
// X-Forwarded-For address) do not block another client; from a peer that is not a trusted
// proxy, X-Forwarded-For is ignored.
func TestAuthLimitBehindProxy(t *testing.T) {
	proxies, err := httpapi.ParseTrustedProxies("127.0.0.1/32, ::1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *httpapi.Config) { c.TrustedProxies = proxies })
	get := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("203.0.113.7")}
	for i := 0; i < 31; i++ {
		err := cliwire.New(e.url, bogusToken("DDDD", i)).Do(get, nil)
		if i < 30 {
			wantStatus(t, err, http.StatusUnauthorized)
		} else {
			wantStatus(t, err, http.StatusTooManyRequests)
		}
	}
	other := cliwire.Call{Method: "GET", Path: "/api/user", Header: from("203.0.113.8")}
	wantStatus(t, cliwire.New(e.url, bogusToken("EEEE", 0)).Do(other, nil), http.StatusUnauthorized)
	if n := authFailures(t, e, "auth:ip:203.0.113.7"); n != 30 {
		t.Errorf("client failures = %d, want 30", n)
	}
	if n := authFailures(t, e, "auth:ip:127.0.0.1"); n != 0 {
		t.Errorf("the proxy's own address counted %d failures", n)
	}

	// The same from a peer that is not trusted: the header is ignored, the peer counts.
	u := newEnv(t, func(c *httpapi.Config) {
		_, n, _ := net.ParseCIDR("10.0.0.0/8")
		c.TrustedProxies = []*net.IPNet{n}
	})
	for i := 0; i < 30; i++ {
		wantStatus(t, cliwire.New(u.url, bogusToken("FFFF", i)).Do(get, nil), http.StatusUnauthorized)
	}
	wantStatus(t, cliwire.New(u.url, bogusToken("GGGG", 0)).Do(other, nil), http.StatusTooManyRequests)
	if n := authFailures(t, u, "auth:ip:203.0.113.7"); n != 0 {
		t.Errorf("an untrusted peer's X-Forwarded-For was believed (%d failures)", n)
	}
	if n := authFailures(t, u, "auth:ip:127.0.0.1"); n != 30 {
		t.Errorf("peer failures = %d, want 30", n)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	nets, err := httpapi.ParseTrustedProxies(" 10.0.0.0/8,192.0.2.1 ,fd00::/8,")
	if err != nil || len(nets) != 3 {
		t.Fatalf("%v %v", nets, err)
	}
	if !nets[1].Contains(net.ParseIP("192.0.2.1")) || nets[1].Contains(net.ParseIP("192.0.2.2")) {
		t.Errorf("a single address is not its own /32: %v", nets[1])
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0/8"} {
		if _, err := httpapi.ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if nets, err := httpapi.ParseTrustedProxies(""); err != nil || nets != nil {
		t.Errorf("empty: %v %v", nets, err)
	}
}

// TestAuthLimitXFFMultiHeader: a proxy that adds its own X-Forwarded-For line (HAProxy
// "option forwardfor") after the one the client sent: the client is its line's address,
// not whatever it wrote in its own line, so rotating that line evades nothing.
func TestAuthLimitXFFMultiHeader(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow = 3, time.Hour
		c.TrustedProxies, _ = httpapi.ParseTrustedProxies("127.0.0.1, ::1")
	})
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	for ci, c := range []struct{ lines []string }{
		{[]string{"198.51.100.%d", "203.0.113.9"}},            // the proxy's own line
		{[]string{"198.51.100.%d, [2001:db8::9]:443"}},        // one combined line, with a port
		{[]string{"198.51.100.%d", "203.0.113.10:5555, ::1"}}, // port, and a trusted hop
	} {
		for i := 0; i < 6; i++ {
			get.Header = http.Header{}
			for _, l := range c.lines {
				if strings.Contains(l, "%d") {
					l = strings.Replace(l, "%d", itoa(i+1), 1)
				}
				get.Header.Add("X-Forwarded-For", l)
			}
			err := cliwire.New(e.url, bogusToken("H"+itoa(ci)+itoa(10+i), i)).Do(get, nil)
			if i < 3 {
				wantStatus(t, err, http.StatusUnauthorized)
			} else {
				wantStatus(t, err, http.StatusTooManyRequests)
			}
		}
	}
	for _, k := range []string{"auth:ip:203.0.113.9", "auth:ip:2001:db8::/64", "auth:ip:203.0.113.10"} {
		if n := authFailures(t, e, k); n != 3 {
			t.Errorf("%s: %d failures, want 3", k, n)
		}
	}
	if n := authFailures(t, e, "auth:ip:127.0.0.1"); n != 0 {
		t.Errorf("the proxy's own address counted %d failures", n)
	}
}

// TestAuthLimitIPv6By64: failures from IPv6 addresses count per /64, so one host cannot
// rotate through the 2^64 addresses it usually holds; the next /64 is another source.
func TestAuthLimitIPv6By64(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow = 5, time.Hour
		c.TrustedProxies, _ = httpapi.ParseTrustedProxies("127.0.0.1")
	})
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	for i := 0; i < 8; i++ {
		get.Header = from(fmt.Sprintf("2001:db8:1:2:%x::%x", i*7919, i+1))
		err := cliwire.New(e.url, "garbage").Do(get, nil)
		if i < 5 {
			wantStatus(t, err, http.StatusUnauthorized)
		} else {
			wantStatus(t, err, http.StatusTooManyRequests)
		}
	}
	get.Header = from("2001:db8:1:3::1")
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusUnauthorized)
	if n := authFailures(t, e, "auth:ip:2001:db8:1:2::/64"); n != 5 {
		t.Errorf("the /64 counted %d failures, want 5", n)
	}
	if n := authFailures(t, e, "auth:ip:2001:db8:1:3::/64"); n != 1 {
		t.Errorf("the next /64 counted %d failures, want 1", n)
	}
	// IPv4 stays per address.
	get.Header = from("198.51.100.1")
	wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusUnauthorized)
	if n := authFailures(t, e, "auth:ip:198.51.100.1"); n != 1 {
		t.Errorf("an IPv4 address counted %d failures, want 1", n)
	}
}

// TestAuthFailureRowsPruned: the counters of failures from ever new addresses do not stay
// in the database for good: a process deletes the ended windows' rows (at most once a
// minute), so the table holds about one window's worth of sources.
func TestAuthFailureRowsPruned(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) {
		c.AuthFailureLimit, c.AuthFailureWindow = 5, time.Minute
		c.TrustedProxies, _ = httpapi.ParseTrustedProxies("127.0.0.1")
	})
	rows := func() int {
		t.Helper()
		var n int
		e.must(e.srv.Store.(*sqlstore.DB).Writer().QueryRow("SELECT count(*) FROM auth_failures").Scan(&n))
		return n
	}
	get := cliwire.Call{Method: "GET", Path: "/api/user"}
	fail := func(from0, to int) {
		for i := from0; i < to; i++ {
			get.Header = from(fmt.Sprintf("198.51.%d.%d", i/250, i%250+1))
			wantStatus(t, cliwire.New(e.url, "garbage").Do(get, nil), http.StatusUnauthorized)
		}
	}
	fail(0, 300)
	if n := rows(); n < 300 {
		t.Fatalf("%d rows after 300 failures from 300 addresses, want at least 300", n)
	}
	e.clock.Advance(2 * time.Hour) // far past the window
	fail(300, 400)
	if n := rows(); n > 100 {
		t.Errorf("%d auth_failures rows after the first window ended, want at most the 100 of the current one", n)
	}
	e.clock.Advance(2 * time.Hour)
	fail(400, 401)
	if n := rows(); n != 1 {
		t.Errorf("%d auth_failures rows, want 1 (only the current failure)", n)
	}
}
