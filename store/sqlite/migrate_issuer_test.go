package sqlite_test

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// TestMigrationTokenIssuerBackfill: migration 0012 marks the tokens that earlier OIDC
// exchanges issued (recorded then only as created_by "oidc:<issuer>"), so that they cannot
// be rotated after an upgrade either, and takes pipeline-ness from the personal tokens that
// earlier rotations of issued tokens made.
func TestMigrationTokenIssuerBackfill(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var alice gatehouse.User
	issued := &gatehouse.Token{ID: "issued", Kind: gatehouse.TokenPersonal, Name: "oidc:github:abc", CreatedBy: "oidc:github", Pipeline: true}
	made := &gatehouse.Token{ID: "made", Kind: gatehouse.TokenPersonal, Name: "laptop", CreatedBy: "alice"}
	rotated := &gatehouse.Token{ID: "rotated", Kind: gatehouse.TokenPersonal, Name: "oidc:github:abc~2026", CreatedBy: "alice", Pipeline: true}
	team := &gatehouse.Token{ID: "team", Kind: gatehouse.TokenTeam, Name: "ci", CreatedBy: "alice", Pipeline: true, OrgID: 1, TeamID: 1}
	issued.Digest[0], made.Digest[0], rotated.Digest[0], team.Digest[0] = 1, 2, 3, 4
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		alice.Name = "alice"
		if err := tx.CreateUser(&alice); err != nil {
			return err
		}
		issued.UserID, made.UserID, rotated.UserID = alice.ID, alice.ID, alice.ID
		for _, tk := range []*gatehouse.Token{issued, made, rotated, team} {
			if err := tx.CreateToken(tk); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// The schema before 0012, then 0012 as written.
	stmts := append([]string{"ALTER TABLE tokens DROP COLUMN issuer"}, migrationStatements(t, "0012_token_issuer.sql")...)
	for _, st := range stmts {
		if _, err := db.Writer().Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if err := db.View(ctx, func(tx gatehouse.Tx) error {
		for _, want := range []gatehouse.Token{{ID: "issued", Issuer: "github", Pipeline: true}, {ID: "made"}, {ID: "rotated"}, {ID: "team", Pipeline: true}} {
			tk, err := tx.GetToken(want.ID)
			if err != nil {
				return err
			}
			if tk.Issuer != want.Issuer || tk.Pipeline != want.Pipeline {
				t.Errorf("token %s after the migration: issuer %q pipeline %v, want %q %v", want.ID, tk.Issuer, tk.Pipeline, want.Issuer, want.Pipeline)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
