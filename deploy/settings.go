// Package deploy is Gatehouse's Deployments: a stack's deployment settings, the queue of
// deployment runs, the protocol runners lease runs with, the short-lived credential of
// each run, and the VCS webhooks (GitHub, GitLab) that trigger runs and get their results.
package deploy

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/keystore"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// KeyLabel is the AAD label of sealed settings secrets. They use the stack's data key but
// not the stack secrets' label, so a settings ciphertext never opens through the stack's
// /decrypt route.
const KeyLabel = "gatehouse/deploy-setting/v1:"

// Keys returns the manager that seals settings secrets with the stacks' data keys.
func Keys(stackKeys *secrets.Manager, store gatehouse.Store) *secrets.Manager {
	return stackKeys.Derive(keystore.Store{Store: store}, secrets.WithLabel(KeyLabel))
}

// secretPaths are the settings values that hold secrets: where a secret is required, a
// plaintext value is refused.
var secretPaths = []struct {
	path     []string
	required bool
}{
	{[]string{"sourceContext", "git", "gitAuth", "accessToken"}, true},
	{[]string{"sourceContext", "git", "gitAuth", "sshAuth", "sshPrivateKey"}, true},
	{[]string{"sourceContext", "git", "gitAuth", "sshAuth", "password"}, true},
	{[]string{"sourceContext", "git", "gitAuth", "basicAuth", "userName"}, false},
	{[]string{"sourceContext", "git", "gitAuth", "basicAuth", "password"}, true},
	{[]string{"executorContext", "executorImage", "credentials", "password"}, true},
}

// isSecretWire reports whether v is a SecretValue in object form.
func isSecretWire(v any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	_, a := m["secret"]
	_, b := m["ciphertext"]
	_, c := m["isSecret"]
	return a || b || c
}

// MergePatch applies an RFC 7386 merge patch to doc: null deletes a key, objects merge,
// everything else replaces. A SecretValue object replaces the old value whole.
func MergePatch(doc, patch map[string]any) map[string]any {
	if doc == nil {
		doc = map[string]any{}
	}
	for k, pv := range patch {
		if pv == nil {
			delete(doc, k)
			continue
		}
		pm, ok := pv.(map[string]any)
		if !ok || isSecretWire(pm) {
			doc[k] = pv
			continue
		}
		dm, _ := doc[k].(map[string]any)
		if isSecretWire(dm) {
			dm = nil
		}
		doc[k] = MergePatch(dm, pm)
	}
	return doc
}

// sealer seals and opens settings secrets of one stack.
type sealer struct {
	ctx     context.Context
	keys    *secrets.Manager
	stackID int64
}

func (s sealer) seal(plain string) (string, error) {
	ct, err := s.keys.Encrypt(s.ctx, s.stackID, []byte(plain))
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(ct), nil
}

func (s sealer) open(ct string) (string, error) {
	b, err := base64.StdEncoding.DecodeString(ct)
	if err != nil {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "a ciphertext in the settings is not one this server made")
	}
	p, err := s.keys.Decrypt(s.ctx, s.stackID, b)
	if err != nil {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "a ciphertext in the settings is not one this server made for this stack")
	}
	return string(p), nil
}

// sealValue turns one SecretValue into its stored form: a secret's plaintext is sealed, a
// ciphertext must be this stack's; a plain string stays (unless required is set: then it
// is refused).
func (s sealer) sealValue(name string, v any, required bool) (any, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		if required && x != "" {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s must be a secret ({\"secret\": \"...\"} or a ciphertext from .../deployments/settings/encrypt), not plaintext", name)
		}
		return x, nil
	case map[string]any:
		if ct, ok := x["ciphertext"].(string); ok && ct != "" {
			if _, err := s.open(ct); err != nil {
				return nil, err
			}
			return map[string]any{"ciphertext": ct}, nil
		}
		plain, secret := "", true
		if isS, ok := x["isSecret"].(bool); ok {
			secret = isS
			plain, _ = x["value"].(string)
		} else if p, ok := x["secret"].(string); ok {
			plain = p
		} else {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: a secret value is {\"secret\": \"...\"} or {\"ciphertext\": \"...\"}", name)
		}
		if !secret {
			if required && plain != "" {
				return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s must be a secret, not plaintext", name)
			}
			return plain, nil
		}
		ct, err := s.seal(plain)
		if err != nil {
			return nil, err
		}
		return map[string]any{"ciphertext": ct}, nil
	}
	return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: a value is a string or a secret object", name)
}

