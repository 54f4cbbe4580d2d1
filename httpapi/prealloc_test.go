package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// TestDeclaredSizesDoNotPreallocate: the sizes a client declares (Content-Length, a gzip
// trailer's ISIZE) only size the body buffer up to what the body can really hold, so a few
// bytes claiming half a gigabyte (the default body limit) cost kilobytes, not the claim.
func TestDeclaredSizesDoNotPreallocate(t *testing.T) {
	cfg := httpapi.DefaultConfig()
	if cfg.MaxBodyBytes < 256<<20 {
		t.Fatalf("the default body limit is %d: this test wants a large one", cfg.MaxBodyBytes)
	}
	srv, tok := openServer(t, cfg)
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(`{"stackName":"x"}`))
	zw.Close()
	lying := gz.Bytes()
	binary.LittleEndian.PutUint32(lying[len(lying)-4:], 0xFFFFFFFF) // ISIZE: 4 GiB

	cases := []struct {
		name     string
		body     []byte
		encoding string
		declared int64
	}{
		{"gzip trailer claims 4 GiB", lying, "gzip", int64(len(lying))},
		{"Content-Length claims 500 MB", []byte(`{}`), "", 500 << 20},
		{"gzip with Content-Length claiming 500 MB", gz.Bytes(), "gzip", 500 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/stacks/acme/proj", bytes.NewReader(c.body))
			req.ContentLength = c.declared
			req.Header.Set("Authorization", "token "+tok)
			req.Header.Set("Content-Type", "application/json")
			if c.encoding != "" {
				req.Header.Set("Content-Encoding", c.encoding)
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			rec := httptest.NewRecorder()
			srv.Handler.ServeHTTP(rec, req)
			runtime.ReadMemStats(&after)
			if rec.Code < 400 && c.encoding == "gzip" && c.declared == int64(len(lying)) {
				t.Errorf("a gzip body with a corrupt trailer was accepted: %d", rec.Code)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
				t.Fatalf("one request of %d bytes allocated %d MB (status %d)", len(c.body), grew>>20, rec.Code)
			}
		})
	}
}

// TestBodyLimitIsExact: a body of exactly MaxBodyBytes is read; one byte more is 413, plain
// or gzip-compressed.
func TestBodyLimitIsExact(t *testing.T) {
	cfg := httpapi.DefaultConfig()
	cfg.MaxBodyBytes = 4096
	srv, tok := openServer(t, cfg)
	body := func(n int) []byte { // {"stackName":"s"} padded with spaces to n bytes
		b := []byte(`{"stackName":"s"}`)
		return append(b, bytes.Repeat([]byte(" "), n-len(b))...)
	}
	for _, gz := range []bool{false, true} {
		for _, n := range []int{4096, 4097} {
			b := body(n)
			if gz {
				var buf bytes.Buffer
				zw := gzip.NewWriter(&buf)
				zw.Write(b)
				zw.Close()
				b = buf.Bytes()
			}
			req := httptest.NewRequest(http.MethodPost, "/api/stacks/acme/proj"+map[bool]string{false: "a", true: "b"}[gz], bytes.NewReader(b))
			req.Header.Set("Authorization", "token "+tok)
			if gz {
				req.Header.Set("Content-Encoding", "gzip")
			}
			rec := httptest.NewRecorder()
			srv.Handler.ServeHTTP(rec, req)
			if tooLarge := rec.Code == http.StatusRequestEntityTooLarge; tooLarge != (n > 4096) {
				t.Errorf("gzip=%v, %d bytes decompressed: status %d %s", gz, n, rec.Code, rec.Body.String())
			}
		}
	}
}
