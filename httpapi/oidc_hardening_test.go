package httpapi_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/oidc"
	"github.com/gatehouse-dev/gatehouse/oidc/oidctest"
)

// registerIssuer posts an issuer registration and returns the error (nil: registered).
func registerIssuer(e *env, name, url string) *cliwire.Error {
	err := e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: map[string]any{"name": name, "url": url}}, nil)
	if err == nil {
		return nil
	}
	ce, ok := err.(*cliwire.Error)
	if !ok {
		e.t.Fatalf("register %s: %v", url, err)
	}
	return ce
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func portOf(s *httptest.Server) uint16 { return uint16(s.Listener.Addr().(*net.TCPAddr).Port) }

// lastOIDCAdminAudit returns the newest org:oidc audit event of acme.
func lastOIDCAdminAudit(t *testing.T, e *env) gatehouse.AuditEvent {
	t.Helper()
	var evs []gatehouse.AuditEvent
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		evs, err = tx.ListAudit(gatehouse.AuditFilter{OrgID: org.ID, Action: "org:oidc", Limit: 1})
		return err
	}))
	if len(evs) == 0 {
		t.Fatal("no org:oidc audit event")
	}
	return evs[0]
}

// TestOIDCDiscoverySSRF: an organization administrator cannot make the server fetch from
// its own network by registering an issuer, nor tell an open port from a closed one by the
// answer. The details are in the audit record (and the server log), not in the response.
func TestOIDCDiscoverySSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t) // the guard on: the default
	open := oidctest.New(t)
	closed := "http://127.0.0.1:" + strconv.Itoa(closedPort(t))

	openErr := registerIssuer(e, "open", open.URL)
	closedErr := registerIssuer(e, "closed", closed)
	if openErr == nil || closedErr == nil {
		t.Fatalf("a loopback issuer was registered: open port %v, closed port %v", openErr, closedErr)
	}
	if open.DiscoveryHits() != 0 {
		t.Fatalf("the loopback issuer's discovery document was fetched %d times", open.DiscoveryHits())
	}
	if openErr.Status != 400 || openErr.Status != closedErr.Status || openErr.Message != closedErr.Message {
		t.Fatalf("open and closed ports answer differently:\n  open:   %d %q\n  closed: %d %q", openErr.Status, openErr.Message, closedErr.Status, closedErr.Message)
	}
	if !strings.Contains(openErr.Message, oidc.ErrTextDiscoveryFetch) {
		t.Errorf("message %q does not say %q", openErr.Message, oidc.ErrTextDiscoveryFetch)
	}
	for _, leak := range []string{"127.0.0.1", "loopback", "refused", "dial", strconv.Itoa(int(portOf(open.Server)))} {
		if strings.Contains(openErr.Message, leak) || strings.Contains(closedErr.Message, leak) {
			t.Errorf("the response tells %q: %q / %q", leak, openErr.Message, closedErr.Message)
		}
	}
	// The audit record has the details.
	ev := lastOIDCAdminAudit(t, e)
	if ev.Outcome != gatehouse.OutcomeFailure || !strings.Contains(ev.Details["discovery_error"], "loopback") {
		t.Errorf("audit of the refused registration: outcome %q, details %v", ev.Outcome, ev.Details)
	}

	// Cloud metadata, by address and by name; other private networks.
	for _, u := range []string{
		"https://169.254.169.254", "https://metadata.google.internal", "https://[::ffff:169.254.169.254]",
		"https://10.0.0.1", "https://[fd00:ec2::254]", "https://100.100.100.200", "https://localhost:1",
	} {
		ce := registerIssuer(e, "meta", u)
		if ce == nil || ce.Status != 400 || ce.Message != openErr.Message {
			t.Errorf("%s: %v, want the same refusal as loopback (%q)", u, ce, openErr.Message)
		}
	}
}

