package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func (e *env) queueDeployment(orgID, stackID int64, pool string) *gatehouse.Deployment {
	e.t.Helper()
	d := &gatehouse.Deployment{OrgID: orgID, StackID: stackID, Operation: "update", Request: []byte(`{}`), Initiator: "test", RequestedBy: "tester", PoolID: pool}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateDeployment(d) })
	return d
}

func (e *env) lease(orgID int64, pool string, until time.Duration) (*gatehouse.Deployment, string, error) {
	lease := randID()
	var d *gatehouse.Deployment
	err := e.try(func(tx gatehouse.Tx) (err error) {
		d, err = tx.LeaseDeployment(orgID, pool, "runner", lease, tx.Now().Add(until), randDigest(), tx.Now().Add(until+time.Minute))
		return err
	})
	return d, lease, err
}

func testDeployments(t *testing.T, e *env) {
	acme := e.org("acme")
	prod := e.stack(acme.ID, "p", "prod", nil)
	dev := e.stack(acme.ID, "p", "dev", nil)

	// Settings.
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetDeploySettings(prod.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "settings before any")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeploySettings(&gatehouse.DeploySettings{StackID: prod.ID, OrgID: acme.ID, Repo: "github:acme/infra", Settings: []byte(`{"a":1}`)})
	})
	editor := gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: "tok-editor"}
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeploySettings(&gatehouse.DeploySettings{StackID: prod.ID, OrgID: acme.ID, Repo: "github:acme/infra", Settings: []byte(`{"a":2}`), ModifiedBy: editor})
	})
	e.view(func(tx gatehouse.Tx) error {
		ds, err := tx.GetDeploySettings(prod.ID)
		if err != nil || string(ds.Settings) != `{"a":2}` || ds.Paused || ds.ModifiedBy != editor {
			t.Errorf("GetDeploySettings = %+v, %v", ds, err)
		}
		list, err := tx.ListDeploySettingsByRepo("github:acme/infra")
		if err != nil || len(list) != 1 || list[0].StackID != prod.ID || list[0].ModifiedBy != editor {
			t.Errorf("ListDeploySettingsByRepo = %+v, %v", list, err)
		}
		return nil
	})
	// Pausing keeps the last editor; a later Put records its own.
	e.update(func(tx gatehouse.Tx) error { return tx.SetDeployPaused(prod.ID, acme.ID, false) })
	e.view(func(tx gatehouse.Tx) error {
		if ds, err := tx.GetDeploySettings(prod.ID); err != nil || ds.ModifiedBy != editor {
			t.Errorf("after SetDeployPaused: %+v, %v", ds, err)
		}
		return nil
	})

	// The principal a deployment acts for and its settings' editor are stored with it and
	// read back everywhere.
	{
		who := gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: "42"}
		editor := gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: "tok-7"}
		stage := e.stack(acme.ID, "p", "stage", nil)
		d := &gatehouse.Deployment{OrgID: acme.ID, StackID: stage.ID, Operation: "preview", Request: []byte(`{}`), Initiator: "api", RequestedBy: "alice", ActsFor: who, Editor: editor}
		e.update(func(tx gatehouse.Tx) error { return tx.CreateDeployment(d) })
		e.view(func(tx gatehouse.Tx) error {
			got, err := tx.GetDeployment(d.ID)
			if err != nil || got.ActsFor != who || got.Editor != editor {
				t.Errorf("GetDeployment ActsFor, Editor = %+v, %v; want %v, %v", got, err, who, editor)
			}
			list, _, err := tx.ListDeployments(stage.ID, 1, 10, false)
			if err != nil || len(list) != 1 || list[0].ActsFor != who || list[0].Editor != editor {
				t.Errorf("ListDeployments ActsFor = %+v, %v", list, err)
			}
			return nil
		})
		e.update(func(tx gatehouse.Tx) error {
			f, err := tx.FinishDeployment(d.ID, "", gatehouse.DeployFailed, "test")
			if err != nil || f.ActsFor != who || f.Editor != editor {
				t.Errorf("FinishDeployment = %+v, %v", f, err)
			}
			return err
		})
	}

	// Versions per stack; the queue: one run per stack at a time, oldest first, and a
	// paused stack's runs wait.
	d1 := e.queueDeployment(acme.ID, prod.ID, "")
	d2 := e.queueDeployment(acme.ID, prod.ID, "")
	d3 := e.queueDeployment(acme.ID, dev.ID, "pool-b")
	if d1.Version != 1 || d2.Version != 2 || d3.Version != 1 || d1.Status != gatehouse.DeployNotStarted {
		t.Fatalf("versions %d %d %d, status %s", d1.Version, d2.Version, d3.Version, d1.Status)
	}
	e.update(func(tx gatehouse.Tx) error { return tx.SetDeployPaused(dev.ID, acme.ID, true) })
	got, lease1, err := e.lease(acme.ID, "pool-b", time.Hour)
	if err != nil || got.ID != d1.ID || got.Status != gatehouse.DeployRunning || got.Lease != lease1 {
		t.Fatalf("first lease = %+v, %v; want %s", got, err, d1.ID)
	}
	if _, _, err := e.lease(acme.ID, "pool-b", time.Hour); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		t.Fatalf("second lease while prod runs and dev is paused: %v, want ENOTFOUND", err)
	}
	e.update(func(tx gatehouse.Tx) error { return tx.SetDeployPaused(dev.ID, acme.ID, false) })
	if _, _, err := e.lease(acme.ID, "pool-a", time.Hour); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		t.Errorf("pool-a leased dev's run of pool-b: %v", err)
	}
	got3, lease3, err := e.lease(acme.ID, "pool-b", time.Hour)
	if err != nil || got3.ID != d3.ID {
		t.Fatalf("lease of dev = %+v, %v", got3, err)
	}

	// Heartbeats renew; a wrong lease is EGONE; the credential is found by its digest.
	e.update(func(tx gatehouse.Tx) error {
		d, err := tx.RenewDeploymentLease(d1.ID, lease1, tx.Now().Add(2*time.Hour), tx.Now().Add(3*time.Hour))
		if err != nil || d.Cancel {
			t.Errorf("renew = %+v, %v", d, err)
		}
		_, err = tx.RenewDeploymentLease(d1.ID, "not-the-lease", tx.Now().Add(time.Hour), tx.Now())
		wantCode(t, err, gatehouse.EGONE, "renew with another lease")
		byCred, err := tx.GetDeploymentByCred(d.CredDigest)
		if err != nil || byCred.ID != d1.ID {
			t.Errorf("GetDeploymentByCred = %v, %v", byCred, err)
		}
		return nil
	})

	// Logs.
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendDeployLogs(d1.ID, []gatehouse.DeployLogLine{{Header: "Get source"}, {Line: "one\n"}, {Line: "two\n"}})
	})
	e.view(func(tx gatehouse.Tx) error {
		ls, err := tx.ListDeployLogs(d1.ID, 1, 10)
		if err != nil || len(ls) != 2 || ls[0].Seq != 2 || ls[1].Line != "two\n" {
			t.Errorf("ListDeployLogs = %+v, %v", ls, err)
		}
		return nil
	})

	// Cancel: a running one keeps running until its runner stops it; a queued one ends.
	e.update(func(tx gatehouse.Tx) error {
		d, err := tx.RequestDeploymentCancel(d2.ID)
		if err != nil || d.Status != gatehouse.DeployFailed || !d.Cancel {
			t.Errorf("cancel queued = %+v, %v", d, err)
		}
		d, err = tx.RequestDeploymentCancel(d1.ID)
		if err != nil || d.Status != gatehouse.DeployRunning || !d.Cancel || d.CredUntil.After(tx.Now()) {
			t.Errorf("cancel running = %+v, %v", d, err)
		}
		return nil
	})

	// Finish: only with the lease; then the stack is free.
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.FinishDeployment(d1.ID, "not-the-lease", gatehouse.DeploySucceeded, "")
		wantCode(t, err, gatehouse.EGONE, "finish with another lease")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		d, err := tx.FinishDeployment(d1.ID, lease1, gatehouse.DeployFailed, "cancelled")
		if err != nil || d.Status != gatehouse.DeployFailed || d.Lease != "" || d.Ended.IsZero() {
			t.Errorf("finish = %+v, %v", d, err)
		}
		_, err = tx.FinishDeployment(d1.ID, lease1, gatehouse.DeploySucceeded, "")
		wantCode(t, err, gatehouse.EGONE, "finish twice")
		return nil
	})

	// A runner that stops beating loses its run, which fails; the stack is free again.
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.RenewDeploymentLease(d3.ID, lease3, tx.Now().Add(-time.Second), tx.Now())
		return err
	})
	e.update(func(tx gatehouse.Tx) error {
		// The lease ran out a second ago: expired, the renewal is refused.
		ended, err := tx.ExpireDeploymentLeases()
		if err != nil || len(ended) != 1 || ended[0].ID != d3.ID || ended[0].Status != gatehouse.DeployFailed {
			t.Errorf("ExpireDeploymentLeases = %+v, %v", ended, err)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.RenewDeploymentLease(d3.ID, lease3, tx.Now().Add(time.Hour), tx.Now())
		wantCode(t, err, gatehouse.EGONE, "renew after expiry")
		return nil
	})
	d4 := e.queueDeployment(acme.ID, dev.ID, "")
	if got, _, err := e.lease(acme.ID, "any", time.Hour); err != nil || got.ID != d4.ID {
		t.Errorf("lease after expiry = %+v, %v", got, err)
	}

	e.view(func(tx gatehouse.Tx) error {
		list, total, err := tx.ListDeployments(prod.ID, 1, 10, false)
		if err != nil || total != 2 || len(list) != 2 || list[0].Version != 2 {
			t.Errorf("ListDeployments = %d %+v, %v", total, list, err)
		}
		return nil
	})

	// The comment a stack's runs for one pull request report to: none, recorded,
	// replaced; per stack and per pull request.
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetDeployComment(prod.ID, "github:acme/infra#7")
		wantCode(t, err, gatehouse.ENOTFOUND, "comment before any")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeployComment(prod.ID, acme.ID, "github:acme/infra#7", "101")
	})
	e.update(func(tx gatehouse.Tx) error { return tx.PutDeployComment(dev.ID, acme.ID, "github:acme/infra#7", "202") })
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeployComment(prod.ID, acme.ID, "github:acme/infra#7", "103")
	})
	e.view(func(tx gatehouse.Tx) error {
		if id, err := tx.GetDeployComment(prod.ID, "github:acme/infra#7"); err != nil || id != "103" {
			t.Errorf("GetDeployComment(prod) = %q, %v; want 103", id, err)
		}
		if id, err := tx.GetDeployComment(dev.ID, "github:acme/infra#7"); err != nil || id != "202" {
			t.Errorf("GetDeployComment(dev) = %q, %v; want 202", id, err)
		}
		_, err := tx.GetDeployComment(prod.ID, "github:acme/infra#8")
		wantCode(t, err, gatehouse.ENOTFOUND, "comment of another pull request")
		return nil
	})

	// Pools.
	p := &gatehouse.DeployPool{OrgID: acme.ID, Name: "default", Digest: randDigest()}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateDeployPool(p) })
	wantCode(t, e.try(func(tx gatehouse.Tx) error {
		return tx.CreateDeployPool(&gatehouse.DeployPool{OrgID: acme.ID, Name: "default", Digest: randDigest()})
	}), gatehouse.ECONFLICT, "second pool of a name")
	e.update(func(tx gatehouse.Tx) error {
		got, err := tx.GetDeployPoolByDigest(p.Digest)
		if err != nil || got.ID != p.ID {
			t.Errorf("GetDeployPoolByDigest = %+v, %v", got, err)
		}
		return tx.RevokeDeployPool(acme.ID, p.ID)
	})
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetDeployPoolByDigest(p.Digest)
		if err != nil || got.Revoked.IsZero() {
			t.Errorf("revoked pool = %+v, %v", got, err)
		}
		return nil
	})

	// The stack's deployments go with it.
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(prod.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetDeployment(d1.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "deployment of a deleted stack")
		_, err = tx.GetDeploySettings(prod.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "settings of a deleted stack")
		_, err = tx.GetDeployComment(prod.ID, "github:acme/infra#7")
		wantCode(t, err, gatehouse.ENOTFOUND, "comment of a deleted stack")
		return nil
	})
}

