package httpapi_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// deployEnv is a server with stack acme/proj/prod (tagged env=production and protected),
// a runner pool, and a member "dev" with write on it (a person: no pipeline credential).
type deployEnv struct {
	*env
	prod   string
	pool   string // the runner pool's token
	runner *cliwire.Client
	dev    *cliwire.Client
}

func newDeployEnv(t *testing.T, tweak ...func(*httpapi.Config)) *deployEnv {
	e := newEnv(t, tweak...)
	a := e.admin
	e.must(e.createStack(a, "acme", "proj", "prod", map[string]string{"env": "production"}))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
	var pool struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/agent-pools", Body: map[string]string{"name": "default"}}, &pool))
	if !strings.HasPrefix(pool.TokenValue, "gatehouse_runner_") {
		t.Fatalf("pool token %q", pool.TokenValue)
	}
	var dev struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "dev", "role": "member"}}, &dev))
	e.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	e.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"stack": "proj/prod", "permission": "write"}}}, nil))
	return &deployEnv{env: e, prod: stackPath("acme", "proj", "prod"), pool: pool.TokenValue,
		runner: cliwire.New(e.url, pool.TokenValue), dev: cliwire.New(e.url, dev.TokenValue)}
}

func (d *deployEnv) settings(body any) error {
	return d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings", Body: body}, nil)
}

func (d *deployEnv) trigger(c *cliwire.Client, op string) (map[string]any, error) {
	var out map[string]any
	err := c.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: apitype.CreateDeploymentRequest{Op: apitype.PulumiOperation(op), InheritSettings: true},
		Header: http.Header{"X-Pulumi-Deployment-Initiator": {"cli"}}}, &out)
	return out, err
}

func (d *deployEnv) lease() *deploy.Job {
	d.t.Helper()
	var job deploy.Job
	var raw []byte
	err := d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/lease", Body: deploy.LeaseRequest{Runner: "r1", Pool: "default"}}, &raw)
	if err != nil && strings.Contains(err.Error(), "(status 204)") {
		return nil // nothing queued
	}
	d.must(err)
	d.must(json.Unmarshal(raw, &job))
	return &job
}

func (d *deployEnv) beat(job *deploy.Job, lines ...deploy.LogLine) (*deploy.HeartbeatResponse, error) {
	var hb deploy.HeartbeatResponse
	err := d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job.ID + "/heartbeat", Body: deploy.LeaseCall{Lease: job.Lease, Lines: lines}}, &hb)
	return &hb, err
}

func (d *deployEnv) complete(job *deploy.Job, status string) error {
	return d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job.ID + "/complete", Body: deploy.LeaseCall{Lease: job.Lease, Status: status}}, nil)
}

func (d *deployEnv) get(id string) map[string]any {
	d.t.Helper()
	var out map[string]any
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id}, &out))
	return out
}

const gitSettings = `{"sourceContext":{"git":{"repoUrl":"https://git.example.com/acme/infra.git","branch":"main",
	"gitAuth":{"accessToken":{"secret":"ghp_supersecret"}}}},
	"operationContext":{"preRunCommands":["echo hi"],"environmentVariables":{"PLAIN":"p","API_KEY":{"secret":"s3cret-value"}}},
	"gitHub":{"repository":"acme/infra","deployCommits":true,"previewPullRequests":true,"paths":["infra/**"]}}`

