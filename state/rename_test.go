package state

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func TestRenameStack(t *testing.T) {
	stackURN := resource.URN("urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev")
	prov := resource.URN("urn:pulumi:dev::web::pulumi:providers:aws::default")
	comp := resource.URN("urn:pulumi:dev::web::my:index:Comp::c")
	child := resource.URN("urn:pulumi:dev::web::my:index:Comp$aws:s3/bucket:Bucket::b")
	in := &apitype.DeploymentV3{
		Resources: []apitype.ResourceV3{
			{URN: stackURN, Type: "pulumi:pulumi:Stack"},
			{URN: prov, Type: "pulumi:providers:aws", Parent: stackURN},
			{URN: comp, Type: "my:index:Comp", Parent: stackURN},
			{URN: child, Type: "aws:s3/bucket:Bucket", Parent: comp, Provider: string(prov) + "::1234-abcd",
				Dependencies: []resource.URN{comp}, PropertyDependencies: map[resource.PropertyKey][]resource.URN{"x": {comp}},
				DeletedWith: comp, Aliases: []resource.URN{"urn:pulumi:dev::web::aws:s3/bucket:Bucket::old"},
				Outputs: map[string]any{"big": json.Number("12345678901234567890"), "html": "<a&b>"}},
		},
		PendingOperations: []apitype.OperationV2{{Resource: apitype.ResourceV3{URN: child, Parent: comp}, Type: "creating"}},
	}
	raw, _ := json.Marshal(in)
	// A field this version does not know must survive.
	raw = []byte(strings.Replace(string(raw), `"resources":`, `"futureField":{"keep":true},"resources":`, 1))
	out, err := RenameStack(raw, "prod", "site")
	if err != nil {
		t.Fatal(err)
	}
	var d apitype.DeploymentV3
	if err := json.Unmarshal(out, &d); err != nil {
		t.Fatal(err)
	}
	r := d.Resources
	check := func(name string, got, w string) {
		t.Helper()
		if got != w {
			t.Errorf("%s = %s, want %s", name, got, w)
		}
	}
	check("stack", string(r[0].URN), "urn:pulumi:prod::site::pulumi:pulumi:Stack::site-prod")
	check("provider", string(r[1].URN), "urn:pulumi:prod::site::pulumi:providers:aws::default")
	check("provider parent", string(r[1].Parent), "urn:pulumi:prod::site::pulumi:pulumi:Stack::site-prod")
	check("child", string(r[3].URN), "urn:pulumi:prod::site::my:index:Comp$aws:s3/bucket:Bucket::b")
	check("child parent", string(r[3].Parent), "urn:pulumi:prod::site::my:index:Comp::c")
	check("child provider", r[3].Provider, "urn:pulumi:prod::site::pulumi:providers:aws::default::1234-abcd")
	check("dependency", string(r[3].Dependencies[0]), "urn:pulumi:prod::site::my:index:Comp::c")
	check("property dependency", string(r[3].PropertyDependencies["x"][0]), "urn:pulumi:prod::site::my:index:Comp::c")
	check("deletedWith", string(r[3].DeletedWith), "urn:pulumi:prod::site::my:index:Comp::c")
	check("alias", string(r[3].Aliases[0]), "urn:pulumi:prod::site::aws:s3/bucket:Bucket::old")
	check("pending op", string(d.PendingOperations[0].Resource.URN), "urn:pulumi:prod::site::my:index:Comp$aws:s3/bucket:Bucket::b")
	if !strings.Contains(string(out), `"futureField":{"keep":true}`) || !strings.Contains(string(out), `12345678901234567890`) || !strings.Contains(string(out), `<a&b>`) {
		t.Fatalf("unknown fields, numbers or text changed: %s", out)
	}
	if _, err := RenameStack(raw, "not a stack!", "site"); err == nil {
		t.Fatal("an invalid stack name was accepted")
	}
}
