// Package esc is Gatehouse's environments service (Pulumi ESC): names as the CLI checks
// them, secrets at rest, evaluation with Pulumi's own evaluator (github.com/pulumi/esc/eval)
// over environments loaded from the store, and the provider registry. It decides nothing
// about access: the caller passes an Access function (backed by authz.Decide) that is asked
// for every imported environment.
package esc

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	pesc "github.com/pulumi/esc"
	"github.com/pulumi/esc/ast"
	"github.com/pulumi/esc/eval"
	"github.com/pulumi/esc/syntax"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/keystore"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// DefaultProject is the project of environments named without one.
const DefaultProject = "default"

// AnonymousName is the name of an anonymous (yaml/check) environment.
const AnonymousName = pesc.AnonymousEnvironmentName

var nameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateName checks a project or environment name the way the service API does:
// alphanumerics, '-', '_' and '.', at most 100 characters, not "." or "..".
func ValidateName(kind, s string) error {
	if s == "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "%s name is required", kind)
	}
	if len(s) > 100 {
		return gatehouse.Errorf(gatehouse.EINVALID, "%s name %q is too long (at most 100 characters)", kind, s)
	}
	if !nameRE.MatchString(s) || s == "." || s == ".." {
		return gatehouse.Errorf(gatehouse.EINVALID, "%s name %q may only contain alphanumeric characters, hyphens, underscores and periods", kind, s)
	}
	return nil
}

// ParseImport splits an import reference as the evaluator names it: "project/env",
// "env" (project default) with an optional "@version" (a revision number or a tag).
func ParseImport(ref string) (project, name, version string, err error) {
	base := ref
	if i := strings.LastIndexAny(ref, "@"); i >= 0 {
		base, version = ref[:i], ref[i+1:]
		if version == "" {
			return "", "", "", fmt.Errorf("invalid environment reference %q: empty version", ref)
		}
	}
	parts := strings.Split(base, "/")
	switch len(parts) {
	case 1:
		project, name = DefaultProject, parts[0]
	case 2:
		project, name = parts[0], parts[1]
	default:
		return "", "", "", fmt.Errorf("invalid environment reference %q: want project/name", ref)
	}
	if ValidateName("project", project) != nil || ValidateName("environment", name) != nil {
		return "", "", "", fmt.Errorf("invalid environment reference %q", ref)
	}
	return project, name, version, nil
}

// ResolveVersion turns a version (a revision number or a tag; "" and "latest" are the
// newest) into a revision number of env. ENOTFOUND for a tag or revision that does not exist.
func ResolveVersion(tx gatehouse.Tx, env *gatehouse.Environment, version string) (int, error) {
	if version == "" || version == "latest" {
		return env.Revision, nil
	}
	if version[0] >= '0' && version[0] <= '9' {
		n, err := strconv.Atoi(version)
		if err != nil || n < 1 {
			return 0, gatehouse.Errorf(gatehouse.EINVALID, "invalid revision %q", version)
		}
		if n > env.Revision {
			return 0, gatehouse.Errorf(gatehouse.ENOTFOUND, "revision %d of environment %s/%s not found", n, env.Project, env.Name)
		}
		return n, nil
	}
	tg, err := tx.GetEnvTag(env.ID, version)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return 0, gatehouse.Errorf(gatehouse.ENOTFOUND, "tag %q of environment %s/%s not found", version, env.Project, env.Name)
		}
		return 0, err
	}
	return tg.Revision, nil
}

// LoadRevision resolves version (see ResolveVersion) and reads that revision. A retracted
// revision cannot be read or opened: it is ENOTFOUND with a message naming its replacement.
func LoadRevision(tx gatehouse.Tx, env *gatehouse.Environment, version string) (*gatehouse.EnvRevision, error) {
	n, err := ResolveVersion(tx, env, version)
	if err != nil {
		return nil, err
	}
	rev, err := tx.GetEnvRevision(env.ID, n)
	if err != nil {
		return nil, err
	}
	if rt := rev.Retracted; rt != nil {
		msg := fmt.Sprintf("revision %d of environment %s/%s was retracted (use revision %d instead)", n, env.Project, env.Name, rt.Replacement)
		if rt.Reason != "" {
			msg += ": " + rt.Reason
		}
		return nil, gatehouse.Wrap(gatehouse.ENOTFOUND, ErrRetracted, "%s", msg)
	}
	return rev, nil
}

