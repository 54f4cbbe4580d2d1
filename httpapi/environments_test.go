package httpapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// escClient calls the ESC API exactly as the CLI's ESC client does
// (github.com/pulumi/esc cmd/esc/cli/client): every body, YAML included, is sent with
// Content-Type application/json; the ETag of a read goes back in a request header named
// ETag; the revision comes back in Pulumi-ESC-Revision.
type escClient struct {
	t     *testing.T
	url   string
	token string
}

type escResp struct {
	status int
	header http.Header
	body   []byte
}

func (r escResp) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

func (r escResp) revision(t *testing.T) int {
	t.Helper()
	n, err := strconv.Atoi(r.header.Get("Pulumi-ESC-Revision"))
	if err != nil {
		t.Fatalf("parsing revision number: %v (status %d, body %s)", err, r.status, r.body)
	}
	return n
}

func (c escClient) do(method, path string, body []byte, hdr ...string) escResp {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, c.url+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.pulumi+8")
	req.Header.Set("User-Agent", "esc-cli/v0.26.0 (linux)")
	if c.token != "" {
		req.Header.Set("Authorization", "token "+c.token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return escResp{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c escClient) want(status int, method, path string, body []byte, hdr ...string) escResp {
	c.t.Helper()
	r := c.do(method, path, body, hdr...)
	if r.status != status {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, status, r.body)
	}
	if status >= 400 {
		var e struct {
			Code int `json:"code"`
		}
		if json.Unmarshal(r.body, &e) != nil || e.Code != status {
			c.t.Fatalf("%s %s: error body %s lacks code %d", method, path, r.body, status)
		}
	}
	return r
}

type escDiag struct {
	Summary  string `json:"summary"`
	Severity string `json:"severity"`
	Range    *struct {
		Environment string `json:"environment"`
		Begin       struct {
			Line int `json:"line"`
		} `json:"begin"`
	} `json:"range"`
}

// wantDiags asserts a 400 whose diagnostics (as the CLI prints them) mention want.
func wantDiags(t *testing.T, r escResp, want string) {
	t.Helper()
	var e struct {
		Code        int       `json:"code"`
		Message     string    `json:"message"`
		Diagnostics []escDiag `json:"diagnostics"`
	}
	if r.status != 400 || json.Unmarshal(r.body, &e) != nil || e.Code != 400 || len(e.Diagnostics) == 0 {
		t.Fatalf("want 400 with diagnostics, got %d %s", r.status, r.body)
	}
	for _, d := range e.Diagnostics {
		if strings.Contains(d.Summary, want) {
			return
		}
	}
	t.Fatalf("diagnostics %s lack %q", r.body, want)
}

func (e *env) esc(token string) escClient { return escClient{t: e.t, url: e.url, token: token} }

// newPerson creates an acme user with a role and returns the token.
func (e *env) newPerson(name, role string) string {
	e.t.Helper()
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": name, "role": role}}, &out))
	return out.TokenValue
}

// envGrant gives team a permission on environment project/name ("" name: every
// environment of the project) with Pulumi's team PATCH.
func (e *env) envGrant(team, project, name, perm string) {
	e.t.Helper()
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/" + team,
		Body: map[string]any{"addEnvironmentPermission": map[string]string{"projectName": project, "envName": name, "permission": perm}}}, nil))
}

func (e *env) envID(project, name string) int64 {
	e.t.Helper()
	var id int64
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		env, err := tx.GetEnvironment(1, project, name)
		if err == nil {
			id = env.ID
		}
		return err
	}))
	return id
}

const escBase = "/api/esc/environments"

