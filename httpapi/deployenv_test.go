package httpapi_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// deployEnvs gives acme environments proj/app (a pulumiConfig value and a secret) and
// proj/vault (a secret nobody but admins may open); team devs (member dev) may open
// proj/app.
func (d *deployEnv) deployEnvs() {
	d.t.Helper()
	a := d.esc(d.admin.Token)
	for _, n := range []string{"app", "vault"} {
		a.want(200, "POST", escBase+"/acme", []byte(`{"project":"proj","name":"`+n+`"}`))
	}
	a.want(200, "PATCH", escBase+"/acme/proj/app", []byte("values:\n  token:\n    fn::secret: app-s3cret\n  pulumiConfig:\n    greeting: hello-from-app\n"))
	a.want(200, "PATCH", escBase+"/acme/proj/vault", []byte("values:\n  root:\n    fn::secret: vault-s3cret\n"))
	d.envGrant("devs", "proj", "app", "open")
}

// runCred triggers a run as c, leases it and returns the job's credential.
func (d *deployEnv) runCred(c *cliwire.Client, op string) (string, string) {
	d.t.Helper()
	_, err := d.trigger(c, op)
	d.must(err)
	job := d.lease()
	if job == nil {
		d.t.Fatal("nothing to lease")
	}
	return job.ID, job.Credential
}

