package posture_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/posture"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

type tclock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *tclock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *tclock) Set(t time.Time) { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func openStore(t testing.TB) (*sqlstore.DB, *tclock, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(context.Background(), dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	clk := &tclock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	db.Clock = clk.Now
	return db, clk, dir
}

func update(t testing.TB, db gatehouse.Store, fn func(tx gatehouse.Tx) error) {
	t.Helper()
	if err := db.Update(context.Background(), fn); err != nil {
		t.Fatal(err)
	}
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func mkToken(t testing.TB, tx gatehouse.Tx, tk *gatehouse.Token) *gatehouse.Token {
	t.Helper()
	tk.ID = newID()
	_, _ = rand.Read(tk.Digest[:])
	if err := tx.CreateToken(tk); err != nil {
		t.Fatal(err)
	}
	return tk
}

// TestReportFindsKnownProblems builds an organization with a known set of problems (and a
// second organization with problems of its own) and checks that the report finds every one
// and nothing else.
func TestReportFindsKnownProblems(t *testing.T) {
	db, clk, _ := openStore(t)
	now := clk.Now()
	day := 24 * time.Hour
	var acme *gatehouse.Org
	update(t, db, func(tx gatehouse.Tx) error {
		acme = &gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
		must(t, tx.CreateOrg(acme))
		st := acme.Settings
		st.DefaultStackPermission = gatehouse.PermWrite     // members/default-above-read
		st.DefaultEnvironmentPermission = gatehouse.EnvRead // environments/readable-default
		must(t, tx.UpdateOrgSettings(acme.ID, st))
		users := map[string]*gatehouse.User{}
		for _, n := range []string{"a1", "a2", "a3", "a4", "bob", "carol"} {
			u := &gatehouse.User{Name: n}
			must(t, tx.CreateUser(u))
			users[n] = u
			role := gatehouse.RoleAdmin // four admins: members/too-many-admins
			if n == "bob" || n == "carol" {
				role = gatehouse.RoleMember
			}
			must(t, tx.PutMember(acme.ID, u.ID, role))
		}
		// Stacks: web/prod protected (by ID), api/prod tagged production but not protected,
		// web/dev fine, misc/tmp untagged. All created by an admin (no creator finding).
		mk := func(project, name string, tags map[string]string) *gatehouse.Stack {
			s := &gatehouse.Stack{OrgID: acme.ID, Project: project, Name: name, CreatorUserID: users["a1"].ID, CreatedBy: "a1"}
			must(t, tx.CreateStack(s))
			if tags != nil {
				must(t, tx.SetStackTags(s.ID, tags))
			}
			return s
		}
		webProd := mk("web", "prod", map[string]string{"env": "production"})
		mk("api", "prod", map[string]string{"env": "production"})
		mk("web", "dev", map[string]string{"env": "dev"})
		mk("misc", "tmp", nil)
		must(t, tx.PutProtection(&gatehouse.Protection{OrgID: acme.ID, Scope: gatehouse.Scope{StackID: webProd.ID}, CreatedBy: "a1"}))
		// Team ops: admin on env=production, with bob (members/admin-on-production,
		// teams/write-on-protected). Team readers: read on production (fine).
		ops := &gatehouse.Team{OrgID: acme.ID, Name: "ops"}
		must(t, tx.CreateTeam(ops))
		must(t, tx.PutTeamMember(ops.ID, users["bob"].ID, "member"))
		must(t, tx.PutGrant(&gatehouse.Grant{TeamID: ops.ID, Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, Permission: gatehouse.PermAdmin}))
		readers := &gatehouse.Team{OrgID: acme.ID, Name: "readers"}
		must(t, tx.CreateTeam(readers))
		must(t, tx.PutTeamMember(readers.ID, users["carol"].ID, "member"))
		must(t, tx.PutGrant(&gatehouse.Grant{TeamID: readers.ID, Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, Permission: gatehouse.PermRead}))
		// Tokens.
		mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenOrg, Name: "deployer", OrgID: acme.ID, Role: gatehouse.RoleAdmin, Pipeline: true,
			Created: now, Expires: now.Add(30 * day)}) // tokens/org-admin-token
		ciOps := mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "ci-ops", OrgID: acme.ID, TeamID: ops.ID, Pipeline: true,
			Created: now.Add(-10 * day), LastUsed: now.Add(-day)}) // tokens/never-expires
		mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "old", OrgID: acme.ID, TeamID: ops.ID, Pipeline: true,
			Created: now.Add(-100 * day), Expires: now.Add(100 * day), LastUsed: now.Add(-40 * day)}) // older-than-rotation, unused
		laptop := mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "laptop", UserID: users["carol"].ID,
			Created: now.Add(-day), Expires: now.Add(30 * day), LastUsed: now}) // personal-in-pipeline
		mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "exchanged", UserID: users["bob"].ID, OrgID: acme.ID, Pipeline: true,
			Issuer: "https://token.actions.githubusercontent.com", Created: now.Add(-200 * day)}) // exchanged: never reported
		revoked := mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenOrg, Name: "gone", OrgID: acme.ID, Role: gatehouse.RoleAdmin, Created: now.Add(-300 * day)})
		must(t, tx.RevokeToken(revoked.ID, now.Add(-day)))
		must(t, tx.RecordTokenUsage([]gatehouse.UsageDelta{
			{TokenID: laptop.ID, IP: "192.0.2.10", Agent: "pulumi-cli/1 (v3.260.0; linux)", First: now.Add(-time.Hour), Last: now.Add(-time.Hour), Requests: 3},
			{TokenID: laptop.ID, OrgID: acme.ID, IP: "198.51.100.20", Agent: "pulumi-cli/1 (v3.260.0; linux)", CI: "ci.system=GitHub Actions", First: now.Add(-time.Hour), Last: now.Add(-time.Hour), Requests: 5},
		}, gatehouse.UsageLimits{}))
		// Environment opens: by carol (a person) and by the pipeline (not counted).
		for _, ev := range []gatehouse.AuditEvent{
			{OrgID: acme.ID, ActorKind: "user", ActorName: "carol", TokenID: laptop.ID, Action: "env:open", Target: "acme/app/prod-secrets", Outcome: gatehouse.OutcomeSuccess, Time: now.Add(-2 * day)},
			{OrgID: acme.ID, ActorKind: "team-token", ActorName: "ci-ops", TokenID: ciOps.ID, Action: "env:open", Target: "acme/app/ci", Outcome: gatehouse.OutcomeSuccess, Time: now.Add(-2 * day)},
			{OrgID: acme.ID, ActorKind: "user", ActorName: "bob", Action: "env:open", Target: "acme/app/old", Outcome: gatehouse.OutcomeSuccess, Time: now.Add(-60 * day)},
		} {
			ev := ev
			must(t, tx.AppendAudit(&ev))
		}
		// OIDC: one narrow policy (fine), one that admits every subject (too broad), a deny.
		is := &gatehouse.OIDCIssuer{OrgID: acme.ID, Name: "gha", URL: "https://token.actions.githubusercontent.com", MaxExpiration: time.Hour}
		must(t, tx.CreateOIDCIssuer(is))
		pol, err := tx.GetOIDCAuthPolicy(acme.ID, is.ID)
		must(t, err)
		pol.Policies = []gatehouse.OIDCPolicy{
			{Decision: gatehouse.OIDCAllow, TokenType: gatehouse.OIDCTokenTeam, TeamName: "ops", Rules: map[string]string{"aud": "urn:pulumi:org:acme", "sub": "repo:acme/infra:environment:production"}},
			{Decision: gatehouse.OIDCAllow, TokenType: gatehouse.OIDCTokenOrganization, Rules: map[string]string{"aud": "urn:pulumi:org:acme", "sub": "*"}},
			{Decision: gatehouse.OIDCDeny, Rules: map[string]string{"sub": "*"}},
		}
		must(t, tx.PutOIDCAuthPolicy(pol))
		// Audit verified 10 days ago (stale), no export sink.
		must(t, posture.NoteAuditVerified(tx, posture.AuditVerification{At: now.Add(-10 * day), OK: true}))
		// Anomalies: one in the period, one before it, one of another organization.
		for _, a := range []gatehouse.Anomaly{
			{OrgID: acme.ID, TokenID: ciOps.ID, Kind: posture.AnomalyNewAddress, Window: "2026-11-30", At: now.Add(-day), Detail: "used from 203.0.113.9"},
			{OrgID: acme.ID, TokenID: ciOps.ID, Kind: posture.AnomalyOddHour, Window: "2026-10-01", At: now.Add(-61 * day), Detail: "old"},
		} {
			a := a
			_, err := tx.RecordAnomaly(&a)
			must(t, err)
		}
		// Another organization with problems of its own: none of them may show.
		globex := &gatehouse.Org{Name: "globex", Settings: gatehouse.DefaultOrgSettings()}
		must(t, tx.CreateOrg(globex))
		gs := &gatehouse.Stack{OrgID: globex.ID, Project: "g", Name: "prod"}
		must(t, tx.CreateStack(gs))
		must(t, tx.SetStackTags(gs.ID, map[string]string{"env": "production"}))
		gt := mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenOrg, Name: "gadmin", OrgID: globex.ID, Role: gatehouse.RoleAdmin, Created: now})
		_, err = tx.RecordAnomaly(&gatehouse.Anomaly{OrgID: globex.ID, TokenID: gt.ID, Kind: posture.AnomalyDenialBurst, Window: "x", At: now})
		return err
	})
	var rep *posture.Report
	if err := db.View(context.Background(), func(tx gatehouse.Tx) (err error) {
		rep, err = posture.Assess(tx, acme, posture.AssessOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"high anomalies/new-address ci-ops",
		"high members/default-above-read acme",
		"high oidc/policy-too-broad issuer gha policy 2",
		"high stacks/production-unprotected api/prod",
		"high tokens/org-admin-token deployer",
		"high tokens/personal-in-pipeline laptop",
		"medium audit/no-export audit log",
		"medium audit/not-verified audit log",
		"medium environments/readable-default acme",
		"medium environments/opened-by-people acme/app/prod-secrets",
		"medium members/admin-on-production bob",
		"medium members/too-many-admins acme",
		"medium teams/write-on-protected ops",
		"medium tokens/never-expires ci-ops",
		"medium tokens/older-than-rotation old",
		"low stacks/untagged 1 stacks",
		"low tokens/unused old",
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, fmt.Sprintf("%s %s %s", f.Severity, f.Rule, f.Subject))
		if f.Fix == "" || f.Title == "" {
			t.Errorf("finding %s has no title or fix", f.Rule)
		}
	}
	matched := make([]bool, len(got))
	for _, w := range want {
		alts := strings.Split(w, "|")
		ok := false
		for i, g := range got {
			for _, alt := range alts {
				fields := strings.SplitN(alt, " ", 3)
				if !matched[i] && strings.HasPrefix(g, fields[0]+" "+fields[1]+" ") && strings.Contains(g, fields[2]) {
					matched[i], ok = true, true
				}
			}
			if ok {
				break
			}
		}
		if !ok {
			t.Errorf("the report misses %q", w)
		}
	}
	for i, g := range got {
		if !matched[i] {
			t.Errorf("the report has an unexpected finding %q", g)
		}
	}
	if t.Failed() {
		t.Logf("findings:\n%s", strings.Join(got, "\n"))
	}
	if !rep.Fails(posture.SevHigh) || rep.Summary[posture.SevHigh] != 6 {
		t.Errorf("summary = %v, want 6 high", rep.Summary)
	}
	// SARIF: one result per finding, rules referenced by index, valid version.
	sarif := posture.SARIF(rep)
	b, _ := json.Marshal(sarif)
	var sl struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
			} `json:"results"`
		} `json:"runs"`
	}
	must(t, json.Unmarshal(b, &sl))
	if sl.Version != "2.1.0" || len(sl.Runs) != 1 || len(sl.Runs[0].Results) != len(rep.Findings) {
		t.Fatalf("SARIF: version %q, %d runs, want 2.1.0 with %d results", sl.Version, len(sl.Runs), len(rep.Findings))
	}
	for _, r := range sl.Runs[0].Results {
		if rules := sl.Runs[0].Tool.Driver.Rules; r.RuleIndex >= len(rules) || rules[r.RuleIndex].ID != r.RuleID {
			t.Errorf("SARIF result %s points at rule index %d", r.RuleID, r.RuleIndex)
		}
		if r.Level != "error" && r.Level != "warning" && r.Level != "note" {
			t.Errorf("SARIF level %q", r.Level)
		}
	}
}