// TestDeploySettingsAsTheCLISendsThem: the merge-patch POST of pulumi deployment settings
// edit, GET (secrets sealed, never echoed), PUT, encrypt, DELETE; plaintext where a secret
// belongs is refused.
func TestDeploySettingsAsTheCLISendsThem(t *testing.T) {
	d := newDeployEnv(t)
	a := d.admin
	err := a.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, nil)
	wantStatus(t, err, 404)
	d.must(d.settings([]byte(gitSettings)))
	var raw []byte
	d.must(a.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, &raw))
	if bytes.Contains(raw, []byte("s3cret-value")) || bytes.Contains(raw, []byte("ghp_supersecret")) {
		t.Fatalf("settings echo a secret: %s", raw)
	}
	var got apitype.DeploymentSettings
	d.must(json.Unmarshal(raw, &got))
	if got.Operation.EnvironmentVariables["API_KEY"].Ciphertext == "" || got.Operation.EnvironmentVariables["PLAIN"].Value != "p" ||
		got.SourceContext.Git.GitAuth.PersonalAccessToken.Ciphertext == "" || got.SourceContext.Git.Branch != "main" {
		t.Fatalf("settings = %s", raw)
	}
	// The sealed value does not open through the stack's /decrypt (another label).
	err = a.Do(cliwire.Call{Method: "POST", Path: d.prod + "/decrypt", Body: map[string]string{"ciphertext": got.Operation.EnvironmentVariables["API_KEY"].Ciphertext}}, nil)
	if cliwire.Status(err) != 400 {
		t.Errorf("a settings ciphertext opened through /decrypt: %v", err)
	}

	// Merge patch as the CLI's edit sends it: null deletes, objects merge, secrets replace.
	d.must(d.settings(map[string]any{"sourceContext": map[string]any{"git": map[string]any{"branch": "release"}},
		"operationContext": map[string]any{"environmentVariables": map[string]any{"PLAIN": nil, "NEW": map[string]string{"secret": "n3w"}}}}))
	d.must(a.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, &raw))
	got = apitype.DeploymentSettings{}
	d.must(json.Unmarshal(raw, &got))
	env := got.Operation.EnvironmentVariables
	if _, ok := env["PLAIN"]; ok || env["NEW"].Ciphertext == "" || env["API_KEY"].Ciphertext == "" || got.SourceContext.Git.Branch != "release" ||
		got.SourceContext.Git.RepoURL == "" || bytes.Contains(raw, []byte("n3w")) {
		t.Fatalf("after patch: %s", raw)
	}

	// Plaintext where a secret is expected.
	err = d.settings(map[string]any{"sourceContext": map[string]any{"git": map[string]any{"gitAuth": map[string]any{"accessToken": "ghp_plain"}}}})
	ce := wantStatus(t, err, 400)
	if !strings.Contains(ce.Message, "must be a secret") || strings.Contains(ce.Body, "ghp_plain") {
		t.Errorf("plaintext secret: %s", ce.Body)
	}
	// A ciphertext that is not this stack's.
	err = d.settings(map[string]any{"operationContext": map[string]any{"environmentVariables": map[string]any{"X": map[string]string{"ciphertext": "AAAA"}}}})
	wantStatus(t, err, 400)
	// The operation is chosen per run.
	wantStatus(t, d.settings(map[string]any{"operationContext": map[string]any{"operation": "update"}}), 400)

	// encrypt, then use the ciphertext.
	var enc struct {
		Ciphertext string `json:"ciphertext"`
	}
	d.must(a.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings/encrypt", Body: map[string]string{"secret": "via-encrypt"}}, &enc))
	d.must(d.settings(map[string]any{"operationContext": map[string]any{"environmentVariables": map[string]any{"ENC": map[string]string{"ciphertext": enc.Ciphertext}}}}))

	// PUT replaces.
	d.must(a.Do(cliwire.Call{Method: "PUT", Path: d.prod + "/deployments/settings", Body: map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "/tmp/x", "branch": "main"}}}}, nil))
	d.must(a.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, &raw))
	if bytes.Contains(raw, []byte("environmentVariables")) {
		t.Errorf("PUT kept old settings: %s", raw)
	}
	d.must(a.Do(cliwire.Call{Method: "DELETE", Path: d.prod + "/deployments/settings"}, nil))
	wantStatus(t, a.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, nil), 404)

	// Settings changes are audited, without values.
	evs, err := listAudit(d.env)
	d.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == "stack:deploy:settings" && ev.Outcome == gatehouse.OutcomeSuccess {
			n++
		}
		b, _ := json.Marshal(ev)
		if bytes.Contains(b, []byte("s3cret-value")) || bytes.Contains(b, []byte("ghp_")) {
			t.Errorf("a secret in the audit log: %s", b)
		}
	}
	if n < 5 {
		t.Errorf("%d settings changes audited, want at least 5", n)
	}
}

