package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestSCIMTokenCommands: create shows the token once with the base URL, show never shows
// it, regenerate ends the old token.
func TestSCIMTokenCommands(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	out, err := gh(t, "scim", "token", "show", "--org", "acme", "--server", url, "--token", admin)
	if err != nil || !strings.Contains(out, "none") || !strings.Contains(out, "/scim/v2/acme") {
		t.Fatalf("show before create: %v\n%s", err, out)
	}
	out, err = gh(t, "scim", "token", "create", "--org", "acme", "--server", url, "--token", admin, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var first scimTokenOut
	if err := json.Unmarshal([]byte(out), &first); err != nil || !strings.HasPrefix(first.Token, "gatehouse_scim_") {
		t.Fatalf("create --json: %v %q", err, out)
	}
	scimGet := func(tok string) int {
		req, _ := http.NewRequest("GET", url+"/scim/v2/acme/Users", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := scimGet(first.Token); code != 200 {
		t.Fatalf("the new SCIM token: HTTP %d", code)
	}
	out, err = gh(t, "scim", "token", "regenerate", "--org", "acme", "--server", url, "--token", admin)
	if err != nil || !strings.Contains(out, "gatehouse_scim_") {
		t.Fatalf("regenerate: %v\n%s", err, out)
	}
	if code := scimGet(first.Token); code != 401 {
		t.Fatalf("the replaced SCIM token: HTTP %d, want 401", code)
	}
	out, err = gh(t, "scim", "token", "show", "--org", "acme", "--server", url, "--token", admin)
	if err != nil || strings.Contains(out, "gatehouse_scim_") || !strings.Contains(out, "alice") {
		t.Fatalf("show: %v\n%s", err, out)
	}
}
