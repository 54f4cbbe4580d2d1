package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// The policy end-to-end test: a real TypeScript policy pack (run through the ts-node that
// @pulumi/pulumi brings) built on @pulumi/policy from npm, published with `pulumi policy publish`, required of the
// stacks tagged env=production, run by the stock CLI on `pulumi up`; and the approved
// providers stopping an update before the first resource of an unapproved provider.

const policyPackTS = `import { PolicyPack, ReportViolation, StackValidationArgs } from "@pulumi/policy";

new PolicyPack("e2e-policy", {
    policies: [{
        name: "no-forbidden-components",
        description: "Components named forbidden-* are not allowed.",
        enforcementLevel: "mandatory",
        validateStack: (args: StackValidationArgs, reportViolation: ReportViolation) => {
            for (const r of args.resources) {
                if (r.type === "e2e:index:Comp" && r.name.startsWith("forbidden-")) {
                    reportViolation("component " + r.name + " is forbidden by the e2e policy");
                }
            }
        },
    }],
});
`

const policyTSConfig = `{"compilerOptions":{"strict":true,"outDir":"bin","target":"es2016","module":"commonjs","moduleResolution":"node","sourceMap":true,"experimentalDecorators":true,"pretty":true,"noFallthroughCasesInSwitch":true,"noImplicitReturns":true,"forceConsistentCasingInFileNames":true},"files":["index.ts"]}
`

// policyProgramJS registers components named forbidden-*; with GATEHOUSE_E2E_DYNAMIC set
// it also creates a dynamic resource whose create writes that file (the provider,
// pulumi:providers:pulumi-nodejs, is not approved in the test).
const policyProgramJS = `"use strict";
const fs = require("fs");
const pulumi = require("@pulumi/pulumi");

class Comp extends pulumi.ComponentResource {
    constructor(name, opts) { super("e2e:index:Comp", name, {}, opts); this.registerOutputs({}); }
}
for (let i = 0; i < 2; i++) { new Comp("forbidden-" + i); }

const marker = process.env.GATEHOUSE_E2E_DYNAMIC;
if (marker) {
    const provider = {
        async create(inputs) {
            require("fs").writeFileSync(inputs.marker, "created\n");
            return { id: "marker", outs: inputs };
        },
    };
    class Marker extends pulumi.dynamic.Resource {
        constructor(name, args, opts) { super(provider, name, args, opts); }
    }
    new Marker("marker", { marker: marker });
}
`

