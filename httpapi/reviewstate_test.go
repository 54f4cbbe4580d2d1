package httpapi_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestForeignSecretsProviderRefused (found in review): a state written to stack A that names
// stack B's service secrets manager is refused, on every path a state is written by (create
// with state, import, full, verbatim and delta checkpoints, journal entries). Before, a
// writer of A who may not decrypt B stored B's ciphertexts in A under B's provider: the
// next person who may decrypt B and ran the CLI on A had it decrypt them through B and
// store them under A's key, for A's writer to decrypt. A state under A's own provider
// (what the stock CLI writes) is still taken.
func TestForeignSecretsProviderRefused(t *testing.T) {
	e := newEnv(t)
	e.must(e.createStack(e.admin, "acme", "proj", "a", nil))
	e.must(e.createStack(e.admin, "acme", "proj", "b", nil))
	pa, pb := stackPath("acme", "proj", "a"), stackPath("acme", "proj", "b")
	var enc apitype.EncryptValueResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pb + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(`"hunter2"`)}}, &enc))
	provider := func(owner, project, stack string) string {
		b, _ := json.Marshal(map[string]any{"type": "service", "state": map[string]any{"url": e.url, "owner": owner, "project": project, "stack": stack}})
		return string(b)
	}
	providerOf := func(sp string) *apitype.SecretsProvidersV1 {
		var v apitype.SecretsProvidersV1
		e.must(json.Unmarshal([]byte(sp), &v))
		return &v
	}
	withSecret := func(sp string) json.RawMessage {
		b, _ := json.Marshal(map[string]any{
			"manifest":          map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "", "version": "v3.260.0"},
			"secrets_providers": json.RawMessage(sp),
			"resources": []map[string]any{{
				"urn": "urn:pulumi:a::proj::pulumi:pulumi:Stack::proj-a", "custom": false, "type": "pulumi:pulumi:Stack",
				"outputs": map[string]any{"password": map[string]any{"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
					"ciphertext": base64.StdEncoding.EncodeToString(enc.Ciphertext)}},
			}},
		})
		return b
	}
	foreign := []string{
		provider("acme", "proj", "b"),
		provider("ACME", "proj", "b"),
		provider("acme", "other", "a"),
		provider("other-org", "proj", "a"),
	}
	for _, sp := range foreign {
		dep := withSecret(sp)
		ce := wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: pa + "/import", Gzip: true, Body: apitype.UntypedDeployment{Version: 3, Deployment: dep}}, nil), 400)
		if ce != nil && !strings.Contains(ce.Message, "secrets_providers") {
			t.Errorf("import refused for another reason: %s", ce.Message)
		}
		wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: apitype.CreateStackRequest{StackName: "c",
			State: &apitype.UntypedDeployment{Version: 3, Deployment: dep}}}, nil), 400)

		up, err := e.startRun(e.admin, pa, "update", false)
		e.must(err)
		wantStatus(t, up.checkpoint(dep), 400)
		doc, _ := json.Marshal(apitype.UntypedDeployment{Version: 3, Deployment: dep})
		wantStatus(t, up.lease("PATCH", "/checkpointverbatim", apitype.PatchUpdateVerbatimCheckpointRequest{Version: 3, UntypedDeployment: doc, SequenceNumber: 1}, nil), 400)
		e.must(up.complete("failed"))
	}

	// A delta that turns this stack's own provider into another's.
	own := withSecret(provider("acme", "proj", "a"))
	up, err := e.startRun(e.admin, pa, "update", false)
	e.must(err)
	doc, _ := json.Marshal(apitype.UntypedDeployment{Version: 3, Deployment: own})
	e.must(up.lease("PATCH", "/checkpointverbatim", apitype.PatchUpdateVerbatimCheckpointRequest{Version: 3, UntypedDeployment: doc, SequenceNumber: 1}, nil))
	// The delta replaces `"stack":"a"` of the provider state with `"stack":"b"`.
	at := strings.Index(string(doc), `"stack":"a"`)
	if at < 0 {
		t.Fatalf("no provider stack in %s", doc)
	}
	end := at + len(`"stack":"a"`)
	after := string(doc[:at]) + `"stack":"b"` + string(doc[end:])
	sum := sha256.Sum256([]byte(after))
	delta, _ := json.Marshal([]map[string]any{{"Span": map[string]any{"uri": "", "start": map[string]any{"line": 1, "column": 1, "offset": at},
		"end": map[string]any{"line": 1, "column": 1, "offset": end}}, "NewText": `"stack":"b"`}})
	ce := wantStatus(t, up.lease("PATCH", "/checkpointdelta", apitype.PatchUpdateCheckpointDeltaRequest{Version: 3, CheckpointHash: hex.EncodeToString(sum[:]), SequenceNumber: 2, DeploymentDelta: delta}, nil), 400)
	if ce != nil && !strings.Contains(ce.Message, "secrets_providers") {
		t.Errorf("delta refused for another reason: %s", ce.Message)
	}
	e.must(up.complete("failed"))

	// Journal entries that set another stack's provider.
	var cr apitype.UpdateProgramResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pa + "/destroy", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	var sr apitype.StartUpdateResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pa + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
	if sr.JournalVersion != 1 {
		t.Fatalf("destroy got journalVersion %d", sr.JournalVersion)
	}
	d := &run{e: e, c: e.admin, path: pa, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}
	ce = wantStatus(t, d.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{
		{Version: 1, Kind: apitype.JournalEntryKindSecretsManager, SequenceID: 1, SecretsProvider: providerOf(provider("acme", "proj", "b"))}}}, nil), 400)
	if ce != nil && !strings.Contains(ce.Message, "secrets_providers") {
		t.Errorf("journal entry refused for another reason: %s", ce.Message)
	}
	e.must(d.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{
		{Version: 1, Kind: apitype.JournalEntryKindSecretsManager, SequenceID: 1, SecretsProvider: providerOf(provider("acme", "proj", "a"))}}}, nil))
	e.must(d.complete("succeeded"))

	// This stack's own provider (what the CLI writes) is taken.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pa + "/import", Gzip: true, Body: apitype.UntypedDeployment{Version: 3, Deployment: own}}, &apitype.ImportStackResponse{}))
	up, err = e.startRun(e.admin, pa, "update", false)
	e.must(err)
	e.must(up.checkpoint(own))
	e.must(up.complete("succeeded"))
}

