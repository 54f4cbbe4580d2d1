package httpapi_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestRetagOutOfPolicyGroupNeedsPolicyRight: removing a stack from a policy group needs
// stack:policy (stack admin), and a tag change that would take the stack out of a group
// selecting it by tag is such a removal: on every tag route and at an update start it is
// refused (403 naming the group, the refusal recorded) to a writer, who may still edit
// other tags, make the stack join a group, and run ordinary updates that send the stack's
// tags back; a stack admin may retag it out. Found in review: a writer took a stack out of
// a group (and so out of its required policy packs) by deleting the tag it selects on.
func TestRetagOutOfPolicyGroupNeedsPolicyRight(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	e.must(e.createStack(a, "acme", "web", "prod", map[string]string{"compliance": "pci"}))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policygroups", Body: map[string]any{"name": "pci-guard"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/policygroups/pci-guard", Body: map[string]any{"addSelector": map[string]string{"tag": "compliance=pci"}}}, nil))
	var dev struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "dev", "role": "member"}}, &dev))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"stack": "web/prod", "permission": "write"}}}, nil))
	dc := cliwire.New(e.url, dev.TokenValue)
	group := func() string {
		var g map[string]any
		e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups/pci-guard"}, &g))
		return fmt.Sprint(g["stacks"])
	}
	if before := group(); !strings.Contains(before, "prod") {
		t.Fatalf("group stacks before: %s", before)
	}
	prod := stackPath("acme", "web", "prod")
	wantStatus(t, dc.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/policygroups/pci-guard", Body: map[string]any{"removeStack": map[string]string{"name": "prod", "routingProject": "web"}}}, nil), 403)
	err := dc.Do(cliwire.Call{Method: "DELETE", Path: prod + "/tags/compliance"}, nil)
	after := group()
	if err == nil && !strings.Contains(after, "prod") {
		t.Errorf("a writer (no stack:policy) took the stack out of policy group pci-guard by deleting its tag")
	}
	refused := func(what string, err error) {
		t.Helper()
		ce := wantStatus(t, err, 403)
		if ce != nil && !strings.Contains(ce.Message, "pci-guard") {
			t.Errorf("%s: the refusal does not name the group: %q", what, ce.Message)
		}
	}
	refused("DELETE S/tags/compliance", err)
	refused("PATCH S/tags/compliance", dc.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags/compliance", Body: map[string]string{"name": "compliance", "value": "none"}}, nil))
	refused("PATCH S/tags/compliance (rename)", dc.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags/compliance", Body: map[string]string{"name": "compliance2", "value": "pci"}}, nil))
	refused("PATCH S/tags", dc.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags", Body: map[string]string{"team": "web"}}, nil))

	// An update start whose tags (pulumi:tags) would change the tag.
	var created apitype.UpdateProgramResponse
	e.must(dc.Do(cliwire.Call{Method: "POST", Path: prod + "/update", Body: apitype.UpdateProgramRequest{Name: "web", Runtime: "nodejs"}}, &created))
	refused("update start", dc.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + created.UpdateID,
		Body: apitype.StartUpdateRequest{Tags: map[string]string{"compliance": "none", "pulumi:project": "web"}}}, nil))
	if after := group(); !strings.Contains(after, "prod") {
		t.Fatalf("the stack left the group: %s", after)
	}

	// The refusals are recorded, as stack:policy denials.
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == "stack:policy" && ev.Outcome == gatehouse.OutcomeDenied && ev.ActorName == "dev" && ev.Details["policy_groups_left"] == "pci-guard" {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d recorded stack:policy refusals naming the group, want 5", n)
	}

	// The writer may still edit other tags and make the stack join a group.
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policygroups", Body: map[string]any{"name": "web-guard"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/policygroups/web-guard", Body: map[string]any{"addSelector": map[string]string{"tag": "team=web"}}}, nil))
	e.must(dc.Do(cliwire.Call{Method: "POST", Path: prod + "/tags", Body: map[string]string{"name": "team", "value": "web"}}, nil))
	e.must(dc.Do(cliwire.Call{Method: "PATCH", Path: prod + "/tags", Body: map[string]string{"compliance": "pci", "team": "web", "owner": "dev"}}, nil))
	var g map[string]any
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups/web-guard"}, &g))
	if !strings.Contains(fmt.Sprint(g["stacks"]), "prod") {
		t.Errorf("the stack did not join web-guard: %v", g["stacks"])
	}

	// Ordinary updates by the writer: the CLI sends the stack's tags merged with its own.
	done := make(chan error, 1)
	go func() {
		var created apitype.UpdateProgramResponse
		if err := dc.Do(cliwire.Call{Method: "POST", Path: prod + "/update", Body: apitype.UpdateProgramRequest{Name: "web", Runtime: "nodejs"}}, &created); err != nil {
			done <- err
			return
		}
		var started apitype.StartUpdateResponse
		if err := dc.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + created.UpdateID,
			Body: apitype.StartUpdateRequest{Tags: map[string]string{"compliance": "pci", "team": "web", "owner": "dev", "pulumi:project": "web", "pulumi:runtime": "nodejs"}}}, &started); err != nil {
			done <- err
			return
		}
		done <- dc.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + created.UpdateID + "/complete", LeaseToken: started.Token,
			Body: apitype.CompleteUpdateRequest{Status: apitype.UpdateStatusSucceeded}}, nil)
	}()
	select {
	case err := <-done:
		e.must(err)
	case <-time.After(20 * time.Second):
		t.Fatal("an ordinary update by the writer did not answer within 20s")
	}

	// A stack admin (stack:policy) may take it out.
	e.must(a.Do(cliwire.Call{Method: "DELETE", Path: prod + "/tags/compliance"}, nil))
	if after := group(); strings.Contains(after, "prod") {
		t.Errorf("an admin's retag did not take the stack out of the group: %s", after)
	}
}
