package httpapi_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestWebhookImportedEnvironmentChanged: a new revision of app/base sends
// imported_environment_changed to the webhooks of the environments whose latest revision
// imports it unpinned (a string entry, one spelled with a YAML escape, and a map entry with
// a single key), not to one that pins a revision, with Pulumi's affectedRevisions and
// importedEnvironmentReference.
func TestWebhookImportedEnvironmentChanged(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	admin := e.esc(e.admin.Token)
	for _, n := range []string{"base", "web", "mapform", "pinned", "escaped"} {
		admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"`+n+`"}`))
	}
	admin.want(200, "PATCH", escBase+"/acme/app/base", []byte("values: {a: 1}\n"))
	defs := map[string]string{
		"web":     "imports:\n  - app/base\nvalues: {b: 1}\n",
		"mapform": "imports:\n  - app/base:\n      merge: true\nvalues: {b: 2}\n",
		"pinned":  "imports:\n  - app/base@2\nvalues: {b: 3}\n",
		// A YAML escape spells the name (the stored definition, re-encoded, spells it out).
		"escaped": "imports:\n  - \"app/b\\x61se\"\nvalues: {b: 4}\n",
	}
	latest := map[string]int{}
	for n, d := range defs {
		latest[n] = admin.want(200, "PATCH", escBase+"/acme/app/"+n, []byte(d)).revision(t)
		admin.want(201, "POST", escBase+"/acme/app/"+n+"/hooks", []byte(`{"name":"imp","payloadUrl":"`+rcv.URL+`","filters":["imported_environment_changed"]}`))
	}
	rev := admin.want(200, "PATCH", escBase+"/acme/app/base", []byte("values: {a: 2}\n")).revision(t)
	waitFor(t, e, "three deliveries", func() bool { return len(rcv.requests()) >= 3 })
	time.Sleep(100 * time.Millisecond)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	reqs := rcv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d deliveries, want 3 (web, mapform and escaped)", len(reqs))
	}
	got := map[string]bool{}
	for _, q := range reqs {
		var p struct {
			ProjectName, EnvironmentName string
			AffectedRevisions            []int
			ImportedEnvironmentReference struct {
				ProjectName, EnvironmentName string
				Revision                     int
			}
		}
		e.must(json.Unmarshal(q.body, &p))
		ref := p.ImportedEnvironmentReference
		if q.header.Get("Pulumi-Webhook-Kind") != "imported_environment_changed" || p.ProjectName != "app" || len(p.AffectedRevisions) != 1 ||
			p.AffectedRevisions[0] != latest[p.EnvironmentName] || ref.ProjectName != "app" || ref.EnvironmentName != "base" || ref.Revision != rev {
			t.Errorf("delivery %s %s", q.header, q.body)
		}
		got[p.EnvironmentName] = true
	}
	if !got["web"] || !got["mapform"] || !got["escaped"] {
		t.Errorf("deliveries for %v, want web, mapform and escaped", got)
	}
}

// TestWebhookLegacyEnvPaths: Pulumi's legacy /api/preview/environments/{org}/{env}/hooks
// paths are the default project's environment webhooks.
func TestWebhookLegacyEnvPaths(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	admin := e.esc(e.admin.Token)
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"default","name":"old"}`))
	legacy := "/api/preview/environments/acme/old/hooks"
	admin.want(201, "POST", legacy, []byte(`{"name":"l","payloadUrl":"`+rcv.URL+`","filters":["environment_revision_created"]}`))
	var hooks []map[string]any
	admin.want(200, "GET", escBase+"/acme/default/old/hooks", nil).json(t, &hooks)
	if len(hooks) != 1 || hooks[0]["name"] != "l" || hooks[0]["projectName"] != "default" || hooks[0]["envName"] != "old" {
		t.Fatalf("the ESC path lists %v", hooks)
	}
	admin.want(200, "GET", legacy, nil).json(t, &hooks)
	if len(hooks) != 1 {
		t.Fatalf("the legacy path lists %v", hooks)
	}
	admin.want(200, "GET", legacy+"/l", nil)
	admin.want(200, "POST", legacy+"/l/ping", nil)
	waitFor(t, e, "the ping", func() bool { return len(rcv.requests()) >= 1 })
	admin.want(200, "GET", legacy+"/l/deliveries", nil)
	admin.want(404, "GET", "/api/preview/environments/acme/nope/hooks", nil)
	admin.want(200, "DELETE", legacy+"/l", nil)
	admin.want(404, "GET", escBase+"/acme/default/old/hooks/l", nil)
}
