package httpapi_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// The calls below are the ones the stock CLI makes (pkg/backend/httpstate/client/client.go):
// the paths, methods and bodies of PublishPolicyPack (POST, plain PUT to the upload URI
// with no Authorization header, POST .../complete with no body), ListPolicyPacks,
// ApplyPolicyPack and DisablePolicyPack (PATCH of the group with add/removePolicyPack),
// GetPolicyPackSchema, RemovePolicyPack(ByVersion), ListPolicyGroups, CreateUpdate's
// requiredPolicies and DownloadPolicyPack (plain GET of packLocation).

// packRequest is the body `pulumi policy publish` sends for a pack with one mandatory rule.
func packRequest(name, version string) apitype.CreatePolicyPackRequest {
	props := json.RawMessage(`{"type":"string"}`)
	return apitype.CreatePolicyPackRequest{Name: name, DisplayName: "Pack " + name, VersionTag: version, Policies: []apitype.Policy{{
		Name: "no-public-buckets", DisplayName: "No public buckets", Description: "d", EnforcementLevel: apitype.Mandatory, Message: "m",
		ConfigSchema: &apitype.PolicyConfigSchema{Type: apitype.Object, Properties: map[string]*json.RawMessage{"region": &props}, Required: []string{"region"}},
	}}}
}

