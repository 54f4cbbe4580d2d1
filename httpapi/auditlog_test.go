package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/audit"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// alAll returns every stored audit event, oldest first, straight from the store.
func alAll(t *testing.T, e *env) []gatehouse.AuditEvent {
	t.Helper()
	var out []gatehouse.AuditEvent
	for ev, err := range app.AuditEvents(context.Background(), e.srv.Store) {
		must(t, err)
		out = append(out, ev)
	}
	return out
}

// alFind returns the events with the action and outcome whose target contains target.
func alFind(evs []gatehouse.AuditEvent, action, outcome, target string) []gatehouse.AuditEvent {
	var out []gatehouse.AuditEvent
	for _, ev := range evs {
		if ev.Action == action && ev.Outcome == outcome && strings.Contains(ev.Target, target) {
			out = append(out, ev)
		}
	}
	return out
}

// alStrings lists every text an event carries (what an export could show).
func alStrings(ev *gatehouse.AuditEvent) []string {
	out := []string{ev.ID, ev.OrgName, ev.ActorKind, ev.ActorName, ev.TokenID, ev.SourceIP, ev.UserAgent,
		ev.Action, ev.Target, ev.Outcome, ev.Reason, ev.RequestID, audit.Describe(ev)}
	for k, v := range ev.Details {
		out = append(out, k, v)
	}
	return out
}

func alCreateUser(t *testing.T, e *env, name, role string) (*cliwire.Client, string) {
	t.Helper()
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": name, "role": role}}, &out))
	return cliwire.New(e.url, out.TokenValue), out.TokenValue
}

