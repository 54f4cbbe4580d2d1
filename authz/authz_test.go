package authz

import (
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func fixture() (*gatehouse.Org, *gatehouse.Stack) {
	org := &gatehouse.Org{ID: 1, Name: "acme", Settings: gatehouse.DefaultOrgSettings()}
	st := &gatehouse.Stack{ID: 7, OrgID: 1, OrgName: "acme", Project: "web", Name: "prod", Tags: map[string]string{"env": "production"}}
	return org, st
}

func user(id int64) *Subject {
	return &Subject{Kind: UserKind, User: &gatehouse.User{ID: id, Name: "u"}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal}}
}

func TestDecideGrantsAddUpAndDecryptIsSeparate(t *testing.T) {
	org, st := fixture()
	res := Resource{Org: org, Stack: st}
	readTag := gatehouse.Grant{TeamName: "ro", Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, Permission: gatehouse.PermRead}
	writeProject := gatehouse.Grant{TeamName: "dev", Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermWrite}
	f := Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{readTag}}
	if d := Decide(user(2), StackRead, res, f); !d.Allow {
		t.Fatalf("read grant: %+v", d)
	}
	if d := Decide(user(2), StackDecrypt, res, f); d.Allow || d.Hide {
		t.Fatalf("read grant without decrypt must deny decrypt, not hide: %+v", d)
	}
	if d := Decide(user(2), StackUpdate, res, f); d.Allow {
		t.Fatalf("read grant allowed update: %+v", d)
	}
	f.Grants = append(f.Grants, writeProject) // grants add up
	if d := Decide(user(2), StackUpdate, res, f); !d.Allow {
		t.Fatalf("write grant: %+v", d)
	}
	if d := Decide(user(2), StackDecrypt, res, f); !d.Allow {
		t.Fatalf("write includes decrypt: %+v", d)
	}
	// No grant at all: hidden.
	if d := Decide(user(2), StackRead, res, Facts{Role: gatehouse.RoleMember}); d.Allow || !d.Hide {
		t.Fatalf("no grant must hide: %+v", d)
	}
	// Not a member: hidden; another org's token: hidden.
	if d := Decide(user(3), OrgRead, Resource{Org: org}, Facts{}); !d.Hide {
		t.Fatalf("non-member must be hidden: %+v", d)
	}
	other := &Subject{Kind: OrgToken, Token: &gatehouse.Token{OrgID: 99, Role: gatehouse.RoleAdmin}, Pipeline: true}
	if d := Decide(other, StackRead, res, Facts{Role: gatehouse.RoleAdmin}); !d.Hide {
		t.Fatalf("another org's token must be hidden: %+v", d)
	}
}

// An OIDC-issued personal token acts as its user only in the organization whose issuer
// issued it (Token.OrgID), even where the user is a member (or an admin) besides.
func TestDecideOIDCPersonalTokenStaysInItsOrganization(t *testing.T) {
	org, st := fixture()
	beta := &gatehouse.Org{ID: 2, Name: "beta", Settings: gatehouse.DefaultOrgSettings()}
	betaStack := &gatehouse.Stack{ID: 8, OrgID: 2, OrgName: "beta", Project: "web", Name: "prod"}
	oidcTok := &Subject{Kind: UserKind, User: &gatehouse.User{ID: 2, Name: "bob", SiteAdmin: true},
		Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal, UserID: 2, OrgID: 1, Pipeline: true}, Pipeline: true}
	admin := Facts{Role: gatehouse.RoleAdmin}
	if d := Decide(oidcTok, StackRead, Resource{Org: org, Stack: st}, admin); !d.Allow {
		t.Fatalf("in its own organization: %+v", d)
	}
	for _, a := range []Action{OrgRead, StackRead, StackUpdate, StackCreate} {
		res := Resource{Org: beta, Stack: betaStack, NewStack: &NewStack{Project: "web", Name: "new"}}
		if d := Decide(oidcTok, a, res, admin); d.Allow || !d.Hide {
			t.Fatalf("%s in another organization of its user: %+v, want hidden", a, d)
		}
	}
	for _, a := range []Action{SiteOrgCreate, SiteAuditVerify, SiteAuditRead, SiteRateLimitRead, SiteRateLimitClear, SiteUserRead, SiteUserDisable} {
		if d := Decide(oidcTok, a, Resource{}, Facts{}); d.Allow {
			t.Fatalf("an organization's OIDC-issued token of a (later) site administrator got %s", a)
		}
	}
	// The user's ordinary personal token acts in both.
	pat := user(2)
	pat.User.SiteAdmin = true
	if d := Decide(pat, StackRead, Resource{Org: beta, Stack: betaStack}, admin); !d.Allow {
		t.Fatalf("ordinary personal token in beta: %+v", d)
	}
	if d := Decide(pat, SiteOrgCreate, Resource{}, Facts{}); !d.Allow {
		t.Fatalf("ordinary personal token of a site administrator: %+v", d)
	}
}