// plain is the CLI's upload and download: no Authorization header.
func plain(t *testing.T, method, url string, body []byte) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body == nil {
		req.Body = nil
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// publish runs `pulumi policy publish`'s three calls and returns the upload URI.
func publish(t *testing.T, e *env, c *cliwire.Client, name, version string, archive []byte) string {
	t.Helper()
	var resp apitype.CreatePolicyPackResponse
	e.must(c.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks", Body: packRequest(name, version)}, &resp))
	if !strings.HasPrefix(resp.UploadURI, e.url+"/api/policypacks/archives/") || resp.Version < 1 {
		t.Fatalf("publish answer %+v", resp)
	}
	if code, b := plain(t, "PUT", resp.UploadURI, archive); code != 200 {
		t.Fatalf("upload: %d %s", code, b)
	}
	e.must(c.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks/" + name + "/versions/" + version + "/complete"}, nil))
	return resp.UploadURI
}

func groupPatch(c *cliwire.Client, group string, body any) error {
	return c.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/policygroups/" + group, Body: body}, nil)
}

func createUpdate(t *testing.T, c *cliwire.Client, path, kind string) apitype.UpdateProgramResponse {
	t.Helper()
	var cr apitype.UpdateProgramResponse
	if err := c.Do(cliwire.Call{Method: "POST", Path: path + "/" + kind, Body: apitype.UpdateProgramRequest{Name: "proj", Runtime: "nodejs", Options: apitype.UpdateOptions{DryRun: kind == "preview"}}}, &cr); err != nil {
		t.Fatal(err)
	}
	return cr
}

func TestPolicyPackLifecycleAsTheCLI(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	prod, dev := stackPath("acme", "proj", "prod"), stackPath("acme", "proj", "dev")
	e.must(e.createStack(a, "acme", "proj", "prod", map[string]string{"env": "production"}))
	e.must(e.createStack(a, "acme", "proj", "dev", nil))
	archive := []byte("\x1f\x8b fake npm pack tarball")
	upload := publish(t, e, a, "security", "1.0.0", archive)

	// The upload URL is single-use.
	if code, _ := plain(t, "PUT", upload, []byte("other")); code != http.StatusForbidden {
		t.Fatalf("second upload to the same URL: %d, want 403", code)
	}
	// A version tag is published once.
	err := a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks", Body: packRequest("security", "1.0.0")}, nil)
	wantStatus(t, err, http.StatusConflict)

	// pulumi policy ls
	var ls apitype.ListPolicyPacksResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policypacks"}, &ls))
	if len(ls.PolicyPacks) != 1 || ls.PolicyPacks[0].Name != "security" || len(ls.PolicyPacks[0].VersionTags) != 1 || ls.PolicyPacks[0].VersionTags[0] != "1.0.0" || ls.PolicyPacks[0].Versions[0] != 1 {
		t.Fatalf("policy ls: %+v", ls)
	}
	// pulumi policy validate-config / enable --config read the schema.
	var schema apitype.GetPolicyPackConfigSchemaResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policypacks/security/versions/1.0.0/schema"}, &schema))
	if s, ok := schema.ConfigSchema["no-public-buckets"]; !ok || len(s.Required) != 1 || s.Required[0] != "region" {
		t.Fatalf("schema: %+v", schema)
	}

	// A group of the stacks tagged env=production (Gatehouse's selector), enabled there
	// (pulumi policy enable acme/security 1.0.0 --policy-group prod-guard --config ...).
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policygroups", Body: apitype.CreatePolicyGroupRequest{Name: "prod-guard", EntityType: "stacks"}}, nil))
	e.must(groupPatch(a, "prod-guard", map[string]any{"addSelector": map[string]string{"tag": "env=production"}}))
	badCfg := json.RawMessage(`{}`)
	err = groupPatch(a, "prod-guard", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "security", VersionTag: "1.0.0", Config: map[string]*json.RawMessage{"no-public-buckets": &badCfg}}})
	wantStatus(t, err, http.StatusBadRequest) // lacks the required "region"
	cfg := json.RawMessage(`{"region":"eu-west-1"}`)
	enable := apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "security", VersionTag: "1.0.0", Config: map[string]*json.RawMessage{"no-public-buckets": &cfg}}}
	e.must(groupPatch(a, "prod-guard", enable))
	wantStatus(t, groupPatch(a, "prod-guard", enable), http.StatusConflict) // enabled twice

	// pulumi policy group ls
	var gl apitype.ListPolicyGroupsResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups"}, &gl))
	if len(gl.PolicyGroups) != 2 || !gl.PolicyGroups[0].IsOrgDefault || gl.PolicyGroups[0].NumStacks != 2 || gl.PolicyGroups[1].Name != "prod-guard" ||
		gl.PolicyGroups[1].NumStacks != 1 || gl.PolicyGroups[1].NumEnabledPolicyPacks != 1 {
		t.Fatalf("policy group ls: %+v", gl)
	}

	// pulumi up / preview of prod get the pack; dev does not.
	for _, kind := range []string{"update", "preview"} {
		cr := createUpdate(t, a, prod, kind)
		if len(cr.RequiredPolicies) != 1 {
			t.Fatalf("%s of prod: requiredPolicies %+v", kind, cr.RequiredPolicies)
		}
		rp := cr.RequiredPolicies[0]
		if rp.Name != "security" || rp.VersionTag != "1.0.0" || rp.Version != 1 || rp.Config["no-public-buckets"] == nil || !strings.HasPrefix(rp.PackLocation, e.url+"/") {
			t.Fatalf("%s of prod: required policy %+v", kind, rp)
		}
		code, got := plain(t, "GET", rp.PackLocation, nil)
		if code != 200 || !bytes.Equal(got, archive) {
			t.Fatalf("download: %d %q", code, got)
		}
		if kind == "update" {
			e.must(a.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + cr.UpdateID + "/cancel"}, nil))
			// The URL dies with its update.
			if code, _ := plain(t, "GET", rp.PackLocation, nil); code != http.StatusForbidden {
				t.Fatalf("download after the update ended: %d, want 403", code)
			}
		}
	}
	if cr := createUpdate(t, a, dev, "update"); len(cr.RequiredPolicies) != 0 {
		t.Fatalf("dev is in no group with packs, got %+v", cr.RequiredPolicies)
	}
	// pulumi policy install: GET stack/policypacks, which the CLI calls only when the
	// capabilities say stack-policy-packs.
	var caps apitype.CapabilitiesResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/capabilities"}, &caps))
	if parsed, err := caps.Parse(); err != nil || !parsed.StackPolicyPacks {
		t.Fatalf("capabilities lack %s: %+v", apitype.StackPolicyPacks, caps)
	}
	var sp apitype.GetStackPolicyPacksResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: prod + "/policypacks"}, &sp))
	if len(sp.RequiredPolicies) != 1 {
		t.Fatalf("stack policypacks: %+v", sp)
	}

	// pulumi policy rm refuses an enabled version; pulumi policy disable, then rm.
	wantStatus(t, a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/policypacks/security/versions/1.0.0"}, nil), http.StatusConflict)
	e.must(groupPatch(a, "prod-guard", apitype.UpdatePolicyGroupRequest{RemovePolicyPack: &apitype.PolicyPackMetadata{Name: "security", VersionTag: "1.0.0"}}))
	wantStatus(t, groupPatch(a, "prod-guard", apitype.UpdatePolicyGroupRequest{RemovePolicyPack: &apitype.PolicyPackMetadata{Name: "security", VersionTag: "1.0.0"}}), http.StatusNotFound)
	if cr := createUpdate(t, a, prod, "preview"); len(cr.RequiredPolicies) != 0 {
		t.Fatalf("after disable: %+v", cr.RequiredPolicies)
	}
	// Enabled in the default group without a version: every stack, the newest version.
	e.must(groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "security"}}))
	if cr := createUpdate(t, a, dev, "preview"); len(cr.RequiredPolicies) != 1 {
		t.Fatalf("default group: %+v", cr.RequiredPolicies)
	}
	wantStatus(t, a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/policypacks/security"}, nil), http.StatusConflict)
	e.must(groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{RemovePolicyPack: &apitype.PolicyPackMetadata{Name: "security"}}))
	e.must(a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/policypacks/security/versions/1.0.0"}, nil))
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policypacks"}, &ls))
	if len(ls.PolicyPacks) != 0 {
		t.Fatalf("after rm: %+v", ls)
	}

	// Every change is audited.
	evs, err := listAudit(e)
	e.must(err)
	seen := map[string]int{}
	for _, ev := range evs {
		if ev.Outcome == gatehouse.OutcomeSuccess {
			seen[ev.Action]++
		}
	}
	if seen["org:policy:write"] < 8 || seen["policy:pack:upload"] != 1 {
		t.Fatalf("audited policy changes: %v", seen)
	}
}