// TestReportEmptyOrg: an organization with nothing in it (and a server that exports and
// verifies its audit log) gets an empty, valid report.
func TestReportEmptyOrg(t *testing.T) {
	db, clk, _ := openStore(t)
	org := &gatehouse.Org{Name: "quiet", Settings: gatehouse.DefaultOrgSettings()}
	update(t, db, func(tx gatehouse.Tx) error {
		must(t, tx.CreateOrg(org))
		return posture.NoteAuditVerified(tx, posture.AuditVerification{At: clk.Now(), OK: true})
	})
	var rep *posture.Report
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) {
		rep, err = posture.Assess(tx, org, posture.AssessOptions{ExportSinks: []string{"siem"}})
		return err
	}))
	b, _ := json.Marshal(rep)
	if len(rep.Findings) != 0 || !strings.Contains(string(b), `"findings":[]`) || rep.Fails(posture.SevLow) {
		t.Fatalf("empty org report = %s", b)
	}
	var buf strings.Builder
	must(t, posture.WriteTable(&buf, rep))
	if !strings.Contains(buf.String(), "No findings.") {
		t.Errorf("table = %q", buf.String())
	}
	b, _ = json.Marshal(posture.SARIF(rep))
	if !strings.Contains(string(b), `"results":[]`) {
		t.Errorf("SARIF of an empty report = %s", b)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// replay feeds uses into the recorder and flushes.
type traffic struct {
	t   *testing.T
	rec *posture.Recorder
	tk  *gatehouse.Token
}

func (tr traffic) send(at time.Time, ip, agent string, n int, denied bool) {
	for i := 0; i < n; i++ {
		tr.rec.Record(posture.Use{Token: tr.tk, OrgID: tr.tk.OrgID, IP: ip, Agent: agent, At: at, Denied: denied, Target: "stack:acme/web/prod"})
	}
}

func (tr traffic) flush() {
	tr.t.Helper()
	must(tr.t, tr.rec.Flush(context.Background()))
}

// TestAnomaliesFlaggedOnce replays a token's traffic: eight days of office-hours use from one
// network, then a use from an unfamiliar address, one at 03:00 UTC and a burst of denials,
// each replayed twice; every anomaly is flagged exactly once (an audit event and a callback
// each), and nothing else is.
func TestAnomaliesFlaggedOnce(t *testing.T) {
	db, clk, _ := openStore(t)
	var tk *gatehouse.Token
	var fresh *gatehouse.Token
	update(t, db, func(tx gatehouse.Tx) error {
		org := &gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
		must(t, tx.CreateOrg(org))
		tm := &gatehouse.Team{OrgID: org.ID, Name: "ops"}
		must(t, tx.CreateTeam(tm))
		tk = mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "ci", OrgID: org.ID, TeamID: tm.ID, Pipeline: true})
		fresh = mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenTeam, Name: "fresh", OrgID: org.ID, TeamID: tm.ID, Pipeline: true})
		return nil
	})
	var mu sync.Mutex
	var flagged []gatehouse.Anomaly
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now, OnAnomaly: func(a gatehouse.Anomaly) {
		mu.Lock()
		flagged = append(flagged, a)
		mu.Unlock()
	}})
	tr := traffic{t: t, rec: rec, tk: tk}
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	const agent = "pulumi-cli/1 (v3.260.0; linux; cmd=up)"
	for d := 0; d < 8; d++ {
		for h := 9; h <= 17; h++ {
			at := start.Add(time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + 5*time.Minute)
			tr.send(at, "10.1.2.3", agent, 5, false)
			tr.send(at.Add(time.Minute), "10.1.2.44", agent, 5, false)
		}
		clk.Set(start.Add(time.Duration(d+1) * 24 * time.Hour))
		tr.flush()
	}
	if len(flagged) != 0 {
		t.Fatalf("learning traffic flagged %v", flagged)
	}
	day9 := start.Add(8 * 24 * time.Hour)
	// A new token's first uses, from anywhere at any hour: learning, nothing flagged.
	ftr := traffic{t: t, rec: rec, tk: fresh}
	ftr.send(day9.Add(3*time.Hour), "198.51.100.99", agent, 3, false)
	for replay := 0; replay < 2; replay++ {
		tr.send(day9.Add(10*time.Hour+time.Duration(replay)*time.Minute), "198.51.100.7", agent, 2, false) // unfamiliar address
		tr.send(day9.Add(10*time.Hour+30*time.Minute), "203.0.113.9", agent, 1, false)                     // another: same window
		tr.send(day9.Add(3*time.Hour+time.Duration(replay)*time.Minute), "10.1.2.3", agent, 1, false)      // odd hour
		tr.send(day9.Add(14*time.Hour+time.Duration(replay)*time.Minute), "10.1.2.3", agent, 25, true)     // denial burst
		clk.Set(day9.Add(15 * time.Hour))
		tr.flush()
	}
	kinds := map[string]int{}
	for _, a := range flagged {
		kinds[a.Kind]++
	}
	want := map[string]int{posture.AnomalyNewAddress: 1, posture.AnomalyOddHour: 1, posture.AnomalyDenialBurst: 1}
	if fmt.Sprint(kinds) != fmt.Sprint(want) {
		t.Fatalf("flagged %v, want %v: %+v", kinds, want, flagged)
	}
	for _, a := range flagged {
		if a.TokenID != tk.ID {
			t.Errorf("anomaly of the wrong token: %+v", a)
		}
		if a.Kind == posture.AnomalyNewAddress && a.IP != "198.51.100.7" {
			t.Errorf("new-address anomaly names %s, want 198.51.100.7", a.IP)
		}
	}
	var events []gatehouse.AuditEvent
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) {
		events, err = tx.ListAudit(gatehouse.AuditFilter{Action: posture.AuditActionAnomaly})
		return err
	}))
	if len(events) != 3 {
		t.Fatalf("%d anomaly audit events, want 3", len(events))
	}
	for _, e := range events {
		if e.TokenID != tk.ID || e.Details["kind"] == "" || e.OrgID == 0 {
			t.Errorf("audit event %+v", e)
		}
	}
	// The org's threshold is per organization: raising the denial burst threshold above
	// what a later hour sees flags nothing new.
	update(t, db, func(tx gatehouse.Tx) error {
		b, _ := json.Marshal(posture.Settings{DenialBurst: 100})
		return tx.PutPostureSettings(tk.OrgID, b)
	})
	tr.send(day9.Add(16*time.Hour), "10.1.2.3", agent, 30, true)
	tr.flush()
	if len(flagged) != 3 {
		t.Errorf("with denialBurst 100, 30 denials flagged: %+v", flagged[3:])
	}
}

