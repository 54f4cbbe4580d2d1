//go:build linux

package protocol

import (
	"net"
	"testing"
	"time"
)

// The kernel's RTT of a real loopback TCP connection is known, and tiny.
func TestKernelRTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			buf := make([]byte, 4)
			_, _ = c.Read(buf)
			_, _ = c.Write(buf)
		}
		done <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("ping"))
	_, _ = c.Read(make([]byte, 4))
	srv := <-done
	if srv == nil {
		t.Fatal("accept failed")
	}
	defer srv.Close()
	rtt := NewConn(srv).KernelRTT()
	if rtt <= 0 || rtt > 50*time.Millisecond {
		t.Errorf("kernel RTT of a loopback connection: %s", rtt)
	}
	if NewConn(fakeConn{}).KernelRTT() != 0 {
		t.Error("a connection without a socket has no kernel RTT")
	}
}

type fakeConn struct{ net.Conn }