// openAs opens an anonymous definition importing imports, as the CLI does for a stack's
// `environment:` (yaml/open, then a read of the session), and returns the values.
func openAs(c escClient, imports string) (escResp, string) {
	c.t.Helper()
	r := c.do("POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":[`+imports+`]}`))
	if r.status != 200 {
		return r, ""
	}
	var opened struct {
		ID string `json:"id"`
	}
	r.json(c.t, &opened)
	v := c.want(200, "GET", escBase+"/acme/yaml/open/"+opened.ID, nil)
	return r, string(v.body)
}

// TestDeploymentCredentialOpensEnvironments: a run's credential opens the environments
// the person who triggered it may open (directly and through an anonymous yaml/open, as
// the CLI opens a stack's `environment:`), decided at each call for that person: never
// another environment, never a write, and nothing once the person lost the right or the
// run ended.
func TestDeploymentCredentialOpensEnvironments(t *testing.T) {
	d := newDeployEnv(t)
	d.deployEnvs()
	d.must(d.settings([]byte(gitSettings)))
	id, cv := d.runCred(d.dev, "update")
	cred := d.esc(cv)
	app := escBase + "/acme/proj/app"
	vault := escBase + "/acme/proj/vault"

	// Stored on the run: dev's token, by ID.
	var actsFor gatehouse.Principal
	d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		dep, err := tx.GetDeployment(id)
		if err == nil {
			actsFor = dep.ActsFor
		}
		return err
	}))
	if actsFor.Kind != gatehouse.PrincipalToken || actsFor.ID == "" {
		t.Fatalf("the run acts for %+v, want dev's token", actsFor)
	}

	// What the CLI does for `environment: [proj/app]`, and the direct reads and opens.
	if r, vals := openAs(cred, `"proj/app"`); r.status != 200 || !strings.Contains(vals, "hello-from-app") || !strings.Contains(vals, "app-s3cret") {
		t.Fatalf("yaml/open of proj/app: %d %s %s", r.status, r.body, vals)
	}
	cred.want(200, "POST", escBase+"/acme/yaml/check", []byte(`{"imports":["proj/app"]}`))
	var opened struct {
		ID string `json:"id"`
	}
	cred.want(200, "POST", app+"/open?duration=2h0m0s", nil).json(t, &opened)
	if v := cred.want(200, "GET", app+"/open/"+opened.ID, nil); !strings.Contains(string(v.body), "app-s3cret") {
		t.Fatalf("open session: %s", v.body)
	}
	cred.want(200, "GET", app, nil)
	cred.want(200, "POST", app+"/check?showSecrets=true", nil)
	// The session is the credential's own: the person's token does not read it.
	d.esc(d.dev.Token).want(404, "GET", app+"/open/"+opened.ID, nil)

	// Not an environment dev cannot open: hidden, as it is from dev, with a message naming
	// the run and dev.
	r := cred.want(404, "POST", vault+"/open?duration=2h0m0s", nil)
	if !strings.Contains(string(r.body), id) || !strings.Contains(string(r.body), "dev") {
		t.Errorf("refusal does not name the deployment and the principal: %s", r.body)
	}
	wantDiags(t, cred.do("POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["proj/vault"]}`)), "not found")
	wantDiags(t, cred.do("POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["proj/app","proj/vault"]}`)), "not found")

	// Never a write, even where dev may write (dev gets write on app for this).
	d.envGrant("devs", "proj", "app", "write")
	d.esc(d.dev.Token).want(200, "POST", app+"/versions/tags", []byte(`{"name":"bydev","revision":1}`))
	for _, c := range []struct{ method, path, body string }{
		{"PATCH", app, "values:\n  x: 1\n"},
		{"DELETE", app, ""},
		{"POST", app + "/versions/tags", `{"name":"t2","revision":1}`},
		{"PATCH", app + "/versions/tags/bydev", `{"revision":2}`},
		{"POST", app + "/tags", `{"name":"k","value":"v"}`},
		{"PATCH", app + "/settings", `{"deletionProtected":false}`},
		{"POST", app + "/versions/1/retract", `{}`},
		{"POST", escBase + "/acme", `{"project":"proj","name":"new"}`},
	} {
		var body []byte
		if c.body != "" {
			body = []byte(c.body)
		}
		r := cred.do(c.method, c.path, body)
		if r.status != 403 {
			t.Errorf("%s %s with a deployment credential: %d %s, want 403", c.method, c.path, r.status, r.body)
		}
	}

	// Decided now: dev's grant reduced to read: open refused (403, naming both), read kept.
	d.envGrant("devs", "proj", "app", "read")
	r = cred.want(403, "POST", app+"/open?duration=2h0m0s", nil)
	if !strings.Contains(string(r.body), "deployment "+id) || !strings.Contains(string(r.body), "dev") {
		t.Errorf("refusal does not name the deployment and the principal: %s", r.body)
	}
	cred.want(200, "GET", app, nil)
	if r, _ := openAs(cred, `"proj/app"`); r.status != 400 {
		t.Fatalf("yaml/open after dev lost open: %d %s", r.status, r.body)
	}
	// Grant removed: nothing.
	d.must(d.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"removeEnvironment": map[string]string{"projectName": "proj", "envName": "app"}}}, nil))
	cred.want(404, "GET", app, nil)
	// Back again, then dev leaves the organization: refused, naming both.
	d.envGrant("devs", "proj", "app", "open")
	if r, _ := openAs(cred, `"proj/app"`); r.status != 200 {
		t.Fatalf("yaml/open after the grant came back: %d %s", r.status, r.body)
	}
	d.must(d.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/dev"}, nil))
	r = cred.want(403, "POST", app+"/open?duration=2h0m0s", nil)
	if !strings.Contains(string(r.body), "deployment "+id) || !strings.Contains(string(r.body), "no longer a member") {
		t.Errorf("refusal after dev left: %s", r.body)
	}

	// Audited with the deployment and the principal; refusals' reasons name both.
	evs, err := listAudit(d.env)
	d.must(err)
	var opens, refusals int
	for _, ev := range evs {
		if ev.Details["deployment"] != id || !strings.HasPrefix(ev.Action, "env:") && !strings.HasPrefix(ev.Action, "org:") {
			continue
		}
		if !strings.Contains(ev.Details["actsFor"], "dev") {
			t.Errorf("event %s %s lacks actsFor: %v", ev.Action, ev.Outcome, ev.Details)
		}
		switch {
		case ev.Outcome == gatehouse.OutcomeSuccess && ev.Action == "env:open":
			opens++
		case ev.Outcome == gatehouse.OutcomeDenied:
			refusals++
			if !strings.Contains(ev.Reason, id) || !strings.Contains(ev.Reason, "dev") {
				t.Errorf("denial reason %q does not name the deployment and the principal", ev.Reason)
			}
		}
	}
	if opens == 0 || refusals == 0 {
		t.Errorf("audit: %d opens, %d refusals of the deployment credential", opens, refusals)
	}
}

