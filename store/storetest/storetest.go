// Package storetest is the conformance suite of gatehouse.Store: every engine runs it (see
// store/sqlite and store/postgres) and must pass all of it. It checks the contract that
// store.go documents, method by method, and the coordination points that several
// Gatehouse processes rely on when they share one database (the stack lock, the audit
// chain, first-writer-wins data keys), by racing goroutines against one store.
//
// Subtests run in parallel, each on a store of its own that open returns (an empty,
// migrated database). RunProcesses runs the race subtests again with the racers spread
// over several stores on one database, as several Gatehouse processes would be. Stores that have a settable clock, a method SetClock(func()
// time.Time), get a fake one that ticks forward a millisecond at each reading; the suite
// also runs on stores without one, on the wall clock.
//
// One contract note that holds for every engine: after a method returns an error (ECONFLICT
// from a unique name, say), the transaction may no longer be usable (PostgreSQL aborts it),
// so the function passed to Update must return the error, not carry on. The suite only
// ever does that.
package storetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
)

// Run runs the suite. open returns a new, empty store; it is called once per subtest, from
// parallel subtests, and should register the store's Close with t.Cleanup.
func Run(t *testing.T, open func(t *testing.T) gatehouse.Store) {
	run(t, append(slices.Clone(contractTests), raceTests...), func(t *testing.T) []gatehouse.Store {
		return []gatehouse.Store{open(t)}
	})
}

// RunProcesses runs the race subtests with the racing goroutines spread over several
// stores opened on one database, the way several Gatehouse processes serve one database.
// open returns the stores (two or more, all on one new, empty database); it is called once
// per subtest, from parallel subtests, and should register their Close with t.Cleanup.
func RunProcesses(t *testing.T, open func(t *testing.T) []gatehouse.Store) {
	run(t, raceTests, open)
}

type test struct {
	name string
	fn   func(*testing.T, *env)
}

var contractTests = []test{
	{"Store", testStore},
	{"Now", testNow},
	{"Meta", testMeta},
	{"Orgs", testOrgs},
	{"Users", testUsers},
	{"DisableUser", testDisableUser},
	{"SiteAuditFilter", testSiteAuditFilter},
	{"ClearAuthFailures", testClearAuthFailures},
	{"Members", testMembers},
	{"Teams", testTeams},
	{"Grants", testGrants},
	{"Protections", testProtections},
	{"Tokens", testTokens},
	{"TokenNamesStayReserved", testTokenNames},
	{"ListTokens", testListTokens},
	{"RevokeToken", testRevokeToken},
	{"TouchTokens", testTouchTokens},
	{"Stacks", testStacks},
	{"ListStacks", testListStacks},
	{"ListStacksPaging", testListStacksPaging},
	{"RenameStack", testRenameStack},
	{"StackTags", testStackTags},
	{"DeleteStack", testDeleteStack},
	{"StackKeys", testStackKeys},
	{"Checkpoints", testCheckpoints},
	{"Updates", testUpdates},
	{"StartUpdateLock", testStartUpdateLock},
	{"DryRunsDoNotLock", testDryRuns},
	{"LeaseTakeover", testLeaseTakeover},
	{"RenewLease", testRenewLease},
	{"FinishUpdate", testFinishUpdate},
	{"ListUpdates", testListUpdates},
	{"EngineEvents", testEngineEvents},
	{"Journal", testJournal},
	{"Audit", testAudit},
	{"AuditRollback", testAuditRollback},
	{"AuditBatch", testAuditBatch},
	{"AuditFailureSticks", testAuditFailureSticks},
	{"ListAudit", testListAudit},
	{"AuthFailures", testAuthFailures},
	{"OIDCIssuers", testOIDCIssuers},
	{"OIDCAuthPolicies", testOIDCPolicies},
	{"ConsumeOIDCToken", testConsumeOIDCToken},
	{"SecurityEpoch", testSecurityEpoch},
	{"AuditHeadAndCheckpoints", testAuditCheckpoints},
	{"AuditCheckpointChain", testAuditCheckpointChain},
	{"AuditExportCursors", testExportCursors},
	{"PruneAudit", testPruneAudit},
	{"ScanDeliveries", testScanDeliveries},
	{"Invitations", testInvitations},
	{"StackConfig", testStackConfig},
	{"Environments", testEnvironments},
	{"EnvRetract", testEnvRetract},
	{"EnvSessionsAndKeys", testEnvSessionsAndKeys},
	{"EnvScopes", testEnvScopes},
	{"Webhooks", testWebhooks},
	{"SCIM", testSCIM},
	{"SAMLConfig", testSAMLConfig},
	{"SAMLRequests", testSAMLRequests},
	{"ConsumeSAMLAssertion", testConsumeSAMLAssertion},
	{"Sessions", testSessions},
	{"Identities", testIdentities},
	{"OrgSSO", testOrgSSO},
	{"Posture", testPosture},
	{"Deployments", testDeployments},
	{"DeployVCSSecrets", testDeployVCSSecrets},
	{"Policy", testPolicy},
	{"Protocol", testProtocol},
	{"PendingUpdates", testPendingUpdates},
	{"WebhookAttemptLog", testWebhookAttemptLog},
}

// raceTests race goroutines against one database: the coordination points several
// processes rely on.
var raceTests = []test{
	{"RaceStartUpdate", testRaceStartUpdate},
	{"RaceLeaseTakeover", testRaceTakeover},
	{"RaceFinishUpdate", testRaceFinishUpdate},
	{"RaceAudit", testRaceAudit},
	{"RaceStackKey", testRaceStackKey},
	{"RaceCreateOrg", testRaceCreateOrg},
	{"RaceAuthFailures", testRaceAuthFailures},
	{"RaceExportLease", testRaceExportLease},
	{"RaceCheckpointChain", testRaceCheckpointChain},
	{"RaceScanDelivery", testRaceScanDelivery},
	{"RaceAnswerInvitation", testRaceAnswerInvitation},
	{"RaceConsumeOIDCToken", testRaceConsumeOIDCToken},
	{"RaceEnvRevision", testRaceEnvRevision},
	{"RaceWebhookClaim", testRaceWebhookClaim},
	{"RaceRecordAnomaly", testRaceRecordAnomaly},
	{"RaceConsumeSAMLAssertion", testRaceConsumeSAMLAssertion},
	{"RaceTakeSAMLRequest", testRaceTakeSAMLRequest},
	{"RaceDeployLease", testRaceDeployLease},
	{"RaceDeployExpire", testRaceDeployExpire},
}

func run(t *testing.T, tests []test, open func(t *testing.T) []gatehouse.Store) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, newEnv(t, open(t)))
		})
	}
}

// --- harness ---

// clock is a settable clock that moves a millisecond forward at every reading, so that
// successive transactions see distinct, increasing times.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time { return time.Unix(0, c.ns.Add(int64(time.Millisecond))).UTC() }

func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

type env struct {
	t      *testing.T
	s      gatehouse.Store   // stores[0]
	stores []gatehouse.Store // several: as many processes on one database
	ctx    context.Context
	clock  *clock // nil: the stores run on the wall clock
}

func newEnv(t *testing.T, stores []gatehouse.Store) *env {
	if len(stores) == 0 || slices.Contains(stores, nil) {
		t.Fatal("open returned no store")
	}
	e := &env{t: t, s: stores[0], stores: stores, ctx: context.Background()}
	var setters []interface{ SetClock(func() time.Time) }
	for _, s := range stores {
		if cs, ok := s.(interface{ SetClock(func() time.Time) }); ok {
			setters = append(setters, cs)
		}
	}
	if len(setters) == len(stores) {
		e.clock = &clock{}
		e.clock.ns.Store(time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.UTC).UnixNano())
		for _, cs := range setters {
			cs.SetClock(e.clock.Now)
		}
	}
	return e
}

// at returns the store racer i uses: racers take turns over the stores.
func (e *env) at(i int) gatehouse.Store { return e.stores[i%len(e.stores)] }

// update runs fn in a read-write transaction and fails the test on an error.
func (e *env) update(fn func(tx gatehouse.Tx) error) {
	e.t.Helper()
	if err := e.s.Update(e.ctx, fn); err != nil {
		e.t.Fatalf("Update: %v", err)
	}
}

// view runs fn in a read-only transaction and fails the test on an error.
func (e *env) view(fn func(tx gatehouse.Tx) error) {
	e.t.Helper()
	if err := e.s.View(e.ctx, fn); err != nil {
		e.t.Fatalf("View: %v", err)
	}
}

// try runs fn in a read-write transaction and returns its error.
func (e *env) try(fn func(tx gatehouse.Tx) error) error {
	return e.s.Update(e.ctx, fn)
}

// now returns the Now of a new transaction.
func (e *env) now() time.Time {
	e.t.Helper()
	var now time.Time
	e.view(func(tx gatehouse.Tx) error { now = tx.Now(); return nil })
	return now
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	if !gatehouse.IsCode(err, code) {
		t.Errorf("%s: got error %v, want code %q", what, err, code)
	}
}

func randID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randDigest() (d [32]byte) {
	_, _ = rand.Read(d[:])
	return d
}

func (e *env) org(name string) *gatehouse.Org {
	e.t.Helper()
	o := &gatehouse.Org{Name: name, Settings: gatehouse.DefaultOrgSettings()}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateOrg(o) })
	return o
}

func (e *env) user(name string) *gatehouse.User {
	e.t.Helper()
	u := &gatehouse.User{Name: name, Email: name + "@example.com"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateUser(u) })
	return u
}

func (e *env) team(orgID int64, name string) *gatehouse.Team {
	e.t.Helper()
	tm := &gatehouse.Team{OrgID: orgID, Name: name}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateTeam(tm) })
	return tm
}

func (e *env) stack(orgID int64, project, name string, tags map[string]string) *gatehouse.Stack {
	e.t.Helper()
	s := &gatehouse.Stack{OrgID: orgID, Project: project, Name: name, Tags: tags, CreatedBy: "tester"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateStack(s) })
	return s
}

func (e *env) getStack(id int64) *gatehouse.Stack {
	e.t.Helper()
	var s *gatehouse.Stack
	e.view(func(tx gatehouse.Tx) (err error) { s, err = tx.GetStackByID(id); return err })
	return s
}

func (e *env) newUpdate(stackID int64, kind gatehouse.UpdateKind, dry bool) string {
	e.t.Helper()
	u := &gatehouse.Update{ID: randID(), StackID: stackID, Kind: kind, DryRun: dry, Program: json.RawMessage(`{}`), Author: "tester"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateUpdate(u) })
	return u.ID
}

func (e *env) getUpdate(id string) *gatehouse.Update {
	e.t.Helper()
	var u *gatehouse.Update
	e.view(func(tx gatehouse.Tx) (err error) { u, err = tx.GetUpdate(id); return err })
	return u
}

func (e *env) start(id string, lease [32]byte, expires time.Time) (int, error) {
	var v int
	err := e.try(func(tx gatehouse.Tx) (err error) {
		v, err = tx.StartUpdate(id, nil, lease, expires, 0)
		return err
	})
	return v, err
}

// startLive starts an update with a lease that is live for an hour.
func (e *env) startLive(id string) (int, [32]byte) {
	e.t.Helper()
	lease := randDigest()
	v, err := e.start(id, lease, e.now().Add(time.Hour))
	if err != nil {
		e.t.Fatalf("StartUpdate %s: %v", id, err)
	}
	return v, lease
}

func (e *env) finish(id string, status gatehouse.UpdateStatus, count int) gatehouse.UpdateStatus {
	e.t.Helper()
	var got gatehouse.UpdateStatus
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.FinishUpdate(id, status, nil, count); return err })
	return got
}

// expireLeases makes the leases granted so far expire: it moves the clock past them, or on
// the wall clock waits for leaseFor.
func (e *env) leaseFor() time.Duration {
	if e.clock != nil {
		return time.Minute
	}
	return 50 * time.Millisecond
}

func (e *env) expireLeases() {
	if e.clock != nil {
		e.clock.Advance(2 * time.Minute)
		return
	}
	time.Sleep(100 * time.Millisecond)
}

// race runs fn(i) for i in [0, n) in n goroutines released together and returns their
// errors. Each goroutine first holds a read transaction open alongside the others (for up
// to a moment), so that a pooled engine has a connection ready for each and the racers
// really overlap rather than queue behind connection set-up.
func (e *env) race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var warm, ready, done sync.WaitGroup
	warm.Add(n)
	warmed := make(chan struct{})
	go func() { warm.Wait(); close(warmed) }()
	gate := make(chan struct{})
	for i := range n {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			_ = e.at(i).View(e.ctx, func(tx gatehouse.Tx) error {
				warm.Done()
				select {
				case <-warmed:
				case <-time.After(200 * time.Millisecond):
				}
				return nil
			})
			ready.Done()
			<-gate
			errs[i] = fn(i)
		}()
	}
	ready.Wait()
	close(gate)
	done.Wait()
	return errs
}

const racers = 8

// --- transactions and meta ---

func testStore(t *testing.T, e *env) {
	if err := e.s.Ping(e.ctx); err != nil {
		t.Errorf("Ping: %v", err)
	}
	if e.s.Engine() == "" {
		t.Error("Engine() is empty")
	}
	// A read-only transaction sees what read-write ones committed.
	e.update(func(tx gatehouse.Tx) error { return tx.SetMeta("k", []byte("v")) })
	e.view(func(tx gatehouse.Tx) error {
		if v, err := tx.GetMeta("k"); err != nil || string(v) != "v" {
			t.Errorf("View does not see a committed Update: %q, %v", v, err)
		}
		return nil
	})
}

func testNow(t *testing.T, e *env) {
	var a, b, c time.Time
	e.update(func(tx gatehouse.Tx) error {
		a = tx.Now()
		time.Sleep(2 * time.Millisecond)
		b = tx.Now()
		return nil
	})
	if !a.Equal(b) {
		t.Errorf("Now changed within a transaction: %v, then %v", a, b)
	}
	if a.Location() != time.UTC {
		t.Errorf("Now is in %v, want UTC", a.Location())
	}
	if a.IsZero() {
		t.Error("Now is zero")
	}
	if e.clock != nil {
		e.clock.Advance(time.Hour)
		c = e.now()
		if c.Sub(a) < time.Hour {
			t.Errorf("Now does not follow the store's clock: %v, then %v after advancing it an hour", a, c)
		}
	}
	// Created fields take the transaction's Now.
	var now time.Time
	o := &gatehouse.Org{Name: "clocked"}
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.CreateOrg(o) })
	if !o.Created.Equal(now) {
		t.Errorf("CreateOrg set Created %v, want the transaction's Now %v", o.Created, now)
	}
}

func testMeta(t *testing.T, e *env) {
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetMeta("nothing")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetMeta of an unset key")
		return nil
	})
	bin := []byte{0, 1, 2, 0xff, 0xfe, 0, 'x'}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.SetMeta("a", []byte("one")); err != nil {
			return err
		}
		return tx.SetMeta("bin", bin)
	})
	e.update(func(tx gatehouse.Tx) error { return tx.SetMeta("a", []byte("two")) })
	e.view(func(tx gatehouse.Tx) error {
		if v, err := tx.GetMeta("a"); err != nil || string(v) != "two" {
			t.Errorf("GetMeta(a) = %q, %v; want the value set last, %q", v, err, "two")
		}
		if v, err := tx.GetMeta("bin"); err != nil || !bytes.Equal(v, bin) {
			t.Errorf("GetMeta(bin) = %x, %v; want %x", v, err, bin)
		}
		return nil
	})
	// A value set in a transaction that fails is not kept.
	boom := errors.New("boom")
	if err := e.try(func(tx gatehouse.Tx) error {
		if err := tx.SetMeta("rolled-back", []byte("x")); err != nil {
			return err
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Errorf("Update returned %v, want the function's error", err)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetMeta("rolled-back")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetMeta of a value set in a rolled back transaction")
		return nil
	})
}

// --- organizations, users, members ---

func testOrgs(t *testing.T, e *env) {
	settings := gatehouse.OrgSettings{DefaultStackPermission: gatehouse.PermRead, MembersCanCreateStacks: false, MembersCanDeleteStacks: true, MaxTokenLifetimeDays: 30}
	acme := &gatehouse.Org{Name: "Acme", Settings: settings}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.CreateOrg(acme) })
	if acme.ID == 0 || !acme.Created.Equal(now) {
		t.Errorf("CreateOrg set ID %d, Created %v; want an ID and the transaction's Now %v", acme.ID, acme.Created, now)
	}
	beta := e.org("beta")
	gamma := e.org("Gamma")

	for _, name := range []string{"Acme", "ACME", "acme"} {
		err := e.try(func(tx gatehouse.Tx) error { return tx.CreateOrg(&gatehouse.Org{Name: name}) })
		wantCode(t, err, gatehouse.ECONFLICT, "CreateOrg "+name+" with Acme taken")
	}
	e.view(func(tx gatehouse.Tx) error {
		o, err := tx.GetOrg(acme.ID)
		if err != nil {
			t.Fatalf("GetOrg: %v", err)
		}
		if o.Name != "Acme" || o.Settings != settings || !o.Created.Equal(acme.Created) {
			t.Errorf("GetOrg = %+v, want %+v", o, acme)
		}
		for _, name := range []string{"acme", "ACME", "aCmE"} {
			o, err := tx.GetOrgByName(name)
			if err != nil || o.ID != acme.ID || o.Name != "Acme" {
				t.Errorf("GetOrgByName(%q) = %+v, %v; want Acme (names are case-insensitive, kept as created)", name, o, err)
			}
		}
		_, err = tx.GetOrg(acme.ID + gamma.ID + 1000)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOrg of an unknown ID")
		_, err = tx.GetOrgByName("nope")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOrgByName of an unknown name")
		orgs, err := tx.ListOrgs()
		if err != nil {
			return err
		}
		var names []string
		for _, o := range orgs {
			names = append(names, o.Name)
		}
		if want := []string{"Acme", "beta", "Gamma"}; !slices.Equal(names, want) {
			t.Errorf("ListOrgs = %q, want %q (by name, ignoring case)", names, want)
		}
		return nil
	})

	newSettings := gatehouse.OrgSettings{DefaultStackPermission: gatehouse.PermWrite, MembersCanCreateStacks: true}
	e.update(func(tx gatehouse.Tx) error { return tx.UpdateOrgSettings(beta.ID, newSettings) })
	e.view(func(tx gatehouse.Tx) error {
		o, err := tx.GetOrg(beta.ID)
		if err != nil {
			return err
		}
		if o.Settings != newSettings {
			t.Errorf("settings after UpdateOrgSettings = %+v, want %+v", o.Settings, newSettings)
		}
		if o, _ := tx.GetOrg(acme.ID); o.Settings != settings {
			t.Errorf("UpdateOrgSettings changed another organization: %+v", o.Settings)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error { return tx.UpdateOrgSettings(gamma.ID+1000, newSettings) })
	wantCode(t, err, gatehouse.ENOTFOUND, "UpdateOrgSettings of an unknown organization")
}

func testUsers(t *testing.T, e *env) {
	e.view(func(tx gatehouse.Tx) error {
		if n, err := tx.CountUsers(); err != nil || n != 0 {
			t.Errorf("CountUsers on an empty store = %d, %v", n, err)
		}
		return nil
	})
	alice := &gatehouse.User{Name: "Alice", Email: "alice@example.com", SiteAdmin: true}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateUser(alice) })
	bob := e.user("bob")
	if alice.ID == 0 || bob.ID == 0 || alice.ID == bob.ID || alice.Created.IsZero() {
		t.Fatalf("CreateUser: IDs %d and %d, Created %v", alice.ID, bob.ID, alice.Created)
	}
	err := e.try(func(tx gatehouse.Tx) error { return tx.CreateUser(&gatehouse.User{Name: "ALICE"}) })
	wantCode(t, err, gatehouse.ECONFLICT, "CreateUser ALICE with Alice taken")
	e.view(func(tx gatehouse.Tx) error {
		u, err := tx.GetUser(alice.ID)
		if err != nil {
			return err
		}
		if u.Name != "Alice" || u.Email != "alice@example.com" || !u.SiteAdmin || !u.Created.Equal(alice.Created) {
			t.Errorf("GetUser = %+v, want %+v", u, alice)
		}
		if u, err := tx.GetUserByName("aLiCe"); err != nil || u.ID != alice.ID {
			t.Errorf("GetUserByName(aLiCe) = %+v, %v; want Alice", u, err)
		}
		if u, err := tx.GetUser(bob.ID); err != nil || u.SiteAdmin {
			t.Errorf("GetUser(bob) = %+v, %v; want a user who is not a site admin", u, err)
		}
		_, err = tx.GetUser(alice.ID + bob.ID + 1000)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetUser of an unknown ID")
		_, err = tx.GetUserByName("carol")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetUserByName of an unknown name")
		if n, err := tx.CountUsers(); err != nil || n != 2 {
			t.Errorf("CountUsers = %d, %v; want 2", n, err)
		}
		return nil
	})
}

