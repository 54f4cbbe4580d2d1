package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/postgres/pgtest"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// migrateWorld is a Gatehouse with some of everything in its database, and what a client
// saw of it before the migration.
type migrateWorld struct {
	dir        string
	admin, bob string // token values
	ciphertext []byte
	plaintext  string
	exported   json.RawMessage // export of acme/web/prod
	history    []apitype.UpdateInfo
	deletedID  int64 // ID of a stack that was deleted (never to be handed out again)
	deployment *gatehouse.Deployment
}

// mgServe serves cfg on loopback; the returned function stops it (and so does the test's
// end).
func mgServe(t *testing.T, cfg app.Config) (*app.Server, string, func()) {
	t.Helper()
	srv, err := app.Open(context.Background(), cfg, httpapi.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler)
	var once sync.Once
	stop := func() { once.Do(func() { hs.Close(); mgMust(t, srv.Close()) }) }
	t.Cleanup(stop)
	return srv, hs.URL, stop
}

func mgMust(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mgCheckpoint(stack string, n int) json.RawMessage {
	res := []map[string]any{{"urn": "urn:pulumi:" + stack + "::web::pulumi:pulumi:Stack::web-" + stack, "type": "pulumi:pulumi:Stack", "custom": false}}
	for i := 1; i < n; i++ {
		res = append(res, map[string]any{"urn": fmt.Sprintf("urn:pulumi:%s::web::x:index:Thing::t%d", stack, i), "type": "x:index:Thing",
			"custom": true, "id": fmt.Sprintf("id-%d", i), "outputs": map[string]any{"index": i, "name": fmt.Sprintf("thing-%d", i)}})
	}
	b, _ := json.Marshal(map[string]any{"manifest": map[string]any{"time": "2026-01-02T03:04:05Z", "magic": "m", "version": "v3"}, "resources": res})
	return b
}

// populate fills a SQLite Gatehouse in dir through the API (and a few rows through the
// store), then closes it.
func mgPopulate(t *testing.T, dir string) *migrateWorld {
	t.Helper()
	ctx := context.Background()
	w := &migrateWorld{dir: dir, plaintext: "s3cret-password"}
	srv, url, stop := mgServe(t, app.Config{DataDir: dir})
	// Larger checkpoints in object storage: their rows hold references.
	blobs, err := app.AttachBlobStore(ctx, srv.Store, mgBlobURL(dir), 2000)
	mgMust(t, err)
	defer blobs.Close()
	w.admin, err = app.Bootstrap(ctx, srv.Store, "acme", "alice")
	mgMust(t, err)
	admin := cliwire.New(url, w.admin)

	// Users, tokens, another organization, teams, grants, protection.
	var user struct {
		TokenValue string `json:"tokenValue"`
	}
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &user))
	w.bob = user.TokenValue
	var tok struct {
		ID string `json:"id"`
	}
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/user/tokens", Body: map[string]any{"name": "laptop", "description": "to be revoked"}}, &tok))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/user/tokens/" + tok.ID}, nil))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, &json.RawMessage{}))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops", "description": "operators"}}, &json.RawMessage{}))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "inventory", "role": "member"}}, &json.RawMessage{}))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/acme/teams/ops", Body: map[string]string{"member": "bob", "memberAction": "add"}}, &json.RawMessage{}))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/acme/teams/ops",
		Body: map[string]any{"addGrant": map[string]any{"tag": "env=production", "permission": "read", "decrypt": true}}}, &json.RawMessage{}))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/protections", Body: map[string]string{"project": "infra"}}, nil))

	// An environment with a secret, two revisions, a tag and an open session.
	esc := "/api/esc/environments/acme/app/dev"
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/esc/environments/acme", Body: map[string]string{"project": "app", "name": "dev"}}, nil))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPatch, Path: esc, Body: []byte("values:\n  pw:\n    fn::secret: hunter2\n")}, nil))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: esc + "/versions/tags", Body: map[string]any{"name": "prod", "revision": 2}}, nil))
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: esc + "/open?duration=1h"}, nil))

	// Stacks: one deleted, one with two updates (checkpoints, events), a secret.
	create := func(project, stack string) {
		mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/acme/" + project,
			Body: apitype.CreateStackRequest{StackName: stack, Tags: map[apitype.StackTagName]string{"env": "production"}}}, &json.RawMessage{}))
	}
	create("web", "doomed")
	var st apitype.Stack
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/web/doomed"}, &st))
	mgMust(t, srv.Store.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		s, err := tx.GetStack(o.ID, "web", "doomed")
		w.deletedID = s.ID
		return err
	}))
	create("web", "dev")
	create("web", "prod")
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/stacks/acme/web/doomed"}, nil))
	sp := "/api/stacks/acme/web/prod"
	var enc apitype.EncryptValueResponse
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(w.plaintext)}}, &enc))
	w.ciphertext = enc.Ciphertext
	for round := 1; round <= 2; round++ {
		var created apitype.UpdateProgramResponse
		mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update", Body: apitype.UpdateProgramRequest{Name: "web", Runtime: "nodejs",
			Metadata: apitype.UpdateMetadata{Message: "round", Environment: map[string]string{"exec.kind": "cli"}}}}, &created))
		var started apitype.StartUpdateResponse
		mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + created.UpdateID, Body: apitype.StartUpdateRequest{}}, &started))
		lease := func(method, suffix string, body any) {
			mgMust(t, admin.Do(cliwire.Call{Method: method, Path: sp + "/update/" + created.UpdateID + suffix, LeaseToken: started.Token, Body: body,
				Gzip: suffix != "/complete"}, nil))
		}
		lease(http.MethodPost, "/events/batch", apitype.EngineEventBatch{Events: []apitype.EngineEvent{
			{Sequence: 0, Timestamp: 1, StdoutEvent: &apitype.StdoutEngineEvent{Message: "hi", Color: "never"}},
			{Sequence: 1, Timestamp: 2, SummaryEvent: &apitype.SummaryEvent{ResourceChanges: map[apitype.OpType]int{"create": 3}}}}})
		for k := 1; k <= 3; k++ {
			lease(http.MethodPatch, "/checkpoint", apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: mgCheckpoint("prod", 10*round+k)})
		}
		lease(http.MethodPost, "/complete", apitype.CompleteUpdateRequest{Status: apitype.UpdateStatusSucceeded})
	}
	var exp apitype.UntypedDeployment
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: sp + "/export"}, &exp))
	w.exported = exp.Deployment
	var hist apitype.GetHistoryResponse
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: sp + "/updates"}, &hist))
	w.history = hist.Updates
	// A denied call and a failed authentication are audited too.
	if err := cliwire.New(url, w.bob).Do(cliwire.Call{Method: http.MethodDelete, Path: sp}, nil); cliwire.Status(err) < 400 {
		t.Fatalf("bob deleting a stack: %v", err)
	}
	_ = cliwire.New(url, "gatehouse_pat_0000000000000000000000000000000000000000").Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil)

	// The replay record of an exchanged OIDC ID token.
	mgMust(t, srv.Store.Update(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		_, err = tx.ConsumeOIDCToken(o.ID, "0123456789abcdef", time.Now().Add(time.Hour))
		return err
	}))
	// A deployment with its principals (who triggered it, who edited its settings).
	mgMust(t, srv.Store.Update(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		st, err := tx.GetStack(o.ID, "web", "prod")
		if err != nil {
			return err
		}
		w.deployment = &gatehouse.Deployment{OrgID: o.ID, StackID: st.ID, Operation: "preview", Request: []byte(`{}`), Initiator: "api", RequestedBy: "alice",
			ActsFor: gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: "1"}, Editor: gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: "tok-2"}}
		return tx.CreateDeployment(w.deployment)
	}))

	// A signed checkpoint of the audit chain.
	signer, err := app.LoadAuditSigner("", dir)
	mgMust(t, err)
	_, err = app.Checkpoint(ctx, srv.Store, signer, gatehouse.CheckpointPeriodic, "migrate test")
	mgMust(t, err)
	stop()
	return w
}

