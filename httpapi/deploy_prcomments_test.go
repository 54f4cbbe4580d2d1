package httpapi_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// waitCalls waits until the fake has recorded at least n calls starting with prefix.
func (f *fakeVCS) waitCalls(t *testing.T, prefix string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := f.calls(prefix)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			f.mu.Lock()
			defer f.mu.Unlock()
			t.Fatalf("%d calls %q, want %d; all calls: %q", len(got), prefix, n, f.statuses)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// commentCall splits a recorded comment call into its comment body and auth header.
func commentCall(t *testing.T, call string) (body, auth string) {
	t.Helper()
	i, j := strings.Index(call, " {"), strings.LastIndex(call, " auth=")
	if i < 0 || j < i {
		t.Fatalf("not a comment call: %q", call)
	}
	var b struct {
		Body string `json:"body"`
	}
	if err := json.Unmarshal([]byte(call[i+1:j]), &b); err != nil {
		t.Fatalf("comment call %q: %v", call, err)
	}
	return b.Body, call[j+len(" auth="):]
}

func commentTweak(c *httpapi.Config) {
	c.Deploy.ConsoleURL = "https://gatehouse.example.com"
	c.Deploy.CommentBackoff = 10 * time.Millisecond
}

// finishPreview runs job's preview with its credential (an update whose summary counts
// create 2, same 1, with a log line), then completes the job with status and a message.
func (d *deployEnv) finishPreview(job *deploy.Job, status string) {
	d.t.Helper()
	cred := cliwire.New(d.url, job.Credential)
	r, err := d.startRun(cred, d.prod, "preview", true)
	d.must(err)
	summary := apitype.EngineEvent{Sequence: 1, SummaryEvent: &apitype.SummaryEvent{ResourceChanges: map[apitype.OpType]int{"create": 2, "same": 1}}}
	d.must(r.lease("POST", "/events/batch", apitype.EngineEventBatch{Events: []apitype.EngineEvent{summary}}, nil))
	d.must(r.complete("succeeded"))
	_, err = d.beat(job, deploy.LogLine{Line: "LOG-LINE-MARKER token=abc\n"})
	d.must(err)
	d.must(d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job.ID + "/complete",
		Body: deploy.LeaseCall{Lease: job.Lease, Status: status, Message: "RUNNER-MESSAGE-MARKER"}}, nil))
}

// noSecrets fails when a comment body holds a settings secret, a log line or the runner's
// message.
func noSecrets(t *testing.T, body string) {
	t.Helper()
	for _, bad := range []string{"s3cret-value", "ghp_supersecret", "LOG-LINE-MARKER", "RUNNER-MESSAGE-MARKER", "token=abc"} {
		if strings.Contains(body, bad) {
			t.Errorf("comment holds %q: %s", bad, body)
		}
	}
}

