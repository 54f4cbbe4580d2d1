package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContainerImage builds the Dockerfile, starts the image on a fresh volume, waits for
// its HEALTHCHECK to say healthy, copies the first admin's token out and logs in with it.
// Skipped loudly where no Docker daemon answers.
func TestContainerImage(t *testing.T) {
	if testing.Short() {
		skipLoudly(t, "-short: the image build takes minutes")
	}
	if _, err := exec.LookPath("docker"); err != nil {
		skipLoudly(t, "docker not found in PATH")
	}
	if out, err := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		skipLoudly(t, "no Docker daemon answers (%s)", strings.TrimSpace(string(out)))
	}
	docker := func(args ...string) string {
		t.Helper()
		out, err := exec.Command("docker", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tag := "gatehouse-e2e:test"
	docker("build", "-t", tag, moduleRoot(t))
	name := "gatehouse-e2e-" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")
	docker("run", "-d", "--name", name, "-p", "127.0.0.1::8080", tag)
	t.Cleanup(func() { exec.Command("docker", "rm", "-f", "-v", name).Run() })
	deadline := time.Now().Add(2 * time.Minute)
	for docker("inspect", "--format", "{{.State.Health.Status}}", name) != "healthy" {
		if time.Now().After(deadline) {
			t.Fatalf("the container never became healthy:\n%s", docker("logs", name))
		}
		time.Sleep(time.Second)
	}
	if u := docker("inspect", "--format", "{{.Config.User}}", name); u == "" || u == "0" || u == "root" {
		t.Errorf("the image runs as %q, want a non-root user", u)
	}
	tokFile := filepath.Join(t.TempDir(), "admin.token")
	docker("cp", name+":/data/admin.token", tokFile)
	tok, _ := os.ReadFile(tokFile)
	port := docker("port", name, "8080/tcp")
	req, _ := http.NewRequest("GET", "http://"+port+"/api/user", nil)
	req.Header.Set("Authorization", "token "+string(bytes.TrimSpace(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var user map[string]any
	json.NewDecoder(resp.Body).Decode(&user)
	if resp.StatusCode != 200 || user["name"] != "admin" {
		t.Fatalf("GET /api/user with the container's first-start token: %d %v", resp.StatusCode, user)
	}
}