func mgSums(t *testing.T, cfg app.Config) []sqlstore.TableSum {
	t.Helper()
	store, err := app.OpenStore(context.Background(), cfg)
	mgMust(t, err)
	defer store.Close()
	s, err := store.(*sqlstore.DB).Checksums(context.Background())
	mgMust(t, err)
	return s
}

// TestMigrateSQLiteToPostgres migrates a populated SQLite Gatehouse to PostgreSQL and serves
// the copy: counts and checksums match, tokens authenticate, secrets decrypt with the same
// key file, the state and history are the same, the audit chain verifies (and grows), no ID
// is handed out twice; a second migration into the now non-empty target is refused and
// changes nothing; the copy migrates back to SQLite identically.
func TestMigrateSQLiteToPostgres(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := mgPopulate(t, dir)
	cluster := pgtest.Start(t)
	pgURL := cluster.NewDatabase(t)
	from := app.Config{DataDir: dir}
	to := app.Config{DataDir: dir, Database: pgURL}

	res, err := app.Migrate(ctx, from, to)
	mgMust(t, err)
	if res.From != "sqlite" || res.To != "postgres" || len(res.Tables) < 20 {
		t.Fatalf("migrate: %s -> %s, %d tables", res.From, res.To, len(res.Tables))
	}
	counts := map[string]int64{}
	for _, tc := range res.Tables {
		if !tc.OK() {
			t.Errorf("table %s: source %+v, target %+v", tc.Table, tc.Source, tc.Target)
		}
		counts[tc.Table] = tc.Source.Rows
	}
	for _, table := range []string{"orgs", "users", "members", "teams", "team_members", "grants", "protections", "tokens", "stacks", "stack_tags", "stack_keys", "checkpoints", "updates", "engine_events", "audit_events", "audit_checkpoints", "meta"} {
		if counts[table] == 0 {
			t.Errorf("the test world has no rows in %s to migrate", table)
		}
	}
	t.Logf("migrated %d rows: %v", res.Rows(), counts)
	// Computed afresh on each side, independently of the copy.
	srcSums, dstSums := mgSums(t, from), mgSums(t, to)
	if !slices.Equal(srcSums, dstSums) {
		t.Fatalf("checksums differ:\nsqlite   %v\npostgres %v", srcSums, dstSums)
	}

	// The audit chain verifies on the target, with its signed checkpoint.
	signer, err := app.LoadAuditSigner("", dir)
	mgMust(t, err)
	func() {
		store, err := app.OpenStore(ctx, to)
		mgMust(t, err)
		defer store.Close()
		rep, ncp, err := app.VerifyAudit(ctx, store, signer.Public())
		mgMust(t, err)
		if !rep.OK || ncp != 1 || rep.Checkpoints != 1 || rep.Checked != counts["audit_events"] {
			t.Fatalf("audit on the target: %s (%d checkpoints stored)", rep, ncp)
		}
	}()

	// Served from PostgreSQL with the same data directory (key file).
	srv, url, stop := mgServe(t, to)
	blobs, err := app.AttachBlobStore(ctx, srv.Store, mgBlobURL(dir), 2000)
	mgMust(t, err)
	defer blobs.Close()
	var inline, referenced int
	mgMust(t, srv.Store.(*sqlstore.DB).Writer().QueryRowContext(ctx,
		`SELECT COUNT(*) FILTER (WHERE blob_key = ''), COUNT(*) FILTER (WHERE blob_key <> '') FROM checkpoints`).Scan(&inline, &referenced))
	if inline == 0 || referenced == 0 {
		t.Fatalf("checkpoints on the target: %d inline, %d in object storage; want some of both", inline, referenced)
	}
	admin, bob := cliwire.New(url, w.admin), cliwire.New(url, w.bob)
	var me struct {
		GithubLogin string `json:"githubLogin"`
	}
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, &me))
	mgMust(t, bob.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/user"}, nil))
	if me.GithubLogin != "alice" {
		t.Fatalf("the admin token authenticates as %q", me.GithubLogin)
	}
	sp := "/api/stacks/acme/web/prod"
	var dec apitype.DecryptValueResponse
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: w.ciphertext}}, &dec))
	if string(dec.Plaintext) != w.plaintext {
		t.Fatalf("decrypt on the target = %q", dec.Plaintext)
	}
	var exp apitype.UntypedDeployment
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: sp + "/export"}, &exp))
	if string(exp.Deployment) != string(w.exported) {
		t.Fatalf("export differs after the migration")
	}
	var hist apitype.GetHistoryResponse
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodGet, Path: sp + "/updates"}, &hist))
	if a, b := mgJSON(t, hist.Updates), mgJSON(t, w.history); a != b {
		t.Fatalf("history differs after the migration:\n%s\n%s", a, b)
	}
	// A new stack gets an ID no stack ever had, not even the deleted one.
	mgMust(t, admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/acme/web",
		Body: apitype.CreateStackRequest{StackName: "fresh"}}, &json.RawMessage{}))
	mgMust(t, srv.Store.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		s, err := tx.GetStack(o.ID, "web", "fresh")
		if err == nil && s.ID <= w.deletedID+2 {
			t.Errorf("new stack on the target got ID %d; IDs up to %d were handed out on the source", s.ID, w.deletedID+2)
		}
		return err
	}))
	stop()
	// The chain went on from the copied head.
	func() {
		store, err := app.OpenStore(ctx, to)
		mgMust(t, err)
		defer store.Close()
		rep, _, err := app.VerifyAudit(ctx, store, signer.Public())
		mgMust(t, err)
		if !rep.OK || rep.Checked <= counts["audit_events"] {
			t.Fatalf("audit on the target after serving: %s", rep)
		}
	}()

	// The target now holds data: a second migration is refused, and changes nothing.
	before := mgSums(t, to)
	_, err = app.Migrate(ctx, from, to)
	if !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
		t.Fatalf("migrating into a non-empty target: %v", err)
	}
	t.Logf("refused: %v", err)
	if after := mgSums(t, to); !slices.Equal(before, after) {
		t.Fatal("the refused migration changed the target")
	}
	// Also when the target is a non-empty SQLite database, and the same database.
	if _, err := app.Migrate(ctx, to, from); !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
		t.Fatalf("migrating into a non-empty SQLite target: %v", err)
	}
	if _, err := app.Migrate(ctx, from, app.Config{Database: "sqlite://" + filepath.Join(dir, "gatehouse.db")}); err == nil {
		t.Fatal("migrating a database into itself succeeded")
	}

	// Any engine to any engine: PostgreSQL back to a new SQLite file, identical.
	back := app.Config{Database: "sqlite://" + filepath.Join(t.TempDir(), "back.db")}
	res, err = app.Migrate(ctx, to, back)
	mgMust(t, err)
	if res.From != "postgres" || res.To != "sqlite" {
		t.Fatalf("migrate back: %s -> %s", res.From, res.To)
	}
	if a, b := mgSums(t, to), mgSums(t, back); !slices.Equal(a, b) {
		t.Fatalf("checksums differ after migrating back:\npostgres %v\nsqlite   %v", a, b)
	}
	// On SQLite too, no ID is handed out twice.
	store, err := app.OpenStore(ctx, back)
	mgMust(t, err)
	defer store.Close()
	mgMust(t, store.Update(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		s := &gatehouse.Stack{OrgID: o.ID, Project: "web", Name: "fresher", Created: time.Now()}
		if err := tx.CreateStack(s); err != nil {
			return err
		}
		if s.ID <= w.deletedID+3 {
			t.Errorf("new stack on the SQLite copy got ID %d", s.ID)
		}
		return nil
	}))
}

