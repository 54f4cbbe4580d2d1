package authz

import (
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestDecideDirectAdd: an org admin adds an existing user without consent only when the
// organization created the account and the user belongs to no other organization; a site
// administrator always may; the refusal does not depend on whether the user exists.
func TestDecideDirectAdd(t *testing.T) {
	org, _ := fixture()
	admin := Facts{Role: gatehouse.RoleAdmin}
	own := &gatehouse.User{ID: 5, Name: "erin", CreatedByOrg: org.ID}
	foreign := &gatehouse.User{ID: 6, Name: "bob", Email: "bob@acme.example", CreatedByOrg: 2}
	add := func(sub *Subject, p Person, f Facts) Decision {
		return Decide(sub, OrgMemberWrite, Resource{Org: org, Person: &p}, f)
	}
	if d := add(user(2), Person{Name: "erin", User: own}, admin); !d.Allow {
		t.Fatalf("own account, no other org: %+v", d)
	}
	refusals := map[string]Decision{
		"own account in another org": add(user(2), Person{Name: "erin", User: own, OtherOrgs: 1}, admin),
		"another org's user":         add(user(2), Person{Name: "bob", User: foreign, OtherOrgs: 1}, admin),
		"another org's orphan":       add(user(2), Person{Name: "bob", User: foreign}, admin),
		"no such user":               add(user(2), Person{Name: "bob"}, admin),
	}
	for what, d := range refusals {
		if d.Allow || d.Hide || !strings.Contains(d.Reason, "invite them instead") || strings.Contains(d.Reason, "@") {
			t.Errorf("%s: %+v, want a 403 that says to invite and shows no email", what, d)
		}
	}
	if a, b := refusals["another org's user"], refusals["no such user"]; a.Reason != b.Reason {
		t.Errorf("the refusal tells an existing user from a missing one:\n%s\n%s", a.Reason, b.Reason)
	}
	orgAdminToken := &Subject{Kind: OrgToken, Token: &gatehouse.Token{OrgID: org.ID, Role: gatehouse.RoleAdmin}, Pipeline: true}
	if d := add(orgAdminToken, Person{Name: "bob", User: foreign, OtherOrgs: 1}, admin); d.Allow {
		t.Errorf("an org admin token added another org's user: %+v", d)
	}
	site := user(1)
	site.User.SiteAdmin = true
	if d := add(site, Person{Name: "bob", User: foreign, OtherOrgs: 1}, admin); !d.Allow {
		t.Errorf("site admin: %+v", d)
	}
	site.Pipeline = true // an OIDC-issued personal token of a site admin is a machine
	if d := add(site, Person{Name: "bob", User: foreign, OtherOrgs: 1}, admin); d.Allow {
		t.Errorf("OIDC-issued token of a site admin: %+v", d)
	}
	// The org role check still comes first.
	if d := add(user(2), Person{Name: "erin", User: own}, Facts{Role: gatehouse.RoleMember}); d.Allow {
		t.Errorf("member added a user: %+v", d)
	}
}

// TestDecideInvitations: only the invited person answers an invitation, with a personal
// token; someone else's invitation is hidden; the organization side is for admins.
func TestDecideInvitations(t *testing.T) {
	org, _ := fixture()
	made := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	bob := &Subject{Kind: UserKind, User: &gatehouse.User{ID: 6, Name: "Bob", Created: made.Add(-time.Hour)}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal}}
	inv := &gatehouse.Invitation{ID: "i1", OrgID: org.ID, UserName: "bob", UserID: 6, Role: gatehouse.RoleMember, Created: made}
	for _, a := range []Action{UserInvitationAccept, UserInvitationDecline} {
		if d := Decide(bob, a, Resource{Invitation: inv}, Facts{}); !d.Allow {
			t.Errorf("bob %s: %+v", a, d)
		}
		if d := Decide(user(7), a, Resource{Invitation: inv}, Facts{}); d.Allow || !d.Hide {
			t.Errorf("another user %s bob's invitation: %+v, want hidden", a, d)
		}
		// Bound by ID, not by name (review H1): another account called bob, an invitation
		// made for a name nobody had, and a user made after the invitation get nothing.
		squatter := &Subject{Kind: UserKind, User: &gatehouse.User{ID: 8, Name: "bob", Created: made.Add(time.Hour)}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal}}
		nobodys := &gatehouse.Invitation{ID: "i3", OrgID: org.ID, UserName: "bob", Role: gatehouse.RoleMember, Created: made}
		later := &Subject{Kind: UserKind, User: &gatehouse.User{ID: 6, Name: "bob", Created: made.Add(time.Second)}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal}}
		for what, d := range map[string]Decision{
			"another bob":           Decide(squatter, a, Resource{Invitation: inv}, Facts{}),
			"unbound invitation":    Decide(bob, a, Resource{Invitation: nobodys}, Facts{}),
			"user made after it":    Decide(later, a, Resource{Invitation: inv}, Facts{}),
			"squatter, unbound one": Decide(squatter, a, Resource{Invitation: nobodys}, Facts{}),
		} {
			if d.Allow || !d.Hide {
				t.Errorf("%s: %s: %+v, want hidden", what, a, d)
			}
		}
		if d := Decide(bob, a, Resource{}, Facts{}); d.Allow {
			t.Errorf("%s without an invitation: %+v", a, d)
		}
		machines := []*Subject{
			{Kind: TeamToken, Token: &gatehouse.Token{OrgID: org.ID, TeamID: 3}, Pipeline: true},
			{Kind: OrgToken, Token: &gatehouse.Token{OrgID: org.ID, Role: gatehouse.RoleAdmin}, Pipeline: true},
			{Kind: UserKind, User: bob.User, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal}, Pipeline: true}, // OIDC-issued
			{Kind: Anonymous},
		}
		for _, m := range machines {
			if d := Decide(m, a, Resource{Invitation: inv}, Facts{}); d.Allow {
				t.Errorf("%s by %s: %+v", a, m.Kind, d)
			}
		}
	}
	if d := Decide(bob, UserInvitationRead, Resource{}, Facts{}); !d.Allow {
		t.Errorf("bob lists his invitations: %+v", d)
	}
	for _, a := range []Action{OrgInvitationRead, OrgInvitationCreate, OrgInvitationRevoke, OrgMemberEmails} {
		if d := Decide(user(2), a, Resource{Org: org}, Facts{Role: gatehouse.RoleAdmin}); !d.Allow {
			t.Errorf("admin %s: %+v", a, d)
		}
		if d := Decide(user(2), a, Resource{Org: org}, Facts{Role: gatehouse.RoleMember}); d.Allow {
			t.Errorf("member %s: %+v", a, d)
		}
	}
	other := &gatehouse.Invitation{ID: "i2", OrgID: 99, UserName: "bob"}
	if d := Decide(user(2), OrgInvitationRevoke, Resource{Org: org, Invitation: other}, Facts{Role: gatehouse.RoleAdmin}); d.Allow || !d.Hide {
		t.Errorf("revoking another organization's invitation: %+v, want hidden", d)
	}
}
