package sso

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// TestSyncTeamsLeavesSCIMTeams: the group-to-team mapping applied at sign-in adds and
// removes members of ordinary teams, but never touches a team the identity provider manages
// through SCIM (those change only through SCIM).
func TestSyncTeamsLeavesSCIMTeams(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, t.TempDir(), sqlite.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	org := &gatehouse.Org{Name: "acme"}
	u := &gatehouse.User{Name: "alice"}
	plain := &gatehouse.Team{Name: "eng"}
	scim := &gatehouse.Team{Name: "ops"}
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		if err := tx.CreateOrg(org); err != nil {
			return err
		}
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		if err := tx.PutMember(org.ID, u.ID, gatehouse.RoleMember); err != nil {
			return err
		}
		for _, tm := range []*gatehouse.Team{plain, scim} {
			tm.OrgID = org.ID
			if err := tx.CreateTeam(tm); err != nil {
				return err
			}
		}
		if err := tx.PutTeamMember(scim.ID, u.ID, "member"); err != nil {
			return err
		}
		return tx.MarkSCIMTeam(org.ID, scim.ID)
	}); err != nil {
		t.Fatal(err)
	}
	mapping := map[string]string{"g-eng": "eng", "g-ops": "ops"}
	var changed []string
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		// alice is in g-eng only: eng gains her; ops (SCIM) keeps her though g-ops is absent.
		changed, err = syncTeams(tx, org.ID, u.ID, mapping, []string{"g-eng"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(changed) != 1 || changed[0] != "+eng" {
		t.Fatalf("changed %v, want [+eng] (the SCIM team left alone)", changed)
	}
	if err := db.View(ctx, func(tx gatehouse.Tx) error {
		ms, err := tx.ListTeamMembers(scim.ID)
		if err != nil || len(ms) != 1 {
			t.Errorf("SCIM team members %+v, %v; want alice kept", ms, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