func testDisableUser(t *testing.T, e *env) {
	alice, bob := e.user("alice"), e.user("Bob")
	mk := func(user int64, name string, expires time.Time) *gatehouse.Token {
		tk := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenPersonal, Digest: randDigest(), Name: name, UserID: user, Expires: expires}
		e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(tk) })
		return tk
	}
	laptop, ci := mk(alice.ID, "laptop", time.Time{}), mk(alice.ID, "ci", e.now().Add(time.Hour))
	old := mk(alice.ID, "old", e.now().Add(-time.Hour))
	bobs := mk(bob.ID, "bobs", time.Time{})
	at := e.now()
	var n int
	e.update(func(tx gatehouse.Tx) (err error) { n, err = tx.DisableUser(alice.ID, at); return err })
	if n != 2 {
		t.Errorf("DisableUser revoked %d tokens, want 2 (the live ones)", n)
	}
	e.view(func(tx gatehouse.Tx) error {
		u, err := tx.GetUser(alice.ID)
		if err != nil {
			return err
		}
		if !u.Disabled.Equal(at) {
			t.Errorf("Disabled = %v, want %v", u.Disabled, at)
		}
		if u, _ := tx.GetUser(bob.ID); !u.Disabled.IsZero() {
			t.Errorf("bob disabled too: %v", u.Disabled)
		}
		// The live ones are revoked; an expired one keeps its facts; bob's is untouched.
		for _, c := range []struct {
			tk      *gatehouse.Token
			revoked bool
		}{{laptop, true}, {ci, true}, {old, false}, {bobs, false}} {
			got, err := tx.GetToken(c.tk.ID)
			if err != nil {
				return err
			}
			if c.revoked == got.Revoked.IsZero() || c.revoked && !got.Revoked.Equal(at) {
				t.Errorf("token %s: revoked %v", c.tk.Name, got.Revoked)
			}
		}
		us, err := tx.ListUsers()
		if err != nil {
			return err
		}
		if len(us) != 2 || us[0].Name != "alice" || us[1].Name != "Bob" || us[0].Disabled.IsZero() {
			t.Errorf("ListUsers = %+v", us)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) (err error) { n, err = tx.DisableUser(alice.ID, at.Add(time.Hour)); return err })
	e.view(func(tx gatehouse.Tx) error {
		if u, _ := tx.GetUser(alice.ID); n != 0 || !u.Disabled.Equal(at) {
			t.Errorf("disabling again: %d revoked, Disabled %v; want 0 and the first time", n, u.Disabled)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error { _, err := tx.DisableUser(alice.ID+bob.ID+1000, at); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "DisableUser of an unknown user")
}

func testMembers(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice, bob, carol := e.user("alice"), e.user("Bob"), e.user("carol")
	e.update(func(tx gatehouse.Tx) error {
		for _, m := range []struct {
			org, user int64
			role      gatehouse.Role
		}{
			{acme.ID, carol.ID, gatehouse.RoleMember},
			{acme.ID, alice.ID, gatehouse.RoleAdmin},
			{acme.ID, bob.ID, gatehouse.RoleMember},
			{beta.ID, alice.ID, gatehouse.RoleMember},
		} {
			if err := tx.PutMember(m.org, m.user, m.role); err != nil {
				return err
			}
		}
		return nil
	})
	// PutMember on an existing member changes the role.
	e.update(func(tx gatehouse.Tx) error { return tx.PutMember(acme.ID, bob.ID, gatehouse.RoleBillingManager) })
	e.view(func(tx gatehouse.Tx) error {
		m, err := tx.GetMember(acme.ID, bob.ID)
		if err != nil {
			return err
		}
		if m.Role != gatehouse.RoleBillingManager || m.OrgID != acme.ID || m.User.ID != bob.ID || m.User.Name != "Bob" || m.Created.IsZero() {
			t.Errorf("GetMember = %+v, want Bob as billing-manager of acme", m)
		}
		_, err = tx.GetMember(beta.ID, bob.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetMember of a non-member")
		ms, err := tx.ListMembers(acme.ID)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.User.Name+":"+string(m.Role))
		}
		if want := []string{"alice:admin", "Bob:billing-manager", "carol:member"}; !slices.Equal(got, want) {
			t.Errorf("ListMembers = %q, want %q (by user name, ignoring case)", got, want)
		}
		oms, err := tx.ListUserOrgs(alice.ID)
		if err != nil {
			return err
		}
		got = nil
		for _, om := range oms {
			got = append(got, om.Org.Name+":"+string(om.Role))
		}
		if want := []string{"acme:admin", "beta:member"}; !slices.Equal(got, want) {
			t.Errorf("ListUserOrgs = %q, want %q", got, want)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.RemoveMember(acme.ID, carol.ID) })
	err := e.try(func(tx gatehouse.Tx) error { return tx.RemoveMember(acme.ID, carol.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "RemoveMember of a non-member")
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetMember(acme.ID, carol.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetMember after RemoveMember")
		if ms, err := tx.ListMembers(acme.ID); err != nil || len(ms) != 2 {
			t.Errorf("ListMembers after RemoveMember: %d members, %v; want 2", len(ms), err)
		}
		if oms, err := tx.ListUserOrgs(carol.ID); err != nil || len(oms) != 0 {
			t.Errorf("ListUserOrgs of a removed member = %+v, %v; want none", oms, err)
		}
		return nil
	})
}

// --- teams, grants, protections ---

func testTeams(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice, bob := e.user("alice"), e.user("bob")
	ops := &gatehouse.Team{OrgID: acme.ID, Name: "Ops", DisplayName: "Operations", Description: "on call"}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateTeam(ops) })
	if ops.ID == 0 || ops.Created.IsZero() {
		t.Fatalf("CreateTeam set ID %d, Created %v", ops.ID, ops.Created)
	}
	dev := e.team(acme.ID, "dev")
	betaOps := e.team(beta.ID, "ops") // the same name in another organization
	err := e.try(func(tx gatehouse.Tx) error { return tx.CreateTeam(&gatehouse.Team{OrgID: acme.ID, Name: "OPS"}) })
	wantCode(t, err, gatehouse.ECONFLICT, "CreateTeam OPS with Ops taken in the organization")

	e.view(func(tx gatehouse.Tx) error {
		tm, err := tx.GetTeam(ops.ID)
		if err != nil {
			return err
		}
		if tm.Name != "Ops" || tm.OrgID != acme.ID || tm.DisplayName != "Operations" || tm.Description != "on call" || !tm.Created.Equal(ops.Created) {
			t.Errorf("GetTeam = %+v, want %+v", tm, ops)
		}
		if tm, err := tx.GetTeamByName(acme.ID, "oPs"); err != nil || tm.ID != ops.ID {
			t.Errorf("GetTeamByName(acme, oPs) = %+v, %v; want Ops", tm, err)
		}
		if tm, err := tx.GetTeamByName(beta.ID, "OPS"); err != nil || tm.ID != betaOps.ID {
			t.Errorf("GetTeamByName(beta, OPS) = %+v, %v; want beta's ops", tm, err)
		}
		_, err = tx.GetTeamByName(beta.ID, "dev")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetTeamByName of another organization's team")
		_, err = tx.GetTeam(betaOps.ID + 1000)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetTeam of an unknown ID")
		tms, err := tx.ListTeams(acme.ID)
		if err != nil {
			return err
		}
		var names []string
		for _, tm := range tms {
			names = append(names, tm.Name)
		}
		if want := []string{"dev", "Ops"}; !slices.Equal(names, want) {
			t.Errorf("ListTeams = %q, want %q", names, want)
		}
		return nil
	})

	e.update(func(tx gatehouse.Tx) error {
		return tx.UpdateTeam(&gatehouse.Team{ID: dev.ID, Name: "ignored", DisplayName: "Developers", Description: "builders"})
	})
	e.view(func(tx gatehouse.Tx) error {
		tm, err := tx.GetTeam(dev.ID)
		if err != nil {
			return err
		}
		if tm.Name != "dev" || tm.DisplayName != "Developers" || tm.Description != "builders" {
			t.Errorf("after UpdateTeam: %+v; want the display name and description changed, the name kept", tm)
		}
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.UpdateTeam(&gatehouse.Team{ID: betaOps.ID + 1000}) })
	wantCode(t, err, gatehouse.ENOTFOUND, "UpdateTeam of an unknown team")

	e.update(func(tx gatehouse.Tx) error {
		if err := tx.PutTeamMember(ops.ID, bob.ID, "member"); err != nil {
			return err
		}
		if err := tx.PutTeamMember(ops.ID, alice.ID, "member"); err != nil {
			return err
		}
		return tx.PutTeamMember(ops.ID, alice.ID, "admin") // changes the role
	})
	e.view(func(tx gatehouse.Tx) error {
		ms, err := tx.ListTeamMembers(ops.ID)
		if err != nil {
			return err
		}
		var got []string
		for _, m := range ms {
			if m.TeamID != ops.ID {
				t.Errorf("ListTeamMembers: TeamID %d, want %d", m.TeamID, ops.ID)
			}
			got = append(got, m.User.Name+":"+m.Role)
		}
		if want := []string{"alice:admin", "bob:member"}; !slices.Equal(got, want) {
			t.Errorf("ListTeamMembers = %q, want %q", got, want)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.RemoveTeamMember(ops.ID, bob.ID) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.RemoveTeamMember(ops.ID, bob.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "RemoveTeamMember of a non-member")

	e.update(func(tx gatehouse.Tx) error {
		return tx.PutGrant(&gatehouse.Grant{TeamID: ops.ID, Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermWrite})
	})
	// The team's tokens die with it, one in its grace period too; other tokens live on.
	opsTok := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenTeam, Digest: randDigest(), Name: "ops-ci", OrgID: acme.ID, TeamID: ops.ID, Pipeline: true}
	opsOld := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenTeam, Digest: randDigest(), Name: "ops-old", OrgID: acme.ID, TeamID: ops.ID, Pipeline: true}
	devTok := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenTeam, Digest: randDigest(), Name: "dev-ci", OrgID: acme.ID, TeamID: dev.ID, Pipeline: true}
	e.update(func(tx gatehouse.Tx) error {
		for _, tk := range []*gatehouse.Token{opsTok, opsOld, devTok} {
			if err := tx.CreateToken(tk); err != nil {
				return err
			}
		}
		return tx.RevokeToken(opsOld.ID, tx.Now().Add(time.Hour))
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteTeam(ops.ID) })
	e.view(func(tx gatehouse.Tx) error {
		now := tx.Now()
		for _, tk := range []*gatehouse.Token{opsTok, opsOld, devTok} {
			got, err := tx.GetToken(tk.ID)
			if err != nil {
				return err
			}
			if want := tk != devTok; got.Revoked.After(now) || got.Revoked.IsZero() == want || got.Live(now) == want {
				t.Errorf("token %s after DeleteTeam: revoked %v (now %v), want revoked %v", tk.Name, got.Revoked, now, want)
			}
		}
		return nil
	})
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetTeam(ops.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetTeam after DeleteTeam")
		if ms, err := tx.ListTeamMembers(ops.ID); err != nil || len(ms) != 0 {
			t.Errorf("ListTeamMembers after DeleteTeam = %+v, %v", ms, err)
		}
		if gs, err := tx.ListUserGrants(acme.ID, alice.ID); err != nil || len(gs) != 0 {
			t.Errorf("ListUserGrants after DeleteTeam = %+v, %v; want none", gs, err)
		}
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteTeam(ops.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteTeam of a deleted team")
	// The name is free again.
	e.team(acme.ID, "ops")
}

func grantKeys(gs []gatehouse.Grant) []string {
	var out []string
	for _, g := range gs {
		s := g.TeamName + " " + g.Scope.Key() + " " + g.Permission.String()
		if g.Decrypt {
			s += "+decrypt"
		}
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

func testGrants(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice := e.user("alice")
	web := e.stack(acme.ID, "web", "prod", nil)
	t1, t2, t3 := e.team(acme.ID, "t1"), e.team(acme.ID, "t2"), e.team(beta.ID, "t3")
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.PutTeamMember(t1.ID, alice.ID, "member"); err != nil {
			return err
		}
		return tx.PutTeamMember(t3.ID, alice.ID, "member")
	})
	put := func(g gatehouse.Grant) {
		t.Helper()
		e.update(func(tx gatehouse.Tx) error { return tx.PutGrant(&g) })
	}
	put(gatehouse.Grant{TeamID: t1.ID, Scope: gatehouse.Scope{StackID: web.ID}, Permission: gatehouse.PermRead, Decrypt: true})
	put(gatehouse.Grant{TeamID: t1.ID, Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermWrite})
	put(gatehouse.Grant{TeamID: t1.ID, Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, Permission: gatehouse.PermAdmin})
	put(gatehouse.Grant{TeamID: t2.ID, Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermRead})
	put(gatehouse.Grant{TeamID: t3.ID, Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermAdmin})

	for _, sc := range []gatehouse.Scope{{}, {Project: "web", TagName: "env", TagValue: "x"}, {StackID: web.ID, Project: "web"}} {
		err := e.try(func(tx gatehouse.Tx) error {
			return tx.PutGrant(&gatehouse.Grant{TeamID: t1.ID, Scope: sc, Permission: gatehouse.PermRead})
		})
		wantCode(t, err, gatehouse.EINVALID, fmt.Sprintf("PutGrant on scope %+v", sc))
	}

	e.view(func(tx gatehouse.Tx) error {
		gs, err := tx.ListGrants(t1.ID)
		if err != nil {
			return err
		}
		want := []string{"t1 project:web write", fmt.Sprintf("t1 stack:%d read+decrypt", web.ID), "t1 tag:env=production admin"}
		slices.Sort(want)
		if got := grantKeys(gs); !slices.Equal(got, want) {
			t.Errorf("ListGrants = %q, want %q", got, want)
		}
		for _, g := range gs {
			if g.TeamID != t1.ID || g.Created.IsZero() {
				t.Errorf("grant %+v: want TeamID %d and Created set", g, t1.ID)
			}
			switch {
			case g.Scope.StackID != 0:
				if g.Scope.StackRef == nil || *g.Scope.StackRef != (gatehouse.StackRef{Org: "acme", Project: "web", Stack: "prod"}) {
					t.Errorf("stack grant's StackRef = %+v, want acme/web/prod", g.Scope.StackRef)
				}
			case g.Scope.TagName != "":
				if g.Scope.TagValue != "production" || g.Scope.StackRef != nil {
					t.Errorf("tag grant scope = %+v", g.Scope)
				}
			}
		}
		// Only the grants of alice's teams in acme (t1), not t2's nor beta's t3.
		gs, err = tx.ListUserGrants(acme.ID, alice.ID)
		if err != nil {
			return err
		}
		if got := grantKeys(gs); !slices.Equal(got, want) {
			t.Errorf("ListUserGrants(acme, alice) = %q, want %q", got, want)
		}
		gs, err = tx.ListUserGrants(beta.ID, alice.ID)
		if err != nil {
			return err
		}
		if got := grantKeys(gs); !slices.Equal(got, []string{"t3 project:web admin"}) {
			t.Errorf("ListUserGrants(beta, alice) = %q", got)
		}
		gs, err = tx.ListStackGrants(web.ID)
		if err != nil {
			return err
		}
		if got := grantKeys(gs); !slices.Equal(got, []string{fmt.Sprintf("t1 stack:%d read+decrypt", web.ID)}) {
			t.Errorf("ListStackGrants = %q", got)
		}
		return nil
	})

	// PutGrant on a scope the team has a grant on replaces it.
	put(gatehouse.Grant{TeamID: t1.ID, Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermRead, Decrypt: true})
	e.view(func(tx gatehouse.Tx) error {
		gs, err := tx.ListGrants(t1.ID)
		if err != nil {
			return err
		}
		if got := grantKeys(gs); len(got) != 3 || !slices.Contains(got, "t1 project:web read+decrypt") {
			t.Errorf("ListGrants after replacing the project grant = %q", got)
		}
		return nil
	})

	e.update(func(tx gatehouse.Tx) error { return tx.DeleteGrant(t1.ID, gatehouse.Scope{Project: "web"}) })
	err := e.try(func(tx gatehouse.Tx) error { return tx.DeleteGrant(t1.ID, gatehouse.Scope{Project: "web"}) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteGrant of a deleted grant")
	e.view(func(tx gatehouse.Tx) error {
		gs, err := tx.ListGrants(t1.ID)
		if err != nil {
			return err
		}
		if len(gs) != 2 {
			t.Errorf("ListGrants after DeleteGrant = %q, want 2 grants", grantKeys(gs))
		}
		if gs, _ := tx.ListGrants(t2.ID); len(gs) != 1 {
			t.Errorf("DeleteGrant touched another team's grants: %q", grantKeys(gs))
		}
		return nil
	})
}

func testProtections(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	web := e.stack(acme.ID, "web", "prod", nil)
	p := &gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{StackID: web.ID}, CreatedBy: "alice"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutProtection(p) })
	if p.ID == 0 || p.Created.IsZero() {
		t.Errorf("PutProtection set ID %d, Created %v", p.ID, p.Created)
	}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}}); err != nil {
			return err
		}
		return tx.PutProtection(&gatehouse.Protection{OrgID: beta.ID, Scope: gatehouse.Scope{StackID: web.ID}})
	})
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{StackID: web.ID}})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "PutProtection of a protected scope")
	for _, sc := range []gatehouse.Scope{{}, {Project: "web", TagName: "env"}} {
		err := e.try(func(tx gatehouse.Tx) error { return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: sc}) })
		wantCode(t, err, gatehouse.EINVALID, fmt.Sprintf("PutProtection on scope %+v", sc))
	}
	e.view(func(tx gatehouse.Tx) error {
		ps, err := tx.ListProtections(acme.ID)
		if err != nil {
			return err
		}
		if len(ps) != 2 {
			t.Fatalf("ListProtections = %+v, want 2 rules", ps)
		}
		for _, q := range ps {
			if q.OrgID != acme.ID {
				t.Errorf("ListProtections(acme) returned a rule of org %d", q.OrgID)
			}
			if q.Scope.StackID != 0 {
				if q.ID != p.ID || q.CreatedBy != "alice" || !q.Created.Equal(p.Created) {
					t.Errorf("stack rule = %+v, want %+v", q, p)
				}
				if q.Scope.StackRef == nil || q.Scope.StackRef.Project != "web" || q.Scope.StackRef.Stack != "prod" {
					t.Errorf("stack rule's StackRef = %+v, want web/prod", q.Scope.StackRef)
				}
			} else if q.Scope.TagName != "env" || q.Scope.TagValue != "production" {
				t.Errorf("tag rule scope = %+v", q.Scope)
			}
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteProtection(acme.ID, gatehouse.Scope{StackID: web.ID}) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteProtection(acme.ID, gatehouse.Scope{StackID: web.ID}) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteProtection of an unprotected scope")
	e.view(func(tx gatehouse.Tx) error {
		if ps, err := tx.ListProtections(acme.ID); err != nil || len(ps) != 1 {
			t.Errorf("ListProtections(acme) after DeleteProtection = %+v, %v", ps, err)
		}
		if ps, err := tx.ListProtections(beta.ID); err != nil || len(ps) != 1 {
			t.Errorf("ListProtections(beta) = %+v, %v; want its one rule, untouched", ps, err)
		}
		return nil
	})
}

// --- tokens ---

func testTokens(t *testing.T, e *env) {
	acme := e.org("acme")
	alice := e.user("alice")
	team := e.team(acme.ID, "ci")
	created := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	pat := &gatehouse.Token{
		ID: randID(), Kind: gatehouse.TokenPersonal, Digest: randDigest(), Name: "laptop", Description: "my laptop",
		UserID: alice.ID, CreatedBy: "alice", Created: created, Expires: created.Add(24 * time.Hour),
	}
	teamTok := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenTeam, Digest: randDigest(), Name: "deploy", OrgID: acme.ID, TeamID: team.ID, Pipeline: true}
	orgTok := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenOrg, Digest: randDigest(), Name: "tooling", OrgID: acme.ID, Role: gatehouse.RoleAdmin, Pipeline: true, Issuer: "github"}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error {
		now = tx.Now()
		for _, tk := range []*gatehouse.Token{pat, teamTok, orgTok} {
			if err := tx.CreateToken(tk); err != nil {
				return err
			}
		}
		return nil
	})
	if !pat.Created.Equal(created) {
		t.Errorf("CreateToken changed a given Created: %v", pat.Created)
	}
	if !teamTok.Created.Equal(now) {
		t.Errorf("CreateToken set Created %v, want the transaction's Now %v", teamTok.Created, now)
	}
	same := func(got, want *gatehouse.Token) {
		t.Helper()
		if got.ID != want.ID || got.Kind != want.Kind || got.Digest != want.Digest || got.Name != want.Name ||
			got.Description != want.Description || got.UserID != want.UserID || got.OrgID != want.OrgID ||
			got.TeamID != want.TeamID || got.Role != want.Role || got.Pipeline != want.Pipeline || got.CreatedBy != want.CreatedBy ||
			!got.Created.Equal(want.Created) || !got.Expires.Equal(want.Expires) || !got.Revoked.Equal(want.Revoked) ||
			!got.LastUsed.Equal(want.LastUsed) || got.LastIP != want.LastIP || got.LastAgent != want.LastAgent || got.Issuer != want.Issuer {
			t.Errorf("token read back as\n%+v\nwant\n%+v", got, want)
		}
	}
	e.view(func(tx gatehouse.Tx) error {
		for _, tk := range []*gatehouse.Token{pat, teamTok, orgTok} {
			got, err := tx.GetToken(tk.ID)
			if err != nil {
				return err
			}
			same(got, tk)
			got, err = tx.GetTokenByDigest(tk.Digest)
			if err != nil {
				return err
			}
			same(got, tk)
		}
		_, err := tx.GetToken(randID())
		wantCode(t, err, gatehouse.ENOTFOUND, "GetToken of an unknown ID")
		_, err = tx.GetTokenByDigest(randDigest())
		wantCode(t, err, gatehouse.ENOTFOUND, "GetTokenByDigest of an unknown digest")
		return nil
	})
}

