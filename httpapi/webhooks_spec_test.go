package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// The webhook routes against Pulumi Cloud's OpenAPI description: testdata holds an extract
// of its webhook operations (source commit in the file; testdata/pulumi-spec-webhooks.py
// regenerates it), checked with the validator of restapi_spec_test.go.

func loadWebhookSpec(t *testing.T) *specExtract {
	t.Helper()
	return loadSpecFile(t, "testdata/pulumi-spec-webhooks.json")
}

func TestWebhooksAgainstSpec(t *testing.T) {
	sp := loadWebhookSpec(t)
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	routes := map[string]bool{}
	for _, rt := range e.srv.API.Routes() {
		routes[rt.Method+" "+rt.Pattern] = true
	}
	r := strings.NewReplacer("{orgName}", "{org}", "{projectName}", "{project}", "{stackName}", "{stack}")
	for name, op := range sp.Operations {
		if key := op.Method + " " + r.Replace(op.Path); !routes[key] {
			t.Errorf("%s (%s) is not served", name, key)
		}
	}
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	for _, scope := range []struct{ prefix, base string }{
		{"Organization", "/api/orgs/acme/hooks"},
		{"Stack", stackPath("acme", "proj", "dev") + "/hooks"},
	} {
		t.Run(scope.prefix, func(t *testing.T) {
			var raw []byte
			do := func(method, path string, body any) []byte {
				t.Helper()
				var out []byte
				if err := e.admin.Do(cliwire.Call{Method: method, Path: path, Body: body}, &out); err != nil {
					t.Fatalf("%s %s: %v", method, path, err)
				}
				return out
			}
			raw = do("POST", scope.base, map[string]any{"name": "h", "displayName": "H", "payloadUrl": rcv.URL, "active": true, "secret": "x", "format": "slack"})
			m := sp.checkOp(t, "Create"+scope.prefix+"Webhook", "201", raw)
			if m["name"] != "h" || m["hasSecret"] != true || m["format"] != "slack" || m["organizationName"] != "acme" {
				t.Errorf("create: %v", m)
			}
			if scope.prefix == "Stack" && (m["projectName"] != "proj" || m["stackName"] != "dev") {
				t.Errorf("create: %v, want the stack's names", m)
			}
			raw = do("POST", scope.base, map[string]any{"displayName": "no secret", "payloadUrl": rcv.URL, "active": false})
			sp.checkOp(t, "Create"+scope.prefix+"Webhook", "201", raw)
			var list []json.RawMessage
			e.must(json.Unmarshal(do("GET", scope.base, nil), &list))
			if len(list) != 2 {
				t.Errorf("list: %d webhooks", len(list))
			}
			list_, _ := json.Marshal(list)
			sp.checkOp(t, "List"+scope.prefix+"Webhooks", "200", list_)
			sp.checkOp(t, "Get"+scope.prefix+"Webhook", "200", do("GET", scope.base+"/h", nil))
			m = sp.checkOp(t, "Update"+scope.prefix+"Webhook", "200", do("PATCH", scope.base+"/h", map[string]any{"name": "h", "displayName": "H2", "payloadUrl": rcv.URL, "active": true, "filters": []string{"update_succeeded"}}))
			if m["displayName"] != "H2" || m["format"] != "slack" || m["hasSecret"] != true {
				t.Errorf("update: %v", m)
			}
			pd := sp.checkOp(t, "Ping"+scope.prefix+"Webhook", "200", do("POST", scope.base+"/h/ping", nil))
			waitFor(t, e, "the ping", func() bool {
				ds := e.deliveries(t, scope.base, "h")
				return len(ds) == 1 && ds[0].Status == "delivered"
			})
			var ds []json.RawMessage
			e.must(json.Unmarshal(do("GET", scope.base+"/h/deliveries", nil), &ds))
			dsRaw, _ := json.Marshal(ds)
			sp.checkOp(t, "Get"+scope.prefix+"WebhookDeliveries", "200", dsRaw)
			id, _ := pd["id"].(string)
			sp.checkOp(t, "Redeliver"+scope.prefix+"WebhookEvent", "200", do("POST", scope.base+"/h/deliveries/"+id+"/redeliver", nil))
			wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: scope.base + "/h/deliveries/nope/redeliver"}, nil), 404)
			wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: scope.base + "/nope"}, nil), 404)
			wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: scope.base, Body: map[string]any{"name": "h", "payloadUrl": rcv.URL}}, nil), 409)
			do("DELETE", scope.base+"/h", nil)
			wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: scope.base + "/h"}, nil), 404)
		})
	}
}
