package httpapi_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestEnvDecryptOnlyOnItsOwnRoutes: the plain definition routes (GET E and GET
// E/versions/{version}, env:read) never decrypt, whatever the environment or the revision
// tag is called. Found in review: a path ending in /decrypt (an environment named
// "decrypt", or a revision tag named "decrypt") made them answer the secrets in the clear
// to a reader, and unaudited.
func TestEnvDecryptOnlyOnItsOwnRoutes(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	reader := e.esc(e.newPerson("reader", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "read"}}, nil))

	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"decrypt"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/decrypt", []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	admin.want(200, "POST", escBase+"/acme/app/dev/versions/tags", []byte(`{"name":"decrypt","revision":2}`))

	for _, p := range []string{escBase + "/acme/app/decrypt", escBase + "/acme/app/decrypt/versions/2", escBase + "/acme/app/dev/versions/decrypt"} {
		r := reader.want(200, "GET", p, nil)
		if strings.Contains(string(r.body), "hunter2") || !strings.Contains(string(r.body), "ciphertext") {
			t.Errorf("reader GET %s: secrets in the clear:\n%s", p, r.body)
		}
	}
	// The decrypt routes themselves still need open.
	reader.want(403, "GET", escBase+"/acme/app/decrypt/decrypt", nil)
	reader.want(403, "GET", escBase+"/acme/app/dev/versions/decrypt/decrypt", nil)
	r := admin.want(200, "GET", escBase+"/acme/app/dev/versions/decrypt/decrypt", nil)
	if !strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("admin decrypt of the tag: %s", r.body)
	}
}

// bombDefinition is a definition of levels values, each interpolating the previous one
// ten times: about 1 KB that evaluates to 1000·10^levels bytes.
func bombDefinition(levels int) []byte {
	var b strings.Builder
	b.WriteString("values:\n  l0: " + strings.Repeat("x", 1000) + "\n")
	for i := 1; i <= levels; i++ {
		b.WriteString("  l" + strconv.Itoa(i) + ": \"")
		for j := 0; j < 10; j++ {
			b.WriteString("${l" + strconv.Itoa(i-1) + "}")
		}
		b.WriteString("\"\n")
	}
	return []byte(b.String())
}

// TestEnvEvaluationBounded: a definition whose references copy values too many times is
// refused before it is evaluated, on every route that evaluates (yaml/check and yaml/open,
// open to every member; an environment's check; through an import). Found in review: a
// definition of 1.5 KB made the server build gigabytes (4 levels here: 10 MB, refused).
func TestEnvEvaluationBounded(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	member := e.esc(e.newPerson("member", "member"))
	bomb := bombDefinition(4)
	wantRefusedBig(t, member.do("POST", escBase+"/acme/yaml/check", bomb))
	wantRefusedBig(t, member.do("POST", escBase+"/acme/yaml/open?duration=1h", bomb))
	// The same levels inside one top-level value (a.l1: ${a.l0}, and a list's elements):
	// the bound counted such references as nothing (found in review).
	nested := strings.ReplaceAll(strings.ReplaceAll(string(bomb), "\n  l", "\n    l"), "${l", "${a.l")
	wantRefusedBig(t, member.do("POST", escBase+"/acme/yaml/check", []byte(strings.Replace(nested, "values:\n", "values:\n  a:\n", 1))))
	list := "values:\n  a:\n    - " + strings.Repeat("x", 1000) + "\n"
	for i := 1; i <= 4; i++ {
		list += "    - \"" + strings.Repeat("${a["+strconv.Itoa(i-1)+"]}", 10) + "\"\n"
	}
	wantRefusedBig(t, member.do("POST", escBase+"/acme/yaml/check", []byte(list)))

	// Fine: a level less, and ordinary imports and references.
	admin.want(200, "POST", escBase+"/acme/yaml/check", bombDefinition(2))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"base"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/base", bombDefinition(2))
	admin.want(200, "POST", escBase+"/acme/yaml/check", []byte("imports: [app/base]\nvalues:\n  a: ${l2}\n  b: ${l1}\n  c: \"${l0}-${l0}\"\n"))
	// An import whose values are referenced too many times is refused the same way.
	var refs strings.Builder
	refs.WriteString("imports: [app/base]\nvalues:\n")
	for i := 0; i < 20; i++ {
		refs.WriteString("  v" + strconv.Itoa(i) + ": \"${l2}${l2}${l2}${l2}${l2}${l2}${l2}${l2}${l2}${l2}\"\n")
	}
	wantRefusedBig(t, admin.do("POST", escBase+"/acme/yaml/check", []byte(refs.String())))
	// So is one that reads the values of imports through ${imports...}, or of an
	// environment it does not import through ${environments.project.env...}.
	for _, ref := range []string{`imports["app/base"].l2`, "environments.app.base.l2"} {
		var b strings.Builder
		if strings.HasPrefix(ref, "imports") {
			b.WriteString("imports: [app/base]\n")
		}
		b.WriteString("values:\n")
		for i := 0; i < 20; i++ {
			b.WriteString("  v" + strconv.Itoa(i) + ": '" + strings.Repeat("${"+ref+"}", 10) + "'\n")
		}
		wantRefusedBig(t, admin.do("POST", escBase+"/acme/yaml/check", []byte(b.String())))
	}
	// An environment imported many times brings its values once: the bound counted them
	// once per import, so this check was refused as too large (found in review).
	dup := "imports: [" + strings.Repeat("app/base, ", 400) + "app/base]\nvalues:\n  a: ${l2}\n"
	admin.want(200, "POST", escBase+"/acme/yaml/check", []byte(dup))
	// And an environment cannot be written with such a definition.
	wantRefusedBig(t, admin.do("PATCH", escBase+"/acme/app/base", bomb))
}