func TestDecideProtectionAndPipelines(t *testing.T) {
	org, st := fixture()
	res := Resource{Org: org, Stack: st}
	prot := []gatehouse.Scope{{TagName: "env", TagValue: "production"}}
	admin := Facts{Role: gatehouse.RoleAdmin, Protections: prot}
	for _, a := range []Action{StackUpdate, StackImport, StackTags, StackConfig, StackRename, StackDelete} {
		if d := Decide(user(1), a, res, admin); d.Allow {
			t.Fatalf("a person changed a protected stack with %s", a)
		}
	}
	for _, a := range []Action{StackPreview, StackRead, StackDecrypt, StackExport} {
		if d := Decide(user(1), a, res, admin); !d.Allow {
			t.Fatalf("a person lost %s on a protected stack: %+v", a, d)
		}
	}
	team := &Subject{Kind: TeamToken, Token: &gatehouse.Token{OrgID: 1, TeamID: 5}, Pipeline: true}
	tf := Facts{Protections: prot, Grants: []gatehouse.Grant{{TeamID: 5, Scope: gatehouse.Scope{StackID: 7}, Permission: gatehouse.PermWrite}}}
	if d := Decide(team, StackUpdate, res, tf); !d.Allow {
		t.Fatalf("pipeline with write: %+v", d)
	}
	if d := Decide(team, StackDelete, res, tf); d.Allow {
		t.Fatalf("write must not delete: %+v", d)
	}
	// A team token does not get the org's default member permission.
	org2 := *org
	org2.Settings.DefaultStackPermission = gatehouse.PermAdmin
	if d := Decide(team, StackRead, Resource{Org: &org2, Stack: &gatehouse.Stack{ID: 8, OrgID: 1, Project: "x"}}, Facts{}); d.Allow {
		t.Fatalf("team token used the org default: %+v", d)
	}
}

func TestDecideTokenPolicyAndLeases(t *testing.T) {
	org, st := fixture()
	org.Settings.MaxTokenLifetimeDays = 30
	now := time.Now()
	u := user(1)
	u.Token.Expires = now.Add(90 * 24 * time.Hour)
	if d := Decide(u, OrgRead, Resource{Org: org}, Facts{Role: gatehouse.RoleAdmin, Now: now}); d.Allow {
		t.Fatalf("a token outliving the org's limit was accepted: %+v", d)
	}
	upd := &gatehouse.Update{ID: "u1", StackID: st.ID, Status: gatehouse.StatusRunning}
	lease := &Subject{Kind: Lease, Update: upd}
	if d := Decide(lease, UpdateLease, Resource{Org: org, Stack: st, Update: upd}, Facts{}); !d.Allow {
		t.Fatalf("lease on its update: %+v", d)
	}
	if d := Decide(lease, StackRead, Resource{Org: org, Stack: st}, Facts{}); d.Allow {
		t.Fatal("a lease read a stack")
	}
	other := &gatehouse.Update{ID: "u2", StackID: st.ID, Status: gatehouse.StatusRunning}
	if d := Decide(lease, UpdateLease, Resource{Org: org, Stack: st, Update: other}, Facts{}); d.Allow {
		t.Fatal("a lease worked on another update")
	}
	done := &gatehouse.Update{ID: "u1", StackID: st.ID, Status: gatehouse.StatusSucceeded}
	if d := Decide(lease, UpdateComplete, Resource{Org: org, Stack: st, Update: done}, Facts{}); !d.Allow {
		t.Fatal("a retried complete was refused")
	}
	if d := Decide(lease, UpdateLease, Resource{Org: org, Stack: st, Update: done}, Facts{}); d.Allow {
		t.Fatal("a lease outlived its update")
	}
}

