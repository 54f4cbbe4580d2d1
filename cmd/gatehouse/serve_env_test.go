package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestEnvServeMaxOpenDuration: GATEHOUSE_ESC_MAX_OPEN_DURATION (--esc-max-open-duration)
// bounds environment open sessions instead of the fixed 24 hours.
func TestEnvServeMaxOpenDuration(t *testing.T) {
	isolate(t)
	t.Setenv("GATEHOUSE_ESC_MAX_OPEN_DURATION", "2h")
	dir := t.TempDir()
	addr := freeAddr(t)
	startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text")
	var tok string
	waitFor(t, "the admin token", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return tok != ""
	})
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "token "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "the server", func() bool { c, _ := call("GET", "/api/orgs/default", ""); return c == 200 })
	if c, b := call("POST", "/api/esc/environments/default", `{"project":"app","name":"dev"}`); c != 200 {
		t.Fatalf("create: %d %s", c, b)
	}
	if c, b := call("POST", "/api/esc/environments/default/app/dev/open?duration=3h", ""); c != 400 || !strings.Contains(b, "2h0m0s") {
		t.Fatalf("open for 3h with a 2h maximum: %d %s", c, b)
	}
	if c, b := call("POST", "/api/esc/environments/default/app/dev/open?duration=2h", ""); c != 200 {
		t.Fatalf("open for 2h: %d %s", c, b)
	}
}
