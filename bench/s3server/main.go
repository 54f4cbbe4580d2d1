// Command s3server is an in-memory S3-compatible server (github.com/johannesboyne/gofakes3)
// for bench/bench.sh: the CLI's own S3 state backend, measured beside Gatehouse
// (pulumi login 's3://bench?endpoint=http://ADDR&use_path_style=true&disable_https=true&region=us-east-1').
// It is a module of its own so that the fake stays out of Gatehouse's dependencies.
// It prints its address and serves its request count as text on GET /_bench/stats
// (no S3 bucket name may start with an underscore).
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	bucket := flag.String("bucket", "bench", "bucket to create")
	addrFile := flag.String("addr-file", "", "write the listening address to this file")
	flag.Parse()
	be := s3mem.New()
	if err := be.CreateBucket(*bucket); err != nil {
		log.Fatal(err)
	}
	s3 := gofakes3.New(be, gofakes3.WithLogger(gofakes3.DiscardLog())).Server()
	var requests, bytesIn atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/_bench/stats" {
			fmt.Fprintf(w, "requests %d\nbytes_in %d\n", requests.Load(), bytesIn.Load())
			return
		}
		requests.Add(1)
		if r.ContentLength > 0 {
			bytesIn.Add(r.ContentLength)
		}
		s3.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		if err := os.WriteFile(*addrFile+".tmp", []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(*addrFile+".tmp", *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(ln.Addr().String())
	go func() { log.Fatal(http.Serve(ln, h)) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Fprintf(os.Stderr, "s3server: %d requests\n", requests.Load())
}
