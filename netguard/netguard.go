// Package netguard is an HTTP client for fetching URLs that someone other than the operator
// chose (an OIDC issuer an organization administrator registers; later webhooks and SSO
// metadata): it refuses to connect to the server's own machine and network.
//
// The guard works at dial time, on the address actually connected to: a host name is
// resolved once, every resolved address is classified ([Classify]), and the socket's
// net.Dialer.Control refuses a blocked address again just before connect(2). A host name that
// resolves to a public address at one lookup and to 127.0.0.1 at the next (DNS rebinding)
// therefore never reaches 127.0.0.1, and neither does a redirect: each hop dials anew.
//
// Refused: loopback, private networks (RFC 1918, IPv6 ULA fc00::/7), link-local (169.254/16
// with the cloud metadata address 169.254.169.254, fe80::/10), shared address space (CGNAT
// 100.64/10, with Alibaba Cloud's metadata 100.100.100.200), IETF protocol assignments
// (192.0.0/24, with Oracle Cloud's metadata 192.0.0.192), Azure's WireServer
// 168.63.129.16 (a public address that answers only inside Azure), unspecified, multicast, broadcast and reserved ranges, the IPv6 forms that
// embed one of these IPv4 addresses (IPv4-mapped ::ffff:a.b.c.d, IPv4-compatible, NAT64
// 64:ff9b::/96, 6to4 2002::/16) and known cloud metadata host names. IPv6 outside global
// unicast (2000::/3) is refused altogether.
//
// The client also bounds what a fetch may cost: a timeout for the whole request, few
// redirects (never from https to http) and a maximum body size. It ignores HTTP_PROXY and
// friends: through a proxy the guard would check the proxy's address, not the target's.
package netguard

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrBlocked is what every refusal of the guard wraps (errors.Is).
var ErrBlocked = errors.New("destination not allowed")

// ErrBodyTooLarge is returned by a response body's Read beyond Options.MaxBodyBytes.
var ErrBodyTooLarge = errors.New("response body too large")

// BlockedError is a refused destination.
type BlockedError struct {
	Host   string     // the host name or address asked for
	Addr   netip.Addr // the refused address (invalid when the host name itself is refused)
	Reason string
}

func (e *BlockedError) Error() string {
	if e.Addr.IsValid() && e.Addr.String() != e.Host {
		return fmt.Sprintf("connection to %s (%s) refused: %s", e.Host, e.Addr, e.Reason)
	}
	return fmt.Sprintf("connection to %s refused: %s", e.Host, e.Reason)
}

// Is makes errors.Is(err, ErrBlocked) true.
func (e *BlockedError) Is(target error) bool { return target == ErrBlocked }

type blockedRange struct {
	p      netip.Prefix
	reason string
}

