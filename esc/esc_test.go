package esc_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

type fixture struct {
	ctx   context.Context
	store gatehouse.Store
	svc   *esc.Service
	org   *gatehouse.Org
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, dir, sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	kr, err := secrets.OpenKeyring(ctx, "", dir)
	if err != nil {
		t.Fatal(err)
	}
	org := &gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
	if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.CreateOrg(org) }); err != nil {
		t.Fatal(err)
	}
	return &fixture{ctx: ctx, store: db, svc: esc.New(db, secrets.NewManager(kr, nil), nil), org: org}
}

// put creates (or revises) project/name with def, secrets encrypted as a write would.
func (f *fixture) put(t *testing.T, project, name, def string) *gatehouse.Environment {
	t.Helper()
	var env *gatehouse.Environment
	err := f.store.Update(f.ctx, func(tx gatehouse.Tx) error {
		var err error
		env, err = tx.GetEnvironment(f.org.ID, project, name)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			env = &gatehouse.Environment{OrgID: f.org.ID, Project: project, Name: name}
			err = tx.CreateEnvironment(env, nil)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := f.svc.EncryptSecrets(f.ctx, env, []byte(def))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.store.Update(f.ctx, func(tx gatehouse.Tx) error {
		n, err := tx.PutEnvRevision(env.ID, -1, stored, "alice")
		env.Revision = n
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return env
}

func (f *fixture) latest(t *testing.T, env *gatehouse.Environment) []byte {
	var def []byte
	if err := f.store.View(f.ctx, func(tx gatehouse.Tx) error {
		r, err := tx.GetEnvRevision(env.ID, env.Revision)
		if err == nil {
			def = r.YAML
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return def
}

func allowAll(*gatehouse.Environment, bool) error { return nil }

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"dev", "my-env_1.2", "A"} {
		if err := esc.ValidateName("environment", ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "a b", "..", strings.Repeat("x", 101), "é"} {
		if err := esc.ValidateName("environment", bad); !gatehouse.IsCode(err, gatehouse.EINVALID) {
			t.Errorf("%q: got %v, want EINVALID", bad, err)
		}
	}
}

func TestSecretsAtRestAndEvaluation(t *testing.T) {
	f := newFixture(t)
	base := f.put(t, "app", "base", "values:\n  region: eu-west-1\n  token:\n    fn::secret: s3cr3t-base\n")
	if strings.Contains(string(f.latest(t, base)), "s3cr3t") || !strings.Contains(string(f.latest(t, base)), "ciphertext") {
		t.Fatalf("stored definition holds plaintext or no ciphertext:\n%s", f.latest(t, base))
	}
	dev := f.put(t, "app", "dev", "imports:\n  - app/base\nvalues:\n  url: https://${region}.example.com\n  password:\n    fn::secret: hunter2\n  environmentVariables:\n    PASSWORD: ${password}\n")
	stored := f.latest(t, dev)
	if strings.Contains(string(stored), "hunter2") {
		t.Fatalf("plaintext at rest:\n%s", stored)
	}
	clear, err := f.svc.DecryptSecrets(f.ctx, dev, stored)
	if err != nil || !strings.Contains(string(clear), "fn::secret: hunter2") {
		t.Fatalf("DecryptSecrets = %s, %v", clear, err)
	}
	// Ciphertext of one environment does not open in another.
	other := f.put(t, "app", "other", "values: {}\n")
	if _, err := f.svc.DecryptSecrets(f.ctx, other, stored); err == nil {
		t.Fatal("another environment's key decrypted dev's secrets")
	}

	out, _, err := f.svc.Evaluate(f.ctx, esc.EvalRequest{Org: f.org, Env: dev, Definition: stored, ShowSecrets: true, Access: allowAll})
	if err != nil {
		t.Fatal(err)
	}
	if v := out.Properties["url"].Value; v != "https://eu-west-1.example.com" {
		t.Errorf("url = %v", v)
	}
	if p := out.Properties["password"]; p.Value != "hunter2" || !p.Secret {
		t.Errorf("password = %+v, want the secret in the clear", p)
	}
	if tok := out.Properties["token"]; tok.Value != "s3cr3t-base" || !tok.Secret {
		t.Errorf("imported secret = %+v", tok)
	}
	// Check without secrets redacts them.
	out, _, err = f.svc.Evaluate(f.ctx, esc.EvalRequest{Org: f.org, Env: dev, Definition: stored, Check: true, Access: allowAll})
	if err != nil {
		t.Fatal(err)
	}
	if p := out.Properties["password"]; p.Value == "hunter2" {
		t.Errorf("check without showSecrets revealed %+v", p)
	}
}

func TestEvaluationErrors(t *testing.T) {
	f := newFixture(t)
	a := f.put(t, "default", "a", "imports: [b]\nvalues: {x: 1}\n")
	f.put(t, "default", "b", "imports: [a]\nvalues: {y: 2}\n")
	secret := f.put(t, "default", "secret", "values: {k: v}\n")

	eval := func(def string, access esc.Access, check bool) error {
		_, _, err := f.svc.Evaluate(f.ctx, esc.EvalRequest{Org: f.org, Definition: []byte(def), Access: access, Check: check})
		return err
	}
	wantDiag := func(err error, want string) {
		t.Helper()
		var ee *esc.Error
		if !errors.As(err, &ee) {
			t.Fatalf("got %v, want an evaluation error", err)
		}
		for _, d := range ee.Diagnostics {
			if strings.Contains(d.Summary, want) {
				return
			}
		}
		t.Errorf("diagnostics %+v lack %q", ee.Diagnostics, want)
	}
	wantDiag(eval("values: [unclosed\n", allowAll, true), "")
	wantDiag(eval("values:\n  x: ${nope}\n", allowAll, true), "unknown property")
	_, _, err := f.svc.Evaluate(f.ctx, esc.EvalRequest{Org: f.org, Env: a, Definition: f.latest(t, a), Access: allowAll})
	wantDiag(err, "cyclic import")
	wantDiag(eval("imports: [missing]\n", allowAll, true), `environment "missing" not found`)
	deny := func(env *gatehouse.Environment, open bool) error {
		if env.ID == secret.ID && open {
			return gatehouse.Errorf(gatehouse.EFORBIDDEN, "no open permission")
		}
		return nil
	}
	wantDiag(eval("imports: [secret]\n", deny, false), `access to imported environment "secret" denied`)
	if err := eval("imports: [secret]\n", deny, true); err != nil {
		t.Errorf("check needs read only on imports: %v", err)
	}
	// Unsupported providers check (unknown values) but do not open.
	def := "values:\n  aws:\n    fn::open::aws-login:\n      oidc: {roleArn: x}\n"
	if err := eval(def, allowAll, true); err != nil {
		t.Errorf("check of an unsupported provider: %v", err)
	}
	wantDiag(eval(def, allowAll, false), "not supported by this server")
	wantDiag(eval("values:\n  x:\n    fn::open::no-such: {}\n", allowAll, true), `unknown provider "no-such"`)
}
