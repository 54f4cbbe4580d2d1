package httpapi_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// receiver is a webhook receiver on loopback that records what it gets and answers with
// the codes of answer in turn (200 when they run out).
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer []int
	// hang makes the next request wait until the client gives up.
	hang bool
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, answer ...int) *receiver {
	r := &receiver{answer: answer}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), body})
		hang := r.hang
		r.hang = false
		code := 200
		if len(r.answer) > 0 {
			code, r.answer = r.answer[0], r.answer[1:]
		}
		r.mu.Unlock()
		if hang {
			<-req.Context().Done()
			return
		}
		if code >= 300 && code < 400 {
			w.Header().Set("Location", req.Header.Get("X-Redirect-To"))
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("thanks"))
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

func (r *receiver) addrPort(t *testing.T) netip.AddrPort {
	u, err := url.Parse(r.URL)
	if err != nil {
		t.Fatal(err)
	}
	return netip.MustParseAddrPort(u.Host)
}

// hookEnv starts Gatehouse whose webhook guard permits exactly the receivers' addresses
// (every other loopback address stays refused) and retries quickly.
func hookEnv(t *testing.T, dir, token string, permit ...*receiver) *env {
	allowed := map[netip.AddrPort]bool{}
	for _, r := range permit {
		allowed[r.addrPort(t)] = true
	}
	tweak := func(c *httpapi.Config) {
		c.Webhooks.Permit = func(ap netip.AddrPort) bool { return allowed[ap] }
		c.Webhooks.Poll = 20 * time.Millisecond
		c.Webhooks.Backoff = time.Second // on the store's (test) clock: advanced by the tests
		c.Webhooks.Timeout = 2 * time.Second
	}
	if dir == "" {
		return newEnv(t, tweak)
	}
	return openEnv(t, dir, token, tweak)
}

// waitFor polls cond (driving deliveries meanwhile) for up to 10 s.
func waitFor(t *testing.T, e *env, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		_, _ = e.srv.API.DeliverWebhooks(context.Background())
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRecorded waits until the organization webhook's only delivery has had attempts
// attempts, the last one recorded (its claim ended).
func (e *env) waitRecorded(t *testing.T, name string, attempts int) {
	t.Helper()
	waitFor(t, e, "attempt "+itoa(attempts)+" recorded", func() bool {
		var done bool
		e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
			h, err := tx.GetWebhook(1, 0, name)
			if err != nil {
				return err
			}
			ds, err := tx.ListWebhookDeliveries(h.ID, 10)
			done = err == nil && len(ds) == 1 && ds[0].Attempts == attempts && ds[0].Lease == ""
			return err
		}))
		return done
	})
}

