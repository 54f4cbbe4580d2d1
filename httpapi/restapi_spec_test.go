package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// The contract of the REST API beyond the CLI is Pulumi Cloud's OpenAPI description
// (pulumi/pulumi-pulumiservice, provider/pkg/cloud/spec.json). testdata holds an extract of
// it (its source commit is in the file; testdata/pulumi-spec-extract.py regenerates it):
// the operations below and the schemas they reference. Responses are checked against the
// schemas: required fields present, every field the schema describes of the right type,
// enumerated values among the allowed ones.

type specExtract struct {
	Source     string `json:"source"`
	Operations map[string]struct {
		Method    string                    `json:"method"`
		Path      string                    `json:"path"`
		Responses map[string]map[string]any `json:"responses"`
	} `json:"operations"`
	Schemas map[string]map[string]any `json:"schemas"`
}

func loadSpec(t *testing.T) *specExtract {
	t.Helper()
	return loadSpecFile(t, "testdata/pulumi-spec-extract.json")
}

// loadSpecFile reads a checked-in extract of Pulumi Cloud's OpenAPI description, which must
// name its source.
func loadSpecFile(t *testing.T, path string) *specExtract {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sp specExtract
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(sp.Source, "pulumi/pulumi-pulumiservice") {
		t.Fatalf("the extract does not name its source: %q", sp.Source)
	}
	return &sp
}

// validate checks v against schema and returns what does not conform, each with its path.
func (sp *specExtract) validate(at string, schema map[string]any, v any) []string {
	if schema == nil {
		return nil
	}
	if ref, ok := schema["$ref"].(string); ok {
		name := ref[strings.LastIndex(ref, "/")+1:]
		s, ok := sp.Schemas[name]
		if !ok {
			return []string{at + ": schema " + name + " is not in the extract"}
		}
		return sp.validate(at, s, v)
	}
	var errs []string
	if all, ok := schema["allOf"].([]any); ok {
		for _, s := range all {
			errs = append(errs, sp.validate(at, s.(map[string]any), v)...)
		}
	}
	typ, _ := schema["type"].(string)
	if typ == "" && schema["properties"] != nil {
		typ = "object"
	}
	bad := func() []string { return append(errs, fmt.Sprintf("%s: want %s, got %T %v", at, typ, v, v)) }
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		props, _ := schema["properties"].(map[string]any)
		for _, r := range asList(schema["required"]) {
			if _, ok := m[r.(string)]; !ok {
				errs = append(errs, fmt.Sprintf("%s: required field %q is missing", at, r))
			}
		}
		for k, val := range m {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, sp.validate(at+"."+k, ps, val)...)
			} else if ap, ok := schema["additionalProperties"].(map[string]any); ok {
				errs = append(errs, sp.validate(at+"["+k+"]", ap, val)...)
			}
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		items, _ := schema["items"].(map[string]any)
		for i, val := range l {
			errs = append(errs, sp.validate(fmt.Sprintf("%s[%d]", at, i), items, val)...)
		}
	case "string":
		if _, ok := v.(string); !ok {
			return bad()
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return bad()
		}
	case "number":
		if _, ok := v.(float64); !ok {
			return bad()
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return bad()
		}
	}
	if enum := asList(schema["enum"]); enum != nil {
		found := false
		for _, e := range enum {
			if fmt.Sprint(e) == fmt.Sprint(v) {
				found = true
			}
		}
		if !found {
			errs = append(errs, fmt.Sprintf("%s: %v is not one of %v", at, v, enum))
		}
	}
	return errs
}

func asList(v any) []any { l, _ := v.([]any); return l }

// checkOp checks a response body against the schema the operation documents for status.
func (sp *specExtract) checkOp(t *testing.T, op, status string, body []byte) map[string]any {
	t.Helper()
	o, ok := sp.Operations[op]
	if !ok {
		t.Fatalf("operation %s is not in the extract", op)
	}
	schema, ok := o.Responses[status]
	if !ok {
		t.Fatalf("%s documents no %s response (it has %v)", op, status, o.Responses)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: the body is not JSON: %v: %s", op, err, body)
	}
	for _, e := range sp.validate(op, schema, v) {
		t.Errorf("%s", e)
	}
	m, _ := v.(map[string]any)
	return m
}

