package httpapi_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

type deployHook struct {
	kind          string
	User          struct{ Name string }
	Organization  struct{ Name string }
	ProjectName   string
	StackName     string
	DeploymentID  string
	DeploymentURL string
	Version       int
	Operation     string
	Status        string
}

// deployHooks decodes the deliveries rcv got, keyed by payload status.
func deployHooks(t *testing.T, rcv *receiver) map[string]deployHook {
	t.Helper()
	out := map[string]deployHook{}
	for _, q := range rcv.requests() {
		var p deployHook
		if err := json.Unmarshal(q.body, &p); err != nil {
			t.Fatal(err)
		}
		p.kind = q.header.Get("Pulumi-Webhook-Kind")
		if _, dup := out[p.DeploymentID+"/"+p.Status]; dup {
			t.Errorf("delivered twice: %s", q.body)
		}
		out[p.DeploymentID+"/"+p.Status] = p
	}
	return out
}

// TestWebhookDeploymentEvents: a Deployments run sends deployment_queued (triggered),
// deployment_started (leased by a runner) and deployment_succeeded or deployment_failed
// (completed; a queued run cancelled, or one whose runner stopped reporting, fails), kind deployment, to the stack's webhook of
// group deployments; an organization webhook filtering deployment_failed gets the failures
// alone.
func TestWebhookDeploymentEvents(t *testing.T) {
	rcv, fails := newReceiver(t), newReceiver(t)
	allowed := map[netip.AddrPort]bool{rcv.addrPort(t): true, fails.addrPort(t): true}
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Webhooks.Permit = func(ap netip.AddrPort) bool { return allowed[ap] }
		c.Webhooks.Poll = 20 * time.Millisecond
		c.Webhooks.Timeout = 2 * time.Second
		c.Deploy.ConsoleURL = "https://gatehouse.example.com"
	})
	d.must(d.settings([]byte(gitSettings)))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/hooks", Body: map[string]any{"name": "runs", "payloadUrl": rcv.URL, "groups": []string{"deployments"}}}, nil))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "fails", "payloadUrl": fails.URL, "filters": []string{"deployment_failed"}}}, nil))

	// A run that succeeds.
	c1, err := d.trigger(d.admin, "update")
	d.must(err)
	id1, _ := c1["id"].(string)
	job := d.lease()
	if job == nil || job.ID != id1 {
		t.Fatalf("lease = %+v", job)
	}
	d.must(d.complete(job, "succeeded"))
	_ = d.complete(job, "succeeded") // a retried complete sends nothing more
	waitFor(t, d.env, "queued, started, succeeded", func() bool { return len(rcv.requests()) >= 3 })
	got := deployHooks(t, rcv)
	for _, status := range []string{"not-started", "running", "succeeded"} {
		p, ok := got[id1+"/"+status]
		if !ok || p.kind != "deployment" || p.Operation != "update" || p.Version != 1 || p.ProjectName != "proj" || p.StackName != "prod" ||
			p.Organization.Name != "acme" || p.User.Name == "" || p.DeploymentURL != "https://gatehouse.example.com/api/stacks/acme/proj/prod/deployments/"+id1 {
			t.Errorf("%s: %+v (got %v)", status, p, got)
		}
	}

	// A run that fails, and a queued one cancelled.
	c2, err := d.trigger(d.admin, "preview")
	d.must(err)
	id2, _ := c2["id"].(string)
	job = d.lease()
	if job == nil || job.ID != id2 {
		t.Fatalf("lease = %+v", job)
	}
	d.must(d.complete(job, "failed"))
	c3, err := d.trigger(d.admin, "update")
	d.must(err)
	id3, _ := c3["id"].(string)
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/" + id3 + "/cancel"}, nil))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/" + id3 + "/cancel"}, nil))
	// A run whose runner stops reporting fails when its lease runs out.
	c4, err := d.trigger(d.admin, "refresh")
	d.must(err)
	id4, _ := c4["id"].(string)
	if job = d.lease(); job == nil || job.ID != id4 {
		t.Fatalf("lease = %+v", job)
	}
	// Every delivery so far done (its claim ended) before the clock jumps past the
	// dispatcher's claims: a claim that runs out is delivered again (at least once).
	waitFor(t, d.env, "ten deliveries recorded", func() bool {
		n := 0
		for _, dl := range d.deliveries(t, d.prod+"/hooks", "runs") {
			if dl.Status == "delivered" {
				n++
			}
		}
		return n == 10
	})
	waitFor(t, d.env, "two failures recorded", func() bool {
		n := 0
		for _, dl := range d.deliveries(t, "/api/orgs/acme/hooks", "fails") {
			if dl.Status == "delivered" {
				n++
			}
		}
		return n == 2
	})
	d.clock.Advance(3 * time.Minute)
	if st := d.get(id4)["status"]; st != "failed" {
		t.Fatalf("the lost run's status = %v", st)
	}
	waitFor(t, d.env, "the failures", func() bool { return len(rcv.requests()) >= 11 && len(fails.requests()) >= 3 })
	time.Sleep(100 * time.Millisecond)
	_, _ = d.srv.API.DeliverWebhooks(context.Background())
	if n := len(rcv.requests()); n != 11 {
		t.Errorf("stack webhook got %d deliveries, want 11", n)
	}
	got = deployHooks(t, rcv)
	if p := got[id2+"/failed"]; p.kind != "deployment" || p.Operation != "preview" || p.Version != 2 {
		t.Errorf("failed run: %+v", p)
	}
	if _, ok := got[id2+"/running"]; !ok {
		t.Errorf("no deployment_started for the failed run: %v", got)
	}
	if p := got[id3+"/failed"]; p.kind != "deployment" || p.Version != 3 {
		t.Errorf("cancelled run: %+v", p)
	}
	if p := got[id4+"/failed"]; p.kind != "deployment" || p.Version != 4 || p.Operation != "refresh" {
		t.Errorf("lost run: %+v", p)
	}
	fs := deployHooks(t, fails)
	if len(fails.requests()) != 3 || fs[id2+"/failed"].kind != "deployment" || fs[id3+"/failed"].kind != "deployment" || fs[id4+"/failed"].kind != "deployment" {
		t.Errorf("organization webhook filtering deployment_failed got %v", fs)
	}
}