// BenchmarkDecide: the authorization decision for a member with three team grants on a
// protected stack (the common case of the request path).
func BenchmarkDecide(b *testing.B) {
	org, st := fixture()
	res := Resource{Org: org, Stack: st}
	f := Facts{Role: gatehouse.RoleMember, Now: time.Now(), Protections: []gatehouse.Scope{{TagName: "env", TagValue: "production"}},
		Grants: []gatehouse.Grant{
			{TeamName: "a", Scope: gatehouse.Scope{Project: "api"}, Permission: gatehouse.PermWrite},
			{TeamName: "b", Scope: gatehouse.Scope{StackID: 99}, Permission: gatehouse.PermAdmin},
			{TeamName: "c", Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, Permission: gatehouse.PermRead, Decrypt: true},
		}}
	sub := user(2)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !Decide(sub, StackDecrypt, res, f).Allow {
			b.Fatal("denied")
		}
	}
}

// TestDecideCredentialsAreManagedByPeople: every action that creates, shows or ends people
// or access tokens (every route that returns a token value among them) is refused to
// machine credentials: team, organization (admin too), OIDC-issued and lease tokens.
func TestDecideCredentialsAreManagedByPeople(t *testing.T) {
	org, st := fixture()
	res := Resource{Org: org, Stack: st}
	f := Facts{Role: gatehouse.RoleAdmin}
	machines := map[string]*Subject{
		"team token":         {Kind: TeamToken, Token: &gatehouse.Token{Kind: gatehouse.TokenTeam, OrgID: 1, TeamID: 5}, Pipeline: true},
		"org admin token":    {Kind: OrgToken, Token: &gatehouse.Token{Kind: gatehouse.TokenOrg, OrgID: 1, Role: gatehouse.RoleAdmin}, Pipeline: true},
		"OIDC org token":     {Kind: OrgToken, Token: &gatehouse.Token{Kind: gatehouse.TokenOrg, OrgID: 1, Role: gatehouse.RoleAdmin, Issuer: "github"}, Pipeline: true},
		"OIDC personal":      {Kind: UserKind, User: &gatehouse.User{ID: 1}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal, UserID: 1, Issuer: "github"}, Pipeline: true},
		"pipeline personal":  {Kind: UserKind, User: &gatehouse.User{ID: 1}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal, UserID: 1}, Pipeline: true},
		"issued, not marked": {Kind: UserKind, User: &gatehouse.User{ID: 1}, Token: &gatehouse.Token{Kind: gatehouse.TokenPersonal, UserID: 1, Issuer: "github"}},
		"lease":              {Kind: Lease, Update: &gatehouse.Update{ID: "u1", StackID: st.ID, Status: gatehouse.StatusRunning}},
	}
	for a := range credentialActions {
		for name, sub := range machines {
			if d := Decide(sub, a, res, f); d.Allow {
				t.Errorf("%s was allowed %s: %+v", name, a, d)
			}
		}
		if d := Decide(user(1), a, res, f); !d.Allow {
			t.Errorf("an admin person was refused %s: %+v", a, d)
		}
	}
	for _, a := range []Action{UserTokens, OrgTokenRead, OrgTokenWrite, OrgUserCreate} {
		if !credentialActions[a] {
			t.Errorf("%s is not a credential action", a)
		}
	}
}

