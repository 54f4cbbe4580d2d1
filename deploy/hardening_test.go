package deploy_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestContainerVariablesNotTheEngines: the settings' variables of a run in a container
// reach the engine's own environment (to be passed by name), so none may be one the
// engine, on the runner's host, obeys itself (DOCKER_HOST: its daemon, which would be
// sent the run's credential; LD_PRELOAD: code of the repository run on the host, outside
// the container): such a run fails, naming the variable.
func TestContainerVariablesNotTheEngines(t *testing.T) {
	f := newFixture(t)
	engine := filepath.Join(t.TempDir(), "docker")
	must(t, os.WriteFile(engine, []byte("#!/bin/sh\necho \"engine DOCKER_HOST=$DOCKER_HOST LD_PRELOAD=$LD_PRELOAD\"\n"), 0o755))
	f.withRunner(t, func(c *deploy.RunnerConfig) { c.Container = engine })
	for _, v := range []string{"DOCKER_HOST", "LD_PRELOAD", "container_host", "XDG_RUNTIME_DIR", "https_proxy"} {
		t.Run(v, func(t *testing.T) {
			must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
				"sourceContext":    map[string]any{"git": map[string]any{"repoUrl": repo(t), "branch": "main"}},
				"executorContext":  map[string]any{"executorImage": map[string]any{"reference": "example/image"}},
				"operationContext": map[string]any{"environmentVariables": map[string]any{v: "evil.example", "PLAIN": "p"}},
			}}, nil))
			status, msg, logs := f.runOnce(t)
			if strings.Contains(logs, "evil.example") || status != "failed" || !strings.Contains(msg, v) {
				t.Errorf("status %q, message %q; logs:\n%s", status, msg, logs)
			}
		})
	}
	// Other variables go through.
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
		"sourceContext":    map[string]any{"git": map[string]any{"repoUrl": repo(t), "branch": "main"}},
		"executorContext":  map[string]any{"executorImage": map[string]any{"reference": "example/image"}},
		"operationContext": map[string]any{"environmentVariables": map[string]any{"PLAIN": "p"}},
	}}, nil))
	if status, msg, logs := f.runOnce(t); status != "succeeded" || !strings.Contains(logs, "engine DOCKER_HOST=") {
		t.Errorf("status %q, message %q; logs:\n%s", status, msg, logs)
	}
}

// TestGitArgumentsNotOptions: a commit, branch or repository URL of the settings (or of a
// trigger, which may give a branch or commit) that git would take for an option, or an
// executor image that "docker run" would, is refused (400) before any run.
func TestGitArgumentsNotOptions(t *testing.T) {
	f := newFixture(t)
	for _, g := range []map[string]any{
		{"repoUrl": "https://git.example.com/r.git", "commit": "--recurse-submodules"},
		{"repoUrl": "https://git.example.com/r.git", "commit": "main"},
		{"repoUrl": "https://git.example.com/r.git", "branch": "--upload-pack=touch /tmp/x"},
		{"repoUrl": "--upload-pack=touch /tmp/x", "branch": "main"},
	} {
		err := f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{"sourceContext": map[string]any{"git": g}}}, nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("settings %v: %v, want 400", g, err)
		}
	}
	for _, img := range []any{"--privileged", map[string]any{"reference": "--volume=/:/host"}} {
		err := f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
			"sourceContext":   map[string]any{"git": map[string]any{"repoUrl": "https://git.example.com/r.git", "branch": "main"}},
			"executorContext": map[string]any{"executorImage": img}}}, nil)
		if err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("executor image %v: %v, want 400", img, err)
		}
	}
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{"sourceContext": map[string]any{"git": map[string]any{
		"repoUrl": "https://git.example.com/r.git", "commit": "0123abcdef0123abcdef0123abcdef0123abcdef"}}}}, nil))
	err := f.s.admin.Do(cliwire.Call{Method: "POST", Path: f.prod + "/deployments", Body: map[string]any{"operation": "update",
		"sourceContext": map[string]any{"git": map[string]any{"commit": "--recurse-submodules"}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("trigger with an option for a commit: %v, want 400", err)
	}
}

// TestRunOutputMasksSecrets: a command that prints its environment shows neither the
// settings' secret variables nor the run's credential in the run's output (which every
// reader of the stack reads, while the credential is live), nor in its message.
func TestRunOutputMasksSecrets(t *testing.T) {
	f := newFixture(t)
	f.settings(t, repo(t), []string{`echo "key=$API_KEY cred=$PULUMI_ACCESS_TOKEN plain=$PLAIN"`, `echo "failing with $API_KEY"; exit 1`},
		map[string]any{"PLAIN": "plain-value", "API_KEY": map[string]string{"secret": "0123456789-secret"}})
	id := f.trigger(t, "update")
	if ran, err := f.runner.RunOne(context.Background()); !ran || err != nil {
		t.Fatalf("RunOne = %v, %v", ran, err)
	}
	d, logs := f.deployment(t, id)
	msg, _ := d["message"].(string)
	for _, text := range []string{logs, msg} {
		if strings.Contains(text, "0123456789-secret") || regexp.MustCompile(`gatehouse_deploy_[A-Za-z0-9_-]{8,}`).MatchString(text) {
			t.Errorf("a secret or the run's credential in the run's output:\n%s", text)
		}
	}
	if !strings.Contains(logs, "key=*** cred=*** plain=plain-value") {
		t.Errorf("logs:\n%s", logs)
	}
}

// TestForkPullRequestsNotRun: a pull or merge request from a fork carries code anyone may
// write, and a webhook's run acts for the settings' editor: it triggers nothing. One from
// a branch of the repository itself does.
func TestForkPullRequestsNotRun(t *testing.T) {
	gh := func(head string) []byte {
		return []byte(`{"action":"opened","number":7,"pull_request":{"head":{"ref":"feature","sha":"def456"` + head + `},"base":{"ref":"main"}},
			"repository":{"full_name":"Acme/Infra"},"sender":{"login":"octo"}}`)
	}
	for name, body := range map[string][]byte{"fork": gh(`,"repo":{"full_name":"mallory/infra"}`), "deleted fork": gh(`,"repo":null`)} {
		if e, err := deploy.ParseGitHub("pull_request", body); err != nil || e != nil {
			t.Errorf("GitHub pull request from a %s: %+v, %v", name, e, err)
		}
	}
	if e, err := deploy.ParseGitHub("pull_request", gh(`,"repo":{"full_name":"acme/infra"}`)); err != nil || e == nil || e.SHA != "def456" {
		t.Errorf("GitHub pull request from the repository: %+v, %v", e, err)
	}
	gl := func(src int) []byte {
		return []byte(fmt.Sprintf(`{"object_kind":"merge_request","user":{"username":"u"},"project":{"path_with_namespace":"acme/infra"},
			"object_attributes":{"iid":3,"action":"open","source_project_id":%d,"target_project_id":10,"source_branch":"f","target_branch":"main","last_commit":{"id":"c0ffee"}}}`, src))
	}
	if e, err := deploy.ParseGitLab("Merge Request Hook", gl(66)); err != nil || e != nil {
		t.Errorf("GitLab merge request from a fork: %+v, %v", e, err)
	}
	if e, err := deploy.ParseGitLab("Merge Request Hook", gl(10)); err != nil || e == nil || e.SHA != "c0ffee" {
		t.Errorf("GitLab merge request from the project: %+v, %v", e, err)
	}
}
