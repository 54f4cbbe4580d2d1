package netguard_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/netguard"
)

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		ip      string
		blocked bool
	}{
		// IPv4: public
		{"8.8.8.8", false},
		{"1.1.1.1", false},
		{"140.82.112.3", false},
		{"100.63.255.255", false}, // just below CGNAT
		{"100.128.0.0", false},    // just above CGNAT
		{"172.15.255.255", false}, // just below 172.16/12
		{"172.32.0.0", false},     // just above
		{"169.253.255.255", false},
		{"223.255.255.255", false},
		// IPv4: refused
		{"0.0.0.0", true},
		{"0.1.2.3", true},
		{"127.0.0.1", true},
		{"127.255.255.254", true},
		{"10.0.0.1", true},
		{"172.16.0.1", true},
		{"172.31.255.255", true},
		{"192.168.1.1", true},
		{"169.254.169.254", true}, // AWS, GCP, Azure metadata
		{"169.254.0.1", true},
		{"100.64.0.1", true},
		{"100.100.100.200", true}, // Alibaba metadata (CGNAT range)
		{"100.127.255.255", true},
		{"192.0.0.192", true},    // Oracle metadata
		{"168.63.129.16", true},  // Azure WireServer
		{"168.63.129.15", false}, // its neighbours are ordinary public addresses
		{"168.63.129.17", false},
		{"198.18.0.1", true},
		{"224.0.0.1", true},
		{"239.255.255.250", true},
		{"240.0.0.1", true},
		{"255.255.255.255", true},
		// IPv6: public
		{"2606:4700:4700::1111", false},
		{"2001:4860:4860::8888", false},
		{"2a00:1450:4001:80b::200e", false},
		// IPv6: refused
		{"::", true},
		{"::1", true},
		{"fc00::1", true},
		{"fd00:ec2::254", true}, // AWS IMDS over IPv6
		{"fdff:ffff::1", true},
		{"fe80::1", true},
		{"fe80::1%eth0", true},
		{"febf::1", true},
		{"fec0::1", true},
		{"ff02::1", true},
		{"2001:db8::1", true},
		{"2001::1", true},  // Teredo
		{"100::1", true},   // discard
		{"3fff::1", false}, // inside 2000::/3
		{"4000::1", true},  // outside global unicast
		{"64:ff9b:1::1", true},
		// IPv4-mapped and other forms embedding a refused IPv4 address
		{"::ffff:127.0.0.1", true},
		{"::ffff:7f00:1", true},
		{"::ffff:10.1.2.3", true},
		{"::ffff:169.254.169.254", true},
		{"::ffff:100.64.0.1", true},
		{"::ffff:8.8.8.8", false},
		{"::127.0.0.1", true}, // IPv4-compatible
		{"::8.8.8.8", true},   // IPv4-compatible is deprecated: refused whatever it embeds
		{"64:ff9b::7f00:1", true},
		{"64:ff9b::a9fe:a9fe", true},
		{"64:ff9b::808:808", false},
		{"2002:7f00:1::1", true}, // 6to4 of 127.0.0.1
		{"2002:c0a8:101::1", true},
		{"2002:808:808::1", false},
		{"::ffff:168.63.129.16", true},
		{"64:ff9b::a83f:8110", true},
		{"2002:a83f:8110::1", true},
		{"::ffff:100.100.100.200", true},
		{"64:ff9b::c000:c0", true},
	} {
		ip, err := netip.ParseAddr(tc.ip)
		if err != nil {
			t.Fatalf("%s: %v", tc.ip, err)
		}
		if r := netguard.Classify(ip); (r != "") != tc.blocked {
			t.Errorf("Classify(%s) = %q, want blocked=%v", tc.ip, r, tc.blocked)
		}
	}
}

// TestClassifyCloudMetadata: every cloud's instance metadata (or platform) address is
// refused, each for the range that covers it.
func TestClassifyCloudMetadata(t *testing.T) {
	for _, tc := range []struct{ ip, reason string }{
		{"169.254.169.254", "link-local (cloud metadata)"},             // AWS, GCP, Azure IMDS, OpenStack
		{"100.100.100.200", "shared address space (CGNAT)"},            // Alibaba Cloud
		{"192.0.0.192", "IETF protocol assignments"},                   // Oracle Cloud
		{"168.63.129.16", "cloud platform service (Azure WireServer)"}, // Azure WireServer
		{"fd00:ec2::254", "private network (unique local)"},            // AWS IMDS over IPv6
		{"::ffff:168.63.129.16", "IPv4-mapped cloud platform service (Azure WireServer)"},
	} {
		if r := netguard.Classify(netip.MustParseAddr(tc.ip)); r != tc.reason {
			t.Errorf("Classify(%s) = %q, want %q", tc.ip, r, tc.reason)
		}
	}
}