// policyModules installs @pulumi/policy and @pulumi/pulumi once (npm) and returns the
// node_modules directory.
func policyModules(t *testing.T, cliVersion string) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		skipLoudly(t, "no `npm` on PATH to install @pulumi/policy")
	}
	dir := filepath.Join(scratch, "policy-node")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "package.json"), []byte(`{"name":"gatehouse-e2e-policy-deps","private":true}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pulumiSpec := "@pulumi/pulumi@^3"
	if m := regexp.MustCompile(`^v?(\d+\.\d+\.\d+)`).FindStringSubmatch(cliVersion); m != nil {
		pulumiSpec = "@pulumi/pulumi@^" + m[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "@pulumi/policy@^1", pulumiSpec)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		// An exact SDK for a development CLI may not be published: take the newest 3.x.
		cmd = exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "@pulumi/policy@^1", "@pulumi/pulumi@^3")
		cmd.Dir = dir
		if out2, err2 := cmd.CombinedOutput(); err2 != nil {
			t.Fatalf("npm install @pulumi/policy: %v\n%s\n%v\n%s", err, out, err2, out2)
		}
	}
	return filepath.Join(dir, "node_modules")
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for f, body := range files {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestPolicyPacksWithPulumiCLI(t *testing.T) {
	pulumiBin, version := requirePulumi(t)
	modules := policyModules(t, version)
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, "acme", "alice")
	srv := startServer(t, bin, dataDir, freeAddr(t))
	home := t.TempDir()
	env := pulumiEnv(home, token)

	// The policy pack: published by the stock CLI.
	packDir := t.TempDir()
	writeFiles(t, packDir, map[string]string{
		"PulumiPolicy.yaml": "runtime: nodejs\ndescription: Gatehouse e2e policy pack\n",
		"package.json":      `{"name":"e2e-policy","version":"0.0.1","dependencies":{"@pulumi/policy":"^1","@pulumi/pulumi":"^3"}}` + "\n",
		"index.ts":          policyPackTS,
		"tsconfig.json":     policyTSConfig,
	})
	must(t, os.Symlink(modules, filepath.Join(packDir, "node_modules")))
	pack := &pulumiCLI{t: t, bin: pulumiBin, dir: packDir, env: env}
	pack.must("login", srv.URL)
	out := pack.must("policy", "publish", "acme")
	mustContain(t, "policy publish", out, "e2e-policy", "0.0.1")
	mustContain(t, "policy ls", pack.must("policy", "ls", "acme"), "e2e-policy", "0.0.1")

	// A group of the stacks tagged env=production, made with the admin CLI; the pack
	// enabled there by the stock CLI.
	gatehouseAdmin(t, bin, srv.URL, token, "policy", "group", "create", "prod-guard", "--org", "acme")
	gatehouseAdmin(t, bin, srv.URL, token, "policy", "group", "select", "prod-guard", "--tag", "env=production", "--org", "acme")
	pack.must("policy", "enable", "acme/e2e-policy", "0.0.1", "--policy-group", "prod-guard")
	mustContain(t, "policy group ls", pack.must("policy", "group", "ls", "acme"), "prod-guard")

	// Two stacks of the same program: prod (tagged, in the group) and dev (not).
	proj := t.TempDir()
	writeFiles(t, proj, map[string]string{
		"Pulumi.yaml":  "name: e2epol\nruntime: nodejs\n",
		"package.json": `{"name":"e2epol","main":"index.js","private":true,"dependencies":{"@pulumi/pulumi":"^3"}}` + "\n",
		"index.js":     policyProgramJS,
	})
	must(t, os.Symlink(modules, filepath.Join(proj, "node_modules")))
	p := &pulumiCLI{t: t, bin: pulumiBin, dir: proj, env: env}
	p.must("stack", "init", "acme/prod")
	p.must("stack", "tag", "set", "env", "production")
	r := p.run("up", "--yes", "--stack", "acme/prod")
	if r.err == nil {
		t.Fatalf("pulumi up of prod succeeded despite the mandatory policy:\n%s", r)
	}
	mustContain(t, "up of prod", r.stdout+r.stderr, "no-forbidden-components", "mandatory")
	p.must("stack", "init", "acme/dev")
	out = p.must("up", "--yes", "--stack", "acme/dev")
	mustContain(t, "up of dev", out, "created")

	// The violation is a result of prod and an audit event.
	var results struct {
		Results []struct {
			EntityID   string `json:"entityId"`
			PolicyName string `json:"policyName"`
			Level      string `json:"level"`
		} `json:"results"`
	}
	must(t, client(srv.URL, token).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/policyresults?kind=violation"}, &results))
	found := false
	for _, res := range results.Results {
		found = found || (res.EntityID == "prod" && res.PolicyName == "no-forbidden-components" && res.Level == "mandatory")
	}
	if !found {
		t.Fatalf("no mandatory violation of prod among the results: %+v", results)
	}

	// Approved providers: only random; the program's dynamic resource needs the
	// pulumi-nodejs provider, which is stopped before the resource is created.
	if _, err := exec.LookPath("pulumi-resource-pulumi-nodejs"); err != nil {
		if _, err := os.Stat(filepath.Join(filepath.Dir(pulumiBin), "pulumi-resource-pulumi-nodejs")); err != nil {
			skipLoudly(t, "no pulumi-resource-pulumi-nodejs (the dynamic provider) on PATH or next to %s: the approved-provider part cannot run", pulumiBin)
		}
	}
	gatehouseAdmin(t, bin, srv.URL, token, "policy", "providers", "set", "random", "--org", "acme")
	marker := filepath.Join(t.TempDir(), "created")
	r = p.start([]string{"GATEHOUSE_E2E_DYNAMIC=" + marker}, "up", "--yes", "--stack", "acme/dev")()
	if r.err == nil {
		t.Fatalf("pulumi up with an unapproved provider succeeded:\n%s", r)
	}
	mustContain(t, "up with pulumi-nodejs", r.stdout+r.stderr, "approved provider")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the dynamic resource was created although its provider is not approved")
	}
	exp := filepath.Join(t.TempDir(), "dev.json")
	p.must("stack", "export", "--stack", "acme/dev", "--file", exp)
	if raw, _ := os.ReadFile(exp); strings.Contains(string(raw), "pulumi:providers:pulumi-nodejs") {
		t.Fatalf("the unapproved provider reached the state:\n%s", raw)
	}
	// The preview reports it too.
	r = p.start([]string{"GATEHOUSE_E2E_DYNAMIC=" + marker}, "preview", "--stack", "acme/dev")()
	if r.err == nil || !strings.Contains(r.stdout+r.stderr, "approved provider") {
		t.Fatalf("preview with an unapproved provider:\n%s", r)
	}

	// The same stop with the journaling protocol: the server again, offering it to every update.
	srv.stop()
	srv = startServer(t, bin, dataDir, srv.addr, "--journal=on")
	r = p.start([]string{"GATEHOUSE_E2E_DYNAMIC=" + marker}, "up", "--yes", "--stack", "acme/dev")()
	if r.err == nil {
		t.Fatalf("pulumi up (journaling) with an unapproved provider succeeded:\n%s", r)
	}
	mustContain(t, "journaled up with pulumi-nodejs", r.stdout+r.stderr, "approved provider")
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the dynamic resource was created (journaling) although its provider is not approved")
	}
	p.must("stack", "export", "--stack", "acme/dev", "--file", exp)
	if raw, _ := os.ReadFile(exp); strings.Contains(string(raw), "pulumi:providers:pulumi-nodejs") {
		t.Fatalf("the unapproved provider reached the state (journaling):\n%s", raw)
	}
	t.Logf("policy e2e done against %s", srv.URL)
}