func lookup(doc map[string]any, path []string) (map[string]any, bool) {
	m := doc
	for _, p := range path[:len(path)-1] {
		next, ok := m[p].(map[string]any)
		if !ok {
			return nil, false
		}
		m = next
	}
	_, ok := m[path[len(path)-1]]
	return m, ok
}

// sealAll seals every secret of the settings document in place.
func (s sealer) sealAll(doc map[string]any) error {
	for _, sp := range secretPaths {
		m, ok := lookup(doc, sp.path)
		if !ok {
			continue
		}
		key := sp.path[len(sp.path)-1]
		v, err := s.sealValue(strings.Join(sp.path, "."), m[key], sp.required)
		if err != nil {
			return err
		}
		m[key] = v
	}
	if op, ok := doc["operationContext"].(map[string]any); ok {
		if env, ok := op["environmentVariables"].(map[string]any); ok {
			for k, v := range env {
				sv, err := s.sealValue("operationContext.environmentVariables."+k, v, false)
				if err != nil {
					return err
				}
				env[k] = sv
			}
		}
	}
	return nil
}

// openAll returns a copy of the document with every secret in the clear (for the runner
// only; never for an API response), and the secret values (which the runner masks in the
// run's output).
//
// With withholdEnv, the secret environment variables are left out instead (withheld names
// them): a run that acts for nobody (a pull or merge request's, whose code nobody has
// reviewed) gets none, as its credential decrypts nothing.
func (s sealer) openAll(doc map[string]any, withholdEnv bool) (open map[string]any, secrets, withheld []string, err error) {
	b, _ := json.Marshal(doc)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	openOne := func(v any) (any, error) {
		m, ok := v.(map[string]any)
		if !ok {
			return v, nil
		}
		ct, _ := m["ciphertext"].(string)
		pt, err := s.open(ct)
		if err == nil {
			secrets = append(secrets, pt)
		}
		return pt, err
	}
	for _, sp := range secretPaths {
		m, ok := lookup(out, sp.path)
		if !ok {
			continue
		}
		key := sp.path[len(sp.path)-1]
		v, err := openOne(m[key])
		if err != nil {
			return nil, nil, nil, err
		}
		m[key] = v
	}
	if op, ok := out["operationContext"].(map[string]any); ok {
		if env, ok := op["environmentVariables"].(map[string]any); ok {
			for k, v := range env {
				if _, secret := v.(map[string]any); secret && withholdEnv {
					delete(env, k)
					withheld = append(withheld, k)
					continue
				}
				pv, err := openOne(v)
				if err != nil {
					return nil, nil, nil, err
				}
				env[k] = pv
			}
		}
	}
	sort.Strings(withheld)
	return out, secrets, withheld, nil
}

// validate checks that the document has the shape of Pulumi's DeploymentSettings.
func validate(doc map[string]any) error {
	b, err := json.Marshal(doc)
	if err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid settings: %v", err)
	}
	var ds apitype.DeploymentSettings
	if err := json.Unmarshal(b, &ds); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid deployment settings: %v", err)
	}
	if sc := ds.SourceContext; sc != nil && sc.Git != nil {
		// They reach git's command line (after its options, but as arguments of them): no
		// option in disguise.
		g := sc.Git
		if g.Commit != "" && !isCommitHash(g.Commit) {
			return gatehouse.Errorf(gatehouse.EINVALID, "sourceContext.git.commit must be a commit hash (hexadecimal), not %q", g.Commit)
		}
		if strings.HasPrefix(strings.TrimPrefix(g.Branch, "refs/heads/"), "-") || strings.HasPrefix(g.RepoURL, "-") {
			return gatehouse.Errorf(gatehouse.EINVALID, "sourceContext.git: a branch or repository URL cannot begin with '-'")
		}
	}
	if ex := ds.Executor; ex != nil && ex.ExecutorImage != nil && strings.HasPrefix(ex.ExecutorImage.Reference, "-") {
		// The image is an argument of "docker run", after its options.
		return gatehouse.Errorf(gatehouse.EINVALID, "executorContext.executorImage: an image reference cannot begin with '-'")
	}
	if err := validateGatehouse(doc); err != nil {
		return err
	}
	if op, ok := doc["operationContext"].(map[string]any); ok {
		// apitype.OperationContext always carries "operation" (empty): accept that.
		if v, _ := op["operation"].(string); v != "" {
			return gatehouse.Errorf(gatehouse.EINVALID, "operationContext.operation cannot be set in settings: the operation is chosen per run")
		}
		delete(op, "operation")
	}
	return nil
}