func testTokenNames(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice, bob := e.user("alice"), e.user("bob")
	team := e.team(acme.ID, "ci")
	create := func(tk gatehouse.Token) error {
		tk.ID, tk.Digest = randID(), randDigest()
		return e.try(func(tx gatehouse.Tx) error { return tx.CreateToken(&tk) })
	}
	mustCreate := func(tk gatehouse.Token) {
		t.Helper()
		if err := create(tk); err != nil {
			t.Fatalf("CreateToken %+v: %v", tk, err)
		}
	}
	mustCreate(gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "laptop", UserID: alice.ID})
	mustCreate(gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "laptop", UserID: bob.ID}) // another user's scope
	mustCreate(gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "deploy", OrgID: acme.ID, TeamID: team.ID})
	mustCreate(gatehouse.Token{Kind: gatehouse.TokenOrg, Name: "deploy", OrgID: beta.ID}) // another organization
	wantCode(t, create(gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "laptop", UserID: alice.ID}), gatehouse.ECONFLICT,
		"a second personal token named laptop")
	// Team and organization tokens share their organization's name space.
	wantCode(t, create(gatehouse.Token{Kind: gatehouse.TokenOrg, Name: "deploy", OrgID: acme.ID}), gatehouse.ECONFLICT,
		"an organization token named like a team token of the organization")

	// Revoked tokens keep their names.
	old := gatehouse.Token{ID: randID(), Kind: gatehouse.TokenOrg, Digest: randDigest(), Name: "old", OrgID: acme.ID}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreateToken(&old); err != nil {
			return err
		}
		return tx.RevokeToken(old.ID, tx.Now())
	})
	wantCode(t, create(gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "old", OrgID: acme.ID, TeamID: team.ID}), gatehouse.ECONFLICT,
		"a token named like a revoked one")
}

func testListTokens(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice, bob := e.user("alice"), e.user("bob")
	team := e.team(acme.ID, "ci")
	var ids = map[string]string{}
	for _, tk := range []gatehouse.Token{
		{Name: "a1", Kind: gatehouse.TokenPersonal, UserID: alice.ID},
		{Name: "b1", Kind: gatehouse.TokenPersonal, UserID: bob.ID},
		{Name: "t1", Kind: gatehouse.TokenTeam, OrgID: acme.ID, TeamID: team.ID},
		{Name: "o1", Kind: gatehouse.TokenOrg, OrgID: acme.ID, Role: gatehouse.RoleMember},
		{Name: "a2", Kind: gatehouse.TokenPersonal, UserID: alice.ID},
		{Name: "o2", Kind: gatehouse.TokenOrg, OrgID: beta.ID, Role: gatehouse.RoleAdmin},
		{Name: "g1", Kind: gatehouse.TokenTeam, OrgID: acme.ID, TeamID: team.ID},
	} {
		tk.ID, tk.Digest = randID(), randDigest()
		e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(&tk) })
		ids[tk.Name] = tk.ID
	}
	e.update(func(tx gatehouse.Tx) error { return tx.RevokeToken(ids["a2"], tx.Now()) })
	// g1 is in a rotation grace period: revoked, but only later; it is still listed.
	e.update(func(tx gatehouse.Tx) error { return tx.RevokeToken(ids["g1"], tx.Now().Add(time.Hour)) })
	names := func(f gatehouse.TokenFilter) []string {
		t.Helper()
		var out []string
		e.view(func(tx gatehouse.Tx) error {
			tks, err := tx.ListTokens(f)
			for _, tk := range tks {
				out = append(out, tk.Name)
			}
			return err
		})
		return out
	}
	for _, c := range []struct {
		f    gatehouse.TokenFilter
		want []string
	}{
		{gatehouse.TokenFilter{}, []string{"a1", "b1", "t1", "o1", "o2", "g1"}},
		{gatehouse.TokenFilter{IncludeRevoked: true}, []string{"a1", "b1", "t1", "o1", "a2", "o2", "g1"}},
		{gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal}, []string{"a1", "b1"}},
		{gatehouse.TokenFilter{UserID: alice.ID}, []string{"a1"}},
		{gatehouse.TokenFilter{UserID: alice.ID, IncludeRevoked: true}, []string{"a1", "a2"}},
		{gatehouse.TokenFilter{OrgID: acme.ID}, []string{"t1", "o1", "g1"}},
		{gatehouse.TokenFilter{OrgID: acme.ID, Kind: gatehouse.TokenOrg}, []string{"o1"}},
		{gatehouse.TokenFilter{TeamID: team.ID}, []string{"t1", "g1"}},
		{gatehouse.TokenFilter{OrgID: beta.ID}, []string{"o2"}},
		{gatehouse.TokenFilter{Kind: gatehouse.TokenTeam, OrgID: beta.ID}, nil},
	} {
		if got := names(c.f); !slices.Equal(got, c.want) {
			t.Errorf("ListTokens(%+v) = %q, want %q (in creation order)", c.f, got, c.want)
		}
	}
}

func testRevokeToken(t *testing.T, e *env) {
	alice := e.user("alice")
	tk := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenPersonal, Digest: randDigest(), Name: "laptop", UserID: alice.ID}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(tk) })
	// Browser sessions: one the token signed in, one of another sign-in.
	session := func(tokenID string) *gatehouse.Session {
		s := &gatehouse.Session{Digest: randDigest(), UserID: alice.ID, Method: gatehouse.SignInToken, TokenID: tokenID,
			IdleExpires: e.now().Add(2 * time.Hour), Expires: e.now().Add(12 * time.Hour), CSRF: "csrf"}
		e.update(func(tx gatehouse.Tx) error { return tx.CreateSession(s) })
		return s
	}
	byToken, other := session(tk.ID), session("")
	sessionExpires := func(s *gatehouse.Session) time.Time {
		t.Helper()
		var got *gatehouse.Session
		e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetSessionByDigest(s.Digest); return err })
		if got.TokenID != s.TokenID {
			t.Errorf("session TokenID = %q, want %q", got.TokenID, s.TokenID)
		}
		return got.Expires
	}
	revoked := func() time.Time {
		t.Helper()
		var got *gatehouse.Token
		e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetToken(tk.ID); return err })
		return got.Revoked
	}
	base := e.now()
	grace := base.Add(time.Hour)
	e.update(func(tx gatehouse.Tx) error { return tx.RevokeToken(tk.ID, grace) })
	if got := revoked(); !got.Equal(grace) {
		t.Errorf("Revoked = %v, want %v", got, grace)
	}
	// The token's sessions end with it; others are untouched.
	if got := sessionExpires(byToken); !got.Equal(grace) {
		t.Errorf("session of the revoked token: Expires = %v, want %v", got, grace)
	}
	if got := sessionExpires(other); !got.Equal(other.Expires) {
		t.Errorf("another session: Expires = %v, want %v", got, other.Expires)
	}
	// A later revocation never extends the token's life ...
	e.update(func(tx gatehouse.Tx) error { return tx.RevokeToken(tk.ID, grace.Add(time.Hour)) })
	if got := revoked(); !got.Equal(grace) {
		t.Errorf("Revoked after revoking later = %v, want it kept at %v", got, grace)
	}
	// ... an earlier one shortens it.
	e.update(func(tx gatehouse.Tx) error { return tx.RevokeToken(tk.ID, base) })
	if got := revoked(); !got.Equal(base) {
		t.Errorf("Revoked after revoking earlier = %v, want %v", got, base)
	}
	if got := sessionExpires(byToken); !got.Equal(base) {
		t.Errorf("session after revoking earlier: Expires = %v, want %v", got, base)
	}
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetToken(tk.ID)
		if err != nil {
			return err
		}
		if got.Live(base) || !got.Live(base.Add(-time.Nanosecond)) {
			t.Errorf("revoked token: Live(revoked) = %v, Live(just before) = %v", got.Live(base), got.Live(base.Add(-time.Nanosecond)))
		}
		// A revoked token is still found by its digest (so that its use is denied and recorded).
		if _, err := tx.GetTokenByDigest(tk.Digest); err != nil {
			t.Errorf("GetTokenByDigest of a revoked token: %v", err)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error { return tx.RevokeToken(randID(), base) })
	wantCode(t, err, gatehouse.ENOTFOUND, "RevokeToken of an unknown token")
}

func testTouchTokens(t *testing.T, e *env) {
	alice := e.user("alice")
	var tks []*gatehouse.Token
	for _, name := range []string{"one", "two"} {
		tk := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenPersonal, Digest: randDigest(), Name: name, UserID: alice.ID}
		e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(tk) })
		tks = append(tks, tk)
	}
	get := func(id string) *gatehouse.Token {
		t.Helper()
		var got *gatehouse.Token
		e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetToken(id); return err })
		return got
	}
	touch := func(uses ...gatehouse.TokenUse) {
		t.Helper()
		if err := e.s.TouchTokens(e.ctx, uses); err != nil {
			t.Fatalf("TouchTokens: %v", err)
		}
	}
	t0 := time.Date(2030, 6, 1, 12, 0, 0, 500, time.UTC)
	touch(gatehouse.TokenUse{TokenID: tks[0].ID, At: t0, IP: "10.0.0.1", Agent: "pulumi/3.1"},
		gatehouse.TokenUse{TokenID: tks[1].ID, At: t0.Add(time.Second), IP: "10.0.0.2", Agent: "curl"})
	if got := get(tks[0].ID); !got.LastUsed.Equal(t0) || got.LastIP != "10.0.0.1" || got.LastAgent != "pulumi/3.1" {
		t.Errorf("after TouchTokens: %v %q %q", got.LastUsed, got.LastIP, got.LastAgent)
	}
	if got := get(tks[1].ID); !got.LastUsed.Equal(t0.Add(time.Second)) || got.LastIP != "10.0.0.2" {
		t.Errorf("second token after TouchTokens: %v %q", got.LastUsed, got.LastIP)
	}
	// An older use (a batch that arrives late) never moves last-used back.
	touch(gatehouse.TokenUse{TokenID: tks[0].ID, At: t0.Add(-time.Minute), IP: "10.9.9.9", Agent: "old"})
	if got := get(tks[0].ID); !got.LastUsed.Equal(t0) || got.LastIP != "10.0.0.1" {
		t.Errorf("an older use moved last-used back: %v %q", got.LastUsed, got.LastIP)
	}
	// Within a batch, the newest use wins whatever the order.
	t1 := t0.Add(time.Hour)
	touch(gatehouse.TokenUse{TokenID: tks[0].ID, At: t1, IP: "10.0.0.3", Agent: "new"},
		gatehouse.TokenUse{TokenID: tks[0].ID, At: t1.Add(-time.Second), IP: "10.0.0.4", Agent: "older"})
	if got := get(tks[0].ID); !got.LastUsed.Equal(t1) || got.LastIP != "10.0.0.3" || got.LastAgent != "new" {
		t.Errorf("after a batch with two uses: %v %q %q; want the newest", got.LastUsed, got.LastIP, got.LastAgent)
	}
	// A User-Agent is whatever the client sent: invalid UTF-8 and NUL are stored as U+FFFD,
	// not refused (the whole batch would be lost).
	touch(gatehouse.TokenUse{TokenID: tks[1].ID, At: t1, IP: "10.0.0.5", Agent: "bad\xff\x00agent"})
	if got := get(tks[1].ID); !got.LastUsed.Equal(t1) || got.LastAgent != "bad\ufffd\ufffdagent" {
		t.Errorf("after a use with a malformed agent: %v %q", got.LastUsed, got.LastAgent)
	}
	// Uses of unknown tokens are ignored; nothing to do is fine.
	touch(gatehouse.TokenUse{TokenID: randID(), At: t1})
	touch()
}

// --- stacks ---

func testStacks(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	alice := e.user("alice")
	s := &gatehouse.Stack{OrgID: acme.ID, Project: "web", Name: "prod", Tags: map[string]string{"env": "production", "team": "a"},
		CreatedBy: "alice", CreatorUserID: alice.ID}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.CreateStack(s) })
	if s.ID == 0 || !s.Created.Equal(now) {
		t.Errorf("CreateStack set ID %d, Created %v; want an ID and %v", s.ID, s.Created, now)
	}
	bare := e.stack(acme.ID, "web", "dev", nil)
	e.stack(acme.ID, "api", "prod", nil) // the same name in another project
	e.stack(beta.ID, "web", "prod", nil) // in another organization
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.CreateStack(&gatehouse.Stack{OrgID: acme.ID, Project: "web", Name: "prod"})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "CreateStack of an existing stack")

	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetStack(acme.ID, "web", "prod")
		if err != nil {
			return err
		}
		if got.ID != s.ID || got.OrgID != acme.ID || got.OrgName != "acme" || got.Project != "web" || got.Name != "prod" ||
			!maps.Equal(got.Tags, s.Tags) || got.Version != 0 || got.ActiveUpdate != "" || got.ResourceCount != 0 ||
			!got.LastUpdate.IsZero() || !got.Created.Equal(s.Created) || got.CreatedBy != "alice" || got.CreatorUserID != alice.ID {
			t.Errorf("GetStack = %+v, want %+v", got, s)
		}
		if got.Ref() != (gatehouse.StackRef{Org: "acme", Project: "web", Stack: "prod"}) {
			t.Errorf("Ref = %v", got.Ref())
		}
		byID, err := tx.GetStackByID(s.ID)
		if err != nil || byID.Name != "prod" || byID.OrgName != "acme" {
			t.Errorf("GetStackByID = %+v, %v", byID, err)
		}
		if got, err := tx.GetStackByID(bare.ID); err != nil || got.Tags == nil || len(got.Tags) != 0 {
			t.Errorf("a stack created without tags has tags %#v, %v; want an empty, non-nil map", got.Tags, err)
		}
		_, err = tx.GetStack(acme.ID, "web", "staging")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStack of an unknown stack")
		_, err = tx.GetStack(beta.ID, "api", "prod")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStack in the wrong organization")
		_, err = tx.GetStackByID(s.ID + 10000)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStackByID of an unknown ID")
		for _, c := range []struct {
			org     int64
			project string
			want    bool
		}{{acme.ID, "web", true}, {acme.ID, "api", true}, {acme.ID, "nope", false}, {beta.ID, "api", false}} {
			if got, err := tx.ProjectExists(c.org, c.project); err != nil || got != c.want {
				t.Errorf("ProjectExists(%d, %s) = %v, %v; want %v", c.org, c.project, got, err, c.want)
			}
		}
		return nil
	})
}

func listStacks(t *testing.T, e *env, f gatehouse.StackFilter) ([]gatehouse.Stack, string) {
	t.Helper()
	var out []gatehouse.Stack
	var next string
	e.view(func(tx gatehouse.Tx) (err error) { out, next, err = tx.ListStacks(f); return err })
	return out, next
}

func stackNames(ss []gatehouse.Stack) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s.OrgName+"/"+s.Project+"/"+s.Name)
	}
	return out
}

func testListStacks(t *testing.T, e *env) {
	acme, beta, gamma := e.org("acme"), e.org("beta"), e.org("gamma")
	e.stack(acme.ID, "web", "dev", map[string]string{"env": "dev"})
	e.stack(acme.ID, "web", "prod", map[string]string{"env": "production", "tier": "1"})
	e.stack(acme.ID, "api", "prod", map[string]string{"env": "production"})
	e.stack(acme.ID, "api", "scratch", nil)
	e.stack(beta.ID, "web", "prod", map[string]string{"env": "production"})
	e.stack(gamma.ID, "web", "prod", map[string]string{"env": "production"})
	for _, c := range []struct {
		f    gatehouse.StackFilter
		want []string
	}{
		{gatehouse.StackFilter{}, nil},
		{gatehouse.StackFilter{OrgIDs: []int64{}}, nil},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}}, []string{"acme/web/dev", "acme/web/prod", "acme/api/prod", "acme/api/scratch"}},
		{gatehouse.StackFilter{OrgIDs: []int64{beta.ID, acme.ID}}, []string{"acme/web/dev", "acme/web/prod", "acme/api/prod", "acme/api/scratch", "beta/web/prod"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, Project: "api"}, []string{"acme/api/prod", "acme/api/scratch"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, Project: "nope"}, nil},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "env"}, []string{"acme/web/dev", "acme/web/prod", "acme/api/prod"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "env", TagValue: "production"}, []string{"acme/web/prod", "acme/api/prod"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID, gamma.ID}, TagName: "env", TagValue: "production", Project: "web"}, []string{"acme/web/prod", "gamma/web/prod"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "tier"}, []string{"acme/web/prod"}},
		{gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "env", TagValue: "staging"}, nil},
	} {
		got, next := listStacks(t, e, c.f)
		if !slices.Equal(stackNames(got), c.want) || next != "" {
			t.Errorf("ListStacks(%+v) = %q, %q; want %q (in creation order), \"\"", c.f, stackNames(got), next, c.want)
		}
	}
	got, _ := listStacks(t, e, gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, Project: "web", TagName: "tier"})
	if len(got) != 1 || !maps.Equal(got[0].Tags, map[string]string{"env": "production", "tier": "1"}) || got[0].OrgName != "acme" {
		t.Errorf("listed stack = %+v, want acme/web/prod with all its tags", got)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, _, err := tx.ListStacks(gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, Continuation: "not-a-token"})
		wantCode(t, err, gatehouse.EINVALID, "ListStacks with a malformed continuation token")
		return nil
	})
}

func testListStacksPaging(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	var want []string
	for i := range 7 {
		tags := map[string]string{}
		if i%2 == 0 {
			tags["even"] = "yes"
		}
		s := e.stack(acme.ID, "p", fmt.Sprintf("s%d", i), tags)
		want = append(want, "acme/p/"+s.Name)
		e.stack(beta.ID, "p", fmt.Sprintf("s%d", i), tags) // interleaved rows of another organization
	}
	all := func(f gatehouse.StackFilter) (names []string, pages int) {
		t.Helper()
		for {
			got, next := listStacks(t, e, f)
			pages++
			if f.Limit > 0 && len(got) > f.Limit {
				t.Fatalf("a page of %d stacks with Limit %d", len(got), f.Limit)
			}
			names = append(names, stackNames(got)...)
			if next == "" {
				return names, pages
			}
			if next == f.Continuation {
				t.Fatalf("ListStacks returned the continuation token it was given (%q): paging would not end", next)
			}
			if pages > 20 {
				t.Fatal("ListStacks paging does not end")
			}
			f.Continuation = next
		}
	}
	for _, c := range []struct {
		limit, pages int
	}{{1, 7}, {3, 3}, {7, 1}, {100, 1}, {0, 1}} {
		got, pages := all(gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, Limit: c.limit})
		if !slices.Equal(got, want) || pages != c.pages {
			t.Errorf("paging with Limit %d: %d pages of %q; want %d pages of %q", c.limit, pages, got, c.pages, want)
		}
	}
	got, pages := all(gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "even", Limit: 2})
	if want := []string{"acme/p/s0", "acme/p/s2", "acme/p/s4", "acme/p/s6"}; !slices.Equal(got, want) || pages != 2 {
		t.Errorf("paging a tag filter with Limit 2: %d pages of %q; want 2 pages of %q", pages, got, want)
	}
}