// TestAuditEventsRecorded drives every kind of change through the API and finds each in
// the log with its actor, target and outcome; denied and failed calls are there with their
// reasons; and no secret value (token values, lease tokens, secret plaintexts) appears in
// any stored event or export.
func TestAuditEventsRecorded(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 })
	a := e.admin
	secrets := []string{a.Token}
	do := func(method, path string, body, out any) {
		t.Helper()
		must(t, a.Do(cliwire.Call{Method: method, Path: path, Body: body}, out))
	}

	// Members and roles.
	bob, bobTok := alCreateUser(t, e, "bob", "member")
	secrets = append(secrets, bobTok)
	do("PATCH", "/api/orgs/acme/members/bob", map[string]string{"role": "admin"}, nil)
	do("PATCH", "/api/orgs/acme/members/bob", map[string]string{"role": "member"}, nil)
	_, carolTok := alCreateUser(t, e, "carol", "member")
	secrets = append(secrets, carolTok)
	do("DELETE", "/api/orgs/acme/members/carol", nil, nil)
	// Org settings.
	do("PATCH", "/api/orgs/acme", map[string]any{"setDefaultStackPermission": "read", "setMaxAccessTokenExpiryDays": 0}, nil)

	// Stacks: create, tags, secrets, updates, import, export, rename, delete.
	must(t, e.createStack(a, "acme", "proj", "dev", map[string]string{"env": "dev"}))
	p := stackPath("acme", "proj", "dev")
	plain := "pl41ntext-db-password-7c1e"
	var enc apitype.EncryptValueResponse
	do("POST", p+"/encrypt", apitype.EncryptValueRequest{Plaintext: []byte(plain)}, &enc)
	var dec apitype.DecryptValueResponse
	do("POST", p+"/decrypt", apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}, &dec)
	if string(dec.Plaintext) != plain {
		t.Fatal("decrypt round trip")
	}
	batchPlain := []string{"batch-secret-one-93f1", "batch-secret-two-0b2a"}
	var benc apitype.BatchEncryptResponse
	do("POST", p+"/batch-encrypt", apitype.BatchEncryptRequest{Plaintexts: [][]byte{[]byte(batchPlain[0]), []byte(batchPlain[1])}}, &benc)
	var bdec apitype.BatchDecryptResponse
	do("POST", p+"/batch-decrypt", apitype.BatchDecryptRequest{Ciphertexts: benc.Ciphertexts}, &bdec)
	do("POST", p+"/decrypt/log-decryption", apitype.Log3rdPartyDecryptionEvent{SecretName: "proj:dbPassword", CommandName: "pulumi config"}, nil)
	secrets = append(secrets, plain, batchPlain[0], batchPlain[1])
	for _, s := range []string{plain, batchPlain[0], batchPlain[1]} {
		secrets = append(secrets, base64.StdEncoding.EncodeToString([]byte(s)))
	}

	// An update whose state and config carry a secret's ciphertext, and the config plaintext
	// of a non-secret value; it starts, checkpoints and completes.
	up, err := e.startRun(a, p, "update", false)
	must(t, err)
	secrets = append(secrets, up.Lease)
	must(t, up.checkpoint(deployment(3, "")))
	must(t, up.complete("succeeded"))
	// Another one is cancelled.
	up2, err := e.startRun(a, p, "update", false)
	must(t, err)
	secrets = append(secrets, up2.Lease)
	do("POST", p+"/update/"+up2.ID+"/cancel", nil, nil)
	// State import and export.
	do("POST", p+"/import", apitype.UntypedDeployment{Version: 3, Deployment: deployment(2, "")}, &apitype.ImportStackResponse{})
	var exp apitype.UntypedDeployment
	do("GET", p+"/export", nil, &exp)
	do("PATCH", p+"/tags", map[string]string{"env": "dev", "team": "core"}, nil)

	// Teams, grants, protection.
	do("POST", "/api/orgs/acme/teams/pulumi", map[string]string{"name": "ops"}, nil)
	do("PATCH", "/api/orgs/acme/teams/ops", map[string]any{"memberAction": "add", "member": "bob", "addGrant": map[string]any{"stack": "proj/dev", "permission": "write"}}, nil)
	do("PATCH", "/api/orgs/acme/teams/ops", map[string]any{"removeGrant": map[string]any{"stack": "proj/dev"}}, nil)
	do("POST", "/api/orgs/acme/protections", map[string]string{"tag": "env=production"}, nil)
	do("DELETE", "/api/orgs/acme/protections", map[string]string{"tag": "env=production"}, nil)

	// Tokens: team, organization, personal; rotation and revocation.
	var tok struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	do("POST", "/api/orgs/acme/teams/ops/tokens", map[string]string{"name": "ci"}, &tok)
	secrets = append(secrets, tok.TokenValue)
	teamTokID := tok.ID
	do("POST", "/api/orgs/acme/tokens", map[string]any{"name": "tooling", "admin": true}, &tok)
	secrets = append(secrets, tok.TokenValue)
	orgTokID := tok.ID
	var rot struct {
		TokenValue string `json:"tokenValue"`
	}
	do("POST", "/api/orgs/acme/tokens/"+orgTokID+"/rotate", map[string]any{"graceSeconds": 0}, &rot)
	secrets = append(secrets, rot.TokenValue)
	do("DELETE", "/api/orgs/acme/teams/ops/tokens/"+teamTokID, nil, nil)
	do("POST", "/api/user/tokens", map[string]string{"name": "laptop"}, &tok)
	secrets = append(secrets, tok.TokenValue)
	do("DELETE", "/api/user/tokens/"+tok.ID, nil, nil)

	// Denied: bob (member, default read) may not delete or rename the stack.
	wantStatus(t, bob.Do(cliwire.Call{Method: "DELETE", Path: p}, nil), 403)
	// Failed authentication: a malformed token, and a revoked one (the rotated-away org token).
	wantStatus(t, cliwire.New(e.url, "not-a-token").Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	wantStatus(t, cliwire.New(e.url, tok.TokenValue).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)

	// Stack rename and delete, last.
	do("POST", p+"/rename", apitype.StackRenameRequest{NewName: "dev2", NewProject: "proj"}, nil)
	do("DELETE", stackPath("acme", "proj", "dev2")+"?force=true", nil, nil)

	evs := alAll(t, e)
	expect := []struct{ action, outcome, target, detailKey, detailVal string }{
		{"org:user:create", "success", "acme/members/bob", "role", "member"},
		{"org:member:write", "success", "acme/members/bob", "role", "member"},
		{"org:member:write", "success", "acme/members/bob", "role", "admin"},
		{"org:member:write", "success", "acme/members/carol", "", ""},
		{"org:update", "success", "acme", "defaultStackPermission", "read"},
		{"stack:create", "success", "acme/proj/dev", "", ""},
		{"stack:encrypt", "success", "acme/proj/dev", "", ""},
		{"stack:decrypt", "success", "acme/proj/dev", "", ""},
		{"stack:decrypt", "success", "acme/proj/dev", "count", "2"},
		{"stack:decrypt", "success", "acme/proj/dev", "secret_name", "proj:dbPassword"},
		{"stack:update", "success", "acme/proj/dev", "kind", "update"},                // created
		{"stack:update", "success", "acme/proj/dev/update/" + up.ID, "update", up.ID}, // started
		{"update:lease", "success", "acme/proj/dev/update/" + up.ID, "", ""},          // checkpoint
		{"update:complete", "success", "acme/proj/dev/update/" + up.ID, "status", "succeeded"},
		{"stack:cancel", "success", "acme/proj/dev/update/" + up2.ID, "", ""},
		{"stack:import", "success", "acme/proj/dev", "", ""},
		{"stack:export", "success", "acme/proj/dev", "", ""},
		{"stack:tags", "success", "acme/proj/dev", "", ""},
		{"org:team:write", "success", "acme/teams/ops", "", ""},
		{"org:team:write", "success", "acme/teams/ops", "grant", ""},
		{"org:team:write", "success", "acme/teams/ops", "removed_grant", ""},
		{"org:protect", "success", "acme/protections/", "", ""},
		{"org:token:write", "success", "acme/teams/ops", "token_name", "ci"},
		{"org:token:write", "success", "acme", "token_name", "tooling"},
		{"org:token:write", "success", "acme/tokens/" + orgTokID, "rotated_to", ""},
		{"org:token:write", "success", "acme/teams/ops/tokens/" + teamTokID, "", ""},
		{"user:tokens", "success", "", "token_name", "laptop"},
		{"stack:delete", "denied", "acme/proj/dev", "", ""},
		{"user:read", "failure", "", "", ""},
		{"stack:rename", "success", "acme/proj/dev", "new_name", "acme/proj/dev2"},
		{"stack:delete", "success", "acme/proj/dev2", "force", "true"},
	}
	for _, x := range expect {
		found := false
		for _, ev := range alFind(evs, x.action, x.outcome, x.target) {
			if x.detailKey == "" || (x.detailVal == "" && ev.Details[x.detailKey] != "") || (x.detailVal != "" && ev.Details[x.detailKey] == x.detailVal) {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("no %s %s event on %q with %s=%q", x.outcome, x.action, x.target, x.detailKey, x.detailVal)
		}
	}
	// The protection add and remove are two events.
	if n := len(alFind(evs, "org:protect", "success", "acme/protections/")); n != 2 {
		t.Errorf("%d protection events, want 2", n)
	}
	// Actors and facts of a few.
	for _, ev := range alFind(evs, "stack:delete", "denied", "acme/proj/dev") {
		if ev.ActorName != "bob" || ev.ActorKind != "user" || ev.Reason == "" || ev.OrgName != "acme" || ev.SourceIP == "" || ev.RequestID == "" {
			t.Errorf("denied event = %+v", ev)
		}
		if p := audit.ToPulumi(&ev); !p.AuthFailure {
			t.Errorf("denied event is not an authentication failure in Pulumi's shape: %+v", p)
		}
	}
	fails := alFind(evs, "user:read", "failure", "")
	if len(fails) != 2 || fails[0].Reason == "" || fails[0].ActorKind != "anonymous" || fails[1].Reason == "" || fails[1].TokenID != tok.ID {
		t.Errorf("failed authentications = %+v", fails)
	}
	if ev := alFind(evs, "stack:create", "success", "acme/proj/dev"); len(ev) != 1 || ev[0].ActorName != "alice" || ev[0].UserID == 0 || ev[0].UserAgent == "" {
		t.Errorf("stack:create = %+v", ev)
	}

	// No secret value anywhere in the log, nor in any export.
	for i := range evs {
		for _, field := range alStrings(&evs[i]) {
			for _, s := range secrets {
				if s != "" && strings.Contains(field, s) {
					t.Fatalf("event seq %d (%s) contains a secret value %q in %q", evs[i].Seq, evs[i].Action, s, field)
				}
			}
		}
	}
	for _, format := range []string{"csv", "cef", "json", "ocsf"} {
		var b []byte
		must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=" + format}, &b))
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Fatalf("%s export contains a secret value %q", format, s)
			}
		}
	}
	// The log verifies.
	if r, _, err := app.VerifyAudit(context.Background(), e.srv.Store, nil); err != nil || !r.OK {
		t.Fatalf("verify: %s %v", r, err)
	}
}

