package e2e

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestPolicyGroupRetagWithPulumiCLI: with the stock CLI, a writer on a stack that a policy
// group selects by tag runs ordinary updates (the CLI sends the stack's tags merged with
// its own at every start), but neither `pulumi stack tag rm` nor a pulumi:tags value that
// changes the tag takes the stack out of the group: both are refused naming it (they need
// stack:policy, as removing the stack from the group does).
func TestPolicyGroupRetagWithPulumiCLI(t *testing.T) {
	pulumiBin, version := requirePulumi(t)
	modules := nodeModules(t, version)
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t))
	api := client(srv.URL, token)

	proj := t.TempDir()
	writeProject(t, proj, "web", 1, modules)
	admin := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: pulumiEnv(t.TempDir(), token)}
	admin.must("login", srv.URL)
	admin.must("stack", "init", "acme/prod")
	admin.must("stack", "tag", "set", "compliance", "pci")
	gatehouseAdmin(t, bin, srv.URL, token, "policy", "group", "create", "pci-guard", "--org", "acme")
	gatehouseAdmin(t, bin, srv.URL, token, "policy", "group", "select", "pci-guard", "--tag", "compliance=pci", "--org", "acme")

	var dev struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, api.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "dev", "role": "member"}}, &dev))
	must(t, api.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	must(t, api.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]any{"memberAction": "add", "member": "dev",
		"addGrant": map[string]any{"stack": "web/prod", "permission": "write"}}}, nil))
	w := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: pulumiEnv(t.TempDir(), dev.TokenValue)}
	w.must("login", srv.URL)
	w.must("stack", "select", "acme/prod")
	w.must("config", "set", "--secret", "dbpass", "e2e-"+randomHex(4))
	mustContain(t, "writer's up", w.must("up", "--yes", "--skip-preview"), "created")
	w.must("up", "--yes", "--skip-preview")

	r := w.run("stack", "tag", "rm", "compliance")
	if r.err == nil {
		t.Fatalf("the writer removed the tag the policy group selects on:\n%s", r)
	}
	t.Logf("refused: %s", r.stderr)
	mustContain(t, "stack tag rm", r.stdout+r.stderr, "pci-guard", "stack:policy")

	w.must("config", "set", "--path", "pulumi:tags.compliance", "none")
	r = w.run("up", "--yes", "--skip-preview")
	if r.err == nil {
		t.Fatalf("an up with pulumi:tags compliance=none by the writer succeeded:\n%s", r)
	}
	t.Logf("refused: %s", r.stderr)
	mustContain(t, "up with pulumi:tags", r.stdout+r.stderr, "pci-guard", "stack:policy")
	mustContain(t, "stack tag ls", admin.must("stack", "tag", "ls"), "compliance", "pci")
}
