package storetest

import (
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testWebhooks: webhooks per scope (organization, stack) by name, replaced by Update, gone
// with their stack; deliveries queued, claimed under a lease, retried, logged.
func testWebhooks(t *testing.T, e *env) {
	acme := e.org("acme")
	st := e.stack(acme.ID, "p", "dev", nil)
	org := &gatehouse.Webhook{OrgID: acme.ID, Name: "hook", PayloadURL: "https://example.com/h", Active: true, Format: "raw", Filters: []string{"update_succeeded"}, Secret: []byte{1, 2, 3}}
	sh := &gatehouse.Webhook{OrgID: acme.ID, StackID: st.ID, Name: "hook", PayloadURL: "https://example.com/s", Active: true, Format: "slack"}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreateWebhook(org); err != nil {
			return err
		}
		return tx.CreateWebhook(sh)
	})
	if org.ID == 0 || sh.ID == 0 || org.ID == sh.ID || org.Created.IsZero() {
		t.Fatalf("CreateWebhook: IDs %d %d, created %v", org.ID, sh.ID, org.Created)
	}
	wantCode(t, e.try(func(tx gatehouse.Tx) error {
		return tx.CreateWebhook(&gatehouse.Webhook{OrgID: acme.ID, Name: "hook", PayloadURL: "https://x"})
	}), gatehouse.ECONFLICT, "a second org webhook named hook")
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetWebhook(acme.ID, 0, "hook")
		if err != nil {
			return err
		}
		if got.ID != org.ID || got.PayloadURL != org.PayloadURL || !got.Active || got.Format != "raw" || len(got.Filters) != 1 || got.Filters[0] != "update_succeeded" || string(got.Secret) != "\x01\x02\x03" {
			t.Errorf("GetWebhook = %+v", got)
		}
		got, err = tx.GetWebhook(acme.ID, st.ID, "hook")
		if err != nil {
			return err
		}
		if got.ID != sh.ID || got.Secret != nil || got.Format != "slack" {
			t.Errorf("GetWebhook (stack) = %+v", got)
		}
		_, err = tx.GetWebhook(acme.ID, 0, "nope")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetWebhook of an unknown name")
		l, err := tx.ListWebhooks(acme.ID, 0)
		if err != nil {
			return err
		}
		if len(l) != 1 || l[0].ID != org.ID {
			t.Errorf("ListWebhooks(org) = %+v", l)
		}
		return nil
	})
	org.Active, org.Secret, org.Filters, org.DisplayName = false, nil, nil, "Hook"
	e.update(func(tx gatehouse.Tx) error { return tx.UpdateWebhook(org) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetWebhookByID(org.ID)
		if err != nil {
			return err
		}
		if got.Active || got.Secret != nil || len(got.Filters) != 0 || got.DisplayName != "Hook" {
			t.Errorf("after UpdateWebhook: %+v", got)
		}
		return nil
	})

	// The queue.
	d := &gatehouse.WebhookDelivery{WebhookID: org.ID, Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	e.update(func(tx gatehouse.Tx) error { return tx.EnqueueWebhookDelivery(d) })
	if d.ID == 0 || len(d.UUID) != 36 || d.Status != gatehouse.DeliveryPending {
		t.Fatalf("EnqueueWebhookDelivery: %+v", d)
	}
	claim := func(lease string) []gatehouse.WebhookDelivery {
		var got []gatehouse.WebhookDelivery
		e.update(func(tx gatehouse.Tx) (err error) {
			got, err = tx.ClaimWebhookDeliveries(lease, e.leaseFor(), 10)
			return err
		})
		return got
	}
	got := claim("a")
	if len(got) != 1 || got[0].ID != d.ID || got[0].Attempts != 1 || got[0].Lease != "a" || string(got[0].Payload) != "{}" {
		t.Fatalf("first claim = %+v", got)
	}
	if again := claim("b"); len(again) != 0 {
		t.Fatalf("a claimed delivery was claimed again under a live lease: %+v", again)
	}
	// A retry later: not due now.
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordWebhookAttempt(d.ID, "a", &gatehouse.WebhookAttempt{At: tx.Now(), ResponseCode: 500, Status: gatehouse.DeliveryPending, RetryAfter: time.Hour})
	})
	wantCode(t, e.try(func(tx gatehouse.Tx) error {
		return tx.RecordWebhookAttempt(d.ID, "a", &gatehouse.WebhookAttempt{Status: gatehouse.DeliveryDelivered})
	}), gatehouse.EGONE, "recording with a lease that has ended")
	if again := claim("b"); len(again) != 0 {
		t.Fatalf("a delivery was claimed before its next attempt: %+v", again)
	}
	// A claim whose process died: the lease runs out and another claims it.
	d2 := &gatehouse.WebhookDelivery{WebhookID: org.ID, Kind: "stack_update", Event: "update_succeeded", Payload: []byte(`{"a":1}`)}
	e.update(func(tx gatehouse.Tx) error { return tx.EnqueueWebhookDelivery(d2) })
	if got := claim("c"); len(got) != 1 || got[0].ID != d2.ID {
		t.Fatalf("claim d2 = %+v", got)
	}
	e.expireLeases()
	got = claim("d")
	if len(got) != 1 || got[0].ID != d2.ID || got[0].Attempts != 2 {
		t.Fatalf("claim after the lease ran out = %+v, want d2 at attempt 2", got)
	}
	wantCode(t, e.try(func(tx gatehouse.Tx) error {
		return tx.RecordWebhookAttempt(d2.ID, "c", &gatehouse.WebhookAttempt{Status: gatehouse.DeliveryDelivered})
	}), gatehouse.EGONE, "the first claimer recording after losing its lease")
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordWebhookAttempt(d2.ID, "d", &gatehouse.WebhookAttempt{At: tx.Now(), ResponseCode: 200, ResponseBody: "ok", RequestURL: "https://example.com/h", Status: gatehouse.DeliveryDelivered})
	})
	e.view(func(tx gatehouse.Tx) error {
		l, err := tx.ListWebhookDeliveries(org.ID, 10)
		if err != nil {
			return err
		}
		if len(l) != 2 || l[0].ID != d2.ID || l[0].Status != gatehouse.DeliveryDelivered || l[0].ResponseCode != 200 || l[0].ResponseBody != "ok" || l[1].ResponseCode != 500 {
			t.Errorf("ListWebhookDeliveries = %+v", l)
		}
		return nil
	})

	// Pruning takes finished deliveries older than the cut, never pending ones.
	d3 := &gatehouse.WebhookDelivery{WebhookID: org.ID, Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	e.update(func(tx gatehouse.Tx) error { return tx.EnqueueWebhookDelivery(d3) })
	e.update(func(tx gatehouse.Tx) error {
		n, err := tx.PruneWebhookDeliveries(tx.Now().Add(time.Second))
		if n != 1 {
			t.Errorf("PruneWebhookDeliveries deleted %d, want 1 (the delivered one)", n)
		}
		return err
	})
	e.view(func(tx gatehouse.Tx) error {
		for _, id := range []int64{d.ID, d3.ID} {
			if _, err := tx.GetWebhookDelivery(id); err != nil {
				t.Errorf("pending delivery %d pruned: %v", id, err)
			}
		}
		_, err := tx.GetWebhookDelivery(d2.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "a pruned delivery")
		return nil
	})

	// A stack's webhooks go with it; deleting a webhook takes its deliveries.
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(st.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetWebhookByID(sh.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "a deleted stack's webhook")
		return nil
	})
	// So do an environment's (scope: the negated environment ID, webhook.EnvScope).
	en := e.environment(acme.ID, "app", "hooked")
	eh := &gatehouse.Webhook{OrgID: acme.ID, StackID: -en.ID, Name: "hook", PayloadURL: "https://example.com/e", Active: true, Format: "raw"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateWebhook(eh) })
	e.update(func(tx gatehouse.Tx) error {
		return tx.EnqueueWebhookDelivery(&gatehouse.WebhookDelivery{WebhookID: eh.ID, Kind: "environment", Event: "environment_created", Payload: []byte("{}")})
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteEnvironment(en.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetWebhookByID(eh.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "a deleted environment's webhook")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteWebhook(org.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetWebhookDelivery(d.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "a deleted webhook's delivery")
		return nil
	})
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.DeleteWebhook(org.ID) }), gatehouse.ENOTFOUND, "deleting twice")
}