// TestDeployRunProtocol: a run as pulumi deployment run drives it (trigger, logs with
// continuation tokens, updates, get) with a runner leasing it, and the runner's credential:
// valid for exactly its stack and operation while the run lasts; a pipeline credential.
func TestDeployRunProtocol(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	if job := d.lease(); job != nil {
		t.Fatalf("leased %s with nothing queued", job.ID)
	}

	// People: write triggers update (the pipeline runs it, so protection does not stop
	// the trigger), read is not enough.
	created, err := d.trigger(d.dev, "update")
	d.must(err)
	id, _ := created["id"].(string)
	if id == "" || created["version"].(float64) != 1 || !strings.Contains(created["consoleUrl"].(string), id) {
		t.Fatalf("create = %v", created)
	}
	wantStatus(t, d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: map[string]string{}}, nil), 400)
	wantStatus(t, d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: map[string]any{"operation": "update", "operationContext": map[string]string{"operation": "destroy"}}}, nil), 400)

	// Logs before a runner: empty, with a token to come back with.
	var logs deploy.LogsView
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id + "/logs"}, &logs))
	if len(logs.Lines) != 0 || logs.NextToken == "" {
		t.Fatalf("logs before start = %+v", logs)
	}

	job := d.lease()
	if job == nil || job.ID != id || job.Operation != "update" || !strings.HasPrefix(job.Credential, "gatehouse_deploy_") {
		t.Fatalf("lease = %+v", job)
	}
	var st struct {
		OperationContext struct {
			EnvironmentVariables map[string]string `json:"environmentVariables"`
		} `json:"operationContext"`
	}
	d.must(json.Unmarshal(job.Settings, &st))
	if st.OperationContext.EnvironmentVariables["API_KEY"] != "s3cret-value" {
		t.Errorf("the runner did not get the secret in the clear: %s", job.Settings)
	}
	if d.get(id)["status"] != "running" {
		t.Errorf("status after lease = %v", d.get(id)["status"])
	}

	// The credential: its stack's reads and its operation, even though prod is protected.
	cred := cliwire.New(d.url, job.Credential)
	var me map[string]any
	d.must(cred.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, &me))
	d.must(cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))
	r, err := d.startRun(cred, d.prod, "update", false)
	d.must(err)
	d.must(r.checkpoint(deployment(2, "")))
	d.must(r.complete("succeeded"))
	var upd []deploy.UpdateInfo
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id + "/updates"}, &upd))
	if len(upd) != 1 || upd[0].UpdateID != r.ID || upd[0].Version != r.Version {
		t.Errorf("updates = %+v, want %s v%d", upd, r.ID, r.Version)
	}
	// Not another operation, not another stack, not the organization's administration.
	_, err = d.startRun(cred, d.prod, "destroy", false)
	wantStatus(t, err, 403)
	d.must(d.createStack(d.admin, "acme", "proj", "other", nil))
	wantStatus(t, cred.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "other")}, nil), 404)
	wantStatus(t, cred.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]string{"name": "x"}}, nil), 403)
	wantStatus(t, cred.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings", Body: map[string]any{}}, nil), 403)
	// A person with write on the protected stack cannot update it.
	_, err = d.startRun(d.dev, d.prod, "update", false)
	wantStatus(t, err, 403)

	// Output: invalid UTF-8 is repaired, a megabyte line is cut.
	// (The body is written by hand: json.Marshal would repair the bytes itself.)
	huge := strings.Repeat("x", 1<<20)
	body := []byte(`{"lease":"` + job.Lease + `","lines":[{"header":"pulumi update"},{"line":"bad ` + "\xff\xfe" + ` utf8\n"},{"line":"` + huge + `\n"}]}`)
	d.must(d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job.ID + "/heartbeat", Body: body}, nil))
	var all []deploy.LogLine
	token := ""
	for range 20 {
		var page deploy.LogsView
		path := d.prod + "/deployments/" + id + "/logs"
		if token != "" {
			path += "?continuationToken=" + token
		}
		d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: path}, &page))
		all = append(all, page.Lines...)
		if page.NextToken == token {
			break
		}
		token = page.NextToken
	}
	if len(all) != 3 || all[0].Header != "pulumi update" || !utf8.ValidString(all[1].Line) || !strings.HasPrefix(all[1].Line, "bad \uFFFD") || len(all[2].Line) > deploy.MaxLineBytes+100 ||
		!strings.Contains(all[2].Line, "truncated") {
		t.Fatalf("logs: %d lines; %q", len(all), all[1].Line)
	}

	d.must(d.complete(job, "succeeded"))
	// The credential died with the run.
	wantStatus(t, cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil), 401)
	got := d.get(id)
	if got["status"] != "succeeded" || got["pulumiOperation"] != "update" || got["initiator"] != "cli" {
		t.Errorf("get = %v", got)
	}
	// The logs now end: an empty token after the last line.
	var end deploy.LogsView
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id + "/logs?continuationToken=" + token}, &end))
	if end.NextToken != "" || len(end.Lines) != 0 {
		t.Errorf("logs after the end = %+v", end)
	}
	var byVersion map[string]any
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/version/1"}, &byVersion))
	if byVersion["id"] != id {
		t.Errorf("by version = %v", byVersion)
	}
	var list deploy.ListView
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments?page=1&pageSize=5"}, &list))
	if list.Total != 1 || len(list.Deployments) != 1 || list.Deployments[0].ID != id {
		t.Errorf("list = %+v", list)
	}

	// The audit log: trigger, start, the credential's uses (with the deployment), end.
	evs, err := listAudit(d.env)
	d.must(err)
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.Details["deployment"] == id {
			seen[ev.Action] = true
		}
		if ev.Action == "deployment:trigger" {
			seen["trigger"] = true
		}
	}
	for _, want := range []string{"trigger", "deployment:start", "stack:update", "deployment:end"} {
		if !seen[want] {
			t.Errorf("no audit event %s for deployment %s (seen %v)", want, id, seen)
		}
	}
}