// TestInventoryBounded floods a token with random user agents and addresses: the inventory
// keeps at most MaxClients clients and counts the overflow; the recorder's memory is
// bounded too (MaxPending), counting what it dropped.
func TestInventoryBounded(t *testing.T) {
	db, clk, _ := openStore(t)
	var tk *gatehouse.Token
	update(t, db, func(tx gatehouse.Tx) error {
		tk = mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "flooded", UserID: 1})
		return nil
	})
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now, Limits: gatehouse.UsageLimits{MaxClients: 20, MaxTargets: 5}, MaxPending: 300})
	now := clk.Now()
	for round := 0; round < 3; round++ {
		for i := 0; i < 400; i++ {
			rec.Record(posture.Use{Token: tk, IP: fmt.Sprintf("10.%d.%d.%d", round, i/250, i%250), Agent: "agent-" + newID(), At: now, Target: fmt.Sprintf("stack:acme/p/s%d", i%9)})
		}
		if rec.Pending() > 300 {
			t.Fatalf("pending %d > MaxPending", rec.Pending())
		}
		must(t, rec.Flush(context.Background()))
	}
	var u *gatehouse.TokenUsage
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) { u, err = tx.GetTokenUsage(tk.ID); return err }))
	if len(u.Clients) != 20 || len(u.Targets) != 5 {
		t.Fatalf("inventory holds %d clients, %d targets; want 20 and 5", len(u.Clients), len(u.Targets))
	}
	if rec.Dropped() != 300 {
		t.Errorf("dropped %d, want 300 (3 rounds of 400 with 300 pending at most)", rec.Dropped())
	}
	if u.Requests != 900 || u.OverflowClients != 880 || u.OverflowRequests != 880 || u.OverflowTargets == 0 {
		t.Errorf("requests %d, overflow clients %d (requests %d), targets %d; want 900, 880, 880, >0", u.Requests, u.OverflowClients, u.OverflowRequests, u.OverflowTargets)
	}
}