// TestOIDCDiscoveryRebinding: a public-looking host name that resolves to 127.0.0.1 is
// refused when it is dialed (a resolver seam plays the DNS).
func TestOIDCDiscoveryRebinding(t *testing.T) {
	t.Parallel()
	loop := netip.MustParseAddr("127.0.0.1")
	e := newEnv(t, func(c *httpapi.Config) {
		c.IssuerClient = oidc.NewHTTPClient(netguard.Options{Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{loop}, nil
		}})
	})
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	ce := registerIssuer(e, "rebound", "https://issuer.example.com:"+strconv.Itoa(int(portOf(srv))))
	if ce == nil || ce.Status != 400 || !strings.Contains(ce.Message, oidc.ErrTextDiscoveryFetch) {
		t.Fatalf("a name resolving to 127.0.0.1: %v", ce)
	}
	if hits.Load() != 0 {
		t.Fatal("the loopback server was reached")
	}
	if d := lastOIDCAdminAudit(t, e).Details["discovery_error"]; !strings.Contains(d, "127.0.0.1") || !strings.Contains(d, "loopback") {
		t.Errorf("audit detail %q does not name the refused address", d)
	}
}

// TestOIDCDiscoveryRedirects: an issuer that is allowed (here: permitted by port, as a
// public issuer would be) cannot send discovery to loopback by a redirect or by its
// jwks_uri.
func TestOIDCDiscoveryRedirects(t *testing.T) {
	t.Parallel()
	target := oidctest.New(t) // on loopback, not permitted
	var mu sync.Mutex
	var permitted []uint16
	permit := func(ports ...uint16) { mu.Lock(); permitted = append(permitted, ports...); mu.Unlock() }
	e := newEnv(t, func(c *httpapi.Config) {
		c.IssuerClient = oidc.NewHTTPClient(netguard.Options{Permit: func(ap netip.AddrPort) bool {
			mu.Lock()
			defer mu.Unlock()
			for _, p := range permitted {
				if ap.Port() == p {
					return true
				}
			}
			return false
		}})
	})
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+r.URL.Path, http.StatusFound)
	}))
	t.Cleanup(redirector.Close)
	var jwksFrom *httptest.Server
	jwksFrom = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": jwksFrom.URL, "jwks_uri": target.URL + "/.well-known/jwks"})
	}))
	t.Cleanup(jwksFrom.Close)
	permit(portOf(redirector), portOf(jwksFrom))

	ce := registerIssuer(e, "redirects", redirector.URL)
	if ce == nil || ce.Status != 400 || !strings.Contains(ce.Message, oidc.ErrTextDiscoveryFetch) {
		t.Fatalf("discovery redirected to loopback: %v", ce)
	}
	if d := lastOIDCAdminAudit(t, e).Details["discovery_error"]; !strings.Contains(d, "loopback") {
		t.Errorf("audit detail %q", d)
	}
	ce = registerIssuer(e, "jwks", jwksFrom.URL)
	if ce == nil || ce.Status != 400 || !strings.Contains(ce.Message, oidc.ErrTextJWKSFetch) {
		t.Fatalf("jwks_uri on loopback: %v", ce)
	}
	if target.DiscoveryHits() != 0 || target.JWKSHits() != 0 {
		t.Fatalf("the loopback target was reached: %d discovery, %d JWKS fetches", target.DiscoveryHits(), target.JWKSHits())
	}
	// The permitted issuer itself works (the premise): it is refused only for where it
	// sends us. Permitting the target too lets the same registration through.
	permit(portOf(target.Server))
	if ce := registerIssuer(e, "target", target.URL); ce != nil {
		t.Fatalf("a permitted issuer: %v", ce)
	}
}

// TestOIDCAllowPrivateIssuers: with --allow-private-issuers a loopback issuer registers and
// its tokens are exchanged (what every other OIDC test relies on), and a closed port is
// still answered without details.
func TestOIDCAllowPrivateIssuers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, allowPrivateIssuers)
	is := oidctest.New(t)
	if ce := registerIssuer(e, "loopback", is.URL); ce != nil {
		t.Fatalf("register a loopback issuer with AllowPrivateIssuers: %v", ce)
	}
	if is.DiscoveryHits() == 0 || is.JWKSHits() == 0 {
		t.Fatal("the issuer was not fetched")
	}
	ce := registerIssuer(e, "closed", "http://127.0.0.1:"+strconv.Itoa(closedPort(t)))
	if ce == nil || ce.Status != 400 || strings.Contains(ce.Message, "refused") || !strings.Contains(ce.Message, oidc.ErrTextDiscoveryFetch) {
		t.Fatalf("a closed port: %v", ce)
	}
}