func testRenameStack(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "dev", map[string]string{"env": "dev"})
	e.stack(acme.ID, "web", "prod", nil)
	e.update(func(tx gatehouse.Tx) error { return tx.RenameStack(s.ID, "site", "staging") })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetStack(acme.ID, "web", "dev")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStack of the old name after RenameStack")
		got, err := tx.GetStack(acme.ID, "site", "staging")
		if err != nil {
			return err
		}
		if got.ID != s.ID || !maps.Equal(got.Tags, s.Tags) {
			t.Errorf("renamed stack = %+v; want the same stack, tags kept", got)
		}
		return nil
	})
	err := e.try(func(tx gatehouse.Tx) error { return tx.RenameStack(s.ID, "web", "prod") })
	wantCode(t, err, gatehouse.ECONFLICT, "RenameStack onto an existing stack")
	err = e.try(func(tx gatehouse.Tx) error { return tx.RenameStack(s.ID+1000, "web", "other") })
	wantCode(t, err, gatehouse.ENOTFOUND, "RenameStack of an unknown stack")
	if got := e.getStack(s.ID); got.Project != "site" || got.Name != "staging" {
		t.Errorf("a failed rename changed the stack: %+v", got)
	}
}

func testStackTags(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "dev", map[string]string{"env": "dev", "owner": "alice"})
	newTags := map[string]string{"env": "production", "cost-center": "42"}
	e.update(func(tx gatehouse.Tx) error { return tx.SetStackTags(s.ID, newTags) })
	if got := e.getStack(s.ID); !maps.Equal(got.Tags, newTags) {
		t.Errorf("tags after SetStackTags = %v, want %v (replaced, not merged)", got.Tags, newTags)
	}
	f := gatehouse.StackFilter{OrgIDs: []int64{acme.ID}}
	for _, c := range []struct {
		name, value string
		found       bool
	}{{"owner", "", false}, {"env", "dev", false}, {"env", "production", true}, {"cost-center", "42", true}} {
		f.TagName, f.TagValue = c.name, c.value
		if got, _ := listStacks(t, e, f); (len(got) == 1) != c.found {
			t.Errorf("ListStacks by tag %s=%s after SetStackTags found %d stacks, want found=%v", c.name, c.value, len(got), c.found)
		}
	}
	e.update(func(tx gatehouse.Tx) error { return tx.SetStackTags(s.ID, nil) })
	if got := e.getStack(s.ID); got.Tags == nil || len(got.Tags) != 0 {
		t.Errorf("tags after SetStackTags(nil) = %#v, want an empty map", got.Tags)
	}
	f.TagName, f.TagValue = "env", ""
	if got, _ := listStacks(t, e, f); len(got) != 0 {
		t.Errorf("ListStacks by tag after clearing the tags found %q", stackNames(got))
	}
	err := e.try(func(tx gatehouse.Tx) error { return tx.SetStackTags(s.ID+1000, newTags) })
	wantCode(t, err, gatehouse.ENOTFOUND, "SetStackTags of an unknown stack")
}

func testDeleteStack(t *testing.T, e *env) {
	acme := e.org("acme")
	team := e.team(acme.ID, "ops")
	tags := map[string]string{"env": "production"}
	// Two stacks with the same children; deleting one leaves the other whole.
	var stacks []*gatehouse.Stack
	var updates []string
	for _, name := range []string{"keep", "doomed"} {
		s := e.stack(acme.ID, "web", name, tags)
		id := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
		e.startLive(id)
		e.update(func(tx gatehouse.Tx) error {
			if _, err := tx.CreateStackKey(s.ID, []byte("key-"+name)); err != nil {
				return err
			}
			if err := tx.PutCheckpoint(s.ID, 1, []byte(`{"v":1}`)); err != nil {
				return err
			}
			if err := tx.AppendEngineEvents(id, []gatehouse.EngineEvent{{Seq: 1, Data: []byte(`{}`)}}); err != nil {
				return err
			}
			if err := tx.AppendJournal(id, []gatehouse.JournalRecord{{Seq: 1, Data: []byte(`{}`)}}); err != nil {
				return err
			}
			if err := tx.PutGrant(&gatehouse.Grant{TeamID: team.ID, Scope: gatehouse.Scope{StackID: s.ID}, Permission: gatehouse.PermWrite}); err != nil {
				return err
			}
			return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{StackID: s.ID}})
		})
		stacks = append(stacks, s)
		updates = append(updates, id)
	}
	keep, doomed := stacks[0], stacks[1]
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(doomed.ID) })

	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetStackByID(doomed.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStackByID after DeleteStack")
		_, err = tx.GetUpdate(updates[1])
		wantCode(t, err, gatehouse.ENOTFOUND, "GetUpdate of a deleted stack's update")
		_, _, err = tx.GetCheckpoint(doomed.ID, -1)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetCheckpoint of a deleted stack")
		_, err = tx.GetStackKey(doomed.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStackKey of a deleted stack")
		if evs, err := tx.ListEngineEvents(updates[1], 0, 0); err != nil || len(evs) != 0 {
			t.Errorf("engine events of a deleted stack's update: %d, %v", len(evs), err)
		}
		if js, err := tx.ListJournal(updates[1]); err != nil || len(js) != 0 {
			t.Errorf("journal of a deleted stack's update: %d, %v", len(js), err)
		}
		if gs, err := tx.ListStackGrants(doomed.ID); err != nil || len(gs) != 0 {
			t.Errorf("grants of a deleted stack: %q, %v", grantKeys(gs), err)
		}
		if gs, err := tx.ListGrants(team.ID); err != nil || len(gs) != 1 || gs[0].Scope.StackID != keep.ID {
			t.Errorf("team grants after DeleteStack: %q, %v; want only the kept stack's", grantKeys(gs), err)
		}
		if ps, err := tx.ListProtections(acme.ID); err != nil || len(ps) != 1 || ps[0].Scope.StackID != keep.ID {
			t.Errorf("protections after DeleteStack: %+v, %v; want only the kept stack's", ps, err)
		}
		if keys, err := tx.ListStackKeys(); err != nil || len(keys) != 1 || keys[0].StackID != keep.ID {
			t.Errorf("ListStackKeys after DeleteStack: %+v, %v", keys, err)
		}
		// The kept stack is whole.
		if _, err := tx.GetUpdate(updates[0]); err != nil {
			t.Errorf("the kept stack's update: %v", err)
		}
		if _, _, err := tx.GetCheckpoint(keep.ID, -1); err != nil {
			t.Errorf("the kept stack's checkpoint: %v", err)
		}
		if evs, err := tx.ListEngineEvents(updates[0], 0, 0); err != nil || len(evs) != 1 {
			t.Errorf("the kept stack's engine events: %d, %v", len(evs), err)
		}
		return nil
	})
	if got, _ := listStacks(t, e, gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: "env"}); !slices.Equal(stackNames(got), []string{"acme/web/keep"}) {
		t.Errorf("ListStacks by tag after DeleteStack = %q", stackNames(got))
	}
	err := e.try(func(tx gatehouse.Tx) error { return tx.DeleteStack(doomed.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteStack of a deleted stack")

	// A new stack of the same name starts empty (even if the engine reuses the ID).
	again := e.stack(acme.ID, "web", "doomed", nil)
	e.view(func(tx gatehouse.Tx) error {
		_, _, err := tx.GetCheckpoint(again.ID, -1)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetCheckpoint of a re-created stack")
		_, err = tx.GetStackKey(again.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStackKey of a re-created stack")
		if gs, err := tx.ListStackGrants(again.ID); err != nil || len(gs) != 0 {
			t.Errorf("grants of a re-created stack: %q, %v", grantKeys(gs), err)
		}
		if us, err := tx.ListUpdates(again.ID, gatehouse.UpdateFilter{IncludeDryRuns: true}); err != nil || len(us) != 0 {
			t.Errorf("updates of a re-created stack: %d, %v", len(us), err)
		}
		return nil
	})
	if got := e.getStack(again.ID); got.Version != 0 || got.ActiveUpdate != "" || len(got.Tags) != 0 {
		t.Errorf("re-created stack = %+v, want a fresh one", got)
	}
}

func testStackKeys(t *testing.T, e *env) {
	acme := e.org("acme")
	a, b := e.stack(acme.ID, "p", "a", nil), e.stack(acme.ID, "p", "b", nil)
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetStackKey(a.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetStackKey of a stack without a key")
		return nil
	})
	var got []byte
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.CreateStackKey(b.ID, []byte("wrapped-b")); return err })
	if string(got) != "wrapped-b" {
		t.Errorf("CreateStackKey returned %q, want the key it stored", got)
	}
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.CreateStackKey(a.ID, []byte{0, 1, 2, 3}); return err })
	// The first key created wins: a second CreateStackKey returns it and changes nothing.
	e.update(func(tx gatehouse.Tx) (err error) { got, err = tx.CreateStackKey(a.ID, []byte("second")); return err })
	if !bytes.Equal(got, []byte{0, 1, 2, 3}) {
		t.Errorf("second CreateStackKey returned %q, want the first key", got)
	}
	e.view(func(tx gatehouse.Tx) error {
		w, err := tx.GetStackKey(a.ID)
		if err != nil || !bytes.Equal(w, []byte{0, 1, 2, 3}) {
			t.Errorf("GetStackKey = %q, %v; want the first key", w, err)
		}
		keys, err := tx.ListStackKeys()
		if err != nil {
			return err
		}
		if len(keys) != 2 || keys[0].StackID != a.ID || keys[1].StackID != b.ID || string(keys[1].Wrapped) != "wrapped-b" {
			t.Errorf("ListStackKeys = %+v, want a's and b's keys by stack", keys)
		}
		return nil
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.ReplaceStackKey(b.ID, []byte("wrapped-b"), []byte("rewrapped-b"))
	})
	err := e.try(func(tx gatehouse.Tx) error { return tx.ReplaceStackKey(b.ID, []byte("wrapped-b"), []byte("again")) })
	wantCode(t, err, gatehouse.ECONFLICT, "ReplaceStackKey with a stale old key")
	e.view(func(tx gatehouse.Tx) error {
		if w, err := tx.GetStackKey(b.ID); err != nil || string(w) != "rewrapped-b" {
			t.Errorf("GetStackKey after ReplaceStackKey = %q, %v", w, err)
		}
		return nil
	})
}

func testCheckpoints(t *testing.T, e *env) {
	acme := e.org("acme")
	s, other := e.stack(acme.ID, "p", "s", nil), e.stack(acme.ID, "p", "other", nil)
	get := func(stackID int64, version int) ([]byte, int, error) {
		var data []byte
		var v int
		err := e.s.View(e.ctx, func(tx gatehouse.Tx) (err error) { data, v, err = tx.GetCheckpoint(stackID, version); return err })
		return data, v, err
	}
	_, _, err := get(s.ID, -1)
	wantCode(t, err, gatehouse.ENOTFOUND, "GetCheckpoint of a stack without checkpoints")
	big := bytes.Repeat([]byte(`{"resources":[]}`), 1<<16) // 1 MiB
	e.update(func(tx gatehouse.Tx) error {
		for _, v := range []int{1, 3, 5} {
			if err := tx.PutCheckpoint(s.ID, v, []byte(fmt.Sprintf(`{"version":%d}`, v))); err != nil {
				return err
			}
		}
		if err := tx.PutCheckpoint(s.ID, 7, big); err != nil {
			return err
		}
		return tx.PutCheckpoint(other.ID, 9, []byte(`{"other":true}`))
	})
	// Putting a version again replaces it.
	e.update(func(tx gatehouse.Tx) error { return tx.PutCheckpoint(s.ID, 3, []byte(`{"version":3,"again":true}`)) })
	for _, c := range []struct {
		ask, want int
		data      string
	}{
		{1, 1, `{"version":1}`},
		{2, 1, `{"version":1}`},
		{3, 3, `{"version":3,"again":true}`},
		{4, 3, `{"version":3,"again":true}`},
		{6, 5, `{"version":5}`},
		{100, 7, ""},
		{-1, 7, ""},
	} {
		data, v, err := get(s.ID, c.ask)
		if err != nil || v != c.want {
			t.Errorf("GetCheckpoint(%d) = version %d, %v; want version %d", c.ask, v, err, c.want)
			continue
		}
		if c.data == "" {
			if !bytes.Equal(data, big) {
				t.Errorf("GetCheckpoint(%d): the 1 MiB checkpoint read back as %d bytes", c.ask, len(data))
			}
		} else if string(data) != c.data {
			t.Errorf("GetCheckpoint(%d) = %s, want %s", c.ask, data, c.data)
		}
	}
	_, _, err = get(s.ID, 0)
	wantCode(t, err, gatehouse.ENOTFOUND, "GetCheckpoint(0) with no version 0")
	if data, v, err := get(other.ID, -1); err != nil || v != 9 || string(data) != `{"other":true}` {
		t.Errorf("GetCheckpoint of another stack = %s, %d, %v", data, v, err)
	}
}

// --- updates ---

func testUpdates(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", map[string]string{"old": "tag", "env": "dev"})
	u := &gatehouse.Update{ID: randID(), StackID: s.ID, Kind: gatehouse.KindUpdate, Program: json.RawMessage(`{"config":{"a":"b"},"metadata":{"message":"hi"}}`), Author: "alice"}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.CreateUpdate(u) })
	if u.Status != gatehouse.StatusNotStarted || !u.Created.Equal(now) {
		t.Errorf("CreateUpdate set Status %q, Created %v; want %q and %v", u.Status, u.Created, gatehouse.StatusNotStarted, now)
	}
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.CreateUpdate(&gatehouse.Update{ID: u.ID, StackID: s.ID, Kind: gatehouse.KindUpdate})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "CreateUpdate with an existing ID")
	got := e.getUpdate(u.ID)
	if got.StackID != s.ID || got.Kind != gatehouse.KindUpdate || got.DryRun || got.Status != gatehouse.StatusNotStarted ||
		string(got.Program) != string(u.Program) || got.Author != "alice" || !got.Created.Equal(now) || !got.Started.IsZero() || !got.Ended.IsZero() {
		t.Errorf("GetUpdate = %+v, want %+v", got, u)
	}
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetUpdate(randID())
		wantCode(t, err, gatehouse.ENOTFOUND, "GetUpdate of an unknown ID")
		_, err = tx.GetUpdateByLease(randDigest())
		wantCode(t, err, gatehouse.ENOTFOUND, "GetUpdateByLease of an unknown lease")
		return nil
	})

	lease := randDigest()
	var startNow time.Time
	var expires time.Time
	var version int
	newTags := map[string]string{"pulumi:project": "web", "env": "production"}
	e.update(func(tx gatehouse.Tx) (err error) {
		startNow = tx.Now()
		expires = startNow.Add(5 * time.Minute)
		version, err = tx.StartUpdate(u.ID, newTags, lease, expires, 1)
		return err
	})
	if version != 1 {
		t.Errorf("StartUpdate returned version %d, want 1", version)
	}
	got = e.getUpdate(u.ID)
	if got.Status != gatehouse.StatusRunning || got.Version != 1 || !got.Started.Equal(startNow) || got.LeaseDigest != lease ||
		!got.LeaseExpires.Equal(expires) || got.JournalVersion != 1 {
		t.Errorf("started update = %+v", got)
	}
	st := e.getStack(s.ID)
	// The update's tags are merged into the stack's: tags people set (which grants and
	// protection rules select on) survive updates.
	mergedTags := map[string]string{"old": "tag", "env": "production", "pulumi:project": "web"}
	if st.Version != 1 || st.ActiveUpdate != u.ID || !maps.Equal(st.Tags, mergedTags) {
		t.Errorf("stack after StartUpdate = %+v; want version 1, locked by %s, tags %v", st, u.ID, mergedTags)
	}
	for _, c := range []struct {
		name, value string
		found       bool
	}{{"old", "tag", true}, {"env", "dev", false}, {"env", "production", true}, {"pulumi:project", "web", true}} {
		got, _ := listStacks(t, e, gatehouse.StackFilter{OrgIDs: []int64{acme.ID}, TagName: c.name, TagValue: c.value})
		if (len(got) == 1) != c.found {
			t.Errorf("ListStacks by tag %s=%s after StartUpdate found %d stacks, want found=%v", c.name, c.value, len(got), c.found)
		}
	}
	e.view(func(tx gatehouse.Tx) error {
		byLease, err := tx.GetUpdateByLease(lease)
		if err != nil || byLease.ID != u.ID {
			t.Errorf("GetUpdateByLease = %+v, %v; want %s", byLease, err, u.ID)
		}
		return nil
	})
	_, err = e.start(u.ID, randDigest(), expires)
	wantCode(t, err, gatehouse.ECONFLICT, "StartUpdate of a started update")

	e.update(func(tx gatehouse.Tx) error {
		if err := tx.SetUpdateSequence(u.ID, 42); err != nil {
			return err
		}
		return tx.SetUpdateChanges(u.ID, map[string]int{"create": 3, "same": 1})
	})
	if got := e.getUpdate(u.ID); got.Sequence != 42 || !maps.Equal(got.ResourceChanges, map[string]int{"create": 3, "same": 1}) {
		t.Errorf("after SetUpdateSequence and SetUpdateChanges: Sequence %d, ResourceChanges %v", got.Sequence, got.ResourceChanges)
	}
	// The credential that started it (zero until recorded).
	if got := e.getUpdate(u.ID); !got.StartedBy.IsZero() {
		t.Errorf("StartedBy before SetUpdateStarter = %v, want none", got.StartedBy)
	}
	starter := gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: "tok-1"}
	e.update(func(tx gatehouse.Tx) error { return tx.SetUpdateStarter(u.ID, starter) })
	if got := e.getUpdate(u.ID); got.StartedBy != starter {
		t.Errorf("StartedBy = %v, want %v", got.StartedBy, starter)
	}
	wantCode(t, e.try(func(tx gatehouse.Tx) error { return tx.SetUpdateStarter("no-such-update", starter) }), gatehouse.ENOTFOUND, "SetUpdateStarter of a missing update")

	// A non-dry start without tags leaves the stack's tags alone.
	e.finish(u.ID, gatehouse.StatusSucceeded, 4)
	u2 := e.newUpdate(s.ID, gatehouse.KindRefresh, false)
	if v, _ := e.startLive(u2); v != 2 {
		t.Errorf("the next update's version = %d, want 2", v)
	}
	if st := e.getStack(s.ID); !maps.Equal(st.Tags, mergedTags) || st.Version != 2 {
		t.Errorf("stack after a start without tags = %+v; want tags %v, version 2", st, mergedTags)
	}
}

func testStartUpdateLock(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	other := e.stack(acme.ID, "web", "dev", nil)
	a, b := e.newUpdate(s.ID, gatehouse.KindUpdate, false), e.newUpdate(s.ID, gatehouse.KindDestroy, false)
	e.startLive(a)
	_, err := e.start(b, randDigest(), e.now().Add(time.Hour))
	wantCode(t, err, gatehouse.ECONFLICT, "StartUpdate while another update holds the stack")
	if st := e.getStack(s.ID); st.Version != 1 || st.ActiveUpdate != a {
		t.Errorf("stack after a refused start = %+v; want version 1, held by %s", st, a)
	}
	if got := e.getUpdate(b); got.Status != gatehouse.StatusNotStarted {
		t.Errorf("refused update's status = %q, want %q", got.Status, gatehouse.StatusNotStarted)
	}
	// The lock is per stack.
	c := e.newUpdate(other.ID, gatehouse.KindUpdate, false)
	if v, _ := e.startLive(c); v != 1 {
		t.Errorf("update of another stack: version %d, want 1", v)
	}
	// Once the holder finishes, the refused update can start.
	e.finish(a, gatehouse.StatusFailed, -1)
	if st := e.getStack(s.ID); st.ActiveUpdate != "" {
		t.Errorf("stack still locked by %q after its update finished", st.ActiveUpdate)
	}
	if v, _ := e.startLive(b); v != 2 {
		t.Errorf("version after the holder finished = %d, want 2", v)
	}
}