// TestUsageMergesAcrossSkewedClocks: batches of two processes whose clocks differ, merged in
// either order, give the same first and last seen and the sum of the counts; a token deleted
// before its batch is flushed is skipped without failing the batch.
func TestUsageMergesAcrossSkewedClocks(t *testing.T) {
	db, clk, _ := openStore(t)
	var tk *gatehouse.Token
	update(t, db, func(tx gatehouse.Tx) error {
		tk = mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: "p", UserID: 1})
		return nil
	})
	now := clk.Now()
	ahead := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	behind := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	ahead.Record(posture.Use{Token: tk, IP: "10.0.0.1", Agent: "a", At: now.Add(2 * time.Minute)})
	behind.Record(posture.Use{Token: tk, IP: "10.0.0.1", Agent: "a", At: now.Add(-3 * time.Minute)})
	ghost := &gatehouse.Token{ID: "deleted-token", Kind: gatehouse.TokenPersonal}
	ahead.Record(posture.Use{Token: ghost, IP: "10.0.0.2", Agent: "a", At: now})
	must(t, ahead.Flush(context.Background()))
	must(t, behind.Flush(context.Background()))
	var u *gatehouse.TokenUsage
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) { u, err = tx.GetTokenUsage(tk.ID); return err }))
	if len(u.Clients) != 1 || u.Requests != 2 || !u.FirstSeen.Equal(now.Add(-3*time.Minute)) || !u.LastSeen.Equal(now.Add(2*time.Minute)) ||
		!u.Clients[0].FirstSeen.Equal(now.Add(-3*time.Minute)) || !u.Clients[0].LastSeen.Equal(now.Add(2*time.Minute)) {
		t.Fatalf("merged usage = %+v", u)
	}
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) { u, err = tx.GetTokenUsage("deleted-token"); return err }))
	if u.Requests != 0 {
		t.Errorf("a deleted token's usage was recorded: %+v", u)
	}
}

