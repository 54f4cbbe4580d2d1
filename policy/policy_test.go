package policy

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func TestAllowList(t *testing.T) {
	al, err := ParseAllowList(&gatehouse.PolicySettings{Enforced: true, ApprovedProviders: []gatehouse.ApprovedProvider{
		{Name: "aws", Versions: ">=6.0.0 <7.0.0"}, {Name: "aws", Versions: "7.1.x"}, {Name: "random"}, {Name: "azure-native", Versions: "*"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, version string
		ok            bool
	}{
		{"aws", "6.0.0", true}, {"aws", "6.99.1", true}, {"aws", "7.0.0", false}, {"aws", "7.1.4", true}, {"aws", "5.9.9", false},
		{"aws", "", false}, {"aws", "not-a-version", false}, {"aws", "v6.2.0", true},
		{"random", "", true}, {"random", "999.0.0", true}, {"azure-native", "2.0.0", true},
		{"gcp", "1.0.0", false}, {"AWS", "6.0.0", false}, {"aws ", "6.0.0", false},
	} {
		err := al.Allowed(Provider{URN: "urn", Name: c.name, Version: c.version})
		if (err == nil) != c.ok {
			t.Errorf("%s %q: allowed=%v, want %v (%v)", c.name, c.version, err == nil, c.ok, err)
		}
		if err != nil && !gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			t.Errorf("%s %q: code of %v", c.name, c.version, err)
		}
	}
	// Not enforced: everything passes.
	off, _ := ParseAllowList(&gatehouse.PolicySettings{ApprovedProviders: []gatehouse.ApprovedProvider{{Name: "aws"}}})
	if off.Allowed(Provider{Name: "gcp"}) != nil || off.Violations([]Provider{{Name: "gcp"}}, nil) != nil {
		t.Error("an allow-list that is not enforced refused a provider")
	}
}

func TestAllowListOddInput(t *testing.T) {
	for _, e := range []gatehouse.ApprovedProvider{
		{Name: ""}, {Name: "AWS"}, {Name: "aws!"}, {Name: "../aws"}, {Name: "a b"}, {Name: "pulumi:providers:aws"}, {Name: strings.Repeat("a", 101)},
		{Name: "aws", Versions: "latest"}, {Name: "aws", Versions: ">=x"}, {Name: "aws", Versions: strings.Repeat("1", 300)}, {Name: "aws", Versions: "1.0.0 ||"},
	} {
		if _, err := ParseAllowList(&gatehouse.PolicySettings{Enforced: true, ApprovedProviders: []gatehouse.ApprovedProvider{e}}); !gatehouse.IsCode(err, gatehouse.EINVALID) {
			t.Errorf("%+v: %v, want EINVALID", e, err)
		}
	}
}

func TestProvidersFound(t *testing.T) {
	dep := json.RawMessage(`{"resources":[
		{"urn":"urn:pulumi:s::p::pulumi:pulumi:Stack::p-s","type":"pulumi:pulumi:Stack"},
		{"urn":"urn:pulumi:s::p::pulumi:providers:aws::default_6_0_0","type":"pulumi:providers:aws","inputs":{"version":"6.0.0","region":"x"}},
		{"urn":"urn:pulumi:s::p::aws:s3/bucket:Bucket::b","type":"aws:s3/bucket:Bucket","inputs":{"version":"9"}}],
		"pending_operations":[{"resource":{"urn":"urn:pulumi:s::p::pulumi:providers:gcp::explicit","type":"pulumi:providers:gcp","inputs":{}},"type":"creating"}]}`)
	got, err := InDeployment(dep)
	if err != nil || len(got) != 2 || got[0].Name != "aws" || got[0].Version != "6.0.0" || got[1].Name != "gcp" || got[1].Version != "" {
		t.Fatalf("InDeployment = %+v, %v", got, err)
	}
	al, _ := ParseAllowList(&gatehouse.PolicySettings{Enforced: true, ApprovedProviders: []gatehouse.ApprovedProvider{{Name: "aws"}}})
	if v := al.Violations(got, nil); len(v) != 1 || !strings.Contains(v[0].Error(), "gcp") {
		t.Fatalf("Violations = %v", v)
	}
	if v := al.Violations(got, []Provider{{URN: "urn:pulumi:s::p::pulumi:providers:gcp::explicit"}}); len(v) != 0 {
		t.Fatalf("a provider already in the state was refused: %v", v)
	}
	entries := []apitype.JournalEntry{
		{Kind: apitype.JournalEntryKindBegin, Operation: &apitype.OperationV2{Resource: apitype.ResourceV3{URN: "u1", Type: "pulumi:providers:random", Inputs: map[string]any{"version": "4.1.0"}}}},
		{Kind: apitype.JournalEntryKindSuccess, State: &apitype.ResourceV3{URN: "u2", Type: "random:index:RandomId"}},
		{Kind: apitype.JournalEntryKindWrite, NewSnapshot: &apitype.DeploymentV3{Resources: []apitype.ResourceV3{{URN: "u3", Type: "pulumi:providers:tls"}}}},
	}
	if j := InJournal(entries); len(j) != 2 || j[0].Name != "random" || j[0].Version != "4.1.0" || j[1].Name != "tls" {
		t.Fatalf("InJournal = %+v", j)
	}
	ev := func(op apitype.OpType, typ string) json.RawMessage {
		b, _ := json.Marshal(apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{Metadata: apitype.StepEventMetadata{Op: op, URN: "u-" + string(op), Type: typ,
			New: &apitype.StepEventStateMetadata{Inputs: map[string]any{"version": "1.0.0"}}}}})
		return b
	}
	withRef := func(ref string) json.RawMessage {
		b, _ := json.Marshal(apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{Metadata: apitype.StepEventMetadata{Op: apitype.OpCreate, URN: "u", Type: "pulumi-nodejs:dynamic:Resource",
			New: &apitype.StepEventStateMetadata{}, Provider: ref}}})
		return b
	}
	if e := InEvents([]json.RawMessage{ev(apitype.OpCreate, "pulumi:providers:a"), ev(apitype.OpDelete, "pulumi:providers:b"), ev(apitype.OpSame, "pulumi:providers:c"), ev(apitype.OpCreate, "x:y:Z"), json.RawMessage(`{"garbage":`),
		withRef("urn:pulumi:dev::proj::pulumi:providers:pulumi-nodejs::default::04da6b54-80e4-46f7-96ec-b56ff0331ba9"),
		withRef("urn:pulumi:dev::proj::pulumi:providers:aws::default_6_1_0-alpha_2::id"),
		withRef("urn:pulumi:dev::proj::pulumi:providers:aws::explicit::id"), // its own event carries it
		withRef("not a reference")}); len(e) != 4 || e[0].Name != "a" || e[1].Name != "c" || e[2].Name != "pulumi-nodejs" || e[2].Version != "" ||
		e[3].Name != "aws" || e[3].Version != "6.1.0-alpha.2" || e[3].URN != "urn:pulumi:dev::proj::pulumi:providers:aws::default_6_1_0-alpha_2" {
		t.Fatalf("InEvents = %+v", e)
	}
}

