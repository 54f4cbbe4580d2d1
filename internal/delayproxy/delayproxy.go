// Package delayproxy is a TCP relay that delays every byte by a fixed one-way delay in each
// direction: a client and a server on one machine then see the round trip of a distant
// network (the benchmark's latency cells, and tests of the server's RTT measurement).
// Buffers are bounded: a direction holds at most MaxChunks reads in flight, after which
// the relay stops reading from its sender (TCP flow control takes over).
package delayproxy

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy relays connections from a listener to Target.
type Proxy struct {
	Target string        // host:port to dial for each accepted connection
	Up     time.Duration // delay from the client to Target (at Start; SetDelay changes it)
	Down   time.Duration // delay from Target to the client
	// MaxChunks bounds the reads held per direction (default 256; each at most 32 KiB).
	MaxChunks int

	// Bytes counts what was relayed in each direction.
	BytesUp, BytesDown atomic.Int64
	// Conns counts accepted connections.
	Conns atomic.Int64

	up, down atomic.Int64 // the delays in force (ns)

	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	open map[net.Conn]bool
}

// Start listens on addr ("127.0.0.1:0" for any free port) and serves until Close.
func (p *Proxy) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	p.ln = ln
	p.open = map[net.Conn]bool{}
	p.SetDelay(p.Up, p.Down)
	p.wg.Add(1)
	go p.accept()
	return nil
}

// SetDelay changes the one-way delays, for bytes read from then on (open connections too).
func (p *Proxy) SetDelay(up, down time.Duration) {
	p.up.Store(int64(up))
	p.down.Store(int64(down))
}

// Delay returns the delays in force.
func (p *Proxy) Delay() (up, down time.Duration) {
	return time.Duration(p.up.Load()), time.Duration(p.down.Load())
}

// Addr is the listening address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening and ends every relayed connection.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) track(c net.Conn, on bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on && p.open == nil {
		return false
	}
	if on {
		p.open[c] = true
	} else {
		delete(p.open, c)
	}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		p.Conns.Add(1)
		p.wg.Add(1)
		go p.relay(c)
	}
}

func (p *Proxy) relay(client net.Conn) {
	defer p.wg.Done()
	server, err := net.Dial("tcp", p.Target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		p.track(client, false)
		p.track(server, false)
	}()
	var done sync.WaitGroup
	done.Add(2)
	go func() { defer done.Done(); p.pipe(server, client, &p.up, &p.BytesUp) }()
	go func() { defer done.Done(); p.pipe(client, server, &p.down, &p.BytesDown) }()
	done.Wait()
	client.Close()
	server.Close()
}

type chunk struct {
	b   []byte
	due time.Time
	eof bool
}

// pipe copies src to dst, each read delivered delay after it was read.
func (p *Proxy) pipe(dst, src net.Conn, delay *atomic.Int64, count *atomic.Int64) {
	n := p.MaxChunks
	if n <= 0 {
		n = 256
	}
	q := make(chan chunk, n)
	go func() {
		defer close(q)
		for {
			buf := make([]byte, 32<<10)
			k, err := src.Read(buf)
			if k > 0 {
				q <- chunk{b: buf[:k], due: time.Now().Add(time.Duration(delay.Load()))}
			}
			if err != nil {
				q <- chunk{eof: true, due: time.Now().Add(time.Duration(delay.Load()))}
				return
			}
		}
	}()
	for c := range q {
		if d := time.Until(c.due); d > 0 {
			time.Sleep(d)
		}
		if c.eof {
			if tc, ok := dst.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
			} else {
				dst.Close()
			}
			continue
		}
		if _, err := dst.Write(c.b); err != nil {
			src.Close() // the other side is gone: stop reading; drain the queue
			for range q {
			}
			return
		}
		count.Add(int64(len(c.b)))
	}
}
