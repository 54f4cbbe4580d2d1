package authz

import (
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// A deployment credential reads and opens environments exactly as far as the principal
// its run acts for may, now, and never writes; without a principal it opens nothing.
func TestDecideDeploymentEnvironmentsActForThePrincipal(t *testing.T) {
	org, st := fixture()
	env := &gatehouse.Environment{ID: 5, OrgID: 1, Project: "proj", Name: "app"}
	res := Resource{Org: org, Env: env}
	openApp := gatehouse.Grant{TeamName: "devs", Scope: gatehouse.Scope{EnvID: 5}, Permission: gatehouse.PermWrite}
	person := user(2)
	person.User.Name = "dev"
	dep := func(actsFor *Subject, gone string) *Subject {
		return &Subject{Kind: Deployment, Pipeline: true, Deployment: &gatehouse.Deployment{ID: "d-1", OrgID: 1, StackID: st.ID, Operation: "update"},
			ActsFor: actsFor, ActsForName: "user dev", ActsForGone: gone}
	}
	pf := Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{openApp}}
	f := Facts{ActsFor: &pf}
	sub := dep(person, "")

	for _, a := range []Action{EnvRead, EnvOpen} {
		if d := Decide(sub, a, res, f); !d.Allow || !strings.Contains(d.Reason, "d-1") || !strings.Contains(d.Reason, "user dev") {
			t.Errorf("%s for a principal who may: %+v", a, d)
		}
	}
	// The principal may write; the credential never does.
	for _, a := range []Action{EnvWrite, EnvAdmin, EnvWebhooks, EnvCreate} {
		if d := Decide(sub, a, Resource{Org: org, Env: env, NewEnv: &NewEnv{Project: "proj", Name: "x"}}, f); d.Allow || d.Hide || !strings.Contains(d.Reason, "d-1") {
			t.Errorf("%s: %+v", a, d)
		}
	}
	// Less than the principal has is all it gets: read only, then nothing (hidden).
	pf.Grants = []gatehouse.Grant{{TeamName: "devs", Scope: openApp.Scope, Permission: gatehouse.PermRead}}
	if d := Decide(sub, EnvOpen, res, f); d.Allow || d.Hide || !strings.Contains(d.Reason, "user dev") {
		t.Errorf("open with the principal's read: %+v", d)
	}
	if d := Decide(sub, EnvRead, res, f); !d.Allow {
		t.Errorf("read with the principal's read: %+v", d)
	}
	pf.Grants = nil
	if d := Decide(sub, EnvRead, res, f); d.Allow || !d.Hide {
		t.Errorf("read without any grant: %+v", d)
	}
	// A write to an environment the principal cannot see: missing, not refused (no
	// existence oracle for the run's code).
	for _, a := range []Action{EnvWrite, EnvAdmin, EnvWebhooks} {
		if d := Decide(sub, a, res, f); d.Allow || !d.Hide {
			t.Errorf("%s of an environment the principal cannot see: %+v", a, d)
		}
	}
	// Not a member any more; no principal; a principal that cannot act any more.
	pf = Facts{Grants: []gatehouse.Grant{openApp}}
	if d := Decide(sub, EnvOpen, res, f); d.Allow || !strings.Contains(d.Reason, "no longer a member") {
		t.Errorf("principal left the organization: %+v", d)
	}
	for _, s := range []*Subject{dep(nil, ""), dep(nil, "the token was revoked")} {
		if d := Decide(s, EnvRead, res, Facts{}); d.Allow || !strings.Contains(d.Reason, "d-1") {
			t.Errorf("no principal: %+v", d)
		}
	}
	// Protection: a person's run opens a protected environment no more than the person.
	pf = Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{openApp}, Protections: []gatehouse.Scope{{EnvID: env.ID}}}
	if d := Decide(sub, EnvOpen, res, f); d.Allow {
		t.Errorf("a person's run opened a protected environment: %+v", d)
	}
	team := &Subject{Kind: TeamToken, Token: &gatehouse.Token{ID: "t", Kind: gatehouse.TokenTeam, OrgID: 1, TeamID: 3}, Pipeline: true}
	if d := Decide(dep(team, ""), EnvOpen, res, f); !d.Allow {
		t.Errorf("a team token's run, protected environment the team may open: %+v", d)
	}
	// The principal's token lifetime policy applies; another organization's run is hidden.
	lim := *org
	lim.Settings.MaxTokenLifetimeDays = 1
	pf.Now = time.Now()
	if d := Decide(dep(team, ""), EnvOpen, Resource{Org: &lim, Env: env}, f); d.Allow {
		t.Errorf("a never-expiring principal token under a lifetime limit: %+v", d)
	}
	other := &gatehouse.Org{ID: 9, Name: "globex", Settings: gatehouse.DefaultOrgSettings()}
	if d := Decide(sub, EnvRead, Resource{Org: other, Env: &gatehouse.Environment{ID: 6, OrgID: 9, Project: "proj", Name: "app"}}, f); d.Allow || !d.Hide {
		t.Errorf("another organization: %+v", d)
	}
	// The open limit is the principal's.
	pf = Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{{TeamName: "devs", Scope: openApp.Scope, Permission: gatehouse.PermWrite, MaxOpen: time.Hour}}}
	if l := EnvOpenLimit(sub, env, org, f); l != time.Hour {
		t.Errorf("open limit %s, want the principal's 1h", l)
	}
}