// TestPolicyPackBadInput: a publish never completed (unusable, then cleaned up), an
// archive whose digest no longer matches, odd names.
func TestPolicyPackBadInput(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	var resp apitype.CreatePolicyPackResponse
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks", Body: packRequest("abandoned", "0.1.0")}, &resp))
	// Complete without an upload: refused; the version cannot be enabled or listed.
	wantStatus(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks/abandoned/versions/0.1.0/complete"}, nil), http.StatusBadRequest)
	wantStatus(t, groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "abandoned", VersionTag: "0.1.0"}}), http.StatusBadRequest)
	var ls apitype.ListPolicyPacksResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policypacks"}, &ls))
	if len(ls.PolicyPacks) != 0 {
		t.Fatalf("a pending version is listed: %+v", ls)
	}
	// An hour later the next publish cleans it up (and its upload URL is dead).
	e.clock.Advance(2 * time.Hour)
	publish(t, e, a, "good", "1.0.0", []byte("archive"))
	wantStatus(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policypacks/abandoned/versions/0.1.0"}, nil), http.StatusNotFound)
	if code, _ := plain(t, "PUT", resp.UploadURI, []byte("late")); code != http.StatusNotFound {
		t.Fatalf("upload to a cleaned-up version: %d, want 404", code)
	}
	// Unknown and odd URLs.
	if code, _ := plain(t, "GET", e.url+"/api/policypacks/archives/nope", nil); code != http.StatusNotFound {
		t.Fatalf("unknown download URL: %d", code)
	}
	for _, bad := range []apitype.CreatePolicyPackRequest{packRequest("../etc", "1.0.0"), packRequest("ok", "1.0.0 beta"), packRequest("", "1")} {
		wantStatus(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks", Body: bad}, nil), http.StatusBadRequest)
	}

	// A stored archive that no longer matches its digest is not served.
	e.must(groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "good", VersionTag: "1.0.0"}}))
	e.must(e.createStack(a, "acme", "proj", "dev", nil))
	cr := createUpdate(t, a, stackPath("acme", "proj", "dev"), "preview")
	if _, err := e.srv.Store.(*sqlstore.DB).Writer().Exec(`UPDATE policy_packs SET archive = ? WHERE name = 'good'`, []byte("tampered")); err != nil {
		t.Fatal(err)
	}
	if code, b := plain(t, "GET", cr.RequiredPolicies[0].PackLocation, nil); code != http.StatusInternalServerError || bytes.Contains(b, []byte("tampered")) {
		t.Fatalf("tampered archive served: %d %s", code, b)
	}
}

