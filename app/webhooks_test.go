package app_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
)

// TestWebhooksTwoProcessesPostgres: two servers on one PostgreSQL database, both with a
// delivery worker, deliver every queued event exactly once between them (no failures, so
// at-least-once is exactly once here).
func TestWebhooksTwoProcessesPostgres(t *testing.T) {
	ctx := context.Background()
	cluster := pgtest.Start(t)
	var mu sync.Mutex
	seen := map[string]int{}
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		seen[r.Header.Get("Pulumi-Webhook-ID")]++
		mu.Unlock()
	}))
	defer rcv.Close()
	u, _ := url.Parse(rcv.URL)
	allowed := netip.MustParseAddrPort(u.Host)
	api := httpapi.DefaultConfig()
	api.Webhooks.Permit = func(ap netip.AddrPort) bool { return ap == allowed }
	api.Webhooks.Poll = 5 * time.Millisecond
	api.Webhooks.Batch = 4
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
	const n = 60
	err := srvs[0].Store.Update(ctx, func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		h := &gatehouse.Webhook{OrgID: org.ID, Name: "h", PayloadURL: rcv.URL, Active: true, Format: "raw"}
		if err := tx.CreateWebhook(h); err != nil {
			return err
		}
		for range n {
			if err := tx.EnqueueWebhookDelivery(&gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: "ping", Event: "ping", Payload: []byte(`{}`)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range srvs {
		s.StartWorkers()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d deliveries arrived", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	for id, c := range seen {
		if c != 1 {
			t.Errorf("delivery %s arrived %d times", id, c)
		}
	}
}