type hookDelivery struct {
	ID             string `json:"id"`
	Kind           string `json:"kind"`
	Payload        string `json:"payload"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
	ResponseCode   int    `json:"responseCode"`
	RequestHeaders string `json:"requestHeaders"`
	Error          string `json:"error"`
}

func (e *env) deliveries(t *testing.T, base, name string) []hookDelivery {
	t.Helper()
	var out []hookDelivery
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: base + "/" + name + "/deliveries"}, &out))
	return out
}

// TestWebhookSignedDeliveryRetried: an organization webhook with a secret receives
// stack_created signed with HMAC-SHA256 and the Pulumi headers; the receiver's 500 is
// retried (same Pulumi-Webhook-ID) after the backoff, the failure is audited, and the
// delivery log shows the outcome.
func TestWebhookSignedDeliveryRetried(t *testing.T) {
	rcv := newReceiver(t, 500, 200)
	e := hookEnv(t, "", "", rcv)
	const secret = "hook-secret-0123456789"
	var created map[string]any
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{
		"organizationName": "acme", "displayName": "CI", "payloadUrl": rcv.URL + "/hook", "secret": secret, "active": true,
		"filters": []string{"stack_created"},
	}}, &created))
	name, _ := created["name"].(string)
	if len(name) != 8 || created["hasSecret"] != true || created["format"] != "raw" {
		t.Fatalf("create answered %v", created)
	}
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	e.waitRecorded(t, name, 1)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	if n := len(rcv.requests()); n != 1 {
		t.Fatalf("%d requests before the backoff passed, want 1", n)
	}
	e.clock.Advance(2 * time.Second)
	waitFor(t, e, "the retry", func() bool { return len(rcv.requests()) >= 2 })
	reqs := rcv.requests()
	for i, r := range reqs {
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write(r.body)
		if got, want := r.header.Get("Pulumi-Webhook-Signature"), hex.EncodeToString(mac.Sum(nil)); got != want {
			t.Errorf("request %d: signature %q, want %q", i, got, want)
		}
		if r.header.Get("Pulumi-Webhook-Kind") != "stack" || r.header.Get("Content-Type") != "application/json" {
			t.Errorf("request %d: headers %v", i, r.header)
		}
	}
	if id := reqs[0].header.Get("Pulumi-Webhook-ID"); id == "" || id != reqs[1].header.Get("Pulumi-Webhook-ID") {
		t.Errorf("Pulumi-Webhook-ID %q then %q: want one ID for both attempts", id, reqs[1].header.Get("Pulumi-Webhook-ID"))
	}
	var p struct {
		User         struct{ Name string }
		Organization struct{ Name string }
		ProjectName  string
		StackName    string
		Action       string
	}
	if err := json.Unmarshal(reqs[1].body, &p); err != nil || p.Action != "created" || p.Organization.Name != "acme" || p.ProjectName != "proj" || p.StackName != "dev" || p.User.Name != "alice" {
		t.Errorf("payload %s (%v)", reqs[1].body, err)
	}
	waitFor(t, e, "the delivery log", func() bool {
		ds := e.deliveries(t, "/api/orgs/acme/hooks", name)
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	ds := e.deliveries(t, "/api/orgs/acme/hooks", name)
	if ds[0].Attempts != 2 || ds[0].ResponseCode != 200 || ds[0].Kind != "stack" || ds[0].ID != reqs[0].header.Get("Pulumi-Webhook-ID") {
		t.Errorf("delivery log %+v", ds[0])
	}
	evs, err := listAudit(e)
	e.must(err)
	var failed, createdEv int
	for _, ev := range evs {
		if ev.Action == "webhook:delivery" && ev.Outcome == gatehouse.OutcomeFailure && ev.Details["response_code"] == "500" {
			failed++
		}
		if ev.Action == "org:webhooks" && ev.Outcome == gatehouse.OutcomeSuccess && ev.Details["webhook"] == name {
			createdEv++
		}
	}
	if failed != 1 || createdEv != 1 {
		t.Errorf("audit: %d failed-delivery events (want 1), %d creation events (want 1)", failed, createdEv)
	}
}

// TestWebhookUpdateEvents: a stack webhook with a filter gets only the events it selects:
// the end of an update, not its start or a preview.
func TestWebhookUpdateEvents(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	base := stackPath("acme", "proj", "dev") + "/hooks"
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: base, Body: map[string]any{"name": "ci", "payloadUrl": rcv.URL, "filters": []string{"update_succeeded", "update_started"}}}, nil))
	prev, err := e.startRun(e.admin, stackPath("acme", "proj", "dev"), "preview", true)
	e.must(err)
	e.must(prev.complete("succeeded"))
	r, err := e.startRun(e.admin, stackPath("acme", "proj", "dev"), "update", false)
	e.must(err)
	e.must(r.checkpoint(deployment(2, "")))
	e.must(r.complete("succeeded"))
	e.must(r.complete("succeeded")) // a retried complete sends nothing more
	waitFor(t, e, "two deliveries", func() bool { return len(rcv.requests()) >= 2 })
	time.Sleep(100 * time.Millisecond)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d deliveries, want 2 (update started, update succeeded)", len(reqs))
	}
	results := map[string]bool{}
	for _, q := range reqs {
		var p struct {
			Kind, Result, UpdateURL string
			IsPreview               *bool
			Version                 int
		}
		e.must(json.Unmarshal(q.body, &p))
		if q.header.Get("Pulumi-Webhook-Kind") != "stack_update" || p.Kind != "update" || p.IsPreview == nil || *p.IsPreview || p.Version != r.Version ||
			!strings.HasSuffix(p.UpdateURL, "/api/stacks/acme/proj/dev/updates/1") || q.header.Get("Pulumi-Webhook-Signature") != "" {
			t.Errorf("delivery %s %s", q.header, q.body)
		}
		results[p.Result] = true
	}
	if !results["started"] || !results["succeeded"] {
		t.Errorf("results %v, want started and succeeded", results)
	}
}

// TestWebhookPrivateURLRefused: payload URLs on loopback, private and metadata addresses
// are refused when created (400) unless --allow-private-webhooks; so are unknown filters
// and bodies that name another organization.
func TestWebhookPrivateURLRefused(t *testing.T) {
	e := newEnv(t)
	for _, u := range []string{"http://127.0.0.1:8080/x", "http://localhost/x", "http://169.254.169.254/latest", "http://[::1]/", "http://10.1.2.3/", "http://metadata.google.internal/", "ftp://example.com/", "https://user:pw@example.com/"} {
		err := e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"payloadUrl": u}}, nil)
		wantStatus(t, err, 400)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"payloadUrl": "https://example.com/", "filters": []string{"nope"}}}, nil), 400)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"payloadUrl": "https://example.com/", "organizationName": "globex"}}, nil), 400)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "ok", "payloadUrl": "https://example.com/"}}, nil))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "ok", "payloadUrl": "https://example.com/"}}, nil), 409)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/hooks/ok", Body: map[string]any{"payloadUrl": "http://127.0.0.1/"}}, nil), 400)

	open := newEnv(t, func(c *httpapi.Config) { c.AllowPrivateWebhooks = true })
	open.must(open.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"payloadUrl": "http://127.0.0.1:8080/x"}}, nil))
}

// TestWebhookRedirectNotFollowed: a receiver that redirects to another loopback address
// gets its redirect recorded as a failed attempt; the target is never reached.
func TestWebhookRedirectNotFollowed(t *testing.T) {
	target := newReceiver(t)
	rcv := newReceiver(t, 307, 307, 307, 307, 307)
	e := hookEnv(t, "", "", rcv)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "r", "payloadUrl": rcv.URL + "/?to=" + url.QueryEscape(target.URL)}}, nil))
	rcv.mu.Lock()
	rcv.answer = nil
	rcv.mu.Unlock()
	// The receiver redirects every request to the target.
	rcv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		rcv.mu.Lock()
		rcv.got = append(rcv.got, received{req.Header.Clone(), nil})
		rcv.mu.Unlock()
		http.Redirect(w, req, target.URL+"/stolen", http.StatusTemporaryRedirect)
	})
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/r/ping"}, nil))
	waitFor(t, e, "the attempt", func() bool {
		ds := e.deliveries(t, "/api/orgs/acme/hooks", "r")
		return len(ds) == 1 && ds[0].ResponseCode == 307
	})
	ds := e.deliveries(t, "/api/orgs/acme/hooks", "r")
	if ds[0].Status != "pending" || ds[0].Kind != "ping" {
		t.Errorf("after a redirect: %+v, want pending (a retry later)", ds[0])
	}
	if n := len(target.requests()); n != 0 {
		t.Fatalf("the redirect target got %d requests", n)
	}
}

// TestWebhookRestartMidDelivery: a server stops while a delivery is in flight (claimed,
// the receiver not answering); a new server on the same database delivers it once the
// claim has run out.
func TestWebhookRestartMidDelivery(t *testing.T) {
	rcv := newReceiver(t)
	rcv.hang = true
	e := hookEnv(t, "", "", rcv)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "r", "payloadUrl": rcv.URL, "secret": "s"}}, nil))
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	// The background worker makes the attempt (the test must not: its attempt would not be
	// stopped by the server's Close).
	for deadline := time.Now().Add(10 * time.Second); len(rcv.requests()) == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the first attempt")
		}
	}
	// Nothing waits for the hanging receiver: another change goes through, and its event
	// is delivered meanwhile.
	start := time.Now()
	e.must(e.createStack(e.admin, "acme", "proj", "dev2", nil))
	if d := time.Since(start); d > time.Second {
		t.Errorf("creating a stack took %v while a receiver hangs", d)
	}
	for deadline := time.Now().Add(10 * time.Second); len(rcv.requests()) < 2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for the second event's delivery while the first hangs")
		}
	}
	e.close() // abandons the attempt in flight: its claim stays until it runs out
	first := rcv.requests()[0]
	if n := len(rcv.requests()); n != 2 {
		t.Fatalf("%d requests before the restart, want 2", n)
	}
	e2 := hookEnv(t, e.dir, e.admin.Token, rcv)
	time.Sleep(100 * time.Millisecond)
	_, _ = e2.srv.API.DeliverWebhooks(context.Background())
	if n := len(rcv.requests()); n != 2 {
		t.Fatalf("the new server delivered under the old claim (%d requests)", n)
	}
	e2.clock.Advance(10 * time.Minute)
	waitFor(t, e2, "the delivery after the restart", func() bool { return len(rcv.requests()) >= 3 })
	waitFor(t, e2, "the delivery log", func() bool {
		ds := e2.deliveries(t, "/api/orgs/acme/hooks", "r")
		return len(ds) == 2 && ds[0].Status == "delivered" && ds[1].Status == "delivered"
	})
	reqs := rcv.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	if reqs[2].header.Get("Pulumi-Webhook-ID") != first.header.Get("Pulumi-Webhook-ID") || string(reqs[2].body) != string(first.body) ||
		reqs[1].header.Get("Pulumi-Webhook-ID") == first.header.Get("Pulumi-Webhook-ID") {
		t.Errorf("after the restart: not the abandoned delivery again")
	}
	if ds := e2.deliveries(t, "/api/orgs/acme/hooks", "r"); ds[1].Attempts != 2 || ds[0].Attempts != 1 {
		t.Errorf("attempts %d (the abandoned delivery) and %d, want 2 and 1", ds[1].Attempts, ds[0].Attempts)
	}
}

// TestWebhookSecretNeverShown: the secret is stored sealed and is in no response, delivery
// log or audit event; PATCH keeps it unless told to remove it.
func TestWebhookSecretNeverShown(t *testing.T) {
	rcv := newReceiver(t)
	e := hookEnv(t, "", "", rcv)
	const secret = "do-not-show-this-7f3a9c"
	var raw json.RawMessage
	check := func(what string, b []byte) {
		t.Helper()
		if strings.Contains(string(b), secret) {
			t.Errorf("%s shows the secret: %s", what, b)
		}
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "s", "payloadUrl": rcv.URL, "secret": secret}}, &raw))
	check("create", raw)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/hooks/s"}, &raw))
	check("get", raw)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/hooks"}, &raw))
	check("list", raw)
	var h struct {
		HasSecret bool `json:"hasSecret"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/hooks/s", Body: map[string]any{"payloadUrl": rcv.URL + "/services/url-token-5e1f", "active": true}}, &raw))
	check("patch", raw)
	e.must(json.Unmarshal(raw, &h))
	if !h.HasSecret {
		t.Errorf("a PATCH without a secret removed it: %s", raw)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/s/ping"}, &raw))
	waitFor(t, e, "the ping", func() bool { return len(rcv.requests()) == 1 })
	waitFor(t, e, "the log", func() bool {
		ds := e.deliveries(t, "/api/orgs/acme/hooks", "s")
		return len(ds) == 1 && ds[0].Status == "delivered"
	})
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/hooks/s/deliveries"}, &raw))
	check("deliveries", raw)
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		w, err := tx.GetWebhook(1, 0, "s")
		if err != nil {
			return err
		}
		check("the stored webhook", w.Secret)
		if len(w.Secret) == 0 {
			t.Error("no sealed secret stored")
		}
		return nil
	}))
	evs, err := listAudit(e)
	e.must(err)
	b, _ := json.Marshal(evs)
	check("the audit log", b)
	if strings.Contains(string(b), "url-token-5e1f") {
		t.Errorf("the audit log shows the payload URL's path (a chat webhook URL is a credential)")
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/hooks/s", Body: map[string]any{"payloadUrl": rcv.URL, "secret": "__remove-secret"}}, &raw))
	e.must(json.Unmarshal(raw, &h))
	if h.HasSecret {
		t.Errorf("__remove-secret kept the secret: %s", raw)
	}
}

