package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestRunCredentialCannotRetagStack (found in review): prod is protected (tag
// env=production); dev (write) may not update it by hand, but triggers an update run of the
// settings. The run's credential (which the repository's code holds) may update the stack,
// not edit its tags: an update start whose tags would change env (tags select protection
// rules and grants) is refused with 403 naming the tag, so the protection stays and dev
// still may not update by hand. The CLI's own tags (pulumi:project, vcs:…) that nothing
// selects keep coming with the start; a tag that a rule selects does not, even one of them.
func TestRunCredentialCannotRetagStack(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	// By hand: refused (protected).
	if _, err := d.startRun(d.dev, d.prod, "update", false); err == nil || !strings.Contains(err.Error(), "protected") {
		t.Fatalf("dev's update by hand: %v, want protected", err)
	}
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: d.prod + "/deployments",
		Body:   []byte(`{"operation":"update","inheritSettings":true}`),
		Header: http.Header{"X-Pulumi-Deployment-Initiator": {"api"}}}, nil))
	job := d.lease()
	if job == nil {
		t.Fatal("no run")
	}
	cred := cliwire.New(d.url, job.Credential)
	start := func(tags map[string]string) (*run, error) {
		var created apitype.UpdateProgramResponse
		d.must(cred.Do(cliwire.Call{Method: "POST", Path: d.prod + "/update", Body: apitype.UpdateProgramRequest{Name: "proj", Runtime: "nodejs"}}, &created))
		var started apitype.StartUpdateResponse
		err := cred.Do(cliwire.Call{Method: "POST", Path: d.prod + "/update/" + created.UpdateID,
			Body: apitype.StartUpdateRequest{Tags: tags}}, &started)
		return &run{e: d.env, c: cred, path: d.prod, ID: created.UpdateID, Lease: started.Token}, err
	}
	// The stack's tags merged with the CLI's (as the CLI sends them), env rewritten.
	_, err := start(map[string]string{"env": "dev", "pulumi:project": "proj", "vcs:owner": "acme"})
	if err == nil {
		t.Fatal("a run's update start rewrote env=production to env=dev")
	}
	if !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), `env ("production" to "dev")`) || !strings.Contains(err.Error(), "stack:tags") {
		t.Errorf("refusal: %v, want 403 naming the tag env and stack:tags", err)
	}
	// A new tag the credential chooses: refused too (a grant or rule may select it later).
	if _, err := start(map[string]string{"env": "production", "team": "payments"}); err == nil || !strings.Contains(err.Error(), "team (new") {
		t.Errorf("a run's update start adding team=payments: %v, want 403 naming team", err)
	}
	// The CLI's own tags, with env unchanged: the update runs.
	r, err := start(map[string]string{"env": "production", "pulumi:project": "proj", "pulumi:runtime": "nodejs", "vcs:owner": "acme", "vcs:repo": "infra"})
	d.must(err)
	d.must(r.complete("succeeded"))
	var st apitype.Stack
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod}, &st))
	if st.Tags["env"] != "production" || st.Tags["vcs:repo"] != "infra" || st.Tags["pulumi:runtime"] != "nodejs" || st.Tags["team"] != "" {
		t.Errorf("tags after the run's update: %v", st.Tags)
	}
	// A CLI tag that a protection rule selects is decided like any other.
	d.must(d.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "vcs:repo=infra"}}, nil))
	if _, err := start(map[string]string{"env": "production", "vcs:repo": "fork"}); err == nil || !strings.Contains(err.Error(), "vcs:repo") {
		t.Errorf("a run's update start changing vcs:repo (selected by a rule): %v, want 403", err)
	}
	d.must(d.complete(job, "succeeded"))

	// dev, by hand, now: still protected.
	if _, err := d.startRun(d.dev, d.prod, "update", false); err == nil {
		t.Errorf("dev's branch run lifted prod's protection (start tags env=dev); dev now updates prod by hand")
	}

	// A person who may edit tags (a writer of an unprotected stack) still sets them at
	// update start, as the CLI does with pulumi:tags configuration.
	d.must(d.createStack(d.admin, "acme", "proj", "dev", map[string]string{"env": "dev"}))
	devPath := stackPath("acme", "proj", "dev")
	var created apitype.UpdateProgramResponse
	d.must(d.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"addGrant": map[string]any{"stack": "proj/dev", "permission": "write"}}}, nil))
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: devPath + "/update", Body: apitype.UpdateProgramRequest{Name: "proj", Runtime: "nodejs"}}, &created))
	var started apitype.StartUpdateResponse
	d.must(d.dev.Do(cliwire.Call{Method: "POST", Path: devPath + "/update/" + created.UpdateID,
		Body: apitype.StartUpdateRequest{Tags: map[string]string{"env": "staging", "owner": "alice"}}}, &started))
	d.must((&run{e: d.env, c: d.dev, path: devPath, ID: created.UpdateID, Lease: started.Token}).complete("succeeded"))
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: devPath}, &st))
	if st.Tags["env"] != "staging" || st.Tags["owner"] != "alice" {
		t.Errorf("tags after a writer's update start: %v", st.Tags)
	}
}
