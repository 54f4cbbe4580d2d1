package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

func TestLoginAndIdentity(t *testing.T) {
	e := newEnv(t)
	var user struct {
		GitHubLogin   string `json:"githubLogin"`
		Organizations []struct {
			GitHubLogin string `json:"githubLogin"`
		} `json:"organizations"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, &user))
	if user.GitHubLogin != "alice" || len(user.Organizations) != 1 || user.Organizations[0].GitHubLogin != "acme" {
		t.Fatalf("GET /api/user = %+v", user)
	}
	var def struct {
		GitHubLogin string `json:"gitHubLogin"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/organizations/default"}, &def))
	if def.GitHubLogin != "acme" {
		t.Fatalf("default org = %q", def.GitHubLogin)
	}
	// Bad, missing and look-alike credentials are 401 with the JSON body the CLI reads.
	bad := cliwire.New(e.url, "gatehouse_pat_0000000000000000000000000000000000000A")
	wantStatus(t, bad.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user", NoAuth: true}, nil), 401)
	wantStatus(t, cliwire.New(e.url, "pul-75a564ac7f3a48079a0c448c1e1ec95c4cfed141").Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)

	var caps apitype.CapabilitiesResponse
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/capabilities"}, &caps))
	found := false
	for _, c := range caps.Capabilities {
		if c.Capability == apitype.BatchEncrypt {
			found = true
		}
	}
	if !found {
		t.Fatalf("capabilities lack batch-encrypt: %+v", caps)
	}
}

func TestStackCRUD(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.StackPageSize = 2 })
	e.must(e.createStack(e.admin, "acme", "proj", "dev", map[string]string{"env": "dev"}))
	wantStatus(t, e.createStack(e.admin, "acme", "proj", "dev", nil), 409)
	if err := e.createStack(e.admin, "acme", "proj", "dev", nil); !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("duplicate create: %v", err)
	}
	wantStatus(t, e.createStack(e.admin, "acme", "proj", "bad name!", nil), 400)
	wantStatus(t, e.createStack(e.admin, "acme", "proj", "x", map[string]string{"bad tag!": "v"}), 400)
	wantStatus(t, e.createStack(e.admin, "nosuchorg", "proj", "dev", nil), 404)

	var st apitype.Stack
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev")}, &st))
	if st.OrgName != "acme" || st.ProjectName != "proj" || string(st.StackName) != "dev" || st.Tags["env"] != "dev" || st.Config != nil {
		t.Fatalf("GET stack = %+v", st)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "nope")}, nil), 404)
	e.must(e.admin.Do(cliwire.Call{Method: "HEAD", Path: "/api/stacks/acme/proj"}, nil))
	if err := e.admin.Do(cliwire.Call{Method: "HEAD", Path: "/api/stacks/acme/other"}, nil); cliwire.Status(err) != 404 {
		t.Fatalf("HEAD of a missing project: %v", err) // HEAD answers carry no body
	}

	// Listing pages with a continuation token until it is absent, filtered by project and tag.
	for _, s := range []string{"a", "b", "c"} {
		e.must(e.createStack(e.admin, "acme", "proj2", s, map[string]string{"env": "prod"}))
	}
	var all []string
	cont := ""
	for i := 0; i < 10; i++ {
		var page apitype.ListStacksResponse
		path := "/api/user/stacks"
		if cont != "" {
			path += "?continuationToken=" + cont
		}
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: path}, &page))
		for _, s := range page.Stacks {
			all = append(all, s.ProjectName+"/"+s.StackName)
		}
		if page.ContinuationToken == nil {
			break
		}
		cont = *page.ContinuationToken
	}
	if len(all) != 4 {
		t.Fatalf("listed %v", all)
	}
	var byTag apitype.ListStacksResponse
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/stacks?tagName=env&tagValue=dev"}, &byTag))
	if len(byTag.Stacks) != 1 || byTag.Stacks[0].StackName != "dev" {
		t.Fatalf("tag filter: %+v", byTag)
	}
	var byProject apitype.ListStacksResponse
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/stacks?project=proj&organization=acme"}, &byProject))
	if len(byProject.Stacks) != 1 {
		t.Fatalf("project filter: %+v", byProject)
	}

	// Tags are replaced whole.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: stackPath("acme", "proj", "dev") + "/tags", Body: map[string]string{"team": "web"}}, nil))
	st = apitype.Stack{} // decode into a fresh value, as the CLI does (maps merge otherwise)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev")}, &st))
	if len(st.Tags) != 1 || st.Tags["team"] != "web" {
		t.Fatalf("tags after PATCH: %v", st.Tags)
	}

	// Rename, then the old name is gone and the new one answers.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "dev") + "/rename", Body: apitype.StackRenameRequest{NewName: "dev2", NewProject: "proj"}}, nil))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev")}, nil), 404)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev2")}, &st))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj2", "a") + "/rename", Body: apitype.StackRenameRequest{NewName: "b", NewProject: "proj2"}}, nil), 409)

	// Delete.
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: stackPath("acme", "proj", "dev2") + "?force=false"}, nil))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev2")}, nil), 404)
}

