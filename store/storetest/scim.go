package storetest

import (
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testSCIM: one SCIM token per organization (replacing ends the old one and bumps the
// epoch); provisioned people by organization with a user name unique regardless of case;
// paging; email lookups; SCIM-managed teams.
func testSCIM(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	bob, carol := e.user("bob"), e.user("carol")
	var epoch0, epoch1 int64
	e.view(func(tx gatehouse.Tx) error {
		_, err := tx.GetSCIMToken(acme.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "SCIM token of an organization without one")
		epoch0, err = tx.SecurityEpoch()
		return err
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutSCIMToken(&gatehouse.SCIMToken{OrgID: acme.ID, ID: "t1", Digest: [32]byte{1}, CreatedBy: "alice"})
	})
	e.update(func(tx gatehouse.Tx) error {
		return tx.PutSCIMToken(&gatehouse.SCIMToken{OrgID: acme.ID, ID: "t2", Digest: [32]byte{2}, CreatedBy: "alice"})
	})
	e.view(func(tx gatehouse.Tx) error {
		st, err := tx.GetSCIMToken(acme.ID)
		if err != nil {
			return err
		}
		if st.ID != "t2" || st.Digest != [32]byte{2} || st.CreatedBy != "alice" || st.Created.IsZero() {
			t.Fatalf("GetSCIMToken = %+v, want the second", st)
		}
		epoch1, err = tx.SecurityEpoch()
		return err
	})
	if epoch1 < epoch0+2 {
		t.Fatalf("PutSCIMToken did not bump the security epoch (%d -> %d)", epoch0, epoch1)
	}
	e.view(func(tx gatehouse.Tx) error {
		st, err := tx.GetSCIMTokenByDigest([32]byte{2})
		if err != nil || st.OrgID != acme.ID || st.ID != "t2" {
			t.Fatalf("GetSCIMTokenByDigest = %+v, %v", st, err)
		}
		_, err = tx.GetSCIMTokenByDigest([32]byte{1})
		wantCode(t, err, gatehouse.ENOTFOUND, "a replaced SCIM token by digest")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteSCIMToken(acme.ID) })
	err := e.try(func(tx gatehouse.Tx) error { return tx.DeleteSCIMToken(acme.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "deleting a deleted SCIM token")
	// People.
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.SetUserEmail(bob.ID, "Bob@Example.com"); err != nil {
			return err
		}
		return tx.CreateSCIMUser(&gatehouse.SCIMUser{OrgID: acme.ID, UserID: bob.ID, UserName: "Bob@example.com", GivenName: "Bob", Active: true})
	})
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.CreateSCIMUser(&gatehouse.SCIMUser{OrgID: acme.ID, UserID: carol.ID, UserName: "bob@EXAMPLE.com", Active: true})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "a user name taken regardless of case")
	e.update(func(tx gatehouse.Tx) error {
		// The same name in another organization is another person's.
		if err := tx.CreateSCIMUser(&gatehouse.SCIMUser{OrgID: beta.ID, UserID: carol.ID, UserName: "bob@example.com", Active: true}); err != nil {
			return err
		}
		return tx.CreateSCIMUser(&gatehouse.SCIMUser{OrgID: acme.ID, UserID: carol.ID, UserName: "carol@example.com", Active: true})
	})
	e.update(func(tx gatehouse.Tx) error {
		u, err := tx.GetSCIMUser(acme.ID, bob.ID)
		if err != nil {
			return err
		}
		if u.UserName != "Bob@example.com" || u.Email != "Bob@Example.com" || !u.Active || u.GivenName != "Bob" {
			t.Fatalf("GetSCIMUser = %+v", u)
		}
		u.Active, u.Role, u.FamilyName, u.UserName = false, gatehouse.RoleAdmin, "B", "changed"
		return tx.UpdateSCIMUser(u)
	})
	e.view(func(tx gatehouse.Tx) error {
		u, err := tx.GetSCIMUser(acme.ID, bob.ID)
		if err != nil {
			return err
		}
		if u.UserName != "Bob@example.com" || u.Active || u.Role != gatehouse.RoleAdmin || u.FamilyName != "B" {
			t.Fatalf("after UpdateSCIMUser: %+v (the user name never changes)", u)
		}
		us, total, err := tx.ListSCIMUsers(acme.ID, gatehouse.SCIMUserFilter{UserName: "BOB@example.com", Limit: 10})
		if err != nil || total != 1 || len(us) != 1 || us[0].UserID != bob.ID {
			t.Fatalf("ListSCIMUsers by name = %v, %d, %v", us, total, err)
		}
		us, total, err = tx.ListSCIMUsers(acme.ID, gatehouse.SCIMUserFilter{Offset: 1, Limit: 10})
		if err != nil || total != 2 || len(us) != 1 || us[0].UserID != carol.ID {
			t.Fatalf("ListSCIMUsers page 2 = %v, %d, %v", us, total, err)
		}
		if _, total, _ = tx.ListSCIMUsers(acme.ID, gatehouse.SCIMUserFilter{}); total != 2 {
			t.Fatalf("count only: %d", total)
		}
		found, err := tx.FindUsersByEmail("bob@example.COM")
		if err != nil || len(found) != 1 || found[0].ID != bob.ID {
			t.Fatalf("FindUsersByEmail = %v, %v", found, err)
		}
		_, err = tx.GetSCIMUser(beta.ID, bob.ID)
		wantCode(t, err, gatehouse.ENOTFOUND, "a person not provisioned in that organization")
		return nil
	})
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteSCIMUser(acme.ID, bob.ID) })
	err = e.try(func(tx gatehouse.Tx) error { return tx.DeleteSCIMUser(acme.ID, bob.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "deleting a forgotten record")
	// Managed teams.
	tm := e.team(acme.ID, "eng")
	e.update(func(tx gatehouse.Tx) error { return tx.MarkSCIMTeam(acme.ID, tm.ID) })
	e.update(func(tx gatehouse.Tx) error { return tx.TouchSCIMTeam(tm.ID) })
	e.view(func(tx gatehouse.Tx) error {
		ok, err := tx.IsSCIMTeam(tm.ID)
		if err != nil || !ok {
			t.Fatalf("IsSCIMTeam = %v, %v", ok, err)
		}
		c, m, err := tx.SCIMTeamTimes(tm.ID)
		if err != nil || c.IsZero() || m.Before(c) {
			t.Fatalf("SCIMTeamTimes = %v, %v, %v", c, m, err)
		}
		return nil
	})
	// Released by an admin: an ordinary team again (once).
	e.update(func(tx gatehouse.Tx) error { return tx.ReleaseSCIMTeam(tm.ID) })
	e.view(func(tx gatehouse.Tx) error {
		if ok, err := tx.IsSCIMTeam(tm.ID); err != nil || ok {
			t.Fatalf("a released team is still managed: %v, %v", ok, err)
		}
		return nil
	})
	err = e.try(func(tx gatehouse.Tx) error { return tx.ReleaseSCIMTeam(tm.ID) })
	wantCode(t, err, gatehouse.ENOTFOUND, "releasing a team not managed")
	e.update(func(tx gatehouse.Tx) error { return tx.MarkSCIMTeam(acme.ID, tm.ID) })
	e.update(func(tx gatehouse.Tx) error { return tx.DeleteTeam(tm.ID) })
	e.view(func(tx gatehouse.Tx) error {
		ok, err := tx.IsSCIMTeam(tm.ID)
		if err != nil || ok {
			t.Fatalf("a deleted team is still managed: %v, %v", ok, err)
		}
		return nil
	})
}