// TestDeploymentCredentialEndsWithItsRun: an ended run's credential opens nothing.
func TestDeploymentCredentialEndsWithItsRun(t *testing.T) {
	d := newDeployEnv(t)
	d.deployEnvs()
	d.must(d.settings([]byte(gitSettings)))
	_, err := d.trigger(d.dev, "update")
	d.must(err)
	job := d.lease()
	cred := d.esc(job.Credential)
	if r, _ := openAs(cred, `"proj/app"`); r.status != 200 {
		t.Fatalf("yaml/open during the run: %d %s", r.status, r.body)
	}
	d.must(d.complete(job, "succeeded"))
	cred.want(401, "POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["proj/app"]}`))
	cred.want(401, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil)
}

// TestDeploymentWebhookRunActsForSettingsEditor: a VCS webhook carries no Gatehouse
// principal; its run acts for whoever last stored the stack's deployment settings.
func TestDeploymentWebhookRunActsForSettingsEditor(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token") })
	d.deployEnvs()
	anon := cliwire.New(d.url, "")
	push := []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"acme/infra"},"sender":{"login":"octo"},
		"commits":[{"added":[],"removed":[],"modified":["infra/main.go"]}]}`)
	run := func() (*deploy.Job, escClient) {
		t.Helper()
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: push, NoAuth: true,
			Header: http.Header{"X-GitHub-Event": {"push"}, "X-GitHub-Delivery": {"d-1"}, "X-Hub-Signature-256": {sign(secret, push)}}}, nil))
		job := d.lease()
		if job == nil {
			t.Fatal("the push queued no run")
		}
		return job, d.esc(job.Credential)
	}

	// Stored by the admin: the push's run acts for the admin, who may open vault.
	d.must(d.settings([]byte(gitSettings)))
	job, cred := run()
	if r, vals := openAs(cred, `"proj/vault"`); r.status != 200 || !strings.Contains(vals, "vault-s3cret") {
		t.Fatalf("admin's webhook run: yaml/open of vault: %d %s", r.status, r.body)
	}
	d.must(d.complete(job, "succeeded")) // the run holds the stack

	// Stored last by dev (now a stack admin): the next push's run acts for dev.
	d.must(d.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"stack": "proj/prod", "permission": "admin"}}}, nil))
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments/settings", Body: map[string]any{"operationContext": map[string]any{"preRunCommands": []string{"echo dev"}}}}, nil))
	job, cred = run()
	id := job.ID
	if r, vals := openAs(cred, `"proj/app"`); r.status != 200 || !strings.Contains(vals, "hello-from-app") {
		t.Fatalf("dev's webhook run: yaml/open of app: %d %s", r.status, r.body)
	}
	r := cred.want(404, "POST", escBase+"/acme/proj/vault/open?duration=2h0m0s", nil)
	if !strings.Contains(string(r.body), id) || !strings.Contains(string(r.body), "dev") {
		t.Errorf("refusal does not name the deployment and dev: %s", r.body)
	}
	wantDiags(t, cred.do("POST", escBase+"/acme/yaml/open?duration=2h0m0s", []byte(`{"imports":["proj/vault"]}`)), "not found")
}

// TestDeploymentCredentialPrincipalRevoked: the token that triggered the run is revoked;
// the run's credential opens nothing more, and says why, naming the run and the token.
func TestDeploymentCredentialPrincipalRevoked(t *testing.T) {
	d := newDeployEnv(t)
	d.deployEnvs()
	d.must(d.settings([]byte(gitSettings)))
	id, cv := d.runCred(d.dev, "update")
	cred := d.esc(cv)
	if r, _ := openAs(cred, `"proj/app"`); r.status != 200 {
		t.Fatalf("yaml/open before the revocation: %d %s", r.status, r.body)
	}
	var tokenID string
	d.must(d.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		dep, err := tx.GetDeployment(id)
		if err == nil {
			tokenID = dep.ActsFor.ID
		}
		return err
	}))
	d.must(d.dev.Do(cliwire.Call{Method: "DELETE", Path: "/api/user/tokens/" + tokenID}, nil))
	r := cred.want(403, "POST", escBase+"/acme/proj/app/open?duration=2h0m0s", nil)
	if b := string(r.body); !strings.Contains(b, id) || !strings.Contains(b, tokenID) || !strings.Contains(b, "revoked") {
		t.Errorf("refusal after the revocation: %s", b)
	}
	if r, _ := openAs(cred, `"proj/app"`); r.status != 400 || !strings.Contains(string(r.body), "revoked") {
		t.Errorf("yaml/open after the revocation: %d %s", r.status, r.body)
	}
	// The run's own stack calls go on: the credential is the run's, not the token's.
	d.must(cliwire.New(d.url, cv).Do(cliwire.Call{Method: "GET", Path: d.prod}, nil))
}