// ErrRetracted is wrapped by LoadRevision's error for a retracted revision.
var ErrRetracted = errors.New("revision retracted")

// Service evaluates and protects environments.
type Service struct {
	store     gatehouse.Store
	keys      *secrets.Manager
	providers *Registry
	maxOpen   time.Duration
}

// DefaultMaxOpenDuration is the default bound of an open session's lifetime.
const DefaultMaxOpenDuration = 24 * time.Hour

// SetMaxOpenDuration bounds the lifetime of open sessions (d <= 0: the default). Call it
// before serving.
func (s *Service) SetMaxOpenDuration(d time.Duration) {
	if d <= 0 {
		d = DefaultMaxOpenDuration
	}
	s.maxOpen = d
}

// MaxOpenDuration is the longest lifetime an open session may ask for.
func (s *Service) MaxOpenDuration() time.Duration { return s.maxOpen }

// EnvKeyLabel is the AAD label of environment secrets.
const EnvKeyLabel = "gatehouse/env-secret/v1:"

// New returns the service. stackKeys is the stacks' secrets manager: environments use its
// keyring (the same envelope scheme) with their own data keys, one per environment.
func New(store gatehouse.Store, stackKeys *secrets.Manager, providers *Registry) *Service {
	if providers == nil {
		providers = NewRegistry()
	}
	return &Service{store: store, keys: stackKeys.Derive(keystore.Store{Store: store, Table: envKeys}, secrets.WithLabel(EnvKeyLabel)), providers: providers, maxOpen: DefaultMaxOpenDuration}
}

// Keys returns the environments' secrets manager (data keys per environment ID).
func (s *Service) Keys() *secrets.Manager { return s.keys }

// crypter encrypts and decrypts one environment's secrets (eval.Encrypter/Decrypter).
type crypter struct {
	keys  *secrets.Manager
	envID int64
}

func (c crypter) Encrypt(ctx context.Context, plaintext []byte) ([]byte, error) {
	return c.keys.Encrypt(ctx, c.envID, plaintext)
}

func (c crypter) Decrypt(ctx context.Context, ciphertext []byte) ([]byte, error) {
	return c.keys.Decrypt(ctx, c.envID, ciphertext)
}

// noCrypter refuses ciphertext: anonymous definitions have no data key.
type noCrypter struct{}

func (noCrypter) Encrypt(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("this definition has no data key")
}

func (noCrypter) Decrypt(context.Context, []byte) ([]byte, error) {
	return nil, errors.New("ciphertext can only be decrypted in the environment it was written to")
}

// EncryptSecrets returns def with every plaintext fn::secret replaced by ciphertext under
// the environment's data key (created on first use). Existing ciphertext is kept.
func (s *Service) EncryptSecrets(ctx context.Context, env *gatehouse.Environment, def []byte) ([]byte, error) {
	out, err := eval.EncryptSecrets(ctx, env.Project+"/"+env.Name, def, crypter{s.keys, env.ID})
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "cannot encrypt the definition's secrets: %v", err)
	}
	return out, nil
}

// DecryptSecrets returns def with the fn::secret ciphertext under values in the clear.
func (s *Service) DecryptSecrets(ctx context.Context, env *gatehouse.Environment, def []byte) ([]byte, error) {
	if len(def) == 0 {
		return def, nil
	}
	out, err := eval.DecryptSecrets(ctx, env.Project+"/"+env.Name, def, crypter{s.keys, env.ID})
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "cannot decrypt the environment's secrets")
	}
	return out, nil
}

// Diagnostic is an evaluation diagnostic as the CLI reads it (EnvironmentDiagnostic).
type Diagnostic struct {
	Range    *pesc.Range `json:"range,omitempty"`
	Summary  string      `json:"summary,omitempty"`
	Detail   string      `json:"detail,omitempty"`
	Severity string      `json:"severity,omitempty"`
	Path     string      `json:"path,omitempty"`
}

// Diagnostics are the diagnostics of one evaluation.
type Diagnostics []Diagnostic

// HasErrors reports whether any diagnostic is an error.
func (ds Diagnostics) HasErrors() bool {
	for _, d := range ds {
		if d.Severity != "warning" {
			return true
		}
	}
	return false
}