// TestMalformedBodyNotEchoedToAudit (found in review): a body the decoder refuses is not
// quoted into the error, and so not into the failure's audit event (a malformed /encrypt
// carries the plaintext to encrypt); and a failure's audit reason is bounded, whatever the
// size of what its message names (a tag name of a state-sized body).
func TestMalformedBodyNotEchoedToAudit(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	const secret = "c3VwZXJzZWNyZXRwYXNzd29yZA=="
	for _, body := range []string{
		`{"plaintext":"` + secret + `" "x"}`,
		`{"plaintext":"` + secret + `", x}`,
		`{"plaintext":["` + secret + `"]}`,
		`{"plaintext":12345678901234567890123456789` + secret + `}`,
	} {
		ce := wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/encrypt", Body: []byte(body)}, nil), 400)
		if strings.Contains(string(ce.Body), secret[:12]) {
			t.Errorf("the error body quotes the request: %s", ce.Body)
		}
	}
	huge := strings.Repeat("k", 200<<10)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PATCH", Path: p + "/tags", Body: map[string]string{huge: "v"}}, nil), 400)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/tags", Body: map[string]string{"name": huge, "value": "v"}}, nil), 400)
	evs, err := listAudit(e)
	e.must(err)
	for _, ev := range evs {
		if strings.Contains(ev.Reason, secret[:12]) {
			t.Errorf("audit event %s (%s) quotes the request body: %s", ev.ID, ev.Action, ev.Reason)
		}
		if len(ev.Reason) > 4096 {
			t.Errorf("audit event %s (%s) has a reason of %d bytes", ev.ID, ev.Action, len(ev.Reason))
		}
		for k, v := range ev.Details {
			if len(v) > 4096 {
				t.Errorf("audit event %s (%s) has a detail %s of %d bytes", ev.ID, ev.Action, k, len(v))
			}
		}
	}
}