// TestDeployPRCommentsGitHub: a pull request's preview ends with one comment on the pull
// request (stack, operation, status, resource changes, the deployment's link; nothing
// secret, no log line), posted with the server's token; the run of a later push to the
// pull request edits that comment in place (PATCH), and a comment deleted on GitHub is
// posted anew.
func TestDeployPRCommentsGitHub(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token")
		commentTweak(c)
	})
	d.must(d.settings([]byte(gitSettings)))
	anon := cliwire.New(d.url, "")
	pr := func(action, sha string) {
		body := []byte(`{"action":"` + action + `","number":7,"pull_request":{"head":{"ref":"feature","sha":"` + sha + `","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
			Header: http.Header{"X-GitHub-Event": {"pull_request"}, "X-GitHub-Delivery": {"d-" + sha}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
	}
	pr("opened", "def456")
	job := d.lease()
	if job == nil || job.Operation != "preview" {
		t.Fatalf("PR lease = %+v", job)
	}
	d.finishPreview(job, "succeeded")
	posts := gh.waitCalls(t, "POST /repos/acme/infra/issues/7/comments ", 1)
	body, auth := commentCall(t, posts[0])
	want := "<!-- gatehouse-deployment acme/proj/prod -->\n" +
		"### ✅ Gatehouse: `pulumi preview` of `acme/proj/prod` succeeded\n\n" +
		"- Deployment: 1 ([details](https://gatehouse.example.com/api/stacks/acme/proj/prod/deployments/" + job.ID + "))\n" +
		"- Commit: def456\n" +
		"- Resources: create 2, same 1\n"
	if body != want || auth != "Bearer gh-token" {
		t.Errorf("comment = %q (auth %q)\nwant %q", body, auth, want)
	}
	noSecrets(t, body)
	// The commit status is still posted.
	gh.wait(t, `POST /repos/acme/infra/statuses/def456 {"context":"gatehouse/acme/proj/prod","description":"pulumi preview: succeeded","state":"success"}`)

	// A later push to the pull request: its run edits the comment.
	pr("synchronize", "0a1b2c")
	job2 := d.lease()
	if job2 == nil || job2.Operation != "preview" {
		t.Fatalf("second PR lease = %+v", job2)
	}
	d.must(d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job2.ID + "/complete",
		Body: deploy.LeaseCall{Lease: job2.Lease, Status: "failed", Message: "RUNNER-MESSAGE-MARKER"}}, nil))
	edits := gh.waitCalls(t, "PATCH /repos/acme/infra/issues/comments/1001 ", 1)
	body, auth = commentCall(t, edits[0])
	want = "<!-- gatehouse-deployment acme/proj/prod -->\n" +
		"### ❌ Gatehouse: `pulumi preview` of `acme/proj/prod` failed\n\n" +
		"- Deployment: 2 ([details](https://gatehouse.example.com/api/stacks/acme/proj/prod/deployments/" + job2.ID + "))\n" +
		"- Commit: 0a1b2c\n" +
		"- Resources: no update ran\n"
	if body != want || auth != "Bearer gh-token" {
		t.Errorf("edited comment = %q (auth %q)\nwant %q", body, auth, want)
	}
	noSecrets(t, body)
	if n := len(gh.calls("POST /repos/acme/infra/issues/7/comments")); n != 1 {
		t.Errorf("%d comments posted on the pull request, want 1 (then edits)", n)
	}

	// Someone deleted the comment: the next run posts a new one and edits that later.
	gh.mu.Lock()
	delete(gh.comments, "1001")
	gh.mu.Unlock()
	pr("synchronize", "0d0d0d")
	job3 := d.lease()
	d.must(d.complete(job3, "succeeded"))
	gh.waitCalls(t, "PATCH /repos/acme/infra/issues/comments/1001 ", 2)
	gh.waitCalls(t, "POST /repos/acme/infra/issues/7/comments ", 2)
	pr("synchronize", "0e0e0e")
	job4 := d.lease()
	d.must(d.complete(job4, "succeeded"))
	gh.waitCalls(t, "PATCH /repos/acme/infra/issues/comments/1002 ", 1)

	// A push to the branch (no pull request): a commit status, no comment.
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"acme/infra"},"sender":{"login":"octo"},"commits":[{"modified":["infra/main.go"]}]}`)
	d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: push, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"push"}, "X-GitHub-Delivery": {"d-push"}, "X-Hub-Signature-256": {sign(secret, push)}}}, nil))
	job5 := d.lease()
	d.must(d.complete(job5, "succeeded"))
	gh.wait(t, `statuses/abc123 {"context":"gatehouse/acme/proj/prod","description":"pulumi update: succeeded","state":"success"}`)
	if n := len(gh.calls("POST /repos/acme/infra/issues/")); n != 2 {
		t.Errorf("%d comment posts, want 2 (the push made none)", n)
	}
}