// TestEnvironmentsCLIFlow drives env init, set (plain and --secret), get, edit, open,
// version and tag commands, ls and rm as the CLI sends them.
func TestEnvironmentsCLIFlow(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/dev"

	// env init acme/app/dev
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	c.want(409, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	r := c.want(200, "GET", E, nil)
	if r.revision(t) != 1 || r.header.Get("ETag") == "" || len(r.body) != 0 {
		t.Fatalf("new environment: revision %q etag %q body %q", r.header.Get("Pulumi-ESC-Revision"), r.header.Get("ETag"), r.body)
	}
	// env set app/dev password --secret hunter2 (GET, then PATCH with the ETag).
	def := "values:\n  region: eu-west-1\n  password:\n    fn::secret: hunter2\n  environmentVariables:\n    REGION: ${region}\n    PASSWORD: ${password}\n"
	r = c.want(200, "PATCH", E, []byte(def), "ETag", r.header.Get("ETag"))
	if r.revision(t) != 2 {
		t.Fatalf("PATCH revision %d, want 2", r.revision(t))
	}
	// env get: the definition holds ciphertext only.
	r = c.want(200, "GET", E, nil)
	if strings.Contains(string(r.body), "hunter2") || !strings.Contains(string(r.body), "ciphertext") || r.revision(t) != 2 {
		t.Fatalf("stored definition:\n%s", r.body)
	}
	stored := r.body
	// env get --show-secrets
	r = c.want(200, "GET", E+"/decrypt", nil)
	if !strings.Contains(string(r.body), "fn::secret: hunter2") {
		t.Fatalf("decrypted definition:\n%s", r.body)
	}
	// env get renders with yaml/check: secrets hidden unless showSecrets.
	var checked struct {
		Properties map[string]struct {
			Value  any  `json:"value"`
			Secret bool `json:"secret"`
		} `json:"properties"`
	}
	c.want(200, "POST", escBase+"/acme/yaml/check", stored).json(t, &checked)
	if p := checked.Properties["password"]; p.Value == "hunter2" {
		t.Fatalf("yaml/check revealed a secret (it is another environment's ciphertext anyway): %+v", p)
	}
	c.want(200, "POST", E+"/check", nil).json(t, &checked)
	if p := checked.Properties["password"]; p.Value == "hunter2" || !p.Secret || checked.Properties["region"].Value != "eu-west-1" {
		t.Fatalf("check: %+v", checked.Properties)
	}
	c.want(200, "POST", E+"/check?showSecrets=true", nil).json(t, &checked)
	if p := checked.Properties["password"]; p.Value != "hunter2" {
		t.Fatalf("check?showSecrets: %+v", p)
	}
	// env open / env run
	var opened struct {
		ID string `json:"id"`
	}
	c.want(200, "POST", E+"/open?duration=2h0m0s", nil).json(t, &opened)
	var values struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	c.want(200, "GET", E+"/open/"+opened.ID, nil).json(t, &values)
	if !strings.Contains(string(values.Properties["password"]), `"hunter2"`) || !strings.Contains(string(values.Properties["environmentVariables"]), "eu-west-1") {
		t.Fatalf("open session values: %s", values.Properties)
	}
	var one struct {
		Value  any  `json:"value"`
		Secret bool `json:"secret"`
	}
	c.want(200, "GET", E+"/open/"+opened.ID+"?property=environmentVariables.PASSWORD", nil).json(t, &one)
	if one.Value != "hunter2" || !one.Secret {
		t.Fatalf("property: %+v", one)
	}
	c.want(404, "GET", E+"/open/"+opened.ID+"?property=nope", nil)

	// env version / tags: revision 3, tag prod on 2, read @prod and @2.
	r = c.want(200, "GET", E, nil)
	c.want(200, "PATCH", E, []byte("values:\n  region: us-east-1\n"), "ETag", r.header.Get("ETag"))
	var revs []struct {
		Number int      `json:"number"`
		Tags   []string `json:"tags"`
	}
	c.want(200, "GET", E+"/versions", nil).json(t, &revs)
	if len(revs) != 3 || revs[0].Number != 3 || revs[0].Tags[0] != "latest" {
		t.Fatalf("versions: %+v", revs)
	}
	c.want(200, "GET", E+"/versions?before=3&count=1", nil).json(t, &revs)
	if len(revs) != 1 || revs[0].Number != 2 {
		t.Fatalf("versions before 3: %+v", revs)
	}
	c.want(200, "POST", E+"/versions/tags", []byte(`{"name":"prod","revision":2}`))
	var tag struct {
		Name     string `json:"name"`
		Revision int    `json:"revision"`
	}
	c.want(200, "GET", E+"/versions/tags/prod", nil).json(t, &tag)
	if tag.Revision != 2 {
		t.Fatalf("tag: %+v", tag)
	}
	c.want(200, "GET", E+"/versions/tags/latest", nil).json(t, &tag)
	if tag.Revision != 3 {
		t.Fatalf("latest: %+v", tag)
	}
	r = c.want(200, "GET", E+"/versions/prod", nil)
	if r.revision(t) != 2 || !strings.Contains(string(r.body), "ciphertext") {
		t.Fatalf("@prod: revision %d\n%s", r.revision(t), r.body)
	}
	r = c.want(200, "GET", E+"/versions/prod/decrypt", nil)
	if !strings.Contains(string(r.body), "hunter2") {
		t.Fatalf("@prod/decrypt:\n%s", r.body)
	}
	c.want(200, "POST", E+"/versions/2/open?duration=1m", nil).json(t, &opened)
	c.want(200, "GET", E+"/open/"+opened.ID+"?property=password", nil).json(t, &one)
	if one.Value != "hunter2" {
		t.Fatalf("@2 open: %+v", one)
	}
	c.want(200, "PATCH", E+"/versions/tags/prod", []byte(`{"revision":3}`))
	c.want(200, "GET", E+"/versions/tags/prod", nil).json(t, &tag)
	if tag.Revision != 3 {
		t.Fatalf("moved tag: %+v", tag)
	}
	var tags struct {
		Tags []struct {
			Name string `json:"name"`
		} `json:"tags"`
	}
	// env version tag ls pages with ?after= until it gets an empty page.
	var all []string
	for after := ""; ; {
		c.want(200, "GET", E+"/versions/tags?count=1&after="+after, nil).json(t, &tags)
		if len(tags.Tags) == 0 {
			break
		}
		after = tags.Tags[len(tags.Tags)-1].Name
		all = append(all, after)
		if len(all) > 10 {
			t.Fatal("tag listing does not end")
		}
	}
	if strings.Join(all, ",") != "latest,prod" {
		t.Fatalf("tags: %v", all)
	}
	// env version history pages with ?before= until it gets an empty page.
	var nums []int
	for before := 0; ; {
		c.want(200, "GET", E+"/versions?count=2&before="+strconv.Itoa(before), nil).json(t, &revs)
		if len(revs) == 0 {
			break
		}
		for _, r := range revs {
			nums = append(nums, r.Number)
		}
		before = revs[len(revs)-1].Number
		if len(nums) > 10 {
			t.Fatal("revision listing does not end")
		}
	}
	if len(nums) != 3 || nums[0] != 3 || nums[2] != 1 {
		t.Fatalf("history: %v", nums)
	}
	c.want(400, "DELETE", E+"/versions/tags/latest", nil)
	c.want(200, "DELETE", E+"/versions/tags/prod", nil)
	c.want(404, "GET", E+"/versions/prod", nil)

	// env ls (paged, as the CLI loops on nextToken).
	c.want(200, "POST", escBase+"/acme", []byte(`{"name":"other"}`))
	var names []string
	for tok := ""; ; {
		var page struct {
			Environments []struct{ Organization, Project, Name string }
			NextToken    string `json:"nextToken"`
		}
		c.want(200, "GET", escBase+"?continuationToken="+tok, nil).json(t, &page)
		for _, en := range page.Environments {
			names = append(names, en.Organization+"/"+en.Project+"/"+en.Name)
		}
		if tok = page.NextToken; tok == "" {
			break
		}
	}
	if strings.Join(names, ",") != "acme/app/dev,acme/default/other" {
		t.Fatalf("env ls: %v", names)
	}

	// env rm: deletion protection first.
	c.want(200, "PATCH", E+"/settings", []byte(`{"deletionProtected":true}`))
	r = c.want(409, "DELETE", E, nil)
	if !strings.Contains(string(r.body), "protect") {
		t.Fatalf("the CLI looks for \"protect\" in the message: %s", r.body)
	}
	c.want(200, "PATCH", E+"/settings", []byte(`{"deletionProtected":false}`))
	c.want(200, "DELETE", E, nil)
	c.want(404, "GET", E, nil)

	// Audit: open (with duration), decrypt, check with secrets, write and delete are events
	// with the environment and revision; no secret value anywhere in the log.
	evs, err := listAudit(e)
	e.must(err)
	seen := map[string]bool{}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), "hunter2") {
			t.Fatalf("audit event holds a secret value: %s", b)
		}
		if ev.Target != "acme/app/dev" || ev.Outcome != gatehouse.OutcomeSuccess {
			continue
		}
		switch {
		case ev.Action == "env:open" && ev.Details["duration"] == "2h0m0s" && ev.Details["revision"] == "2":
			seen["open"] = true
		case ev.Action == "env:open" && ev.Details["showSecrets"] == "true":
			seen["check"] = true
		case ev.Action == "env:open" && ev.Details["revision"] != "" && ev.Details["duration"] == "" && ev.Details["session"] == "" && ev.Details["showSecrets"] == "":
			seen["decrypt"] = true
		case ev.Action == "env:write" && ev.Details["revision"] == "2":
			seen["write"] = true
		case ev.Action == "env:admin" && ev.Details["revision"] == "3":
			seen["delete"] = true
		}
	}
	for _, k := range []string{"open", "decrypt", "check", "write", "delete"} {
		if !seen[k] {
			t.Errorf("no audit event for %s", k)
		}
	}
}