// Error is an evaluation that failed: the HTTP layer answers 400 with the diagnostics.
type Error struct {
	Message     string
	Diagnostics Diagnostics
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Message)
	for _, d := range e.Diagnostics {
		b.WriteString("; ")
		b.WriteString(d.Summary)
	}
	return b.String()
}

func convertDiags(ds syntax.Diagnostics) Diagnostics {
	out := make(Diagnostics, 0, len(ds))
	for _, d := range ds {
		wd := Diagnostic{Summary: d.Summary, Detail: d.Detail, Path: d.Path, Severity: "error"}
		if d.Severity == 2 { // hcl.DiagWarning
			wd.Severity = "warning"
		}
		if r := d.Subject; r != nil {
			wd.Range = &pesc.Range{
				Environment: r.Filename,
				Begin:       pesc.Pos{Line: r.Start.Line, Column: r.Start.Column, Byte: r.Start.Byte},
				End:         pesc.Pos{Line: r.End.Line, Column: r.End.Column, Byte: r.End.Byte},
			}
		}
		out = append(out, wd)
	}
	return out
}

// Access decides whether the caller may use an imported environment (open: the values
// in the clear; otherwise read). It returns an error naming the environment when not.
type Access func(env *gatehouse.Environment, open bool) error

// EvalRequest is one evaluation.
type EvalRequest struct {
	Org *gatehouse.Org
	// Env is the stored environment evaluated (nil: an anonymous definition).
	Env *gatehouse.Environment
	// Definition is the YAML (stored form: secrets as ciphertext of Env's data key).
	Definition []byte
	// Check evaluates symbolically: providers are not called (their values are unknown).
	Check bool
	// ShowSecrets reveals secret values (open, or check with showSecrets).
	ShowSecrets bool
	// Access is asked for each import; nil refuses every import.
	Access Access
	// UserLogin fills context.pulumi.user.login.
	UserLogin string
	// Overrides replace imports by name while the import graph is resolved (the pulumi
	// CLI's environmentOverrides: `pulumi up --override-env a=b`).
	Overrides map[string]string
	// Stacks reads stack outputs for the pulumi-stacks provider (nil: it fails).
	Stacks StackReader
}

// Evaluate evaluates a definition with Pulumi's evaluator. A definition that does not
// evaluate is an *Error with the diagnostics; warnings come back with the result.
func (s *Service) Evaluate(ctx context.Context, rq EvalRequest) (*pesc.Environment, Diagnostics, error) {
	name := AnonymousName
	var dec eval.Decrypter = noCrypter{}
	if rq.Env != nil {
		name = rq.Env.Project + "/" + rq.Env.Name
		dec = crypter{s.keys, rq.Env.ID}
	}
	decl, sdiags, err := eval.LoadYAMLBytes(name, rq.Definition)
	if err != nil {
		return nil, nil, &Error{Message: "invalid environment definition: " + err.Error(), Diagnostics: append(convertDiags(sdiags), Diagnostic{Summary: err.Error(), Severity: "error"})}
	}
	if sdiags.HasErrors() {
		return nil, nil, &Error{Message: "invalid environment definition", Diagnostics: convertDiags(sdiags)}
	}
	if decl == nil {
		decl = &ast.EnvironmentDecl{}
	}
	execCtx, err := pesc.NewExecContext(map[string]pesc.Value{
		"pulumi": pesc.NewValue(map[string]pesc.Value{
			"user":         pesc.NewValue(map[string]pesc.Value{"login": pesc.NewValue(rq.UserLogin)}),
			"organization": pesc.NewValue(map[string]pesc.Value{"login": pesc.NewValue(rq.Org.Name)}),
		}),
	})
	if err != nil {
		return nil, nil, err
	}
	ctx = withStacks(ctx, rq.Stacks)
	ld := &loader{s: s, org: rq.Org, access: rq.Access, open: !rq.Check || rq.ShowSecrets, overrides: rq.Overrides}
	if n := total(ld.estimate(ctx, decl)); ld.err != nil {
		return nil, nil, ld.err
	} else if n > MaxEvalBytes {
		msg := fmt.Sprintf("the environment would evaluate to more than %d MiB (its references, with its imports', copy values too many times); it is not evaluated", MaxEvalBytes>>20)
		return nil, nil, &Error{Message: msg, Diagnostics: Diagnostics{{Summary: msg, Severity: "error"}}}
	}
	var out *pesc.Environment
	var ediags syntax.Diagnostics
	if rq.Check {
		out, ediags = eval.CheckEnvironment(ctx, name, decl, dec, s.providers, ld, execCtx, rq.ShowSecrets)
	} else {
		out, ediags = eval.EvalEnvironment(ctx, name, decl, dec, s.providers, ld, execCtx)
	}
	diags := append(convertDiags(sdiags), convertDiags(ediags)...)
	if ld.err != nil {
		return nil, nil, ld.err
	}
	if diags.HasErrors() {
		msg := "the environment definition has errors"
		if len(ld.denied) > 0 {
			// The message is the audit event's reason: a refused import is named there.
			msg = "access to imported environment " + strings.Join(ld.denied, ", ") + " denied"
		}
		return nil, nil, &Error{Message: msg, Diagnostics: diags}
	}
	return out, diags, nil
}