// TestDeployMRCommentsGitLab: a merge request's preview ends with one note on the merge
// request (PRIVATE-TOKEN, the project's path escaped), and the next run of the merge
// request edits it (PUT).
func TestDeployMRCommentsGitLab(t *testing.T) {
	gl := newFakeVCS(t)
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Deploy.GitLab = deploy_VCS("gl-secret", gl.srv.URL, "gl-token")
		commentTweak(c)
	})
	d.must(d.settings(map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": "git@gitlab.example.com:acme/infra.git", "branch": "main"}}}))
	anon := cliwire.New(d.url, "")
	mr := func(action, sha string) {
		body := []byte(`{"object_kind":"merge_request","user":{"username":"gl-user"},
			"project":{"path_with_namespace":"acme/infra","git_http_url":"https://gitlab.example.com/acme/infra.git"},
			"object_attributes":{"iid":5,"action":"` + action + `","source_branch":"feature","target_branch":"main","last_commit":{"id":"` + sha + `"}}}`)
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/gitlab", Body: body, NoAuth: true,
			Header: http.Header{"X-Gitlab-Event": {"Merge Request Hook"}, "X-Gitlab-Token": {"gl-secret"}}}, nil))
	}
	mr("open", "c0ffee")
	job := d.lease()
	if job == nil || job.Operation != "preview" {
		t.Fatalf("MR lease = %+v", job)
	}
	d.finishPreview(job, "succeeded")
	posts := gl.waitCalls(t, "POST /projects/acme/infra/merge_requests/5/notes ", 1)
	body, auth := commentCall(t, posts[0])
	want := "<!-- gatehouse-deployment acme/proj/prod -->\n" +
		"### ✅ Gatehouse: `pulumi preview` of `acme/proj/prod` succeeded\n\n" +
		"- Deployment: 1 ([details](https://gatehouse.example.com/api/stacks/acme/proj/prod/deployments/" + job.ID + "))\n" +
		"- Commit: c0ffee\n" +
		"- Resources: create 2, same 1\n"
	if body != want || auth != "gl-token" {
		t.Errorf("note = %q (auth %q)\nwant %q", body, auth, want)
	}
	noSecrets(t, body)
	mr("update", "beef01")
	job2 := d.lease()
	if job2 == nil {
		t.Fatal("nothing leased for the merge request's update")
	}
	d.must(d.complete(job2, "succeeded"))
	edits := gl.waitCalls(t, "PUT /projects/acme/infra/merge_requests/5/notes/1001 ", 1)
	if body, auth := commentCall(t, edits[0]); !strings.Contains(body, "- Deployment: 2 (") || !strings.Contains(body, "- Commit: beef01\n") || auth != "gl-token" {
		t.Errorf("edited note = %q (auth %q)", body, auth)
	}
	if n := len(gl.calls("POST /projects/acme/infra/merge_requests/5/notes")); n != 1 {
		t.Errorf("%d notes posted, want 1", n)
	}
}

// TestDeployPRCommentFailureKeepsTheRun: a GitHub API that answers 500 to comments is tried
// a bounded number of times (3), and the run's status is what its runner reported.
func TestDeployPRCommentFailureKeepsTheRun(t *testing.T) {
	gh := newFakeVCS(t)
	gh.mu.Lock()
	gh.fail = true
	gh.mu.Unlock()
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token")
		commentTweak(c)
	})
	d.must(d.settings([]byte(gitSettings)))
	body := []byte(`{"action":"opened","number":9,"pull_request":{"head":{"ref":"feature","sha":"abcdef","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`)
	d.must(cliwire.New(d.url, "").Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"pull_request"}, "X-GitHub-Delivery": {"d-9"}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
	job := d.lease()
	if job == nil {
		t.Fatal("nothing leased")
	}
	d.must(d.complete(job, "succeeded"))
	gh.waitCalls(t, "POST /repos/acme/infra/issues/9/comments ", 3)
	time.Sleep(200 * time.Millisecond) // a fourth try would have come by now (backoff 10ms, 20ms)
	if n := len(gh.calls("POST /repos/acme/infra/issues/9/comments ")); n != 3 {
		t.Errorf("%d tries, want 3", n)
	}
	if got := d.get(job.ID); got["status"] != "succeeded" {
		t.Errorf("the run's status = %v, want succeeded", got["status"])
	}
	// A later run of the pull request, with the API back, posts the comment.
	gh.mu.Lock()
	gh.fail = false
	gh.mu.Unlock()
	body = []byte(strings.Replace(string(body), `"opened"`, `"synchronize"`, 1))
	d.must(cliwire.New(d.url, "").Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
		Header: http.Header{"X-GitHub-Event": {"pull_request"}, "X-GitHub-Delivery": {"d-9b"}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
	job2 := d.lease()
	d.must(d.complete(job2, "succeeded"))
	gh.waitCalls(t, "POST /repos/acme/infra/issues/9/comments ", 4)
}