// TestDecideCancelOnProtectedStack: cancelling a real update of a protected stack is a
// change (pipelines only); cancelling a preview is not.
func TestDecideCancelOnProtectedStack(t *testing.T) {
	org, st := fixture()
	f := Facts{Role: gatehouse.RoleAdmin, Protections: []gatehouse.Scope{{TagName: "env", TagValue: "production"}}}
	run := &gatehouse.Update{ID: "u1", StackID: st.ID, Status: gatehouse.StatusRunning}
	preview := &gatehouse.Update{ID: "u2", StackID: st.ID, Status: gatehouse.StatusRunning, DryRun: true}
	if d := Decide(user(1), StackCancel, Resource{Org: org, Stack: st, Update: run}, f); d.Allow {
		t.Fatalf("a person cancelled an update of a protected stack: %+v", d)
	}
	if d := Decide(user(1), StackCancel, Resource{Org: org, Stack: st}, f); d.Allow {
		t.Fatalf("a person cancelled an unknown update of a protected stack: %+v", d)
	}
	if d := Decide(user(1), StackCancel, Resource{Org: org, Stack: st, Update: preview}, f); !d.Allow {
		t.Fatalf("a person could not cancel a preview: %+v", d)
	}
	pipe := &Subject{Kind: OrgToken, Token: &gatehouse.Token{Kind: gatehouse.TokenOrg, OrgID: 1, Role: gatehouse.RoleAdmin}, Pipeline: true}
	if d := Decide(pipe, StackCancel, Resource{Org: org, Stack: st, Update: run}, Facts{Protections: f.Protections}); !d.Allow {
		t.Fatalf("a pipeline could not cancel: %+v", d)
	}
}