// testRaceWebhookClaim: racing claimers (processes) never claim one delivery twice.
func testRaceWebhookClaim(t *testing.T, e *env) {
	acme := e.org("acme")
	h := &gatehouse.Webhook{OrgID: acme.ID, Name: "h", PayloadURL: "https://example.com", Active: true, Format: "raw"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateWebhook(h) })
	const n = 20
	e.update(func(tx gatehouse.Tx) error {
		for range n {
			if err := tx.EnqueueWebhookDelivery(&gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: "ping", Payload: []byte(`{}`)}); err != nil {
				return err
			}
		}
		return nil
	})
	var mu sync.Mutex
	claimed := map[int64]int{}
	errs := e.race(8, func(i int) error {
		var got []gatehouse.WebhookDelivery
		err := e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			got, err = tx.ClaimWebhookDeliveries(randID(), time.Hour, 5) // the last run's claims are the committed ones
			return err
		})
		mu.Lock()
		defer mu.Unlock()
		for _, d := range got {
			claimed[d.ID]++
		}
		return err
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("claimer %d: %v", i, err)
		}
	}
	for id, c := range claimed {
		if c > 1 {
			t.Errorf("delivery %d claimed %d times under live leases", id, c)
		}
	}
}

// testWebhookAttemptLog: every attempt of a delivery is kept, the newest
// MaxWebhookAttemptsKept of them; deactivating a webhook cancels its pending deliveries
// (an attempt under way then keeps the cancellation); a webhook's ended deliveries beyond
// the newest MaxWebhookDeliveriesKept are pruned with their attempts.
func testWebhookAttemptLog(t *testing.T, e *env) {
	acme := e.org("acme")
	h := &gatehouse.Webhook{OrgID: acme.ID, Name: "log", PayloadURL: "https://example.com/h", Active: true, Format: "raw"}
	d := &gatehouse.WebhookDelivery{Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreateWebhook(h); err != nil {
			return err
		}
		d.WebhookID = h.ID
		return tx.EnqueueWebhookDelivery(d)
	})
	const n = gatehouse.MaxWebhookAttemptsKept + 2
	for i := 1; i <= n; i++ {
		lease := "l" + string(rune('a'+i))
		e.update(func(tx gatehouse.Tx) error {
			got, err := tx.ClaimWebhookDeliveries(lease, time.Hour, 1)
			if err != nil || len(got) != 1 {
				t.Fatalf("claim %d: %v %+v", i, err, got)
			}
			a := &gatehouse.WebhookAttempt{At: tx.Now(), ResponseCode: 500 + i, Status: gatehouse.DeliveryPending, Error: "no"}
			if i == n {
				a.Status, a.ResponseCode, a.Error = gatehouse.DeliveryDelivered, 200, ""
			}
			if err := tx.RecordWebhookAttempt(d.ID, lease, a); err != nil {
				return err
			}
			if a.Number != i {
				t.Errorf("attempt %d recorded as number %d", i, a.Number)
			}
			return nil
		})
	}
	e.view(func(tx gatehouse.Tx) error {
		m, err := tx.ListWebhookAttempts([]int64{d.ID, 999999})
		if err != nil {
			return err
		}
		l := m[d.ID]
		if len(l) != gatehouse.MaxWebhookAttemptsKept || l[0].Number != n-gatehouse.MaxWebhookAttemptsKept+1 || l[len(l)-1].Number != n ||
			l[len(l)-1].ResponseCode != 200 || l[len(l)-1].Status != gatehouse.DeliveryDelivered || l[0].ResponseCode != 500+l[0].Number || l[0].Error != "no" {
			t.Errorf("attempts = %+v", l)
		}
		return nil
	})

	// Deactivation cancels what is pending; an attempt under way keeps the cancellation.
	p1 := &gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	p2 := &gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.EnqueueWebhookDelivery(p1); err != nil {
			return err
		}
		if _, err := tx.ClaimWebhookDeliveries("inflight", time.Hour, 1); err != nil {
			return err
		}
		if err := tx.EnqueueWebhookDelivery(p2); err != nil {
			return err
		}
		h.Active = false
		return tx.UpdateWebhook(h)
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.RecordWebhookAttempt(p1.ID, "inflight", &gatehouse.WebhookAttempt{At: tx.Now(), ResponseCode: 500, Status: gatehouse.DeliveryPending})
	})
	e.view(func(tx gatehouse.Tx) error {
		for _, id := range []int64{p1.ID, p2.ID} {
			got, err := tx.GetWebhookDelivery(id)
			if err != nil {
				return err
			}
			if got.Status != gatehouse.DeliveryCancelled {
				t.Errorf("delivery %d after deactivation: %s, want cancelled", id, got.Status)
			}
		}
		return nil
	})

	// The per-webhook bound: the oldest ended delivery (d) goes, with its attempts.
	e.update(func(tx gatehouse.Tx) error {
		for i := 0; i < gatehouse.MaxWebhookDeliveriesKept-1; i++ {
			if err := tx.EnqueueWebhookDelivery(&gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: "ping", Payload: []byte(`{}`)}); err != nil {
				return err
			}
		}
		return tx.UpdateWebhook(h) // still inactive: cancels them (ended)
	})
	e.update(func(tx gatehouse.Tx) error {
		got, err := tx.PruneWebhookDeliveries(time.Unix(0, 0))
		if err != nil {
			return err
		}
		if got != 2 {
			t.Errorf("PruneWebhookDeliveries deleted %d, want 2 (beyond the newest %d)", got, gatehouse.MaxWebhookDeliveriesKept)
		}
		if _, err := tx.GetWebhookDelivery(d.ID); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			t.Errorf("the oldest delivery survived the prune: %v", err)
		}
		m, err := tx.ListWebhookAttempts([]int64{d.ID})
		if err != nil {
			return err
		}
		if len(m[d.ID]) != 0 {
			t.Errorf("the pruned delivery's attempts survived: %+v", m[d.ID])
		}
		return nil
	})
}
