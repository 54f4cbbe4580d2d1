package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestDeployTriggerOverridesNeedSettingsRight: a person with write on the stack (who may
// trigger) may not override what the stored settings decide (the repository, the
// pre-run commands, the variables, the image, the pool; or not inherit them): that runs
// code of their choosing with the settings' secrets (the git token, secret variables) and
// a pipeline credential. Only the settings' own branch, commit and repository may be
// given (TestDeployTriggerBranchNeedsSettings). A stack admin may.
func TestDeployTriggerOverridesNeedSettingsRight(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	post := func(c *cliwire.Client, body string) error {
		return c.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: []byte(body),
			Header: http.Header{"X-Pulumi-Deployment-Initiator": {"api"}}}, nil)
	}
	for _, body := range []string{
		`{"operation":"update","inheritSettings":true,"sourceContext":{"git":{"repoUrl":"https://evil.example/x.git"}}}`,
		`{"operation":"preview","inheritSettings":true,"operationContext":{"operation":"","preRunCommands":["env"]}}`,
		`{"operation":"update","operationContext":{"environmentVariables":{"GIT_TRACE":"1"}}}`,
		`{"operation":"update","executorContext":{"executorImage":{"reference":"evil/image"}}}`,
		`{"operation":"update","agentPoolID":"other"}`,
		`{"operation":"update","sourceContext":{"git":{"repoDir":"other"}}}`,
		`{"operation":"update","inheritSettings":false,"sourceContext":{"git":{"repoUrl":"https://evil.example/x.git","branch":"main"}}}`,
	} {
		err := post(d.dev, body)
		if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "overrides the stack's deployment settings") {
			t.Errorf("a stack writer's trigger %s: %v, want 403 (overrides the settings)", body, err)
		}
	}
	if j := d.lease(); j != nil {
		t.Fatalf("a refused trigger queued run %s", j.ID)
	}
	// The settings' own branch (as the CLI sends it with --git-branch) and repository, and
	// the CLI's empty fields, are the writer's to give.
	d.must(post(d.dev, `{"operation":"update","inheritSettings":true,"sourceContext":{"git":{"branch":"refs/heads/main","repoUrl":"https://git.example.com/acme/infra.git"}},
		"operationContext":{"operation":"","preRunCommands":null,"environmentVariables":{}},"executorContext":{}}`))
	if j := d.lease(); j == nil {
		t.Fatal("a trigger of the settings' own branch was not queued")
	} else {
		d.must(d.complete(j, "succeeded"))
	}
	// A stack admin may override.
	d.must(post(d.admin, `{"operation":"update","operationContext":{"preRunCommands":["echo admin"]}}`))
}

