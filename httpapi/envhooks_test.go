package httpapi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// TestEnvWebhooks: environment webhooks at Pulumi's ESC paths. An environment webhook with a
// secret receives a signed environment_revision_created after a PATCH of the definition;
// an organization webhook filtering environment_created receives that (and nothing else);
// a member with write (not admin) on the environment cannot manage its webhooks; the
// secret is never echoed; the webhooks go with the environment.
func TestEnvWebhooks(t *testing.T) {
	rcvEnv, rcvOrg := newReceiver(t), newReceiver(t)
	e := hookEnv(t, "", "", rcvEnv, rcvOrg)
	admin := e.esc(e.admin.Token)
	const secret = "env-hook-secret-4b7d1e"
	noSecret := func(what string, b []byte) {
		t.Helper()
		if strings.Contains(string(b), secret) {
			t.Errorf("%s shows the secret: %s", what, b)
		}
	}

	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{
		"name": "esc", "payloadUrl": rcvOrg.URL, "filters": []string{"environment_created"}}}, nil))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	base := escBase + "/acme/app/dev/hooks"

	// Creation: the organization-only filter and a body naming another environment are refused.
	admin.want(400, "POST", base, []byte(`{"name":"x","payloadUrl":"`+rcvEnv.URL+`","filters":["environment_created"]}`))
	admin.want(400, "POST", base, []byte(`{"name":"x","payloadUrl":"`+rcvEnv.URL+`","envName":"prod"}`))
	r := admin.want(201, "POST", base, []byte(`{"organizationName":"acme","projectName":"app","envName":"dev","name":"ci","payloadUrl":"`+rcvEnv.URL+`/hook","secret":"`+secret+`","active":true,"filters":["environment_revision_created"]}`))
	noSecret("create", r.body)
	// Pulumi's extract has no environment webhook operations; its schemas are the same.
	sp := loadWebhookSpec(t)
	sp.checkSchema(t, "WebhookResponse", r.body)
	var created map[string]any
	r.json(t, &created)
	if created["envName"] != "dev" || created["projectName"] != "app" || created["hasSecret"] != true || created["name"] != "ci" {
		t.Fatalf("create answered %s", r.body)
	}
	for _, p := range []string{base, base + "/ci"} {
		noSecret("GET "+p, admin.want(200, "GET", p, nil).body)
	}

	// A member with write on the environment (not admin) may not.
	member := e.esc(e.newPerson("member", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "write"}}, nil))
	member.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values: {a: 0}\n"))
	member.want(403, "POST", base, []byte(`{"name":"m","payloadUrl":"`+rcvEnv.URL+`"}`))
	member.want(403, "GET", base, nil)
	member.want(403, "DELETE", base+"/ci", nil)

	// A new revision: one signed delivery (the member's revision above is one too).
	rev := admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values: {a: 1}\n")).revision(t)
	waitFor(t, e, "two revision deliveries", func() bool { return len(rcvEnv.requests()) >= 2 })
	waitFor(t, e, "the environment_created delivery", func() bool { return len(rcvOrg.requests()) >= 1 })
	time.Sleep(100 * time.Millisecond)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	reqs := rcvEnv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries to the environment webhook, want 2", len(reqs))
	}
	last := reqs[1]
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(last.body)
	if got := last.header.Get("Pulumi-Webhook-Signature"); got != hex.EncodeToString(mac.Sum(nil)) {
		t.Errorf("signature %q", got)
	}
	if k := last.header.Get("Pulumi-Webhook-Kind"); k != "environment_revision" {
		t.Errorf("kind %q", k)
	}
	var p struct {
		User            struct{ Name string }
		Organization    struct{ Name string }
		ProjectName     string
		EnvironmentName string
		Action          string
		Revision        int
	}
	if err := json.Unmarshal(last.body, &p); err != nil || p.ProjectName != "app" || p.EnvironmentName != "dev" || p.Action != "created" ||
		p.Revision != rev || p.User.Name != "alice" || p.Organization.Name != "acme" {
		t.Errorf("payload %s (%v), want revision %d", last.body, err, rev)
	}

	// The organization webhook: environment_created only.
	if reqs := rcvOrg.requests(); len(reqs) != 1 || reqs[0].header.Get("Pulumi-Webhook-Kind") != "environment" ||
		!strings.Contains(string(reqs[0].body), `"environmentName":"dev"`) || !strings.Contains(string(reqs[0].body), `"action":"created"`) {
		t.Errorf("organization webhook got %d requests: %v", len(reqs), reqs)
	}

	// Ping, update, deliveries, redelivery.
	r = admin.want(200, "POST", base+"/ci/ping", nil)
	noSecret("ping", r.body)
	sp.checkSchema(t, "WebhookDelivery", r.body)
	waitFor(t, e, "the ping", func() bool { return len(rcvEnv.requests()) >= 3 })
	r = admin.want(200, "PATCH", base+"/ci", []byte(`{"payloadUrl":"`+rcvEnv.URL+`/other","active":true,"filters":["environment_revision_created","environment_revision_tag_created"]}`))
	noSecret("patch", r.body)
	var patched map[string]any
	r.json(t, &patched)
	if patched["hasSecret"] != true || patched["payloadUrl"] != rcvEnv.URL+"/other" {
		t.Errorf("patch answered %s", r.body)
	}
	var ds []hookDelivery
	r = admin.want(200, "GET", base+"/ci/deliveries", nil)
	noSecret("deliveries", r.body)
	r.json(t, &ds)
	if len(ds) != 3 {
		t.Fatalf("%d deliveries logged, want 3: %s", len(ds), r.body)
	}
	var dsRaw []json.RawMessage
	r.json(t, &dsRaw)
	for _, d := range dsRaw {
		sp.checkSchema(t, "WebhookDelivery", d)
	}
	admin.want(200, "POST", base+"/ci/deliveries/"+ds[0].ID+"/redeliver", nil)
	admin.want(200, "POST", escBase+"/acme/app/dev/versions/tags", []byte(`{"name":"stable","revision":`+itoa(rev)+`}`))
	waitFor(t, e, "the redelivery and the tag event", func() bool { return len(rcvEnv.requests()) >= 5 })
	var sawTag bool
	for _, q := range rcvEnv.requests()[3:] {
		if q.header.Get("Pulumi-Webhook-Kind") == "environment_revision_tag" && strings.Contains(string(q.body), `"tagName":"stable"`) {
			sawTag = true
		}
	}
	if !sawTag {
		t.Error("no environment_revision_tag_created delivery")
	}

	// Audited as env:webhooks, the secret nowhere.
	evs, err := listAudit(e)
	e.must(err)
	var n, denied int
	for _, ev := range evs {
		if ev.Action == "env:webhooks" && ev.Outcome == gatehouse.OutcomeSuccess && ev.Details["webhook"] == "ci" {
			n++
		}
		if ev.Action == "env:webhooks" && ev.Outcome != gatehouse.OutcomeSuccess {
			denied++
		}
	}
	if n < 4 || denied < 1 {
		t.Errorf("audit: %d env:webhooks events for ci (want create, ping, patch, redeliver), %d denials", n, denied)
	}
	b, _ := json.Marshal(evs)
	noSecret("the audit log", b)

	// Deleting the environment deletes its webhooks (a new one of the name has none).
	id := e.envID("app", "dev")
	admin.want(200, "DELETE", escBase+"/acme/app/dev", nil)
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		if _, err := tx.GetWebhook(1, webhook.EnvScope(id), "ci"); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			t.Errorf("the deleted environment's webhook: %v", err)
		}
		return nil
	}))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	var hooks []map[string]any
	admin.want(200, "GET", base, nil).json(t, &hooks)
	if len(hooks) != 0 {
		t.Errorf("a new environment of the name has webhooks %v", hooks)
	}
}