// Stack grants and environment grants never stand in for each other, even where a stack
// project and an ESC project share a name.
func TestDecideEnvironmentGrantsAreSeparateFromStackGrants(t *testing.T) {
	org, st := fixture()
	env := &gatehouse.Environment{ID: 7, OrgID: 1, OrgName: "acme", Project: "web", Name: "dev"}
	stackAdmin := gatehouse.Grant{TeamName: "s", Scope: gatehouse.Scope{Project: "web"}, Permission: gatehouse.PermAdmin}
	stackByID := gatehouse.Grant{TeamName: "s", Scope: gatehouse.Scope{StackID: 7}, Permission: gatehouse.PermAdmin}
	f := Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{stackAdmin, stackByID}}
	if d := Decide(user(2), EnvRead, Resource{Org: org, Env: env}, f); d.Allow || !d.Hide {
		t.Fatalf("stack grants gave environment access: %+v", d)
	}
	p, dec := gatehouse.EnvGrantPermission(gatehouse.EnvAdmin)
	envAdmin := gatehouse.Grant{TeamName: "e", Scope: gatehouse.Scope{EnvProject: "web"}, Permission: p, Decrypt: dec}
	envByID := gatehouse.Grant{TeamName: "e", Scope: gatehouse.Scope{EnvID: 7}, Permission: p, Decrypt: dec}
	f = Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{envAdmin, envByID}}
	if d := Decide(user(2), StackRead, Resource{Org: org, Stack: st}, f); d.Allow || !d.Hide {
		t.Fatalf("environment grants gave stack access: %+v", d)
	}
	if d := Decide(user(2), StackCreate, Resource{Org: &gatehouse.Org{ID: 1, Name: "acme"}, NewStack: &NewStack{Project: "web"}}, Facts{Grants: f.Grants}); d.Allow {
		t.Fatalf("environment grant allowed creating a stack: %+v", d)
	}
	if d := Decide(user(2), EnvAdmin, Resource{Org: org, Env: env}, f); !d.Allow {
		t.Fatalf("environment admin grant: %+v", d)
	}
	// Levels: open is read plus decrypt; it does not include write.
	p, dec = gatehouse.EnvGrantPermission(gatehouse.EnvOpen)
	f.Grants = []gatehouse.Grant{{TeamName: "o", Scope: gatehouse.Scope{EnvID: 7}, Permission: p, Decrypt: dec}}
	if d := Decide(user(2), EnvOpen, Resource{Org: org, Env: env}, f); !d.Allow {
		t.Fatalf("open grant: %+v", d)
	}
	if d := Decide(user(2), EnvWrite, Resource{Org: org, Env: env}, f); d.Allow || d.Hide {
		t.Fatalf("open grant must deny write: %+v", d)
	}
	// The creator's admin is for people only, not for a token the exchange issued.
	env.CreatorUserID = 2
	oidc := user(2)
	oidc.Token.Issuer, oidc.Pipeline = "github", true
	if d := Decide(user(2), EnvAdmin, Resource{Org: org, Env: env}, Facts{Role: gatehouse.RoleMember}); !d.Allow {
		t.Fatalf("creator: %+v", d)
	}
	if d := Decide(oidc, EnvRead, Resource{Org: org, Env: env}, Facts{Role: gatehouse.RoleMember}); d.Allow {
		t.Fatalf("an OIDC-issued token got the creator's admin: %+v", d)
	}
	// Protection: a project rule protects the ESC project of that name; people keep read.
	pf := Facts{Role: gatehouse.RoleAdmin, Protections: []gatehouse.Scope{{Project: "web"}}}
	if d := Decide(user(2), EnvRead, Resource{Org: org, Env: env}, pf); !d.Allow {
		t.Fatalf("read of a protected environment: %+v", d)
	}
	for _, a := range []Action{EnvOpen, EnvWrite, EnvAdmin} {
		if d := Decide(user(2), a, Resource{Org: org, Env: env}, pf); d.Allow {
			t.Fatalf("%s on a protected environment by a person: %+v", a, d)
		}
	}
	ci := &Subject{Kind: OrgToken, Token: &gatehouse.Token{OrgID: 1, Role: gatehouse.RoleAdmin}, Pipeline: true}
	if d := Decide(ci, EnvOpen, Resource{Org: org, Env: env}, pf); !d.Allow {
		t.Fatalf("pipeline open of a protected environment: %+v", d)
	}
}

func TestDecideEnvironmentCreate(t *testing.T) {
	org, _ := fixture()
	team := &Subject{Kind: TeamToken, Token: &gatehouse.Token{OrgID: 1, TeamID: 5}, Pipeline: true}
	p, dec := gatehouse.EnvGrantPermission(gatehouse.EnvWrite)
	f := Facts{Grants: []gatehouse.Grant{{TeamName: "ci", Scope: gatehouse.Scope{EnvProject: "app"}, Permission: p, Decrypt: dec}}}
	if d := Decide(team, EnvCreate, Resource{Org: org, NewEnv: &NewEnv{Project: "app", Name: "x"}}, f); !d.Allow {
		t.Fatalf("team with write on the ESC project: %+v", d)
	}
	if d := Decide(team, EnvCreate, Resource{Org: org, NewEnv: &NewEnv{Project: "other", Name: "x"}}, f); d.Allow {
		t.Fatalf("team created in another project: %+v", d)
	}
	p, dec = gatehouse.EnvGrantPermission(gatehouse.EnvOpen)
	f.Grants[0].Permission, f.Grants[0].Decrypt = p, dec
	if d := Decide(team, EnvCreate, Resource{Org: org, NewEnv: &NewEnv{Project: "app", Name: "x"}}, f); d.Allow {
		t.Fatalf("open is not enough to create: %+v", d)
	}
	if d := Decide(user(2), EnvCreate, Resource{Org: org, NewEnv: &NewEnv{Project: "app", Name: "x"}}, Facts{Role: gatehouse.RoleBillingManager}); d.Allow {
		t.Fatalf("billing manager created an environment: %+v", d)
	}
}