// TestDeployTriggerBranchNeedsSettings (found in review): a run executes the code of the
// branch or commit it is given, with the settings' secret variables, their git token and
// a credential that decrypts the stack's secrets. Choosing a source other than the
// settings' own (a branch, a commit, a repository, a directory) is therefore deciding the
// settings: it needs stack:deploy:settings. A reader (no decrypt) who pushed a branch may
// not have it previewed, and a writer of a protected stack may not have an unreviewed
// branch updated; both may still trigger the settings' own source.
func TestDeployTriggerBranchNeedsSettings(t *testing.T) {
	d := newDeployEnv(t)
	a := d.admin
	d.must(d.settings([]byte(gitSettings)))
	var enc apitype.EncryptValueResponse
	d.must(a.Do(cliwire.Call{Method: "POST", Path: d.prod + "/encrypt", Body: apitype.EncryptValueRequest{Plaintext: []byte(`"db-password"`)}}, &enc))

	var rd struct {
		TokenValue string `json:"tokenValue"`
	}
	d.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "reader", "role": "member"}}, &rd))
	d.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "readers"}}, nil))
	d.must(a.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/readers", Body: map[string]any{"memberAction": "add", "member": "reader",
		"addGrant": map[string]any{"stack": "proj/prod", "permission": "read"}}}, nil))
	reader := cliwire.New(d.url, rd.TokenValue)

	// By hand the reader may not decrypt.
	err := reader.Do(cliwire.Call{Method: "POST", Path: d.prod + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, nil)
	if err == nil || !strings.Contains(err.Error(), "403") {
		t.Fatalf("reader /decrypt by hand: %v, want 403", err)
	}
	post := func(c *cliwire.Client, body string) error {
		return c.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments", Body: []byte(body),
			Header: http.Header{"X-Pulumi-Deployment-Initiator": {"api"}}}, nil)
	}

	// The reader triggers a preview of a branch they pushed: refused, nothing queued.
	err = post(reader, `{"operation":"preview","inheritSettings":true,"sourceContext":{"git":{"branch":"refs/heads/attacker"}}}`)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "sourceContext.git.branch") || !strings.Contains(err.Error(), "stack:deploy:settings") {
		t.Errorf("reader's preview trigger of their branch: %v, want 403 naming sourceContext.git.branch and stack:deploy:settings", err)
	}
	if job := d.lease(); job != nil {
		// Had it run: the branch's code holds a credential that decrypts.
		cred := cliwire.New(d.url, job.Credential)
		var dec apitype.DecryptValueResponse
		if err := cred.Do(cliwire.Call{Method: "POST", Path: d.prod + "/decrypt", Body: apitype.DecryptValueRequest{Ciphertext: enc.Ciphertext}}, &dec); err == nil {
			t.Errorf("a reader's preview run of their branch decrypted the stack secret %q (and its environment holds the settings' secret variables)", dec.Plaintext)
		}
		d.must(d.complete(job, "succeeded"))
		t.Fatalf("a reader's preview of their branch was queued (%s, settings %s)", job.ID, job.Settings)
	}
	// Nor a commit, a repository or a directory of their choosing; for writers neither.
	for _, c := range []struct {
		who  *cliwire.Client
		body string
	}{
		{reader, `{"operation":"preview","sourceContext":{"git":{"commit":"0123456789abcdef0123456789abcdef01234567"}}}`},
		{reader, `{"operation":"preview","sourceContext":{"git":{"repoUrl":"https://git.example.com/attacker/infra.git"}}}`},
		{d.dev, `{"operation":"update","inheritSettings":true,"sourceContext":{"git":{"branch":"dev-unreviewed"}}}`},
		{d.dev, `{"operation":"update","sourceContext":{"git":{"branch":"main","commit":"0123456789abcdef0123456789abcdef01234567"}}}`},
	} {
		if err := post(c.who, c.body); err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "overrides the stack's deployment settings") {
			t.Errorf("trigger %s: %v, want 403 (overrides the settings)", c.body, err)
		}
	}
	if job := d.lease(); job != nil {
		t.Fatalf("a refused trigger queued run %s (settings %s)", job.ID, job.Settings)
	}

	// The settings' own source: the reader previews it (the settings editor's code).
	d.must(post(reader, `{"operation":"preview","sourceContext":{"git":{"branch":"main","repoUrl":"https://git.example.com/acme/infra.git"}}}`))
	job := d.lease()
	if job == nil {
		t.Fatal("the reader's preview of the settings' branch was not queued")
	}
	if !strings.Contains(string(job.Settings), `"branch":"main"`) {
		t.Errorf("the run's settings: %s, want the settings' branch", job.Settings)
	}
	d.must(d.complete(job, "succeeded"))

	// A stack admin (who may change the settings) chooses a branch; a webhook's run of a
	// pull request's branch stays the settings' (TestDeploymentPullRequestRunOpensNoEnvironment).
	d.must(post(a, `{"operation":"preview","sourceContext":{"git":{"branch":"feature"}}}`))
	if job = d.lease(); job == nil || !strings.Contains(string(job.Settings), `"branch":"feature"`) {
		t.Fatalf("the admin's branch run: %+v", job)
	}
	d.must(d.complete(job, "succeeded"))

	// Queue itself refuses a source beyond the settings it reads in its transaction unless
	// the trigger may override (the handler decided it, or a webhook's event chose it): the
	// settings may change between the handler's look and the queueing.
	var st *gatehouse.Stack
	d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) (err error) { st, err = tx.GetStack(1, "proj", "prod"); return err }))
	change := func(fn func(gatehouse.Tx) error) error { return d.srv.Store.Update(context.Background(), fn) }
	_, err = d.srv.API.Deploy().Queue(context.Background(), change, st, deploy.Trigger{Body: []byte(`{"operation":"preview","sourceContext":{"git":{"branch":"attacker"}}}`), Initiator: "api"})
	if !gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
		t.Errorf("Queue of another branch without the right to override: %v, want forbidden", err)
	}
	_, err = d.srv.API.Deploy().Queue(context.Background(), change, st, deploy.Trigger{Body: []byte(`{"operation":"preview","sourceContext":{"git":{"branch":"main"}}}`), Initiator: "api"})
	d.must(err)
	if job = d.lease(); job == nil {
		t.Fatal("Queue of the settings' own branch queued nothing")
	}
	d.must(d.complete(job, "succeeded"))

	// The refusals are audited as denials of stack:deploy:settings.
	evs, err := listAudit(d.env)
	d.must(err)
	n := 0
	for _, ev := range evs {
		if ev.Action == string(authz.StackDeploySettings) && ev.Outcome == gatehouse.OutcomeDenied && ev.Details["overrides"] != "" {
			n++
		}
	}
	if n < 5 {
		t.Errorf("%d audited denials of the refused triggers, want 5", n)
	}
}