func (sp *specExtract) checkSchema(t *testing.T, name string, body []byte) map[string]any {
	t.Helper()
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s: the body is not JSON: %v: %s", name, err, body)
	}
	for _, e := range sp.validate(name, map[string]any{"$ref": "#/components/schemas/" + name}, v) {
		t.Errorf("%s", e)
	}
	m, _ := v.(map[string]any)
	return m
}

// The checker itself refuses what does not conform.
func TestSpecValidator(t *testing.T) {
	sp := loadSpec(t)
	ok := `{"info":{"kind":"update","startTime":1,"message":"","environment":{},"config":{},"result":"succeeded","endTime":2,"version":1},
		"updateID":"u","version":1,"latestVersion":1,"requestedBy":{"name":"a","githubLogin":"a","avatarUrl":""}}`
	var v any
	must(t, json.Unmarshal([]byte(ok), &v))
	if errs := sp.validate("x", map[string]any{"$ref": "#/components/schemas/UpdateInfo"}, v); len(errs) > 0 {
		t.Fatalf("a conforming UpdateInfo was refused: %v", errs)
	}
	for _, bad := range []string{
		`{"info":{"kind":"update"}}`, // required fields missing
		strings.Replace(ok, `"version":1,"latestVersion"`, `"version":"1","latestVersion"`, 1),
		strings.Replace(ok, `"result":"succeeded"`, `"result":"great"`, 1),
		strings.Replace(ok, `"config":{}`, `"config":{"a:b":{"string":"x"}}`, 1),
	} {
		must(t, json.Unmarshal([]byte(bad), &v))
		if errs := sp.validate("x", map[string]any{"$ref": "#/components/schemas/UpdateInfo"}, v); len(errs) == 0 {
			t.Errorf("a non-conforming UpdateInfo passed: %s", bad)
		}
	}
}

// Every operation of the extract is a route of Gatehouse's table.
func TestSpecOperationsServed(t *testing.T) {
	sp := loadSpec(t)
	e := newEnv(t)
	routes := map[string]bool{}
	for _, rt := range e.srv.API.Routes() {
		routes[rt.Method+" "+rt.Pattern] = true
	}
	r := strings.NewReplacer("{orgName}", "{org}", "{projectName}", "{project}", "{stackName}", "{stack}", "{teamName}", "{team}", "{tokenId}", "{tokenID}")
	for name, op := range sp.Operations {
		if key := op.Method + " " + r.Replace(op.Path); !routes[key] {
			t.Errorf("%s (%s) is not served", name, key)
		}
	}
}

