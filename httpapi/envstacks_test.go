package httpapi_test

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestEnvironmentsPulumiStacks: fn::open::pulumi-stacks reads a stack's outputs through an
// environment, checked against the caller's stack rights: read for the outputs, decrypt
// for a secret output (an ESC secret); a stack the caller cannot read is an error naming it.
func TestEnvironmentsPulumiStacks(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	p := stackPath("acme", "infra", "prod")
	e.must(e.createStack(e.admin, "acme", "infra", "prod", nil))
	// The CLI's service secrets manager: the server encrypts the value's JSON, the state
	// holds the base64 of that ciphertext in the secret envelope.
	var enc apitype.EncryptValueResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(`"hunter2"`)}}, &enc))
	dep, _ := json.Marshal(map[string]any{
		"manifest":          map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"},
		"secrets_providers": map[string]any{"type": "service", "state": map[string]any{"url": e.url, "owner": "acme", "project": "infra", "stack": "prod"}},
		"resources": []map[string]any{{
			"urn": "urn:pulumi:prod::infra::pulumi:pulumi:Stack::infra-prod", "custom": false, "type": "pulumi:pulumi:Stack",
			"outputs": map[string]any{
				"vpcId":   "vpc-123",
				"subnets": []any{"a", "b"},
				"dbPassword": map[string]any{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
					"ciphertext": base64.StdEncoding.EncodeToString(enc.Ciphertext)},
			},
		}},
	})
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: apitype.UntypedDeployment{Version: 3, Deployment: dep}, Gzip: true}, &apitype.ImportStackResponse{}))

	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	def := "values:\n  refs:\n    fn::open::pulumi-stacks:\n      stacks:\n        infra:\n          stack: infra/prod\n  pulumiConfig:\n    vpc: ${refs.infra.vpcId}\n"
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte(def))
	dev := escBase + "/acme/app/dev"

	var opened struct {
		ID string `json:"id"`
	}
	var one struct {
		Value  any  `json:"value"`
		Secret bool `json:"secret"`
	}
	admin.want(200, "POST", dev+"/open?duration=1h", nil).json(t, &opened)
	admin.want(200, "GET", dev+"/open/"+opened.ID+"?property=pulumiConfig.vpc", nil).json(t, &one)
	if one.Value != "vpc-123" {
		t.Fatalf("stack output through the environment: %+v", one)
	}
	admin.want(200, "GET", dev+"/open/"+opened.ID+"?property=refs.infra.dbPassword", nil).json(t, &one)
	if one.Value != "hunter2" || !one.Secret {
		t.Fatalf("secret stack output: %+v, want hunter2 as a secret", one)
	}
	admin.want(200, "GET", dev+"/open/"+opened.ID+"?property=refs.infra.subnets[1]", nil).json(t, &one)
	if one.Value != "b" {
		t.Fatalf("list output: %+v", one)
	}
	// The open's audit event names the stack read.
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Action == "env:open" && ev.Target == "acme/app/dev" && ev.Details["stackOutputs"] == "infra/prod" {
			found = true
		}
	}
	if !found {
		t.Fatal("no env:open audit event names the stack read")
	}

	// A person who may open the environment but has no right on the stack (new
	// organizations: default stack permission none): an error naming the stack.
	tok := e.newPerson("dev1", "member")
	member := e.esc(tok)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev1"}}, nil))
	e.envGrant("devs", "app", "dev", "open")
	wantDiags(t, member.do("POST", dev+"/open?duration=1h", nil), `stack "infra/prod"`)

	// Stack read without decrypt: the plain outputs are readable, the secret output is not.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addStackPermission": map[string]any{"projectName": "infra", "stackName": "prod", "permission": 101}}}, nil))
	r := member.do("POST", dev+"/open?duration=1h", nil)
	wantDiags(t, r, "dbPassword")
	wantDiags(t, r, "stack:decrypt denied")
	if strings.Contains(string(r.body), "hunter2") {
		t.Fatal("a refused decrypt leaked the plaintext")
	}
	// The refusal is audited, naming the stack.
	evs, err = listAudit(e)
	e.must(err)
	found = false
	for _, ev := range evs {
		if ev.Action == "env:open" && ev.ActorName == "dev1" && ev.Outcome == gatehouse.OutcomeFailure && ev.Details["stackOutputsDenied"] == "infra/prod (stack:decrypt)" {
			found = true
		}
	}
	if !found {
		t.Fatal("no failed env:open audit event names the stack refused")
	}
	// With decrypt, the secret output opens.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addStackPermission": map[string]any{"projectName": "infra", "stackName": "prod", "permission": 101, "decrypt": true}}}, nil))
	member.want(200, "POST", dev+"/open?duration=1h", nil).json(t, &opened)
	member.want(200, "GET", dev+"/open/"+opened.ID+"?property=refs.infra.dbPassword", nil).json(t, &one)
	if one.Value != "hunter2" || !one.Secret {
		t.Fatalf("secret stack output with decrypt: %+v", one)
	}
	// A stack that does not exist, and one of the organization that is not a stack name.
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte(strings.ReplaceAll(def, "infra/prod", "infra/nope")))
	wantDiags(t, admin.do("POST", dev+"/open?duration=1h", nil), `stack "infra/nope": stack not found`)
}