func TestUpdateLifecycle(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))

	// A never-updated stack exports an empty v3 deployment.
	var exp apitype.UntypedDeployment
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export"}, &exp))
	if exp.Version != 3 || len(exp.Deployment) == 0 {
		t.Fatalf("empty export = %+v", exp)
	}

	// pulumi up: a dry run of kind update first, then the real run.
	pre, err := e.startRun(e.admin, p, "update", true)
	e.must(err)
	if pre.Version != 0 {
		t.Fatalf("dry run version = %d, want 0", pre.Version)
	}
	e.must(pre.events(0, 1))
	e.must(pre.complete("succeeded"))

	up, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	if up.Version != 1 {
		t.Fatalf("update version = %d, want 1", up.Version)
	}
	var st apitype.Stack
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p}, &st))
	if st.ActiveUpdate != up.ID || st.CurrentOperation == nil {
		t.Fatalf("stack during update: %+v", st)
	}
	// Another update while this one holds the lease: 409.
	_, err = e.startRun(e.admin, p, "update", false)
	wantStatus(t, err, 409)

	for i := 1; i <= 5; i++ {
		e.must(up.checkpoint(deployment(i, "")))
	}
	// The CLI retries PATCH/POST calls: repeating them is harmless.
	e.must(up.checkpoint(deployment(5, "")))
	e.must(up.events(0, 1, 2))
	e.must(up.events(1, 2)) // duplicate batch
	summary := apitype.EngineEvent{Sequence: 3, SummaryEvent: &apitype.SummaryEvent{ResourceChanges: map[apitype.OpType]int{"create": 5}}}
	e.must(up.lease("POST", "/events/batch", apitype.EngineEventBatch{Events: []apitype.EngineEvent{summary}}, nil))
	var renewed apitype.RenewUpdateLeaseResponse
	e.must(up.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, &renewed))
	if renewed.Token == "" {
		t.Fatal("renew_lease returned an empty token")
	}
	up.Lease = renewed.Token
	e.must(up.complete("succeeded"))
	e.must(up.complete("succeeded")) // retried complete is idempotent
	// After complete the lease is dead for everything else.
	wantStatus(t, up.checkpoint(deployment(1, "")), 403)

	// Export returns exactly the last checkpoint.
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export"}, &exp))
	var dep apitype.DeploymentV3
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 5 {
		t.Fatalf("exported %d resources, want 5", len(dep.Resources))
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p}, &st))
	if st.ActiveUpdate != "" || st.Version != 1 {
		t.Fatalf("stack after update: %+v", st)
	}

	// History: the real run only, with its summary.
	var hist apitype.GetHistoryResponse
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/updates?pageSize=10&page=1"}, &hist))
	if len(hist.Updates) != 1 || hist.Updates[0].Version != 1 || hist.Updates[0].Result != apitype.SucceededResult ||
		hist.Updates[0].ResourceChanges["create"] != 5 || hist.Updates[0].Message != "test update" || hist.Updates[0].ResourceCount != 5 {
		t.Fatalf("history = %+v", hist)
	}
	var latest struct {
		Info apitype.UpdateInfo `json:"info"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/updates/latest"}, &latest))
	if latest.Info.Version != 1 || latest.Info.Config["proj:greeting"].String != "hi" {
		t.Fatalf("latest = %+v", latest)
	}

	// A second update (refresh), then export of version 1 still shows the first state.
	ref, err := e.startRun(e.admin, p, "refresh", false)
	e.must(err)
	e.must(ref.checkpoint(deployment(2, "")))
	e.must(ref.complete("succeeded"))
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export/1"}, &exp))
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 5 {
		t.Fatalf("export/1 has %d resources, want 5", len(dep.Resources))
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export/9"}, nil), 404)

	// Engine events can be read back.
	var evs struct {
		Events            []json.RawMessage `json:"events"`
		ContinuationToken *string           `json:"continuationToken"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/update/" + up.ID + "/events"}, &evs))
	if len(evs.Events) != 4 || evs.ContinuationToken != nil {
		t.Fatalf("events = %d, cont %v", len(evs.Events), evs.ContinuationToken)
	}

	// Non-force delete of a stack with resources: the exact message the CLI recognizes.
	err = e.admin.Do(cliwire.Call{Method: "DELETE", Path: p + "?force=false"}, nil)
	ce := wantStatus(t, err, 400)
	if ce.Message != "Bad Request: Stack still contains resources." {
		t.Fatalf("delete message = %q", ce.Message)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: p + "?force=true"}, nil))
}

