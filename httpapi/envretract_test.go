package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestEnvironmentRetract drives `esc env version retract` as the CLI sends it: a retracted
// revision can no longer be read, decrypted, opened or imported (the error names the
// replacement), its tags move to the replacement (the newest earlier revision unless one is
// named), the revision list shows the retraction, the latest revision cannot be retracted,
// a revision cannot be retracted twice, a tag cannot name a retracted revision, and a
// person with read only may not retract.
func TestEnvironmentRetract(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/dev"
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	c.want(201, "POST", E+"/hooks", []byte(`{"name":"r","payloadUrl":"`+rcv.URL+`","filters":["environment_revision_retracted","environment_tag_created","environment_tag_deleted"]}`))
	for i, v := range []string{"a: 1", "a: 2", "a: 3", "a: 4"} { // revisions 2..5
		if got := c.want(200, "PATCH", E, []byte("values: {"+v+"}\n")).revision(t); got != i+2 {
			t.Fatalf("revision %d, want %d", got, i+2)
		}
	}
	c.want(200, "POST", E+"/versions/tags", []byte(`{"name":"prod","revision":4}`))
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"consumer"}`))
	c.want(200, "PATCH", escBase+"/acme/app/consumer", []byte("imports:\n  - app/dev@4\nvalues: {b: 1}\n"))

	// Bad input first: nothing changes.
	c.want(400, "POST", E+"/versions/5/retract", []byte(`{"reason":"latest"}`))
	c.want(400, "POST", E+"/versions/latest/retract", []byte(`{}`))
	c.want(400, "POST", E+"/versions/4/retract", []byte(`{"replacement":4}`))
	c.want(400, "POST", E+"/versions/4/retract", []byte(`{"replacement":9}`))
	c.want(404, "POST", E+"/versions/9/retract", []byte(`{}`))
	c.want(400, "POST", E+"/versions/4/retract", []byte(`{"replacement":"x"}`))
	reader := e.esc(e.newPerson("reader", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "read"}}, nil))
	reader.want(403, "POST", E+"/versions/4/retract", []byte(`{}`))
	c.want(200, "GET", E+"/versions/4", nil)

	// A session opened on revision 4 before its retraction.
	var opened struct {
		ID string `json:"id"`
	}
	c.want(200, "POST", E+"/versions/4/open?duration=1h", nil).json(t, &opened)
	c.want(200, "GET", E+"/open/"+opened.ID, nil)
	// Retract 4 (tagged prod): the replacement is 3, the newest earlier revision.
	c.want(200, "POST", E+"/versions/prod/retract", []byte(`{"reason":"leaked a key"}`))
	c.want(404, "GET", E+"/open/"+opened.ID, nil) // the session ended with the revision
	for _, p := range []string{E + "/versions/4", E + "/versions/4/decrypt"} {
		r := c.want(404, "GET", p, nil)
		if !strings.Contains(string(r.body), "retracted") || !strings.Contains(string(r.body), "revision 3") || !strings.Contains(string(r.body), "leaked a key") {
			t.Errorf("GET %s: %s", p, r.body)
		}
	}
	c.want(404, "POST", E+"/versions/4/open?duration=1h", nil)
	var tag struct {
		Revision int `json:"revision"`
	}
	c.want(200, "GET", E+"/versions/tags/prod", nil).json(t, &tag)
	if tag.Revision != 3 {
		t.Errorf("tag prod names revision %d after the retraction, want 3", tag.Revision)
	}
	if r := c.want(200, "GET", E+"/versions/prod", nil); r.revision(t) != 3 {
		t.Errorf("@prod reads revision %d", r.revision(t))
	}
	// An environment importing the retracted revision no longer opens; the error says why.
	r := c.want(400, "POST", escBase+"/acme/app/consumer/open?duration=1h", nil)
	if !strings.Contains(string(r.body), "retracted") {
		t.Errorf("open of an importer of a retracted revision: %s", r.body)
	}
	c.want(409, "POST", E+"/versions/4/retract", []byte(`{}`))
	c.want(400, "POST", E+"/versions/tags", []byte(`{"name":"old","revision":4}`))

	// Retract 2 with an explicit replacement (5, a later one), then 3 leaves... 2 retracted,
	// so 3's default replacement skips it: revision 1.
	c.want(200, "POST", E+"/versions/2/retract", []byte(`{"replacement":5}`))
	c.want(400, "POST", E+"/versions/3/retract", []byte(`{"replacement":2}`))
	c.want(200, "POST", E+"/versions/3/retract", []byte(`{}`))
	c.want(200, "GET", E+"/versions/tags/prod", nil).json(t, &tag)
	if tag.Revision != 1 {
		t.Errorf("tag prod names revision %d after retracting 3, want 1", tag.Revision)
	}

	var revs []struct {
		Number    int `json:"number"`
		Retracted *struct {
			Replacement int    `json:"replacement"`
			At          string `json:"at"`
			ByLogin     string `json:"byLogin"`
			Reason      string `json:"reason"`
		} `json:"retracted"`
	}
	c.want(200, "GET", E+"/versions", nil).json(t, &revs)
	got := map[int]int{}
	for _, r := range revs {
		if r.Retracted != nil {
			got[r.Number] = r.Retracted.Replacement
			if r.Retracted.At == "" || r.Retracted.ByLogin == "" {
				t.Errorf("revision %d retraction %+v", r.Number, r.Retracted)
			}
			if r.Number == 4 && r.Retracted.Reason != "leaked a key" {
				t.Errorf("reason %q", r.Retracted.Reason)
			}
		}
	}
	if len(revs) != 5 || len(got) != 3 || got[4] != 3 || got[2] != 5 || got[3] != 1 {
		t.Errorf("revisions %+v: retracted %v", revs, got)
	}

	// Environment tags (name/value) send their events too.
	c.want(200, "POST", E+"/tags", []byte(`{"name":"team","value":"core"}`))
	c.want(200, "DELETE", E+"/tags/team", nil)

	// Audit: each retraction with its revision and replacement; the refusal too.
	evs, err := listAudit(e)
	e.must(err)
	retracts, refused := 0, 0
	for _, ev := range evs {
		if ev.Action != "env:write" || ev.Target != "acme/app/dev" || ev.Details["replacement"] == "" && ev.Outcome == gatehouse.OutcomeSuccess {
			continue
		}
		switch {
		case ev.Outcome == gatehouse.OutcomeSuccess:
			retracts++
		case ev.Outcome == gatehouse.OutcomeDenied:
			refused++
		}
	}
	if retracts != 3 || refused != 1 {
		t.Errorf("audit: %d retractions, %d refusals; want 3 and 1", retracts, refused)
	}
	waitFor(t, e, "webhook deliveries", func() bool { return len(rcv.requests()) >= 5 })
	kinds := map[string]int{}
	for _, rq := range rcv.requests() {
		var p struct {
			Action  string `json:"action"`
			TagName string `json:"tagName"`
		}
		_ = json.Unmarshal(rq.body, &p)
		kinds[rq.header.Get("Pulumi-Webhook-Kind")+"/"+p.Action+"/"+p.TagName]++
	}
	if kinds["environment_revision/retracted/"] != 3 || kinds["environment_tag/created/team"] != 1 || kinds["environment_tag/deleted/team"] != 1 {
		t.Errorf("deliveries: %v", kinds)
	}
}

// TestEnvironmentHead: HEAD E answers the ETag and revision headers with no body, as
// Pulumi's OpenAPI describes it.
func TestEnvironmentHead(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/dev"
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	c.want(200, "PATCH", E, []byte("values: {a: 1}\n"))
	get := c.want(200, "GET", E, nil)
	r := c.do("HEAD", E, nil)
	if r.status != 200 || len(r.body) != 0 || r.revision(t) != 2 || r.header.Get("ETag") != get.header.Get("ETag") {
		t.Fatalf("HEAD: %d %q revision %q etag %q (GET etag %q)", r.status, r.body, r.header.Get("Pulumi-ESC-Revision"), r.header.Get("ETag"), get.header.Get("ETag"))
	}
	if r := c.do("HEAD", escBase+"/acme/app/nope", nil); r.status != 404 {
		t.Fatalf("HEAD of a missing environment: %d", r.status)
	}
}

// TestEnvironmentMaxOpenDuration: a team grant's maxOpenDuration caps how long its members
// open the environment for, directly and as an import; a grant without a cap (or the org
// admin) has none; the team GET shows it; bad values are refused.
func TestEnvironmentMaxOpenDuration(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	p := e.esc(e.newPerson("opener", "member"))
	for _, n := range []string{"dev", "consumer"} {
		admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"`+n+`"}`))
	}
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	admin.want(200, "PATCH", escBase+"/acme/app/consumer", []byte("imports: [app/dev]\nvalues: {c: 1}\n"))
	for _, tm := range []string{"openers", "others"} {
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": tm}}, nil))
		e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/" + tm, Body: map[string]any{"memberAction": "add", "member": "opener"}}, nil))
	}
	grant := func(team, name, perm, maxOpen string) error {
		return e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/" + team,
			Body: map[string]any{"addEnvironmentPermission": map[string]string{"projectName": "app", "envName": name, "permission": perm, "maxOpenDuration": maxOpen}}}, nil)
	}
	for _, bad := range []string{"abc", "-1h", "500ms"} {
		if err := grant("openers", "dev", "open", bad); err == nil || !strings.Contains(err.Error(), "maxOpenDuration") {
			t.Errorf("maxOpenDuration %q: %v", bad, err)
		}
	}
	e.must(grant("openers", "dev", "open", "1h"))
	e.must(grant("others", "consumer", "open", ""))
	var team struct {
		Environments []struct {
			EnvName         string `json:"envName"`
			MaxOpenDuration string `json:"maxOpenDuration"`
		} `json:"environments"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/openers"}, &team))
	if len(team.Environments) != 1 || team.Environments[0].MaxOpenDuration != "1h0m0s" {
		t.Fatalf("team environments %+v", team.Environments)
	}

	dev, consumer := escBase+"/acme/app/dev", escBase+"/acme/app/consumer"
	p.want(200, "POST", dev+"/open?duration=30m", nil)
	p.want(200, "POST", dev+"/open?duration=1h", nil)
	r := p.want(403, "POST", dev+"/open?duration=2h", nil)
	if !strings.Contains(string(r.body), "at most 1h0m0s") {
		t.Errorf("refusal: %s", r.body)
	}
	// As an import: the importer has no cap, the import has.
	p.want(200, "POST", consumer+"/open?duration=30m", nil)
	r = p.want(400, "POST", consumer+"/open?duration=2h", nil)
	if !strings.Contains(string(r.body), "app/dev") {
		t.Errorf("import refusal: %s", r.body)
	}
	// yaml/open (a stack's environment: imports) too.
	p.want(400, "POST", escBase+"/acme/yaml/open?duration=2h", []byte(`{"imports":["app/dev"]}`))
	p.want(200, "POST", escBase+"/acme/yaml/open?duration=10m", []byte(`{"imports":["app/dev"]}`))
	// The organization admin has no cap.
	admin.want(200, "POST", dev+"/open?duration=2h", nil)
	// A second grant without a cap lifts it.
	e.must(grant("others", "dev", "open", ""))
	p.want(200, "POST", dev+"/open?duration=2h", nil)
	// Changing the cap on the grant applies at once.
	e.must(grant("others", "dev", "read", ""))
	e.must(grant("openers", "dev", "open", "3h"))
	p.want(200, "POST", dev+"/open?duration=2h", nil)
	p.want(403, "POST", dev+"/open?duration=4h", nil)
}

// TestEnvironmentTagGrants: a team grant by environment tag (name=value) gives its
// permission on every environment with that tag and on nothing else, listings included;
// retagging moves it; the team GET lists it; bad selectors are refused.
func TestEnvironmentTagGrants(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	p := e.esc(e.newPerson("dev", "member"))
	for _, n := range []string{"a", "b", "c"} {
		admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"`+n+`"}`))
		admin.want(200, "PATCH", escBase+"/acme/app/"+n, []byte("values:\n  pw:\n    fn::secret: s-"+n+"\n"))
	}
	admin.want(200, "POST", escBase+"/acme/app/a/tags", []byte(`{"name":"team","value":"core"}`))
	admin.want(200, "POST", escBase+"/acme/app/b/tags", []byte(`{"name":"team","value":"web"}`))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "core"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/core", Body: map[string]any{"memberAction": "add", "member": "dev"}}, nil))
	grant := func(body map[string]string) error {
		return e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/core", Body: map[string]any{"addEnvironmentPermission": body}}, nil)
	}
	for _, bad := range []map[string]string{
		{"tag": "team", "permission": "open"},
		{"tag": "=core", "permission": "open"},
		{"tag": "team=core", "projectName": "app", "permission": "open"},
	} {
		if err := grant(bad); err == nil {
			t.Errorf("grant %v was accepted", bad)
		}
	}
	e.must(grant(map[string]string{"tag": "team=core", "permission": "open"}))

	p.want(200, "POST", escBase+"/acme/app/a/open?duration=1h", nil)
	p.want(404, "GET", escBase+"/acme/app/b", nil)
	p.want(404, "GET", escBase+"/acme/app/c", nil)
	var ls struct {
		Environments []struct{ Name string }
	}
	p.want(200, "GET", escBase+"/acme", nil).json(t, &ls)
	if len(ls.Environments) != 1 || ls.Environments[0].Name != "a" {
		t.Fatalf("list with a tag grant: %+v", ls.Environments)
	}
	var team struct {
		Environments []struct {
			Tag        string `json:"tag"`
			Permission string `json:"permission"`
		} `json:"environments"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/core"}, &team))
	if len(team.Environments) != 1 || team.Environments[0].Tag != "team=core" || team.Environments[0].Permission != "open" {
		t.Fatalf("team environments %+v", team.Environments)
	}
	// Retagging b selects it; untagging a drops it.
	admin.want(200, "PATCH", escBase+"/acme/app/b/tags/team", []byte(`{"currentTag":{"value":"web"},"newTag":{"name":"team","value":"core"}}`))
	admin.want(200, "DELETE", escBase+"/acme/app/a/tags/team", nil)
	p.want(200, "POST", escBase+"/acme/app/b/open?duration=1h", nil)
	p.want(404, "GET", escBase+"/acme/app/a", nil)
	// Removing the grant.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/core", Body: map[string]any{"removeEnvironment": map[string]string{"tag": "team=core"}}}, nil))
	p.want(404, "GET", escBase+"/acme/app/b", nil)
}
