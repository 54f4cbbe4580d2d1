package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
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

// TestWebhookSecretsNotLogged: creating a webhook with a secret and a credential in its URL
// path, and a delivery that fails for good (connection refused), log neither (request log on, debug level).
func TestWebhookSecretsNotLogged(t *testing.T) {
	ctx := context.Background()
	var buf syncBuffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A receiver that is down (its port closed): the client's error would name the URL.
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	rcv.Close()
	u, _ := url.Parse(rcv.URL)
	allowed := netip.MustParseAddrPort(u.Host)
	api := httpapi.DefaultConfig()
	api.RequestLog = true
	api.Webhooks.Permit = func(ap netip.AddrPort) bool { return ap == allowed }
	api.Webhooks.Poll = 5 * time.Millisecond
	api.Webhooks.MaxAttempts = 1
	srv, err := app.Open(ctx, app.Config{DataDir: t.TempDir()}, api, log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	tok, err := app.Bootstrap(ctx, srv.Store, "acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	srv.StartWorkers()
	hs := httptest.NewServer(srv.Handler)
	defer hs.Close()
	const secret, pathToken = "s3cr3t-webhook-value-91ab", "T00/B00/path-credential-77cd"
	body := strings.NewReader(`{"name":"h","payloadUrl":"` + rcv.URL + `/services/` + pathToken + `","secret":"` + secret + `"}`)
	req, _ := http.NewRequest("POST", hs.URL+"/api/orgs/acme/hooks", body)
	req.Header.Set("Authorization", "token "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	req, _ = http.NewRequest("POST", hs.URL+"/api/orgs/acme/hooks/h/ping", nil)
	req.Header.Set("Authorization", "token "+tok)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(buf.String(), "delivery failed for good") {
		if time.Now().After(deadline) {
			t.Fatalf("no final failure logged: %s", buf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, s := range []string{secret, "path-credential-77cd"} {
		if strings.Contains(buf.String(), s) {
			t.Errorf("the log shows %q:\n%s", s, buf.String())
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
