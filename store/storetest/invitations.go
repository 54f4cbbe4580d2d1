package storetest

import (
	"slices"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// testInvitations: invitations by user name, bound to a user ID (0 for a name nobody has),
// at most one pending per organization and name, answered once, never after their expiry;
// and the organization that created a user.
func testInvitations(t *testing.T, e *env) {
	acme, beta := e.org("acme"), e.org("beta")
	bob, dave := e.user("bob"), e.user("dave")
	now := e.now()
	week := now.Add(7 * 24 * time.Hour)
	inv := &gatehouse.Invitation{OrgID: beta.ID, UserName: "Bob", UserID: bob.ID, Role: gatehouse.RoleMember, InvitedBy: "alice", Expires: week}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateInvitation(inv) })
	if len(inv.ID) < 32 || inv.Created.IsZero() || inv.Status != gatehouse.InvitationPending || inv.OrgName != "beta" {
		t.Fatalf("CreateInvitation = %+v, want a random ID, Created, pending, org beta", inv)
	}
	// One pending invitation per organization and name, regardless of case; other
	// organizations and names are independent.
	err := e.try(func(tx gatehouse.Tx) error {
		return tx.CreateInvitation(&gatehouse.Invitation{OrgID: beta.ID, UserName: "bob", Role: gatehouse.RoleAdmin, Expires: week})
	})
	wantCode(t, err, gatehouse.ECONFLICT, "a second pending invitation for bob to beta")
	err = e.try(func(tx gatehouse.Tx) error {
		return tx.CreateInvitation(&gatehouse.Invitation{OrgID: beta.ID, UserName: "", Role: gatehouse.RoleAdmin, Expires: week})
	})
	wantCode(t, err, gatehouse.EINVALID, "an invitation without a user name")
	other := &gatehouse.Invitation{OrgID: acme.ID, UserName: "bob", UserID: bob.ID, Role: gatehouse.RoleAdmin, InvitedBy: "ci-token", Expires: week}
	// carol has no account: her invitation is bound to nobody (UserID 0).
	carol := &gatehouse.Invitation{OrgID: beta.ID, UserName: "carol", Role: gatehouse.RoleBillingManager, Expires: week}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreateInvitation(other); err != nil {
			return err
		}
		return tx.CreateInvitation(carol)
	})
	ids := func(invs []gatehouse.Invitation) []string {
		var out []string
		for _, i := range invs {
			out = append(out, i.ID)
		}
		return out
	}
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetInvitation(inv.ID)
		if err != nil {
			return err
		}
		if got.OrgID != beta.ID || got.OrgName != "beta" || got.UserName != "Bob" || got.UserID != bob.ID || got.Role != gatehouse.RoleMember || got.InvitedBy != "alice" ||
			got.Status != gatehouse.InvitationPending || !got.Created.Equal(inv.Created) || !got.Expires.Equal(week) || !got.Resolved.IsZero() {
			t.Errorf("GetInvitation = %+v, want %+v", got, inv)
		}
		_, err = tx.GetInvitation("no-such-invitation")
		wantCode(t, err, gatehouse.ENOTFOUND, "GetInvitation of an unknown ID")
		if got, err := tx.GetInvitation(carol.ID); err != nil || got.UserID != 0 {
			t.Errorf("GetInvitation(carol) = %+v, %v; want UserID 0", got, err)
		}
		mine, err := tx.ListInvitations(gatehouse.InvitationFilter{UserID: bob.ID, Pending: true})
		if err != nil {
			return err
		}
		if want := []string{other.ID, inv.ID}; !slices.Equal(ids(mine), want) {
			t.Errorf("ListInvitations(user bob) = %q, want %q (newest first)", ids(mine), want)
		}
		betas, err := tx.ListInvitations(gatehouse.InvitationFilter{OrgID: beta.ID})
		if err != nil {
			return err
		}
		if want := []string{carol.ID, inv.ID}; !slices.Equal(ids(betas), want) {
			t.Errorf("ListInvitations(org beta) = %q, want %q", ids(betas), want)
		}
		_, err = tx.ListInvitations(gatehouse.InvitationFilter{})
		wantCode(t, err, gatehouse.EINVALID, "ListInvitations without an organization or a user")
		return nil
	})

	// Answered once.
	var accepted *gatehouse.Invitation
	e.update(func(tx gatehouse.Tx) (err error) {
		accepted, err = tx.ResolveInvitation(inv.ID, gatehouse.InvitationAccepted)
		return err
	})
	if accepted.Status != gatehouse.InvitationAccepted || accepted.Resolved.IsZero() || accepted.Role != gatehouse.RoleMember || accepted.OrgID != beta.ID {
		t.Errorf("ResolveInvitation(accept) = %+v", accepted)
	}
	for _, st := range []gatehouse.InvitationStatus{gatehouse.InvitationAccepted, gatehouse.InvitationDeclined, gatehouse.InvitationRevoked} {
		err := e.try(func(tx gatehouse.Tx) error { _, err := tx.ResolveInvitation(inv.ID, st); return err })
		wantCode(t, err, gatehouse.ECONFLICT, "answering an accepted invitation with "+string(st))
	}
	err = e.try(func(tx gatehouse.Tx) error {
		_, err := tx.ResolveInvitation(carol.ID, gatehouse.InvitationPending)
		return err
	})
	wantCode(t, err, gatehouse.EINVALID, "resolving an invitation to pending")
	err = e.try(func(tx gatehouse.Tx) error {
		_, err := tx.ResolveInvitation("no-such-invitation", gatehouse.InvitationRevoked)
		return err
	})
	wantCode(t, err, gatehouse.ENOTFOUND, "resolving an unknown invitation")
	e.update(func(tx gatehouse.Tx) error {
		_, err := tx.ResolveInvitation(carol.ID, gatehouse.InvitationRevoked)
		return err
	})
	err = e.try(func(tx gatehouse.Tx) error {
		_, err := tx.ResolveInvitation(carol.ID, gatehouse.InvitationAccepted)
		return err
	})
	wantCode(t, err, gatehouse.ECONFLICT, "accepting a revoked invitation")
	// Once answered, the organization may invite the name again.
	again := &gatehouse.Invitation{OrgID: beta.ID, UserName: "carol", Role: gatehouse.RoleMember, Expires: week}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateInvitation(again) })

	// Expiry: an expired invitation cannot be accepted or declined, only revoked; it is not
	// pending any more, and it does not stop a new invitation.
	past := &gatehouse.Invitation{OrgID: acme.ID, UserName: "dave", UserID: dave.ID, Role: gatehouse.RoleMember, Expires: e.now().Add(-time.Second)}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateInvitation(past) })
	for _, st := range []gatehouse.InvitationStatus{gatehouse.InvitationAccepted, gatehouse.InvitationDeclined} {
		err := e.try(func(tx gatehouse.Tx) error { _, err := tx.ResolveInvitation(past.ID, st); return err })
		wantCode(t, err, gatehouse.ECONFLICT, string(st)+" of an expired invitation")
	}
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetInvitation(past.ID)
		if err != nil {
			return err
		}
		if got.StatusAt(tx.Now()) != gatehouse.InvitationExpired {
			t.Errorf("StatusAt of an invitation past its expiry = %s, want expired", got.StatusAt(tx.Now()))
		}
		if l, err := tx.ListInvitations(gatehouse.InvitationFilter{UserID: dave.ID, Pending: true}); err != nil || len(l) != 0 {
			t.Errorf("pending invitations of dave = %+v, %v; want none (expired)", l, err)
		}
		return nil
	})
	renewed := &gatehouse.Invitation{OrgID: acme.ID, UserName: "Dave", UserID: dave.ID, Role: gatehouse.RoleAdmin, Expires: week}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateInvitation(renewed) })
	e.view(func(tx gatehouse.Tx) error {
		got, err := tx.GetInvitation(past.ID)
		if err != nil {
			return err
		}
		if got.Status != gatehouse.InvitationExpired || got.StatusAt(tx.Now()) != gatehouse.InvitationExpired {
			t.Errorf("an expired invitation after a new one for the name: %+v, want status expired", got)
		}
		if l, err := tx.ListInvitations(gatehouse.InvitationFilter{UserID: dave.ID, Pending: true}); err != nil || !slices.Equal(ids(l), []string{renewed.ID}) {
			t.Errorf("pending invitations of dave = %q, %v; want the renewed one", ids(l), err)
		}
		return nil
	})

	// The organization that created a user is kept (and read back by every user query).
	u := &gatehouse.User{Name: "erin", CreatedByOrg: beta.ID}
	e.update(func(tx gatehouse.Tx) error {
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		return tx.PutMember(beta.ID, u.ID, gatehouse.RoleMember)
	})
	plain := e.user("frank")
	e.view(func(tx gatehouse.Tx) error {
		if got, err := tx.GetUser(u.ID); err != nil || got.CreatedByOrg != beta.ID {
			t.Errorf("GetUser(erin) = %+v, %v; want CreatedByOrg %d", got, err, beta.ID)
		}
		if got, err := tx.GetUserByName("ERIN"); err != nil || got.CreatedByOrg != beta.ID {
			t.Errorf("GetUserByName(ERIN) = %+v, %v; want CreatedByOrg %d", got, err, beta.ID)
		}
		if m, err := tx.GetMember(beta.ID, u.ID); err != nil || m.User.CreatedByOrg != beta.ID {
			t.Errorf("GetMember(erin) = %+v, %v; want CreatedByOrg %d", m, err, beta.ID)
		}
		if got, err := tx.GetUser(plain.ID); err != nil || got.CreatedByOrg != 0 {
			t.Errorf("GetUser(frank) = %+v, %v; want CreatedByOrg 0", got, err)
		}
		return nil
	})
}

// testRaceAnswerInvitation: racing answers to one invitation (accept, decline, revoke)
// settle on exactly one.
func testRaceAnswerInvitation(t *testing.T, e *env) {
	beta := e.org("beta")
	inv := &gatehouse.Invitation{OrgID: beta.ID, UserName: "bob", Role: gatehouse.RoleMember, Expires: e.now().Add(time.Hour)}
	e.update(func(tx gatehouse.Tx) error { return tx.CreateInvitation(inv) })
	statuses := []gatehouse.InvitationStatus{gatehouse.InvitationAccepted, gatehouse.InvitationDeclined, gatehouse.InvitationRevoked}
	errs := e.race(racers, func(i int) error {
		return e.at(i).Update(e.ctx, func(tx gatehouse.Tx) error {
			_, err := tx.ResolveInvitation(inv.ID, statuses[i%len(statuses)])
			return err
		})
	})
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
		} else if !gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			t.Errorf("a losing answer failed with %v, want ECONFLICT", err)
		}
	}
	if won != 1 {
		t.Errorf("%d racing answers to one invitation succeeded, want 1", won)
	}
}
