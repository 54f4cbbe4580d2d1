package httpapi_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// cpage is one console request's answer.
type cpage struct {
	status int
	header http.Header
	body   string
}

// consoleGet GETs a console page with an access token ("" for none).
func (e *env) consoleDo(method, path, tok string, form url.Values) cpage {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.url+path, body)
	e.must(err)
	if tok != "" {
		req.Header.Set("Authorization", "token "+tok)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	e.must(err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	e.must(err)
	return cpage{resp.StatusCode, resp.Header, string(b)}
}

// consoleWorld: acme with alice (admin), bob (member, no team), stack app/prod tagged
// env=production and protected, stack app/dev; bob's token.
func consoleWorld(t *testing.T) (*env, string) {
	e := newEnv(t)
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &out))
	e.must(e.createStack(e.admin, "acme", "app", "prod", map[string]string{"env": "production"}))
	e.must(e.createStack(e.admin, "acme", "app", "dev", nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
	return e, out.TokenValue
}

func TestConsolePagesAdmin(t *testing.T) {
	e, _ := consoleWorld(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/ops/tokens", Body: map[string]string{"name": "deployer"}}, nil))
	tok := e.admin.Token
	for path, want := range map[string]string{
		"/console?all=1":                     "Your organizations",
		"/console/orgs/acme":                 "protection rules",
		"/console/orgs/acme/stacks":          "app/prod",
		"/console/orgs/acme/stacks/app/prod": "Who can access it",
		"/console/orgs/acme/access":          "access-matrix",
		"/console/orgs/acme/teams":           "Create a team",
		"/console/orgs/acme/teams/ops":       "Grant stack access",
		"/console/orgs/acme/members":         "bob",
		"/console/orgs/acme/tokens":          "deployer",
		"/console/tokens":                    "Your personal access tokens",
		"/console/orgs/acme/audit":           "Events and denials per hour",
		"/console/orgs/acme/audit/1":         "Position in the hash chain",
	} {
		p := e.consoleDo("GET", path, tok, nil)
		if p.status != 200 || !strings.Contains(p.body, want) {
			t.Errorf("GET %s: %d, want 200 with %q:\n%.600s", path, p.status, want, p.body)
		}
		if csp := p.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-inline") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		if p.header.Get("X-Frame-Options") != "DENY" || p.header.Get("Cache-Control") != "no-store" {
			t.Errorf("GET %s: X-Frame-Options %q, Cache-Control %q", path, p.header.Get("X-Frame-Options"), p.header.Get("Cache-Control"))
		}
		if strings.Contains(p.body, "<script>") || strings.Contains(p.body, " style=") {
			t.Errorf("GET %s: inline script or style", path)
		}
	}
	if p := e.consoleDo("GET", "/", "", nil); p.status != http.StatusSeeOther || p.header.Get("Location") != "/console" {
		t.Errorf("GET /: %d %q, want a redirect to /console", p.status, p.header.Get("Location"))
	}
	if p := e.consoleDo("GET", "/console/static/style.css", "", nil); p.status != 200 || !strings.HasPrefix(p.header.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %d %q", p.status, p.header.Get("Content-Type"))
	}
}

// A member sees no page, link or form the API would refuse them.
func TestConsoleRefusals(t *testing.T) {
	e, bob := consoleWorld(t)
	for path, want := range map[string]int{
		"/console/orgs/acme/tokens":          403, // org:token:read: admins
		"/console/orgs/acme/audit":           403, // org:audit:read: admins
		"/console/orgs/acme/audit/1":         403,
		"/console/orgs/acme/stacks/app/prod": 404, // default permission none: hidden
		"/console/orgs/globex":               404,
	} {
		if p := e.consoleDo("GET", path, bob, nil); p.status != want {
			t.Errorf("bob GET %s: %d, want %d", path, p.status, want)
		}
	}
	p := e.consoleDo("GET", "/console/orgs/acme", bob, nil)
	if p.status != 200 {
		t.Fatalf("bob's overview: %d", p.status)
	}
	for _, hidden := range []string{"/console/orgs/acme/tokens", "/console/orgs/acme/audit", "app/prod", "app/dev"} {
		if strings.Contains(p.body, hidden) {
			t.Errorf("bob's overview shows %q", hidden)
		}
	}
	if p := e.consoleDo("GET", "/console/orgs/acme/teams", bob, nil); p.status != 200 || strings.Contains(p.body, "Create a team") {
		t.Errorf("bob's teams page: %d, or it offers to create a team", p.status)
	}
	// Changes are refused by the same decision as the API, and recorded as denials.
	if p := e.consoleDo("POST", "/console/orgs/acme/teams", bob, url.Values{"name": {"sneaky"}}); p.status != 403 {
		t.Errorf("bob creates a team: %d, want 403", p.status)
	}
	var audit struct {
		Events []struct {
			Action  string `json:"event"`
			Outcome string
		} `json:"auditLogEvents"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?outcome=denied&userFilter=bob"}, &audit))
	if len(audit.Events) == 0 || audit.Events[0].Action != "org:team:write" {
		t.Errorf("bob's refused team creation is not in the audit log as org:team:write: %+v", audit.Events)
	}
	// Without credentials: the sign-in page, 401.
	if p := e.consoleDo("GET", "/console/orgs/acme", "", nil); p.status != 401 || !strings.Contains(p.body, "Sign in") {
		t.Errorf("anonymous overview: %d, want 401 with the sign-in page", p.status)
	}
	// The access review lists no stack bob may not read.
	p = e.consoleDo("GET", "/api/orgs/acme/access-review", bob, nil)
	if p.status != 200 || strings.Contains(p.body, "app/prod") {
		t.Errorf("bob's access review: %d %s", p.status, p.body)
	}
}

// Names and descriptions are escaped wherever they appear.
func TestConsoleEscaping(t *testing.T) {
	e, _ := consoleWorld(t)
	evil := `<img src=x onerror=alert(1)>"'`
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops", "description": "ok"}}, nil))
	// Stack tags and audit reasons carry text a caller chose.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/stacks/acme/app/dev/tags", Body: map[string]string{"note": evil}}, nil))
	_ = e.consoleDo("GET", "/console/orgs/acme/stacks/app/"+url.PathEscape(evil), e.admin.Token, nil) // a 404 with the name in the audit target
	for _, path := range []string{"/console/orgs/acme/stacks", "/console/orgs/acme/stacks/app/dev", "/console/orgs/acme/audit"} {
		p := e.consoleDo("GET", path, e.admin.Token, nil)
		if p.status != 200 {
			t.Fatalf("GET %s: %d", path, p.status)
		}
		if strings.Contains(p.body, "<img") {
			t.Errorf("GET %s: unescaped markup in the page", path)
		}
	}
	p := e.consoleDo("GET", "/console/orgs/acme/stacks", e.admin.Token, nil)
	if !strings.Contains(p.body, "&lt;img src=x onerror=alert(1)&gt;") {
		t.Errorf("the tag is not shown escaped:\n%s", p.body)
	}
}

// Console changes go through the API's handlers: the same audit events, and the access
// review (page, JSON and CSV) follows the grant.
func TestConsoleTeamGrantAndReview(t *testing.T) {
	e, bob := consoleWorld(t)
	tok := e.admin.Token
	p := e.consoleDo("POST", "/console/orgs/acme/teams", tok, url.Values{"name": {"ops"}, "description": {"operators"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/console/orgs/acme/teams/ops?done=team-created" {
		t.Fatalf("create team: %d %q %s", p.status, p.header.Get("Location"), p.body)
	}
	for _, f := range []url.Values{
		{"op": {"addMember"}, "member": {"bob"}},
		{"op": {"addGrant"}, "stack": {"app/dev"}, "permission": {"write"}},
	} {
		if p := e.consoleDo("POST", "/console/orgs/acme/teams/ops", tok, f); p.status != http.StatusSeeOther {
			t.Fatalf("team change %v: %d %s", f, p.status, p.body)
		}
	}
	var review struct {
		Entries []struct {
			PrincipalKind, Principal, Resource, Permission, Via string
		} `json:"entries"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/access-review?principal=bob"}, &review))
	found := false
	for _, en := range review.Entries {
		if en.Principal == "bob" && en.Resource == "app/dev" && en.Permission == "write" && strings.Contains(en.Via, "team ops grant") {
			found = true
		}
	}
	if !found {
		t.Errorf("bob's write on app/dev through team ops is not in the review: %+v", review.Entries)
	}
	// The same for bob himself (he may read app/dev now) and as CSV.
	p = e.consoleDo("GET", "/api/orgs/acme/access-review?format=csv&resource=app/dev", bob, nil)
	rows, err := csv.NewReader(strings.NewReader(p.body)).ReadAll()
	if err != nil || p.status != 200 || len(rows) < 2 || rows[0][0] != "principal_kind" {
		t.Fatalf("CSV review: %d %v\n%s", p.status, err, p.body)
	}
	// A removal asks for confirmation first and changes nothing until confirmed.
	rm := url.Values{"op": {"removeGrant"}, "stack": {"app/dev"}}
	if p := e.consoleDo("POST", "/console/orgs/acme/teams/ops", tok, rm); p.status != 200 || !strings.Contains(p.body, `name="confirm" value="yes"`) {
		t.Fatalf("unconfirmed removal: %d %s", p.status, p.body)
	}
	var team struct {
		Grants []json.RawMessage `json:"grants"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/ops"}, &team))
	if len(team.Grants) != 1 {
		t.Fatalf("the unconfirmed removal removed the grant")
	}
	rm.Set("confirm", "yes")
	if p := e.consoleDo("POST", "/console/orgs/acme/teams/ops", tok, rm); p.status != http.StatusSeeOther {
		t.Fatalf("confirmed removal: %d", p.status)
	}
	// Audited as the API's org:team:write, with the API's details.
	var audit struct {
		Events []struct {
			Action          string `json:"event"`
			Outcome, Target string
			Details         map[string]string
		} `json:"auditLogEvents"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?eventFilter=org:team:write"}, &audit))
	var grants, removed int
	for _, ev := range audit.Events {
		if ev.Details["grant"] != "" {
			grants++
		}
		if ev.Details["removed_grant"] != "" {
			removed++
		}
	}
	if len(audit.Events) != 4 || grants != 1 || removed != 1 {
		t.Errorf("audit of the console's team changes: %+v", audit.Events)
	}
}

// A new token's value is shown once (no-store), revoking asks first.
func TestConsoleTokens(t *testing.T) {
	e, _ := consoleWorld(t)
	tok := e.admin.Token
	p := e.consoleDo("POST", "/console/orgs/acme/tokens", tok, url.Values{"name": {"ci"}, "role": {"member"}, "days": {"30"}})
	if p.status != 200 || p.header.Get("Cache-Control") != "no-store" || !strings.Contains(p.body, `id="new-token"`) {
		t.Fatalf("create token: %d %q", p.status, p.header.Get("Cache-Control"))
	}
	list := e.consoleDo("GET", "/console/orgs/acme/tokens", tok, nil)
	i := strings.Index(p.body, `value="gh`)
	if i < 0 {
		i = strings.Index(p.body, `readonly value="`)
	}
	value := p.body[i:]
	value = value[strings.Index(value, `value="`)+7:]
	value = value[:strings.IndexByte(value, '"')]
	if len(value) < 20 || strings.Contains(list.body, value) {
		t.Fatalf("the token's value %q is shown again, or was not shown", value)
	}
	id := list.body[strings.Index(list.body, "/console/orgs/acme/tokens/")+len("/console/orgs/acme/tokens/"):]
	id = id[:strings.IndexByte(id, '/')]
	if p := e.consoleDo("POST", "/console/orgs/acme/tokens/"+id+"/revoke", tok, url.Values{}); p.status != 200 || !strings.Contains(p.body, "Revoke token") {
		t.Fatalf("unconfirmed revoke: %d", p.status)
	}
	if p := e.consoleDo("POST", "/console/orgs/acme/tokens/"+id+"/revoke", tok, url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("revoke: %d %s", p.status, p.body)
	}
	if err := cliwire.New(e.url, value).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil); err == nil {
		t.Errorf("the revoked token still works")
	}
}

// The audit timeline filters by action, target and outcome, shows an event with its place
// in the hash chain, and exports (audited).
func TestConsoleAuditTimeline(t *testing.T) {
	e, bob := consoleWorld(t)
	tok := e.admin.Token
	_ = e.consoleDo("GET", "/console/orgs/acme/audit", bob, nil) // denied: org:audit:read
	p := e.consoleDo("GET", "/console/orgs/acme/audit?eventFilter=stack:create&target=app/dev", tok, nil)
	if p.status != 200 || !strings.Contains(p.body, "acme/app/dev") || strings.Contains(p.body, "acme/app/prod") {
		t.Fatalf("filtered timeline: %d\n%s", p.status, p.body)
	}
	p = e.consoleDo("GET", "/console/orgs/acme/audit?outcome=denied&userFilter=bob", tok, nil)
	if !strings.Contains(p.body, "org:audit:read requires the organization admin role") || !strings.Contains(p.body, "denials (1)") {
		t.Fatalf("denied events: %s", p.body)
	}
	if p := e.consoleDo("GET", "/console/orgs/acme/audit?since=yesterday", tok, nil); p.status != 400 {
		t.Errorf("bad time: %d", p.status)
	}
	p = e.consoleDo("GET", "/console/orgs/acme/audit/2", tok, nil)
	if p.status != 200 || !strings.Contains(p.body, "Previous hash") || !strings.Contains(p.body, "org:user:create") {
		t.Fatalf("event page: %d\n%s", p.status, p.body)
	}
	p = e.consoleDo("GET", "/console/orgs/acme/audit/export?eventFilter=stack:create&format=csv", tok, nil)
	if p.status != 200 || !strings.Contains(p.header.Get("Content-Disposition"), "auditlogs-acme.csv") {
		t.Fatalf("export: %d %v", p.status, p.header)
	}
	var audit struct {
		Events []struct {
			Details map[string]string
		} `json:"auditLogEvents"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?eventFilter=org:audit:read&outcome=success"}, &audit))
	if len(audit.Events) != 1 || audit.Events[0].Details["export"] != "csv" {
		t.Errorf("the console's export is not audited as an export: %+v", audit.Events)
	}
}

// Environments are in the review, with the permission authz.EnvPermission gives.
func TestAccessReviewEnvironments(t *testing.T) {
	e, _ := consoleWorld(t)
	a := e.admin
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "app", "name": "cfg"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "readers"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/readers", Body: map[string]any{"memberAction": "add", "member": "bob",
		"addEnvironmentPermission": map[string]string{"projectName": "app", "envName": "cfg", "permission": "open"}}}, nil))
	var rv struct {
		Resources []struct{ Kind, Name string }
		Entries   []struct {
			PrincipalKind, Principal, ResourceKind, Resource, Permission, Via string
			Decrypt, CanChange                                                bool
		}
	}
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/access-review?resource=cfg&min=open"}, &rv))
	got := map[string]string{}
	for _, en := range rv.Entries {
		if en.ResourceKind != "environment" || en.Resource != "app/cfg" {
			t.Errorf("filtered review has %+v", en)
		}
		got[en.PrincipalKind+" "+en.Principal] = en.Permission + " " + en.Via
		if en.Principal == "bob" && (!en.Decrypt || en.CanChange) {
			t.Errorf("bob may open but not write app/cfg: %+v", en)
		}
	}
	if got["user bob"] != "open team readers grant on environment app/cfg" && !strings.HasPrefix(got["user bob"], "open team readers grant") {
		t.Errorf("bob: %q (all: %v)", got["user bob"], got)
	}
	if !strings.HasPrefix(got["team readers"], "open ") || !strings.HasPrefix(got["user alice"], "admin organization admin") {
		t.Errorf("review: %v", got)
	}
	if err := a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/access-review?min=owner"}, nil); cliwire.Status(err) != 400 {
		t.Errorf("bad filter: %v", err)
	}
}

// The token form gives a session (sso) for a person's own personal token only; console
// forms made with the session need its CSRF token and this site's origin.
func TestConsoleSignInAndCSRF(t *testing.T) {
	e, bob := consoleWorld(t)
	jar := map[string]string{}
	do := func(method, path string, form url.Values, hdr map[string]string) cpage {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequest(method, e.url+path, body)
		e.must(err)
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		for k, v := range jar {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		e.must(err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		for _, ck := range resp.Cookies() {
			jar[ck.Name] = ck.Value
			if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode {
				t.Errorf("session cookie %s: HttpOnly %v SameSite %v", ck.Name, ck.HttpOnly, ck.SameSite)
			}
		}
		return cpage{resp.StatusCode, resp.Header, string(b)}
	}
	// Machine tokens and wrong tokens get no session.
	var org struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "ci"}}, &org))
	if p := do("POST", "/login/token", url.Values{"token": {org.TokenValue}}, nil); p.status != 401 || len(jar) != 0 {
		t.Fatalf("org token sign-in: %d, cookies %v", p.status, jar)
	}
	if p := do("POST", "/login/token", url.Values{"token": {"gatehouse_pat_nope"}}, nil); p.status != 401 {
		t.Fatalf("bad token sign-in: %d %s", p.status, p.body)
	}
	// A sign-in form posted from another site is refused (login CSRF).
	if p := do("POST", "/login/token", url.Values{"token": {bob}}, map[string]string{"Origin": "https://evil.example"}); p.status != 403 || len(jar) != 0 {
		t.Fatalf("cross-site sign-in: %d", p.status)
	}
	// The console's sign-in form posts to sso's token sign-in, returning to the console.
	form := do("GET", "/console/sign-in?next=/console/orgs/acme/teams", nil, nil)
	if !strings.Contains(form.body, `action="/login/token"`) || !strings.Contains(form.body, `name="return" value="/console/orgs/acme/teams"`) {
		t.Fatalf("sign-in form:\n%s", form.body)
	}
	p := do("POST", "/login/token", url.Values{"token": {bob}, "return": {"/console"}}, nil)
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/console" || len(jar) != 1 {
		t.Fatalf("sign-in: %d %q %v", p.status, p.header.Get("Location"), jar)
	}
	p = do("GET", "/console/orgs/acme/teams", nil, nil)
	if p.status != 200 || !strings.Contains(p.body, "Signed in as <strong>bob</strong>") {
		t.Fatalf("pages with the session: %d", p.status)
	}
	i := strings.Index(p.body, `name="csrf" value="`)
	if i < 0 {
		t.Fatalf("no CSRF token in the page's forms")
	}
	csrf := p.body[i+len(`name="csrf" value="`):]
	csrf = csrf[:strings.IndexByte(csrf, '"')]
	// Bob creates a personal token through the console: with the token, from this site.
	if p := do("POST", "/console/tokens", url.Values{"name": {"laptop"}}, nil); p.status != 403 || !strings.Contains(p.body, "CSRF") {
		t.Errorf("without the CSRF token: %d", p.status)
	}
	if p := do("POST", "/console/tokens", url.Values{"name": {"laptop"}, "csrf": {csrf}}, map[string]string{"Origin": "http://evil.example"}); p.status != 403 || !strings.Contains(p.body, "cross-site") {
		t.Errorf("from another origin: %d", p.status)
	}
	if p := do("POST", "/console/tokens", url.Values{"name": {"laptop"}, "csrf": {csrf}}, map[string]string{"Origin": e.url}); p.status != 200 || !strings.Contains(p.body, `id="new-token"`) {
		t.Errorf("with the CSRF token: %d %s", p.status, p.body)
	}
	var audit struct {
		Events []struct {
			Action  string `json:"event"`
			Outcome string
			Details map[string]string
		} `json:"auditLogEvents"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs?eventFilter=auth:login"}, &audit))
	outcomes := map[string]int{}
	for _, ev := range audit.Events {
		outcomes[ev.Outcome]++
	}
	if outcomes["success"] != 1 || outcomes["failure"] < 2 {
		t.Errorf("auth:login events: %+v", audit.Events)
	}
}

// Roles, removals, team deletion and rotation from the console: confirmed first, then
// done by the API's handlers.
func TestConsoleMembersTeamsRotation(t *testing.T) {
	e, bob := consoleWorld(t)
	tok := e.admin.Token
	// Role change and removal of a member.
	f := url.Values{"op": {"role"}, "role": {"admin"}}
	if p := e.consoleDo("POST", "/console/orgs/acme/members/bob", tok, f); p.status != 200 || !strings.Contains(p.body, "Make bob admin of acme?") {
		t.Fatalf("unconfirmed role change: %d", p.status)
	}
	f.Set("confirm", "yes")
	if p := e.consoleDo("POST", "/console/orgs/acme/members/bob", tok, f); p.status != http.StatusSeeOther {
		t.Fatalf("role change: %d %s", p.status, p.body)
	}
	if p := e.consoleDo("GET", "/console/orgs/acme/audit", bob, nil); p.status != 200 {
		t.Fatalf("bob, now admin, cannot open the audit timeline: %d", p.status)
	}
	// Deleting a team revokes its tokens.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil))
	var tt struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/ops/tokens", Body: map[string]string{"name": "deployer"}}, &tt))
	if p := e.consoleDo("POST", "/console/orgs/acme/teams/ops/delete", tok, url.Values{}); p.status != 200 || !strings.Contains(p.body, "Delete team ops?") {
		t.Fatalf("unconfirmed delete: %d", p.status)
	}
	if p := e.consoleDo("POST", "/console/orgs/acme/teams/ops/delete", tok, url.Values{"confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("delete: %d", p.status)
	}
	if err := cliwire.New(e.url, tt.TokenValue).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil); cliwire.Status(err) != 401 {
		t.Errorf("the deleted team's token: %v", err)
	}
	// Rotating a personal token with no grace: the new value once, the old one dead.
	p := e.consoleDo("POST", "/console/tokens", bob, url.Values{"name": {"laptop"}})
	old := p.body[strings.Index(p.body, `readonly value="`)+len(`readonly value="`):]
	old = old[:strings.IndexByte(old, '"')]
	list := e.consoleDo("GET", "/console/tokens", bob, nil)
	row := list.body[strings.Index(list.body, "<td>laptop"):] // the laptop token's row (the list's order is the store's)
	i := strings.Index(row, "/console/tokens/")
	id := row[i+len("/console/tokens/"):]
	id = id[:strings.IndexByte(id, '/')]
	p = e.consoleDo("POST", "/console/tokens/"+id+"/rotate", bob, url.Values{"grace": {"0"}, "confirm": {"yes"}})
	if p.status != 200 || !strings.Contains(p.body, "Rotated: new token laptop~") || p.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotate: %d %s", p.status, p.body)
	}
	if err := cliwire.New(e.url, old).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil); cliwire.Status(err) != 401 {
		t.Errorf("the rotated token still works: %v", err)
	}
	// Removing a member.
	if p := e.consoleDo("POST", "/console/orgs/acme/members/bob", tok, url.Values{"op": {"remove"}, "confirm": {"yes"}}); p.status != http.StatusSeeOther {
		t.Fatalf("remove: %d %s", p.status, p.body)
	}
	if p := e.consoleDo("GET", "/console/orgs/acme", bob, nil); p.status != 404 {
		t.Errorf("bob, removed, sees acme: %d", p.status)
	}
}

// The sign-in page shows an organization's single sign-on buttons when it has SSO
// configured, and the token form always.
func TestConsoleSignInSSOButtons(t *testing.T) {
	e, _ := consoleWorld(t)
	p := e.consoleDo("GET", "/console/sign-in?org=acme", "", nil)
	if p.status != 200 || strings.Contains(p.body, "/login/acme/") || !strings.Contains(p.body, `id="token"`) {
		t.Fatalf("without SSO: %d\n%s", p.status, p.body)
	}
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		return tx.PutOrgSSO(&gatehouse.OrgSSO{OrgID: 1, OIDC: &gatehouse.OIDCSSO{Issuer: "https://idp.example.com", ClientID: "c"}, GitHub: &gatehouse.GitHubSSO{ClientID: "g"}})
	}))
	p = e.consoleDo("GET", "/console/sign-in?org=acme", "", nil)
	for _, want := range []string{`href="/login/acme/sso/oidc?return=%2Fconsole"`, `href="/login/acme/sso/github?return=%2Fconsole"`, "Break-glass", `id="token"`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("with SSO: no %q in\n%s", want, p.body)
		}
	}
}
