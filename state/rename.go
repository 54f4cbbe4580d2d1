package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"
)

// RenameStack rewrites every URN of a deployment (a DeploymentV3 JSON object) for a stack
// that was renamed and possibly moved to another project, as the CLI's own
// edit.RenameStack does for the file backend: resource URNs, parents, dependencies,
// property dependencies, deleted-with, replace-with, aliases, provider references and
// pending operations; the root pulumi:pulumi:Stack resource is named <project>-<stack>.
// Without it, the next update would plan to replace every resource. The document is
// edited generically, so fields this version does not know survive unchanged.
func RenameStack(deployment json.RawMessage, newStack, newProject string) (json.RawMessage, error) {
	stack, err := tokens.ParseStackName(newStack)
	if err != nil {
		return nil, fmt.Errorf("invalid stack name: %v", err)
	}
	project := tokens.PackageName(newProject)
	rename := func(s string) string {
		u := resource.URN(s)
		if s == "" || !u.IsValid() {
			return s
		}
		nu := u.RenameStack(stack).RenameProject(project)
		if u.QualifiedType() == "pulumi:pulumi:Stack" {
			nu = nu.Rename(newProject + "-" + newStack)
		}
		return string(nu)
	}
	str := func(m map[string]any, k string, f func(string) string) {
		if s, ok := m[k].(string); ok {
			m[k] = f(s)
		}
	}
	list := func(v any) {
		if xs, ok := v.([]any); ok {
			for i, x := range xs {
				if s, ok := x.(string); ok {
					xs[i] = rename(s)
				}
			}
		}
	}
	provider := func(ref string) string {
		// A provider reference is "<provider URN>::<provider ID>".
		i := strings.LastIndex(ref, "::")
		if i < 0 {
			return ref
		}
		return rename(ref[:i]) + ref[i:]
	}
	fix := func(v any) {
		r, ok := v.(map[string]any)
		if !ok {
			return
		}
		str(r, "urn", rename)
		str(r, "parent", rename)
		str(r, "deletedWith", rename)
		str(r, "provider", provider)
		list(r["dependencies"])
		list(r["replaceWith"])
		list(r["aliases"])
		if pd, ok := r["propertyDependencies"].(map[string]any); ok {
			for _, deps := range pd {
				list(deps)
			}
		}
	}
	dec := json.NewDecoder(bytes.NewReader(deployment))
	dec.UseNumber() // numbers keep their exact text
	var d map[string]any
	if err := dec.Decode(&d); err != nil {
		return nil, fmt.Errorf("deployment: %w", err)
	}
	if rs, ok := d["resources"].([]any); ok {
		for _, r := range rs {
			fix(r)
		}
	}
	if ops, ok := d["pending_operations"].([]any); ok {
		for _, op := range ops {
			if m, ok := op.(map[string]any); ok {
				fix(m["resource"])
			}
		}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(d); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}
