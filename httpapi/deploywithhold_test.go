package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestPullRequestRunWithholdsSecretVariables: a pull request's run acts for nobody (its
// code is unreviewed), so besides decrypting nothing it gets none of the settings' secret
// environment variables (found in review: the leased job carried them in the clear); the
// job names them and the runner says so. The git credentials still come along (the clone
// needs them; the runner gives them to git only). A push run gets its variables as before.
func TestPullRequestRunWithholdsSecretVariables(t *testing.T) {
	gh := newFakeVCS(t)
	const secret = "whsec-test"
	d := newDeployEnv(t, func(c *httpapi.Config) { c.Deploy.GitHub = deploy_VCS(secret, gh.srv.URL, "gh-token") })
	d.must(d.settings([]byte(gitSettings)))
	anon := cliwire.New(d.url, "")
	deliver := func(event, id string, body []byte) {
		d.must(anon.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/webhooks/github", Body: body, NoAuth: true,
			Header: http.Header{"X-GitHub-Event": {event}, "X-GitHub-Delivery": {id}, "X-Hub-Signature-256": {sign(secret, body)}}}, nil))
	}
	deliver("pull_request", "pr-1", []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456","repo":{"full_name":"acme/infra"}},"base":{"ref":"main"}},"repository":{"full_name":"acme/infra"},"sender":{"login":"octo"}}`))
	job := d.lease()
	if job == nil {
		t.Fatal("no run for the pull request")
	}
	if s := string(job.Settings); strings.Contains(s, "s3cret-value") || strings.Contains(s, "API_KEY") || !strings.Contains(s, `"PLAIN":"p"`) {
		t.Errorf("the pull request run's settings: %s", s)
	}
	if len(job.Withheld) != 1 || job.Withheld[0] != "API_KEY" {
		t.Errorf("withheld %v, want [API_KEY]", job.Withheld)
	}
	d.must(d.complete(job, "succeeded"))
	deliver("push", "push-1", []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"acme/infra"},"sender":{"login":"octo"},"commits":[{"modified":["infra/main.go"]}]}`))
	job = d.lease()
	if job == nil {
		t.Fatal("no run for the push")
	}
	if !strings.Contains(string(job.Settings), `"API_KEY":"s3cret-value"`) || len(job.Withheld) != 0 {
		t.Errorf("the push run's settings: %s (withheld %v)", job.Settings, job.Withheld)
	}
}