func TestFromEvents(t *testing.T) {
	mk := func(e apitype.EngineEvent) json.RawMessage { b, _ := json.Marshal(e); return b }
	rs := FromEvents([]json.RawMessage{
		mk(apitype.EngineEvent{PolicyEvent: &apitype.PolicyEvent{PolicyName: "p", PolicyPackName: "k", PolicyPackVersion: "3", EnforcementLevel: "mandatory", Message: strings.Repeat("x", 5000)}}),
		mk(apitype.EngineEvent{PolicyAnalyzeSummaryEvent: &apitype.PolicyAnalyzeSummaryEvent{PolicyPackName: "k", Passed: []string{"p"}}}),
		mk(apitype.EngineEvent{StdoutEvent: &apitype.StdoutEngineEvent{Message: "policy"}}),
	})
	if len(rs) != 1 || rs[0].PackVersion != "3" || len(rs[0].Message) != 4096 || !Mandatory(&rs[0]) {
		t.Fatalf("FromEvents = %+v", rs)
	}
}

func TestSelects(t *testing.T) {
	st := &gatehouse.Stack{ID: 7, OrgID: 1, Project: "web", Name: "prod", Tags: map[string]string{"env": "production"}}
	for _, c := range []struct {
		g    gatehouse.PolicyGroup
		want bool
	}{
		{gatehouse.PolicyGroup{OrgID: 1, Name: DefaultGroup}, true},
		{gatehouse.PolicyGroup{OrgID: 2, Name: DefaultGroup}, false},
		{gatehouse.PolicyGroup{OrgID: 1, Name: "g"}, false},
		{gatehouse.PolicyGroup{OrgID: 1, Name: "g", Selectors: []gatehouse.Scope{{TagName: "env", TagValue: "production"}}}, true},
		{gatehouse.PolicyGroup{OrgID: 1, Name: "g", Selectors: []gatehouse.Scope{{TagName: "env", TagValue: "dev"}, {Project: "web"}}}, true},
		{gatehouse.PolicyGroup{OrgID: 1, Name: "g", Selectors: []gatehouse.Scope{{StackID: 8}}}, false},
		{gatehouse.PolicyGroup{OrgID: 2, Name: "g", Selectors: []gatehouse.Scope{{StackID: 7}}}, false},
	} {
		if got := Selects(&c.g, st); got != c.want {
			t.Errorf("Selects(%+v) = %v", c.g, got)
		}
	}
}