// TestWebhookGivesUp: a receiver that always fails gets 5 attempts, with growing waits
// between them, and the delivery is then marked failed; every failed attempt is audited.
func TestWebhookGivesUp(t *testing.T) {
	rcv := newReceiver(t, 500, 500, 500, 500, 500, 500, 500)
	e := hookEnv(t, "", "", rcv)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks", Body: map[string]any{"name": "down", "payloadUrl": rcv.URL}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/hooks/down/ping"}, nil))
	for attempt := 1; attempt <= 5; attempt++ {
		e.waitRecorded(t, "down", attempt)
		// The backoff doubles (1 s, 2 s, 4 s, 8 s on the test clock): half of it is not enough.
		if attempt < 5 {
			e.clock.Advance(time.Duration(1<<(attempt-1)) * time.Second / 2)
			_, _ = e.srv.API.DeliverWebhooks(context.Background())
			if n := len(rcv.requests()); n != attempt {
				t.Fatalf("attempt %d came before its backoff (%d requests)", attempt+1, n)
			}
			e.clock.Advance(time.Duration(1<<(attempt-1)) * time.Second)
		}
	}
	waitFor(t, e, "failed", func() bool { ds := e.deliveries(t, "/api/orgs/acme/hooks", "down"); return ds[0].Status == "failed" })
	e.clock.Advance(24 * time.Hour)
	_, _ = e.srv.API.DeliverWebhooks(context.Background())
	time.Sleep(50 * time.Millisecond)
	if n := len(rcv.requests()); n != 5 {
		t.Fatalf("%d attempts, want 5", n)
	}
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == "webhook:delivery" && ev.Outcome == gatehouse.OutcomeFailure {
			n++
		}
	}
	if n != 5 {
		t.Errorf("%d failed-delivery audit events, want 5", n)
	}
}