// SeesOrg agrees with Decide's organization-level answer: whoever Decide hides an
// organization from (a non-member, another organization's token or deployment run, a lease
// token on a stack other than its update's) does not see it; members, the organization's
// tokens and its runs do, and a lease token on its own update's stack.
func TestSeesOrgAgreesWithDecide(t *testing.T) {
	org, st := fixture()
	member := Facts{Role: gatehouse.RoleMember}
	upd := &gatehouse.Update{ID: "u1", StackID: st.ID, Status: gatehouse.StatusRunning}
	lease := &Subject{Kind: Lease, Update: upd}
	otherStack := &gatehouse.Stack{ID: 8, OrgID: 1, OrgName: "acme", Project: "web", Name: "dev"}
	globex := &gatehouse.Org{ID: 2, Name: "globex", Settings: gatehouse.DefaultOrgSettings()}
	globexStack := &gatehouse.Stack{ID: 9, OrgID: 2, OrgName: "globex", Project: "x", Name: "y"}
	for _, c := range []struct {
		name   string
		sub    *Subject
		f      Facts
		action Action   // OrgRead unless given
		res    Resource // the organization alone unless given
		want   bool
	}{
		{name: "member", sub: user(2), f: member, want: true},
		{name: "non-member", sub: user(3), want: false},
		{name: "site admin, non-member", sub: &Subject{Kind: UserKind, User: &gatehouse.User{ID: 4, SiteAdmin: true}}, want: false},
		{name: "own org token", sub: &Subject{Kind: OrgToken, Token: &gatehouse.Token{OrgID: 1, Role: gatehouse.RoleMember}, Pipeline: true}, f: member, want: true},
		{name: "other org token", sub: &Subject{Kind: OrgToken, Token: &gatehouse.Token{OrgID: 99, Role: gatehouse.RoleAdmin}, Pipeline: true}, f: member, want: false},
		{name: "own deployment", sub: &Subject{Kind: Deployment, Deployment: &gatehouse.Deployment{OrgID: 1}, Pipeline: true}, want: true},
		{name: "other deployment", sub: &Subject{Kind: Deployment, Deployment: &gatehouse.Deployment{OrgID: 99}, Pipeline: true}, want: false},
		{name: "lease, own update", sub: lease, action: UpdateLease, res: Resource{Org: org, Stack: st, Update: upd}, want: true},
		{name: "lease, own stack, other update", sub: lease, action: UpdateLease, res: Resource{Org: org, Stack: st, Update: &gatehouse.Update{ID: "u2", StackID: st.ID}}, want: true},
		{name: "lease, no stack", sub: lease, want: false},
		{name: "lease, other stack", sub: lease, action: UpdateLease, res: Resource{Org: org, Stack: otherStack, Update: &gatehouse.Update{ID: "u3", StackID: otherStack.ID}}, want: false},
		{name: "lease, other organization", sub: lease, action: UpdateLease, res: Resource{Org: globex, Stack: globexStack, Update: &gatehouse.Update{ID: "u4", StackID: globexStack.ID}}, want: false},
	} {
		if c.action == "" {
			c.action = OrgRead
		}
		if c.res.Org == nil {
			c.res = Resource{Org: org}
		}
		if got := SeesOrg(c.sub, c.res, c.f); got != c.want {
			t.Errorf("%s: SeesOrg = %v, want %v", c.name, got, c.want)
		}
		if d := Decide(c.sub, c.action, c.res, c.f); d.Hide == c.want {
			t.Errorf("%s: Decide(%s) = %+v, SeesOrg %v", c.name, c.action, d, c.want)
		}
	}
}