// A run whose trigger and settings editor differ reads and opens an environment only when
// both may, now: an organization admin's trigger lends nothing to the code a stack admin
// chose, nor the other way round, and a refusal names the principal who lacks the right.
func TestDecideDeploymentEnvironmentsNeedTriggerAndEditor(t *testing.T) {
	org, st := fixture()
	app := &gatehouse.Environment{ID: 5, OrgID: 1, Project: "proj", Name: "app"}
	prod := &gatehouse.Environment{ID: 6, OrgID: 1, Project: "proj", Name: "prod"}
	admin, editor := user(1), user(2)
	admin.User.Name, editor.User.Name = "boss", "stackadmin"
	openApp := gatehouse.Grant{TeamName: "devs", Scope: gatehouse.Scope{EnvID: 5}, Permission: gatehouse.PermWrite}
	af := Facts{Role: gatehouse.RoleAdmin}
	ef := Facts{Role: gatehouse.RoleMember, Grants: []gatehouse.Grant{openApp}}
	run := func(trigger, ed *Subject, tf, edf *Facts) (*Subject, Facts) {
		return &Subject{Kind: Deployment, Pipeline: true,
				Deployment: &gatehouse.Deployment{ID: "d-2", OrgID: 1, StackID: st.ID, Operation: "update",
					ActsFor: gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: "1"}, Editor: gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: "2"}},
				ActsFor: trigger, ActsForName: "user " + trigger.User.Name, Editor: ed, EditorName: "user " + ed.User.Name},
			Facts{ActsFor: tf, Editor: edf}
	}
	// The org admin triggers the stack admin's code.
	sub, f := run(admin, editor, &af, &ef)
	for _, a := range []Action{EnvRead, EnvOpen} {
		if d := Decide(sub, a, Resource{Org: org, Env: app}, f); !d.Allow || !strings.Contains(d.Reason, "boss") || !strings.Contains(d.Reason, "stackadmin") {
			t.Errorf("%s of an environment both may open: %+v", a, d)
		}
		d := Decide(sub, a, Resource{Org: org, Env: prod}, f)
		if d.Allow || !strings.Contains(d.Reason, "d-2") || !strings.Contains(d.Reason, "user stackadmin (settings editor) may not") {
			t.Errorf("%s of an environment only the trigger may open: %+v", a, d)
		}
	}
	// The other way round: the editor may open, the trigger only read.
	ef.Grants = []gatehouse.Grant{{TeamName: "devs", Scope: openApp.Scope, Permission: gatehouse.PermRead}}
	sub, f = run(editor, admin, &ef, &af)
	if d := Decide(sub, EnvOpen, Resource{Org: org, Env: app}, f); d.Allow || d.Hide || !strings.Contains(d.Reason, "user stackadmin (trigger) may not") {
		t.Errorf("open with the trigger's read: %+v", d)
	}
	if d := Decide(sub, EnvRead, Resource{Org: org, Env: app}, f); !d.Allow {
		t.Errorf("read both may: %+v", d)
	}
	// An editor who can no longer act stops the run's opens, named.
	sub, f = run(admin, editor, &af, nil)
	sub.Editor, sub.EditorGone = nil, "the user is disabled"
	if d := Decide(sub, EnvOpen, Resource{Org: org, Env: app}, f); d.Allow || !strings.Contains(d.Reason, "settings editor") || !strings.Contains(d.Reason, "disabled") {
		t.Errorf("editor disabled: %+v", d)
	}
	// The open limit is the tighter of the two.
	ef.Grants = []gatehouse.Grant{{TeamName: "devs", Scope: openApp.Scope, Permission: gatehouse.PermWrite, MaxOpen: time.Hour}}
	sub, f = run(admin, editor, &af, &ef)
	if l := EnvOpenLimit(sub, app, org, f); l != time.Hour {
		t.Errorf("open limit %s, want the editor's 1h", l)
	}
}