// TestInventorySize1000x10 reports the inventory's size for 1,000 tokens with 10 clients each
// (one target, one active hour each): rows, and the database file's growth.
func TestInventorySize1000x10(t *testing.T) {
	if testing.Short() {
		t.Skip("sizing run")
	}
	db, clk, dir := openStore(t)
	var toks []*gatehouse.Token
	update(t, db, func(tx gatehouse.Tx) error {
		for i := 0; i < 1000; i++ {
			toks = append(toks, mkToken(t, tx, &gatehouse.Token{Kind: gatehouse.TokenPersonal, Name: fmt.Sprintf("t%d", i), UserID: 1}))
		}
		return nil
	})
	size := func() int64 {
		_, _ = db.Writer().Exec(`PRAGMA wal_checkpoint(TRUNCATE)`)
		var n int64
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if fi, err := os.Stat(filepath.Join(dir, e.Name())); err == nil {
				n += fi.Size()
			}
		}
		return n
	}
	before := size()
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	now := clk.Now()
	for _, tk := range toks {
		for c := 0; c < 10; c++ {
			for r := 0; r < 3; r++ {
				rec.Record(posture.Use{Token: tk, IP: fmt.Sprintf("10.20.%d.%d", c, 1+r%1), Agent: "pulumi-cli/1 (v3.260.0; linux; cmd=up)", At: now, Target: "stack:acme/project/stack-" + tk.Name})
			}
		}
	}
	must(t, rec.Flush(context.Background()))
	after := size()
	var st gatehouse.UsageInventoryStats
	must(t, db.View(context.Background(), func(tx gatehouse.Tx) (err error) { st, err = tx.UsageInventoryStats(); return err }))
	if st.Tokens != 1000 || st.Clients != 10000 {
		t.Fatalf("stats = %+v", st)
	}
	t.Logf("inventory for 1000 tokens x 10 clients (3 requests each, %d client rows): %d token rows, %d client rows, %d target rows, %d hour rows; database grew by %d bytes (%.0f bytes per client row)",
		st.Clients, st.Tokens, st.Clients, st.Targets, st.Hours, after-before, float64(after-before)/float64(st.Clients))
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRecord is the request path's share of usage recording: one Record (a map update
// under a lock) per authenticated request.
func BenchmarkRecord(b *testing.B) {
	db, clk, _ := openStore(b)
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	tk := &gatehouse.Token{ID: "tok", Kind: gatehouse.TokenTeam, OrgID: 1}
	now := clk.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rec.Record(posture.Use{Token: tk, OrgID: 1, IP: "10.0.0.5", Agent: "pulumi-cli/1 (v3.260.0; linux; cmd=up)", Target: "stack:acme/web/prod", At: now})
	}
}

