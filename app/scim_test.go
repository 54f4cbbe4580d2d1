package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/scimwire"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
)

// scimPair is two Gatehouse processes on one PostgreSQL database, each behind its own
// HTTP server, with acme's SCIM token.
type scimPair struct {
	srvs  []*app.Server
	urls  []string
	admin string
	scim  []*scimwire.Client // the SCIM client of each process
}

func newSCIMPair(t *testing.T) *scimPair {
	ctx := context.Background()
	cluster := pgtest.Start(t)
	api := httpapi.DefaultConfig()
	api.AuthFailureLimit = 0
	cfg := app.Config{DataDir: t.TempDir(), Database: cluster.NewDatabase(t)}
	p := &scimPair{}
	for range 2 {
		s, err := app.Open(ctx, cfg, api, quiet)
		if err != nil {
			t.Fatal(err)
		}
		hs := httptest.NewServer(s.Handler)
		t.Cleanup(func() { hs.Close(); s.Close() })
		p.srvs, p.urls = append(p.srvs, s), append(p.urls, hs.URL)
	}
	var err error
	if p.admin, err = app.Bootstrap(ctx, p.srvs[0].Store, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	var out struct {
		Token string `json:"token"`
	}
	if err := cliwire.New(p.urls[0], p.admin).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/scim/token"}, &out); err != nil {
		t.Fatal(err)
	}
	for _, u := range p.urls {
		p.scim = append(p.scim, &scimwire.Client{BaseURL: u + "/scim/v2/acme", Token: out.Token})
	}
	return p
}

func (p *scimPair) createUser(t *testing.T, c *scimwire.Client, userName string) string {
	t.Helper()
	r, err := c.Do("POST", "/Users", fmt.Sprintf(`{"userName":%q,"emails":[{"value":%q,"type":"work"}]}`, userName, userName))
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("create %s: %v %#v", userName, err, r)
	}
	return r.String("id")
}

// TestSCIMDeprovisionTwoProcessesPostgres: a person deprovisioned through one process is
// refused on their very next request through the other (which had their identity cached),
// with their personal token and with their browser session; reactivation gives the
// membership back, not the token.
func TestSCIMDeprovisionTwoProcessesPostgres(t *testing.T) {
	p := newSCIMPair(t)
	id := p.createUser(t, p.scim[0], "jo@example.com")
	v, tk, err := app.NewToken(gatehouse.TokenPersonal)
	if err != nil {
		t.Fatal(err)
	}
	tk.Name = "laptop"
	tk.UserID, _ = strconv.ParseInt(id, 10, 64)
	err = p.srvs[0].Store.Update(context.Background(), func(tx gatehouse.Tx) error { return tx.CreateToken(tk) })
	if err != nil {
		t.Fatal(err)
	}
	// A browser session of jo's, started by acme's sign-in.
	const cookie = "scim-two-processes-session"
	err = p.srvs[0].Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		now := time.Now()
		return tx.CreateSession(&gatehouse.Session{Digest: sso.SessionDigest(cookie), UserID: tk.UserID, OrgID: 1, Method: gatehouse.SignInSAML,
			IdleExpires: now.Add(time.Hour), Expires: now.Add(8 * time.Hour), CSRF: "x"})
	})
	if err != nil {
		t.Fatal(err)
	}
	sessionGet := func(url string) int {
		req, _ := http.NewRequest("GET", url+"/api/orgs/acme", nil)
		req.AddCookie(&http.Cookie{Name: sso.DevCookieName, Value: cookie})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	jo := cliwire.New(p.urls[1], v)
	for range 3 { // cached on process 2
		if err := jo.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil); err != nil {
			t.Fatal(err)
		}
		if code := sessionGet(p.urls[1]); code != 200 {
			t.Fatalf("jo's session before: HTTP %d", code)
		}
	}
	r, err := p.scim[0].Do("PATCH", "/Users/"+id, `{"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"],"Operations":[{"op":"replace","value":{"active":false}}]}`)
	if err != nil || r.Status != 200 || r.String("active") != "false" {
		t.Fatalf("deactivate: %v %#v", err, r)
	}
	err = jo.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil)
	if cliwire.Status(err) != http.StatusUnauthorized {
		t.Fatalf("the deprovisioned person's token through the second process: %v, want 401", err)
	}
	if code := sessionGet(p.urls[1]); code != http.StatusUnauthorized {
		t.Fatalf("the deprovisioned person's session through the second process: HTTP %d, want 401", code)
	}
	r, err = p.scim[1].Do("PATCH", "/Users/"+id, `{"Operations":[{"op":"Replace","path":"active","value":"True"}]}`)
	if err != nil || r.Status != 200 || r.String("active") != "true" {
		t.Fatalf("reactivate: %v %#v", err, r)
	}
	if err := jo.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil); cliwire.Status(err) != http.StatusUnauthorized {
		t.Fatalf("a revoked token came back with the reactivation: %v", err)
	}
}

// TestSCIMConcurrentGroupPatchesPostgres: PATCHes of one group sent at the same time
// through two processes all apply; no member is lost.
func TestSCIMConcurrentGroupPatchesPostgres(t *testing.T) {
	p := newSCIMPair(t)
	const n = 16
	ids := make([]string, n)
	for i := range ids {
		ids[i] = p.createUser(t, p.scim[i%2], fmt.Sprintf("u%02d@example.com", i))
	}
	r, err := p.scim[0].Do("POST", "/Groups", `{"displayName":"Racers","members":[]}`)
	if err != nil || r.Status != http.StatusCreated {
		t.Fatalf("%v %#v", err, r)
	}
	gid := r.String("id")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"Operations":[{"op":"add","path":"members","value":[{"value":%q}]}]}`, ids[i])
			r, err := p.scim[i%2].Do("PATCH", "/Groups/"+gid, body)
			if err == nil && r.Status != http.StatusNoContent {
				err = fmt.Errorf("PATCH %d: %#v", i, r)
			}
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err = p.scim[1].Do("GET", "/Groups/"+gid, nil)
	if err != nil || r.Status != 200 {
		t.Fatalf("%v %#v", err, r)
	}
	if ms, _ := r.JSON["members"].([]any); len(ms) != n {
		t.Fatalf("%d members after %d concurrent adds: %s", len(ms), n, r.Body)
	}
	// And concurrent removals of half of them, through both processes.
	for i := 0; i < n; i += 2 {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"Operations":[{"op":"remove","path":"members[value eq \"%s\"]"}]}`, ids[i])
			if r, err := p.scim[(i/2)%2].Do("PATCH", "/Groups/"+gid, body); err != nil || r.Status != http.StatusNoContent {
				t.Errorf("remove %d: %v %#v", i, err, r)
			}
		}(i)
	}
	wg.Wait()
	r, _ = p.scim[0].Do("GET", "/Groups/"+gid, nil)
	if ms, _ := r.JSON["members"].([]any); len(ms) != n/2 {
		t.Fatalf("%d members after removing %d of %d: %s", len(ms), n/2, n, r.Body)
	}
}