// Check parses and checks a definition before it is stored: errors are an *Error.
func (s *Service) Check(ctx context.Context, rq EvalRequest) (Diagnostics, error) {
	rq.Check, rq.ShowSecrets = true, false
	_, diags, err := s.Evaluate(ctx, rq)
	return diags, err
}

// loader loads imported environments from the store, asking Access for each.
type loader struct {
	s         *Service
	org       *gatehouse.Org
	access    Access
	open      bool
	overrides map[string]string
	denied    []string // imports refused by Access (quoted)
	err       error    // a store failure (not an evaluation diagnostic)
	// loaded remembers each import's answer (estimate loads them before the evaluator
	// does: each is read and decided once); bounds their size bounds (estimate).
	loaded map[string]loaded
	bounds map[string]map[string]int64
}

type loaded struct {
	def []byte
	dec eval.Decrypter
	err error
}

func (l *loader) LoadEnvironment(ctx context.Context, ref string) ([]byte, eval.Decrypter, error) {
	if r, ok := l.loaded[ref]; ok {
		return r.def, r.dec, r.err
	}
	def, dec, err := l.load(ctx, ref)
	if l.loaded == nil {
		l.loaded = map[string]loaded{}
	}
	l.loaded[ref] = loaded{def, dec, err}
	return def, dec, err
}

func (l *loader) load(ctx context.Context, ref string) ([]byte, eval.Decrypter, error) {
	if o, ok := l.overrides[ref]; ok {
		ref = o
	}
	project, name, version, err := ParseImport(ref)
	if err != nil {
		return nil, nil, err
	}
	var env *gatehouse.Environment
	var rev *gatehouse.EnvRevision
	var retracted error
	err = l.s.store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		env, err = tx.GetEnvironment(l.org.ID, project, name)
		if err != nil {
			return err
		}
		rev, err = LoadRevision(tx, env, version)
		if errors.Is(err, ErrRetracted) {
			retracted, err = err, nil // said only to a caller who may use the environment
		}
		return err
	})
	notFound := fmt.Errorf("environment %q not found", ref)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.EINVALID) {
			return nil, nil, notFound
		}
		l.err = err
		return nil, nil, fmt.Errorf("cannot load environment %q", ref)
	}
	if l.access == nil {
		return nil, nil, fmt.Errorf("imports are not allowed here (%q)", ref)
	}
	if err := l.access(env, l.open); err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil, notFound // a hidden environment reads as a missing one
		}
		l.denied = append(l.denied, strconv.Quote(ref))
		return nil, nil, fmt.Errorf("access to imported environment %q denied: %s", ref, gatehouse.ErrorMessage(err))
	}
	if retracted != nil {
		return nil, nil, fmt.Errorf("cannot import %q: %s", ref, gatehouse.ErrorMessage(retracted))
	}
	return rev.YAML, crypter{l.s.keys, env.ID}, nil
}

// envKeys is the environments' data keys.
var envKeys = keystore.Table{Get: gatehouse.Tx.GetEnvKey, Create: gatehouse.Tx.CreateEnvKey}

// Unwrap makes an evaluation error a 400 (EINVALID) for the HTTP layer's status table.
func (e *Error) Unwrap() error { return gatehouse.Errorf(gatehouse.EINVALID, "%s", e.Message) }