// TestEnvironmentsBadInput covers what the CLI or a user can get wrong.
func TestEnvironmentsBadInput(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/dev"
	for _, bad := range []string{`{"project":"app","name":"a/b"}`, `{"project":"a b","name":"x"}`, `{"project":"app","name":""}`, `{"project":"app","name":"` + strings.Repeat("x", 101) + `"}`} {
		c.want(400, "POST", escBase+"/acme", []byte(bad))
	}
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	etag := c.want(200, "GET", E, nil).header.Get("ETag")

	wantDiags(t, c.do("PATCH", E, []byte("values: [unclosed\n")), "")
	wantDiags(t, c.do("PATCH", E, []byte("values:\n  a: ${nope.b}\n")), "unknown property")
	wantDiags(t, c.do("POST", escBase+"/acme/yaml/check", []byte("values:\n  x:\n    fn::open::aws-login:\n      oidc: {roleArn: r}\n  y: ${nope}\n")), "unknown property")
	wantDiags(t, c.do("PATCH", E, []byte("imports: [app/missing]\n")), `"app/missing" not found`)
	// A definition that fails did not make a revision; the ETag still stands.
	if c.want(200, "GET", E, nil).revision(t) != 1 {
		t.Fatal("a failed PATCH made a revision")
	}
	// Import cycle: a imports b imports a (the check of b's PATCH sees it).
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"a"}`))
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"b"}`))
	c.want(200, "PATCH", escBase+"/acme/app/a", []byte("imports: [app/b]\nvalues: {x: 1}\n"))
	wantDiags(t, c.do("PATCH", escBase+"/acme/app/b", []byte("imports: [app/a]\nvalues: {y: 2}\n")), "cyclic import")
	// Opening an environment with a provider this server does not run.
	c.want(200, "PATCH", E, []byte("values:\n  aws:\n    fn::open::aws-login:\n      oidc: {roleArn: r, sessionName: s}\n"), "ETag", etag)
	wantDiags(t, c.do("POST", E+"/open?duration=1h", nil), "not supported by this server")
	c.want(409, "PATCH", E, []byte("values: {}\n"), "ETag", etag) // stale: revision 2 exists now
	c.want(409, "PATCH", E, []byte("values: {}\n"), "ETag", "garbage")

	// Unknown revisions and tags.
	c.want(404, "GET", E+"/versions/9", nil)
	c.want(404, "GET", E+"/versions/nope", nil)
	c.want(404, "GET", E+"/versions/nope/decrypt", nil)
	c.want(404, "POST", E+"/versions/9/open?duration=1h", nil)
	c.want(404, "GET", E+"/versions/tags/nope", nil)
	c.want(404, "POST", E+"/versions/tags", []byte(`{"name":"t","revision":9}`))
	c.want(400, "POST", E+"/versions/tags", []byte(`{"name":"1abc"}`))
	c.want(400, "POST", E+"/versions/tags", []byte(`{"name":"latest"}`))
	c.want(404, "GET", escBase+"/acme/app/nope", nil)

	// Definitions are bounded.
	c.want(413, "PATCH", E, append([]byte("values:\n  big: "), bytes.Repeat([]byte("x"), 1<<20)...))
	// Durations.
	c.want(200, "PATCH", E, []byte("values: {k: v}\n"))
	for _, d := range []string{"", "?duration=", "?duration=-1h", "?duration=0s", "?duration=25h", "?duration=soon"} {
		c.want(400, "POST", E+"/open"+d, nil)
	}
	var opened struct {
		ID string `json:"id"`
	}
	c.want(200, "POST", E+"/open?duration=1m", nil).json(t, &opened)
	c.want(400, "GET", E+"/open/"+opened.ID+"?property=k[", nil)
	c.want(404, "GET", E+"/open/"+opened.ID+"?property=k[3]", nil)
	c.want(400, "POST", E+"/check?showSecrets=maybe", nil)
	c.want(400, "GET", E+"/versions?before=-1", nil)
	c.want(404, "GET", E+"/whatever", nil)
	// Expired and unknown sessions are 404.
	c.want(404, "GET", E+"/open/0123456789abcdef", nil)
	e.clock.Advance(2 * time.Minute)
	c.want(404, "GET", E+"/open/"+opened.ID, nil)
}

