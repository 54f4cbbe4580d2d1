package sqlite_test

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// TestMigrationSAMLIdentityScope: migration 0032 keys each SAML identity by the
// organization whose configuration linked it ("saml:<org id>:<entity ID>"), as sign-in now
// looks them up; OIDC and GitHub identities keep their issuer.
func TestMigrationSAMLIdentityScope(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const entity = "https://idp.example/metadata"
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		u := &gatehouse.User{Name: "alice"}
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		// As sign-in stored them before 0032.
		if err := tx.PutIdentity(&gatehouse.UserIdentity{Issuer: entity, Subject: "alice@example.com", UserID: u.ID, OrgID: 7, Provider: gatehouse.SignInSAML}); err != nil {
			return err
		}
		return tx.PutIdentity(&gatehouse.UserIdentity{Issuer: "https://accounts.example", Subject: "123", UserID: u.ID, OrgID: 7, Provider: gatehouse.SignInOIDC})
	}); err != nil {
		t.Fatal(err)
	}
	for _, st := range migrationStatements(t, "0032_saml_identity_scope.sql") {
		if _, err := db.Writer().Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if err := db.View(ctx, func(tx gatehouse.Tx) error {
		if _, err := tx.GetIdentity("saml:7:"+entity, "alice@example.com"); err != nil {
			t.Errorf("the SAML identity under its organization's key: %v", err)
		}
		if _, err := tx.GetIdentity(entity, "alice@example.com"); !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			t.Errorf("the SAML identity under the bare entity ID: %v", err)
		}
		if _, err := tx.GetIdentity("https://accounts.example", "123"); err != nil {
			t.Errorf("the OIDC identity: %v", err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