// TestRenameIntoProjectNeedsCreate (found in review): moving a stack into another project
// is making a stack there. A stack admin who may not create stacks in project prod (no
// write grant on it, members may not create stacks) could rename their stack into it; now
// 403 (recorded as denied), while a rename within the project, or into a project the
// caller may create stacks in, still works.
func TestRenameIntoProjectNeedsCreate(t *testing.T) {
	e := newEnv(t)
	dev := cliwire.New(e.url, e.newPerson("dev", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setMembersCanCreateStacks": false}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"project": "web", "permission": "admin"}}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"project": "sandbox", "permission": "write"}}}, nil))
	e.must(e.createStack(dev, "acme", "web", "app", nil))
	p := stackPath("acme", "web", "app")

	ce := wantStatus(t, dev.Do(cliwire.Call{Method: "POST", Path: p + "/rename", Body: apitype.StackRenameRequest{NewName: "app", NewProject: "prod"}}, nil), 403)
	if ce != nil && !strings.Contains(ce.Message, "create stacks") {
		t.Errorf("unclear refusal: %s", ce.Message)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "prod", "app")}, nil), 404)
	evs, err := listAudit(e)
	e.must(err)
	denied := false
	for _, ev := range evs {
		denied = denied || ev.Outcome == "denied" && ev.Action == "stack:create" && ev.ActorName == "dev" && ev.Target == "acme/web/app"
	}
	if !denied {
		t.Error("the refused rename is not audited as denied")
	}

	e.must(dev.Do(cliwire.Call{Method: "POST", Path: p + "/rename", Body: apitype.StackRenameRequest{NewName: "app2"}}, nil))
	e.must(dev.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "web", "app2") + "/rename", Body: apitype.StackRenameRequest{NewName: "app2", NewProject: "sandbox"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "sandbox", "app2")}, nil))

	// Moving a stack (and its state) under a protection rule of the new project is an
	// import into a protected stack: people may not, even an organization admin.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"project": "prod"}}, nil))
	ce = wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "sandbox", "app2") + "/rename", Body: apitype.StackRenameRequest{NewName: "app2", NewProject: "prod"}}, nil), 403)
	if ce != nil && !strings.Contains(ce.Message, "protected") {
		t.Errorf("unclear refusal: %s", ce.Message)
	}
}

// TestLeaseEndsWithItsStarter (found in review): an update's lease was renewed for as long
// as its holder asked, whatever happened to the credential that started it: a stolen token,
// revoked mid-update, kept writing the stack's state through the lease. Now the lease is
// renewed only while the starting credential may still run the update: a revoked personal
// token, a revoked team token and a lost grant each end it (403, the CLI's "lease
// expired"); while nothing changed, renewal works.
func TestLeaseEndsWithItsStarter(t *testing.T) {
	e := newEnv(t)
	dev := cliwire.New(e.url, e.newPerson("dev", "member"))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"project": "web", "permission": "write"}}}, nil))
	renew := func(r *run) error {
		return r.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, nil)
	}
	for _, stack := range []string{"a", "b", "c", "d", "e"} {
		e.must(e.createStack(e.admin, "acme", "web", stack, nil))
	}

	// A personal token revoked mid-update.
	var laptop struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(dev.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]string{"name": "laptop"}}, &laptop))
	up, err := e.startRun(cliwire.New(e.url, laptop.TokenValue), stackPath("acme", "web", "a"), "update", false)
	e.must(err)
	e.must(renew(up))
	e.must(dev.Do(cliwire.Call{Method: "DELETE", Path: "/api/user/tokens/" + laptop.ID}, nil))
	wantStatus(t, renew(up), 403)

	// A team token revoked mid-update.
	var ci struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/devs/tokens", Body: map[string]string{"name": "ci"}}, &ci))
	up, err = e.startRun(cliwire.New(e.url, ci.TokenValue), stackPath("acme", "web", "b"), "update", false)
	e.must(err)
	e.must(renew(up))
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/teams/devs/tokens/" + ci.ID}, nil))
	wantStatus(t, renew(up), 403)

	// The grant that allowed the update removed mid-update; a preview of a stack the
	// person may still read keeps its lease.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"stack": "web/d", "permission": "read"}}}, nil))
	up, err = e.startRun(dev, stackPath("acme", "web", "c"), "update", false)
	e.must(err)
	pv, err := e.startRun(dev, stackPath("acme", "web", "d"), "preview", true)
	e.must(err)
	e.must(renew(up))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"removeGrant": map[string]any{"project": "web"}}}, nil))
	wantStatus(t, renew(up), 403)
	e.must(renew(pv))
	e.must(pv.complete("succeeded"))

	// A token that merely expires (a short-lived one) does not end the update it started.
	var short struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "short", "expires": e.clock.Now().Add(time.Minute).Unix()}}, &short))
	up, err = e.startRun(cliwire.New(e.url, short.TokenValue), stackPath("acme", "web", "e"), "update", false)
	e.must(err)
	e.clock.Advance(2 * time.Minute)
	e.must(renew(up))
	e.must(up.complete("succeeded"))
}