// testRaceDeployLease races runners over the queued runs of two stacks: every run is
// leased exactly once, and a stack never has two runs leased at once.
func testRaceDeployLease(t *testing.T, e *env) {
	acme := e.org("acme")
	stacks := []*gatehouse.Stack{e.stack(acme.ID, "p", "a", nil), e.stack(acme.ID, "p", "b", nil)}
	const perStack = 5
	for range perStack {
		for _, s := range stacks {
			e.queueDeployment(acme.ID, s.ID, "")
		}
	}
	var mu sync.Mutex
	active := map[int64]int{}
	leased := map[string]int{}
	lastVersion := map[int64]int{}
	done := 0
	errs := e.race(6, func(i int) error {
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			mu.Lock()
			finished := done == perStack*len(stacks)
			mu.Unlock()
			if finished {
				return nil
			}
			lease := randID()
			var d *gatehouse.Deployment
			err := e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
				d, err = tx.LeaseDeployment(acme.ID, "", fmt.Sprint("runner-", i), lease, tx.Now().Add(time.Hour), randDigest(), tx.Now().Add(time.Hour))
				return err
			})
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.ECONFLICT) {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil {
				return err
			}
			mu.Lock()
			active[d.StackID]++
			leased[d.ID]++
			bad := active[d.StackID] > 1
			order := d.Version <= lastVersion[d.StackID]
			lastVersion[d.StackID] = d.Version
			mu.Unlock()
			if bad {
				return fmt.Errorf("stack %d has two runs leased at once", d.StackID)
			}
			if order {
				return fmt.Errorf("stack %d: run %d leased after a later one", d.StackID, d.Version)
			}
			time.Sleep(time.Millisecond)
			mu.Lock()
			active[d.StackID]--
			mu.Unlock()
			if err := e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
				_, err := tx.FinishDeployment(d.ID, lease, gatehouse.DeploySucceeded, "")
				return err
			}); err != nil {
				return err
			}
			mu.Lock()
			done++
			mu.Unlock()
		}
		return fmt.Errorf("runner %d: timed out", i)
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("runner %d: %v", i, err)
		}
	}
	if len(leased) != perStack*len(stacks) {
		t.Errorf("%d runs leased, want %d", len(leased), perStack*len(stacks))
	}
	for id, n := range leased {
		if n != 1 {
			t.Errorf("run %s leased %d times", id, n)
		}
	}
}