// TestPolicyGroupStacks: groups select the stacks they name (addStack, as the CLI sends
// it), never another organization's; removing a protected stack's last required pack
// needs an org admin.
func TestPolicyGroupStacks(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	do := func(method, path string, body, out any) {
		t.Helper()
		e.must(a.Do(cliwire.Call{Method: method, Path: path, Body: body}, out))
	}
	e.must(e.createStack(a, "acme", "proj", "prod", nil))
	do("POST", "/api/orgs", map[string]string{"name": "globex"}, nil)
	e.must(e.createStack(a, "globex", "gproj", "gstack", nil))
	publish(t, e, a, "security", "1.0.0", []byte("archive"))
	do("POST", "/api/orgs/acme/policygroups", apitype.CreatePolicyGroupRequest{Name: "g"}, nil)
	// Another organization's stack cannot be named.
	wantStatus(t, groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "gstack", RoutingProject: "gproj"}}), http.StatusBadRequest)
	wantStatus(t, groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "globex/gproj/gstack"}}), http.StatusBadRequest)
	wantStatus(t, groupPatch(a, "g", map[string]any{"addSelector": map[string]string{"stack": "globex/gproj/gstack"}}), http.StatusBadRequest)
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "proj"}}))
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "security", VersionTag: "1.0.0"}}))
	var g struct {
		apitype.GetPolicyGroupResponse
		Selectors []map[string]string `json:"selectors"`
	}
	do("GET", "/api/orgs/acme/policygroups/g", nil, &g)
	if len(g.Stacks) != 1 || g.Stacks[0].Name != "prod" || len(g.AppliedPolicyPacks) != 1 || len(g.Selectors) != 1 || g.Selectors[0]["stack"] != "proj/prod" {
		t.Fatalf("group: %+v", g)
	}

	// A pipeline team with admin on proj/prod, which is protected.
	do("POST", "/api/orgs/acme/teams/pulumi", map[string]string{"name": "ops"}, nil)
	do("PATCH", "/api/orgs/acme/teams/ops", map[string]any{"addGrant": map[string]any{"stack": "proj/prod", "permission": "admin"}}, nil)
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	do("POST", "/api/orgs/acme/teams/ops/tokens", map[string]any{"name": "ci"}, &tok)
	ops := cliwire.New(e.url, tok.TokenValue)
	do("POST", "/api/orgs/acme/protections", map[string]string{"stack": "proj/prod"}, nil)
	// The team may not touch packs or other groups' selectors...
	wantStatus(t, groupPatch(ops, "g", apitype.UpdatePolicyGroupRequest{RemovePolicyPack: &apitype.PolicyPackMetadata{Name: "security"}}), http.StatusForbidden)
	// ...nor take the protected stack out of its only group with packs.
	err := groupPatch(ops, "g", apitype.UpdatePolicyGroupRequest{RemoveStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "proj"}})
	if ce := wantStatus(t, err, http.StatusForbidden); !strings.Contains(ce.Message, "without any required policy pack") {
		t.Fatalf("refusal: %s", ce.Message)
	}
	// With the pack also required by the default group, the team may.
	e.must(groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{AddPolicyPack: &apitype.PolicyPackMetadata{Name: "security"}}))
	e.must(groupPatch(ops, "g", apitype.UpdatePolicyGroupRequest{RemoveStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "proj"}}))
	e.must(groupPatch(ops, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "proj"}}))
	// An org admin may disable the last one.
	e.must(groupPatch(a, "default-policy-group", apitype.UpdatePolicyGroupRequest{RemovePolicyPack: &apitype.PolicyPackMetadata{Name: "security"}}))
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{RemoveStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "proj"}}))
	// `pulumi policy group edit --add-stack/--add-policy-pack` reads the group and sends
	// whole lists back: tag-selected stacks stay selected by the tag, not by name.
	e.must(e.createStack(a, "acme", "proj", "tagged", map[string]string{"env": "production"}))
	e.must(e.createStack(a, "acme", "proj", "extra", nil))
	e.must(groupPatch(a, "g", map[string]any{"addSelector": map[string]string{"tag": "env=production"}}))
	do("GET", "/api/orgs/acme/policygroups/g", nil, &g)
	stacks := append(g.Stacks, apitype.PulumiStackReference{Name: "extra", RoutingProject: "proj"})
	packs := []apitype.PolicyPackMetadata{{Name: "security", Version: 1}} // --add-policy-pack security@1: the version number
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{Stacks: &stacks}))
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{PolicyPacks: &packs}))
	do("GET", "/api/orgs/acme/policygroups/g", nil, &g)
	if len(g.Stacks) != 2 || len(g.Selectors) != 2 || g.Selectors[0]["tag"] != "env=production" || g.Selectors[1]["stack"] != "proj/extra" || len(g.AppliedPolicyPacks) != 1 {
		t.Fatalf("after the CLI's list edits: %+v", g)
	}
	only := []apitype.PulumiStackReference{{Name: "extra", RoutingProject: "proj"}}
	wantStatus(t, groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{Stacks: &only}), http.StatusBadRequest) // tagged is selected by the tag

	// The default group cannot be deleted or given stacks.
	wantStatus(t, a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/policygroups/default-policy-group"}, nil), http.StatusBadRequest)
	wantStatus(t, groupPatch(a, "default-policy-group", map[string]any{"addSelector": map[string]string{"project": "proj"}}), http.StatusBadRequest)
}