func testDryRuns(t *testing.T, e *env) {
	acme := e.org("acme")
	tags := map[string]string{"env": "dev"}
	s := e.stack(acme.ID, "web", "prod", tags)
	holder := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	e.startLive(holder)
	var previews []string
	for range 2 {
		p := e.newUpdate(s.ID, gatehouse.KindPreview, true)
		// Previews change nothing: not the lock, not the version, not the tags.
		var v int
		e.update(func(tx gatehouse.Tx) (err error) {
			v, err = tx.StartUpdate(p, map[string]string{"env": "preview", "pulumi:project": "web"}, randDigest(), tx.Now().Add(time.Hour), 0)
			return err
		})
		if v != 1 {
			t.Errorf("a preview started with version %d, want the stack's current version 1", v)
		}
		if got := e.getUpdate(p); got.Status != gatehouse.StatusRunning || got.Version != 1 {
			t.Errorf("started preview = %+v", got)
		}
		previews = append(previews, p)
	}
	if st := e.getStack(s.ID); st.ActiveUpdate != holder || st.Version != 1 || !maps.Equal(st.Tags, tags) {
		t.Errorf("stack after previews = %+v; want still held by %s at version 1, tags %v", st, holder, tags)
	}
	// A preview alone does not lock either: a real update starts while one runs.
	e.finish(holder, gatehouse.StatusSucceeded, -1)
	lastUpdate := e.getStack(s.ID).LastUpdate
	next := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	if v, _ := e.startLive(next); v != 2 {
		t.Errorf("an update started while previews run: version %d, want 2", v)
	}
	// Finishing a preview leaves the stack (its lock, version, last update) alone.
	e.finish(previews[0], gatehouse.StatusSucceeded, 99)
	if st := e.getStack(s.ID); st.ActiveUpdate != next || st.Version != 2 || st.ResourceCount == 99 || !st.LastUpdate.Equal(lastUpdate) {
		t.Errorf("stack after a preview finished = %+v", st)
	}
}

func testLeaseTakeover(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	holder, next := e.newUpdate(s.ID, gatehouse.KindUpdate, false), e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	lease := randDigest()
	if _, err := e.start(holder, lease, e.now().Add(e.leaseFor())); err != nil {
		t.Fatal(err)
	}
	e.expireLeases()
	var now time.Time
	var v int
	e.update(func(tx gatehouse.Tx) (err error) {
		now = tx.Now()
		v, err = tx.StartUpdate(next, nil, randDigest(), now.Add(time.Hour), 0)
		return err
	})
	if v != 2 {
		t.Errorf("update that took over an expired lock: version %d, want 2", v)
	}
	got := e.getUpdate(holder)
	if got.Status != gatehouse.StatusCancelled || !got.Ended.Equal(now) {
		t.Errorf("the expired holder = %+v; want cancelled at %v", got, now)
	}
	if st := e.getStack(s.ID); st.ActiveUpdate != next || st.Version != 2 {
		t.Errorf("stack after the takeover = %+v; want held by %s at version 2", st, next)
	}
	// The old holder's CLI comes back: its lease is gone, its completion changes nothing.
	err := e.try(func(tx gatehouse.Tx) error { return tx.RenewLease(holder, lease, tx.Now().Add(time.Hour)) })
	wantCode(t, err, gatehouse.EGONE, "RenewLease of a cancelled update")
	if st := e.finish(holder, gatehouse.StatusSucceeded, 10); st != gatehouse.StatusCancelled {
		t.Errorf("FinishUpdate of the cancelled holder returned %q, want %q", st, gatehouse.StatusCancelled)
	}
	if st := e.getStack(s.ID); st.ActiveUpdate != next || st.ResourceCount == 10 {
		t.Errorf("the old holder's completion changed the stack: %+v", st)
	}
}

func testRenewLease(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	id := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	renew := func(id string, lease [32]byte, exp time.Time) error {
		return e.try(func(tx gatehouse.Tx) error { return tx.RenewLease(id, lease, exp) })
	}
	wantCode(t, renew(id, randDigest(), e.now().Add(time.Hour)), gatehouse.EGONE, "RenewLease of an update not started")
	_, lease := e.startLive(id)
	exp := e.now().Add(2 * time.Hour)
	if err := renew(id, lease, exp); err != nil {
		t.Fatalf("RenewLease: %v", err)
	}
	if got := e.getUpdate(id); !got.LeaseExpires.Equal(exp) {
		t.Errorf("LeaseExpires after RenewLease = %v, want %v", got.LeaseExpires, exp)
	}
	wantCode(t, renew(id, randDigest(), exp), gatehouse.EGONE, "RenewLease with another lease")
	wantCode(t, renew(randID(), lease, exp), gatehouse.EGONE, "RenewLease of an unknown update")
	e.finish(id, gatehouse.StatusSucceeded, -1)
	wantCode(t, renew(id, lease, exp.Add(time.Hour)), gatehouse.EGONE, "RenewLease after FinishUpdate")
	// The lease still names its update (the CLI may repeat its completion), which has ended.
	e.view(func(tx gatehouse.Tx) error {
		u, err := tx.GetUpdateByLease(lease)
		if err != nil {
			t.Errorf("GetUpdateByLease after FinishUpdate: %v; want the finished update", err)
			return nil
		}
		if u.ID != id || !u.Status.Finished() || u.LeaseExpires.After(tx.Now()) {
			t.Errorf("GetUpdateByLease after FinishUpdate = %+v; want %s, finished, its lease not live", u, id)
		}
		return nil
	})
}

func testFinishUpdate(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	id := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	e.startLive(id)
	e.update(func(tx gatehouse.Tx) error { return tx.SetUpdateChanges(id, map[string]int{"create": 1}) })
	var now time.Time
	var got gatehouse.UpdateStatus
	changes := map[string]int{"create": 2, "update": 1}
	e.update(func(tx gatehouse.Tx) (err error) {
		now = tx.Now()
		got, err = tx.FinishUpdate(id, gatehouse.StatusSucceeded, changes, 7)
		return err
	})
	if got != gatehouse.StatusSucceeded {
		t.Errorf("FinishUpdate returned %q", got)
	}
	u := e.getUpdate(id)
	if u.Status != gatehouse.StatusSucceeded || !u.Ended.Equal(now) || !maps.Equal(u.ResourceChanges, changes) || u.ResourceCount != 7 ||
		u.LeaseExpires.After(now) {
		t.Errorf("finished update = %+v", u)
	}
	st := e.getStack(s.ID)
	if st.ActiveUpdate != "" || !st.LastUpdate.Equal(now) || st.ResourceCount != 7 || st.Version != 1 {
		t.Errorf("stack after FinishUpdate = %+v; want unlocked, last update %v, 7 resources, version 1", st, now)
	}
	// Finishing again is a no-op that reports how it ended.
	e.update(func(tx gatehouse.Tx) (err error) {
		got, err = tx.FinishUpdate(id, gatehouse.StatusFailed, map[string]int{"delete": 9}, 0)
		return err
	})
	if got != gatehouse.StatusSucceeded {
		t.Errorf("FinishUpdate of a finished update returned %q, want %q", got, gatehouse.StatusSucceeded)
	}
	if u := e.getUpdate(id); u.Status != gatehouse.StatusSucceeded || !maps.Equal(u.ResourceChanges, changes) || !u.Ended.Equal(now) {
		t.Errorf("a second FinishUpdate changed the update: %+v", u)
	}
	if st := e.getStack(s.ID); st.ResourceCount != 7 {
		t.Errorf("a second FinishUpdate changed the stack's resource count to %d", st.ResourceCount)
	}

	// resourceCount < 0 leaves the stack's count; nil changes keep the recorded ones.
	id2 := e.newUpdate(s.ID, gatehouse.KindRefresh, false)
	e.startLive(id2)
	e.update(func(tx gatehouse.Tx) error { return tx.SetUpdateChanges(id2, map[string]int{"same": 7}) })
	e.finish(id2, gatehouse.StatusFailed, -1)
	if st := e.getStack(s.ID); st.ResourceCount != 7 || st.ActiveUpdate != "" {
		t.Errorf("stack after FinishUpdate with count -1 = %+v; want 7 resources, unlocked", st)
	}
	if u := e.getUpdate(id2); u.Status != gatehouse.StatusFailed || !maps.Equal(u.ResourceChanges, map[string]int{"same": 7}) {
		t.Errorf("update finished with nil changes = %+v; want the recorded changes kept", u)
	}

	// An update cancelled before it started never held the lock: it does not release
	// another update's.
	holder := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	e.startLive(holder)
	never := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	if got := e.finish(never, gatehouse.StatusCancelled, 0); got != gatehouse.StatusCancelled {
		t.Errorf("FinishUpdate of an update not started returned %q", got)
	}
	if st := e.getStack(s.ID); st.ActiveUpdate != holder || st.ResourceCount != 7 {
		t.Errorf("finishing an update that never started changed the stack: %+v", st)
	}
	_, err := e.start(never, randDigest(), e.now().Add(time.Hour))
	wantCode(t, err, gatehouse.ECONFLICT, "StartUpdate of a cancelled update")
	err = e.try(func(tx gatehouse.Tx) error {
		_, err := tx.FinishUpdate(randID(), gatehouse.StatusSucceeded, nil, 0)
		return err
	})
	wantCode(t, err, gatehouse.ENOTFOUND, "FinishUpdate of an unknown update")
}

func testListUpdates(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	other := e.stack(acme.ID, "web", "dev", nil)
	u1 := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	e.startLive(u1)
	p1 := e.newUpdate(s.ID, gatehouse.KindPreview, true)
	e.startLive(p1)
	e.finish(p1, gatehouse.StatusSucceeded, -1)
	e.finish(u1, gatehouse.StatusSucceeded, -1)
	u2 := e.newUpdate(s.ID, gatehouse.KindRefresh, false)
	e.startLive(u2)
	e.finish(u2, gatehouse.StatusFailed, -1)
	e.newUpdate(s.ID, gatehouse.KindPreview, true) // never started: not listed
	u3 := e.newUpdate(s.ID, gatehouse.KindDestroy, false)
	e.startLive(u3)                                // running
	e.newUpdate(s.ID, gatehouse.KindUpdate, false) // never started
	o1 := e.newUpdate(other.ID, gatehouse.KindUpdate, false)
	e.startLive(o1)

	list := func(f gatehouse.UpdateFilter) []string {
		t.Helper()
		var ids []string
		e.view(func(tx gatehouse.Tx) error {
			us, err := tx.ListUpdates(s.ID, f)
			for _, u := range us {
				if u.StackID != s.ID {
					t.Errorf("ListUpdates returned an update of stack %d", u.StackID)
				}
				ids = append(ids, u.ID)
			}
			return err
		})
		return ids
	}
	name := map[string]string{u1: "u1", p1: "p1", u2: "u2", u3: "u3", o1: "o1"}
	names := func(ids []string) []string {
		out := []string{}
		for _, id := range ids {
			out = append(out, name[id])
		}
		return out
	}
	for _, c := range []struct {
		f    gatehouse.UpdateFilter
		want []string
	}{
		{gatehouse.UpdateFilter{}, []string{"u3", "u2", "u1"}},
		{gatehouse.UpdateFilter{IncludeDryRuns: true}, []string{"u3", "u2", "p1", "u1"}},
		{gatehouse.UpdateFilter{Page: 1, PageSize: 2}, []string{"u3", "u2"}},
		{gatehouse.UpdateFilter{Page: 0, PageSize: 2}, []string{"u3", "u2"}},
		{gatehouse.UpdateFilter{Page: 2, PageSize: 2}, []string{"u1"}},
		{gatehouse.UpdateFilter{Page: 3, PageSize: 2}, []string{}},
		{gatehouse.UpdateFilter{Page: 2, PageSize: 2, IncludeDryRuns: true}, []string{"p1", "u1"}},
	} {
		if got := names(list(c.f)); !slices.Equal(got, c.want) {
			t.Errorf("ListUpdates(%+v) = %q, want %q (newest first)", c.f, got, c.want)
		}
	}
}

func testEngineEvents(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	id, other := e.newUpdate(s.ID, gatehouse.KindUpdate, false), e.newUpdate(s.ID, gatehouse.KindPreview, true)
	ev := func(seq int, data string) gatehouse.EngineEvent {
		return gatehouse.EngineEvent{Seq: seq, Data: []byte(data)}
	}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.AppendEngineEvents(id, []gatehouse.EngineEvent{ev(1, `"a"`), ev(2, `"b"`), ev(3, `"c"`)}); err != nil {
			return err
		}
		return tx.AppendEngineEvents(other, []gatehouse.EngineEvent{ev(1, `"other"`)})
	})
	// The CLI retries a batch: sequences already stored keep their first data.
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendEngineEvents(id, []gatehouse.EngineEvent{ev(2, `"B"`), ev(3, `"C"`), ev(4, `"d"`), ev(6, `"f"`)})
	})
	list := func(after, limit int) string {
		t.Helper()
		var parts []string
		e.view(func(tx gatehouse.Tx) error {
			evs, err := tx.ListEngineEvents(id, after, limit)
			for _, e := range evs {
				parts = append(parts, fmt.Sprintf("%d:%s", e.Seq, e.Data))
			}
			return err
		})
		return strings.Join(parts, " ")
	}
	for _, c := range []struct {
		after, limit int
		want         string
	}{
		{0, 0, `1:"a" 2:"b" 3:"c" 4:"d" 6:"f"`},
		{2, 0, `3:"c" 4:"d" 6:"f"`},
		{0, 2, `1:"a" 2:"b"`},
		{3, 2, `4:"d" 6:"f"`},
		{6, 0, ``},
	} {
		if got := list(c.after, c.limit); got != c.want {
			t.Errorf("ListEngineEvents(after %d, limit %d) = %s, want %s", c.after, c.limit, got, c.want)
		}
	}
}

func testJournal(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	id, other := e.newUpdate(s.ID, gatehouse.KindUpdate, false), e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	rec := func(seq int64, data string) gatehouse.JournalRecord {
		return gatehouse.JournalRecord{Seq: seq, Data: []byte(data)}
	}
	big := int64(1) << 40
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.AppendJournal(id, []gatehouse.JournalRecord{rec(2, `"two"`), rec(1, `"one"`)}); err != nil {
			return err
		}
		return tx.AppendJournal(other, []gatehouse.JournalRecord{rec(1, `"other"`)})
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendJournal(id, []gatehouse.JournalRecord{rec(2, `"TWO"`), rec(3, `"three"`), rec(big, `"big"`)})
	})
	e.view(func(tx gatehouse.Tx) error {
		js, err := tx.ListJournal(id)
		if err != nil {
			return err
		}
		var parts []string
		for _, j := range js {
			parts = append(parts, fmt.Sprintf("%d:%s", j.Seq, j.Data))
		}
		if got, want := strings.Join(parts, " "), fmt.Sprintf(`1:"one" 2:"two" 3:"three" %d:"big"`, big); got != want {
			t.Errorf("ListJournal = %s, want %s (by sequence, first data kept)", got, want)
		}
		if n, last, err := tx.JournalHead(id); err != nil || n != 4 || last != big {
			t.Errorf("JournalHead = %d, %d, %v; want 4, %d (the duplicate 2 not counted)", n, last, err, big)
		}
		if n, last, err := tx.JournalHead("no-such-update"); err != nil || n != 0 || last != 0 {
			t.Errorf("JournalHead of an update without entries = %d, %d, %v; want 0, 0", n, last, err)
		}
		return nil
	})
}

// --- audit ---

func checkChain(t *testing.T, events []gatehouse.AuditEvent) {
	t.Helper()
	prev := audit.Genesis()
	for i, ev := range events {
		if ev.Seq != int64(i+1) {
			t.Fatalf("event %d has Seq %d, want %d (one chain, no gaps)", i, ev.Seq, i+1)
		}
		if !bytes.Equal(ev.PrevHash, prev) {
			t.Fatalf("event %d: PrevHash %x, want the previous event's hash %x", ev.Seq, ev.PrevHash, prev)
		}
		if h := audit.Hash(ev.PrevHash, &ev); !bytes.Equal(ev.Hash, h) {
			t.Fatalf("event %d: Hash %x, want audit.Hash = %x", ev.Seq, ev.Hash, h)
		}
		prev = ev.Hash
	}
	rep, err := audit.Verify(context.Background(), audit.Events(events), nil, nil)
	if err != nil || !rep.OK || rep.Checked != int64(len(events)) {
		t.Fatalf("audit.Verify: %v, %v", rep, err)
	}
}

func (e *env) allAudit() []gatehouse.AuditEvent {
	e.t.Helper()
	var out []gatehouse.AuditEvent
	e.view(func(tx gatehouse.Tx) (err error) {
		out, err = tx.ListAudit(gatehouse.AuditFilter{Ascending: true, Limit: 100000})
		return err
	})
	return out
}

func testAudit(t *testing.T, e *env) {
	if evs := e.allAudit(); len(evs) != 0 {
		t.Fatalf("a new store has %d audit events", len(evs))
	}
	first := &gatehouse.AuditEvent{
		OrgID: 7, OrgName: "acme", ActorKind: "user", ActorName: "alice", UserID: 3, TokenID: "tok", SourceIP: "192.0.2.1",
		UserAgent: "pulumi/3", Action: "stack:create", Target: "acme/web/prod", Outcome: gatehouse.OutcomeSuccess,
		RequestID: "req-1", Details: map[string]string{"b": "2", "a": "1"},
	}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.AppendAudit(first) })
	if first.Seq != 1 || first.ID == "" || !first.Time.Equal(now) || first.Time.Location() != time.UTC {
		t.Errorf("first event: Seq %d, ID %q, Time %v; want 1, an ID, the transaction's Now %v", first.Seq, first.ID, first.Time, now)
	}
	if !bytes.Equal(first.PrevHash, audit.Genesis()) || !bytes.Equal(first.Hash, audit.Hash(audit.Genesis(), first)) {
		t.Errorf("first event: PrevHash %x, Hash %x; want the genesis and audit.Hash", first.PrevHash, first.Hash)
	}
	// A given ID and time are kept (the time in UTC, to the nanosecond).
	at := time.Date(2029, 12, 31, 23, 59, 59, 987654321, time.FixedZone("x", 5*3600))
	second := &gatehouse.AuditEvent{ID: "given-id", Time: at, ActorKind: "anonymous", Action: "auth:login", Outcome: gatehouse.OutcomeDenied, Reason: "bad token"}
	// Text that arrives from outside unchecked (a header, an error message) is stored, not
	// refused: invalid UTF-8 and NUL read back as U+FFFD, the event as the caller holds it
	// after AppendAudit is the stored one, and invalid bytes hash as audit.Hash counts them.
	third := &gatehouse.AuditEvent{ActorKind: "system", Action: "keys:rotate", Outcome: gatehouse.OutcomeFailure,
		Target: "\xff invalid \xc3 utf-8", Reason: "nul\x00byte"}
	original := *third
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.AppendAudit(second); err != nil {
			return err
		}
		return tx.AppendAudit(third) // several in one transaction
	})
	if second.ID != "given-id" || !second.Time.Equal(at) || second.Seq != 2 || !bytes.Equal(second.PrevHash, first.Hash) {
		t.Errorf("second event: %+v", second)
	}
	if third.Seq != 3 || !bytes.Equal(third.PrevHash, second.Hash) || third.ID == first.ID {
		t.Errorf("third event: Seq %d, PrevHash %x; want 3 chained to the second", third.Seq, third.PrevHash)
	}
	if third.Target != "\ufffd invalid \ufffd utf-8" || third.Reason != "nul\ufffdbyte" {
		t.Errorf("event text after AppendAudit: Target %q, Reason %q; want invalid UTF-8 and NUL as U+FFFD", third.Target, third.Reason)
	}
	original.Seq, original.ID, original.Time, original.Reason = third.Seq, third.ID, third.Time, third.Reason
	if !bytes.Equal(third.Hash, audit.Hash(third.PrevHash, &original)) {
		t.Error("the stored event's hash differs from audit.Hash of the event with its invalid UTF-8 as given")
	}
	evs := e.allAudit()
	checkChain(t, evs)
	if len(evs) != 3 {
		t.Fatalf("%d events stored, want 3", len(evs))
	}
	for i, want := range []*gatehouse.AuditEvent{first, second, third} {
		got := evs[i]
		if got.ID != want.ID || !got.Time.Equal(want.Time) || got.OrgID != want.OrgID || got.OrgName != want.OrgName ||
			got.ActorKind != want.ActorKind || got.ActorName != want.ActorName || got.UserID != want.UserID || got.TokenID != want.TokenID ||
			got.SourceIP != want.SourceIP || got.UserAgent != want.UserAgent || got.Action != want.Action || got.Target != want.Target ||
			got.Outcome != want.Outcome || got.Reason != want.Reason || got.RequestID != want.RequestID ||
			!maps.Equal(got.Details, want.Details) || !bytes.Equal(got.PrevHash, want.PrevHash) || !bytes.Equal(got.Hash, want.Hash) {
			t.Errorf("event %d read back as\n%+v\nwant\n%+v", i+1, got, *want)
		}
	}
}

