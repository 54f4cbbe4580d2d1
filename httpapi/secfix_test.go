package httpapi_test

import (
	"context"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// outsider creates organization globex (alice is its admin) with an admin account name who
// is not a member of acme, and returns that account's personal token and its ID.
func (e *env) outsider(t *testing.T, name string) (tok, id string) {
	t.Helper()
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	var created struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/users", Body: map[string]string{"name": name, "role": "admin"}}, &created))
	var tokens struct {
		Tokens []struct {
			ID string `json:"id"`
		} `json:"tokens"`
	}
	e.must(cliwire.New(e.url, created.TokenValue).Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens"}, &tokens))
	if len(tokens.Tokens) != 1 {
		t.Fatalf("tokens of %s: %+v", name, tokens)
	}
	return created.TokenValue, tokens.Tokens[0].ID
}

// TestUsageNotRecordedForRefusedRequests (finding 1): a user of another organization who
// probes acme's stacks (404) with a CI user agent learns nothing through their token's
// usage (no acme target), and plants no anomaly in acme.
func TestUsageNotRecordedForRefusedRequests(t *testing.T) {
	e := postureEnv(t)
	must(t, e.createStack(e.admin, "acme", "web", "prod", nil))
	tok, id := e.outsider(t, "mallory")
	for _, p := range []string{"/api/stacks/acme/web/prod", "/api/stacks/acme/web/nope"} {
		if code, b := e.from(t, "GET", p, tok, "198.51.100.66", "github-actions/2.0", nil); code != 404 {
			t.Fatalf("GET %s as an outsider: %d %s", p, code, b)
		}
	}
	e.must(e.srv.API.FlushUsage(context.Background()))
	var u struct {
		Requests int64 `json:"requests"`
		Targets  []struct {
			Name string `json:"name"`
		} `json:"targets"`
	}
	e.must(cliwire.New(e.url, tok).Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens/" + id + "/usage"}, &u))
	if u.Requests == 0 {
		t.Fatalf("the requests were not recorded at all: %+v", u)
	}
	if len(u.Targets) != 0 {
		t.Fatalf("the outsider's usage lists acme targets: %+v", u.Targets)
	}
	var as struct {
		Anomalies []struct {
			Kind    string `json:"kind"`
			TokenID string `json:"tokenId"`
		} `json:"anomalies"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/anomalies"}, &as))
	for _, a := range as.Anomalies {
		if a.TokenID == id {
			t.Fatalf("the outsider planted an anomaly in acme: %+v", as.Anomalies)
		}
	}
	// Authorized requests still record their target.
	if code, b := e.from(t, "GET", "/api/stacks/acme/web/prod", e.admin.Token, "198.51.100.5", "pulumi-cli/1", nil); code != 200 {
		t.Fatalf("%d %s", code, b)
	}
}