func alOrgID(t *testing.T, e *env, name string) int64 {
	t.Helper()
	var id int64
	must(t, e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(name)
		if err == nil {
			id = o.ID
		}
		return err
	}))
	return id
}

// alAppend appends n synthetic events of the organization (at the store's clock).
func alAppend(t *testing.T, e *env, orgID int64, org string, n int, action, actor string) {
	t.Helper()
	must(t, e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		for i := 0; i < n; i++ {
			ev := gatehouse.AuditEvent{OrgID: orgID, OrgName: org, ActorKind: "user", ActorName: actor, Action: action,
				Target: org + "/proj/s" + strconv.Itoa(i), Outcome: gatehouse.OutcomeSuccess, SourceIP: "10.1.2.3"}
			if err := tx.AppendAudit(&ev); err != nil {
				return err
			}
		}
		return nil
	}))
}

type alPage struct {
	AuditLogEvents []struct {
		Timestamp   int64  `json:"timestamp"`
		Event       string `json:"event"`
		Description string `json:"description"`
		SourceIP    string `json:"sourceIP"`
		User        struct {
			Name string `json:"name"`
		} `json:"user"`
		Seq     int64  `json:"seq"`
		ID      string `json:"id"`
		Outcome string `json:"outcome"`
		Target  string `json:"target"`
		Hash    string `json:"hash"`
	} `json:"auditLogEvents"`
	ContinuationToken *string `json:"continuationToken"`
}

