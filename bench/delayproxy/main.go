// Command delayproxy relays TCP connections with a one-way delay per direction, for the
// latency cells of bench/bench.sh: a client on this machine then sees the round trip of a
// distant server (-rtt 40ms: 20 ms each way). It prints the address it listens on, and
// serves its counters (connections, bytes each way) as text on -stats, where
// POST /rtt?value=40ms changes the delay (half each way) of everything relayed from then on.
//
//	delayproxy -listen 127.0.0.1:0 -target 127.0.0.1:8080 -rtt 40ms -stats 127.0.0.1:0
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/delayproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	target := flag.String("target", "", "host:port to relay to (required)")
	rtt := flag.Duration("rtt", 0, "round trip to add: half of it each way (overridden by -up/-down)")
	up := flag.Duration("up", -1, "one-way delay from the client to the target")
	down := flag.Duration("down", -1, "one-way delay from the target to the client")
	chunks := flag.Int("max-chunks", 256, "reads (of up to 32 KiB) buffered per direction")
	stats := flag.String("stats", "", "address to serve counters on (GET /: conns, bytes_up, bytes_down)")
	addrFile := flag.String("addr-file", "", "write the listening address (and the stats address on a second line) to this file")
	flag.Parse()
	if *target == "" {
		log.Fatal("-target is required")
	}
	p := &delayproxy.Proxy{Target: *target, Up: *rtt / 2, Down: *rtt - *rtt/2, MaxChunks: *chunks}
	if *up >= 0 {
		p.Up = *up
	}
	if *down >= 0 {
		p.Down = *down
	}
	if err := p.Start(*listen); err != nil {
		log.Fatal(err)
	}
	out := p.Addr() + "\n"
	if *stats != "" {
		ln, err := net.Listen("tcp", *stats)
		if err != nil {
			log.Fatal(err)
		}
		out += ln.Addr().String() + "\n"
		go func() {
			_ = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method == http.MethodPost && r.URL.Path == "/rtt" {
					d, err := time.ParseDuration(r.URL.Query().Get("value"))
					if err != nil || d < 0 {
						http.Error(w, "value: a duration like 40ms", http.StatusBadRequest)
						return
					}
					p.SetDelay(d/2, d-d/2)
				}
				up, down := p.Delay()
				fmt.Fprintf(w, "conns %d\nbytes_up %d\nbytes_down %d\nup_ms %g\ndown_ms %g\n", p.Conns.Load(), p.BytesUp.Load(), p.BytesDown.Load(),
					float64(up.Microseconds())/1000, float64(down.Microseconds())/1000)
			}))
		}()
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(out), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Print(out)
	up0, down0 := p.Delay()
	fmt.Fprintf(os.Stderr, "delayproxy %s -> %s, up %s, down %s\n", p.Addr(), *target, up0, down0)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	_ = p.Close()
	fmt.Fprintf(os.Stderr, "delayproxy: %d connections, %d bytes up, %d bytes down\n", p.Conns.Load(), p.BytesUp.Load(), p.BytesDown.Load())
	time.Sleep(10 * time.Millisecond)
}
