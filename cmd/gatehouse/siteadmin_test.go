package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestAuditLsSite: `audit ls --site` lists the site-wide events (failed logins) for a site
// administrator, with the outcome and source filters; an organization admin is refused,
// and --site with --org is an error.
func TestAuditLsSite(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	code, out := apiCall(t, url, admin, "POST", "/api/orgs/acme/users", map[string]string{"name": "olga", "role": "admin"})
	if code != 200 {
		t.Fatalf("creating olga: %d %v", code, out)
	}
	olga := out["tokenValue"].(string)
	if code, _ := apiCall(t, url, "gatehouse_pat_bogus", "GET", "/api/user", nil); code != 401 {
		t.Fatalf("bogus token: %d, want 401", code)
	}
	as := func(tok string, args ...string) (string, error) {
		return gh(t, append(args, "--server", url, "--token", tok)...)
	}
	res, err := as(admin, "audit", "ls", "--site", "--outcome", "failure", "--source", "127.0.0.1", "--since", "1h", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var evs []map[string]any
	if err := json.Unmarshal([]byte(res), &evs); err != nil || len(evs) == 0 {
		t.Fatalf("audit ls --site --json: %v %q", err, res)
	}
	for _, ev := range evs {
		if ev["outcome"] != "failure" || ev["sourceIP"] != "127.0.0.1" {
			t.Errorf("filtered listing has %v", ev)
		}
	}
	if res, err := as(admin, "audit", "ls", "--site"); err != nil || !strings.Contains(res, "failure") || !strings.Contains(res, "127.0.0.1") {
		t.Fatalf("audit ls --site: %v\n%s", err, res)
	}
	if res, err := as(admin, "audit", "ls", "--site", "--outcome", "denied", "--json"); err != nil || strings.TrimSpace(res) != "[]" {
		t.Fatalf("audit ls --site --outcome denied: %v %q, want []", err, res)
	}
	if _, err := as(olga, "audit", "ls", "--site"); err == nil || !strings.Contains(err.Error(), "site administrator") {
		t.Fatalf("audit ls --site by an organization admin: %v, want a refusal", err)
	}
	if _, err := as(admin, "audit", "ls", "--site", "--org", "acme"); err == nil || !strings.Contains(err.Error(), "--site and --org") {
		t.Fatalf("audit ls --site --org: %v", err)
	}
	if _, err := as(admin, "audit", "ls", "--site", "--outcome", "bad"); err == nil || !strings.Contains(err.Error(), "--outcome") {
		t.Fatalf("audit ls --outcome bad: %v", err)
	}
}

// TestRateLimitCommands: `ratelimit ls` shows a blocked address and `ratelimit clear`
// ends the block (the next failure is 401 again, not 429); an organization admin is refused.
func TestRateLimitCommands(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	code, out := apiCall(t, url, admin, "POST", "/api/orgs/acme/users", map[string]string{"name": "olga", "role": "admin"})
	if code != 200 {
		t.Fatalf("creating olga: %d %v", code, out)
	}
	olga := out["tokenValue"].(string)
	for i := 0; i < 30; i++ {
		if code, _ := apiCall(t, url, "garbage", "GET", "/api/user", nil); code != 401 {
			t.Fatalf("failure %d: %d, want 401", i, code)
		}
	}
	if code, _ := apiCall(t, url, "garbage", "GET", "/api/user", nil); code != 429 {
		t.Fatalf("31st failure: %d, want 429", code)
	}
	as := func(tok string, args ...string) (string, error) {
		return gh(t, append(args, "--server", url, "--token", tok)...)
	}
	res, err := as(admin, "ratelimit", "ls")
	if err != nil || !strings.Contains(res, "ip:127.0.0.1") || !strings.Contains(res, "address") || !strings.Contains(res, "30") {
		t.Fatalf("ratelimit ls: %v\n%s", err, res)
	}
	if _, err := as(olga, "ratelimit", "ls"); err == nil || !strings.Contains(err.Error(), "site administrator") {
		t.Fatalf("ratelimit ls by an organization admin: %v", err)
	}
	if _, err := as(olga, "ratelimit", "clear", "127.0.0.1"); err == nil || !strings.Contains(err.Error(), "site administrator") {
		t.Fatalf("ratelimit clear by an organization admin: %v", err)
	}
	if res, err := as(admin, "ratelimit", "clear", "127.0.0.1"); err != nil || !strings.Contains(res, "cleared 127.0.0.1") {
		t.Fatalf("ratelimit clear: %v\n%s", err, res)
	}
	if code, _ := apiCall(t, url, "garbage", "GET", "/api/user", nil); code != 401 {
		t.Fatalf("failure after clearing: %d, want 401", code)
	}
	if res, err := as(admin, "ratelimit", "clear", "tok:gatehouse_pat_ZZZZ"); err != nil || !strings.Contains(res, "no failures were counted") {
		t.Fatalf("ratelimit clear of a prefix never counted: %v\n%s", err, res)
	}
	res, err = as(admin, "ratelimit", "ls", "--json")
	var list struct {
		RateLimits []map[string]any `json:"rateLimits"`
	}
	if err != nil || json.Unmarshal([]byte(res), &list) != nil || len(list.RateLimits) != 1 || list.RateLimits[0]["failures"] != float64(1) {
		t.Fatalf("ratelimit ls --json after clearing and one failure: %v %s", err, res)
	}
}
