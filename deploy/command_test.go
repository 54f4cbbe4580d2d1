package deploy

import (
	"context"
	"reflect"
	"strings"
	"testing"
)

// TestContainerCommandLine: a run's command in a container is "engine run" of the image
// with the run's directory (and a shared PULUMI_HOME) mounted at the same path, the
// working directory, an explicit entrypoint, and the variables by name only: their values
// (secrets, the run's credential) are in the engine's environment, never its arguments;
// the pool's token is in neither. On the host, the command has exactly the run's
// environment.
func TestContainerCommandLine(t *testing.T) {
	t.Setenv("GATEHOUSE_RUNNER_TOKEN", "gatehouse_runner_pooltoken")
	t.Setenv("CONTAINERS_CONF", "/etc/engine.conf")
	r := &Runner{}
	env := map[string]string{
		"PATH": "/usr/bin", "HOME": "/w/run-1/home", "PULUMI_HOME": "/var/cache/pulumi", "CI": "true",
		"PULUMI_ACCESS_TOKEN": "gatehouse_deploy_secretcredential", "API_KEY": "s3cret-value",
	}
	cmd, name := r.command(context.Background(), "/usr/bin/podman", "registry.example.com/pulumi:3", "", "/w/run-1", "/w/run-1/src/infra", env,
		"pulumi", "up", "--stack", "acme/proj/prod")
	if !strings.HasPrefix(name, "gatehouse-run-") {
		t.Errorf("container name %q", name)
	}
	want := []string{"/usr/bin/podman", "run", "--rm", "--name", name, "--network", "host",
		"-v", "/w/run-1:/w/run-1", "-v", "/var/cache/pulumi:/var/cache/pulumi", "-w", "/w/run-1/src/infra", "--entrypoint", "pulumi",
		"-e", "API_KEY", "-e", "CI", "-e", "HOME=/w/run-1/home", "-e", "PULUMI_ACCESS_TOKEN", "-e", "PULUMI_HOME",
		"registry.example.com/pulumi:3", "up", "--stack", "acme/proj/prod"}
	if !reflect.DeepEqual(cmd.Args, want) {
		t.Errorf("args\n got %q\nwant %q", cmd.Args, want)
	}
	engineEnv := strings.Join(cmd.Env, "\n")
	for _, kv := range []string{"API_KEY=s3cret-value", "PULUMI_ACCESS_TOKEN=gatehouse_deploy_secretcredential", "CONTAINERS_CONF=/etc/engine.conf", "PULUMI_HOME=/var/cache/pulumi"} {
		if !strings.Contains(engineEnv+"\n", kv+"\n") {
			t.Errorf("the engine's environment lacks %s", kv)
		}
	}
	if strings.Contains(engineEnv, "pooltoken") {
		t.Error("the pool's token reaches the engine's environment")
	}
	if cmd.Dir != "/w/run-1/src/infra" {
		t.Errorf("dir %q", cmd.Dir)
	}

	// A PULUMI_HOME in the run's directory needs no mount of its own.
	env["PULUMI_HOME"] = "/w/run-1/home/.pulumi"
	cmd, _ = r.command(context.Background(), "docker", "img", "", "/w/run-1", "/w/run-1/src", env, "bash", "-c", "npm ci")
	if a := strings.Join(cmd.Args, " "); strings.Count(a, " -v ") != 1 || !strings.Contains(a, " --entrypoint bash -e ") || !strings.HasSuffix(a, " img -c npm ci") {
		t.Errorf("args %q", a)
	}

	// An isolated run (--run-uids): the container runs as the run's uid.
	cmd, _ = r.command(context.Background(), "docker", "img", "61003:61003", "/w/run-1", "/w/run-1/src", env, "pulumi", "up")
	if a := strings.Join(cmd.Args, " "); !strings.HasPrefix(a, "docker run --rm --name gatehouse-run-") || !strings.Contains(a, " --network host --user 61003:61003 -v /w/run-1:/w/run-1 ") {
		t.Errorf("args %q", a)
	}

	// On the host: exactly the run's environment.
	cmd, name = r.command(context.Background(), "", "", "", "/w/run-1", "/w/run-1/src", env, "pulumi", "preview")
	if name != "" || !reflect.DeepEqual(cmd.Args, []string{"pulumi", "preview"}) || len(cmd.Env) != len(env) {
		t.Errorf("host command: %q, env %q", cmd.Args, cmd.Env)
	}
	for _, a := range cmd.Args {
		if strings.Contains(a, "secret") {
			t.Errorf("a secret in the arguments: %q", cmd.Args)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://ghp_token@github.com/acme/infra.git":     "https://***@github.com/acme/infra.git",
		"https://user:pass@git.example.com/infra.git":     "https://***@git.example.com/infra.git",
		"ssh://git@git.example.com:2222/acme/infra.git":   "ssh://git@git.example.com:2222/acme/infra.git",
		"ssh://git:secret@git.example.com/acme/infra.git": "ssh://***@git.example.com/acme/infra.git",
		"git@github.com:acme/infra.git":                   "git@github.com:acme/infra.git",
		"/srv/git/infra":                                  "/srv/git/infra",
	} {
		if got := redactURL(in); got != want {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
	for u, ssh := range map[string]bool{"ssh://git@h/r": true, "git@github.com:a/b.git": true, "https://h/r": false, "/srv/git/r": false, "./r:x": false} {
		if isSSHURL(u) != ssh {
			t.Errorf("isSSHURL(%q) = %v", u, !ssh)
		}
	}
}