// TestOIDCPolicyMustNameOwner: a policy whose identifying rule is only wildcards is refused
// with a 400 that says what to name, and the policy in force stays.
func TestOIDCPolicyMustNameOwner(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	for _, sub := range []string{"repo:*", "*:*", "repo:*:*", "*", "repo:*/infra:*"} {
		err := w.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + w.policyID, Body: map[string]any{"policies": []any{
			map[string]any{"decision": "allow", "tokenType": "team", "teamName": "dev-deployers", "rules": map[string]string{"aud": oidcAud, "sub": sub}},
		}}}, nil)
		ce := wantStatus(t, err, 400)
		if ce != nil && (!strings.Contains(ce.Message, "sub") || !strings.Contains(ce.Message, "repo:acme/infra:*")) {
			t.Errorf("sub %q: the message does not say what to name: %s", sub, ce.Message)
		}
	}
	// The policies in force did not change: an evil repository still gets nothing, acme/infra
	// still gets its team.
	refusedWith(t, "evil repository", w.exchange(t, exchangeParams(w.token("evil/infra", "", nil), "team", "team:dev-deployers"), false), 401, "invalid_request")
	granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "", nil), "team", "team:dev-deployers"), false), "team", "team:dev-deployers", 7200)
}

// TestOIDCReplay: an ID token is exchanged once; a second exchange is refused (401, the
// endpoint's OAuth error shape) and audited, with or without a jti.
func TestOIDCReplay(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	tok := w.token("acme/infra", "production", nil)
	params := exchangeParams(tok, "team", "team:production-deployers")
	granted(t, w.exchange(t, params, false), "team", "team:production-deployers", 7200)
	refusedWith(t, "the same token again", w.exchange(t, params, false), 401, "invalid_request")
	ev := w.lastAudit(t)
	if ev.Outcome != gatehouse.OutcomeFailure || !strings.Contains(ev.Reason, "already exchanged") || ev.TokenID != "" {
		t.Fatalf("audit of the replay: outcome %q, reason %q, token %q", ev.Outcome, ev.Reason, ev.TokenID)
	}
	// Nor as JSON, nor for another token type or a shorter lifetime.
	refusedWith(t, "again as JSON", w.exchange(t, params, true), 401, "invalid_request")
	short := exchangeParams(tok, "team", "team:production-deployers")
	short["expiration"] = "600"
	refusedWith(t, "again, shorter", w.exchange(t, short, false), 401, "invalid_request")

	// A token without jti: the signed token itself is the key.
	noJTI := w.token("acme/infra", "production", func(c map[string]any) { delete(c, "jti") })
	granted(t, w.exchange(t, exchangeParams(noJTI, "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)
	refusedWith(t, "a token without jti again", w.exchange(t, exchangeParams(noJTI, "team", "team:production-deployers"), false), 401, "invalid_request")
	// Its signature re-encoded (other values in the unused low bits of the last base64
	// character decode to the same signature): still the same token, refused as a replay.
	parts := strings.Split(noJTI, ".")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	sig := []byte(parts[2])
	sig[len(sig)-1] = alphabet[strings.IndexByte(alphabet, sig[len(sig)-1])^1]
	rewritten := parts[0] + "." + parts[1] + "." + string(sig)
	refusedWith(t, "a token without jti, signature re-encoded", w.exchange(t, exchangeParams(rewritten, "team", "team:production-deployers"), false), 401, "invalid_request")
	if ev := w.lastAudit(t); !strings.Contains(ev.Reason, "already exchanged") {
		t.Logf("the re-encoded signature was refused for another reason: %s", ev.Reason)
	}

	// A refused exchange does not use the token up: the right request still gets it.
	fresh := w.token("acme/infra", "production", nil)
	refusedWith(t, "the wrong team", w.exchange(t, exchangeParams(fresh, "team", "team:dev-deployers"), false), 401, "invalid_request")
	granted(t, w.exchange(t, exchangeParams(fresh, "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)

	// Records of expired tokens are pruned.
	w.e.clock.Advance(3 * time.Hour)
	granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)
	var left int64
	w.e.must(w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) (err error) {
		left, err = tx.PruneConsumedOIDCTokens()
		return err
	}))
	if left != 0 {
		t.Errorf("%d expired records were left for a manual prune; the server prunes them", left)
	}
}

// TestOIDCReplayRace: of concurrent exchanges of one ID token exactly one gets a token.
func TestOIDCReplayRace(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	params := exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers")
	const n = 8
	statuses := make([]int, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i] = w.exchangeQuiet(params)
		}()
	}
	close(start)
	wg.Wait()
	won := 0
	for _, s := range statuses {
		switch s {
		case 200:
			won++
		case 401:
		default:
			t.Errorf("an exchange answered %d", s)
		}
	}
	if won != 1 {
		t.Fatalf("%d of %d concurrent exchanges of one ID token got a token (statuses %v), want exactly 1", won, n, statuses)
	}
	issued := 0
	for _, ev := range w.audits(t, w.orgID) {
		if ev.Outcome == gatehouse.OutcomeSuccess {
			issued++
		}
	}
	if issued != 1 {
		t.Fatalf("%d successful exchanges audited, want 1", issued)
	}
}

// exchangeQuiet posts a form-encoded exchange from any goroutine and returns the status.
func (w *oidcWorld) exchangeQuiet(params map[string]string) int {
	vals := url.Values{}
	for k, v := range params {
		vals.Set(k, v)
	}
	resp, err := http.Post(w.e.url+"/api/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(vals.Encode()))
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOIDCIssuersPeopleOnly: registering or changing an OIDC issuer and its policies is
// minting tokens (the issuer's ID tokens are exchanged for access tokens), so machine
// credentials may not: an organization token with the admin role, which may not create
// tokens, could register an issuer with a key it held, allow it admin organization tokens
// and a member's personal tokens, and exchange its own ID tokens (found in review). It may
// still read the issuers and their policies.
func TestOIDCIssuersPeopleOnly(t *testing.T) {
	w := newOIDCWorld(t)
	e := w.e
	var ot struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "ci-admin", "role": "admin", "expires": 0}}, &ot))
	m := cliwire.New(e.url, ot.TokenValue)
	wantStatus(t, m.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "more", "role": "admin"}}, nil), 403)
	own := oidctest.New(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{own.SigningKey().Public()}}
	reg := map[string]any{"name": "mine", "url": own.URL, "jwks": set, "maxExpiration": 90000}
	wantStatus(t, m.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: reg}, nil), 403)
	// A person registers it; the machine token reads it but changes nothing.
	var iss struct{ ID string }
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: reg}, &iss))
	var pol struct{ ID string }
	e.must(m.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers"}, nil))
	e.must(m.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers/" + iss.ID}, nil))
	e.must(m.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auth/policies/oidcissuers/" + iss.ID}, &pol))
	wantStatus(t, m.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + pol.ID, Body: map[string]any{"policies": []any{
		map[string]any{"decision": "allow", "tokenType": "organization", "authorizedPermissions": []string{"admin"}, "rules": map[string]string{"sub": "repo:x/*"}},
	}}}, nil), 403)
	wantStatus(t, m.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/oidc/issuers/" + iss.ID, Body: map[string]any{"maxExpiration": 100}}, nil), 403)
	wantStatus(t, m.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/oidc/issuers/" + iss.ID}, nil), 403)
	// With no policy allowing anything, its ID tokens are exchanged for nothing.
	if r := w.exchange(t, exchangeParams(own.Sign(own.Claims(oidcAud, "x/y", "", e.clock.Now())), "organization", "admin"), false); r.Status == 200 {
		t.Fatalf("exchange without a policy: %d %s", r.Status, r.Raw)
	}
}