// TestPolicyResults: the policy events the CLI sends with an update are stored and
// listed per organization, stack and pack; a mandatory violation is an audit event.
func TestPolicyResults(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	prod := stackPath("acme", "proj", "prod")
	e.must(e.createStack(a, "acme", "proj", "prod", nil))
	r, err := e.startRun(a, prod, "update", false)
	e.must(err)
	urn := "urn:pulumi:prod::proj::aws:s3/bucket:Bucket::b"
	evs := apitype.EngineEventBatch{Events: []apitype.EngineEvent{
		{Sequence: 1, PolicyEvent: &apitype.PolicyEvent{ResourceURN: urn, Message: "bucket is public", PolicyName: "no-public-buckets", PolicyPackName: "security", PolicyPackVersionTag: "1.0.0", EnforcementLevel: "mandatory", Severity: "high"}},
		{Sequence: 2, PolicyEvent: &apitype.PolicyEvent{ResourceURN: urn, Message: "no tags", PolicyName: "tags", PolicyPackName: "hygiene", PolicyPackVersionTag: "2", EnforcementLevel: "advisory"}},
		{Sequence: 3, PolicyRemediationEvent: &apitype.PolicyRemediationEvent{ResourceURN: urn, PolicyName: "fix", PolicyPackName: "hygiene", PolicyPackVersionTag: "2"}},
		{Sequence: 4, PolicyAnalyzeStackSummaryEvent: &apitype.PolicyAnalyzeStackSummaryEvent{PolicyPackName: "security", PolicyPackVersionTag: "1.0.0", Passed: []string{"a"}, Failed: []string{"no-public-buckets"}}},
		{Sequence: 5, PolicyAnalyzeSummaryEvent: &apitype.PolicyAnalyzeSummaryEvent{ResourceURN: urn, PolicyPackName: "hygiene", Passed: []string{"tags"}}}, // passes only: not kept
	}}
	e.must(r.lease("POST", "/events/batch", evs, nil))
	e.must(r.lease("POST", "/events/batch", evs, nil)) // a retried batch
	e.must(r.complete("failed"))

	type list struct {
		Results []struct {
			apitype.PolicyIssue
			UpdateID string `json:"updateID"`
		} `json:"results"`
	}
	var all, sec, stack list
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults"}, &all))
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults?pack=security"}, &sec))
	e.must(a.Do(cliwire.Call{Method: "GET", Path: prod + "/policyresults?kind=violation"}, &stack))
	if len(all.Results) != 4 || len(sec.Results) != 2 || len(stack.Results) != 2 {
		t.Fatalf("results: all %d, security %d, stack violations %d", len(all.Results), len(sec.Results), len(stack.Results))
	}
	v := sec.Results[1] // oldest first within the newest-first list: the violation
	if v.Kind != "violation" || v.Level != "mandatory" || v.ResourceType != "aws:s3/bucket:Bucket" || v.ResourceName != "b" || v.EntityID != "prod" || v.UpdateID != r.ID {
		t.Fatalf("violation: %+v", v)
	}
	// The CLI's ListPolicyIssues.
	var issues apitype.ListPolicyIssuesResponse
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policyresults/issues", Body: apitype.ListPolicyIssuesRequest{StartRow: 0, EndRow: 10}}, &issues))
	if issues.Total != 2 || len(issues.Issues) != 2 {
		t.Fatalf("issues: %+v", issues)
	}
	var one apitype.GetPolicyIssueResponse
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults/issues/" + issues.Issues[0].ID}, &one))
	if one.PolicyIssue.ID != issues.Issues[0].ID {
		t.Fatalf("issue: %+v", one)
	}
	audit, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range audit {
		if ev.Action == "policy:violation" {
			n++
			if ev.Details["policy"] != "no-public-buckets" || !strings.HasPrefix(ev.Target, "acme/proj/prod") {
				t.Fatalf("violation audit event: %+v", ev)
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d policy:violation audit events, want 1 (the mandatory one, once)", n)
	}
}

// providerDeployment is a state with a stack resource and the given provider resources
// (package name and version input).
func providerDeployment(provs ...[2]string) json.RawMessage {
	res := []map[string]any{{"urn": "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev", "type": "pulumi:pulumi:Stack", "custom": false}}
	for _, p := range provs {
		in := map[string]any{}
		if p[1] != "" {
			in["version"] = p[1]
		}
		res = append(res, map[string]any{"urn": "urn:pulumi:dev::proj::pulumi:providers:" + p[0] + "::default_" + strings.ReplaceAll(p[1], ".", "_"),
			"type": "pulumi:providers:" + p[0], "custom": true, "id": "x", "inputs": in})
	}
	b, _ := json.Marshal(map[string]any{"manifest": map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"}, "resources": res})
	return b
}

// TestApprovedProviders: the organization's allow-list stops the checkpoint (full or
// verbatim) and the journal entry that registers an unapproved provider; a preview that
// would register one fails at its complete; providers already in the state pass.
func TestApprovedProviders(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.Journal = httpapi.JournalOn })
	a := e.admin
	dev := stackPath("acme", "proj", "dev")
	e.must(e.createStack(a, "acme", "proj", "dev", nil))
	// Before an allow-list, anything goes: kubernetes 1.0.0 is in the state.
	r, err := e.startRun(a, dev, "update", false)
	e.must(err)
	e.must(r.checkpoint(providerDeployment([2]string{"kubernetes", "1.0.0"})))
	e.must(r.complete("succeeded"))

	put := func(body any) error {
		return a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/policy/providers", Body: body}, nil)
	}
	for _, bad := range []any{
		map[string]any{"enforced": true, "providers": []map[string]string{{"name": "AWS!"}}},
		map[string]any{"enforced": true, "providers": []map[string]string{{"name": "aws", "versions": "not a range"}}},
		map[string]any{"enforced": true, "providers": []map[string]string{{"name": "../x"}}},
		map[string]any{"enforced": true, "providers": []map[string]string{{"name": ""}}},
	} {
		wantStatus(t, put(bad), http.StatusBadRequest)
	}
	e.must(put(map[string]any{"enforced": true, "providers": []map[string]string{{"name": "random"}, {"name": "aws", "versions": ">=6.0.0 <7.0.0"}}}))

	// Full checkpoints: aws 5 and an unlisted package are refused, the state is unchanged.
	r, err = e.startRun(a, dev, "update", false)
	e.must(err)
	for _, bad := range [][2]string{{"aws", "5.42.0"}, {"gcp", "7.0.0"}, {"aws", ""}} {
		err := r.checkpoint(providerDeployment([2]string{"kubernetes", "1.0.0"}, bad))
		if ce := wantStatus(t, err, http.StatusForbidden); !strings.Contains(ce.Message, "approved provider") && !strings.Contains(ce.Message, "approved version") {
			t.Fatalf("refusal message: %s", ce.Message)
		}
	}
	// Allowed ones pass, and kubernetes (already in the state) is left alone.
	e.must(r.checkpoint(providerDeployment([2]string{"kubernetes", "1.0.0"}, [2]string{"aws", "6.3.1"}, [2]string{"random", "4.0.0"})))
	// Verbatim checkpoints too.
	verb := map[string]any{"version": 3, "sequenceNumber": 1, "untypedDeployment": map[string]any{"version": 3, "deployment": providerDeployment([2]string{"azure", "1.0.0"})}}
	wantStatus(t, r.lease("PATCH", "/checkpointverbatim", verb, nil), http.StatusForbidden)
	// A different kubernetes version is a new registration.
	wantStatus(t, r.checkpoint(providerDeployment([2]string{"kubernetes", "2.0.0"})), http.StatusForbidden)
	e.must(r.complete("failed"))

	// Journal entries: the begin of an unapproved provider's registration is refused.
	var cr apitype.UpdateProgramResponse
	e.must(a.Do(cliwire.Call{Method: "POST", Path: dev + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	var sr apitype.StartUpdateResponse
	e.must(a.Do(cliwire.Call{Method: "POST", Path: dev + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
	if sr.JournalVersion != 1 {
		t.Fatalf("journal not granted")
	}
	jr := &run{e: e, c: a, path: dev, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}
	prov := apitype.ResourceV3{URN: "urn:pulumi:dev::proj::pulumi:providers:gcp::default", Type: "pulumi:providers:gcp", Custom: true, Inputs: map[string]any{"version": "7.0.0"}}
	begin := apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindBegin, SequenceID: 1, OperationID: 1, Operation: &apitype.OperationV2{Resource: prov, Type: apitype.OperationTypeCreating}}
	err = jr.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{begin}}, nil)
	wantStatus(t, err, http.StatusForbidden)
	ok := prov
	ok.URN, ok.Type, ok.Inputs = "urn:pulumi:dev::proj::pulumi:providers:random::default", "pulumi:providers:random", map[string]any{"version": "4.0.0"}
	begin.Operation.Resource = ok
	e.must(jr.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{begin}}, nil))
	e.must(jr.complete("failed"))

	// A preview that would register gcp: its events are taken, its complete fails.
	pr, err := e.startRun(a, dev, "preview", true)
	e.must(err)
	pre := apitype.EngineEventBatch{Events: []apitype.EngineEvent{{Sequence: 1, ResourcePreEvent: &apitype.ResourcePreEvent{Metadata: apitype.StepEventMetadata{
		Op: apitype.OpCreate, URN: "urn:pulumi:dev::proj::pulumi:providers:gcp::default_7_0_0", Type: "pulumi:providers:gcp",
		New: &apitype.StepEventStateMetadata{Type: "pulumi:providers:gcp", Inputs: map[string]any{"version": "7.0.0"}}}}}}}
	e.must(pr.lease("POST", "/events/batch", pre, nil))
	if ce := wantStatus(t, pr.complete("succeeded"), http.StatusForbidden); !strings.Contains(ce.Message, "gcp") {
		t.Fatalf("preview refusal: %s", ce.Message)
	}

	// Every refusal is a result of the stack and a denied audit event.
	var res struct {
		Results []apitype.PolicyIssue `json:"results"`
	}
	e.must(a.Do(cliwire.Call{Method: "GET", Path: dev + "/policyresults?kind=provider"}, &res))
	if len(res.Results) < 7 {
		t.Fatalf("%d provider results, want at least 7", len(res.Results))
	}
	audit, err := listAudit(e)
	e.must(err)
	denied := 0
	for _, ev := range audit {
		if ev.Outcome == gatehouse.OutcomeDenied && ev.Details["policy"] == "approved-providers" {
			denied++
		}
	}
	if denied != 7 { // six refused states, one preview
		t.Fatalf("%d denied approved-provider audit events, want 7", denied)
	}
	// The state is the last one accepted.
	var exp apitype.UntypedDeployment
	e.must(a.Do(cliwire.Call{Method: "GET", Path: dev + "/export"}, &exp))
	if strings.Contains(string(exp.Deployment), "providers:gcp") || strings.Contains(string(exp.Deployment), "providers:azure") {
		t.Fatalf("an unapproved provider reached the state: %s", exp.Deployment)
	}
	_ = context.Background
}

// TestApprovedProvidersDelta: a checkpoint delta that adds an unapproved provider is
// refused, and the stored document stays the one before it.
func TestApprovedProvidersDelta(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	dev := stackPath("acme", "proj", "dev")
	e.must(e.createStack(a, "acme", "proj", "dev", nil))
	e.must(a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/policy/providers", Body: map[string]any{"enforced": true, "providers": []map[string]string{{"name": "random"}}}}, nil))
	r, err := e.startRun(a, dev, "update", false)
	e.must(err)
	docA, _ := json.Marshal(apitype.UntypedDeployment{Version: 3, Deployment: providerDeployment([2]string{"random", "4.0.0"})})
	docB, _ := json.Marshal(apitype.UntypedDeployment{Version: 3, Deployment: providerDeployment([2]string{"random", "4.0.0"}, [2]string{"gcp", "7.0.0"})})
	e.must(r.lease("PATCH", "/checkpointverbatim", apitype.PatchUpdateVerbatimCheckpointRequest{Version: 3, UntypedDeployment: docA, SequenceNumber: 1}, nil))
	p := 0
	for p < len(docA) && docA[p] == docB[p] {
		p++
	}
	sfx := 0
	for sfx < len(docA)-p && docA[len(docA)-1-sfx] == docB[len(docB)-1-sfx] {
		sfx++
	}
	sum := sha256.Sum256(docB)
	delta := map[string]any{"version": 3, "checkpointHash": hex.EncodeToString(sum[:]), "sequenceNumber": 2, "deploymentDelta": []map[string]any{{
		"Span":    map[string]any{"uri": "", "start": map[string]int{"line": 1, "column": 1, "offset": p}, "end": map[string]int{"line": 1, "column": 1, "offset": len(docA) - sfx}},
		"NewText": string(docB[p : len(docB)-sfx])}}}
	if ce := wantStatus(t, r.lease("PATCH", "/checkpointdelta", delta, nil), http.StatusForbidden); !strings.Contains(ce.Message, "gcp") {
		t.Fatalf("delta refusal: %s", ce.Message)
	}
	e.must(r.complete("failed"))
	var exp apitype.UntypedDeployment
	e.must(a.Do(cliwire.Call{Method: "GET", Path: dev + "/export"}, &exp))
	if strings.Contains(string(exp.Deployment), "gcp") || !strings.Contains(string(exp.Deployment), "providers:random") {
		t.Fatalf("state after the refused delta: %s", exp.Deployment)
	}
}

// TestPolicyUploadLimit: the public upload route takes at most 32 MiB.
func TestPolicyUploadLimit(t *testing.T) {
	e := newEnv(t)
	var resp apitype.CreatePolicyPackResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policypacks", Body: packRequest("big", "1.0.0")}, &resp))
	if code, _ := plain(t, "PUT", resp.UploadURI, make([]byte, 32<<20+1)); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("a 32 MiB + 1 upload: %d, want 413", code)
	}
	if code, b := plain(t, "PUT", resp.UploadURI, make([]byte, 1<<20)); code != 200 {
		t.Fatalf("a 1 MiB upload after the refused one: %d %s", code, b)
	}
}

// TestPolicyArchiveUploadUnknownURLReadsNoBody: the public upload URL is checked before
// the archive is read, so a PUT to an unknown URL is answered at once, while its body is
// still being sent (found in read-back: the server read up to 32 MiB first).
func TestPolicyArchiveUploadUnknownURLReadsNoBody(t *testing.T) {
	e := newEnv(t)
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() { _, _ = pw.Write([]byte("the first bytes of a body that never ends")) }()
	req, _ := http.NewRequest("PUT", e.url+"/api/policypacks/archives/nope", pr)
	req.ContentLength = 32 << 20
	type answer struct {
		resp *http.Response
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		done <- answer{resp, err}
	}()
	var resp *http.Response
	select {
	case a := <-done:
		if a.err != nil {
			t.Fatalf("PUT to an unknown upload URL: %v", a.err)
		}
		resp = a.resp
	case <-time.After(10 * time.Second):
		pw.CloseWithError(io.ErrUnexpectedEOF)
		t.Fatal("no answer while the body is being sent: the server reads the archive before checking the URL")
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("PUT to an unknown upload URL: %d, want 404", resp.StatusCode)
	}
}

// TestPolicyRoutesHideStacks: the policy routes any member or team token may read
// (org:policy:read) show only the stacks the caller may read, as GET /api/stacks/{org}
// lists them: a group's stacks, named-stack selectors and counts, the organization's
// results and issues (violation messages, URNs) and one issue by ID; ?stack= naming a
// stack the caller may not read answers as a missing stack, and so does naming it in a
// group change. An org admin sees everything. Found in review: with default stack
// permission none, a member listed no stacks, but the default policy group named
// payroll/prod and ?stack= told an existing stack from a missing one.
func TestPolicyRoutesHideStacks(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultStackPermission": "none"}}, nil))
	e.must(e.createStack(a, "acme", "payroll", "prod", map[string]string{"env": "production"}))
	e.must(e.createStack(a, "acme", "web", "dev", nil))
	var bob struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &bob))
	bc := cliwire.New(e.url, bob.TokenValue)
	// bob reads web/dev (a team grant), not payroll/prod.
	bobTeam(t, e, map[string]any{"stack": "web/dev", "permission": "read"})
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policygroups", Body: apitype.CreatePolicyGroupRequest{Name: "g"}}, nil))
	for _, st := range []string{"payroll/prod", "web/dev"} {
		e.must(groupPatch(a, "g", map[string]any{"addSelector": map[string]string{"stack": st}}))
	}
	// A violation on each stack.
	for _, st := range []string{"payroll/prod", "web/dev"} {
		project, name, _ := strings.Cut(st, "/")
		r, err := e.startRun(a, stackPath("acme", project, name), "update", false)
		e.must(err)
		urn := "urn:pulumi:" + name + "::" + project + "::aws:s3/bucket:Bucket::" + project + "-bucket"
		e.must(r.lease("POST", "/events/batch", apitype.EngineEventBatch{Events: []apitype.EngineEvent{
			{Sequence: 1, PolicyEvent: &apitype.PolicyEvent{ResourceURN: urn, Message: project + " bucket is public", PolicyName: "no-public-buckets", PolicyPackName: "security", PolicyPackVersionTag: "1.0.0", EnforcementLevel: "mandatory"}},
		}}, nil))
		e.must(r.complete("failed"))
	}

	var stacks apitype.ListStacksResponse
	e.must(bc.Do(cliwire.Call{Method: "GET", Path: "/api/stacks/acme"}, &stacks))
	if len(stacks.Stacks) != 1 || stacks.Stacks[0].StackName != "dev" {
		t.Fatalf("bob's stacks: %+v", stacks)
	}
	var groups apitype.ListPolicyGroupsResponse
	e.must(bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups"}, &groups))
	for _, g := range groups.PolicyGroups {
		if g.NumStacks != 1 {
			t.Errorf("bob's group %s counts %d stacks, want 1", g.Name, g.NumStacks)
		}
	}
	for _, name := range []string{"default-policy-group", "g"} {
		var g json.RawMessage
		e.must(bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups/" + name}, &g))
		if strings.Contains(string(g), "payroll") || !strings.Contains(string(g), `"dev"`) {
			t.Errorf("group %s as bob sees it: %s", name, g)
		}
		var ga json.RawMessage
		e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policygroups/" + name}, &ga))
		if !strings.Contains(string(ga), "payroll") {
			t.Errorf("group %s as the admin sees it: %s", name, ga)
		}
	}
	e1 := bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults?stack=payroll/prod"}, nil)
	e2 := bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults?stack=payroll/nope"}, nil)
	if (e1 == nil) != (e2 == nil) || strings.Replace(fmt.Sprint(e1), "prod", "nope", 1) != fmt.Sprint(e2) {
		t.Errorf("policyresults?stack= tells a hidden stack (%v) from a missing one (%v)", e1, e2)
	}
	type list struct {
		Results []apitype.PolicyIssue `json:"results"`
	}
	var mine, all list
	e.must(bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults"}, &mine))
	e.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults"}, &all))
	if len(mine.Results) != 1 || mine.Results[0].EntityProject != "web" || len(all.Results) != 2 {
		t.Errorf("results: bob %+v, admin %d", mine.Results, len(all.Results))
	}
	e.must(bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults?stack=web/dev&limit=1"}, &mine))
	if len(mine.Results) != 1 {
		t.Errorf("bob's results of web/dev: %+v", mine.Results)
	}
	var issues, allIssues apitype.ListPolicyIssuesResponse
	e.must(bc.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policyresults/issues", Body: apitype.ListPolicyIssuesRequest{StartRow: 0, EndRow: 10}}, &issues))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policyresults/issues", Body: apitype.ListPolicyIssuesRequest{StartRow: 0, EndRow: 10}}, &allIssues))
	if issues.Total != 1 || len(issues.Issues) != 1 || strings.Contains(issues.Issues[0].Message, "payroll") || allIssues.Total != 2 {
		t.Fatalf("issues: bob %+v, admin %d", issues, allIssues.Total)
	}
	for _, iss := range allIssues.Issues {
		err := bc.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults/issues/" + iss.ID}, nil)
		if iss.EntityProject == "payroll" {
			wantStatus(t, err, http.StatusNotFound)
		} else {
			e.must(err)
		}
	}
	// Naming the hidden stack in a group change answers as naming a missing one.
	h := groupPatch(bc, "g", apitype.UpdatePolicyGroupRequest{RemoveStack: &apitype.PulumiStackReference{Name: "prod", RoutingProject: "payroll"}})
	m := groupPatch(bc, "g", apitype.UpdatePolicyGroupRequest{RemoveStack: &apitype.PulumiStackReference{Name: "nope", RoutingProject: "payroll"}})
	if strings.Replace(fmt.Sprint(h), "prod", "nope", 1) != fmt.Sprint(m) {
		t.Errorf("removeStack of a hidden stack: %v, of a missing one: %v", h, m)
	}
}

// TestPolicyGroupStackRefusal: a group change naming one stack, by someone who may read the
// stack but lacks stack:policy on it, is refused (403) and recorded, and the server goes
// on writing. Found in review: the refusal's audit record was written from inside the
// change's transaction and waited for the write lock that transaction held: the request
// never answered and every later write waited behind it.
func TestPolicyGroupStackRefusal(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	e.must(e.createStack(a, "acme", "web", "dev", nil))
	bc := cliwire.New(e.url, e.newPerson("bob", "member"))
	bobTeam(t, e, map[string]any{"stack": "web/dev", "permission": "read"})
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/policygroups", Body: apitype.CreatePolicyGroupRequest{Name: "g"}}, nil))
	done := make(chan error, 1)
	go func() {
		done <- groupPatch(bc, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "dev", RoutingProject: "web"}})
	}()
	select {
	case err := <-done:
		wantStatus(t, err, http.StatusForbidden)
	case <-time.After(20 * time.Second):
		t.Fatal("a refused addStack did not answer within 20s (the writer is stuck)")
	}
	e.must(groupPatch(a, "g", apitype.UpdatePolicyGroupRequest{AddStack: &apitype.PulumiStackReference{Name: "dev", RoutingProject: "web"}}))
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		found = found || ev.Action == "stack:policy" && ev.Outcome == gatehouse.OutcomeDenied && ev.ActorName == "bob"
	}
	if !found {
		t.Error("the refusal is not in the audit log")
	}
}
