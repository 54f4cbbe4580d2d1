package app_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

func newKeyURL(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(k)
}

// encryptWith opens the store and keyring of cfg, encrypts a value for a new stack and
// returns the stack ID and ciphertext.
func encryptWith(t *testing.T, cfg app.Config) (int64, []byte) {
	ctx := context.Background()
	store, err := app.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kr, err := app.OpenKeyring(ctx, cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	defer kr.Close()
	if _, err := app.Bootstrap(ctx, store, "acme", "alice"); err != nil {
		t.Fatal(err)
	}
	st := &gatehouse.Stack{Project: "p", Name: "s"}
	if err := store.Update(ctx, func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		st.OrgID = org.ID
		return tx.CreateStack(st)
	}); err != nil {
		t.Fatal(err)
	}
	ct, err := secrets.NewManager(kr, app.StoreKeys{Store: store}).Encrypt(ctx, st.ID, []byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	return st.ID, ct
}

func decryptWith(t *testing.T, cfg app.Config, stackID int64, ct []byte) (string, error) {
	ctx := context.Background()
	store, err := app.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	kr, err := app.OpenKeyring(ctx, cfg, store)
	if err != nil {
		return "", err
	}
	defer kr.Close()
	pt, err := secrets.NewManager(kr, app.StoreKeys{Store: store}).Decrypt(ctx, stackID, ct)
	return string(pt), err
}

func TestWrongOrMissingKeyRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir}
	id, ct := encryptWith(t, cfg)
	keyFile := filepath.Join(dir, secrets.KeyFileName)
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, want 0600", fi.Mode().Perm())
	}
	if pt, err := decryptWith(t, cfg, id, ct); err != nil || pt != "s3cret" {
		t.Fatalf("reopen: %q %v", pt, err)
	}
	original, _ := os.ReadFile(keyFile)

	// A missing key file: a new key would be made, and the canary refuses it.
	os.Remove(keyFile)
	if _, err := decryptWith(t, cfg, id, ct); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("missing key: want a refusal, got %v", err)
	}
	// A different key: refused the same way, and nothing was changed on the way.
	os.Remove(keyFile)
	if _, err := decryptWith(t, app.Config{DataDir: dir, Keyring: newKeyURL(t)}, id, ct); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("wrong key: want a refusal, got %v", err)
	}
	// The right key again: everything reads.
	if err := os.WriteFile(keyFile, original, 0o600); err != nil {
		t.Fatal(err)
	}
	if pt, err := decryptWith(t, cfg, id, ct); err != nil || pt != "s3cret" {
		t.Fatalf("restored key: %q %v", pt, err)
	}
}

func TestRotateKeys(t *testing.T) {
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir}
	id, ct := encryptWith(t, cfg)
	ctx := context.Background()
	store, err := app.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	from, err := app.OpenKeyring(ctx, cfg, store)
	if err != nil {
		t.Fatal(err)
	}
	next := newKeyURL(t)
	to, err := secrets.OpenKeyring(ctx, next, dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := app.RotateKeys(ctx, store, from, to)
	if err != nil || n != 1 {
		t.Fatalf("rotate: %d %v", n, err)
	}
	from.Close()
	to.Close()
	store.Close()
	// The new keyring reads the old ciphertext; the old one is refused.
	if pt, err := decryptWith(t, app.Config{DataDir: dir, Keyring: next}, id, ct); err != nil || pt != "s3cret" {
		t.Fatalf("after rotation: %q %v", pt, err)
	}
	if _, err := decryptWith(t, cfg, id, ct); err == nil {
		t.Fatal("the old keyring still opens the data after rotation")
	}
}

// TestRotateKeysCoversEnvironments: rotation re-wraps environment data keys too, so that
// environment secrets still open with the new keyring.
func TestRotateKeysCoversEnvironments(t *testing.T) {
	dir := t.TempDir()
	cfg := app.Config{DataDir: dir}
	encryptWith(t, cfg)
	ctx := context.Background()
	open := func(c app.Config) (gatehouse.Store, *secrets.Keyring, error) {
		store, err := app.OpenStore(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		kr, err := app.OpenKeyring(ctx, c, store)
		return store, kr, err
	}
	store, from, err := open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &gatehouse.Environment{Project: "app", Name: "dev"}
	if err := store.Update(ctx, func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		env.OrgID = org.ID
		return tx.CreateEnvironment(env, nil)
	}); err != nil {
		t.Fatal(err)
	}
	def, err := esc.New(store, secrets.NewManager(from, app.StoreKeys{Store: store}), nil).EncryptSecrets(ctx, env, []byte("values:\n  pw:\n    fn::secret: hunter2\n"))
	if err != nil {
		t.Fatal(err)
	}
	next := newKeyURL(t)
	to, err := secrets.OpenKeyring(ctx, next, dir)
	if err != nil {
		t.Fatal(err)
	}
	// A webhook secret of acme (sealed under the organization's webhook key).
	hookCT, err := webhook.Keys(secrets.NewManager(from, app.StoreKeys{Store: store}), store).Encrypt(ctx, env.OrgID, []byte("hook-secret"))
	if err != nil {
		t.Fatal(err)
	}
	// An SSO client secret of acme (sealed under the organization's SSO key).
	ssoCT, err := sso.Keys(secrets.NewManager(from, app.StoreKeys{Store: store}), store).Encrypt(ctx, env.OrgID, []byte("client-secret"))
	if err != nil {
		t.Fatal(err)
	}
	// A VCS webhook secret of acme (sealed under the organization's deployments key).
	vcsCT, err := deploy.VCSKeys(secrets.NewManager(from, app.StoreKeys{Store: store}), store).Encrypt(ctx, env.OrgID, []byte("vcs-secret"))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := app.RotateKeys(ctx, store, from, to); err != nil || n != 5 {
		t.Fatalf("rotate: %d %v (want the stack's, the environment's, the webhook, the SSO and the VCS webhook keys)", n, err)
	}
	from.Close()
	to.Close()
	store.Close()
	store, kr, err := open(app.Config{DataDir: dir, Keyring: next})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	defer kr.Close()
	clear, err := esc.New(store, secrets.NewManager(kr, app.StoreKeys{Store: store}), nil).DecryptSecrets(ctx, env, def)
	if err != nil || !strings.Contains(string(clear), "hunter2") {
		t.Fatalf("environment secret after rotation: %s %v", clear, err)
	}
	hook, err := webhook.Keys(secrets.NewManager(kr, app.StoreKeys{Store: store}), store).Decrypt(ctx, env.OrgID, hookCT)
	if err != nil || string(hook) != "hook-secret" {
		t.Fatalf("webhook secret after rotation: %q %v", hook, err)
	}
	cs, err := sso.Keys(secrets.NewManager(kr, app.StoreKeys{Store: store}), store).Decrypt(ctx, env.OrgID, ssoCT)
	if err != nil || string(cs) != "client-secret" {
		t.Fatalf("SSO client secret after rotation: %q %v", cs, err)
	}
	vs, err := deploy.VCSKeys(secrets.NewManager(kr, app.StoreKeys{Store: store}), store).Decrypt(ctx, env.OrgID, vcsCT)
	if err != nil || string(vs) != "vcs-secret" {
		t.Fatalf("VCS webhook secret after rotation: %q %v", vs, err)
	}
}
