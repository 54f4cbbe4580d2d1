package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type env struct {
	t     *testing.T
	srv   *app.Server
	url   string
	admin *cliwire.Client
	clock *clock
	dir   string
	// close stops the server and closes its store (also at the test's end); idempotent.
	close func()
}

// newEnv starts a bootstrapped Gatehouse (SQLite in a temp dir) behind httptest.
func newEnv(t *testing.T, tweak ...func(*httpapi.Config)) *env {
	t.Helper()
	return openEnv(t, t.TempDir(), "", tweak...)
}

// openEnv serves the data directory dir; an empty adminToken bootstraps it first.
func openEnv(t *testing.T, dir, adminToken string, tweak ...func(*httpapi.Config)) *env {
	t.Helper()
	ctx := context.Background()
	clk := &clock{t: time.Now()}
	cfg := httpapi.DefaultConfig()
	cfg.Now = clk.Now
	for _, f := range tweak {
		f(&cfg)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.Open(ctx, app.Config{DataDir: dir}, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.Store.(*sqlstore.DB).Clock = clk.Now // one clock for leases and the store
	srv.StartWorkers()
	tok := adminToken
	if tok == "" {
		if tok, err = app.Bootstrap(ctx, srv.Store, "acme", "alice"); err != nil {
			t.Fatal(err)
		}
	}
	hs := httptest.NewServer(srv.Handler)
	var once sync.Once
	stop := func() { once.Do(func() { hs.Close(); srv.Close() }) }
	t.Cleanup(stop)
	return &env{t: t, srv: srv, url: hs.URL, admin: cliwire.New(hs.URL, tok), clock: clk, dir: dir, close: stop}
}

// clone copies the environment's data (database and key file) into a new environment,
// a cheap way to get many identical worlds.
func (e *env) clone(t *testing.T, tweak ...func(*httpapi.Config)) *env {
	t.Helper()
	db := e.srv.Store.(*sqlstore.DB)
	if _, err := db.Writer().Exec("PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The WAL goes along: a checkpoint cannot always finish while readers are open.
	for _, name := range []string{"gatehouse.db", "gatehouse.db-wal", "gatehouse.key"} {
		b, err := os.ReadFile(filepath.Join(e.dir, name))
		if os.IsNotExist(err) && name == "gatehouse.db-wal" {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c := openEnv(t, dir, e.admin.Token, tweak...)
	c.clock.set(e.clock.Now()) // under the lock: the new server's workers read the clock
	return c
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// wantStatus asserts an error with the given HTTP status whose JSON body carries code.
func wantStatus(t *testing.T, err error, status int) *cliwire.Error {
	t.Helper()
	ce, ok := err.(*cliwire.Error)
	if !ok {
		t.Fatalf("want HTTP %d, got %v", status, err)
	}
	if ce.Status != status || ce.Code != status {
		t.Fatalf("want HTTP %d with code %d, got HTTP %d code %d: %s", status, status, ce.Status, ce.Code, ce.Body)
	}
	return ce
}

func stackPath(org, project, stack string) string {
	return "/api/stacks/" + org + "/" + project + "/" + stack
}

func (e *env) createStack(c *cliwire.Client, org, project, stack string, tags map[string]string) error {
	req := apitype.CreateStackRequest{StackName: stack, Tags: map[apitype.StackTagName]string{}}
	for k, v := range tags {
		req.Tags[k] = v
	}
	return c.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/" + org + "/" + project, Body: req}, &json.RawMessage{})
}

// run is one update as the CLI drives it.
type run struct {
	e       *env
	c       *cliwire.Client
	path    string // stack path
	ID      string
	Lease   string
	Version int
}

func (e *env) startRun(c *cliwire.Client, path, kind string, dry bool) (*run, error) {
	req := apitype.UpdateProgramRequest{Name: "proj", Runtime: "nodejs", Options: apitype.UpdateOptions{DryRun: dry},
		Metadata: apitype.UpdateMetadata{Message: "test " + kind, Environment: map[string]string{"exec.kind": "cli"}},
		Config:   map[string]apitype.ConfigValue{"proj:greeting": {String: "hi"}}}
	var created apitype.UpdateProgramResponse
	if err := c.Do(cliwire.Call{Method: http.MethodPost, Path: path + "/" + kind, Body: req}, &created); err != nil {
		return nil, err
	}
	var started apitype.StartUpdateResponse
	start := apitype.StartUpdateRequest{Tags: map[apitype.StackTagName]string{"pulumi:project": "proj"}}
	if err := c.Do(cliwire.Call{Method: http.MethodPost, Path: path + "/update/" + created.UpdateID, Body: start}, &started); err != nil {
		return &run{e: e, c: c, path: path, ID: created.UpdateID}, err
	}
	if started.Token == "" {
		e.t.Fatal("start update returned an empty lease token")
	}
	return &run{e: e, c: c, path: path, ID: created.UpdateID, Lease: started.Token, Version: started.Version}, nil
}

func (r *run) lease(method, suffix string, body any, out any) error {
	return r.c.Do(cliwire.Call{Method: method, Path: r.path + "/update/" + r.ID + suffix, LeaseToken: r.Lease, Body: body, Gzip: body != nil && suffix != "/complete" && suffix != "/renew_lease"}, out)
}

func (r *run) checkpoint(dep json.RawMessage) error {
	return r.lease(http.MethodPatch, "/checkpoint", apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: dep}, nil)
}

func (r *run) events(seqs ...int) error {
	var evs []apitype.EngineEvent
	for _, s := range seqs {
		evs = append(evs, apitype.EngineEvent{Sequence: s, Timestamp: int(time.Now().Unix()), StdoutEvent: &apitype.StdoutEngineEvent{Message: "hello", Color: "never"}})
	}
	return r.lease(http.MethodPost, "/events/batch", apitype.EngineEventBatch{Events: evs}, nil)
}

func (r *run) complete(status string) error {
	return r.lease(http.MethodPost, "/complete", apitype.CompleteUpdateRequest{Status: apitype.UpdateStatus(status)}, nil)
}

// deployment returns a v3 deployment with n resources (a stack and n-1 components).
func deployment(n int, secretsProvider string) json.RawMessage {
	res := make([]map[string]any, 0, n)
	for i := 0; i < n; i++ {
		typ := "bench:index:Comp"
		if i == 0 {
			typ = "pulumi:pulumi:Stack"
		}
		res = append(res, map[string]any{
			"urn": "urn:pulumi:dev::proj::" + typ + "::r" + itoa(i), "custom": false, "type": typ,
			"outputs": map[string]any{"index": i},
		})
	}
	dep := map[string]any{
		"manifest":  map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"},
		"resources": res,
	}
	if secretsProvider != "" {
		dep["secrets_providers"] = json.RawMessage(secretsProvider)
	}
	b, _ := json.Marshal(dep)
	return b
}

func itoa(i int) string { return json.Number(jsonInt(i)).String() }

func jsonInt(i int) string { b, _ := json.Marshal(i); return string(b) }

var _ = gatehouse.Version

// listAudit returns the newest audit events (site-wide) straight from the store.
func listAudit(e *env) ([]gatehouse.AuditEvent, error) {
	var evs []gatehouse.AuditEvent
	err := e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{Limit: 10000})
		return err
	})
	return evs, err
}
