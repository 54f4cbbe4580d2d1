package httpapi_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// pauseHeader marks the request the epoch hook holds.
const pauseHeader = "X-Test-Pause"

// pauser holds every request carrying pauseHeader right after its read transaction read
// the security epoch, until released.
type pauser struct {
	paused  chan struct{}
	release chan struct{}
}

func newPauser(e *env) *pauser {
	p := &pauser{paused: make(chan struct{}, 1), release: make(chan struct{})}
	httpapi.SetEpochReadHook(e.srv.API, func(r *http.Request) {
		if r.Header.Get(pauseHeader) == "" {
			return
		}
		p.paused <- struct{}{}
		<-p.release
	})
	return p
}

// securityChange is one change of security facts and a request it must refuse from then on.
type securityChange struct {
	name string
	// setup prepares the world; it returns the client whose probe is checked.
	setup  func(t *testing.T, e *env) *cliwire.Client
	probe  cliwire.Call
	change func(t *testing.T, e *env)
	// refused is the status the probe gets after the change.
	refused int
}

// bobWorld adds user bob (member of acme) and stack proj/prod (tag env=production); it
// returns bob's client.
func bobWorld(t *testing.T, e *env) *cliwire.Client {
	t.Helper()
	var u struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &u))
	e.must(e.createStack(e.admin, "acme", "proj", "prod", map[string]string{"env": "production"}))
	return cliwire.New(e.url, u.TokenValue)
}

// bobTeam gives bob a team with grant g.
func bobTeam(t *testing.T, e *env, g map[string]any) {
	t.Helper()
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "bobs"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/bobs", Body: map[string]any{"memberAction": "add", "member": "bob", "addGrant": g}}, nil))
}

var laptopID string // ID of the personal token (alice's) the revocation case revokes

var securityChanges = []securityChange{
	{
		name:  "member removed",
		setup: bobWorld,
		probe: cliwire.Call{Method: "GET", Path: "/api/orgs/acme"},
		change: func(t *testing.T, e *env) {
			e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/bob"}, nil))
		},
		refused: http.StatusNotFound,
	},
	{
		name: "token revoked",
		setup: func(t *testing.T, e *env) *cliwire.Client {
			var tok struct {
				ID         string `json:"id"`
				TokenValue string `json:"tokenValue"`
			}
			e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "laptop"}}, &tok))
			laptopID = tok.ID
			return cliwire.New(e.url, tok.TokenValue)
		},
		probe: cliwire.Call{Method: "GET", Path: "/api/user"},
		change: func(t *testing.T, e *env) {
			e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/user/tokens/" + laptopID}, nil))
		},
		refused: http.StatusUnauthorized,
	},
	{
		name: "grant removed",
		setup: func(t *testing.T, e *env) *cliwire.Client {
			bob := bobWorld(t, e)
			bobTeam(t, e, map[string]any{"stack": "proj/prod", "permission": "read"})
			return bob
		},
		probe: cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "prod")},
		change: func(t *testing.T, e *env) {
			e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/bobs", Body: map[string]any{"removeGrant": map[string]any{"stack": "proj/prod", "permission": "read"}}}, nil))
		},
		refused: http.StatusNotFound,
	},
	{
		name: "protection added",
		setup: func(t *testing.T, e *env) *cliwire.Client {
			bob := bobWorld(t, e)
			bobTeam(t, e, map[string]any{"stack": "proj/prod", "permission": "write"})
			return bob
		},
		probe: cliwire.Call{Method: "PATCH", Path: stackPath("acme", "proj", "prod") + "/tags", Body: map[string]string{"env": "production"}},
		change: func(t *testing.T, e *env) {
			e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
		},
		refused: http.StatusForbidden,
	},
}

// TestAuthCacheNotRefilledByStaleSnapshot reproduces the interleaving that refilled the
// security-epoch cache with revoked permissions: a request's read transaction (a SQLite
// snapshot) begins before a security change commits; another request then moves the cache
// to the new epoch; the first request goes on, loads the old facts from its snapshot and,
// before the fix, stored them under the new epoch, where every later request found them.
// The next request after the change must be refused. "across servers": the change is made
// through another server on the same database (another process, as far as caches go).
func TestAuthCacheNotRefilledByStaleSnapshot(t *testing.T) {
	for _, across := range []bool{false, true} {
		for _, c := range securityChanges {
			name := c.name
			if across {
				name += " across servers"
			}
			t.Run(name, func(t *testing.T) {
				a := newEnv(t, func(cfg *httpapi.Config) { cfg.AuthFailureLimit = 0 })
				cl := c.setup(t, a)
				b := a // serves the probes
				if across {
					b = openEnv(t, a.dir, a.admin.Token, func(cfg *httpapi.Config) { cfg.AuthFailureLimit = 0 })
					cl = cliwire.New(b.url, cl.Token)
				}
				a.must(cl.Do(c.probe, nil)) // allowed, and cached
				p := newPauser(b)
				slow := c.probe
				slow.Header = http.Header{pauseHeader: {"1"}}
				done := make(chan error, 1)
				go func() { done <- cl.Do(slow, nil) }()
				select {
				case <-p.paused: // its snapshot is taken: the change is not in it
				case <-time.After(30 * time.Second):
					t.Fatal("the paused request never read the epoch")
				}
				c.change(t, a)
				// Another caller's request moves the cache to the new epoch.
				a.must(b.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil))
				close(p.release)
				select {
				case <-done: // it began before the change: either answer is right
				case <-time.After(30 * time.Second):
					t.Fatal("the paused request never finished")
				}
				for i := range 3 {
					if err := cl.Do(c.probe, nil); cliwire.Status(err) != c.refused {
						t.Fatalf("request %d after the change (%s): want %d, got %v", i+1, c.name, c.refused, err)
					}
				}
			})
		}
	}
}