func TestLeaseExpiryAndCancel(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	first, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.must(first.checkpoint(deployment(2, "")))

	// The CLI died: after the lease runs out a new update may take over...
	e.clock.Advance(6 * time.Minute)
	wantStatus(t, first.checkpoint(deployment(3, "")), 403) // the old lease is expired
	second, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	if second.Version != 2 {
		t.Fatalf("takeover version = %d", second.Version)
	}
	// ...and pulumi cancel ends it: its lease stops working at once.
	var st apitype.Stack
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p}, &st))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + st.ActiveUpdate + "/cancel"}, nil))
	wantStatus(t, second.checkpoint(deployment(1, "")), 403)
	wantStatus(t, second.lease("POST", "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, nil), 403)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p}, &st))
	if st.ActiveUpdate != "" {
		t.Fatalf("stack still locked after cancel: %+v", st)
	}
	third, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.must(third.complete("succeeded"))
	// The acknowledged checkpoint of the first update survives everything above.
	var exp apitype.UntypedDeployment
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export/1"}, &exp))
	var dep apitype.DeploymentV3
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 2 {
		t.Fatalf("version 1 has %d resources", len(dep.Resources))
	}
}

func TestLeaseTokensAreBound(t *testing.T) {
	e := newEnv(t)
	a, b := stackPath("acme", "proj", "a"), stackPath("acme", "proj", "b")
	e.must(e.createStack(e.admin, "acme", "proj", "a", nil))
	e.must(e.createStack(e.admin, "acme", "proj", "b", nil))
	ra, err := e.startRun(e.admin, a, "update", false)
	e.must(err)
	rb, err := e.startRun(e.admin, b, "update", false)
	e.must(err)
	// A's lease on B's update (by either path) is refused, as not found: a lease sees
	// only the stack of its own update (TestLeaseNoExistenceOracle).
	wrong := &run{e: e, c: e.admin, path: b, ID: rb.ID, Lease: ra.Lease}
	wantStatus(t, wrong.checkpoint(deployment(1, "")), 404)
	wrong = &run{e: e, c: e.admin, path: a, ID: rb.ID, Lease: ra.Lease}
	wantStatus(t, wrong.checkpoint(deployment(1, "")), 404)
	// A lease token is not an access token, and an access token is not a lease.
	wantStatus(t, cliwire.New(e.url, ra.Lease).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PATCH", Path: a + "/update/" + ra.ID + "/checkpoint", Body: map[string]any{"version": 3, "deployment": map[string]any{}}}, nil), 401)
	e.must(ra.complete("succeeded"))
	e.must(rb.complete("succeeded"))
}

func TestImportExport(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	doc := apitype.UntypedDeployment{Version: 3, Deployment: deployment(4, "")}
	var resp apitype.ImportStackResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: doc, Gzip: true}, &resp))
	if resp.UpdateID == "" {
		t.Fatal("no update id")
	}
	var res apitype.UpdateResults
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/update/" + resp.UpdateID}, &res))
	if res.Status != "succeeded" || res.ContinuationToken != nil {
		t.Fatalf("import poll = %+v", res)
	}
	var exp apitype.UntypedDeployment
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export"}, &exp))
	var dep apitype.DeploymentV3
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 4 {
		t.Fatalf("export after import: %d resources", len(dep.Resources))
	}
	var hist apitype.GetHistoryResponse
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/updates"}, &hist))
	if len(hist.Updates) != 1 || hist.Updates[0].Kind != "import" || hist.Updates[0].Version != 1 {
		t.Fatalf("history after import = %+v", hist)
	}
	// Bad documents are 400 and change nothing.
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: apitype.UntypedDeployment{Version: 0, Deployment: deployment(1, "")}, Gzip: true}, nil), 400)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: []byte(`{"version":3,"deployment":[1,2]}`), Gzip: true}, nil), 400)
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export"}, &exp))
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 4 {
		t.Fatal("a rejected import changed the state")
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func TestSecrets(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	var enc apitype.EncryptValueResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte("s3cret")}}, &enc))
	if bytes.Contains(enc.Ciphertext, []byte("s3cret")) || len(enc.Ciphertext) < 20 {
		t.Fatalf("ciphertext looks wrong: %q", enc.Ciphertext)
	}
	var dec apitype.DecryptValueResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, &dec))
	if string(dec.Plaintext) != "s3cret" {
		t.Fatalf("decrypt = %q", dec.Plaintext)
	}
	var benc apitype.BatchEncryptResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-encrypt", Gzip: true, Body: apitype.BatchEncryptRequest{Plaintexts: [][]byte{[]byte("a"), []byte("b"), []byte("")}}}, &benc))
	if len(benc.Ciphertexts) != 3 {
		t.Fatalf("batch-encrypt returned %d", len(benc.Ciphertexts))
	}
	var bdec apitype.BatchDecryptResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-decrypt", Gzip: true, Body: apitype.BatchDecryptRequest{Ciphertexts: benc.Ciphertexts}}, &bdec))
	for i, want := range []string{"a", "b", ""} {
		if got, ok := bdec.Plaintexts[b64(benc.Ciphertexts[i])]; !ok || string(got) != want {
			t.Fatalf("batch-decrypt[%d] = %q, %v", i, got, ok)
		}
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/batch-decrypt", Gzip: true, Body: apitype.BatchDecryptRequest{}}, &bdec))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/decrypt/log-decryption", Body: apitype.Log3rdPartyDecryptionEvent{SecretName: "proj:key"}}, nil))
	// Tampered ciphertext: 400, not 500.
	bad := append([]byte{}, enc.Ciphertext...)
	bad[len(bad)-1] ^= 1
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: bad}}, nil), 400)
	// Another stack's key does not open this stack's ciphertext.
	e.must(e.createStack(e.admin, "acme", "proj", "other", nil))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "other") + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, nil), 400)

	// Rename keeps the secrets readable, and points the checkpoint's provider at the new name.
	sp := `{"type":"service","state":{"url":"` + e.url + `","owner":"acme","project":"proj","stack":"dev"}}`
	up, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.must(up.checkpoint(deployment(1, sp)))
	e.must(up.complete("succeeded"))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/rename", Body: apitype.StackRenameRequest{NewName: "prod", NewProject: "proj"}}, nil))
	np := stackPath("acme", "proj", "prod")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: np + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, &dec))
	if string(dec.Plaintext) != "s3cret" {
		t.Fatalf("decrypt after rename = %q", dec.Plaintext)
	}
	var exp apitype.UntypedDeployment
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: np + "/export"}, &exp))
	if !strings.Contains(string(exp.Deployment), `"stack":"prod"`) {
		t.Fatalf("secrets provider not renamed: %s", exp.Deployment)
	}
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.MaxBodyBytes = 64 << 10 })
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	cases := []struct {
		name   string
		call   cliwire.Call
		status int
	}{
		{"malformed JSON", cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: []byte(`{"stackName":`)}, 400},
		{"wrong type", cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: []byte(`{"stackName":42}`)}, 400},
		{"trailing garbage", cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: []byte(`{"stackName":"x"} {}`)}, 400},
		{"empty body", cliwire.Call{Method: "POST", Path: "/api/stacks/acme/proj", Body: []byte(``)}, 400},
		{"unknown update", cliwire.Call{Method: "GET", Path: p + "/update/00000000-0000-0000-0000-000000000000"}, 404},
		{"unknown stack", cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "nope") + "/update", Body: apitype.UpdateProgramRequest{}}, 404},
		{"too large", cliwire.Call{Method: "POST", Path: p + "/import", Body: apitype.UntypedDeployment{Version: 3, Deployment: deployment(2000, "")}}, 413},
		{"too large gzip", cliwire.Call{Method: "POST", Path: p + "/import", Gzip: true, Body: apitype.UntypedDeployment{Version: 3, Deployment: deployment(2000, "")}}, 413},
		{"bad history page", cliwire.Call{Method: "GET", Path: p + "/updates?pageSize=x"}, 400},
		{"bad tags", cliwire.Call{Method: "PATCH", Path: p + "/tags", Body: []byte(`["a"]`)}, 400},
		{"bad continuation", cliwire.Call{Method: "GET", Path: "/api/user/stacks?continuationToken=zz"}, 400},
		{"no route", cliwire.Call{Method: "GET", Path: "/api/nope"}, 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wantStatus(t, e.admin.Do(c.call, nil), c.status)
		})
	}
	// A corrupt gzip stream.
	req, _ := http.NewRequest("POST", e.url+p+"/import", strings.NewReader("not gzip at all"))
	req.Header.Set("Authorization", "token "+e.admin.Token)
	req.Header.Set("Content-Encoding", "gzip")
	resp, err := http.DefaultClient.Do(req)
	e.must(err)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("corrupt gzip: %d", resp.StatusCode)
	}
	// A gzip bomb (tiny compressed, huge decompressed) is refused with 413.
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`{"version":3,"deployment":{"x":"`))
	zw.Write(bytes.Repeat([]byte("a"), 10<<20))
	zw.Write([]byte(`"}}`))
	zw.Close()
	err = e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/import", Body: buf.Bytes(), Header: http.Header{"Content-Encoding": {"gzip"}}}, nil)
	wantStatus(t, err, 413)
}