func TestRESTAPIAgainstSpec(t *testing.T) {
	sp := loadSpec(t)
	e := newEnv(t, func(c *httpapi.Config) { c.StackPageSize = 2 })
	a := e.admin
	call := func(t *testing.T, c *cliwire.Client, method, path string, body any) []byte {
		t.Helper()
		var out []byte
		if err := c.Do(cliwire.Call{Method: method, Path: path, Body: body}, &out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		return out
	}
	status := func(t *testing.T, c *cliwire.Client, method, path string, body any, want int) {
		t.Helper()
		wantStatus(t, c.Do(cliwire.Call{Method: method, Path: path, Body: body}, nil), want)
	}
	prod := stackPath("acme", "proj", "prod")
	for _, s := range []string{"prod", "dev", "s3", "s4", "s5"} {
		e.must(e.createStack(a, "acme", "proj", s, map[string]string{"env": "x"}))
	}
	var runs []*run
	for i := 0; i < 2; i++ {
		r, err := e.startRun(a, prod, "update", false)
		e.must(err)
		e.must(r.checkpoint(deployment(2, "")))
		e.must(r.complete("succeeded"))
		runs = append(runs, r)
	}
	pr, err := e.startRun(a, prod, "preview", true)
	e.must(err)
	e.must(pr.complete("succeeded"))

	t.Run("updates/latest", func(t *testing.T) {
		m := sp.checkOp(t, "GetLatestStackUpdate", "200", call(t, a, "GET", prod+"/updates/latest", nil))
		if m["updateID"] != runs[1].ID || m["version"] != 2.0 || m["latestVersion"] != 2.0 {
			t.Errorf("latest = %v, want update %s version 2 of 2", m, runs[1].ID)
		}
		if rb, _ := m["requestedBy"].(map[string]any); rb["githubLogin"] != "alice" {
			t.Errorf("requestedBy = %v, want alice", m["requestedBy"])
		}
		if info, _ := m["info"].(map[string]any); info["kind"] != "update" || info["version"] != 2.0 || info["message"] != "test update" {
			t.Errorf("info = %v", m["info"])
		}
		// What the CLI reads from it: apitype's {info}.
		var cli struct{ Info apitype.UpdateInfo }
		must(t, a.Do(cliwire.Call{Method: "GET", Path: prod + "/updates/latest"}, &cli))
		if cli.Info.Version != 2 || cli.Info.Config["proj:greeting"].String != "hi" {
			t.Errorf("the CLI's view of updates/latest: %+v", cli.Info)
		}
		status(t, a, "GET", stackPath("acme", "proj", "dev")+"/updates/latest", nil, 404)
	})

	t.Run("updates/{version}", func(t *testing.T) {
		for v, r := range runs {
			m := sp.checkOp(t, "GetStackUpdate", "200", call(t, a, "GET", fmt.Sprintf("%s/updates/%d", prod, v+1), nil))
			if m["updateID"] != r.ID || m["version"] != float64(v+1) || m["latestVersion"] != 2.0 {
				t.Errorf("version %d = %v, want update %s", v+1, m, r.ID)
			}
		}
		status(t, a, "GET", prod+"/updates/3", nil, 404)
		status(t, a, "GET", prod+"/updates/0", nil, 404)
		status(t, a, "GET", prod+"/updates/two", nil, 400)
	})

	t.Run("updates?output-type", func(t *testing.T) {
		m := sp.checkSchema(t, "GetStackUpdatesResponse", call(t, a, "GET", prod+"/updates?output-type=service", nil))
		ups, _ := m["updates"].([]any)
		if m["total"] != 2.0 || len(ups) != 2 || ups[0].(map[string]any)["version"] != 2.0 {
			t.Errorf("service history = %v", m)
		}
		for page, want := range []float64{2, 1} {
			m := sp.checkSchema(t, "GetStackUpdatesResponse", call(t, a, "GET", fmt.Sprintf("%s/updates?output-type=service&page=%d&pageSize=1", prod, page+1), nil))
			ups, _ := m["updates"].([]any)
			if len(ups) != 1 || ups[0].(map[string]any)["version"] != want || m["itemsPerPage"] != 1.0 || m["total"] != 2.0 {
				t.Errorf("page %d: %v", page+1, m)
			}
		}
		// The CLI's own format stays the default.
		for _, q := range []string{"", "?output-type=cli"} {
			var h apitype.GetHistoryResponse
			must(t, a.Do(cliwire.Call{Method: "GET", Path: prod + "/updates" + q}, &h))
			if len(h.Updates) != 2 || h.Updates[0].Version != 2 || h.Updates[0].Kind != "update" {
				t.Errorf("history%s = %+v", q, h)
			}
		}
		status(t, a, "GET", prod+"/updates?output-type=fancy", nil, 400)
	})

	t.Run("org stacks", func(t *testing.T) {
		var names []string
		cont := ""
		for pages := 0; ; pages++ {
			if pages > 10 {
				t.Fatal("the continuation token never ends")
			}
			p := "/api/stacks/acme"
			if cont != "" {
				p += "?continuationToken=" + cont
			}
			m := sp.checkOp(t, "ListUserStacks", "200", call(t, a, "GET", p, nil))
			for _, s := range m["stacks"].([]any) {
				names = append(names, s.(map[string]any)["stackName"].(string))
			}
			c, _ := m["continuationToken"].(string)
			if c == "" {
				break
			}
			cont = c
		}
		if len(names) != 5 {
			t.Errorf("org stacks = %v, want the 5 stacks", names)
		}
		// The CLI's filters.
		e.must(e.createStack(a, "acme", "other", "lone", map[string]string{"env": "y"}))
		for q, want := range map[string]int{"?project=other": 1, "?tagName=env&tagValue=y": 1, "?project=proj&tagName=env&tagValue=x": 2} {
			m := sp.checkOp(t, "ListUserStacks", "200", call(t, a, "GET", "/api/stacks/acme"+q, nil))
			if n := len(m["stacks"].([]any)); n != want && !(want == 2 && m["continuationToken"] != nil) {
				t.Errorf("/api/stacks/acme%s: %d stacks, want %d", q, n, want)
			}
		}
		// A member without access to any stack sees none; someone of another org nothing.
		var bob struct {
			TokenValue string `json:"tokenValue"`
		}
		must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob"}}, &bob))
		m := sp.checkOp(t, "ListUserStacks", "200", call(t, cliwire.New(e.url, bob.TokenValue), "GET", "/api/stacks/acme", nil))
		if len(m["stacks"].([]any)) != 0 || m["continuationToken"] != nil {
			t.Errorf("bob sees %v", m)
		}
		status(t, a, "GET", "/api/stacks/nosuchorg", nil, 404)
	})

	t.Run("config", func(t *testing.T) {
		status(t, a, "GET", prod+"/config", nil, 404)
		if m := sp.checkOp(t, "GetStack", "200", call(t, a, "GET", prod, nil)); m["config"] != nil {
			t.Errorf("a stack without remote config has config %v", m["config"])
		}
		cfg := apitype.StackConfig{Environment: "proj/prod", SecretsProvider: "passphrase", EncryptionSalt: "v1:abc"}
		m := sp.checkOp(t, "UpdateStackConfig", "200", call(t, a, "PUT", prod+"/config", cfg))
		if m["environment"] != "proj/prod" {
			t.Errorf("put config answered %v", m)
		}
		var got apitype.StackConfig
		sp.checkOp(t, "GetStackConfig", "200", call(t, a, "GET", prod+"/config", nil))
		must(t, a.Do(cliwire.Call{Method: "GET", Path: prod + "/config"}, &got))
		if got != cfg {
			t.Errorf("config = %+v, want %+v", got, cfg)
		}
		// GET S carries it: the CLI then loads the stack's configuration from the environment.
		var st apitype.Stack
		sp.checkOp(t, "GetStack", "200", call(t, a, "GET", prod, nil))
		must(t, a.Do(cliwire.Call{Method: "GET", Path: prod}, &st))
		if st.Config == nil || *st.Config != cfg {
			t.Errorf("stack config = %+v", st.Config)
		}
		status(t, a, "PUT", prod+"/config", apitype.StackConfig{SecretsProvider: "passphrase"}, 400)
		call(t, a, "DELETE", prod+"/config", nil)
		status(t, a, "GET", prod+"/config", nil, 404)
		call(t, a, "DELETE", prod+"/config", nil) // idempotent
		// pulumi stack init --remote-config sends it with the new stack.
		e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: apitype.CreateStackRequest{StackName: "remote", Config: &cfg}}, &json.RawMessage{}))
		must(t, a.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "remote") + "/config"}, &got))
		if got != cfg {
			t.Errorf("config of a stack created with one = %+v", got)
		}
	})

	t.Run("stack tags", func(t *testing.T) {
		tags := func() map[string]any {
			m := sp.checkOp(t, "GetStack", "200", call(t, a, "GET", prod, nil))
			tg, _ := m["tags"].(map[string]any)
			return tg
		}
		call(t, a, "POST", prod+"/tags", map[string]string{"name": "owner", "value": "ops"})
		if tg := tags(); tg["owner"] != "ops" || tg["env"] != "x" {
			t.Errorf("tags after add = %v", tg)
		}
		status(t, a, "POST", prod+"/tags", map[string]string{"name": "owner", "value": "other"}, 400)
		status(t, a, "POST", prod+"/tags", map[string]string{"name": "bad name!", "value": "v"}, 400)
		call(t, a, "PATCH", prod+"/tags/owner", map[string]string{"name": "owner", "value": "sre"})
		if tg := tags(); tg["owner"] != "sre" {
			t.Errorf("tags after update = %v", tg)
		}
		call(t, a, "DELETE", prod+"/tags/owner", nil)
		if tg := tags(); tg["owner"] != nil || tg["env"] != "x" {
			t.Errorf("tags after delete = %v", tg)
		}
		status(t, a, "DELETE", prod+"/tags/owner", nil, 404)
		status(t, a, "PATCH", prod+"/tags/owner", map[string]string{"name": "owner", "value": "x"}, 404)
	})

	t.Run("teams", func(t *testing.T) {
		// The pulumiservice provider's calls, with its bodies.
		resp, b := e.rawCall(t, "POST", "/api/orgs/acme/teams/pulumi", "token "+a.Token,
			map[string]any{"organization": "acme", "teamType": "pulumi", "name": "ops", "displayName": "Ops", "description": "on call"})
		if resp.StatusCode != http.StatusCreated {
			t.Errorf("create team answered %d, want 201", resp.StatusCode)
		}
		m := sp.checkOp(t, "CreatePulumiTeam", "201", b)
		if m["name"] != "ops" || m["displayName"] != "Ops" {
			t.Errorf("created team = %v", m)
		}
		status(t, a, "POST", "/api/orgs/acme/teams/github", map[string]any{"organization": "acme", "teamType": "github", "githubTeamID": 7}, 400)
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"newDisplayName": "Operations", "newDescription": "on call, 24/7"})
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"memberAction": "add", "member": "bob"})
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"addStackPermission": map[string]any{"projectName": "proj", "stackName": "prod", "permission": 102}})
		m = sp.checkOp(t, "GetTeam", "200", call(t, a, "GET", "/api/orgs/acme/teams/ops", nil))
		if m["displayName"] != "Operations" || m["description"] != "on call, 24/7" {
			t.Errorf("team = %v", m)
		}
		if ms, _ := m["members"].([]any); len(ms) != 1 || ms[0].(map[string]any)["name"] != "bob" {
			t.Errorf("members = %v", m["members"])
		}
		if ss, _ := m["stacks"].([]any); len(ss) != 1 || ss[0].(map[string]any)["permission"] != 102.0 || ss[0].(map[string]any)["stackName"] != "prod" {
			t.Errorf("stacks = %v", m["stacks"])
		}
		if envs, ok := m["environments"].([]any); !ok || len(envs) != 0 {
			t.Errorf("environments = %v, want []", m["environments"])
		}
		sp.checkOp(t, "ListTeams", "200", call(t, a, "GET", "/api/orgs/acme/teams", nil))
		m = sp.checkOp(t, "ListStackTeams", "200", call(t, a, "GET", prod+"/teams", nil))
		if ts, _ := m["teams"].([]any); m["projectName"] != "proj" || len(ts) != 1 || ts[0].(map[string]any)["name"] != "ops" || ts[0].(map[string]any)["permission"] != 102.0 {
			t.Errorf("stack teams = %v", m)
		}
		// A second grant covering the stack: still one entry, with the strongest permission.
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"addGrant": map[string]any{"project": "proj", "permission": "read", "decrypt": true}})
		m = sp.checkOp(t, "ListStackTeams", "200", call(t, a, "GET", prod+"/teams", nil))
		if ts, _ := m["teams"].([]any); len(ts) != 1 || ts[0].(map[string]any)["permission"] != 102.0 {
			t.Errorf("stack teams with two grants = %v", m)
		}
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"removeGrant": map[string]any{"project": "proj"}})
		status(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"addEnvironmentPermission": map[string]any{"projectName": "p", "envName": "e", "permission": "read"}}, 400) // no such environment
		call(t, a, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"removeStack": map[string]any{"projectName": "proj", "stackName": "prod"}})
		m = sp.checkOp(t, "GetTeam", "200", call(t, a, "GET", "/api/orgs/acme/teams/ops", nil))
		if ss, _ := m["stacks"].([]any); len(ss) != 0 {
			t.Errorf("stacks after removeStack = %v", ss)
		}
		// The stack-centric form: UpdateTeamStackPermissions.
		stackPerm := func() any {
			m := sp.checkOp(t, "GetTeam", "200", call(t, a, "GET", "/api/orgs/acme/teams/ops", nil))
			if ss, _ := m["stacks"].([]any); len(ss) == 1 {
				return ss[0].(map[string]any)["permission"]
			}
			return nil
		}
		console := "/api/console/stacks/acme/proj/prod/teams/ops"
		call(t, a, "PATCH", console, map[string]any{"permissions": 103})
		if p := stackPerm(); p != 103.0 {
			t.Errorf("after permissions 103: %v", p)
		}
		call(t, a, "PATCH", console, map[string]any{"permissions": 101})
		if p := stackPerm(); p != 101.0 {
			t.Errorf("after permissions 101: %v", p)
		}
		status(t, a, "PATCH", console, map[string]any{"permissions": 105}, 400)
		call(t, a, "PATCH", console, map[string]any{})
		if p := stackPerm(); p != nil {
			t.Errorf("after no permissions: %v", p)
		}
		status(t, a, "PATCH", "/api/console/stacks/acme/proj/prod/teams/nosuch", map[string]any{"permissions": 101}, 404)
	})

	t.Run("tokens", func(t *testing.T) {
		for _, c := range []struct{ create, list, path string }{
			{"CreateTeamToken", "ListTeamTokens", "/api/orgs/acme/teams/ops/tokens"},
			{"CreateOrgToken", "ListOrgTokens", "/api/orgs/acme/tokens"},
			{"CreatePersonalToken", "ListPersonalTokens", "/api/user/tokens"},
		} {
			body := map[string]any{"name": "prov-" + c.create, "description": "from the provider"}
			switch c.create {
			case "CreateOrgToken":
				body["admin"] = true
			case "CreatePersonalToken":
				delete(body, "name") // the provider sends only a description
			}
			m := sp.checkOp(t, c.create, "200", call(t, a, "POST", c.path, body))
			id, _ := m["id"].(string)
			if id == "" || m["tokenValue"] == "" {
				t.Fatalf("%s = %v", c.create, m)
			}
			found := func() map[string]any {
				m := sp.checkOp(t, c.list, "200", call(t, a, "GET", c.path, nil))
				for _, tk := range m["tokens"].([]any) {
					if tk := tk.(map[string]any); tk["id"] == id {
						return tk
					}
				}
				return nil
			}
			tk := found()
			if tk == nil || tk["description"] != "from the provider" || tk["lastUsed"] != 0.0 {
				t.Errorf("%s: token %s listed as %v", c.list, id, tk)
			}
			if c.create == "CreateOrgToken" && tk["admin"] != true {
				t.Errorf("an admin organization token is listed as %v", tk)
			}
			call(t, a, "DELETE", c.path+"/"+id, nil)
			if tk := found(); tk != nil {
				t.Errorf("%s: token %s still listed after delete", c.list, id)
			}
		}
		call(t, a, "DELETE", "/api/orgs/acme/teams/ops", nil)
		status(t, a, "GET", "/api/orgs/acme/teams/ops", nil, 404)
	})

	t.Run("delete with forceDestroy", func(t *testing.T) {
		status(t, a, "DELETE", prod, nil, 400) // it still has resources
		call(t, a, "DELETE", prod+"?forceDestroy=true", nil)
		status(t, a, "GET", prod, nil, 404)
	})

	// Each change is in the audit log with its action.
	evs, err := listAudit(e)
	e.must(err)
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Outcome == "success" {
			seen[ev.Action+" "+ev.Target] = true
		}
	}
	for _, want := range []string{"stack:config acme/proj/prod", "stack:tags acme/proj/prod", "org:team:write acme/teams/ops", "stack:delete acme/proj/prod"} {
		if !seen[want] {
			t.Errorf("no successful audit event %q", want)
		}
	}
}