// TestRevocationUnderConcurrentLoad hammers a token and a membership from many goroutines
// while they are revoked, round after round: every request that started after the
// revocation's response arrived must be refused. Each request waits a random moment after
// reading the security epoch (and another caller keeps moving the cache to the newest
// epoch), which widens the window in which a request that began before the change could
// refill the cache with what its snapshot holds.
func TestRevocationUnderConcurrentLoad(t *testing.T) {
	type round struct {
		c      *cliwire.Client
		probe  cliwire.Call
		revoke func()
		want   int
	}
	cases := []struct {
		name  string
		setup func(e *env) func(i int) round
	}{
		{"member removed", func(e *env) func(int) round {
			bob := bobWorld(t, e)
			return func(i int) round {
				if i > 0 { // bob back in acme
					e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/members/bob", Body: map[string]string{"role": "member"}}, nil))
				}
				return round{bob, cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, func() {
					e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/bob"}, nil))
				}, http.StatusNotFound}
			}
		}},
		{"token revoked", func(e *env) func(int) round {
			return func(i int) round {
				var tok struct {
					ID         string `json:"id"`
					TokenValue string `json:"tokenValue"`
				}
				e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": fmt.Sprintf("laptop-%d", i)}}, &tok))
				return round{cliwire.New(e.url, tok.TokenValue), cliwire.Call{Method: "GET", Path: "/api/user"}, func() {
					e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/user/tokens/" + tok.ID}, nil))
				}, http.StatusUnauthorized}
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, func(cfg *httpapi.Config) { cfg.AuthFailureLimit = 0 })
			next := c.setup(e)
			var seed atomic.Uint64
			httpapi.SetEpochReadHook(e.srv.API, func(*http.Request) {
				n := seed.Add(0x9e3779b97f4a7c15)
				time.Sleep(time.Duration(n>>40%3000) * time.Microsecond)
			})
			const rounds, workers, maxCalls = 4, 8, 300
			deadline := time.Now().Add(60 * time.Second)
			var after int64
			for i := 0; i < rounds && time.Now().Before(deadline); i++ {
				r := next(i)
				e.must(r.c.Do(r.probe, nil))
				var revokedAt atomic.Int64 // unix nanos once the revocation's response arrived
				var stop atomic.Bool
				var mu sync.Mutex
				var bad []string
				var n atomic.Int64
				var wg sync.WaitGroup
				wg.Add(1)
				go func() { // another caller: moves the cache to each new epoch at once
					defer wg.Done()
					for !stop.Load() {
						_ = e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil)
					}
				}()
				for w := range workers {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for k := 0; k < maxCalls && !stop.Load() && time.Now().Before(deadline); k++ {
							began := time.Now().UnixNano()
							rev := revokedAt.Load()
							err := r.c.Do(r.probe, nil)
							if rev == 0 || began < rev {
								continue // began before the revocation returned: either answer is right
							}
							n.Add(1)
							if cliwire.Status(err) != r.want {
								mu.Lock()
								bad = append(bad, fmt.Sprintf("round %d worker %d call %d: want %d, got %v", i, w, k, r.want, err))
								mu.Unlock()
							}
						}
					}()
				}
				time.Sleep(30 * time.Millisecond) // let the load build up
				r.revoke()
				revokedAt.Store(time.Now().UnixNano())
				time.Sleep(200 * time.Millisecond)
				stop.Store(true)
				wg.Wait()
				if len(bad) > 0 {
					t.Fatalf("%d requests that began after the revocation were allowed, e.g. %s", len(bad), bad[0])
				}
				if err := r.c.Do(r.probe, nil); cliwire.Status(err) != r.want {
					t.Fatalf("round %d, after the load: want %d, got %v", i, r.want, err)
				}
				after += n.Load()
			}
			t.Logf("%d requests began after a revocation had returned; all refused", after)
			if after == 0 {
				t.Fatal("no request began after a revocation: the test proved nothing")
			}
		})
	}
}
