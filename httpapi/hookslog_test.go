package httpapi_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// restart brings a closed receiver up again on its old address.
func (r *receiver) restart(t *testing.T, addr string) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("SKIPPED: cannot listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(r.Config.Handler)
	srv.Listener.Close()
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
}

type loggedDelivery struct {
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	Error      string `json:"error"`
	AttemptLog []struct {
		Attempt        int    `json:"attempt"`
		ResponseCode   int    `json:"responseCode"`
		ResponseBody   string `json:"responseBody"`
		RequestHeaders string `json:"requestHeaders"`
		Status         string `json:"status"`
		Error          string `json:"error"`
	} `json:"attemptLog"`
}

func (e *env) loggedDeliveries(t *testing.T, name string) []loggedDelivery {
	t.Helper()
	var out []loggedDelivery
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/hooks/" + name + "/deliveries"}, &out))
	return out
}

// TestWebhookDeactivateCancelsQueued: a receiver on loopback is down, so a ping to two
// webhooks fails and waits for its retry; one webhook is deactivated, the other deleted;
// once the receiver is up again neither delivery is sent, and the deactivated webhook's
// delivery log shows its delivery cancelled (a third webhook's ping arrives: the receiver
// is really up).
func TestWebhookDeactivateCancelsQueued(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	addr, url := rcv.Listener.Addr().String(), rcv.URL
	rcv.Close() // down
	for _, n := range []string{"off", "gone"} {
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": n, "payloadUrl": url, "active": true}}, nil))
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/" + n + "/ping"}, nil))
		e.waitRecorded(t, n, 1)
	}
	if ds := e.loggedDeliveries(t, "off"); len(ds) != 1 || ds[0].Status != "pending" || ds[0].Error == "" {
		t.Fatalf("after a refused connection: %+v, want pending with an error", ds)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/hooks/off", Body: map[string]any{"payloadUrl": url, "active": false}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/hooks/gone"}, nil))
	rcv.restart(t, addr) // up
	e.clock.Advance(time.Hour)
	for i := 0; i < 3; i++ {
		_, _ = e.srv.API.DeliverWebhooks(context.Background())
		time.Sleep(30 * time.Millisecond)
	}
	if n := len(rcv.requests()); n != 0 {
		t.Fatalf("the receiver got %d requests of a deactivated or deleted webhook", n)
	}
	ds := e.loggedDeliveries(t, "off")
	if len(ds) != 1 || ds[0].Status != "cancelled" || ds[0].Attempts != 1 {
		t.Fatalf("the deactivated webhook's log: %+v, want its delivery cancelled after 1 attempt", ds)
	}
	// Reactivating does not revive it.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/hooks/off", Body: map[string]any{"payloadUrl": url, "active": true}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "on", "payloadUrl": url}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/on/ping"}, nil))
	waitFor(t, e, "the live webhook's ping", func() bool { return len(rcv.requests()) >= 1 })
	time.Sleep(50 * time.Millisecond)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("%d requests, want only the live webhook's ping", n)
	}
	if ds := e.loggedDeliveries(t, "off"); ds[0].Status != "cancelled" {
		t.Errorf("reactivation revived the delivery: %+v", ds[0])
	}
}

// TestWebhookAttemptLog: the delivery log keeps every attempt (response code and body, the
// request headers with the signature masked), not only the last.
func TestWebhookAttemptLog(t *testing.T) {
	rcv := newReceiver(t, 500, 503, 200)
	e := hookEnv(t, "", "", rcv)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "h", "payloadUrl": rcv.URL, "secret": "s3cret-s3cret"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/h/ping"}, nil))
	e.waitRecorded(t, "h", 1)
	e.clock.Advance(2 * time.Second)
	e.waitRecorded(t, "h", 2)
	e.clock.Advance(3 * time.Second)
	e.waitRecorded(t, "h", 3)
	ds := e.loggedDeliveries(t, "h")
	if len(ds) != 1 || ds[0].Status != "delivered" || len(ds[0].AttemptLog) != 3 {
		raw, _ := json.Marshal(ds)
		t.Fatalf("delivery log %s, want one delivered delivery with 3 attempts", raw)
	}
	for i, want := range []int{500, 503, 200} {
		a := ds[0].AttemptLog[i]
		if a.Attempt != i+1 || a.ResponseCode != want || a.ResponseBody != "thanks" ||
			!strings.Contains(a.RequestHeaders, "Pulumi-Webhook-Signature: <hmac-sha256>") || (want != 200) != (a.Error != "") {
			t.Errorf("attempt %d: %+v", i+1, a)
		}
	}
	sig := rcv.requests()[0].header.Get("Pulumi-Webhook-Signature")
	raw, _ := json.Marshal(ds)
	if sig == "" || strings.Contains(string(raw), sig) {
		t.Errorf("the signature %q is missing or shown in the log", sig)
	}
}