// BenchmarkRecordAndFlush is recording's whole cost per request, the background flush
// included: 20 tokens with 5 clients each make the requests, and the recorder is flushed
// every 2,000 requests (about what a busy process serves per second: the flush runs every
// second), anomaly detection and all.
func BenchmarkRecordAndFlush(b *testing.B) {
	db, clk, _ := openStore(b)
	var toks []*gatehouse.Token
	update(b, db, func(tx gatehouse.Tx) error {
		org := &gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
		if err := tx.CreateOrg(org); err != nil {
			return err
		}
		for i := 0; i < 20; i++ {
			toks = append(toks, mkToken(b, tx, &gatehouse.Token{Kind: gatehouse.TokenOrg, Name: fmt.Sprintf("t%d", i), OrgID: org.ID, Role: gatehouse.RoleMember}))
		}
		return nil
	})
	rec := posture.NewRecorder(db, posture.Options{Now: clk.Now})
	now := clk.Now()
	b.ResetTimer()
	c0 := cpuTime()
	defer func() { b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op") }()
	for i := 0; i < b.N; i++ {
		tk := toks[i%len(toks)]
		rec.Record(posture.Use{Token: tk, OrgID: tk.OrgID, IP: fmt.Sprintf("10.0.0.%d", i%5), Agent: "pulumi-cli/1 (v3.260.0; linux; cmd=up)", Target: "stack:acme/web/prod", At: now})
		if i%2000 == 1999 {
			if err := rec.Flush(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := rec.Flush(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// TestDetectSpikeAndCIAgent: a clock hour far above the token's usual rate is a spike (after
// learning); a personal token with a CI user agent is flagged, an exchanged one is not; the
// CI identity of an exchanged token is its issuer and subject.
func TestDetectSpikeAndCIAgent(t *testing.T) {
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	tk := &gatehouse.Token{ID: "t1", Kind: gatehouse.TokenTeam, OrgID: 1}
	prior := &gatehouse.TokenUsage{FirstSeen: start, Requests: 5000, HoursMask: 0xFFFFFF, Hours: map[int64][2]int64{},
		Clients: []gatehouse.TokenClient{{IP: "10.0.0.1"}}}
	h0 := start.Unix() / 3600
	for h := h0 + 8*24 - 7*24; h < h0+8*24; h++ {
		prior.Hours[h] = [2]int64{20, 0} // 20 requests an hour for a week
	}
	at := start.Add(8 * 24 * time.Hour).Add(30 * time.Minute)
	hour := at.Unix() / 3600
	delta := func(n int64) gatehouse.UsageDelta {
		return gatehouse.UsageDelta{TokenID: "t1", OrgID: 1, IP: "10.0.0.1", Agent: "pulumi-cli/1", First: at, Last: at, Requests: n,
			Hours: 1 << uint(at.Hour()), HourCounts: map[int64][2]int64{hour: {n, 0}}}
	}
	s := posture.DefaultSettings()
	if got := posture.Detect(tk, prior, []gatehouse.UsageDelta{delta(150)}, s); len(got) != 0 {
		t.Errorf("150 requests (below spikeMin) flagged %+v", got)
	}
	got := posture.Detect(tk, prior, []gatehouse.UsageDelta{delta(250)}, s)
	if len(got) != 1 || got[0].Kind != posture.AnomalySpike || got[0].Window != at.Format("2006-01-02T15") {
		t.Errorf("250 requests (12.5x the average hour) flagged %+v, want one rate-spike", got)
	}
	young := *prior
	young.FirstSeen = at.Add(-24 * time.Hour)
	if got := posture.Detect(tk, &young, []gatehouse.UsageDelta{delta(250)}, s); len(got) != 0 {
		t.Errorf("a token still learning flagged %+v", got)
	}
	pat := &gatehouse.Token{ID: "p1", Kind: gatehouse.TokenPersonal}
	ci := delta(1)
	ci.Agent = "GitHub-Actions-Runner/2.311"
	if got := posture.Detect(pat, nil, []gatehouse.UsageDelta{ci}, s); len(got) != 1 || got[0].Kind != posture.AnomalyPersonalCI {
		t.Errorf("personal token with a CI user agent flagged %+v", got)
	}
	exchanged := &gatehouse.Token{ID: "p2", Kind: gatehouse.TokenPersonal, Issuer: "https://token.actions.githubusercontent.com", Description: "issued by OIDC token exchange for repo:acme/infra:ref:refs/heads/main"}
	if got := posture.Detect(exchanged, nil, []gatehouse.UsageDelta{ci}, s); len(got) != 0 {
		t.Errorf("an exchanged personal token flagged %+v", got)
	}
	if id := posture.CIIdentity(exchanged); id != "https://token.actions.githubusercontent.com sub=repo:acme/infra:ref:refs/heads/main" {
		t.Errorf("CIIdentity = %q", id)
	}
}