// TestEnvironmentsRacingEditors: two editors (here eight) PATCH with the same ETag;
// exactly one wins, the others get 409.
func TestEnvironmentsRacingEditors(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/default/race"
	c.want(200, "POST", escBase+"/acme", []byte(`{"name":"race"}`))
	etag := c.want(200, "GET", E, nil).header.Get("ETag")
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses[i] = c.do("PATCH", E, []byte("values: {editor: "+strconv.Itoa(i)+"}\n"), "ETag", etag).status
		}()
	}
	wg.Wait()
	won := 0
	for _, s := range statuses {
		switch s {
		case 200:
			won++
		case 409:
		default:
			t.Fatalf("racing PATCH answered %d", s)
		}
	}
	if won != 1 {
		t.Fatalf("%d editors won with one ETag (%v), want exactly 1", won, statuses)
	}
	if c.want(200, "GET", E, nil).revision(t) != 2 {
		t.Fatal("want revision 2 after the race")
	}
}

// TestEnvironmentsAccess: defaults, creator, team grants by environment and project,
// imports checked per import, protected environments, sessions bound to the opener.
func TestEnvironmentsAccess(t *testing.T) {
	e := newEnv(t)
	admin := e.esc(e.admin.Token)
	member := e.esc(e.newPerson("member", "member"))
	opener := e.esc(e.newPerson("opener", "member"))
	creator := e.esc(e.newPerson("creator", "member"))

	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values:\n  pw:\n    fn::secret: hunter2\n  plain: p\n"))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"base"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/base", []byte("values:\n  basepw:\n    fn::secret: s3cr3t\n"))
	admin.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"consumer"}`))
	admin.want(200, "PATCH", escBase+"/acme/app/consumer", []byte("imports: [app/base]\nvalues: {c: 1}\n"))
	dev := escBase + "/acme/app/dev"

	// New organizations: default environment permission none. A member sees nothing.
	member.want(404, "GET", dev, nil)
	member.want(404, "POST", dev+"/open?duration=1h", nil)
	var ls struct {
		Environments []struct{ Name string }
	}
	member.want(200, "GET", escBase+"/acme", nil).json(t, &ls)
	if len(ls.Environments) != 0 {
		t.Fatalf("member lists %+v", ls.Environments)
	}
	// The creator gets admin on what it creates (people only).
	creator.want(200, "POST", escBase+"/acme", []byte(`{"project":"mine","name":"x"}`))
	creator.want(200, "PATCH", escBase+"/acme/mine/x", []byte("values: {a: 1}\n"))
	creator.want(200, "DELETE", escBase+"/acme/mine/x", nil)

	// Org default read: definitions (ciphertext) and check, no decrypt, no open.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "read"}}, nil))
	r := member.want(200, "GET", dev, nil)
	if strings.Contains(string(r.body), "hunter2") {
		t.Fatal("reader saw plaintext")
	}
	member.want(200, "POST", dev+"/check", nil)
	member.want(403, "POST", dev+"/check?showSecrets=true", nil)
	member.want(403, "GET", dev+"/decrypt", nil)
	member.want(403, "POST", dev+"/open?duration=1h", nil)
	member.want(403, "PATCH", dev, []byte("values: {}\n"))
	member.want(200, "GET", escBase+"/acme", nil).json(t, &ls)
	if len(ls.Environments) != 3 {
		t.Fatalf("reader lists %+v", ls.Environments)
	}

	// A team with open on the environment app/dev only.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "openers"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/openers", Body: map[string]any{"memberAction": "add", "member": "opener"}}, nil))
	e.envGrant("openers", "app", "dev", "open")
	var opened struct {
		ID string `json:"id"`
	}
	opener.want(200, "POST", dev+"/open?duration=1h", nil).json(t, &opened)
	opener.want(200, "GET", dev+"/open/"+opened.ID, nil)
	opener.want(403, "PATCH", dev, []byte("values: {}\n"))
	// Another caller, even one allowed to open, cannot read someone else's session.
	admin.want(404, "GET", dev+"/open/"+opened.ID, nil)

	// Imports: opening app/consumer needs open on app/base too; the error names it.
	e.envGrant("openers", "app", "consumer", "open")
	wantDiags(t, opener.do("POST", escBase+"/acme/app/consumer/open?duration=1h", nil), `access to imported environment "app/base" denied`)
	// Checking it without secrets needs read on the import (the org default gives it).
	opener.want(200, "POST", escBase+"/acme/app/consumer/check", nil)
	// The refusal is in the audit log, naming the import.
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Target == "acme/app/consumer" && ev.Action == "env:open" && ev.Outcome == gatehouse.OutcomeFailure && strings.Contains(ev.Reason, `"app/base"`) {
			found = true
		}
	}
	if !found {
		t.Error("no audit event names the refused import")
	}
	wantDiags(t, opener.do("POST", escBase+"/acme/yaml/check?showSecrets=true", []byte("imports: [app/base]\n")), `"app/base" denied`)
	// A grant by project covers every environment of it.
	e.envGrant("openers", "app", "", "open")
	var team struct {
		Environments []struct{ ProjectName, EnvName, Permission string }
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/openers"}, &team))
	if len(team.Environments) != 3 || team.Environments[0].Permission != "open" {
		t.Fatalf("team environments: %+v", team.Environments)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/openers", Body: map[string]any{"removeEnvironment": map[string]string{"projectName": "app", "envName": "dev"}}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/openers"}, &team))
	if len(team.Environments) != 2 {
		t.Fatalf("team environments after removeEnvironment: %+v", team.Environments)
	}
	opener.want(200, "POST", escBase+"/acme/app/consumer/open?duration=1h", nil).json(t, &opened)
	// Sessions belong to their environment.
	opener.want(404, "GET", escBase+"/acme/app/base/open/"+opened.ID, nil)
	var one struct{ Value any }
	opener.want(200, "GET", escBase+"/acme/app/consumer/open/"+opened.ID+"?property=basepw", nil).json(t, &one)
	if one.Value != "s3cr3t" {
		t.Fatalf("imported secret: %+v", one)
	}

	// Protected environments (a protection rule by project selects environments too): people
	// keep read, only pipeline credentials open and change them.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	e.envGrant("deployers", "app", "", "write")
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens", Body: map[string]any{"name": "ci"}}, &tok))
	pipeline := e.esc(tok.TokenValue)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"project": "app"}}, nil))
	admin.want(200, "GET", dev, nil)
	r = admin.want(403, "POST", dev+"/open?duration=1h", nil)
	if !strings.Contains(string(r.body), "protected") {
		t.Fatalf("denial reason: %s", r.body)
	}
	admin.want(403, "GET", dev+"/decrypt", nil)
	admin.want(403, "PATCH", dev, []byte("values: {}\n"))
	admin.want(403, "DELETE", dev, nil)
	opener.want(403, "POST", dev+"/open?duration=1h", nil)
	pipeline.want(200, "POST", dev+"/open?duration=1h", nil)
	pipeline.want(200, "PATCH", dev, []byte("values: {changed: by-ci}\n"))
	pipeline.want(404, "GET", escBase+"/acme/default/nothing", nil)
}

// TestEnvironmentsCrossTenant: another organization's admin learns nothing about acme's
// environments, revisions, tags or sessions, and cannot use them by id.
func TestEnvironmentsCrossTenant(t *testing.T) {
	e := newEnv(t)
	acme := e.esc(e.admin.Token)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/users", Body: map[string]string{"name": "gadmin", "role": "admin"}}, &out))
	globex := e.esc(out.TokenValue)

	E := escBase + "/acme/app/dev"
	acme.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	acme.want(200, "PATCH", E, []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	acme.want(200, "POST", E+"/versions/tags", []byte(`{"name":"prod"}`))
	var opened struct {
		ID string `json:"id"`
	}
	acme.want(200, "POST", E+"/open?duration=1h", nil).json(t, &opened)

	globex.want(200, "POST", escBase+"/globex", []byte(`{"project":"app","name":"dev"}`))
	for _, p := range []string{E, E + "/decrypt", E + "/versions", E + "/versions/2", E + "/versions/prod", E + "/versions/tags", E + "/versions/tags/prod", E + "/open/" + opened.ID, E + "/settings", escBase + "/acme/app/nope"} {
		r := globex.want(404, "GET", p, nil)
		if strings.Contains(string(r.body), "hunter2") {
			t.Fatal("leak")
		}
	}
	globex.want(404, "POST", E+"/open?duration=1h", nil)
	globex.want(404, "PATCH", E, []byte("values: {}\n"))
	globex.want(404, "DELETE", E, nil)
	globex.want(404, "POST", escBase+"/acme", []byte(`{"name":"intruder"}`))
	// acme's session id under globex's own environment of the same name: 404.
	globex.want(404, "GET", escBase+"/globex/app/dev/open/"+opened.ID, nil)
	// An import of acme's environment from globex resolves in globex only.
	wantDiags(t, globex.do("POST", escBase+"/globex/yaml/check", []byte("imports: [app/nope]\n")), "not found")
	var ls struct {
		Environments []struct{ Organization string }
	}
	globex.want(200, "GET", escBase, nil).json(t, &ls)
	for _, en := range ls.Environments {
		if en.Organization != "globex" {
			t.Fatalf("globex lists %+v", ls.Environments)
		}
	}
}

// TestEnvironmentsStackImports: what `pulumi up` sends for a stack with
// `environment: [app/base, app/dev]`: an anonymous definition opened with yaml/open (JSON
// body, 2h duration, optional environmentOverrides), then read whole or by property.
func TestEnvironmentsStackImports(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"base"}`))
	c.want(200, "PATCH", escBase+"/acme/app/base", []byte("values:\n  pulumiConfig:\n    pw:\n      fn::secret: hunter2\n"))
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"dev"}`))
	c.want(200, "PATCH", escBase+"/acme/app/dev", []byte("values:\n  pulumiConfig:\n    region: eu-west-1\n"))
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"staging"}`))
	c.want(200, "PATCH", escBase+"/acme/app/staging", []byte("values:\n  pulumiConfig:\n    region: us-east-1\n"))

	var opened struct {
		ID string `json:"id"`
	}
	c.want(200, "POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["app/base","app/dev"]}`)).json(t, &opened)
	var values struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID, nil).json(t, &values)
	cfg := string(values.Properties["pulumiConfig"])
	if !strings.Contains(cfg, `"hunter2"`) || !strings.Contains(cfg, "eu-west-1") {
		t.Fatalf("pulumiConfig: %s", cfg)
	}
	var one struct{ Value any }
	c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID+"?property=pulumiConfig.region", nil).json(t, &one)
	if one.Value != "eu-west-1" {
		t.Fatalf("property: %+v", one)
	}
	// The session is stored sealed.
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		s, err := tx.GetEnvSession(opened.ID)
		if err == nil && bytes.Contains(s.Data, []byte("hunter2")) {
			t.Error("session stored in the clear")
		}
		return err
	}))
	// env set: GET (ciphertext), add a value, PATCH with the ETag: the ciphertext written back
	// is kept as it is and still opens.
	r := c.want(200, "GET", escBase+"/acme/app/base", nil)
	body := append(append([]byte{}, r.body...), []byte("  extra: 1\n")...)
	c.want(200, "PATCH", escBase+"/acme/app/base", body, "ETag", r.header.Get("ETag"))
	c.want(200, "POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["app/base"]}`)).json(t, &opened)
	c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID+"?property=pulumiConfig.pw", nil).json(t, &one)
	if one.Value != "hunter2" {
		t.Fatalf("secret after a round trip of its ciphertext: %+v", one)
	}
	c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID+"?property=extra", nil).json(t, &one)
	if one.Value != float64(1) {
		t.Fatalf("extra: %+v", one)
	}
	// No plaintext secret anywhere in the database files (definitions, revisions, sessions,
	// audit): only ciphertext.
	seen := false
	for _, name := range []string{"gatehouse.db", "gatehouse.db-wal"} {
		b, err := os.ReadFile(filepath.Join(e.dir, name))
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte("hunter2")) {
			t.Fatalf("plaintext secret in %s", name)
		}
		seen = seen || bytes.Contains(b, []byte("pulumiConfig")) // the scan sees the definitions
	}
	if !seen {
		t.Fatal("the definitions are not in the database files: the scan proves nothing")
	}
	// environmentOverrides: app/dev is replaced by app/staging.
	ov := base64URL(`{"app/dev":"app/staging"}`)
	c.want(200, "POST", escBase+"/acme/yaml/open?duration=2h0m0s&environmentOverrides="+ov, []byte(`{"imports":["app/base","app/dev"]}`)).json(t, &opened)
	c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID+"?property=pulumiConfig.region", nil).json(t, &one)
	if one.Value != "us-east-1" {
		t.Fatalf("override: %+v", one)
	}
	c.want(400, "POST", escBase+"/acme/yaml/open?duration=2h0m0s&environmentOverrides=!!!", []byte(`{"imports":[]}`))
	c.want(400, "POST", escBase+"/acme/yaml/open", []byte(`{"imports":[]}`))
	wantDiags(t, c.do("POST", escBase+"/acme/yaml/open?duration=1h", []byte(`{"imports":["app/missing"]}`)), `"app/missing" not found`)

	// A reader of environments may not open their imports; another caller cannot read the
	// session; another organization neither.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultEnvironmentPermission": "read"}}, nil))
	reader := e.esc(e.newPerson("reader", "member"))
	wantDiags(t, reader.do("POST", escBase+"/acme/yaml/open?duration=1h", []byte(`{"imports":["app/base"]}`)), `access to imported environment "app/base" denied`)
	reader.want(404, "GET", escBase+"/acme/yaml/open/"+opened.ID, nil)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	var out struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/users", Body: map[string]string{"name": "gadmin", "role": "admin"}}, &out))
	globex := e.esc(out.TokenValue)
	globex.want(404, "GET", escBase+"/acme/yaml/open/"+opened.ID, nil)
	globex.want(404, "GET", escBase+"/globex/yaml/open/"+opened.ID, nil)
	wantDiags(t, globex.do("POST", escBase+"/globex/yaml/open?duration=1h", []byte(`{"imports":["app/base"]}`)), "not found")
}