// testRaceDeployExpire races sweepers (ExpireDeploymentLeases) over runs whose leases ran
// out: each run is ended by exactly one of them, and its stack is free afterwards.
func testRaceDeployExpire(t *testing.T, e *env) {
	acme := e.org("acme")
	const n = 6
	want := map[string]bool{}
	var first *gatehouse.Stack
	for i := range n {
		st := e.stack(acme.ID, "p", fmt.Sprint("s", i), nil)
		if first == nil {
			first = st
		}
		e.queueDeployment(acme.ID, st.ID, "")
		d, _, err := e.lease(acme.ID, "", -time.Second)
		if err != nil {
			t.Fatal(err)
		}
		want[d.ID] = true
	}
	var mu sync.Mutex
	ended := map[string]int{}
	errs := e.race(6, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			ds, err := tx.ExpireDeploymentLeases()
			if err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			for _, d := range ds {
				if d.Status != gatehouse.DeployFailed || d.Lease != "" {
					return fmt.Errorf("expired run %+v", d)
				}
				ended[d.ID]++
			}
			return nil
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("sweeper %d: %v", i, err)
		}
	}
	for id := range want {
		if ended[id] != 1 {
			t.Errorf("run %s ended %d times, want once", id, ended[id])
		}
	}
	if len(ended) != n {
		t.Errorf("%d runs ended, want %d", len(ended), n)
	}
	// The stack is free: its next run leases.
	next := e.queueDeployment(acme.ID, first.ID, "")
	if d, _, err := e.lease(acme.ID, "", time.Hour); err != nil || d.ID != next.ID {
		t.Errorf("lease after the sweep = %+v, %v; want %s", d, err, next.ID)
	}
}

