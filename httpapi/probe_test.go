package httpapi_test

import (
	"context"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestNoUserNameProbes: an organization's admin who names a person of another organization
// gets exactly the answer they get for a name nobody has, on every call that takes a user
// name (issue 12, 8a: admins must not learn which user names exist elsewhere on the site).
func TestNoUserNameProbes(t *testing.T) {
	e := newEnv(t)
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		beta := &gatehouse.Org{Name: "beta", Settings: gatehouse.DefaultOrgSettings()}
		if err := tx.CreateOrg(beta); err != nil {
			return err
		}
		u := &gatehouse.User{Name: "outsider", Email: "outsider@beta.example"}
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		return tx.PutMember(beta.ID, u.ID, gatehouse.RoleMember)
	}))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil))
	for _, c := range []struct {
		name         string
		call         func(user string) cliwire.Call
		wantStatus   int
		wantMessage  string
		wantNoLeakOf string
	}{
		{"remove member", func(u string) cliwire.Call {
			return cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/" + u}
		}, 404, "is not a member of acme", ""},
		{"change role", func(u string) cliwire.Call {
			return cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/members/" + u, Body: map[string]string{"role": "admin"}}
		}, 404, "is not a member of acme", ""},
		{"add to team", func(u string) cliwire.Call {
			return cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/ops", Body: map[string]string{"memberAction": "add", "member": u}}
		}, 400, "is not a member of acme", ""},
		{"remove from team", func(u string) cliwire.Call {
			return cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/ops", Body: map[string]string{"memberAction": "remove", "member": u}}
		}, 404, "is not a member of acme", ""},
	} {
		var answers [2]string
		for i, u := range []string{"outsider", "nobody-at-all"} {
			err := e.admin.Do(c.call(u), nil)
			ce, ok := err.(*cliwire.Error)
			if !ok || ce.Status != c.wantStatus {
				t.Fatalf("%s %s: %v, want %d", c.name, u, err, c.wantStatus)
			}
			answers[i] = ce.Message
			if want := u + " " + c.wantMessage; len(ce.Message) < len(want) || ce.Message[:len(want)] != want {
				t.Errorf("%s %s: message %q, want it to start with %q", c.name, u, ce.Message, want)
			}
		}
		if a, b := answers[0][len("outsider"):], answers[1][len("nobody-at-all"):]; a != b {
			t.Errorf("%s: the answers tell the names apart: %q vs %q", c.name, answers[0], answers[1])
		}
	}
}