func testAuditRollback(t *testing.T, e *env) {
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendAudit(&gatehouse.AuditEvent{Action: "a:1", Outcome: "success"})
	})
	boom := errors.New("boom")
	err := e.try(func(tx gatehouse.Tx) error {
		if err := tx.AppendAudit(&gatehouse.AuditEvent{Action: "a:rolled-back", Outcome: "success"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	e.update(func(tx gatehouse.Tx) error {
		return tx.AppendAudit(&gatehouse.AuditEvent{Action: "a:2", Outcome: "success"})
	})
	evs := e.allAudit()
	checkChain(t, evs)
	var actions []string
	for _, ev := range evs {
		actions = append(actions, ev.Action)
	}
	if want := []string{"a:1", "a:2"}; !slices.Equal(actions, want) {
		t.Errorf("audit log = %q, want %q (the rolled back event leaves no trace, no gap)", actions, want)
	}
}

// testAuditBatch: a transaction appending many events (more than one multi-row INSERT's
// worth) chains them all, sees them when it reads the log itself, and leaves no trace when
// it is rolled back.
func testAuditBatch(t *testing.T, e *env) {
	const n = 257
	var seen int
	var head int64
	e.update(func(tx gatehouse.Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.AppendAudit(&gatehouse.AuditEvent{Action: "batch:" + strconv.Itoa(i), Outcome: "success"}); err != nil {
				return err
			}
			if i == 150 { // a read in the middle sees what the transaction appended so far
				evs, err := tx.ListAudit(gatehouse.AuditFilter{Limit: 1000})
				if err != nil {
					return err
				}
				seen = len(evs)
			}
		}
		var err error
		head, _, err = tx.AuditHead()
		return err
	})
	if seen != 151 {
		t.Errorf("a read after 151 appends in the transaction saw %d events", seen)
	}
	if head != n {
		t.Errorf("AuditHead in the transaction = %d, want %d", head, n)
	}
	boom := errors.New("boom")
	err := e.try(func(tx gatehouse.Tx) error {
		for i := 0; i < n; i++ {
			if err := tx.AppendAudit(&gatehouse.AuditEvent{Action: "rolled-back", Outcome: "success"}); err != nil {
				return err
			}
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update returned %v, want the function's error", err)
	}
	evs := e.allAudit()
	checkChain(t, evs)
	if len(evs) != n {
		t.Fatalf("the log holds %d events, want %d", len(evs), n)
	}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || ev.Action != "batch:"+strconv.Itoa(i) {
			t.Fatalf("event %d = seq %d %q", i, ev.Seq, ev.Action)
		}
	}
}

// testAuditFailureSticks: once writing the log fails in a transaction (here an event ID
// that exists already), every later append in it fails too, even for a caller that ignored
// the error, and the transaction cannot commit: nothing of it is kept.
func testAuditFailureSticks(t *testing.T, e *env) {
	first := e.appendAudit(1)[0]
	err := e.try(func(tx gatehouse.Tx) error {
		var errs int
		for i := 0; i < 40; i++ { // more than one multi-row INSERT's worth
			ev := &gatehouse.AuditEvent{Action: "sticky:" + strconv.Itoa(i), Outcome: "success"}
			if i == 10 {
				ev.ID = first.ID // a duplicate: the INSERT holding it fails
			}
			if tx.AppendAudit(ev) != nil {
				errs++
			}
		}
		if errs == 0 {
			t.Error("no append reported the failed write")
		}
		return nil // the caller ignores it all
	})
	if err == nil {
		t.Fatal("the transaction committed although writing its audit events failed")
	}
	evs := e.allAudit()
	checkChain(t, evs)
	if len(evs) != 1 {
		t.Fatalf("the log holds %d events, want only the first", len(evs))
	}
	e.appendAudit(2) // the log goes on
	checkChain(t, e.allAudit())
}

func testListAudit(t *testing.T, e *env) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	type spec struct {
		org    int64
		action string
		actor  string
	}
	specs := []spec{
		{1, "stack:create", "alice"}, // seq 1, t0
		{2, "stack:create", "bob"},   // seq 2, t0+1m
		{1, "stack:delete", "bob"},   // seq 3, t0+2m
		{1, "stack:create", "bob"},   // seq 4, t0+3m
		{0, "site:settings", "root"}, // seq 5, t0+4m
		{1, "stack:delete", "alice"}, // seq 6, t0+5m
	}
	e.update(func(tx gatehouse.Tx) error {
		for i, s := range specs {
			ev := &gatehouse.AuditEvent{OrgID: s.org, Action: s.action, ActorName: s.actor, Outcome: "success", Time: t0.Add(time.Duration(i) * time.Minute)}
			if err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		return nil
	})
	seqs := func(f gatehouse.AuditFilter) []int64 {
		t.Helper()
		var out []int64
		e.view(func(tx gatehouse.Tx) error {
			evs, err := tx.ListAudit(f)
			for _, ev := range evs {
				out = append(out, ev.Seq)
			}
			return err
		})
		return out
	}
	for _, c := range []struct {
		f    gatehouse.AuditFilter
		want []int64
	}{
		{gatehouse.AuditFilter{}, []int64{6, 5, 4, 3, 2, 1}},
		{gatehouse.AuditFilter{Ascending: true}, []int64{1, 2, 3, 4, 5, 6}},
		{gatehouse.AuditFilter{Limit: 2}, []int64{6, 5}},
		{gatehouse.AuditFilter{Limit: 2, Ascending: true}, []int64{1, 2}},
		{gatehouse.AuditFilter{OrgID: 1}, []int64{6, 4, 3, 1}},
		{gatehouse.AuditFilter{OrgID: 2}, []int64{2}},
		{gatehouse.AuditFilter{Since: t0.Add(2 * time.Minute)}, []int64{6, 5, 4, 3}},
		{gatehouse.AuditFilter{Until: t0.Add(2 * time.Minute)}, []int64{2, 1}},
		{gatehouse.AuditFilter{Since: t0.Add(time.Minute), Until: t0.Add(4 * time.Minute), OrgID: 1}, []int64{4, 3}},
		{gatehouse.AuditFilter{Action: "stack:create"}, []int64{4, 2, 1}},
		{gatehouse.AuditFilter{ActorName: "bob", OrgID: 1}, []int64{4, 3}},
		{gatehouse.AuditFilter{Action: "stack:delete", ActorName: "alice"}, []int64{6}},
		{gatehouse.AuditFilter{AfterSeq: 3, Ascending: true}, []int64{4, 5, 6}},
		{gatehouse.AuditFilter{AfterSeq: 3, Ascending: true, Limit: 2}, []int64{4, 5}},
		{gatehouse.AuditFilter{BeforeSeq: 4}, []int64{3, 2, 1}},
		{gatehouse.AuditFilter{BeforeSeq: 4, Limit: 1}, []int64{3}},
		{gatehouse.AuditFilter{BeforeSeq: 5, OrgID: 1, Action: "stack:create"}, []int64{4, 1}},
		{gatehouse.AuditFilter{Action: "nothing"}, nil},
	} {
		if got := seqs(c.f); !slices.Equal(got, c.want) {
			t.Errorf("ListAudit(%+v) = %v, want %v", c.f, got, c.want)
		}
	}
}

// --- failed-authentication counters ---

func testAuthFailures(t *testing.T, e *env) {
	window := time.Minute
	if e.clock == nil {
		window = 300 * time.Millisecond
	}
	get := func(key string) (int, time.Time) {
		t.Helper()
		var n int
		var start time.Time
		e.view(func(tx gatehouse.Tx) (err error) { n, start, err = tx.AuthFailures(key, window); return err })
		return n, start
	}
	if n, start := get("ip:192.0.2.1"); n != 0 || !start.IsZero() {
		t.Errorf("AuthFailures of a key never counted = %d, %v", n, start)
	}
	var first time.Time
	for want := 1; want <= 3; want++ {
		var n int
		var start, now time.Time
		e.update(func(tx gatehouse.Tx) (err error) {
			now = tx.Now()
			n, start, err = tx.RecordAuthFailure("ip:192.0.2.1", window)
			return err
		})
		if want == 1 {
			first = now
		}
		if n != want || !start.Equal(first) {
			t.Errorf("RecordAuthFailure #%d = %d, window start %v; want %d, %v", want, n, start, want, first)
		}
	}
	e.update(func(tx gatehouse.Tx) error { _, _, err := tx.RecordAuthFailure("ip:192.0.2.2", window); return err })
	if n, start := get("ip:192.0.2.1"); n != 3 || !start.Equal(first) {
		t.Errorf("AuthFailures = %d, %v; want 3, %v", n, start, first)
	}
	if n, _ := get("ip:192.0.2.2"); n != 1 {
		t.Errorf("AuthFailures of another key = %d, want 1", n)
	}
	// Once the window has passed, the count starts again.
	if e.clock != nil {
		e.clock.Advance(2 * window)
	} else {
		time.Sleep(2 * window)
	}
	if n, start := get("ip:192.0.2.1"); n != 0 || !start.IsZero() {
		t.Errorf("AuthFailures after the window = %d, %v; want 0", n, start)
	}
	var n int
	var start, now time.Time
	e.update(func(tx gatehouse.Tx) (err error) {
		now = tx.Now()
		n, start, err = tx.RecordAuthFailure("ip:192.0.2.1", window)
		return err
	})
	if n != 1 || !start.Equal(now) {
		t.Errorf("RecordAuthFailure after the window = %d, %v; want 1 in a new window starting %v", n, start, now)
	}

	// Pruning deletes the counters whose window has ended (192.0.2.2), not the current ones.
	prune := func() int64 {
		t.Helper()
		var n int64
		e.update(func(tx gatehouse.Tx) (err error) { n, err = tx.PruneAuthFailures(window); return err })
		return n
	}
	if n := prune(); n != 1 {
		t.Errorf("PruneAuthFailures = %d, want 1 (the ended window of 192.0.2.2)", n)
	}
	if n, _ := get("ip:192.0.2.1"); n != 1 {
		t.Errorf("AuthFailures of the current window after pruning = %d, want 1", n)
	}
	if n := prune(); n != 0 {
		t.Errorf("a second PruneAuthFailures = %d, want 0", n)
	}
	if e.clock != nil {
		e.clock.Advance(2 * window)
	} else {
		time.Sleep(2 * window)
	}
	if n := prune(); n != 1 {
		t.Errorf("PruneAuthFailures after the window = %d, want 1", n)
	}
	e.update(func(tx gatehouse.Tx) (err error) {
		n, _, err = tx.RecordAuthFailure("ip:192.0.2.1", window)
		return err
	})
	if n != 1 {
		t.Errorf("RecordAuthFailure after pruning = %d, want 1", n)
	}
}

// --- OIDC issuers and authorization policies ---

func testConsumeOIDCToken(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	consume := func(orgID int64, key string, until time.Time) bool {
		t.Helper()
		var ok bool
		e.update(func(tx gatehouse.Tx) (err error) { ok, err = tx.ConsumeOIDCToken(orgID, key, until); return err })
		return ok
	}
	now := e.now()
	if !consume(acme.ID, "k1", now.Add(time.Hour)) {
		t.Fatal("the first exchange of a token was refused")
	}
	if consume(acme.ID, "k1", now.Add(time.Hour)) {
		t.Fatal("a second exchange of a token was accepted")
	}
	if !consume(beta.ID, "k1", now.Add(time.Hour)) || !consume(acme.ID, "k2", now.Add(time.Hour)) {
		t.Fatal("another organization's or another token's record refused an exchange")
	}
	// A rolled-back exchange leaves no record.
	rollback := errors.New("rollback")
	err := e.try(func(tx gatehouse.Tx) error {
		if ok, err := tx.ConsumeOIDCToken(acme.ID, "k3", now.Add(time.Hour)); err != nil || !ok {
			return fmt.Errorf("ConsumeOIDCToken = %v, %v", ok, err)
		}
		return rollback
	})
	if !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if !consume(acme.ID, "k3", now.Add(time.Hour)) {
		t.Fatal("a rolled-back exchange left its record")
	}
	// An expired record neither refuses the key nor survives pruning; live ones stay.
	past := e.now().Add(-time.Second)
	if !consume(acme.ID, "old", past) || !consume(acme.ID, "old", past) {
		t.Fatal("an expired record refused an exchange")
	}
	if !consume(acme.ID, "old2", past) {
		t.Fatal("consume old2")
	}
	var pruned int64
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneConsumedOIDCTokens(); return err })
	if pruned != 2 {
		t.Errorf("PruneConsumedOIDCTokens = %d, want 2", pruned)
	}
	if consume(acme.ID, "k1", now.Add(time.Hour)) || consume(beta.ID, "k1", now.Add(time.Hour)) {
		t.Error("pruning removed a live record")
	}
	e.update(func(tx gatehouse.Tx) (err error) { pruned, err = tx.PruneConsumedOIDCTokens(); return err })
	if pruned != 0 {
		t.Errorf("a second PruneConsumedOIDCTokens = %d, want 0", pruned)
	}
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.ConsumeOIDCToken(acme.ID, "", now.Add(time.Hour))
		wantCode(t, err, gatehouse.EINVALID, "ConsumeOIDCToken without a key")
		return nil
	})
}

func testOIDCIssuers(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	gh := &gatehouse.OIDCIssuer{OrgID: acme.ID, Name: "GitHub", URL: "https://token.actions.githubusercontent.com",
		Thumbprints: []string{"aa", "bb"}, MaxExpiration: 2 * time.Hour}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.CreateOIDCIssuer(gh) })
	if gh.ID == "" || !gh.Created.Equal(now) || !gh.Modified.Equal(now) {
		t.Errorf("CreateOIDCIssuer set ID %q, Created %v, Modified %v; want an ID and %v", gh.ID, gh.Created, gh.Modified, now)
	}
	jwks := []byte(`{"keys":[]}`)
	k8s := &gatehouse.OIDCIssuer{OrgID: acme.ID, Name: "cluster", URL: "https://k8s.example.com", JWKS: jwks, MaxExpiration: time.Hour}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateOIDCIssuer(k8s) })
	// The same name and URL in another organization are another issuer.
	other := &gatehouse.OIDCIssuer{OrgID: beta.ID, Name: "github", URL: gh.URL, MaxExpiration: time.Hour}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateOIDCIssuer(other) })
	for _, c := range []gatehouse.OIDCIssuer{
		{OrgID: acme.ID, Name: "GITHUB", URL: "https://elsewhere.example.com"},
		{OrgID: acme.ID, Name: "another", URL: gh.URL},
	} {
		err := e.try(func(tx gatehouse.Tx) error { return tx.CreateOIDCIssuer(&c) })
		wantCode(t, err, gatehouse.ECONFLICT, fmt.Sprintf("CreateOIDCIssuer %s %s", c.Name, c.URL))
	}
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetOIDCIssuer(acme.ID, gh.ID)
		if err != nil {
			return err
		}
		if got.Name != "GitHub" || got.URL != gh.URL || got.JWKS != nil || !slices.Equal(got.Thumbprints, gh.Thumbprints) ||
			got.MaxExpiration != 2*time.Hour || !got.Created.Equal(now) || !got.LastUsed.IsZero() {
			t.Errorf("GetOIDCIssuer = %+v, want %+v", got, gh)
		}
		got, err = tx.GetOIDCIssuer(acme.ID, k8s.ID)
		if err != nil {
			return err
		}
		if !bytes.Equal(got.JWKS, jwks) || len(got.Thumbprints) != 0 {
			t.Errorf("issuer with a pinned JWKS read back as %+v", got)
		}
		if got, err := tx.GetOIDCIssuerByURL(beta.ID, gh.URL); err != nil || got.ID != other.ID {
			t.Errorf("GetOIDCIssuerByURL(beta) = %+v, %v; want beta's issuer", got, err)
		}
		_, err = tx.GetOIDCIssuer(beta.ID, gh.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCIssuer through another organization")
		_, err = tx.GetOIDCIssuerByURL(acme.ID, strings.ToUpper(gh.URL))
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCIssuerByURL with the URL in another case (matched exactly)")
		list, err := tx.ListOIDCIssuers(acme.ID)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != k8s.ID || list[1].ID != gh.ID {
			t.Errorf("ListOIDCIssuers = %+v, want cluster and GitHub (by name)", list)
		}
		return nil
	})

	// UpdateOIDCIssuer changes everything but the URL.
	upd := *gh
	upd.Name, upd.URL, upd.JWKS, upd.Thumbprints, upd.MaxExpiration = "Actions", "https://changed.example.com", jwks, nil, 30*time.Minute
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.UpdateOIDCIssuer(&upd) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetOIDCIssuer(acme.ID, gh.ID)
		if err != nil {
			return err
		}
		if got.Name != "Actions" || got.URL != gh.URL || !bytes.Equal(got.JWKS, jwks) || len(got.Thumbprints) != 0 ||
			got.MaxExpiration != 30*time.Minute || !got.Modified.Equal(now) || !got.Created.Equal(gh.Created) {
			t.Errorf("after UpdateOIDCIssuer: %+v", got)
		}
		return nil
	})
	clash := upd
	clash.Name = "CLUSTER"
	err := e.try(func(tx gatehouse.Tx) error { return tx.UpdateOIDCIssuer(&clash) })
	wantCode(t, err, gatehouse.ECONFLICT, "UpdateOIDCIssuer to a taken name")
	stray := upd
	stray.OrgID = beta.ID
	err = e.try(func(tx gatehouse.Tx) error { return tx.UpdateOIDCIssuer(&stray) })
	wantCode(t, err, gatehouse.ENOTFOUND, "UpdateOIDCIssuer through another organization")

	used := e.now().Add(time.Minute)
	e.update(func(tx gatehouse.Tx) error { return tx.TouchOIDCIssuer(gh.ID, used) })
	e.view(func(tx gatehouse.Tx) error {
		if got, err := tx.GetOIDCIssuer(acme.ID, gh.ID); err != nil || !got.LastUsed.Equal(used) {
			t.Errorf("LastUsed after TouchOIDCIssuer = %v, %v; want %v", got.LastUsed, err, used)
		}
		return nil
	})

	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteOIDCIssuer(beta.ID, gh.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteOIDCIssuer through another organization")
	var policyID string
	e.view(func(tx gatehouse.Tx) error {
		p, err := tx.GetOIDCAuthPolicy(acme.ID, gh.ID)
		if err == nil {
			policyID = p.ID
		}
		return err
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteOIDCIssuer(acme.ID, gh.ID) })
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetOIDCIssuer(acme.ID, gh.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCIssuer after DeleteOIDCIssuer")
		_, err = tx.GetOIDCAuthPolicyByID(acme.ID, policyID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCAuthPolicyByID after DeleteOIDCIssuer")
		if got, err := tx.GetOIDCIssuerByURL(beta.ID, gh.URL); err != nil || got.ID != other.ID {
			t.Errorf("DeleteOIDCIssuer touched another organization's issuer: %v", err)
		}
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteOIDCIssuer(acme.ID, gh.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteOIDCIssuer of a deleted issuer")
	// Its URL may be registered again.
	e.update(func(tx gatehouse.Tx) error {
		return tx.CreateOIDCIssuer(&gatehouse.OIDCIssuer{OrgID: acme.ID, Name: "GitHub", URL: gh.URL, MaxExpiration: time.Hour})
	})
}

func testOIDCPolicies(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	is := &gatehouse.OIDCIssuer{OrgID: acme.ID, Name: "GitHub", URL: "https://token.actions.githubusercontent.com", MaxExpiration: time.Hour}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateOIDCIssuer(is) })
	var p *gatehouse.OIDCAuthPolicy
	e.view(func(tx gatehouse.Tx) (err error) { p, err = tx.GetOIDCAuthPolicy(acme.ID, is.ID); return err })
	if p.ID == "" || p.OrgID != acme.ID || p.IssuerID != is.ID || len(p.Policies) != 0 || p.Version < 1 {
		t.Fatalf("a new issuer's authorization policy = %+v; want one with no policies (deny all)", p)
	}
	e.view(func(tx gatehouse.Tx) error {
		if byID, err := tx.GetOIDCAuthPolicyByID(acme.ID, p.ID); err != nil || byID.IssuerID != is.ID {
			t.Errorf("GetOIDCAuthPolicyByID = %+v, %v", byID, err)
		}
		_, err := tx.GetOIDCAuthPolicy(beta.ID, is.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCAuthPolicy through another organization")
		_, err = tx.GetOIDCAuthPolicyByID(beta.ID, p.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetOIDCAuthPolicyByID through another organization")
		return nil
	})
	policies := []gatehouse.OIDCPolicy{
		{Decision: gatehouse.OIDCDeny, Rules: map[string]string{"ref": "refs/heads/wip-*"}},
		{Decision: gatehouse.OIDCAllow, TokenType: gatehouse.OIDCTokenTeam, TeamName: "deployers",
			Rules: map[string]string{"sub": "repo:acme/*:environment:production", `"kubernetes.io".pod.name`: "runner-?"}, MaxExpiration: 15 * time.Minute},
		{Decision: gatehouse.OIDCAllow, TokenType: gatehouse.OIDCTokenOrganization, AuthorizedPermissions: []string{"admin"}, Rules: map[string]string{"aud": "gatehouse"}},
		{Decision: gatehouse.OIDCAllow, TokenType: gatehouse.OIDCTokenPersonal, UserLogin: "alice", Rules: map[string]string{"sub": "alice"}},
	}
	put := &gatehouse.OIDCAuthPolicy{ID: p.ID, OrgID: acme.ID, Policies: policies}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.PutOIDCAuthPolicy(put) })
	if put.Version != p.Version+1 || !put.Modified.Equal(now) || put.IssuerID != is.ID || len(put.Policies) != len(policies) {
		t.Errorf("after PutOIDCAuthPolicy the policy is %+v; want version %d, modified %v", put, p.Version+1, now)
	}
	var got *gatehouse.OIDCAuthPolicy
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetOIDCAuthPolicy(acme.ID, is.ID); return err })
	if got.Version != p.Version+1 || !got.Modified.Equal(now) || !got.Created.Equal(p.Created) || len(got.Policies) != len(policies) {
		t.Fatalf("stored policy = %+v", got)
	}
	for i, want := range policies {
		g := got.Policies[i]
		if g.Decision != want.Decision || g.TokenType != want.TokenType || g.TeamName != want.TeamName || g.UserLogin != want.UserLogin ||
			!slices.Equal(g.AuthorizedPermissions, want.AuthorizedPermissions) || !maps.Equal(g.Rules, want.Rules) || g.MaxExpiration != want.MaxExpiration {
			t.Errorf("policy %d read back as %+v, want %+v", i, g, want)
		}
	}
	// Replaced as a whole.
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutOIDCAuthPolicy(&gatehouse.OIDCAuthPolicy{ID: p.ID, OrgID: acme.ID, Policies: policies[1:2]})
	})
	e.view(func(tx gatehouse.Tx) (err error) { got, err = tx.GetOIDCAuthPolicyByID(acme.ID, p.ID); return err })
	if len(got.Policies) != 1 || got.Policies[0].TeamName != "deployers" || got.Version != p.Version+2 {
		t.Errorf("policy after a second PutOIDCAuthPolicy = %+v", got)
	}
	for _, bad := range []gatehouse.OIDCAuthPolicy{{ID: randID(), OrgID: acme.ID}, {ID: p.ID, OrgID: beta.ID}} {
		err := e.try(func(tx gatehouse.Tx) error { return tx.PutOIDCAuthPolicy(&bad) })
		wantCode(t, err, gatehouse.ENOTFOUND, fmt.Sprintf("PutOIDCAuthPolicy of %+v", bad))
	}
}