// testDeployVCSSecrets: an organization's own VCS webhook secrets, one per provider, set,
// replaced, listed, deleted; another organization's are its own.
func testDeployVCSSecrets(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetDeployVCSSecret(acme.ID, "github")
		wantCode(t, err, gatehouse.ENOTFOUND, "a secret before any")
		list, err := tx.ListDeployVCSSecrets(acme.ID)
		if err != nil || len(list) != 0 {
			t.Errorf("ListDeployVCSSecrets before any = %+v, %v", list, err)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.PutDeployVCSSecret(&gatehouse.DeployVCSSecret{OrgID: acme.ID, Provider: "github"})
	})
	wantCode(t, err, gatehouse.EINVALID, "a secret without a sealed value")
	gh := &gatehouse.DeployVCSSecret{OrgID: acme.ID, Provider: "github", Sealed: []byte{1, 2, 3}, CreatedBy: "alice"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutDeployVCSSecret(gh) })
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeployVCSSecret(&gatehouse.DeployVCSSecret{OrgID: acme.ID, Provider: "gitlab", Sealed: []byte{9}, CreatedBy: "alice"})
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutDeployVCSSecret(&gatehouse.DeployVCSSecret{OrgID: beta.ID, Provider: "github", Sealed: []byte{7}, CreatedBy: "bob"})
	})
	if gh.Created.IsZero() {
		t.Errorf("PutDeployVCSSecret assigned no Created")
	}
	// Replacing: the new value, time and author.
	gh2 := &gatehouse.DeployVCSSecret{OrgID: acme.ID, Provider: "github", Sealed: []byte{4, 5}, CreatedBy: "carol"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutDeployVCSSecret(gh2) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetDeployVCSSecret(acme.ID, "github")
		if err != nil || string(got.Sealed) != "\x04\x05" || got.CreatedBy != "carol" || !got.Created.Equal(gh2.Created) || !got.Created.After(gh.Created) {
			t.Errorf("GetDeployVCSSecret after a replace = %+v, %v", got, err)
		}
		list, err := tx.ListDeployVCSSecrets(acme.ID)
		if err != nil || len(list) != 2 || list[0].Provider != "github" || list[1].Provider != "gitlab" || list[1].OrgID != acme.ID {
			t.Errorf("ListDeployVCSSecrets(acme) = %+v, %v", list, err)
		}
		list, err = tx.ListDeployVCSSecrets(beta.ID)
		if err != nil || len(list) != 1 || string(list[0].Sealed) != "\x07" || list[0].CreatedBy != "bob" {
			t.Errorf("ListDeployVCSSecrets(beta) = %+v, %v", list, err)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteDeployVCSSecret(acme.ID, "github") })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteDeployVCSSecret(acme.ID, "github") })
	wantCode(t, err, gatehouse.ENOTFOUND, "deleting a deleted secret")
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetDeployVCSSecret(acme.ID, "github")
		wantCode(t, err, gatehouse.ENOTFOUND, "a deleted secret")
		if got, err := tx.GetDeployVCSSecret(beta.ID, "github"); err != nil || string(got.Sealed) != "\x07" {
			t.Errorf("beta's secret after acme's was deleted = %+v, %v", got, err)
		}
		return nil
	})
}
