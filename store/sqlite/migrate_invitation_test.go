package sqlite_test

import (
	"context"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// TestMigrationInvitationUserBackfill: migration 0017 binds the invitations made before it
// to the user who had the name when the invitation was made; one whose name was taken only
// afterwards (by another organization's admin, say: review H1), or never, is bound to nobody.
func TestMigrationInvitationUserBackfill(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	alice := &gatehouse.User{Name: "alice"}
	org := &gatehouse.Org{Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
	invs := map[string]*gatehouse.Invitation{}
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		if err := tx.CreateOrg(org); err != nil {
			return err
		}
		if err := tx.CreateUser(alice); err != nil {
			return err
		}
		for _, name := range []string{"Alice", "zed", "nobody"} {
			invs[name] = &gatehouse.Invitation{OrgID: org.ID, UserName: name, Role: gatehouse.RoleMember, Expires: time.Now().Add(time.Hour)}
			if err := tx.CreateInvitation(invs[name]); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	zed := &gatehouse.User{Name: "zed"}
	if err := db.Update(ctx, func(tx gatehouse.Tx) error { return tx.CreateUser(zed) }); err != nil {
		t.Fatal(err)
	}
	// zed's account is made after the invitation; alice's before it.
	for _, st := range []struct {
		q    string
		args []any
	}{
		{`UPDATE users SET created = ? WHERE id = ?`, []any{invs["zed"].Created.UnixNano() + 1, zed.ID}},
		{`UPDATE users SET created = ? WHERE id = ?`, []any{invs["Alice"].Created.UnixNano() - 1, alice.ID}},
	} {
		if _, err := db.Writer().Exec(st.q, st.args...); err != nil {
			t.Fatal(err)
		}
	}
	// The schema before 0017, then 0017 as written.
	stmts := append([]string{"DROP INDEX invitations_user_id", "ALTER TABLE invitations DROP COLUMN user_id", "CREATE INDEX invitations_user ON invitations (user_key)"},
		migrationStatements(t, "0017_invitation_user.sql")...)
	for _, st := range stmts {
		if _, err := db.Writer().Exec(st); err != nil {
			t.Fatalf("%s: %v", st, err)
		}
	}
	if err := db.View(ctx, func(tx gatehouse.Tx) error {
		for name, want := range map[string]int64{"Alice": alice.ID, "zed": 0, "nobody": 0} {
			got, err := tx.GetInvitation(invs[name].ID)
			if err != nil {
				return err
			}
			if got.UserID != want {
				t.Errorf("invitation of %s after the migration: user %d, want %d", name, got.UserID, want)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
