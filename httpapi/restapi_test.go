package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// rawCall is one request whose response headers the test looks at.
func (e *env) rawCall(t *testing.T, method, path, auth string, body any) (*http.Response, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// Every API response, whatever the route and the outcome (success, error, unknown route,
// no credentials), carries X-Content-Type-Options: nosniff.
func TestNosniffOnEveryResponse(t *testing.T) {
	e := newEnv(t)
	prod := stackPath("acme", "proj", "prod")
	e.must(e.createStack(e.admin, "acme", "proj", "prod", nil))
	r, err := e.startRun(e.admin, prod, "update", false)
	e.must(err)
	e.must(r.checkpoint(deployment(2, "")))
	e.must(r.complete("succeeded"))
	check := func(what string, resp *http.Response) {
		t.Helper()
		if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("%s: HTTP %d without X-Content-Type-Options: nosniff (got %q)", what, resp.StatusCode, got)
		}
	}
	for _, rt := range e.srv.API.Routes() {
		path := fill(rt.Pattern)
		path = strings.NewReplacer("{updateID}", r.ID, "{tokenID}", "none", "{tagName}", "env").Replace(path)
		var body any
		if rt.Method != http.MethodGet && rt.Method != http.MethodHead && rt.Method != http.MethodDelete {
			body = map[string]any{}
		}
		for _, auth := range []string{"token " + e.admin.Token, ""} {
			resp, _ := e.rawCall(t, rt.Method, path, auth, body)
			check(rt.Method+" "+rt.Pattern+" auth="+map[bool]string{true: "none", false: "admin"}[auth == ""], resp)
		}
	}
	resp, _ := e.rawCall(t, http.MethodGet, "/api/no/such/route", "token "+e.admin.Token, nil)
	check("an unknown route", resp)
	resp, _ = e.rawCall(t, http.MethodGet, "/api/orgs/acme/auditlogs/export?format=json", "token "+e.admin.Token, nil)
	check("the audit log export (streamed)", resp)
}

// Responses that carry a token value are marked Cache-Control: no-store; others are not.
func TestNoStoreOnTokenResponses(t *testing.T) {
	e := newEnv(t)
	admin := "token " + e.admin.Token
	noStore := func(what string, resp *http.Response, body []byte, want bool) {
		t.Helper()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s: HTTP %d %s", what, resp.StatusCode, body)
		}
		if got := resp.Header.Get("Cache-Control") == "no-store"; got != want {
			t.Errorf("%s: Cache-Control %q, want no-store=%v", what, resp.Header.Get("Cache-Control"), want)
		}
	}
	var created struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	resp, b := e.rawCall(t, "POST", "/api/user/tokens", admin, map[string]any{"description": "laptop"})
	noStore("personal token creation", resp, b, true)
	e.must(json.Unmarshal(b, &created))
	resp, b = e.rawCall(t, "POST", "/api/user/tokens/"+created.ID+"/rotate", admin, map[string]any{})
	noStore("personal token rotation", resp, b, true)
	resp, b = e.rawCall(t, "POST", "/api/orgs/acme/tokens", admin, map[string]any{"name": "ci", "description": "ci", "admin": false})
	noStore("organization token creation", resp, b, true)
	resp, b = e.rawCall(t, "POST", "/api/orgs/acme/teams/pulumi", admin, map[string]any{"name": "ops"})
	noStore("team creation", resp, b, false)
	resp, b = e.rawCall(t, "POST", "/api/orgs/acme/teams/ops/tokens", admin, map[string]any{"name": "deploy", "description": "d"})
	noStore("team token creation", resp, b, true)
	resp, b = e.rawCall(t, "POST", "/api/orgs/acme/users", admin, map[string]any{"name": "bob"})
	noStore("user creation with its first token", resp, b, true)
	resp, b = e.rawCall(t, "GET", "/api/user/tokens", admin, nil)
	noStore("token listing (no values)", resp, b, false)

	prod := stackPath("acme", "proj", "prod")
	e.must(e.createStack(e.admin, "acme", "proj", "prod", nil))
	var up apitype.UpdateProgramResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: prod + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &up))
	resp, b = e.rawCall(t, "POST", prod+"/update/"+up.UpdateID, admin, apitype.StartUpdateRequest{})
	noStore("start update (the lease token)", resp, b, true)
	var started apitype.StartUpdateResponse
	e.must(json.Unmarshal(b, &started))
	resp, b = e.rawCall(t, "POST", prod+"/update/"+up.UpdateID+"/renew_lease", "update-token "+started.Token, apitype.RenewUpdateLeaseRequest{Duration: 60})
	noStore("renew lease", resp, b, true)
	resp, b = e.rawCall(t, "GET", prod, admin, nil)
	noStore("get stack", resp, b, false)

	// The OIDC exchange's success needs an issuer (see oidc_test.go, which checks its
	// header); here: the route is in the no-store set.
	for _, rt := range e.srv.API.Routes() {
		if rt.Method+" "+rt.Pattern == "POST /api/oauth/token" && !rt.NoStore {
			t.Errorf("POST /api/oauth/token is not marked NoStore")
		}
	}
}

// Journal entries sent to an update whose start did not grant journaling are refused with
// a 400 the CLI shows, not answered 200 and dropped: the client must not believe its state
// was saved.
func TestJournalEntriesNeedJournaling(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	r, err := e.startRun(e.admin, p, "update", false) // journalVersion not asked: 0
	e.must(err)
	entry := []apitype.JournalEntry{{Version: 1, Kind: apitype.JournalEntryKindSecretsManager, SequenceID: 1}}
	ce := wantStatus(t, r.lease("PATCH", "/journalentries", map[string]any{"entries": entry}, nil), 400)
	if !strings.Contains(ce.Message, "not granted journaling") {
		t.Errorf("message %q does not say why", ce.Message)
	}
	// The update goes on with checkpoints as negotiated.
	e.must(r.checkpoint(deployment(2, "")))
	e.must(r.complete("succeeded"))
	var n int
	e.must(e.srv.Store.View(t.Context(), func(tx gatehouse.Tx) error {
		var err error
		n, _, err = tx.JournalHead(r.ID)
		return err
	}))
	if n != 0 {
		t.Errorf("%d journal entries were stored for an update without journaling", n)
	}
}
