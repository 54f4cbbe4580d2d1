package authz

import (
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestDecideCreateAnyTags: before the body is read (name and tags unknown), stack:create is
// refused only to whom no name and tags could allow it; the tags then decide.
func TestDecideCreateAnyTags(t *testing.T) {
	org, _ := fixture()
	org.Settings.MembersCanCreateStacks = false
	early := Resource{Org: org, NewStack: &NewStack{Project: "web", AnyTags: true}}
	writeTag := gatehouse.Grant{TeamName: "ops", Scope: gatehouse.Scope{TagName: "env", TagValue: "dev"}, Permission: gatehouse.PermWrite}
	readTag := gatehouse.Grant{TeamName: "ro", Scope: gatehouse.Scope{TagName: "env", TagValue: "dev"}, Permission: gatehouse.PermRead}
	writeOther := gatehouse.Grant{TeamName: "api", Scope: gatehouse.Scope{Project: "api"}, Permission: gatehouse.PermWrite}
	writeWeb := gatehouse.Grant{TeamName: "dev", Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermWrite}
	writeStack := gatehouse.Grant{TeamName: "one", Scope: gatehouse.Scope{StackID: 7}, Permission: gatehouse.PermAdmin}
	team := &Subject{Kind: TeamToken, Token: &gatehouse.Token{OrgID: 1}, Pipeline: true}
	member := Facts{Role: gatehouse.RoleMember}
	for _, c := range []struct {
		name string
		sub  *Subject
		f    Facts
		want bool
	}{
		{"admin", user(2), Facts{Role: gatehouse.RoleAdmin}, true},
		{"member, members may not create", user(2), member, false},
		{"member with a tag write grant", user(2), Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{writeTag}}, true},
		{"member with a tag read grant", user(2), Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{readTag}}, false},
		{"member with another project", user(2), Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{writeOther, writeStack}}, false},
		{"member with the project", user(2), Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{writeWeb}}, true},
		{"team token without grants", team, Facts{}, false},
		{"team token with a tag write grant", team, Facts{Grants: []gatehouse.Grant{writeTag}}, true},
	} {
		if d := Decide(c.sub, StackCreate, early, c.f); d.Allow != c.want || d.Hide {
			t.Errorf("%s: early decision %+v, want allow=%v", c.name, d, c.want)
		}
	}
	// The tag grant allows the early check, then only with the tag.
	f := Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{writeTag}}
	if d := Decide(user(2), StackCreate, Resource{Org: org, NewStack: &NewStack{Project: "web", Name: "s"}}, f); d.Allow {
		t.Errorf("created without the granted tag: %+v", d)
	}
	if d := Decide(user(2), StackCreate, Resource{Org: org, NewStack: &NewStack{Project: "web", Name: "s", Tags: map[string]string{"env": "dev"}}}, f); !d.Allow {
		t.Errorf("refused with the granted tag: %+v", d)
	}
	// Members may create: allowed early too.
	open := *org
	open.Settings.MembersCanCreateStacks = true
	if d := Decide(user(2), StackCreate, Resource{Org: &open, NewStack: &NewStack{Project: "web", AnyTags: true}}, member); !d.Allow {
		t.Errorf("members may create: %+v", d)
	}
}