func TestClassifyHost(t *testing.T) {
	for host, blocked := range map[string]bool{
		"localhost": true, "LOCALHOST.": true, "app.localhost": true,
		"metadata.google.internal": true, "metadata.google.internal.": true, "metadata": true,
		"instance-data.ec2.internal": true, "169.254.169.254": true, "[::1]": true, "::ffff:127.0.0.1": true,
		"token.actions.githubusercontent.com": false, "gitlab.com": false, "8.8.8.8": false,
		"localhost.example.com": false, "": true,
	} {
		if r := netguard.ClassifyHost(host); (r != "") != blocked {
			t.Errorf("ClassifyHost(%q) = %q, want blocked=%v", host, r, blocked)
		}
	}
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

func get(c *http.Client, u string) (string, error) {
	resp, err := c.Get(u)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// resolveTo is the resolver seam: every host name resolves to the given addresses.
func resolveTo(addrs ...string) func(context.Context, string) ([]netip.Addr, error) {
	return func(context.Context, string) ([]netip.Addr, error) {
		var out []netip.Addr
		for _, a := range addrs {
			out = append(out, netip.MustParseAddr(a))
		}
		return out, nil
	}
}

func wantBlocked(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, netguard.ErrBlocked) {
		t.Errorf("%s: error %v, want a refusal of the guard", what, err)
	}
}

func TestClientRefusesLoopback(t *testing.T) {
	hits := 0
	s := serve(t, func(w http.ResponseWriter, r *http.Request) { hits++; io.WriteString(w, "ok") })
	port := s.Listener.Addr().(*net.TCPAddr).Port
	c := netguard.NewClient(netguard.Options{})
	_, err := get(c, s.URL)
	wantBlocked(t, "127.0.0.1", err)
	// A public-looking name that resolves to loopback: refused at dial time.
	rc := netguard.NewClient(netguard.Options{Resolve: resolveTo("127.0.0.1")})
	_, err = get(rc, "http://issuer.example.com:"+itoa(port)+"/")
	wantBlocked(t, "a name resolving to 127.0.0.1", err)
	// The IPv4-mapped form of loopback is loopback.
	rc = netguard.NewClient(netguard.Options{Resolve: resolveTo("::ffff:127.0.0.1")})
	_, err = get(rc, "http://issuer.example.com:"+itoa(port)+"/")
	wantBlocked(t, "a name resolving to ::ffff:127.0.0.1", err)
	_, err = get(c, "http://localhost:"+itoa(port)+"/")
	wantBlocked(t, "localhost", err)
	_, err = get(c, "http://169.254.169.254/latest/meta-data/")
	wantBlocked(t, "metadata address", err)
	_, err = get(c, "http://metadata.google.internal/computeMetadata/v1/")
	wantBlocked(t, "metadata host name", err)
	_, err = get(c, "http://[::ffff:127.0.0.1]:"+itoa(port)+"/")
	wantBlocked(t, "IPv4-mapped loopback", err)
	if hits != 0 {
		t.Fatalf("the loopback server was reached %d times", hits)
	}
	// The guard off: the same server is reached.
	open := netguard.NewClient(netguard.Options{AllowPrivate: true, Resolve: resolveTo("127.0.0.1")})
	if body, err := get(open, "http://issuer.example.com:"+itoa(port)+"/"); err != nil || body != "ok" {
		t.Fatalf("AllowPrivate: %q, %v", body, err)
	}
}

func TestClientRedirects(t *testing.T) {
	innerHits := 0
	inner := serve(t, func(w http.ResponseWriter, r *http.Request) { innerHits++; io.WriteString(w, "secret") })
	outer := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL+"/x", http.StatusFound)
	})
	// With the guard off the redirect is followed ...
	open := netguard.NewClient(netguard.Options{AllowPrivate: true})
	if body, err := get(open, outer.URL); err != nil || body != "secret" {
		t.Fatalf("AllowPrivate redirect: %q, %v", body, err)
	}
	innerHits = 0
	// ... with it on, the redirect to loopback is refused. The first hop is permitted (as a
	// public issuer would be), so the refusal is the redirect's: each hop is checked when it
	// is dialed.
	outerPort := uint16(outer.Listener.Addr().(*net.TCPAddr).Port)
	permitOuter := func(ap netip.AddrPort) bool { return ap.Port() == outerPort }
	c := netguard.NewClient(netguard.Options{Permit: permitOuter, Resolve: resolveTo("127.0.0.1")})
	_, err := get(c, "http://public.example.com:"+itoa(int(outerPort))+"/")
	wantBlocked(t, "a redirect to loopback", err)
	if innerHits != 0 {
		t.Fatalf("the redirect target was reached")
	}
	// A redirect to a metadata name is refused before any lookup.
	meta := serve(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://metadata.google.internal/computeMetadata/v1/", http.StatusFound)
	})
	metaPort := uint16(meta.Listener.Addr().(*net.TCPAddr).Port)
	mc := netguard.NewClient(netguard.Options{Permit: func(ap netip.AddrPort) bool { return ap.Port() == metaPort }})
	_, err = get(mc, meta.URL)
	wantBlocked(t, "a redirect to a metadata host name", err)

	// Too many redirects.
	var loop *httptest.Server
	loop = serve(t, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, loop.URL+"/again", http.StatusFound) })
	if _, err := get(open, loop.URL); err == nil || !strings.Contains(err.Error(), "redirects") {
		t.Fatalf("a redirect loop: %v", err)
	}
	// Never from https to http.
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, inner.URL, http.StatusFound)
	}))
	t.Cleanup(tlsSrv.Close)
	tc := netguard.NewClient(netguard.Options{AllowPrivate: true, TLSConfig: tlsSrv.Client().Transport.(*http.Transport).TLSClientConfig})
	_, err = get(tc, tlsSrv.URL)
	wantBlocked(t, "https to http redirect", err)
}

func TestClientBodyLimit(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // no Content-Length
		}
		io.WriteString(w, strings.Repeat("x", 2000))
	})
	c := netguard.NewClient(netguard.Options{AllowPrivate: true, MaxBodyBytes: 1000})
	for _, p := range []string{"/", "/chunked"} {
		if _, err := get(c, s.URL+p); !errors.Is(err, netguard.ErrBodyTooLarge) {
			t.Errorf("%s: %v, want ErrBodyTooLarge", p, err)
		}
	}
	c = netguard.NewClient(netguard.Options{AllowPrivate: true, MaxBodyBytes: 2000})
	if body, err := get(c, s.URL+"/chunked"); err != nil || len(body) != 2000 {
		t.Fatalf("a body of exactly the limit: %d bytes, %v", len(body), err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
