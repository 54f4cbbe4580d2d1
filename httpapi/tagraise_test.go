package httpapi_test

import (
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestTaggingRaisesNoOwnRights: a team grant on a tag gives its permission to whatever
// carries the tag, so whoever may tag a stack or an environment could pick up their team's
// higher grant by tagging it. A tag change that would raise the caller's own permission is
// refused (403, naming the grant); an organization admin makes it; tags that raise nothing
// pass (found in review).
func TestTaggingRaisesNoOwnRights(t *testing.T) {
	e := newEnv(t)
	dev := cliwire.New(e.url, e.newPerson("dev", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"project": "web", "permission": "write"}}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"tag": "owner=devs", "permission": "admin"}}}, nil))
	e.must(e.createStack(e.admin, "acme", "web", "prod", nil))
	prod := stackPath("acme", "web", "prod")

	// Stacks: each of the tag routes.
	for _, c := range []cliwire.Call{
		{Method: "PATCH", Path: prod + "/tags", Body: map[string]string{"owner": "devs"}},
		{Method: "POST", Path: prod + "/tags", Body: map[string]string{"name": "owner", "value": "devs"}},
	} {
		ce := wantStatus(t, dev.Do(c, nil), 403)
		if ce != nil && !strings.Contains(ce.Message, "more rights") {
			t.Fatalf("%s %s: unclear refusal %q", c.Method, c.Path, ce.Message)
		}
	}
	e.must(dev.Do(cliwire.Call{Method: "POST", Path: prod + "/tags", Body: map[string]string{"name": "owner", "value": "ops"}}, nil))
	wantStatus(t, dev.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags/owner", Body: map[string]string{"name": "owner", "value": "devs"}}, nil), 403)
	wantStatus(t, dev.Do(cliwire.Call{Method: "DELETE", Path: prod}, nil), 403) // still a writer
	// An update start that would change the tag (the CLI sends pulumi:tags config with it).
	var created apitype.UpdateProgramResponse
	e.must(dev.Do(cliwire.Call{Method: "POST", Path: prod + "/update", Body: apitype.UpdateProgramRequest{Name: "web", Runtime: "nodejs"}}, &created))
	ce := wantStatus(t, dev.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + created.UpdateID,
		Body: apitype.StartUpdateRequest{Tags: map[string]string{"owner": "devs", "pulumi:project": "web"}}}, nil), 403)
	if ce != nil && !strings.Contains(ce.Message, "more rights") {
		t.Fatalf("update start: unclear refusal %q", ce.Message)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags/owner", Body: map[string]string{"name": "owner", "value": "devs"}}, nil))

	// Environments: write on project app, admin on tag owner=devs.
	admin, d := e.esc(e.admin.Token), e.esc(dev.Token)
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	grant := func(body map[string]string) {
		e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addEnvironmentPermission": body}}, nil))
	}
	grant(map[string]string{"projectName": "app", "permission": "write"})
	grant(map[string]string{"tag": "owner=devs", "permission": "admin"})
	E := escBase + "/acme/app/dev"
	d.want(403, "POST", E+"/tags", []byte(`{"name":"owner","value":"devs"}`))
	d.want(200, "POST", E+"/tags", []byte(`{"name":"owner","value":"ops"}`))
	d.want(403, "PATCH", E+"/tags/owner", []byte(`{"currentTag":{"value":"ops"},"newTag":{"name":"owner","value":"devs"}}`))
	admin.want(200, "PATCH", E+"/tags/owner", []byte(`{"currentTag":{"value":"ops"},"newTag":{"name":"owner","value":"devs"}}`))
	// Every refusal is in the audit log, as denied.
	evs, err := listAudit(e)
	e.must(err)
	denied := 0
	for _, ev := range evs {
		if ev.Outcome == gatehouse.OutcomeDenied && strings.Contains(ev.Reason, "more rights") {
			denied++
		}
	}
	if denied != 6 {
		t.Errorf("%d refused tag changes audited as denied, want 6", denied)
	}
}

// TestEnvTagLiftsNoOpenLimit: retagging an environment into a grant without a
// maxOpenDuration would lift the caller's own limit on how long they may open it, with
// the same permission level: refused, as a raise is (found in review).
func TestEnvTagLiftsNoOpenLimit(t *testing.T) {
	e := newEnv(t)
	dev := e.newPerson("dev", "member")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/ops", Body: map[string]any{"memberAction": "add", "member": "dev"}}, nil))
	admin, d := e.esc(e.admin.Token), e.esc(dev)
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"prod"}`))
	for _, g := range []map[string]string{
		{"projectName": "app", "envName": "prod", "permission": "write", "maxOpenDuration": "1h"},
		{"tag": "tier=open", "permission": "open"},
	} {
		e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/ops", Body: map[string]any{"addEnvironmentPermission": g}}, nil))
	}
	E := escBase + "/acme/app/prod"
	d.want(403, "POST", E+"/open?duration=2h", nil)
	d.want(403, "POST", E+"/tags", []byte(`{"name":"tier","value":"open"}`))
	d.want(200, "POST", E+"/tags", []byte(`{"name":"tier","value":"closed"}`))
}