// TestConcurrentStarts: of many updates of one stack started at once, exactly one proceeds
// and every other gets 409.
func TestConcurrentStarts(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	const n = 8
	ids := make([]string, n)
	for i := range ids {
		var cr apitype.UpdateProgramResponse
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
		ids[i] = cr.UpdateID
	}
	errs := make(chan error, n)
	for _, id := range ids {
		go func(id string) {
			errs <- e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + id, Body: apitype.StartUpdateRequest{}}, nil)
		}(id)
	}
	won, conflicts := 0, 0
	for range ids {
		switch err := <-errs; cliwire.Status(err) {
		case 0:
			won++
		case 409:
			conflicts++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if won != 1 || conflicts != n-1 {
		t.Fatalf("%d started, %d conflicts; want 1 and %d", won, conflicts, n-1)
	}
}

// TestJournalAuto: by default journaling is offered to destroys (where it was measured to
// win) and not to other updates; a destroy's journal is replayed into its final state.
func TestJournalAuto(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	start := func(kind string) (*run, int64) {
		var cr apitype.UpdateProgramResponse
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/" + kind, Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
		var sr apitype.StartUpdateResponse
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
		return &run{e: e, c: e.admin, path: p, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}, sr.JournalVersion
	}
	up, jv := start("update")
	if jv != 0 {
		t.Fatalf("update got journalVersion %d, want 0", jv)
	}
	e.must(up.checkpoint(deployment(3, "")))
	e.must(up.complete("succeeded"))
	d, jv := start("destroy")
	if jv != 1 {
		t.Fatalf("destroy got journalVersion %d, want 1", jv)
	}
	// Delete the two components (base indexes 1 and 2), keep the stack resource.
	entries := []apitype.JournalEntry{}
	for i, idx := range []int64{1, 2} {
		idx := idx
		entries = append(entries,
			apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindBegin, SequenceID: int64(2*i + 1), OperationID: int64(i + 1)},
			apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindSuccess, SequenceID: int64(2*i + 2), OperationID: int64(i + 1), RemoveOld: &idx})
	}
	e.must(d.lease("PATCH", "/journalentries", map[string]any{"entries": entries}, nil))
	e.must(d.complete("succeeded"))
	var exp apitype.UntypedDeployment
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export"}, &exp))
	var dep apitype.DeploymentV3
	e.must(json.Unmarshal(exp.Deployment, &dep))
	if len(dep.Resources) != 1 || dep.Resources[0].Type != "pulumi:pulumi:Stack" {
		t.Fatalf("after the journaled destroy: %+v", dep.Resources)
	}
}

// TestJournalEntriesValidated: an entry that does not decode as a journal entry is refused
// when it arrives (400), not stored to make the update's complete fail later.
func TestJournalEntriesValidated(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	var cr apitype.UpdateProgramResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/destroy", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	var sr apitype.StartUpdateResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
	if sr.JournalVersion != 1 {
		t.Fatalf("destroy got journalVersion %d", sr.JournalVersion)
	}
	d := &run{e: e, c: e.admin, path: p, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}
	for _, bad := range []string{
		`{"entries":[{"sequenceID":1,"kind":"begin"}]}`,
		`{"entries":[{"sequenceID":1,"kind":1,"state":{"urn":5}}]}`,
		`{"entries":[{"sequenceID":"one","kind":1}]}`,
		`{"entries":[{"kind":1}]}`,
	} {
		wantStatus(t, d.lease("PATCH", "/journalentries", json.RawMessage(bad), nil), 400)
	}
	e.must(d.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{
		{Version: 1, Kind: apitype.JournalEntryKindSecretsManager, SequenceID: 1}}}, nil))
	e.must(d.complete("succeeded"))
}
