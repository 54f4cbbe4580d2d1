package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// TestAllowListClearLocal (finding 4): an organization locked out by its own allow-list
// gets back in with `gatehouse allowlist clear`, which works on the store, not the API;
// the running server obeys at the next request.
func TestAllowListClearLocal(t *testing.T) {
	isolate(t)
	ctx := context.Background()
	dir := t.TempDir()
	srv, err := app.Open(ctx, app.Config{DataDir: dir}, httpapi.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	admin, err := app.Bootstrap(ctx, srv.Store, "acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	if code, body := apiCall(t, hs.URL, admin, "PUT", "/api/orgs/acme/allowlist", map[string]any{"entries": []string{"203.0.113.0/24"}, "force": true}); code != 200 {
		t.Fatal(code, body)
	}
	if code, body := apiCall(t, hs.URL, admin, "GET", "/api/orgs/acme", nil); code != 403 {
		t.Fatalf("locked out: %d %v", code, body)
	}
	out, errOut, code := runCLI(t, "allowlist", "clear", "--org", "acme", "--data-dir", dir)
	if code != 0 || !strings.Contains(out, "allow-list cleared (was: 203.0.113.0/24)") {
		t.Fatalf("allowlist clear: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, body := apiCall(t, hs.URL, admin, "GET", "/api/orgs/acme", nil); code != 200 {
		t.Fatalf("after clear: %d %v", code, body)
	}
	code, body := apiCall(t, hs.URL, admin, "GET", "/api/orgs/acme/auditlogs/v2", nil)
	b, _ := json.Marshal(body)
	if code != 200 || !strings.Contains(string(b), "allowlist:cleared") {
		t.Errorf("the clearing is not in the audit log: %d %s", code, b)
	}
}