func mgBlobURL(dir string) string {
	return (&url.URL{Scheme: "file", Path: filepath.Join(dir, "blobs")}).String()
}

func mgJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	mgMust(t, err)
	return string(b)
}

// TestMigrateSQLiteToSQLite needs no PostgreSQL: a copy into a new SQLite file verifies and
// serves (and every table of the schema is one the copier knows).
func TestMigrateSQLiteToSQLite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	w := mgPopulate(t, dir)
	to := app.Config{DataDir: dir, Database: "sqlite://" + filepath.Join(t.TempDir(), "copy.db")}
	res, err := app.Migrate(ctx, app.Config{DataDir: dir}, to)
	mgMust(t, err)
	if a, b := mgSums(t, app.Config{DataDir: dir}), mgSums(t, to); !slices.Equal(a, b) || res.Rows() == 0 {
		t.Fatalf("checksums differ:\n%v\n%v", a, b)
	}
	srv, url, _ := mgServe(t, to)
	blobs, err := app.AttachBlobStore(ctx, srv.Store, mgBlobURL(dir), 2000)
	mgMust(t, err)
	defer blobs.Close()
	var exp apitype.UntypedDeployment
	mgMust(t, cliwire.New(url, w.admin).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/stacks/acme/web/prod/export"}, &exp))
	if string(exp.Deployment) != string(w.exported) {
		t.Fatal("export differs after the migration")
	}
	mgMust(t, srv.Store.View(ctx, func(tx gatehouse.Tx) error {
		d, err := tx.GetDeployment(w.deployment.ID)
		if err == nil && (d.ActsFor != w.deployment.ActsFor || d.Editor != w.deployment.Editor) {
			t.Errorf("deployment principals after the migration: %+v %+v", d.ActsFor, d.Editor)
		}
		return err
	}))
	var def []byte
	mgMust(t, cliwire.New(url, w.admin).Do(cliwire.Call{Method: http.MethodGet, Path: "/api/esc/environments/acme/app/dev/versions/prod/decrypt"}, &def))
	if !strings.Contains(string(def), "hunter2") {
		t.Fatalf("environment secrets do not decrypt after the migration:\n%s", def)
	}
}
