package httpapi_test

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestDeploySweepDeadRunner: a runner leases a pull request's run and vanishes. With
// nobody asking for work or reading the run, the server's sweep fails it shortly after its
// lease ran out: its credential ends (it still had its margin), deployment:end is audited
// once, deployment_failed is delivered once, the commit status and the pull request
// comment say failed, and the stack's next queued run is leasable.
func TestDeploySweepDeadRunner(t *testing.T) {
	gh := newFakeVCS(t)
	fails := newReceiver(t)
	allowed := fails.addrPort(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Webhooks.Permit = func(ap netip.AddrPort) bool { return ap == allowed }
		c.Webhooks.Poll = 20 * time.Millisecond
		c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token")
		commentTweak(c)
		c.Deploy.SweepInterval = 20 * time.Millisecond
	})
	d.must(d.settings([]byte(gitSettings)))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "fails", "payloadUrl": fails.URL, "filters": []string{"deployment_failed"}}}, nil))
	body := []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	d.must(cliwire.New(d.url, "").Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"pull_request"}, "X-GitHub-Delivery": {"d-1"}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
	job := d.lease()
	if job == nil {
		t.Fatal("nothing leased")
	}
	next, err := d.trigger(d.admin, "update")
	d.must(err)
	cred := cliwire.New(d.url, job.Credential)
	d.must(cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))

	// The runner is gone. Past its lease (60s), within its credential's margin (2m).
	d.clock.Advance(90 * time.Second)
	status := func(id string) string {
		var dep *gatehouse.Deployment
		d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { dep, err = tx.GetDeployment(id); return err }))
		return dep.Status
	}
	start := time.Now()
	for status(job.ID) != gatehouse.DeployFailed {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("the dead runner's run is %s after 5s", status(job.ID))
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("swept %v after the clock passed the lease", time.Since(start).Round(time.Millisecond))
	time.Sleep(150 * time.Millisecond) // more sweeps: nothing more happens
	wantStatus(t, cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil), 401)
	evs, err := listAudit(d.env)
	d.must(err)
	ends := 0
	for _, ev := range evs {
		if ev.Action == "deployment:end" && ev.Details["deployment"] == job.ID {
			ends++
			if ev.ActorKind != "system" || ev.Details["status"] != "failed" {
				t.Errorf("deployment:end = %+v", ev)
			}
		}
	}
	if ends != 1 {
		t.Errorf("%d deployment:end events, want 1", ends)
	}
	gh.wait(t, `POST /repos/acme/infra/statuses/def456 {"context":"gatehouse/acme/proj/prod","description":"pulumi preview: failed","state":"failure"}`)
	posts := gh.waitCalls(t, "POST /repos/acme/infra/issues/7/comments ", 1)
	if c, _ := commentCall(t, posts[0]); !strings.Contains(c, "`pulumi preview` of `acme/proj/prod` failed") {
		t.Errorf("comment = %q", c)
	}
	waitFor(t, d.env, "deployment_failed", func() bool { return len(fails.requests()) >= 1 })
	time.Sleep(100 * time.Millisecond)
	_, _ = d.srv.API.DeliverWebhooks(context.Background())
	if got := deployHooks(t, fails); len(fails.requests()) != 1 || got[job.ID+"/failed"].kind != "deployment" {
		t.Errorf("deployment_failed deliveries: %v", got)
	}
	if n := len(gh.calls("POST /repos/acme/infra/issues/7/comments")); n != 1 {
		t.Errorf("%d comments, want 1", n)
	}
	// The stack's next run is leasable.
	if j := d.lease(); j == nil || j.ID != next["id"] {
		t.Errorf("next lease = %+v, want %v", j, next["id"])
	}
}
