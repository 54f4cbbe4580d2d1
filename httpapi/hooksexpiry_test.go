package httpapi_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestWebhookExpiredUpdateFailed: an update whose CLI died (its short lease ran out) is
// marked failed when a new update takes the stack over, and update_failed is sent once,
// also when two takeovers race.
func TestWebhookExpiredUpdateFailed(t *testing.T) {
	rcv := newReceiver(t)
	ap := rcv.addrPort(t)
	e := newEnv(t, func(c *httpapi.Config) {
		c.Webhooks.Permit = func(a netip.AddrPort) bool { return a == ap }
		c.Webhooks.Poll = 20 * time.Millisecond
		c.LeaseDuration = 2 * time.Second // a short lease
	})
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/hooks", Body: map[string]any{"name": "h", "payloadUrl": rcv.URL, "filters": []string{"update_failed"}}}, nil))
	dead, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.clock.Advance(3 * time.Second) // the lease ran out
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Add(1)
		go func(i int) { defer wg.Done(); _, errs[i] = e.startRun(e.admin, p, "update", false) }(i)
	}
	wg.Wait()
	if (errs[0] == nil) == (errs[1] == nil) {
		t.Fatalf("racing takeovers: %v, %v; want exactly one to win", errs[0], errs[1])
	}
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUpdate(dead.ID)
		if err == nil && u.Status != gatehouse.StatusFailed {
			t.Errorf("the dead update is %s, want failed", u.Status)
		}
		return err
	}))
	waitFor(t, e, "update_failed", func() bool { return len(rcv.requests()) >= 1 })
	time.Sleep(100 * time.Millisecond)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	reqs := rcv.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d deliveries, want one update_failed", len(reqs))
	}
	var pl struct {
		Kind, Result string
		Version      int
	}
	e.must(json.Unmarshal(reqs[0].body, &pl))
	if reqs[0].header.Get("Pulumi-Webhook-Kind") != "stack_update" || pl.Kind != "update" || pl.Result != "failed" || pl.Version != dead.Version {
		t.Errorf("delivery %s %s", reqs[0].header, reqs[0].body)
	}
}