// --- security epoch ---

func testSecurityEpoch(t *testing.T, e *env) {
	acme := e.org("acme")
	alice, bob := e.user("alice"), e.user("bob")
	s := e.stack(acme.ID, "web", "prod", nil)
	team := e.team(acme.ID, "ops")
	tok := &gatehouse.Token{ID: randID(), Kind: gatehouse.TokenPersonal, Digest: randDigest(), Name: "laptop", UserID: alice.ID}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateToken(tok) })
	epoch := func() int64 {
		t.Helper()
		var n int64
		e.view(func(tx gatehouse.Tx) (err error) { n, err = tx.SecurityEpoch(); return err })
		return n
	}
	last := epoch()
	if again := epoch(); again != last {
		t.Fatalf("SecurityEpoch moved without a change: %d, then %d", last, again)
	}
	for _, c := range []struct {
		what string
		fn   func(tx gatehouse.Tx) error
	}{
		{"UpdateOrgSettings", func(tx gatehouse.Tx) error {
			return tx.UpdateOrgSettings(acme.ID, gatehouse.OrgSettings{DefaultStackPermission: gatehouse.PermRead})
		}},
		{"PutMember", func(tx gatehouse.Tx) error { return tx.PutMember(acme.ID, bob.ID, gatehouse.RoleMember) }},
		{"PutMember (role change)", func(tx gatehouse.Tx) error { return tx.PutMember(acme.ID, bob.ID, gatehouse.RoleAdmin) }},
		{"RemoveMember", func(tx gatehouse.Tx) error { return tx.RemoveMember(acme.ID, bob.ID) }},
		{"PutTeamMember", func(tx gatehouse.Tx) error { return tx.PutTeamMember(team.ID, alice.ID, "member") }},
		{"RemoveTeamMember", func(tx gatehouse.Tx) error { return tx.RemoveTeamMember(team.ID, alice.ID) }},
		{"PutGrant", func(tx gatehouse.Tx) error {
			return tx.PutGrant(&gatehouse.Grant{TeamID: team.ID, Scope: gatehouse.Scope{StackID: s.ID}, Permission: gatehouse.PermRead})
		}},
		{"DeleteGrant", func(tx gatehouse.Tx) error { return tx.DeleteGrant(team.ID, gatehouse.Scope{StackID: s.ID}) }},
		{"PutProtection", func(tx gatehouse.Tx) error {
			return tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{Project: "web"}})
		}},
		{"DeleteProtection", func(tx gatehouse.Tx) error { return tx.DeleteProtection(acme.ID, gatehouse.Scope{Project: "web"}) }},
		{"DeleteTeam", func(tx gatehouse.Tx) error { return tx.DeleteTeam(team.ID) }},
		{"RevokeToken", func(tx gatehouse.Tx) error { return tx.RevokeToken(tok.ID, tx.Now()) }},
	} {
		e.update(c.fn)
		now := epoch()
		if now <= last {
			t.Errorf("SecurityEpoch did not advance with %s: %d, then %d", c.what, last, now)
		}
		last = now
	}
	// A change that rolls back leaves the epoch alone.
	boom := errors.New("boom")
	_ = e.try(func(tx gatehouse.Tx) error {
		if err := tx.PutMember(acme.ID, bob.ID, gatehouse.RoleMember); err != nil {
			return err
		}
		return boom
	})
	if now := epoch(); now != last {
		t.Errorf("SecurityEpoch moved with a rolled back change: %d, then %d", last, now)
	}
}

// --- audit log bookkeeping: head, checkpoints, export cursors, retention ---

func (e *env) appendAudit(n int) []gatehouse.AuditEvent {
	e.t.Helper()
	out := make([]gatehouse.AuditEvent, n)
	e.update(func(tx gatehouse.Tx) error {
		for i := range out {
			out[i] = gatehouse.AuditEvent{ActorKind: "system", Action: "test:event", Outcome: gatehouse.OutcomeSuccess}
			if err := tx.AppendAudit(&out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	return out
}

func testAuditCheckpoints(t *testing.T, e *env) {
	head := func() (int64, []byte) {
		t.Helper()
		var seq int64
		var hash []byte
		e.view(func(tx gatehouse.Tx) (err error) { seq, hash, err = tx.AuditHead(); return err })
		return seq, hash
	}
	if seq, hash := head(); seq != 0 || !bytes.Equal(hash, audit.Genesis()) {
		t.Errorf("AuditHead of an empty log = %d, %x; want 0 and the genesis hash", seq, hash)
	}
	evs := e.appendAudit(3)
	if seq, hash := head(); seq != 3 || !bytes.Equal(hash, evs[2].Hash) {
		t.Errorf("AuditHead = %d, %x; want 3 and the last event's hash", seq, hash)
	}

	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.LatestAuditCheckpoint(gatehouse.CheckpointPeriodic)
		wantCode(t, err, gatehouse.ENOTFOUND, "LatestAuditCheckpoint with none stored")
		_, err = tx.LatestAuditCheckpoint("weekly")
		wantCode(t, err, gatehouse.EINVALID, "LatestAuditCheckpoint of an unknown kind")
		return nil
	})
	at := time.Date(2030, 5, 6, 7, 8, 9, 123000, time.UTC)
	cp := func(seq int64, kind string) *gatehouse.AuditCheckpoint {
		return &gatehouse.AuditCheckpoint{Seq: seq, Hash: evs[seq-1].Hash, Time: at.Add(time.Duration(seq) * time.Second),
			KeyID: "key-1", Signature: []byte(fmt.Sprintf("sig-%d-%s", seq, kind)), Kind: kind}
	}
	put := func(c *gatehouse.AuditCheckpoint) bool {
		t.Helper()
		var stored bool
		e.update(func(tx gatehouse.Tx) (err error) { stored, err = tx.PutAuditCheckpoint(c); return err })
		return stored
	}
	for _, c := range []*gatehouse.AuditCheckpoint{cp(2, gatehouse.CheckpointPeriodic), cp(1, gatehouse.CheckpointPeriodic), cp(2, gatehouse.CheckpointRetention)} {
		if !put(c) {
			t.Errorf("PutAuditCheckpoint(%d, %s) reported it was not stored", c.Seq, c.Kind)
		}
	}
	// Another process made the same checkpoint: false, and the first one stays.
	dup := cp(2, gatehouse.CheckpointPeriodic)
	dup.Signature, dup.KeyID = []byte("another signature"), "key-2"
	if put(dup) {
		t.Error("PutAuditCheckpoint of an existing (seq, kind) reported it was stored")
	}
	for _, bad := range []*gatehouse.AuditCheckpoint{
		{Seq: 3, Hash: evs[2].Hash, KeyID: "k", Signature: []byte("s"), Kind: "weekly"},
		{Seq: 3, KeyID: "k", Signature: []byte("s"), Kind: gatehouse.CheckpointPeriodic},
		{Seq: 3, Hash: evs[2].Hash, Signature: []byte("s"), Kind: gatehouse.CheckpointPeriodic},
		{Seq: 3, Hash: evs[2].Hash, KeyID: "k", Kind: gatehouse.CheckpointPeriodic},
	} {
		err := e.try(func(tx gatehouse.Tx) error { _, err := tx.PutAuditCheckpoint(bad); return err })
		wantCode(t, err, gatehouse.EINVALID, fmt.Sprintf("PutAuditCheckpoint of %+v", bad))
	}
	e.view(func(tx gatehouse.Tx) error {
		cps, err := tx.ListAuditCheckpoints()
		if err != nil {
			return err
		}
		var got []string
		for _, c := range cps {
			got = append(got, fmt.Sprintf("%d/%s/%s", c.Seq, c.Kind, c.Signature))
		}
		want := []string{"1/periodic/sig-1-periodic", "2/periodic/sig-2-periodic", "2/retention/sig-2-retention"}
		if !slices.Equal(got, want) {
			t.Errorf("ListAuditCheckpoints = %q, want %q", got, want)
		}
		c, err := tx.LatestAuditCheckpoint(gatehouse.CheckpointPeriodic)
		if err != nil {
			return err
		}
		want2 := cp(2, gatehouse.CheckpointPeriodic)
		if c.Seq != 2 || !bytes.Equal(c.Hash, want2.Hash) || !c.Time.Equal(want2.Time) || c.KeyID != "key-1" ||
			!bytes.Equal(c.Signature, want2.Signature) || c.Kind != gatehouse.CheckpointPeriodic {
			t.Errorf("LatestAuditCheckpoint = %+v, want %+v", c, want2)
		}
		return nil
	})
}

// testAuditCheckpointChain: the chain fields round-trip, LastAuditCheckpoint is the
// checkpoint made last (not the highest seq), and a second checkpoint at the same chain
// position is refused (two processes cannot fork the chain).
func testAuditCheckpointChain(t *testing.T, e *env) {
	evs := e.appendAudit(4)
	last := func() (*gatehouse.AuditCheckpoint, error) {
		var c *gatehouse.AuditCheckpoint
		var err error
		e.view(func(tx gatehouse.Tx) error { c, err = tx.LastAuditCheckpoint(); return nil })
		return c, err
	}
	if _, err := last(); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		t.Errorf("LastAuditCheckpoint with none stored: %v, want ENOTFOUND", err)
	}
	at := time.Date(2030, 5, 6, 7, 8, 9, 123000, time.UTC)
	cp := func(seq int64, kind string, index int64, prev []byte) *gatehouse.AuditCheckpoint {
		return &gatehouse.AuditCheckpoint{Seq: seq, Hash: evs[seq-1].Hash, Time: at, KeyID: "key-1",
			Signature: []byte(fmt.Sprintf("sig-%d-%s-%d", seq, kind, index)), Kind: kind, Index: index, PrevSeq: seq / 2, Prev: prev}
	}
	put := func(c *gatehouse.AuditCheckpoint) bool {
		t.Helper()
		var stored bool
		e.update(func(tx gatehouse.Tx) (err error) { stored, err = tx.PutAuditCheckpoint(c); return err })
		return stored
	}
	check := func(what string, want *gatehouse.AuditCheckpoint) {
		t.Helper()
		c, err := last()
		if err != nil {
			t.Fatalf("LastAuditCheckpoint %s: %v", what, err)
		}
		if c.Seq != want.Seq || c.Kind != want.Kind || c.Index != want.Index || c.PrevSeq != want.PrevSeq ||
			!bytes.Equal(c.Prev, want.Prev) || (want.Prev == nil) != (c.Prev == nil) || !bytes.Equal(c.Signature, want.Signature) || !c.Time.Equal(want.Time) {
			t.Errorf("LastAuditCheckpoint %s = %+v, want %+v", what, c, want)
		}
	}
	// Old-format rows (Index 0): the highest seq, retention before periodic.
	old1, old2, old2r := cp(1, gatehouse.CheckpointPeriodic, 0, nil), cp(2, gatehouse.CheckpointPeriodic, 0, nil), cp(2, gatehouse.CheckpointRetention, 0, nil)
	old1.PrevSeq, old2.PrevSeq, old2r.PrevSeq = 0, 0, 0
	for _, c := range []*gatehouse.AuditCheckpoint{old2, old1, old2r} {
		if !put(c) {
			t.Fatalf("PutAuditCheckpoint(%+v) not stored", c)
		}
	}
	check("of old rows", old2r)
	// Chained: the highest index, whatever its seq.
	c1 := cp(4, gatehouse.CheckpointPeriodic, 1, []byte{1, 2, 3})
	c2 := cp(3, gatehouse.CheckpointRetention, 2, []byte{4, 5, 6})
	for _, c := range []*gatehouse.AuditCheckpoint{c1, c2} {
		if !put(c) {
			t.Fatalf("PutAuditCheckpoint(%+v) not stored", c)
		}
	}
	check("of a chain", c2)
	// Another process extending the chain at the same position: refused, nothing changes.
	if put(cp(4, gatehouse.CheckpointRetention, 2, []byte{7})) {
		t.Error("a second checkpoint #2 was stored")
	}
	check("after a refused fork", c2)
	err := e.try(func(tx gatehouse.Tx) error {
		_, err := tx.PutAuditCheckpoint(cp(4, gatehouse.CheckpointRetention, -1, nil))
		return err
	})
	wantCode(t, err, gatehouse.EINVALID, "PutAuditCheckpoint with a negative index")
	e.view(func(tx gatehouse.Tx) error {
		cps, err := tx.ListAuditCheckpoints()
		if err != nil {
			return err
		}
		var got []string
		for _, c := range cps {
			got = append(got, fmt.Sprintf("%d/%s/#%d/%d/%x/%v", c.Seq, c.Kind, c.Index, c.PrevSeq, c.Prev, c.Prev == nil))
		}
		want := []string{"1/periodic/#0/0//true", "2/periodic/#0/0//true", "2/retention/#0/0//true",
			"3/retention/#2/1/040506/false", "4/periodic/#1/2/010203/false"}
		if !slices.Equal(got, want) {
			t.Errorf("ListAuditCheckpoints = %q, want %q", got, want)
		}
		return nil
	})
}

func testExportCursors(t *testing.T, e *env) {
	cursor := func(sink string) int64 {
		t.Helper()
		var seq int64
		e.view(func(tx gatehouse.Tx) (err error) { seq, err = tx.ExportCursor(sink); return err })
		return seq
	}
	acquire := func(sink, owner string, until time.Time) bool {
		t.Helper()
		var ok bool
		e.update(func(tx gatehouse.Tx) (err error) { ok, err = tx.AcquireExportLease(sink, owner, until); return err })
		return ok
	}
	advance := func(sink, owner string, seq int64) bool {
		t.Helper()
		var ok bool
		e.update(func(tx gatehouse.Tx) (err error) { ok, err = tx.AdvanceExportCursor(sink, owner, seq); return err })
		return ok
	}
	if n := cursor("siem"); n != 0 {
		t.Errorf("ExportCursor of a new sink = %d, want 0", n)
	}
	e.update(func(tx gatehouse.Tx) error { return tx.SetExportCursor("archive", 7) })
	if n := cursor("archive"); n != 7 {
		t.Errorf("ExportCursor after SetExportCursor = %d, want 7", n)
	}
	lease := e.leaseFor()
	until := e.now().Add(lease)
	if !acquire("siem", "proc-a", until) {
		t.Fatal("AcquireExportLease of a free sink failed")
	}
	if acquire("siem", "proc-b", e.now().Add(time.Hour)) {
		t.Error("AcquireExportLease succeeded while another process holds a live lease")
	}
	until = e.now().Add(lease)
	if !acquire("siem", "proc-a", until) {
		t.Error("the holder could not renew its lease")
	}
	if !advance("siem", "proc-a", 10) || cursor("siem") != 10 {
		t.Errorf("the holder could not advance the cursor (now %d)", cursor("siem"))
	}
	if advance("siem", "proc-b", 20) || cursor("siem") != 10 {
		t.Errorf("a process without the lease advanced the cursor (now %d)", cursor("siem"))
	}
	if advance("archive", "proc-a", 20) || cursor("archive") != 7 {
		t.Error("AdvanceExportCursor moved the cursor of a sink nobody holds")
	}
	e.view(func(tx gatehouse.Tx) error {
		cs, err := tx.ListExportCursors()
		if err != nil {
			return err
		}
		if len(cs) != 2 || cs[0].Sink != "archive" || cs[0].Seq != 7 || cs[0].LeaseOwner != "" || !cs[0].LeaseUntil.IsZero() ||
			cs[1].Sink != "siem" || cs[1].Seq != 10 || cs[1].LeaseOwner != "proc-a" || !cs[1].LeaseUntil.Equal(until) {
			t.Errorf("ListExportCursors = %+v", cs)
		}
		return nil
	})
	// The holder's lease runs out: another process takes over, and the old holder is fenced.
	e.expireLeases()
	if !acquire("siem", "proc-b", e.now().Add(time.Hour)) {
		t.Fatal("AcquireExportLease failed after the holder's lease ended")
	}
	if advance("siem", "proc-a", 30) || cursor("siem") != 10 {
		t.Error("an exporter whose lease was taken over moved the cursor")
	}
	if !advance("siem", "proc-b", 30) || cursor("siem") != 30 {
		t.Error("the new holder could not advance the cursor")
	}
	e.update(func(tx gatehouse.Tx) error { return tx.ReleaseExportLease("siem", "proc-a") }) // not the holder: nothing
	if acquire("siem", "proc-c", e.now().Add(time.Hour)) {
		t.Error("ReleaseExportLease by a process that does not hold the lease released it")
	}
	e.update(func(tx gatehouse.Tx) error { return tx.ReleaseExportLease("siem", "proc-b") })
	if !acquire("siem", "proc-c", e.now().Add(time.Hour)) {
		t.Error("AcquireExportLease failed after the holder released the lease")
	}
	if n := cursor("siem"); n != 30 {
		t.Errorf("the cursor changed with the lease: %d, want 30", n)
	}
}

func testPruneAudit(t *testing.T, e *env) {
	evs := e.appendAudit(5)
	prune := func(upto int64) (int64, error) {
		var n int64
		err := e.try(func(tx gatehouse.Tx) (err error) { n, err = tx.PruneAudit(upto); return err })
		return n, err
	}
	retention := func(seq int64, hash []byte) *gatehouse.AuditCheckpoint {
		return &gatehouse.AuditCheckpoint{Seq: seq, Hash: hash, Time: e.now(), KeyID: "k", Signature: []byte("sig"), Kind: gatehouse.CheckpointRetention}
	}
	_, err := prune(3)
	wantCode(t, err, gatehouse.EINVALID, "PruneAudit without a retention checkpoint")
	_, err = prune(0)
	wantCode(t, err, gatehouse.EINVALID, "PruneAudit(0)")
	// A periodic checkpoint does not anchor pruning; a retention one with the wrong hash neither.
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.PutAuditCheckpoint(&gatehouse.AuditCheckpoint{Seq: 3, Hash: evs[2].Hash, KeyID: "k", Signature: []byte("s"), Kind: gatehouse.CheckpointPeriodic})
		return err
	})
	_, err = prune(3)
	wantCode(t, err, gatehouse.EINVALID, "PruneAudit anchored by a periodic checkpoint only")
	err = e.try(func(tx gatehouse.Tx) error {
		if _, err := tx.PutAuditCheckpoint(retention(3, evs[1].Hash)); err != nil {
			return err
		}
		_, err := tx.PruneAudit(3)
		return err
	})
	wantCode(t, err, gatehouse.EINVALID, "PruneAudit with a retention checkpoint that does not match the event")
	if got := e.allAudit(); len(got) != 5 {
		t.Fatalf("a refused prune deleted events: %d left", len(got))
	}

	var n int64
	e.update(func(tx gatehouse.Tx) (err error) {
		if _, err := tx.PutAuditCheckpoint(retention(3, evs[2].Hash)); err != nil {
			return err
		}
		n, err = tx.PruneAudit(3)
		return err
	})
	if n != 3 {
		t.Errorf("PruneAudit(3) deleted %d events, want 3", n)
	}
	rest := e.allAudit()
	if len(rest) != 2 || rest[0].Seq != 4 || rest[1].Seq != 5 {
		t.Fatalf("events after pruning through 3: %d", len(rest))
	}
	prev := evs[2].Hash // the retention checkpoint's
	for _, ev := range rest {
		if !bytes.Equal(ev.PrevHash, prev) || !bytes.Equal(ev.Hash, audit.Hash(prev, &ev)) {
			t.Errorf("event %d does not chain from the retention anchor", ev.Seq)
		}
		prev = ev.Hash
	}
	// Pruning everything leaves the head where it was: the chain continues from it.
	e.update(func(tx gatehouse.Tx) (err error) {
		if _, err := tx.PutAuditCheckpoint(retention(5, evs[4].Hash)); err != nil {
			return err
		}
		_, err = tx.PruneAudit(5)
		return err
	})
	e.view(func(tx gatehouse.Tx) error {
		seq, hash, err := tx.AuditHead()
		if err != nil {
			return err
		}
		if seq != 5 || !bytes.Equal(hash, evs[4].Hash) {
			t.Errorf("AuditHead after pruning every event = %d, %x; want the last pruned event, 5", seq, hash)
		}
		return nil
	})
	next := e.appendAudit(1)[0]
	if next.Seq != 6 || !bytes.Equal(next.PrevHash, evs[4].Hash) {
		t.Errorf("the event after pruning everything: Seq %d, PrevHash %x; want 6 chained to event 5", next.Seq, next.PrevHash)
	}
}

