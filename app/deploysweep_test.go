package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
)

// TestDeploySweepTwoProcessesPostgres: two servers on one PostgreSQL database sweep the
// runs of dead runners at the same moment, round after round: each run is ended exactly
// once between them (the counts they return add up, each run has one deployment:end
// event and one deployment_failed event queued), and its stack is free again.
func TestDeploySweepTwoProcessesPostgres(t *testing.T) {
	ctx := context.Background()
	cluster := pgtest.Start(t)
	api := httpapi.DefaultConfig()
	api.Deploy.SweepInterval = time.Hour // swept by hand below
	cfg := app.Config{DataDir: t.TempDir(), Database: cluster.NewDatabase(t)}
	var srvs []*app.Server
	for range 2 {
		s, err := app.Open(ctx, cfg, api, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srvs = append(srvs, s)
	}
	if _, err := app.Bootstrap(ctx, srvs[0].Store, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	store := srvs[0].Store
	var org *gatehouse.Org
	hook := &gatehouse.Webhook{Name: "all", PayloadURL: "https://hooks.example.com/x", Active: true, Format: "raw"}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(store.Update(ctx, func(tx gatehouse.Tx) (err error) {
		if org, err = tx.GetOrgByName("acme"); err != nil {
			return err
		}
		// An organization webhook that takes every event: each queued event is a delivery.
		hook.OrgID = org.ID
		return tx.CreateWebhook(hook)
	}))
	const rounds, perRound = 8, 3
	var ids []string
	total := 0
	for round := range rounds {
		// perRound runs on their own stacks, leased by runners that vanished at once.
		var roundIDs []string
		for i := range perRound {
			must(store.Update(ctx, func(tx gatehouse.Tx) error {
				st := &gatehouse.Stack{OrgID: org.ID, Project: "p", Name: fmt.Sprintf("s%d-%d", round, i), CreatedBy: "alice"}
				if err := tx.CreateStack(st); err != nil {
					return err
				}
				d := &gatehouse.Deployment{OrgID: org.ID, StackID: st.ID, Operation: "update", Request: []byte(`{}`), Initiator: "api", RequestedBy: "alice"}
				if err := tx.CreateDeployment(d); err != nil {
					return err
				}
				var digest [32]byte
				copy(digest[:], fmt.Sprintf("cred-%d-%d", round, i))
				l, err := tx.LeaseDeployment(org.ID, "", "runner", fmt.Sprintf("lease-%d-%d", round, i), tx.Now().Add(-time.Millisecond), digest, tx.Now())
				if err != nil {
					return err
				}
				roundIDs = append(roundIDs, l.ID)
				return nil
			}))
		}
		ids = append(ids, roundIDs...)
		// Two sweepers per process, released together.
		var wg sync.WaitGroup
		counts := make([]int, 4)
		errs := make([]error, 4)
		gate := make(chan struct{})
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-gate
				counts[i], errs[i] = srvs[i%2].API.Deploy().Sweep(ctx)
			}()
		}
		close(gate)
		wg.Wait()
		n := 0
		for i := range 4 {
			must(errs[i])
			n += counts[i]
		}
		if n != perRound {
			t.Errorf("round %d: the sweepers ended %d runs (%v), want %d", round, n, counts, perRound)
		}
		total += n
	}
	if total != rounds*perRound {
		t.Errorf("%d runs ended, want %d", total, rounds*perRound)
	}
	must(store.View(ctx, func(tx gatehouse.Tx) error {
		evs, err := tx.ListAudit(gatehouse.AuditFilter{Limit: 10000})
		if err != nil {
			return err
		}
		ends := map[string]int{}
		for _, ev := range evs {
			if ev.Action == "deployment:end" {
				ends[ev.Details["deployment"]]++
			}
		}
		for _, id := range ids {
			d, err := tx.GetDeployment(id)
			if err != nil {
				return err
			}
			if d.Status != gatehouse.DeployFailed || ends[id] != 1 {
				t.Errorf("run %s: status %s, %d deployment:end events", id, d.Status, ends[id])
			}
		}
		return nil
	}))
	must(store.View(ctx, func(tx gatehouse.Tx) error {
		ds, err := tx.ListWebhookDeliveries(hook.ID, 10000)
		if err != nil {
			return err
		}
		failed := 0
		for _, d := range ds {
			if d.Event == "deployment_failed" {
				failed++
			}
		}
		if failed != rounds*perRound {
			t.Errorf("%d deployment_failed events queued, want %d", failed, rounds*perRound)
		}
		return nil
	}))
}
