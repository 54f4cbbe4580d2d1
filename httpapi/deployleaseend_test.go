package httpapi_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestRunEndEndsItsUpdate (found in review): the update a deployment run's credential
// started holds a lease token of its own, which the run's code can keep. When the run
// ends (the runner finishes it, or its lease runs out), the update ends with it: its lease
// is not renewed, no checkpoint is taken, and the stack's lock is free; it does not live on
// past the credential.
func TestRunEndEndsItsUpdate(t *testing.T) {
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.SweepInterval = 20 * time.Millisecond })
	d.must(d.settings([]byte(gitSettings)))
	state := func(id string) gatehouse.UpdateStatus {
		var u *gatehouse.Update
		d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { u, err = tx.GetUpdate(id); return err }))
		return u.Status
	}
	for _, end := range []string{"finished", "expired"} {
		if _, err := d.trigger(d.dev, "update"); err != nil {
			t.Fatal(err)
		}
		job := d.lease()
		if job == nil {
			t.Fatal("no run")
		}
		cred := cliwire.New(d.url, job.Credential)
		// A preview first (the run records the update it created last: the update below).
		p, err := d.startRun(cred, d.prod, "update", true)
		d.must(err)
		r, err := d.startRun(cred, d.prod, "update", false)
		d.must(err)
		d.must(r.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, nil))
		switch end {
		case "finished":
			// The runner reports the run's end while the update it started is unfinished
			// (its program left a process behind, or the CLI was killed).
			d.must(d.complete(job, "failed"))
		case "expired":
			// The runner is gone: past the run's lease (60s), not the update's (5m).
			d.clock.Advance(90 * time.Second)
			start := time.Now()
			for {
				var dep *gatehouse.Deployment
				d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { dep, err = tx.GetDeployment(job.ID); return err }))
				if dep.Status == gatehouse.DeployFailed {
					break
				}
				if time.Since(start) > 5*time.Second {
					t.Fatalf("the run is %s 5s after its lease ran out", dep.Status)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
		if err := r.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, nil); err == nil {
			t.Errorf("%s run: its update's lease was renewed after the run ended", end)
		} else {
			wantStatus(t, err, http.StatusForbidden)
		}
		if err := p.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, nil); err == nil {
			t.Errorf("%s run: its preview's lease was renewed after the run ended", end)
		} else {
			wantStatus(t, err, http.StatusForbidden)
		}
		if err := r.checkpoint(deployment(2, "")); err == nil {
			t.Errorf("%s run: its update took a checkpoint after the run ended", end)
		}
		if s := state(r.ID); !s.Finished() {
			t.Errorf("%s run: its update is %s after the run ended, want ended", end, s)
		}
		evs, err := listAudit(d.env)
		d.must(err)
		recorded := false
		for _, ev := range evs {
			recorded = recorded || ev.Action == "deployment:end" && ev.Details["deployment"] == job.ID && ev.Details["updateEnded"] == r.ID
		}
		if !recorded {
			t.Errorf("%s run: deployment:end does not name the update it ended", end)
		}
		// The stack's lock is free for the next run's update at once.
		if _, err := d.trigger(d.dev, "update"); err != nil {
			t.Fatal(err)
		}
		nj := d.lease()
		if nj == nil {
			t.Fatal("no next run")
		}
		next, err := d.startRun(cliwire.New(d.url, nj.Credential), d.prod, "update", false)
		if err != nil {
			t.Fatalf("%s run: the next run's update: %v", end, err)
		}
		d.must(next.complete("succeeded"))
		d.must(d.complete(nj, "succeeded"))
	}
}
