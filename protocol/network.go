package protocol

import (
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// RTTHeader is the header a trusted reverse proxy may set to its own measurement of the
// client's round trip: microseconds (nginx: `proxy_set_header X-Client-RTT $tcpinfo_rtt;`,
// HAProxy: `http-request set-header X-Client-RTT %[fc_rtt(us)]`) or a Go duration ("23ms").
const RTTHeader = "X-Client-RTT"

// maxRTT bounds what is believed of any source: a "round trip" beyond it is an idle gap or
// a wrong header, not a network.
const maxRTT = 2 * time.Second

// maxGap is the longest response-to-next-request gap taken as a round trip (longer gaps
// are the client doing something else).
const maxGap = 500 * time.Millisecond

// ParseRTT parses an RTTHeader value.
func ParseRTT(v string) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if us, err := strconv.ParseInt(v, 10, 64); err == nil {
		d = time.Duration(us) * time.Microsecond
	} else if d, err = time.ParseDuration(v); err != nil {
		return 0, false
	}
	if d < 0 || d > maxRTT {
		return 0, false
	}
	return d, true
}

// Observed is what the server saw of one request's connection.
type Observed struct {
	// ViaTrustedProxy: the connection's peer is a trusted reverse proxy; then only the
	// proxy's header says anything about the client (the connection, its kernel RTT and its
	// timing are the proxy's, shared by many clients).
	ViaTrustedProxy bool
	Header          string        // the RTTHeader value (read only from a trusted proxy)
	Kernel          time.Duration // the kernel's smoothed RTT of the connection (0: unknown)
	Gap             time.Duration // the shortest response-to-next-request gap (0: unknown)
}

// kernelTrusted is the kernel RTT from which it is believed over the request timing: a
// network path. Below it the peer may be on this host or next to it, possibly a userspace
// TCP relay (a layer-4 load balancer, a tunnel) that hides the far side from the kernel;
// a loopback connection on a loaded host read 3-8 ms with the stock CLI. Below 10 ms the
// choice hardly depends on the round trip anyway.
const kernelTrusted = 10 * time.Millisecond

// Resolve turns what was observed into the client's round trip. A direct connection takes
// the kernel's RTT when it shows a network path (exact; the request timing also holds the
// client's own time between two requests: 46 ms measured through a 20 ms relay with the
// stock CLI on a loaded machine), otherwise the request timing when there is one.
func Resolve(o Observed) Network {
	if o.ViaTrustedProxy {
		if d, ok := ParseRTT(o.Header); ok {
			return Network{RTT: d, Source: RTTProxyHeader}
		}
		return Network{Source: RTTUnknown}
	}
	k := o.Kernel
	if k <= 0 || k > maxRTT {
		k = 0
	}
	g := o.Gap
	if g <= 0 || g > maxGap {
		g = 0
	}
	switch {
	case k == 0 && g == 0:
		return Network{Source: RTTUnknown}
	case k >= kernelTrusted || g == 0:
		return Network{RTT: k, Source: RTTKernel}
	}
	return Network{RTT: max(g, k), Source: RTTRequestTiming}
}

// Conn is the per-connection timing the server keeps: when the last response was sent
// and the shortest gap from a response to the next request on the connection.
type Conn struct {
	net.Conn
	lastEnd atomic.Int64 // Unix ns
	minGap  atomic.Int64 // ns; 0 = none yet
}

// NewConn wraps a connection's facts (the net.Conn itself is used only for its kernel RTT).
func NewConn(c net.Conn) *Conn { return &Conn{Conn: c} }

// Begin is called when a request on the connection starts (HTTP/1.x only: with HTTP/2's
// concurrent streams a gap is not a round trip). It returns the connection's new shortest
// gap when this request made it shorter (0 otherwise).
func (c *Conn) Begin(now time.Time) time.Duration {
	if c == nil {
		return 0
	}
	last := c.lastEnd.Load()
	if last == 0 {
		return 0
	}
	gap := now.UnixNano() - last
	if gap <= 0 || gap > int64(maxGap) {
		return 0
	}
	for {
		old := c.minGap.Load()
		if old != 0 && old <= gap {
			return 0
		}
		if c.minGap.CompareAndSwap(old, gap) {
			return time.Duration(gap)
		}
	}
}

// End is called when a request's response has been written.
func (c *Conn) End(now time.Time) {
	if c != nil {
		c.lastEnd.Store(now.UnixNano())
	}
}

// Gap is the shortest response-to-next-request gap seen so far (0: none).
func (c *Conn) Gap() time.Duration {
	if c == nil {
		return 0
	}
	return time.Duration(c.minGap.Load())
}

// KernelRTT is the kernel's smoothed round-trip estimate of the connection (TCP_INFO on
// Linux; 0 elsewhere, or for a connection that is not TCP).
func (c *Conn) KernelRTT() time.Duration {
	if c == nil || c.Conn == nil {
		return 0
	}
	return kernelRTT(c.Conn)
}