// wantRefusedBig asserts a 400 whose diagnostics say the evaluation would be too large
// (without printing a huge body when it is not).
func wantRefusedBig(t *testing.T, r escResp) {
	t.Helper()
	if r.status != 400 || !strings.Contains(string(r.body), "would evaluate to more than") {
		b := string(r.body)
		if len(b) > 300 {
			b = b[:300] + "..."
		}
		t.Fatalf("want 400 (too large to evaluate), got %d (%d bytes) %s", r.status, len(r.body), b)
	}
}

// TestEnvStackOutputsBounded: fn::open::pulumi-stacks reads at most MaxStackOutputBytes of
// outputs per open, so that the evaluation's size bound holds for definitions that
// reference stack outputs many times. Found in review: the bound counted an open as a
// constant while a stack's outputs can be as large as its state (any stack writer sets
// them), so 100 references to a stack with 1 MiB of outputs built 100 MiB.
func TestEnvStackOutputsBounded(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	p := stackPath("acme", "infra", "prod")
	e.must(e.createStack(e.admin, "acme", "infra", "prod", nil))
	dep, _ := json.Marshal(map[string]any{
		"manifest": map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"},
		"resources": []map[string]any{{
			"urn": "urn:pulumi:prod::infra::pulumi:pulumi:Stack::infra-prod", "custom": false, "type": "pulumi:pulumi:Stack",
			"outputs": map[string]any{"big": strings.Repeat("x", 1<<20), "small": "s"},
		}},
	})
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: apitype.UntypedDeployment{Version: 3, Deployment: dep}, Gzip: true}, &apitype.ImportStackResponse{}))
	// Two stacks of 200 KB of outputs each: each fits, not both in one fn::open.
	for _, name := range []string{"a", "b"} {
		e.must(e.createStack(e.admin, "acme", "mid", name, nil))
		dep, _ := json.Marshal(map[string]any{
			"manifest": map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"},
			"resources": []map[string]any{{
				"urn": "urn:pulumi:" + name + "::mid::pulumi:pulumi:Stack::mid-" + name, "custom": false, "type": "pulumi:pulumi:Stack",
				"outputs": map[string]any{"v": strings.Repeat("y", 200<<10)},
			}},
		})
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "mid", name) + "/import", Body: apitype.UntypedDeployment{Version: 3, Deployment: dep}, Gzip: true}, &apitype.ImportStackResponse{}))
	}
	one := "values:\n  refs:\n    fn::open::pulumi-stacks:\n      stacks:\n        a: {stack: mid/a}\n"
	admin.want(200, "POST", escBase+"/acme/yaml/open?duration=1h", []byte(one))
	r := admin.do("POST", escBase+"/acme/yaml/open?duration=1h", []byte(one+"        b: {stack: mid/b}\n"))
	if r.status != 400 || !strings.Contains(string(r.body), "brings the outputs of this fn::open") {
		t.Fatalf("two stacks over the limit together: %d %.300s", r.status, r.body)
	}

	var def strings.Builder
	def.WriteString("values:\n  refs:\n    fn::open::pulumi-stacks:\n      stacks:\n        infra:\n          stack: infra/prod\n  copies:\n")
	for i := 0; i < 100; i++ {
		def.WriteString("    - ${refs.infra.big}\n")
	}
	r = admin.do("POST", escBase+"/acme/yaml/open?duration=1h", []byte(def.String()))
	if r.status != 400 || !strings.Contains(string(r.body), "of stack outputs one fn::open reads") {
		b := string(r.body)
		if len(b) > 300 {
			b = b[:300] + "..."
		}
		t.Fatalf("want 400 (stack outputs too large for one fn::open), got %d (%d bytes) %s", r.status, len(r.body), b)
	}
}