var v4Ranges = []blockedRange{
	{netip.MustParsePrefix("0.0.0.0/8"), "unspecified (this network)"},
	{netip.MustParsePrefix("10.0.0.0/8"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("100.64.0.0/10"), "shared address space (CGNAT)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("168.63.129.16/32"), "cloud platform service (Azure WireServer)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local (cloud metadata)"},
	{netip.MustParsePrefix("172.16.0.0/12"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF protocol assignments"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("192.88.99.0/24"), "6to4 relay"},
	{netip.MustParsePrefix("192.168.0.0/16"), "private network (RFC 1918)"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved (and broadcast)"},
}

var v6Ranges = []blockedRange{
	{netip.MustParsePrefix("::/128"), "unspecified"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("64:ff9b:1::/48"), "local-use NAT64"},
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001::/32"), "Teredo"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fc00::/7"), "private network (unique local)"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

var (
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	compat6        = netip.MustParsePrefix("::/96")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

// Classify returns why the guard refuses ip, or "" when ip is a public address it may
// connect to.
func Classify(ip netip.Addr) string {
	if !ip.IsValid() {
		return "invalid address"
	}
	ip = ip.WithZone("")
	if ip.Is4In6() {
		if r := Classify(ip.Unmap()); r != "" {
			return "IPv4-mapped " + r
		}
		return ""
	}
	if ip.Is4() {
		for _, r := range v4Ranges {
			if r.p.Contains(ip) {
				return r.reason
			}
		}
		return ""
	}
	for _, r := range v6Ranges {
		if r.p.Contains(ip) {
			return r.reason
		}
	}
	b := ip.As16()
	switch {
	case compat6.Contains(ip): // ::a.b.c.d (deprecated IPv4-compatible)
		if r := Classify(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return "IPv4-compatible " + r
		}
		return "IPv4-compatible IPv6 (deprecated)"
	case nat64.Contains(ip):
		if r := Classify(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return "NAT64 " + r
		}
		return ""
	case sixToFour.Contains(ip):
		if r := Classify(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return "6to4 " + r
		}
		return ""
	case !globalUnicast6.Contains(ip):
		return "not global unicast IPv6"
	}
	return ""
}

// blockedHosts are names of cloud metadata services (and the loopback name) refused before
// any lookup; their addresses are refused anyway, this is defense in depth.
var blockedHosts = map[string]bool{
	"localhost":                    true,
	"metadata":                     true,
	"metadata.google.internal":     true,
	"metadata.goog":                true,
	"instance-data":                true,
	"instance-data.ec2.internal":   true,
	"metadata.azure.internal":      true,
	"metadata.tencentyun.com":      true,
	"metadata.platformequinix.com": true,
}

// ClassifyHost returns why the guard refuses the host name (before resolving it), or "".
// Addresses in host are classified with Classify.
func ClassifyHost(host string) string {
	h := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(host)), ".")
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		return Classify(ip)
	}
	if h == "" {
		return "empty host name"
	}
	if blockedHosts[h] || strings.HasSuffix(h, ".localhost") {
		return "loopback or cloud metadata host name"
	}
	return ""
}

// Options configure a guarded client.
type Options struct {
	// AllowPrivate turns the address guard off (tests; deployments whose issuers live on an
	// internal network). Timeouts, redirect and size limits stay.
	AllowPrivate bool
	// Timeout bounds a whole request, redirects and body included (default 10 s).
	Timeout time.Duration
	// MaxRedirects is how many redirects are followed (default 3; negative: none).
	MaxRedirects int
	// MaxBodyBytes bounds a response body (default 1 MiB): reading beyond it fails with
	// ErrBodyTooLarge.
	MaxBodyBytes int64
	// Resolve looks up a host name's addresses (default: the system resolver). A seam for
	// tests; whatever it returns is classified before any connection.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	// TLSConfig is the TLS configuration (default: system roots).
	TLSConfig *tls.Config
	// Permit exempts single destinations (address and port) from the guard: tests that
	// serve on loopback, or a deployment that trusts one internal endpoint. nil: none.
	Permit func(netip.AddrPort) bool
}

// refused returns why the guard refuses to connect to ap, or "".
func (o *Options) refused(ap netip.AddrPort) string {
	if o.AllowPrivate {
		return ""
	}
	r := Classify(ap.Addr())
	if r != "" && o.Permit != nil && o.Permit(netip.AddrPortFrom(ap.Addr().WithZone("").Unmap(), ap.Port())) {
		return ""
	}
	return r
}

// nameRefused returns why the guard refuses a host name before resolving it ("" for
// addresses: those are checked with their port when dialed).
func (o *Options) nameRefused(host string) string {
	if o.AllowPrivate {
		return ""
	}
	if _, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		return ""
	}
	return ClassifyHost(host)
}

func (o *Options) defaults() {
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = 3
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.Resolve == nil {
		o.Resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
}

// NewClient returns a guarded HTTP client.
func NewClient(o Options) *http.Client {
	o.defaults()
	tr := NewTransport(o)
	maxRedirects := o.MaxRedirects
	return &http.Client{
		Timeout:   o.Timeout,
		Transport: &limitTransport{base: tr, max: o.MaxBodyBytes},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if maxRedirects < 0 || len(via) > maxRedirects {
				return fmt.Errorf("stopped after %d redirects", len(via))
			}
			if prev := via[len(via)-1]; prev.URL.Scheme == "https" && req.URL.Scheme != "https" {
				return fmt.Errorf("%w: redirect from https to %s", ErrBlocked, req.URL.Scheme)
			}
			if r := o.nameRefused(req.URL.Hostname()); r != "" {
				return &BlockedError{Host: req.URL.Hostname(), Reason: r}
			}
			return nil
		},
	}
}

// NewTransport returns the guarded transport under NewClient (no body limit, no redirect
// policy: those are the client's).
func NewTransport(o Options) *http.Transport {
	o.defaults()
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	if !o.AllowPrivate {
		// The last word, on the address the socket is about to connect to.
		d.Control = func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &BlockedError{Host: address, Reason: "unparsable address"}
			}
			if r := o.refused(ap); r != "" {
				return &BlockedError{Host: ap.Addr().String(), Addr: ap.Addr(), Reason: r}
			}
			return nil
		}
	}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return nil, err
		}
		if r := o.nameRefused(host); r != "" {
			return nil, &BlockedError{Host: host, Reason: r}
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("invalid port %q", port)
		}
		var ips []netip.Addr
		if ip, err := netip.ParseAddr(host); err == nil {
			ips = []netip.Addr{ip}
		} else if ips, err = o.Resolve(ctx, host); err != nil {
			return nil, err
		} else if len(ips) == 0 {
			return nil, fmt.Errorf("lookup %s: no addresses", host)
		}
		var first error
		for _, ip := range ips {
			if r := o.refused(netip.AddrPortFrom(ip, uint16(p))); r != "" {
				if first == nil {
					first = &BlockedError{Host: host, Addr: ip, Reason: r}
				}
				continue
			}
			c, err := d.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
			if err == nil {
				return c, nil
			}
			if first == nil {
				first = err
			}
		}
		return nil, first
	}
	return &http.Transport{
		Proxy:                  nil, // never a proxy: the guard must see the real destination
		DialContext:            dial,
		ForceAttemptHTTP2:      true,
		TLSClientConfig:        o.TLSConfig,
		TLSHandshakeTimeout:    5 * time.Second,
		ResponseHeaderTimeout:  o.Timeout,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
}

// limitTransport bounds response bodies.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > t.max {
		resp.Body.Close()
		return nil, fmt.Errorf("%w: %d bytes announced, at most %d", ErrBodyTooLarge, resp.ContentLength, t.max)
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, ErrBodyTooLarge
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
