package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// TestBodyBudget: the request bodies held in memory at once are bounded across requests
// (Config.BodyBudgetBytes): a body that would take the server past it is answered 503,
// gzip's inflated copy counts, and what a request held is given back when it ends (many
// requests in a row, and side by side, under a budget that fits a few at once). Before,
// a few concurrent gzip bombs inflating to MaxBodyBytes each (a reader may send them to
// encrypt, decrypt or a preview) held that much memory each (found in review).
func TestBodyBudget(t *testing.T) {
	const budget = 256 << 10
	f := newEnv(t, func(c *httpapi.Config) { c.MaxBodyBytes, c.BodyBudgetBytes = budget, budget })
	f.must(f.createStack(f.admin, "acme", "proj", "dev", nil))
	url := f.url + stackPath("acme", "proj", "dev") + "/encrypt"
	post := func(body []byte, gz bool) int {
		t.Helper()
		if gz {
			var b bytes.Buffer
			w := gzip.NewWriter(&b)
			_, _ = w.Write(body)
			_ = w.Close()
			body = b.Bytes()
		}
		req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		req.Header.Set("Authorization", "token "+f.admin.Token)
		req.Header.Set("Content-Type", "application/json")
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	plain := func(n int) []byte { return []byte(`{"plaintext":"` + strings.Repeat("A", n) + `"}`) }

	// A slow upload that declared a large body holds its buffer while it arrives: another
	// request that needs more than what is left is answered 503 meanwhile, and served once
	// the upload is over. (Should a probe reach the server before the upload does, the
	// upload is the one refused: then it starts again, given more time to arrive.)
	refused := false
	for attempt := 1; attempt <= 5 && !refused; attempt++ {
		pr, pw := io.Pipe()
		slow, _ := http.NewRequest(http.MethodPost, url, pr)
		slow.ContentLength = budget - 32<<10
		slow.Header.Set("Authorization", "token "+f.admin.Token)
		slowDone := make(chan int, 1)
		go func() {
			resp, err := http.DefaultClient.Do(slow)
			if err != nil {
				slowDone <- 0
				return
			}
			resp.Body.Close()
			slowDone <- resp.StatusCode
		}()
		// More than the client's 4 KiB write buffer, so that the request reaches the server.
		_, _ = pw.Write([]byte(`{"plaintext":"` + strings.Repeat("A", 16<<10)))
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	probe:
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
			select {
			case <-slowDone:
				break probe // the upload was refused: try again
			default:
			}
			if refused = post(plain(64<<10), false) == http.StatusServiceUnavailable; refused {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		_ = pw.CloseWithError(io.ErrUnexpectedEOF) // the upload breaks off
		go func() { <-slowDone }()
	}
	if !refused {
		t.Error("a 64 KiB body was never refused while a slow upload held most of the budget")
	}
	// The client may hear of the broken upload before the server's handler has ended.
	code := 0
	for deadline := time.Now().Add(10 * time.Second); code != http.StatusOK && time.Now().Before(deadline); {
		if code = post(plain(64<<10), false); code != http.StatusOK {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if code != http.StatusOK {
		t.Errorf("after the slow upload ended: %d, want 200", code)
	}
	// The same as gzip, small on the wire: its inflated copy counts.
	if code := post(plain(budget-64), true); code != http.StatusServiceUnavailable {
		t.Errorf("a gzip body inflating near the budget: %d, want 503", code)
	}
	// Small bodies, one after the other and side by side: all served, so what each held
	// was given back (without that, the budget would run out after a few).
	for i := range 40 {
		if code := post(plain(16<<10), i%2 == 0); code != http.StatusOK {
			t.Fatalf("request %d of 16 KiB in a row: %d", i, code)
		}
	}
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i] = post(plain(8<<10), false) }()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("concurrent request %d: %d", i, c)
		}
	}
}
