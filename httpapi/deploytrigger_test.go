package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestDeployTriggerOverridesNeedSettingsRight: a person with write on the stack (who may
// trigger) may not override what the stored settings decide (the repository, the
// pre-run commands, the variables, the image, the pool; or not inherit them): that runs
// code of their choosing with the settings' secrets (the git token, secret variables) and
// a pipeline credential. Only a branch or a commit may be given. A stack admin may.
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
	// The branch or commit to run, and the CLI's empty fields, are the writer's to give.
	d.must(post(d.dev, `{"operation":"update","inheritSettings":true,"sourceContext":{"git":{"branch":"release","repoUrl":""}},
		"operationContext":{"operation":"","preRunCommands":null,"environmentVariables":{}},"executorContext":{}}`))
	if j := d.lease(); j == nil {
		t.Fatal("a branch-only trigger was not queued")
	} else {
		d.must(d.complete(j, "succeeded"))
	}
	// A stack admin may override.
	d.must(post(d.admin, `{"operation":"update","operationContext":{"preRunCommands":["echo admin"]}}`))
}
