package authz

import (
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestDecideSCIM: SCIM actions are the organization's own SCIM token's and nobody else's;
// a SCIM token performs nothing but SCIM actions.
func TestDecideSCIM(t *testing.T) {
	acme := &gatehouse.Org{ID: 1, Name: "acme"}
	globex := &gatehouse.Org{ID: 2, Name: "globex"}
	scimTok := &Subject{Kind: SCIMToken, Token: &gatehouse.Token{ID: "s", OrgID: 1, Name: "SCIM provisioning"}}
	admin := &Subject{Kind: UserKind, User: &gatehouse.User{ID: 1, Name: "alice", SiteAdmin: true}, Token: &gatehouse.Token{ID: "p"}}
	orgAdmin := &Subject{Kind: OrgToken, Token: &gatehouse.Token{ID: "o", OrgID: 1, Role: gatehouse.RoleAdmin}, Pipeline: true}
	f := Facts{Role: gatehouse.RoleAdmin}
	for _, a := range []Action{SCIMRead, SCIMUserWrite, SCIMGroupWrite} {
		if d := Decide(scimTok, a, Resource{Org: acme}, Facts{}); !d.Allow {
			t.Errorf("acme's SCIM token denied %s: %s", a, d.Reason)
		}
		if d := Decide(scimTok, a, Resource{Org: globex}, Facts{}); d.Allow {
			t.Errorf("acme's SCIM token allowed %s in globex", a)
		}
		for _, sub := range []*Subject{admin, orgAdmin, nil} {
			if d := Decide(sub, a, Resource{Org: acme}, f); d.Allow {
				t.Errorf("%v allowed %s", sub.Name(), a)
			}
		}
	}
	for _, a := range []Action{OrgRead, OrgMemberRead, OrgTeamWrite, OrgTokenWrite, OrgSCIMToken, UserRead, UserTokens, StackRead, SiteOrgCreate, TokenCheck} {
		if d := Decide(scimTok, a, Resource{Org: acme, Stack: &gatehouse.Stack{ID: 1, OrgID: 1}}, Facts{}); d.Allow {
			t.Errorf("the SCIM token allowed %s", a)
		}
	}
	// The SCIM token itself is made by an org admin who is a person, never by a machine.
	if d := Decide(admin, OrgSCIMToken, Resource{Org: acme}, f); !d.Allow {
		t.Errorf("org admin denied %s: %s", OrgSCIMToken, d.Reason)
	}
	if d := Decide(orgAdmin, OrgSCIMToken, Resource{Org: acme}, Facts{}); d.Allow {
		t.Error("an organization token may make SCIM tokens")
	}
	if d := Decide(&Subject{Kind: UserKind, User: &gatehouse.User{ID: 2, Name: "bob"}, Token: &gatehouse.Token{ID: "b"}}, OrgSCIMToken, Resource{Org: acme}, Facts{Role: gatehouse.RoleMember}); d.Allow {
		t.Error("a member may make SCIM tokens")
	}
}