// TestDeployCancelAndLostRunner: a cancel ends the credential at once (also while the
// runner is away); a runner that stops beating loses its run, which fails, and the next
// run of the stack starts; its old lease is refused.
func TestDeployCancelAndLostRunner(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	c1, err := d.trigger(d.admin, "update")
	d.must(err)
	c2, err := d.trigger(d.admin, "preview")
	d.must(err)
	job := d.lease()
	if job == nil || job.ID != c1["id"] {
		t.Fatalf("lease = %+v", job)
	}
	// One run per stack: the preview waits.
	if j := d.lease(); j != nil {
		t.Fatalf("leased %s while the stack's run is running", j.ID)
	}
	// Cancel while the runner is offline: the credential ends now.
	cred := cliwire.New(d.url, job.Credential)
	d.must(cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/" + job.ID + "/cancel"}, nil))
	wantStatus(t, cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil), 401)
	// The runner, back, hears it at its heartbeat.
	hb, err := d.beat(job)
	d.must(err)
	if !hb.Cancel {
		t.Errorf("heartbeat after cancel = %+v", hb)
	}
	// ...but dies instead of reporting: the lease runs out and the run fails.
	d.clock.Advance(3 * time.Minute)
	j2 := d.lease()
	if j2 == nil || j2.ID != c2["id"] || j2.Operation != "preview" {
		t.Fatalf("next lease = %+v", j2)
	}
	got := d.get(job.ID)
	if got["status"] != "failed" {
		t.Errorf("the lost run's status = %v", got["status"])
	}
	_, err = d.beat(job)
	wantStatus(t, err, 403) // the lease passed
	wantStatus(t, d.complete(job, "succeeded"), 403)
	if d.get(job.ID)["status"] != "failed" {
		t.Error("a lost lease's completion changed the run")
	}
	// A preview credential previews, never updates.
	pcred := cliwire.New(d.url, j2.Credential)
	_, err = d.startRun(pcred, d.prod, "preview", true)
	d.must(err)
	_, err = d.startRun(pcred, d.prod, "update", false)
	wantStatus(t, err, 403)
	// The credential lives only as long as its lease (plus the margin).
	d.clock.Advance(10 * time.Minute)
	wantStatus(t, pcred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil), 401)
	// Pause: queued runs wait.
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/pause"}, nil))
	_, err = d.trigger(d.admin, "update")
	d.must(err)
	if j := d.lease(); j != nil {
		t.Fatalf("leased %s of a paused stack", j.ID)
	}
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/resume"}, nil))
	if j := d.lease(); j == nil {
		t.Fatal("nothing leased after resume")
	}
	// A revoked pool's token is refused.
	var pools struct {
		AgentPools []struct {
			ID string `json:"id"`
		} `json:"agentPools"`
	}
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/agent-pools"}, &pools))
	d.must(d.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/agent-pools/" + pools.AgentPools[0].ID}, nil))
	wantStatus(t, d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/lease", Body: deploy.LeaseRequest{}}, nil), 401)
}

// fakeVCS is a GitHub/GitLab API on loopback that records commit statuses and pull/merge
// request comments: a comment post (POST .../comments, .../notes) answers 201 with a new
// id, an edit (PATCH, PUT) of a known id 200 and of another 404; with fail set, every
// comment call answers 500.
type fakeVCS struct {
	mu       sync.Mutex
	statuses []string // "METHOD path body-or-query auth=..." of every call
	comments map[string]string
	nextID   int
	fail     bool
	files    int // GET .../files calls (a pull request's changed files)
	srv      *httptest.Server
}

func newFakeVCS(t *testing.T) *fakeVCS {
	f := &fakeVCS{comments: map[string]string{}, nextID: 1000}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.HasSuffix(r.URL.Path, "/files") {
			f.mu.Lock()
			f.files++
			f.mu.Unlock()
			_, _ = w.Write([]byte(`[{"filename":"infra/main.go"}]`))
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		f.statuses = append(f.statuses, r.Method+" "+r.URL.Path+" "+string(b)+r.URL.RawQuery+" auth="+r.Header.Get("Authorization")+r.Header.Get("PRIVATE-TOKEN"))
		isComment := strings.Contains(r.URL.Path, "/comments") || strings.Contains(r.URL.Path, "/notes")
		switch {
		case !isComment:
			w.WriteHeader(201)
		case f.fail:
			w.WriteHeader(500)
		case r.Method == "POST":
			f.nextID++
			id := strconv.Itoa(f.nextID)
			f.comments[id] = string(b)
			w.WriteHeader(201)
			_, _ = w.Write([]byte(`{"id":` + id + `,"body":"..."}`))
		default:
			id := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			if _, ok := f.comments[id]; !ok {
				w.WriteHeader(404)
				return
			}
			f.comments[id] = string(b)
			_, _ = w.Write([]byte(`{"id":` + id + `}`))
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// calls returns the recorded calls that start with prefix ("POST /repos/...").
func (f *fakeVCS) calls(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, s := range f.statuses {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

func (f *fakeVCS) wait(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		f.mu.Lock()
		for _, s := range f.statuses {
			if strings.Contains(s, want) {
				f.mu.Unlock()
				return
			}
		}
		f.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	t.Fatalf("no status %q among %q", want, f.statuses)
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// TestDeployGitHubWebhooks: signatures, repositories nobody follows, push to the branch
// (update), pull request touching the paths (preview), commit statuses to the API.
func TestDeployGitHubWebhooks(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token")
	})
	d.must(d.settings([]byte(gitSettings)))
	anon := cliwire.New(d.url, "")
	post := func(event string, body []byte, sig string) error {
		h := http.Header{"X-GitHub-Event": {event}, "X-GitHub-Delivery": {"d-1"}}
		if sig != "" {
			h.Set("X-Hub-Signature-256", sig)
		}
		return anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true, Header: h}, nil)
	}
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"Acme/Infra"},"sender":{"login":"octo"},
		"commits":[{"added":[],"removed":[],"modified":["infra/main.go"]}]}`)
	wantStatus(t, post("push", push, ""), 401)
	wantStatus(t, post("push", push, sign("wrong", push)), 401)
	wantStatus(t, post("push", push, "sha256=zz"), 401)
	// Audited, as failures.
	evs, _ := listAudit(d.env)
	fails := 0
	for _, ev := range evs {
		if ev.Action == "deployment:webhook:github" && ev.Outcome == gatehouse.OutcomeFailure {
			fails++
		}
	}
	if fails != 3 {
		t.Errorf("%d failed webhook deliveries audited, want 3", fails)
	}
	// Nobody follows this repository: 204, nothing runs.
	other := []byte(`{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"acme/other"},"commits":[]}`)
	d.must(post("push", other, sign(secret, other)))
	// A push to another branch, or outside the paths: nothing runs.
	side := []byte(`{"ref":"refs/heads/side","after":"abc","repository":{"full_name":"acme/infra"},"commits":[{"modified":["infra/a"]}]}`)
	d.must(post("push", side, sign(secret, side)))
	docs := []byte(`{"ref":"refs/heads/main","after":"abc","repository":{"full_name":"acme/infra"},"commits":[{"modified":["docs/a.md"]}]}`)
	d.must(post("push", docs, sign(secret, docs)))
	if j := d.lease(); j != nil {
		t.Fatalf("a run (%s) for an event no stack wants", j.ID)
	}
	// The push to main touching infra/: an update of prod at that commit.
	d.must(post("push", push, sign(secret, push)))
	job := d.lease()
	if job == nil || job.Operation != "update" || !strings.Contains(string(job.Settings), `"commit":"abc123"`) {
		t.Fatalf("push lease = %+v", job)
	}
	gh.wait(t, `POST /repos/Acme/Infra/statuses/abc123 {"context":"gatehouse/acme/proj/prod","description":"pulumi update: running","state":"pending"} auth=Bearer gh-token`)
	d.must(d.complete(job, "succeeded"))
	gh.wait(t, `"state":"success"`)
	// A pull request into main: a preview (its files come from the API).
	pr := []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	d.must(post("pull_request", pr, sign(secret, pr)))
	job = d.lease()
	if job == nil || job.Operation != "preview" || !strings.Contains(string(job.Settings), `"branch":"feature"`) {
		t.Fatalf("PR lease = %+v", job)
	}
	d.must(d.complete(job, "failed"))
	gh.wait(t, `statuses/def456 {"context":"gatehouse/acme/proj/prod","description":"pulumi preview: failed","state":"failure"}`)
}

// TestDeployPRFilesOncePerEvent: when several stacks follow a repository with path
// filters, a pull request's changed files are asked of GitHub once per delivery, and not
// while a store transaction is open (found in read-back: once per stack, inside it).
func TestDeployPRFilesOncePerEvent(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token") })
	d.must(d.settings([]byte(gitSettings)))
	d.must(d.createStack(d.admin, "acme", "proj", "staging", nil))
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "staging") + "/deployments/settings", Body: []byte(gitSettings)}, nil))
	pr := []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	d.must(cliwire.New(d.url, "").Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: pr, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"pull_request"}, "X-GitHub-Delivery": {"d-7"}, "X-Hub-Signature-256": {sign(secret, pr)}}}, nil))
	for i := 0; i < 2; i++ {
		if job := d.lease(); job == nil || job.Operation != "preview" {
			t.Fatalf("run %d: lease = %+v", i, job)
		}
	}
	gh.mu.Lock()
	defer gh.mu.Unlock()
	if gh.files != 1 {
		t.Fatalf("the pull request's files were asked %d times for one delivery, want 1", gh.files)
	}
}

// TestDeployGitLabWebhooks: X-Gitlab-Token, push to the branch, statuses to the API.
func TestDeployGitLabWebhooks(t *testing.T) {
	gl := newFakeVCS(t)
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitLab = deploy_VCS("gl-secret", gl.srv.URL, "gl-token") })
	d.must(d.settings(map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "git@gitlab.example.com:acme/infra.git", "branch": "main"}}}))
	anon := cliwire.New(d.url, "")
	push := []byte(`{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"c0ffee","user_username":"gl-user",
		"project":{"path_with_namespace":"acme/infra","git_http_url":"https://gitlab.example.com/acme/infra.git"},"commits":[]}`)
	post := func(tok string) error {
		return anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/gitlab", Body: push, NoAuth: true,
			Header: http.Header{"X-Gitlab-Event": {"Push Hook"}, "X-Gitlab-Token": {tok}}}, nil)
	}
	wantStatus(t, post("wrong"), 401)
	d.must(post("gl-secret"))
	job := d.lease()
	if job == nil || job.Operation != "update" {
		t.Fatalf("lease = %+v", job)
	}
	d.must(d.complete(job, "succeeded"))
	gl.wait(t, "POST /projects/acme/infra/statuses/c0ffee description=pulumi+update%3A+succeeded&name=gatehouse%2Facme%2Fproj%2Fprod&state=success auth=gl-token")
}

func deploy_VCS(secret, api, tok string) deploy.VCS {
	return deploy.VCS{WebhookSecret: secret, APIURL: api, Token: tok}
}

// TestDeployRunRequestAsTheCLIMarshalsIt: pulumi deployment run sends every context with
// empty fields (operationContext.operation "", preRunCommands null, agentPoolID null);
// they are accepted and do not erase the saved settings. (The first version answered 400.)
func TestDeployRunRequestAsTheCLIMarshalsIt(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	pool := apitype.AgentPoolIDMarshaller("")
	req := apitype.CreateDeploymentRequest{Op: "update", InheritSettings: true, Executor: &apitype.ExecutorContext{},
		Operation: &apitype.OperationContext{EnvironmentVariables: map[string]apitype.SecretValue{"EXTRA": {Value: "x", Secret: true}}}, AgentPoolID: &pool}
	body, err := json.Marshal(req)
	d.must(err)
	if !bytes.Contains(body, []byte(`"operation":""`)) || !bytes.Contains(body, []byte(`"preRunCommands":null`)) {
		t.Fatalf("the CLI's body changed: %s", body)
	}
	var out map[string]any
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: body, Header: http.Header{"X-Pulumi-Deployment-Initiator": {"automation-api"}}}, &out))
	job := d.lease()
	if job == nil {
		t.Fatal("nothing leased")
	}
	var st struct {
		OperationContext struct {
			PreRunCommands       []string          `json:"preRunCommands"`
			EnvironmentVariables map[string]string `json:"environmentVariables"`
		} `json:"operationContext"`
	}
	d.must(json.Unmarshal(job.Settings, &st))
	env := st.OperationContext.EnvironmentVariables
	if len(st.OperationContext.PreRunCommands) != 1 || env["EXTRA"] != "x" || env["API_KEY"] != "s3cret-value" {
		t.Errorf("the run's settings: %s", job.Settings)
	}
}
