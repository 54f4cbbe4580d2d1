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
// started holds a lease token of its own, which the run's code can keep. It does not live
// on past the run: its lease is never renewed once the run has ended. When the runner
// finishes the run, the update ends with it at once: no checkpoint is taken and the
// stack's lock is free. When the run's lease runs out instead (its heartbeats stalled: the
// runner may be cut off for a while, or overloaded, while `pulumi up` still runs), the
// update is not failed (found in review: failing it refused its next checkpoints, so
// resources created after them were missing from the state): it keeps taking checkpoints
// until its own lease lapses, and then the stack can be updated again.
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
			// The runner stopped reporting: past the run's lease (60s), not the update's (5m).
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
		evs, err := listAudit(d.env)
		d.must(err)
		recorded := false
		for _, ev := range evs {
			recorded = recorded || ev.Action == "deployment:end" && ev.Details["deployment"] == job.ID && ev.Details["updateEnded"] == r.ID
		}
		switch end {
		case "finished":
			if err := r.checkpoint(deployment(2, "")); err == nil {
				t.Errorf("%s run: its update took a checkpoint after the run ended", end)
			}
			if s := state(r.ID); !s.Finished() {
				t.Errorf("%s run: its update is %s after the run ended, want ended", end, s)
			}
			if !recorded {
				t.Errorf("%s run: deployment:end does not name the update it ended", end)
			}
		case "expired":
			// The update goes on under its own lease: its checkpoints are taken, and it
			// holds the stack's lock...
			if err := r.checkpoint(deployment(2, "")); err != nil {
				t.Errorf("%s run: its update's checkpoint was refused within the update's lease: %v", end, err)
			}
			if s := state(r.ID); s != gatehouse.StatusRunning {
				t.Errorf("%s run: its update is %s after the run's lease ran out, want running", end, s)
			}
			if recorded {
				t.Errorf("%s run: deployment:end says it ended the update", end)
			}
			var st apitype.Stack
			d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod}, &st))
			if st.ActiveUpdate != r.ID {
				t.Errorf("%s run: the stack's active update is %q, want %s", end, st.ActiveUpdate, r.ID)
			}
			// ...until that lease (renewed for 300s, 90s ago, and not since) lapses.
			d.clock.Advance(211 * time.Second)
			if err := r.checkpoint(deployment(3, "")); err == nil {
				t.Errorf("%s run: its update took a checkpoint after its own lease lapsed", end)
			}
		}
		// The stack's lock is free for the next run's update.
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
		if end == "expired" {
			if s := state(r.ID); !s.Finished() {
				t.Errorf("%s run: its update is %s after the next update took the stack over, want ended", end, s)
			}
		}
	}
}
