package httpapi_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

type createdToken struct {
	ID         string `json:"id"`
	TokenValue string `json:"tokenValue"`
	Expires    int64  `json:"expires"`
}

func TestTokenExpiryAndRotation(t *testing.T) {
	e := newEnv(t)
	var tok createdToken
	exp := e.clock.Now().Add(time.Hour).Unix()
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "laptop", "expires": exp}}, &tok))
	laptop := cliwire.New(e.url, tok.TokenValue)
	e.must(laptop.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	e.clock.Advance(61 * time.Minute)
	wantStatus(t, laptop.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)

	// Rotation: a successor now, the old token keeps working for the grace period, then dies.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "ci"}}, &tok))
	old := cliwire.New(e.url, tok.TokenValue)
	var rot struct {
		TokenValue        string `json:"tokenValue"`
		PreviousTokenEnds int64  `json:"previousTokenEnds"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + tok.ID + "/rotate", Body: map[string]any{"graceSeconds": 600}}, &rot))
	next := cliwire.New(e.url, rot.TokenValue)
	e.must(old.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	e.must(next.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	e.clock.Advance(11 * time.Minute)
	wantStatus(t, old.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	e.must(next.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))

	// Both events are in the audit log.
	var rotated, created bool
	evs, err := listAudit(e)
	e.must(err)
	for _, ev := range evs {
		if ev.Action == "user:tokens" && ev.Outcome == "success" && ev.Details["rotated_to"] != "" {
			rotated = true
		}
		if ev.Action == "user:tokens" && ev.Details["token_name"] == "ci" {
			created = true
		}
	}
	if !rotated || !created {
		t.Fatalf("audit: rotated %v created %v", rotated, created)
	}

	// Listing never shows values, and shows expired tokens only when asked.
	var list struct {
		Tokens []map[string]any `json:"tokens"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens?filter=all"}, &list))
	for _, tk := range list.Tokens {
		for k, v := range tk {
			if s, ok := v.(string); ok && len(s) > 20 && s[:10] == "gatehouse_" {
				t.Fatalf("listing shows a token value in %s", k)
			}
		}
	}
}

func TestOrgTokenLifetimePolicy(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setMaxAccessTokenExpiryDays": 30}}, nil))
	// The bootstrap token never expires: it now violates the policy in acme.
	err := e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)
	if ce := wantStatus(t, err, 403); !strings.Contains(ce.Message, "30 days") {
		t.Fatalf("refusal does not say why: %s", ce.Message)
	}
	// An exempt call (identity) still works, so the admin can make a compliant token.
	var tok createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "short"}}, &tok))
	if tok.Expires == 0 || time.Unix(tok.Expires, 0).After(e.clock.Now().Add(30*24*time.Hour+time.Minute)) {
		t.Fatalf("new token expiry %d not capped at 30 days", tok.Expires)
	}
	short := cliwire.New(e.url, tok.TokenValue)
	e.must(e.createStack(short, "acme", "p", "s", nil))
	// Asking for longer is refused.
	long := e.clock.Now().Add(90 * 24 * time.Hour).Unix()
	wantStatus(t, short.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "long", "expires": long}}, nil), 400)
}

func TestFailedAuthRateLimit(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 5; c.AuthFailureWindow = time.Minute })
	bad := cliwire.New(e.url, "gatehouse_pat_0000000000000000000000000000000000000A")
	for i := 0; i < 5; i++ {
		wantStatus(t, bad.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	}
	err := bad.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil)
	ce := wantStatus(t, err, 429)
	if ra, _ := strconv.Atoi(ce.Header.Get("Retry-After")); ra < 1 || ra > 61 {
		t.Fatalf("Retry-After = %q", ce.Header.Get("Retry-After"))
	}
	// While blocked, a valid token from that address is still served.
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	// A second process on the same data sees the count: its first failure blocks too.
	other := e.clone(t, func(c *httpapi.Config) { c.AuthFailureLimit = 5; c.AuthFailureWindow = time.Minute })
	other.clock.set(e.clock.Now())
	wantStatus(t, cliwire.New(other.url, "gatehouse_pat_0000000000000000000000000000000000000A").Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 429)
	// After the window, the address may try again.
	e.clock.Advance(2 * time.Minute)
	e.srv.Store.(interface{ SetClock(func() time.Time) }).SetClock(e.clock.Now)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	// Failures are in the audit log: the first at once, the others summarized (with
	// their count) when the server closes at the latest.
	e.srv.API.Close()
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Outcome == "failure" && ev.ActorKind == "anonymous" {
			c, err := strconv.Atoi(ev.Details["count"])
			if err != nil {
				c = 1
			}
			n += c
		}
	}
	if n < 5 {
		t.Fatalf("only %d failed authentications recorded", n)
	}
}

// TestRevocationAcrossProcesses: two servers on one data store; a token revoked through one
// is refused by the other on the very next request (no cache outlives the revocation).
func TestRevocationAcrossProcesses(t *testing.T) {
	a := newEnv(t)
	var tok createdToken
	a.must(a.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "pipeline"}}, &tok))
	// Process B serves the same SQLite database file (not a copy).
	b := openEnv(t, a.dir, a.admin.Token)
	viaA, viaB := cliwire.New(a.url, tok.TokenValue), cliwire.New(b.url, tok.TokenValue)
	a.must(viaB.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil)) // B caches it
	a.must(viaA.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	a.must(a.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/tokens/" + tok.ID}, nil))
	wantStatus(t, viaB.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	wantStatus(t, viaA.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)

	// Removing a member through A takes their access away on B at once too.
	var u struct {
		TokenValue string `json:"tokenValue"`
	}
	a.must(a.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "dave", "role": "admin"}}, &u))
	dave := cliwire.New(b.url, u.TokenValue)
	a.must(dave.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil))
	a.must(a.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/dave"}, nil))
	wantStatus(t, dave.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil), 404)
}

func TestTokenLastUsed(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		var list struct {
			Tokens []struct {
				LastUsed     int64  `json:"lastUsed"`
				LastUsedFrom string `json:"lastUsedFrom"`
			} `json:"tokens"`
		}
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens"}, &list))
		if len(list.Tokens) == 1 && list.Tokens[0].LastUsed > 0 && list.Tokens[0].LastUsedFrom == "127.0.0.1" {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("last use was not recorded within 5s")
}