// --- secret-scanning deliveries ---

func testScanDeliveries(t *testing.T, e *env) {
	d := &gatehouse.ScanDelivery{Digest: randDigest(), KeyID: "github-key-1", Labels: []string{"true_positive", "false_positive"}}
	var now time.Time
	e.update(func(tx gatehouse.Tx) error { now = tx.Now(); return tx.PutScanDelivery(d) })
	if !d.Received.Equal(now) {
		t.Errorf("PutScanDelivery set Received %v, want the transaction's Now %v", d.Received, now)
	}
	empty := &gatehouse.ScanDelivery{Digest: randDigest(), KeyID: "github-key-1"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutScanDelivery(empty) })
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.PutScanDelivery(&gatehouse.ScanDelivery{Digest: d.Digest, KeyID: "github-key-2"})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "PutScanDelivery of a recorded delivery")
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetScanDelivery(d.Digest)
		if err != nil {
			return err
		}
		if got.Digest != d.Digest || got.KeyID != "github-key-1" || !got.Received.Equal(now) || !slices.Equal(got.Labels, d.Labels) {
			t.Errorf("GetScanDelivery = %+v, want %+v", got, d)
		}
		if got, err := tx.GetScanDelivery(empty.Digest); err != nil || len(got.Labels) != 0 {
			t.Errorf("GetScanDelivery of a delivery without labels = %+v, %v", got, err)
		}
		_, err = tx.GetScanDelivery(randDigest())
		wantCode(t, err, gatehouse.ENOTFOUND, "GetScanDelivery of an unknown digest")
		return nil
	})
	// Deliveries older than the retention are forgotten (when another is recorded).
	old := &gatehouse.ScanDelivery{Digest: randDigest(), KeyID: "k", Received: e.now().Add(-gatehouse.ScanDeliveryRetention - time.Hour)}
	e.update(func(tx gatehouse.Tx) error { return tx.PutScanDelivery(old) })
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutScanDelivery(&gatehouse.ScanDelivery{Digest: randDigest(), KeyID: "k"})
	})
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetScanDelivery(old.Digest)
		wantCode(t, err, gatehouse.ENOTFOUND, "GetScanDelivery of a delivery past the retention")
		if _, err := tx.GetScanDelivery(d.Digest); err != nil {
			t.Errorf("a recent delivery was forgotten: %v", err)
		}
		return nil
	})
}

// --- races: what several processes on one database rely on ---

func testRaceStartUpdate(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	ids := make([]string, racers)
	for i := range ids {
		ids[i] = e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	}
	expires := e.now().Add(time.Hour)
	versions := make([]int, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			versions[i], err = tx.StartUpdate(ids[i], map[string]string{"winner": ids[i]}, randDigest(), expires, 0)
			return err
		})
	})
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != "" {
				t.Errorf("two updates started on one stack: %s and %s", winner, ids[i])
			}
			winner = ids[i]
			if versions[i] != 1 {
				t.Errorf("the winner got version %d, want 1", versions[i])
			}
		case !gatehouse.IsCode(err, gatehouse.ECONFLICT):
			t.Errorf("a losing StartUpdate failed with %v, want ECONFLICT", err)
		}
	}
	if winner == "" {
		t.Fatal("no update started")
	}
	st := e.getStack(s.ID)
	if st.ActiveUpdate != winner || st.Version != 1 || st.Tags["winner"] != winner {
		t.Errorf("stack after the race = %+v; want held by %s at version 1 with its tags", st, winner)
	}
	for _, id := range ids {
		if u := e.getUpdate(id); (u.Status == gatehouse.StatusRunning) != (id == winner) {
			t.Errorf("update %s is %q after the race (winner %s)", id, u.Status, winner)
		}
	}
}

func testRaceTakeover(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	holder := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	if _, err := e.start(holder, randDigest(), e.now().Add(e.leaseFor())); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, racers)
	for i := range ids {
		ids[i] = e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	}
	e.expireLeases()
	expires := e.now().Add(time.Hour)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			_, err := tx.StartUpdate(ids[i], nil, randDigest(), expires, 0)
			return err
		})
	})
	winners := 0
	for _, err := range errs {
		if err == nil {
			winners++
		} else if !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			t.Errorf("a losing StartUpdate failed with %v, want ECONFLICT", err)
		}
	}
	if winners != 1 {
		t.Errorf("%d updates took over the expired lock, want exactly 1", winners)
	}
	if u := e.getUpdate(holder); u.Status != gatehouse.StatusCancelled {
		t.Errorf("the expired holder is %q, want cancelled", u.Status)
	}
	if st := e.getStack(s.ID); st.Version != 2 {
		t.Errorf("stack version after the takeover race = %d, want 2", st.Version)
	}
}

func testRaceFinishUpdate(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	id := e.newUpdate(s.ID, gatehouse.KindUpdate, false)
	e.startLive(id)
	statuses := []gatehouse.UpdateStatus{gatehouse.StatusSucceeded, gatehouse.StatusFailed, gatehouse.StatusCancelled}
	got := make([]gatehouse.UpdateStatus, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			got[i], err = tx.FinishUpdate(id, statuses[i%len(statuses)], map[string]int{string(statuses[i%len(statuses)]): i}, i)
			return err
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("FinishUpdate %d: %v", i, err)
		}
	}
	final := e.getUpdate(id)
	for i, st := range got {
		if st != final.Status {
			t.Errorf("racing FinishUpdate %d returned %q but the update ended %q: one finish wins, the others report it", i, st, final.Status)
		}
	}
	if n := final.ResourceChanges[string(final.Status)]; final.ResourceCount != n || len(final.ResourceChanges) != 1 {
		t.Errorf("the finished update mixes several finishes: %+v", final)
	}
}

func testRaceAudit(t *testing.T, e *env) {
	const perWriter = 15
	errs := e.race(racers, func(i int) error {
		for j := range perWriter {
			err := e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
				return tx.AppendAudit(&gatehouse.AuditEvent{ID: fmt.Sprintf("w%d-%d", i, j), ActorName: fmt.Sprintf("writer-%d", i), Action: "race", Outcome: "success"})
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
	}
	evs := e.allAudit()
	if len(evs) != racers*perWriter {
		t.Fatalf("%d events in the log, want %d", len(evs), racers*perWriter)
	}
	checkChain(t, evs)
	seen := map[string]bool{}
	for _, ev := range evs {
		seen[ev.ID] = true
	}
	for i := range racers {
		for j := range perWriter {
			if !seen[fmt.Sprintf("w%d-%d", i, j)] {
				t.Errorf("event w%d-%d is missing", i, j)
			}
		}
	}
}

func testRaceStackKey(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "prod", nil)
	got := make([][]byte, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			got[i], err = tx.CreateStackKey(s.ID, []byte(fmt.Sprintf("key-%d", i)))
			return err
		})
	})
	var stored []byte
	e.view(func(tx gatehouse.Tx) (err error) { stored, err = tx.GetStackKey(s.ID); return err })
	for i, err := range errs {
		if err != nil {
			t.Errorf("CreateStackKey %d: %v", i, err)
		} else if !bytes.Equal(got[i], stored) {
			t.Errorf("CreateStackKey %d returned %q but the stack's key is %q: all must get the first writer's key", i, got[i], stored)
		}
	}
}

func testRaceCreateOrg(t *testing.T, e *env) {
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			// The same name, spelled in several cases.
			name := []string{"race", "RACE", "Race", "rAcE"}[i%4]
			return tx.CreateOrg(&gatehouse.Org{Name: name, Settings: gatehouse.DefaultOrgSettings()})
		})
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			t.Errorf("a losing CreateOrg failed with %v, want ECONFLICT", err)
		}
	}
	if won != 1 {
		t.Errorf("%d racing CreateOrg of one name succeeded, want 1", won)
	}
}

func testRaceAuthFailures(t *testing.T, e *env) {
	counts := make([]int, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			counts[i], _, err = tx.RecordAuthFailure("ip:198.51.100.7", time.Hour)
			return err
		})
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("RecordAuthFailure %d: %v", i, err)
		}
	}
	slices.Sort(counts)
	for i, n := range counts {
		if n != i+1 {
			t.Fatalf("racing RecordAuthFailure returned counts %v, want 1..%d: every failure counted once", counts, racers)
		}
	}
	var n int
	e.view(func(tx gatehouse.Tx) (err error) {
		n, _, err = tx.AuthFailures("ip:198.51.100.7", time.Hour)
		return err
	})
	if n != racers {
		t.Errorf("AuthFailures after the race = %d, want %d", n, racers)
	}
}

func testRaceConsumeOIDCToken(t *testing.T, e *env) {
	acme := e.org("acme")
	until := e.now().Add(time.Hour)
	won := make([]bool, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			won[i], err = tx.ConsumeOIDCToken(acme.ID, "race-token", until)
			return err
		})
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("ConsumeOIDCToken %d: %v", i, err)
		}
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d racers exchanged one ID token, want exactly 1", n)
	}
}

func testRaceExportLease(t *testing.T, e *env) {
	until := e.now().Add(time.Hour)
	won := make([]bool, racers)
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) (err error) {
			won[i], err = tx.AcquireExportLease("siem", fmt.Sprintf("proc-%d", i), until)
			return err
		})
	})
	n := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("AcquireExportLease %d: %v", i, err)
		}
		if won[i] {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d processes acquired one sink's export lease, want exactly 1", n)
	}
}

// testRaceCheckpointChain: processes extending the audit checkpoint chain at once (each
// reads the last checkpoint and stores the next position) never fork it: the positions
// stored are 1..n, each naming the one before it.
func testRaceCheckpointChain(t *testing.T, e *env) {
	evs := e.appendAudit(1)
	const rounds = 4
	errs := e.race(racers, func(i int) error {
		for r := 0; r < rounds; r++ {
			err := e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
				cp := &gatehouse.AuditCheckpoint{Seq: int64(1000*i + r + 1), Hash: evs[0].Hash, Time: e.now(), KeyID: "k",
					Signature: []byte("sig"), Kind: gatehouse.CheckpointPeriodic, Index: 1}
				last, err := tx.LastAuditCheckpoint()
				switch {
				case err == nil:
					cp.Index, cp.PrevSeq, cp.Prev = last.Index+1, last.Seq, []byte(fmt.Sprintf("#%d", last.Index))
				case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
					return err
				}
				_, err = tx.PutAuditCheckpoint(cp)
				return err
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			t.Errorf("racer %d: %v", i, err)
		}
	}
	e.view(func(tx gatehouse.Tx) error {
		cps, err := tx.ListAuditCheckpoints()
		if err != nil {
			return err
		}
		slices.SortFunc(cps, func(a, b gatehouse.AuditCheckpoint) int { return int(a.Index - b.Index) })
		for i, c := range cps {
			if c.Index != int64(i+1) || (i > 0 && (string(c.Prev) != fmt.Sprintf("#%d", i) || c.PrevSeq != cps[i-1].Seq)) {
				t.Fatalf("checkpoint chain forked or broken at %d: %+v", i, c)
			}
		}
		if len(cps) == 0 {
			t.Error("no checkpoint stored")
		}
		t.Logf("%d racers x %d rounds stored %d chained checkpoints", racers, rounds, len(cps))
		return nil
	})
}

func testRaceScanDelivery(t *testing.T, e *env) {
	digest := randDigest()
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			return tx.PutScanDelivery(&gatehouse.ScanDelivery{Digest: digest, KeyID: fmt.Sprintf("key-%d", i)})
		})
	})
	n := 0
	for _, err := range errs {
		if err == nil {
			n++
		} else if !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			t.Errorf("a losing PutScanDelivery failed with %v, want ECONFLICT", err)
		}
	}
	if n != 1 {
		t.Errorf("%d racing PutScanDelivery of one delivery succeeded, want 1", n)
	}
}

func testStackConfig(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "dev", nil)
	other := e.stack(acme.ID, "web", "other", nil)
	err := e.try(func(tx gatehouse.Tx) error { _, err := tx.GetStackConfig(s.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetStackConfig of a stack without one")
	want := gatehouse.StackConfig{Environment: "web/dev", SecretsProvider: "awskms://alias/x", EncryptedKey: "AQID", EncryptionSalt: "v1:abc"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutStackConfig(s.ID, &want) })
	get := func(id int64) *gatehouse.StackConfig {
		var c *gatehouse.StackConfig
		e.view(func(tx gatehouse.Tx) error {
			var err error
			c, err = tx.GetStackConfig(id)
			return err
		})
		return c
	}
	if got := get(s.ID); *got != want {
		t.Errorf("GetStackConfig = %+v, want %+v", *got, want)
	}
	if !e.getStack(s.ID).RemoteConfig || e.getStack(other.ID).RemoteConfig {
		t.Errorf("Stack.RemoteConfig is not whether the stack has a remote configuration")
	}
	// Put replaces every field.
	want = gatehouse.StackConfig{Environment: "web/dev-2"}
	e.update(func(tx gatehouse.Tx) error { return tx.PutStackConfig(s.ID, &want) })
	if got := get(s.ID); *got != want {
		t.Errorf("GetStackConfig after a second put = %+v, want %+v", *got, want)
	}
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetStackConfig(other.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetStackConfig of another stack")
	err = e.try(func(tx gatehouse.Tx) error { return tx.PutStackConfig(s.ID+1000, &want) })
	wantCode(t, err, gatehouse.ENOTFOUND, "PutStackConfig of an unknown stack")
	// Renaming keeps it; deleting the config, then the stack, removes it.
	e.update(func(tx gatehouse.Tx) error { return tx.RenameStack(s.ID, "web", "renamed") })
	if got := get(s.ID); *got != want {
		t.Errorf("GetStackConfig after a rename = %+v, want %+v", *got, want)
	}
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStackConfig(s.ID) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteStackConfig(s.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "DeleteStackConfig of a stack without one")
	e.update(func(tx gatehouse.Tx) error { return tx.PutStackConfig(other.ID, &want) })
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteStack(other.ID) })
	err = e.try(func(tx gatehouse.Tx) error { _, err := tx.GetStackConfig(other.ID); return err })
	wantCode(t, err, gatehouse.ENOTFOUND, "GetStackConfig of a deleted stack")
}

// testPendingUpdates: a creator holds at most MaxPendingUpdates updates of a stack created
// and never started (ERATELIMITED beyond); a started one does not count, another stack's
// or another creator's do not either, and those older than PendingUpdateTTL are deleted at
// the next creation.
func testPendingUpdates(t *testing.T, e *env) {
	acme := e.org("acme")
	s := e.stack(acme.ID, "web", "pending", nil)
	other := e.stack(acme.ID, "web", "other", nil)
	var first string
	for i := range gatehouse.MaxPendingUpdates {
		id := e.newUpdate(s.ID, gatehouse.KindPreview, true)
		if i == 0 {
			first = id
		}
	}
	create := func(stackID int64) error {
		return e.try(func(tx gatehouse.Tx) error {
			return tx.CreateUpdate(&gatehouse.Update{ID: randID(), StackID: stackID, Kind: gatehouse.KindPreview, DryRun: true, Program: json.RawMessage(`{}`)})
		})
	}
	wantCode(t, create(s.ID), gatehouse.ERATELIMITED, "an update past MaxPendingUpdates never started")
	if err := create(other.ID); err != nil {
		t.Errorf("another stack's update: %v", err)
	}
	// The bound is per creator: another credential still creates on the full stack.
	bob := gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: "42"}
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.CreateUpdate(&gatehouse.Update{ID: randID(), StackID: s.ID, Kind: gatehouse.KindPreview, DryRun: true, Program: json.RawMessage(`{}`), StartedBy: bob})
	})
	if err != nil {
		t.Errorf("another creator on the full stack: %v", err)
	}
	// Starting one makes room.
	if _, err := e.start(first, randDigest(), e.now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := create(s.ID); err != nil {
		t.Errorf("after one was started: %v", err)
	}
	wantCode(t, create(s.ID), gatehouse.ERATELIMITED, "full again")
	if e.clock == nil {
		return
	}
	e.clock.Advance(gatehouse.PendingUpdateTTL + time.Minute)
	if err := create(s.ID); err != nil {
		t.Errorf("after the pending ones lapsed: %v", err)
	}
	var pending, started int
	e.view(func(tx gatehouse.Tx) error {
		us, err := tx.ListUpdates(s.ID, gatehouse.UpdateFilter{IncludeDryRuns: true})
		started = len(us)
		if err != nil {
			return err
		}
		_, err = tx.GetUpdate(first)
		return err
	})
	if started != 1 {
		t.Errorf("the started update's record: %d listed, want 1", started)
	}
	for range gatehouse.MaxPendingUpdates - 1 {
		if err := create(s.ID); err != nil {
			pending++
		}
	}
	if pending != 0 {
		t.Errorf("%d of %d new updates refused after the old ones lapsed", pending, gatehouse.MaxPendingUpdates-1)
	}
}
