package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/posture"
)

// postureEnv is a server that believes X-Forwarded-For from loopback, so that a test can
// make requests "from" any address.
func postureEnv(t *testing.T) *env {
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	return newEnv(t, func(c *httpapi.Config) { c.TrustedProxies = []*net.IPNet{lo}; c.AuthFailureLimit = 0 })
}

// from makes a request with token tok as if from address addr with user agent agent.
func (e *env) from(t *testing.T, method, path, tok, addr, agent string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.url+path, rd)
	req.Header.Set("Authorization", "token "+tok)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", addr)
	req.Header.Set("User-Agent", agent)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) orgToken(t *testing.T, name string) (string, string) {
	t.Helper()
	var out struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": name, "role": "admin"}}, &out))
	return out.ID, out.TokenValue
}

// TestAllowListEnforced: a token's allow-list (by a named range) refuses other addresses
// with a 403 that says why, audited; changing the range takes effect on the next request
// (the security epoch); an organization list applies to personal tokens acting in it, and
// cannot be set so that it locks out its author without force.
func TestAllowListEnforced(t *testing.T) {
	e := postureEnv(t)
	id, tok := e.orgToken(t, "deployer")
	const agent = "pulumi-cli/1 (v3.260.0; linux)"
	if code, b := e.from(t, "GET", "/api/orgs/acme", tok, "198.51.100.7", agent, nil); code != 200 {
		t.Fatalf("before any list: %d %s", code, b)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/ranges/ci", Body: map[string]any{"cidrs": []string{"10.0.0.0/8"}}}, nil))
	var epoch0 int64
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { epoch0, err = tx.SecurityEpoch(); return err }))
	e.must(e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/tokens/" + id + "/allowlist", Body: map[string]any{"entries": []string{"@ci", "192.0.2.1"}}}, nil))
	var epoch1 int64
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { epoch1, err = tx.SecurityEpoch(); return err }))
	if epoch1 <= epoch0 {
		t.Errorf("setting an allow-list did not bump the security epoch (%d -> %d)", epoch0, epoch1)
	}
	code, b := e.from(t, "GET", "/api/orgs/acme", tok, "198.51.100.7", agent, nil)
	if code != 403 || !strings.Contains(string(b), "198.51.100.7 is not in the address allow-list of token deployer") {
		t.Fatalf("from outside the list: %d %s", code, b)
	}
	for _, addr := range []string{"10.1.2.3", "192.0.2.1"} {
		if code, b := e.from(t, "GET", "/api/orgs/acme", tok, addr, agent, nil); code != 200 {
			t.Fatalf("from %s (on the list): %d %s", addr, code, b)
		}
	}
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Action == "auth:address-denied" && ev.Outcome == gatehouse.OutcomeDenied && ev.SourceIP == "198.51.100.7" && ev.TokenID == id && strings.Contains(ev.Reason, "allow-list of token deployer") {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit event for the refusal")
	}
	// A rotation's successor inherits the token's list.
	var rot struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens/" + id + "/rotate", Body: map[string]any{"graceSeconds": 3600}}, &rot))
	if code, b := e.from(t, "GET", "/api/orgs/acme", rot.TokenValue, "198.51.100.7", agent, nil); code != 403 || !strings.Contains(string(b), "allow-list of token deployer~") {
		t.Fatalf("the rotated token from outside the inherited list: %d %s", code, b)
	}
	// The range grows: the next request passes.
	e.must(e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/ranges/ci", Body: map[string]any{"cidrs": []string{"10.0.0.0/8", "198.51.100.0/24"}}}, nil))
	if code, b := e.from(t, "GET", "/api/orgs/acme", tok, "198.51.100.7", agent, nil); code != 200 {
		t.Fatalf("after the range grew: %d %s", code, b)
	}
	// A range in use cannot be deleted.
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/ranges/ci"}, nil), 409)

	// The organization's list: refused without force when it would lock out its author
	// (the admin's requests come from 127.0.0.1).
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/allowlist", Body: map[string]any{"entries": []string{"203.0.113.0/24"}}}, nil), 400)
	e.must(e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/allowlist", Body: map[string]any{"entries": []string{"203.0.113.0/24", "127.0.0.1"}}}, nil))
	// A personal token acting in the organization from elsewhere: refused; outside any
	// organization (GET /api/user): not subject to the list.
	if code, b := e.from(t, "GET", "/api/orgs/acme", e.admin.Token, "198.51.100.9", agent, nil); code != 403 || !strings.Contains(string(b), "allow-list of organization acme") {
		t.Fatalf("personal token from outside the org list: %d %s", code, b)
	}
	if code, b := e.from(t, "GET", "/api/user", e.admin.Token, "198.51.100.9", agent, nil); code != 200 {
		t.Fatalf("GET /api/user from outside the org list: %d %s", code, b)
	}
	// The org token must pass both lists now.
	if code, _ := e.from(t, "GET", "/api/orgs/acme", tok, "10.1.2.3", agent, nil); code != 403 {
		t.Fatalf("org token on its own list but not the org's: %d, want 403", code)
	}
	var lists httpapi.AllowListsJSON
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/allowlists"}, &lists))
	if len(lists.Organization) != 2 || len(lists.Tokens[id]) != 2 || len(lists.Tokens[rot.ID]) != 2 || len(lists.Ranges["ci"]) != 2 {
		t.Errorf("allow-lists = %+v", lists)
	}
}

// TestTokenUsageInventory: the inventory answers which clients use a token and what they
// touch; after a rotation, the old token's remaining users are those who used it since.
func TestTokenUsageInventory(t *testing.T) {
	e := postureEnv(t)
	must(t, e.createStack(e.admin, "acme", "web", "prod", nil))
	id, tok := e.orgToken(t, "deployer")
	e.from(t, "GET", "/api/stacks/acme/web/prod", tok, "10.0.0.5", "pulumi-cli/1 (v3.260.0; linux; cmd=up)", nil)
	e.from(t, "GET", "/api/stacks/acme/web/prod", tok, "10.0.0.5", "pulumi-cli/1 (v3.260.0; linux; cmd=up)", nil)
	e.from(t, "GET", "/api/orgs/acme", tok, "192.0.2.50", "terraform-provider-pulumiservice", nil)
	e.must(e.srv.API.FlushUsage(context.Background()))
	var u httpapi.TokenUsageJSON
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/tokens/" + id + "/usage"}, &u))
	if u.Requests != 3 || len(u.Clients) != 2 || len(u.Targets) != 1 || u.Targets[0].Name != "acme/web/prod" || u.WindowDays != 90 {
		t.Fatalf("usage = %+v", u)
	}
	byAddr := map[string]httpapi.TokenClientJSON{}
	for _, c := range u.Clients {
		byAddr[c.Address] = c
	}
	if byAddr["10.0.0.5"].Requests != 2 || byAddr["192.0.2.50"].UserAgent != "terraform-provider-pulumiservice" {
		t.Errorf("clients = %+v", u.Clients)
	}
	// Rotate with a grace period: the pipeline at 10.0.0.5 switches, the provider does not.
	var rot struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens/" + id + "/rotate", Body: map[string]any{"graceSeconds": 86400}}, &rot))
	e.clock.Advance(time.Minute)
	e.from(t, "GET", "/api/stacks/acme/web/prod", rot.TokenValue, "10.0.0.5", "pulumi-cli/1 (v3.260.0; linux; cmd=up)", nil)
	e.from(t, "GET", "/api/orgs/acme", tok, "192.0.2.50", "terraform-provider-pulumiservice", nil)
	e.must(e.srv.API.FlushUsage(context.Background()))
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/tokens/" + id + "/usage"}, &u))
	if !u.InGrace || u.Successor == nil || u.Successor.TokenID != rot.ID || u.Successor.LastSeen == "" {
		t.Fatalf("in grace: %+v successor %+v", u.InGrace, u.Successor)
	}
	if len(u.RemainingUsers) != 1 || u.RemainingUsers[0].Address != "192.0.2.50" {
		t.Fatalf("remaining users = %+v, want the provider at 192.0.2.50 only", u.RemainingUsers)
	}
	// Another organization's admin cannot read it; nor can it be read through the user route.
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens/" + id + "/usage"}, nil), 404)
}

// TestPostureReportAPI: the report through the API (JSON) and the gauges it sets.
func TestPostureReportAPI(t *testing.T) {
	e := postureEnv(t)
	must(t, e.createStack(e.admin, "acme", "web", "prod", map[string]string{"env": "production"}))
	gauge := func(org, sev string) float64 {
		mfs, err := e.srv.Registry.Gather()
		e.must(err)
		for _, mf := range mfs {
			if mf.GetName() != "gatehouse_posture_findings" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range m.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["org"] == org && labels["severity"] == sev {
					return m.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	// The hourly assessment sets the gauges of every organization.
	httpapi.RefreshPostureGauges(e.srv.API, context.Background())
	if g := gauge("acme", "high"); g < 1 {
		t.Errorf("after the hourly assessment, gatehouse_posture_findings{org=acme,severity=high} = %v", g)
	}
	var rep posture.Report
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/posture"}, &rep))
	found := false
	for _, f := range rep.Findings {
		if f.Rule == "stacks/production-unprotected" && f.Subject == "web/prod" && f.Severity == posture.SevHigh {
			found = true
		}
	}
	if !found || rep.Org != "acme" {
		t.Fatalf("report = %+v", rep)
	}
	high := gauge("acme", "high")
	if high != float64(rep.Summary[posture.SevHigh]) {
		t.Errorf("gatehouse_posture_findings{org=acme,severity=high} = %v, want %d", high, rep.Summary[posture.SevHigh])
	}
	// Thresholds per organization.
	e.must(e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/posture/settings", Body: map[string]any{"denialBurst": 5, "productionTag": "tier=prod"}}, nil))
	var st posture.Settings
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/posture/settings"}, &st))
	if st.DenialBurst != 5 || st.ProductionTag != "tier=prod" || st.LearningDays != 7 {
		t.Errorf("settings = %+v", st)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/posture/settings", Body: map[string]any{"productionTag": "nonsense"}}, nil), 400)
}

// TestPersonalTokenFromCI: an update whose metadata names a CI system (the stock CLI sends
// ci.system when it runs in CI), made with a personal token, is recorded with that CI
// identity and flagged once as personal-token-in-ci: an audit event and the counter.
func TestPersonalTokenFromCI(t *testing.T) {
	e := postureEnv(t)
	must(t, e.createStack(e.admin, "acme", "web", "prod", nil))
	body := map[string]any{"metadata": map[string]any{"message": "m", "environment": map[string]string{"ci.system": "GitHub Actions"}}, "options": map[string]any{"dryRun": true}}
	for i := 0; i < 2; i++ {
		if code, b := e.from(t, "POST", "/api/stacks/acme/web/prod/preview", e.admin.Token, "198.51.100.20", "pulumi-cli/1 (v3.260.0; linux; cmd=preview)", body); code != 200 {
			t.Fatalf("preview: %d %s", code, b)
		}
		e.must(e.srv.API.FlushUsage(context.Background()))
	}
	var tokens struct {
		Tokens []struct {
			ID string `json:"id"`
		} `json:"tokens"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens"}, &tokens))
	var u httpapi.TokenUsageJSON
	for _, tk := range tokens.Tokens {
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens/" + tk.ID + "/usage"}, &u))
		if u.Requests > 0 {
			break
		}
	}
	ci := false
	for _, c := range u.Clients {
		ci = ci || c.CI == "ci.system=GitHub Actions" && c.Address == "198.51.100.20"
	}
	if !ci {
		t.Fatalf("no CI client in %+v", u.Clients)
	}
	var as struct {
		Anomalies []httpapi.AnomalyJSON `json:"anomalies"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/anomalies"}, &as))
	if len(as.Anomalies) != 1 || as.Anomalies[0].Kind != posture.AnomalyPersonalCI {
		t.Fatalf("anomalies = %+v, want one personal-token-in-ci", as.Anomalies)
	}
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == posture.AuditActionAnomaly && ev.Details["kind"] == posture.AnomalyPersonalCI {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d anomaly audit events, want 1", n)
	}
	mfs, err := e.srv.Registry.Gather()
	e.must(err)
	for _, mf := range mfs {
		if mf.GetName() == "gatehouse_posture_anomalies_total" {
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == posture.AnomalyPersonalCI && m.GetCounter().GetValue() != 1 {
					t.Errorf("gatehouse_posture_anomalies_total{kind=personal-token-in-ci} = %v, want 1", m.GetCounter().GetValue())
				}
			}
		}
	}
}