// GatehouseKey is the settings' member holding Gatehouse's own settings, which Pulumi's
// DeploymentSettings has no field for: {"gatehouse": {"pullRequestEnvironments": true}}.
// The stock CLI ignores it when it reads the settings (it decodes into
// apitype.DeploymentSettings) and keeps it when it edits them (merge-patch); a replace
// (PUT) without it drops it, which turns the opt-in off.
const GatehouseKey = "gatehouse"

// validateGatehouse checks the settings' "gatehouse" member: an object of known options.
func validateGatehouse(doc map[string]any) error {
	v, ok := doc[GatehouseKey]
	if !ok {
		return nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return gatehouse.Errorf(gatehouse.EINVALID, "gatehouse must be an object ({\"pullRequestEnvironments\": true})")
	}
	for k, o := range m {
		switch k {
		case "pullRequestEnvironments":
			if _, ok := o.(bool); !ok {
				return gatehouse.Errorf(gatehouse.EINVALID, "gatehouse.pullRequestEnvironments must be true or false")
			}
		default:
			return gatehouse.Errorf(gatehouse.EINVALID, "unknown setting gatehouse.%s (known: pullRequestEnvironments)", k)
		}
	}
	return nil
}

// PullRequestEnvironments reports whether a settings document opts its stack's
// pull/merge request runs into environments: gatehouse.pullRequestEnvironments, default
// false. Without it such a run (whose code is the request's, unreviewed) acts for nobody
// and its credential opens no environment.
func PullRequestEnvironments(settings []byte) bool {
	doc, err := parseDoc(settings)
	if err != nil {
		return false
	}
	return pullRequestEnvironments(doc)
}

func pullRequestEnvironments(doc map[string]any) bool {
	m, _ := doc[GatehouseKey].(map[string]any)
	v, _ := m["pullRequestEnvironments"].(bool)
	return v
}

// parseDoc decodes a JSON object.
func parseDoc(b []byte) (map[string]any, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return map[string]any{}, nil
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(&m); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: %v", err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

// repoKey is the repository a settings document follows, for webhooks: the GitHub
// repository ("github:owner/repo") or, failing that, the git URL's path on a GitLab or
// other host ("git:host/path"), lower-cased.
func repoKey(doc map[string]any) string {
	if gh, ok := doc["gitHub"].(map[string]any); ok {
		if r, _ := gh["repository"].(string); r != "" {
			return "github:" + strings.ToLower(strings.Trim(r, "/"))
		}
	}
	if sc, ok := doc["sourceContext"].(map[string]any); ok {
		if g, ok := sc["git"].(map[string]any); ok {
			if u, _ := g["repoUrl"].(string); u != "" {
				return "git:" + normalizeRepoURL(u)
			}
		}
	}
	return ""
}

// normalizeRepoURL reduces a clone URL to host/path: https://gitlab.example.com/g/p.git,
// git@gitlab.example.com:g/p.git and ssh://git@host/g/p all become host/g/p.
func normalizeRepoURL(u string) string {
	u = strings.TrimSpace(strings.ToLower(u))
	for _, p := range []string{"https://", "http://", "ssh://", "git://"} {
		u = strings.TrimPrefix(u, p)
	}
	if at := strings.Index(u, "@"); at >= 0 && at < strings.Index(u+"/", "/") {
		u = u[at+1:] // user info (user@, user:password@)
	}
	if i := strings.Index(u, ":"); i >= 0 && (strings.Index(u, "/") < 0 || i < strings.Index(u, "/")) {
		rest := u[i+1:]
		// host:port/path or host:path (scp-like)
		if j := strings.Index(rest, "/"); j >= 0 && isDigits(rest[:j]) {
			rest = rest[j+1:]
		}
		u = u[:i] + "/" + rest
	}
	u = strings.TrimSuffix(strings.TrimSuffix(u, "/"), ".git")
	return u
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// sortedKeys is for deterministic iteration.
func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// isCommitHash reports whether c looks like a (possibly abbreviated) SHA-1 or SHA-256
// commit hash: hexadecimal digits only.
func isCommitHash(c string) bool {
	if c == "" || len(c) > 64 {
		return false
	}
	for _, r := range c {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f' || r >= 'A' && r <= 'F') {
			return false
		}
	}
	return true
}
