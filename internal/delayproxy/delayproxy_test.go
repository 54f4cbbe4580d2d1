package delayproxy

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// A request/answer exchange through the proxy takes at least Up+Down, bytes are counted
// per direction, and a large transfer passes whole through the bounded buffers.
func TestDelayAndCounts(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { defer c.Close(); _, _ = io.Copy(c, c) }() // echo
		}
	}()
	p := &Proxy{Target: ln.Addr().String(), Up: 15 * time.Millisecond, Down: 10 * time.Millisecond, MaxChunks: 4}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		line, err := r.ReadString('\n')
		if err != nil || line != "ping\n" {
			t.Fatalf("echo: %q %v", line, err)
		}
		if rtt := time.Since(t0); rtt < 25*time.Millisecond || rtt > 500*time.Millisecond {
			t.Errorf("round trip %s, want about 25ms", rtt)
		}
	}
	big := strings.Repeat("x", 1<<20) + "\n"
	go func() { _, _ = c.Write([]byte(big)) }()
	line, err := r.ReadString('\n')
	if err != nil || len(line) != len(big) {
		t.Fatalf("1 MiB echo: %d bytes, %v", len(line), err)
	}
	time.Sleep(20 * time.Millisecond)
	if up, down := p.BytesUp.Load(), p.BytesDown.Load(); up != int64(15+len(big)) || down != up {
		t.Errorf("bytes up %d down %d, want %d each", up, down, 15+len(big))
	}
	if p.Conns.Load() != 1 {
		t.Errorf("conns %d", p.Conns.Load())
	}
}

// SetDelay applies to open connections from the next read on.
func TestSetDelay(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}
	}()
	p := &Proxy{Target: ln.Addr().String()}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	ping := func() time.Duration {
		t0 := time.Now()
		_, _ = c.Write([]byte("x\n"))
		if _, err := r.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		return time.Since(t0)
	}
	if d := ping(); d > 20*time.Millisecond {
		t.Errorf("no delay: %s", d)
	}
	p.SetDelay(20*time.Millisecond, 20*time.Millisecond)
	if d := ping(); d < 40*time.Millisecond {
		t.Errorf("after SetDelay(20ms, 20ms): %s", d)
	}
}