func base64URL(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// TestEnvironmentTagsSelectProtections: environment tags (name/value) as the CLI's env tag
// commands call them; a protection rule by tag selects the environments that carry it.
func TestEnvironmentTagsSelectProtections(t *testing.T) {
	e := newEnv(t)
	c := e.esc(e.admin.Token)
	E := escBase + "/acme/app/prod"
	c.want(200, "POST", escBase+"/acme", []byte(`{"project":"app","name":"prod"}`))
	c.want(200, "PATCH", E, []byte("values: {k: v}\n"))
	c.want(200, "POST", E+"/tags", []byte(`{"name":"env","value":"staging"}`))
	c.want(409, "POST", E+"/tags", []byte(`{"name":"env","value":"x"}`))
	c.want(400, "POST", E+"/tags", []byte(`{"name":"bad name","value":"x"}`))
	c.want(409, "PATCH", E+"/tags/env", []byte(`{"currentTag":{"value":"stale"},"newTag":{"value":"production"}}`))
	c.want(200, "PATCH", E+"/tags/env", []byte(`{"currentTag":{"value":"staging"},"newTag":{"value":"production"}}`))
	var one struct{ Name, Value string }
	c.want(200, "GET", E+"/tags/env", nil).json(t, &one)
	if one.Value != "production" {
		t.Fatalf("tag: %+v", one)
	}
	// env tag ls pages with after=nextToken until nextToken is "0".
	c.want(200, "POST", E+"/tags", []byte(`{"name":"owner","value":"ops"}`))
	c.want(200, "POST", E+"/tags", []byte(`{"name":"tier","value":"1"}`))
	got := map[string]string{}
	for after, n := "", 0; after != "0"; n++ {
		var list struct {
			Tags      map[string]struct{ Value string } `json:"tags"`
			NextToken string                            `json:"nextToken"`
		}
		c.want(200, "GET", E+"/tags?count=2&after="+after, nil).json(t, &list)
		for k, v := range list.Tags {
			got[k] = v.Value
		}
		if after = list.NextToken; n > 5 {
			t.Fatal("env tag listing does not end")
		}
	}
	if len(got) != 3 || got["env"] != "production" || got["tier"] != "1" {
		t.Fatalf("tags: %v", got)
	}
	c.want(404, "GET", E+"/tags/nope", nil)

	// Protect env=production: the environment is now opened and changed by pipelines only,
	// and a person cannot lift the protection by editing the tag.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
	c.want(200, "GET", E, nil)
	c.want(403, "POST", E+"/open?duration=1h", nil)
	c.want(403, "DELETE", E+"/tags/env", nil)
	c.want(403, "PATCH", E+"/tags/env", []byte(`{"currentTag":{"value":"production"},"newTag":{"value":"dev"}}`))
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "ci", "admin": true}}, &tok))
	ci := e.esc(tok.TokenValue)
	ci.want(200, "POST", E+"/open?duration=1h", nil)
	ci.want(200, "DELETE", E+"/tags/env", nil)
	c.want(200, "POST", E+"/open?duration=1h", nil) // no longer selected by the rule
}