// TestCreateWithStateIsAnImport (found in review): creating a stack with a state imports
// that state, which on a protected stack only pipelines may do. A person created a stack
// in a protected project with a state of their own; now 403 (audited as denied), while a
// stack there without a state, and one with a state outside the protection, are created.
func TestCreateWithStateIsAnImport(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"project": "prod"}}, nil))
	sp := func(project, stack string) string {
		b, _ := json.Marshal(map[string]any{"type": "service", "state": map[string]any{"url": e.url, "owner": "acme", "project": project, "stack": stack}})
		return string(b)
	}
	create := func(project, stack string, dep json.RawMessage) error {
		req := apitype.CreateStackRequest{StackName: stack}
		if dep != nil {
			req.State = &apitype.UntypedDeployment{Version: 3, Deployment: dep}
		}
		return e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/" + project, Body: req}, nil)
	}
	ce := wantStatus(t, create("prod", "seeded", deployment(2, sp("prod", "seeded"))), 403)
	if ce != nil && !strings.Contains(ce.Message, "protected") {
		t.Errorf("unclear refusal: %s", ce.Message)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "prod", "seeded")}, nil), 404)
	e.must(create("prod", "empty", nil))
	e.must(create("dev", "seeded", deployment(2, sp("dev", "seeded"))))
	evs, err := listAudit(e)
	e.must(err)
	denied := false
	for _, ev := range evs {
		denied = denied || ev.Outcome == "denied" && ev.Action == "stack:import" && strings.HasSuffix(ev.Target, "prod/seeded")
	}
	if !denied {
		t.Error("the refused creation is not audited as denied")
	}
}

// TestBatchCallsBounded (found in review): a call of engine events or journal entries takes
// a bounded number of elements (413 beyond it, which the CLI answers for journal entries by
// splitting the batch). Before, a reader's preview lease could post a body of tens of
// millions of tiny events, each decoded into several times its size in memory.
func TestBatchCallsBounded(t *testing.T) {
	e := newEnv(t)
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	p := stackPath("acme", "proj", "dev")
	events := func(n int, key string) json.RawMessage {
		var b strings.Builder
		b.WriteString(`{"` + key + `":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"sequence":` + itoa(i) + `,"timestamp":1,"stdoutEvent":{"message":"a, [b] {c}","color":"never"}}`)
		}
		b.WriteString(`]}`)
		return json.RawMessage(b.String())
	}
	pv, err := e.startRun(e.admin, p, "preview", true)
	e.must(err)
	e.must(pv.lease("POST", "/events/batch", events(1000, "events"), nil))
	wantStatus(t, pv.lease("POST", "/events/batch", events(1001, "events"), nil), 413)
	wantStatus(t, pv.lease("POST", "/events/batch", events(1001, "Events"), nil), 413)
	e.must(pv.complete("succeeded"))

	var cr apitype.UpdateProgramResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/destroy", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	var sr apitype.StartUpdateResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
	d := &run{e: e, c: e.admin, path: p, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}
	entries := func(n int) json.RawMessage {
		var b strings.Builder
		b.WriteString(`{"entries":[`)
		for i := 0; i < n; i++ {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(`{"version":1,"kind":6,"sequenceID":` + itoa(i+1) + `}`)
		}
		b.WriteString(`]}`)
		return json.RawMessage(b.String())
	}
	wantStatus(t, d.lease("PATCH", "/journalentries", entries(10001), nil), 413)
	e.must(d.lease("PATCH", "/journalentries", entries(100), nil))
	e.must(d.complete("succeeded"))
}

// TestSecretBatchesBounded (found in review): batch encryption and decryption, which any
// reader of the stack may call, take at most 100,000 values per call (413 beyond): a body
// of empty plaintexts (3 bytes each) became ciphertexts of 29 bytes and two slices each.
func TestSecretBatchesBounded(t *testing.T) {
	e := newEnv(t)
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	p := stackPath("acme", "proj", "dev")
	body := func(key, elem string, n int) json.RawMessage {
		return json.RawMessage(`{"` + key + `":[` + strings.TrimSuffix(strings.Repeat(elem+",", n), ",") + `]}`)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-encrypt", Gzip: true, Body: body("plaintexts", `""`, 100001)}, nil), 413)
	var enc apitype.BatchEncryptResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-encrypt", Gzip: true, Body: body("plaintexts", `"eA=="`, 1000)}, &enc))
	if len(enc.Ciphertexts) != 1000 {
		t.Fatalf("%d ciphertexts", len(enc.Ciphertexts))
	}
	ct := `"` + base64.StdEncoding.EncodeToString(enc.Ciphertexts[0]) + `"`
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-decrypt", Gzip: true, Body: body("ciphertexts", ct, 100001)}, nil), 413)
	var dec apitype.BatchDecryptResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-decrypt", Gzip: true, Body: body("ciphertexts", ct, 1000)}, &dec))
	if len(dec.Plaintexts) != 1 {
		t.Fatalf("%d plaintexts", len(dec.Plaintexts))
	}
}
