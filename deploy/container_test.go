package deploy_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/loudskip"
)

// skipLoudly skips t with a banner on stderr (internal/loudskip).
func skipLoudly(t *testing.T, format string, args ...any) {
	t.Helper()
	loudskip.Skip(t, "", format, args...)
}

// imagePulumi is the pulumi (and /bin/sh) of the test image: a static program that says
// where it runs and what it was given.
const imagePulumi = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	if _, err := os.Stat("/gatehouse-test-image"); err == nil {
		fmt.Println("inside the test image")
	}
	if filepath.Base(os.Args[0]) == "sh" {
		fmt.Println("image shell:", strings.Join(os.Args[1:], " "))
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "version" {
		fmt.Println("v3.260.0")
		return
	}
	fmt.Println("image pulumi", strings.Join(os.Args[1:], " "))
	var names []string
	for _, kv := range os.Environ() {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	sort.Strings(names)
	fmt.Println("env:", strings.Join(names, " "))
	fmt.Println("home:", os.Getenv("HOME"))
	fmt.Println("api-key-length:", len(os.Getenv("API_KEY")))
	if t := os.Getenv("PULUMI_ACCESS_TOKEN"); len(t) > 17 {
		fmt.Println("credential:", t[:17])
	}
	if _, err := os.Stat("Pulumi.yaml"); err == nil {
		fmt.Println("found Pulumi.yaml")
	}
	n, _ := strconv.Atoi(os.Getenv("FAKE_SLEEP"))
	for i := 0; i < n; i++ {
		fmt.Println("working", i)
		time.Sleep(time.Second)
	}
}
`

// testImage builds a one-binary image (no registry: "engine import" of a tar) and
// returns its reference, or skips loudly when the engine cannot run it.
func testImage(t *testing.T, engine string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		skipLoudly(t, "no go command to build the test image's static binary")
	}
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "main.go"), []byte(imagePulumi), 0o644))
	build := exec.Command(goBin, "build", "-o", "pulumi", "main.go")
	build.Dir = dir
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOFLAGS=", "GO111MODULE=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the image's pulumi: %v\n%s", err, out)
	}
	bin, err := os.ReadFile(filepath.Join(dir, "pulumi"))
	must(t, err)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range []struct {
		name string
		mode int64
		body []byte
		dir  bool
	}{
		{"bin", 0o755, nil, true}, {"tmp", 0o1777, nil, true},
		{"bin/pulumi", 0o755, bin, false}, {"bin/sh", 0o755, bin, false},
		{"gatehouse-test-image", 0o644, []byte("yes\n"), false},
	} {
		h := &tar.Header{Name: e.name, Mode: e.mode, Size: int64(len(e.body)), Typeflag: tar.TypeReg, ModTime: time.Now()}
		if e.dir {
			h.Typeflag, h.Name = tar.TypeDir, e.name+"/"
		}
		must(t, tw.WriteHeader(h))
		_, err := tw.Write(e.body)
		must(t, err)
	}
	must(t, tw.Close())
	tarFile := filepath.Join(dir, "rootfs.tar")
	must(t, os.WriteFile(tarFile, buf.Bytes(), 0o644))
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	ref := "localhost/gatehouse-runner-test:" + hex.EncodeToString(b)
	if out, err := exec.Command(engine, "import", tarFile, ref).CombinedOutput(); err != nil {
		skipLoudly(t, "%s import failed: %v: %s", engine, err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command(engine, "rmi", "-f", ref).Run() })
	out, err := exec.Command(engine, "run", "--rm", "--network", "host", "--entrypoint", "/bin/pulumi", ref, "version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "v3.260.0") {
		skipLoudly(t, "%s cannot run a container here: %v: %s", engine, err, strings.TrimSpace(string(out)))
	}
	return ref
}

// TestRunnerInContainer: with an executor image and a container engine that works (docker
// or podman; skipped loudly otherwise), the pre-run commands and pulumi run inside the
// image, in the checked-out source, with only the run's variables (the runner's own
// environment and the pool's token stay out) and no secret on the engine's command line.
func TestRunnerInContainer(t *testing.T) {
	if testing.Short() {
		skipLoudly(t, "-short: builds an image")
	}
	var engine string
	var why []string
	for _, e := range []string{"docker", "podman"} {
		p, err := exec.LookPath(e)
		if err != nil {
			why = append(why, e+": not installed")
			continue
		}
		out, err := exec.Command(p, "info").CombinedOutput()
		if err != nil {
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			why = append(why, e+": "+lines[len(lines)-1])
			continue
		}
		engine = p
		break
	}
	if engine == "" {
		skipLoudly(t, "no container engine answers (%s); the runner's container mode is NOT exercised (TestContainerCommandLine checks its command line)", strings.Join(why, "; "))
	}
	f := newFixture(t)
	ref := testImage(t, engine)
	t.Logf("engine %s, image %s", engine, ref)
	f.withRunner(t, func(c *deploy.RunnerConfig) { c.Container = engine })
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
		"sourceContext":   map[string]any{"git": map[string]any{"repoUrl": repo(t), "branch": "main"}},
		"executorContext": map[string]any{"executorImage": map[string]any{"reference": ref}},
		"operationContext": map[string]any{"preRunCommands": []string{"echo pre-run"}, "options": map[string]any{"shell": "/bin/sh"},
			"environmentVariables": map[string]any{"PLAIN": "p", "API_KEY": map[string]string{"secret": "0123456789abcdef"}}},
	}}, nil))
	cmds := watchCommands(t)
	status, msg, logs := f.runOnce(t)
	if status != "succeeded" {
		t.Fatalf("status %q, message %q; logs:\n%s", status, msg, logs)
	}
	for _, want := range []string{"inside the test image", "image shell: -c echo pre-run",
		"image pulumi up --stack acme/proj/prod --non-interactive --yes --skip-preview", "found Pulumi.yaml",
		"api-key-length: 16", "credential: gatehouse_deploy_", "home: /"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, "env: ") && (strings.Contains(l, "RUNNER_ONLY_SECRET") || strings.Contains(l, "GATEHOUSE_RUNNER_TOKEN")) {
			t.Errorf("the runner's environment reached the container: %s", l)
		}
	}
	inEngine := 0
	for _, c := range cmds() {
		a := strings.Join(c, " ")
		if c[0] == engine {
			inEngine++
		}
		if strings.Contains(a, "0123456789abcdef") || strings.Contains(a, "gatehouse_deploy_") {
			t.Errorf("a secret on a command line: %s", a)
		}
	}
	if inEngine != 2 {
		t.Errorf("%d commands through %s, want 2 (the pre-run command and pulumi)", inEngine, engine)
	}

	// A cancelled run's container is removed, not left running.
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
		"sourceContext":    map[string]any{"git": map[string]any{"repoUrl": repo(t), "branch": "main"}},
		"executorContext":  map[string]any{"executorImage": map[string]any{"reference": ref}},
		"operationContext": map[string]any{"environmentVariables": map[string]any{"FAKE_SLEEP": "120"}},
	}}, nil))
	id := f.trigger(t, "update")
	done := make(chan error, 1)
	go func() { _, err := f.runner.RunOne(context.Background()); done <- err }()
	waitFor(t, func() bool { _, logs := f.deployment(t, id); return strings.Contains(logs, "working 1") })
	running := func() string {
		out, _ := exec.Command(engine, "ps", "-a", "--filter", "ancestor="+ref, "--format", "{{.Names}}").CombinedOutput()
		return strings.TrimSpace(string(out))
	}
	if running() == "" {
		t.Fatal("no container seen running")
	}
	must(t, f.s.admin.Do(cliwire.Call{Method: "POST", Path: f.prod + "/deployments/" + id + "/cancel"}, nil))
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(60 * time.Second):
		t.Fatal("the cancelled run did not end")
	}
	if d, _ := f.deployment(t, id); d["status"] != "failed" {
		t.Errorf("cancelled run: %v", d)
	}
	waitFor(t, func() bool { return running() == "" })
}