// alPages follows continuation tokens and returns the seqs of every page.
func alPages(t *testing.T, c *cliwire.Client, path string, q url.Values) [][]int64 {
	t.Helper()
	var pages [][]int64
	for range 100 {
		var pg alPage
		must(t, c.Do(cliwire.Call{Method: "GET", Path: path + "?" + q.Encode()}, &pg))
		var seqs []int64
		for _, ev := range pg.AuditLogEvents {
			seqs = append(seqs, ev.Seq)
		}
		pages = append(pages, seqs)
		if pg.ContinuationToken == nil {
			return pages
		}
		q.Set("continuationToken", *pg.ContinuationToken)
	}
	t.Fatal("more than 100 pages")
	return nil
}

func alFlatten(pages [][]int64) []int64 {
	var out []int64
	for _, p := range pages {
		out = append(out, p...)
	}
	return out
}

// TestAuditLogQuery: Pulumi Cloud's v1 and v2 listings, their filters and continuation
// tokens, tenancy, and who may read.
func TestAuditLogQuery(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	acme := alOrgID(t, e, "acme")
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	globex := alOrgID(t, e, "globex")
	t0 := e.clock.Now()
	alAppend(t, e, acme, "acme", 120, "stack:update", "alice")
	alAppend(t, e, globex, "globex", 30, "stack:update", "alice")
	e.clock.Advance(time.Hour)
	t1 := e.clock.Now()
	alAppend(t, e, acme, "acme", 90, "stack:update", "bob")
	alAppend(t, e, acme, "acme", 15, "stack:delete", "bob")
	e.clock.Advance(time.Hour)

	var acmeSeqs []int64 // newest first
	for _, ev := range alAll(t, e) {
		if ev.OrgID == acme {
			acmeSeqs = append([]int64{ev.Seq}, acmeSeqs...)
		}
	}

	// v2: every acme event, newest first, in pages of 100, nothing of globex.
	pages := alPages(t, a, "/api/orgs/acme/auditlogs/v2", url.Values{})
	if len(pages) != (len(acmeSeqs)+99)/100 || len(pages[0]) != 100 {
		t.Fatalf("v2 pages: %d (first %d) for %d events", len(pages), len(pages[0]), len(acmeSeqs))
	}
	if got := alFlatten(pages); !reflect.DeepEqual(got, acmeSeqs) {
		t.Fatalf("v2 listing = %v\nwant %v", got, acmeSeqs)
	}
	// pageSize, and filters: event, user, time range.
	pages = alPages(t, a, "/api/orgs/acme/auditlogs/v2", url.Values{"pageSize": {"7"}, "eventFilter": {"stack:delete"}})
	if n := len(alFlatten(pages)); n != 15 || len(pages) != 3 {
		t.Fatalf("eventFilter: %d events in %d pages", n, len(pages))
	}
	pages = alPages(t, a, "/api/orgs/acme/auditlogs/v2", url.Values{"userFilter": {"bob"}, "pageSize": {"1000"}})
	if n := len(alFlatten(pages)); n != 105 {
		t.Fatalf("userFilter bob: %d events", n)
	}
	pages = alPages(t, a, "/api/orgs/acme/auditlogs/v2", url.Values{"startTime": {strconv.FormatInt(t1.Unix(), 10)}, "pageSize": {"1000"}})
	if n := len(alFlatten(pages)); n != 105 {
		t.Fatalf("v2 startTime (lower bound): %d events", n)
	}
	pages = alPages(t, a, "/api/orgs/acme/auditlogs/v2", url.Values{"startTime": {strconv.FormatInt(t0.Unix(), 10)}, "endTime": {strconv.FormatInt(t1.Unix(), 10)}, "pageSize": {"50"}})
	got := alFlatten(pages)
	if len(got) < 120 || len(got) > 125 { // the bootstrap's own events share t0's second
		t.Fatalf("v2 [startTime, endTime): %d events", len(got))
	}

	// v1: startTime or a continuation token is required; startTime means older than.
	wantStatus(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs"}, nil), 400)
	pages = alPages(t, a, "/api/orgs/acme/auditlogs", url.Values{"startTime": {strconv.FormatInt(e.clock.Now().Unix()+1, 10)}})
	if got := alFlatten(pages); !reflect.DeepEqual(got, acmeSeqs) {
		t.Fatalf("v1 listing has %d events, want %d", len(got), len(acmeSeqs))
	}
	pages = alPages(t, a, "/api/orgs/acme/auditlogs", url.Values{"startTime": {strconv.FormatInt(t1.Unix(), 10)}, "userFilter": {"alice"}})
	if n := len(alFlatten(pages)); n != 120 {
		t.Fatalf("v1 older than t1 by alice: %d events", n)
	}
	// A page's shape: Pulumi's fields and ours.
	var pg alPage
	must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?pageSize=1"}, &pg))
	ev := pg.AuditLogEvents[0]
	if ev.Event != "stack:delete" || ev.User.Name != "bob" || ev.SourceIP != "10.1.2.3" || ev.Outcome != "success" || ev.Timestamp == 0 ||
		!strings.Contains(ev.Description, `user "bob" performed stack:delete`) || len(ev.Hash) != 64 || ev.ID == "" || pg.ContinuationToken == nil {
		t.Fatalf("event = %+v", pg)
	}

	// Bad parameters are 400.
	for _, q := range []string{"continuationToken=bogus", "pageSize=0", "pageSize=1001", "startTime=yesterday",
		"eventFilter=" + url.QueryEscape("a\x00b"), "startTime=200&endTime=100"} {
		wantStatus(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2?" + q}, nil), 400)
	}
	// Only organization admins read the log; strangers do not learn the organization exists.
	bob, _ := alCreateUser(t, e, "bob", "member")
	wantStatus(t, bob.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2"}, nil), 403)
	wantStatus(t, bob.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export"}, nil), 403)
	wantStatus(t, bob.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/globex/auditlogs/v2"}, nil), 404)
	wantStatus(t, bob.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, nil), 403)
	// ...and the denials are in the log.
	denied := 0
	for _, ev := range alAll(t, e) {
		if ev.Action == "org:audit:read" && ev.Outcome == "denied" && ev.ActorName == "bob" && ev.Reason != "" {
			denied++
		}
	}
	if denied != 3 { // two refused, one hidden
		t.Fatalf("%d denied audit reads recorded, want 3", denied)
	}
}

// TestAuditLogExport: the export formats parse (CEF with audit.ParseCEF, CSV with
// encoding/csv, JSON Lines with audit.ReadJSONL, hash-exact), hold only the organization's
// events in log order, and the export itself is recorded.
func TestAuditLogExport(t *testing.T) {
	e := newEnv(t)
	a := e.admin
	acme := alOrgID(t, e, "acme")
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	globex := alOrgID(t, e, "globex")
	alAppend(t, e, acme, "acme", 1500, "stack:update", "alice") // more than one export page
	alAppend(t, e, globex, "globex", 10, "stack:update", "alice")
	// Values that need escaping in every format.
	must(t, e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		ev := gatehouse.AuditEvent{OrgID: acme, OrgName: "acme", ActorKind: "user", ActorName: "eve|=\\", Action: "stack:update",
			Target: "acme/proj/x", Outcome: gatehouse.OutcomeDenied, Reason: "line1\nline2 = a|b \\ c, \"q\"", SourceIP: "10.0.0.9",
			Details: map[string]string{"k": "=SUM(A1)"}}
		return tx.AppendAudit(&ev)
	}))
	want := 0
	for _, ev := range alAll(t, e) {
		if ev.OrgID == acme {
			want++
		}
	}
	want++ // each export records itself before it streams

	var b []byte
	must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=cef"}, &b))
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != want {
		t.Fatalf("CEF export has %d lines, want %d", len(lines), want)
	}
	var lastSeq int64
	for i, l := range lines {
		hdr, ext, err := audit.ParseCEF(l)
		if err != nil {
			t.Fatalf("CEF line %d: %v\n%s", i, err, l)
		}
		seq, _ := strconv.ParseInt(ext["cn1"], 10, 64)
		if seq <= lastSeq || ext["cs4"] != "acme" || hdr[1] != "Gatehouse" {
			t.Fatalf("CEF line %d: seq %d after %d, org %q", i, seq, lastSeq, ext["cs4"])
		}
		lastSeq = seq
		if ext["suser"] == "eve|=\\" && (ext["reason"] != "line1\nline2 = a|b \\ c, \"q\"" || hdr[6] != "7") {
			t.Fatalf("CEF escaping: %q %v", l, ext)
		}
	}

	// v1 export with the same events in CSV.
	must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/export?format=csv"}, &b))
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	must(t, err)
	if !reflect.DeepEqual(recs[0], audit.CSVHeader) || len(recs) != want+2 { // header, and the first export's event too
		t.Fatalf("CSV: %d records, header %v", len(recs), recs[0])
	}
	for _, r := range recs[1:] {
		if r[1] == "eve|=\\" && (r[9] != "denied" || r[8] != "true") {
			t.Fatalf("CSV row = %v", r)
		}
	}

	// JSON Lines: every field, hash-exact.
	must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=json&eventFilter=stack:update&userFilter=alice"}, &b))
	n := 0
	for ev, err := range audit.ReadJSONL(bytes.NewReader(b)) {
		must(t, err)
		if ev.OrgID != acme || ev.Action != "stack:update" || ev.ActorName != "alice" || !bytes.Equal(audit.Hash(ev.PrevHash, &ev), ev.Hash) {
			t.Fatalf("JSONL event = %+v", ev)
		}
		n++
	}
	if n != 1500 {
		t.Fatalf("filtered JSONL export has %d events", n)
	}
	// OCSF: one JSON object per line.
	must(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=ocsf&pageSize=1"}, &b))
	if c := bytes.Count(b, []byte("\n")); c != want+3 || !bytes.Contains(b, []byte(`"class_uid":6003`)) {
		t.Fatalf("OCSF export: %d lines", c)
	}
	wantStatus(t, a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=xml"}, nil), 400)

	// The exports are in the log, with their format.
	var exports []string
	for _, ev := range alAll(t, e) {
		if ev.Action == "org:audit:read" && ev.Outcome == "success" {
			exports = append(exports, ev.Details["export"])
		}
	}
	if !reflect.DeepEqual(exports, []string{"cef", "csv", "json", "ocsf"}) {
		t.Fatalf("recorded exports = %v", exports)
	}

	// Raw HTTP: gzip always, a file name, streamed.
	req, _ := http.NewRequest("GET", e.url+"/api/orgs/acme/auditlogs/v2/export?format=csv", nil)
	req.Header.Set("Authorization", "token "+a.Token)
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Content-Disposition"), "auditlogs-acme.csv") {
		t.Fatalf("export response: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestAuditVerifyEndpoint: the site administrator's verification of the whole log, with
// the server's checkpoint key, before and after tampering.
func TestAuditVerifyEndpoint(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alAppend(t, e, alOrgID(t, e, "acme"), "acme", 20, "stack:update", "alice")
	signer, err := app.LoadAuditSigner("", t.TempDir())
	must(t, err)
	cp, err := app.Checkpoint(ctx, e.srv.Store, signer, gatehouse.CheckpointPeriodic, "test")
	must(t, err)
	type report struct {
		OK                bool   `json:"ok"`
		Checked           int64  `json:"checked"`
		Checkpoints       int    `json:"checkpoints"`
		StoredCheckpoints int    `json:"storedCheckpoints"`
		Seq               int64  `json:"seq"`
		ID                string `json:"id"`
		Problem           string `json:"problem"`
		Summary           string `json:"summary"`
		KeyID             string `json:"keyId"`
	}
	// Without the key the server cannot check checkpoints: it says so.
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, nil), 503)
	e.srv.API.SetAuditPublicKey(signer.Public())
	var r report
	must(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, &r))
	if !r.OK || r.Checked < cp.Seq || r.Checkpoints != 1 || r.StoredCheckpoints != 1 || r.KeyID != signer.KeyID() {
		t.Fatalf("verify = %+v", r)
	}
	db := e.srv.Store.(*sqlstore.DB)
	var id string
	must(t, db.Writer().QueryRow(`SELECT id FROM audit_events WHERE seq = 9`).Scan(&id))
	if _, err := db.Writer().Exec(`UPDATE audit_events SET actor_name = 'mallory' WHERE seq = 9`); err != nil {
		t.Fatal(err)
	}
	must(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, &r))
	if r.OK || r.Seq != 9 || r.ID != id || r.Problem != audit.ProblemHashMismatch || !strings.Contains(r.Summary, "FAILED at seq 9") {
		t.Fatalf("verify after tampering = %+v", r)
	}
}

// TestAuditVerifyEndpointTruncatedHead: the API reports what `gatehouse audit verify` does:
// events removed up to a periodic checkpoint are a truncated head, and the newest
// checkpoint and its age are in the answer.
func TestAuditVerifyEndpointTruncatedHead(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	alAppend(t, e, alOrgID(t, e, "acme"), "acme", 10, "stack:update", "alice")
	signer, err := app.LoadAuditSigner("", t.TempDir())
	must(t, err)
	cp, err := app.Checkpoint(ctx, e.srv.Store, signer, gatehouse.CheckpointPeriodic, "test")
	must(t, err)
	alAppend(t, e, alOrgID(t, e, "acme"), "acme", 3, "stack:update", "alice")
	e.srv.API.SetAuditPublicKey(signer.Public())
	type report struct {
		OK               bool   `json:"ok"`
		Seq              int64  `json:"seq"`
		Problem          string `json:"problem"`
		Chained          int    `json:"chainedCheckpoints"`
		NewestCheckpoint *struct {
			Seq   int64  `json:"seq"`
			Kind  string `json:"kind"`
			Index int64  `json:"index"`
		} `json:"newestCheckpoint"`
		Age     float64 `json:"newestCheckpointAgeSeconds"`
		Warning string  `json:"warning"`
	}
	var r report
	must(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, &r))
	if !r.OK || r.Chained != 1 || r.NewestCheckpoint == nil || r.NewestCheckpoint.Seq != cp.Seq ||
		r.NewestCheckpoint.Kind != gatehouse.CheckpointPeriodic || r.NewestCheckpoint.Index != 1 || r.Age < 0 || r.Warning != "" {
		t.Fatalf("verify = %+v", r)
	}
	// Eleven minutes later with a 5-minute period, the newest checkpoint is stale: events
	// after it are not covered.
	e.srv.API.SetAuditCheckpointPeriod(5 * time.Minute)
	e.clock.Advance(11 * time.Minute)
	r = report{}
	must(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, &r))
	if !r.OK || !strings.Contains(r.Warning, "more than twice the checkpoint period") {
		t.Fatalf("stale checkpoint: %+v", r)
	}
	db := e.srv.Store.(*sqlstore.DB)
	if _, err := db.Writer().Exec(`DELETE FROM audit_events WHERE seq <= ?`, cp.Seq); err != nil {
		t.Fatal(err)
	}
	r = report{}
	must(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/admin/auditlogs/verify"}, &r))
	if r.OK || r.Problem != audit.ProblemTruncatedHead || r.Seq != cp.Seq+1 {
		t.Fatalf("verify after removing the head = %+v", r)
	}
}
