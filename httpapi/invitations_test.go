package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// rawCall makes one API call and returns the status and the body as sent.
func rawCall(t *testing.T, e *env, tok, method, path string, body any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// inviteWorld: acme (alice, site admin; bob, carol, dave, erin, mallory, with emails) and
// beta, whose admin betty is not a site admin and has a team token and an org admin token.
type inviteWorld struct {
	e      *env
	tokens map[string]string
}

func newInviteWorld(t *testing.T) *inviteWorld {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 })
	w := &inviteWorld{e: e, tokens: map[string]string{"alice": e.admin.Token}}
	user := func(org, name, role string) {
		var out struct {
			TokenValue string `json:"tokenValue"`
		}
		must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/" + org + "/users", Body: map[string]string{"name": name, "role": role, "email": name + "@acme.example"}}, &out))
		w.tokens[name] = out.TokenValue
	}
	for _, n := range []string{"bob", "carol", "dave", "erin", "mallory"} {
		user("acme", n, "member")
	}
	must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "beta"}}, nil))
	user("beta", "betty", "admin")
	betty := w.client("betty")
	must(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/teams/pulumi", Body: map[string]string{"name": "ops"}}, nil))
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/teams/ops/tokens", Body: map[string]string{"name": "pipe"}}, &tok))
	w.tokens["betateam"] = tok.TokenValue
	must(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/tokens", Body: map[string]any{"name": "tool", "admin": true}}, &tok))
	w.tokens["betaorg"] = tok.TokenValue
	return w
}

func (w *inviteWorld) client(name string) *cliwire.Client {
	return cliwire.New(w.e.url, w.tokens[name])
}

func (w *inviteWorld) invite(t *testing.T, by, name string, days int) httpapi.Invitation {
	t.Helper()
	var inv httpapi.Invitation
	body := map[string]any{"userName": name, "role": "member"}
	if days != 0 {
		body["expiresInDays"] = days
	}
	must(t, w.client(by).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: body}, &inv))
	return inv
}

func (w *inviteWorld) isMember(t *testing.T, org, name string) bool {
	t.Helper()
	member := false
	must(t, w.e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(org)
		if err != nil {
			return err
		}
		u, err := tx.GetUserByName(name)
		if err != nil {
			return err
		}
		_, err = tx.GetMember(o.ID, u.ID)
		member = err == nil
		return nil
	}))
	return member
}

// TestDirectAddOfAnotherOrgsUserIsRefused: beta's admin cannot add acme's bob directly, and
// the refusal neither shows bob's email nor differs from the one for a name nobody has.
func TestDirectAddOfAnotherOrgsUserIsRefused(t *testing.T) {
	w := newInviteWorld(t)
	for _, by := range []string{"betty", "betaorg"} {
		status, body := rawCall(t, w.e, w.tokens[by], "POST", "/api/orgs/beta/members/bob", map[string]string{"role": "member"})
		want := "invite them instead"
		if by == "betaorg" {
			want = "managed by people" // a machine credential manages no people at all
		}
		if status != http.StatusForbidden || !strings.Contains(body, want) {
			t.Fatalf("%s adds acme's bob to beta: %d %s; want 403 telling to invite", by, status, body)
		}
		if strings.Contains(body, "@acme.example") {
			t.Fatalf("the refusal shows bob's email: %s", body)
		}
		ghostStatus, ghostBody := rawCall(t, w.e, w.tokens[by], "POST", "/api/orgs/beta/members/ghost", map[string]string{"role": "member"})
		if ghostStatus != status || strings.ReplaceAll(ghostBody, "ghost", "bob") != body {
			t.Fatalf("existing and missing users are told apart:\nbob:   %d %s\nghost: %d %s", status, body, ghostStatus, ghostBody)
		}
	}
	if w.isMember(t, "beta", "bob") {
		t.Fatal("bob became a member of beta")
	}
	// PATCH (role change) cannot probe names either.
	_, patchBob := rawCall(t, w.e, w.tokens["betty"], "PATCH", "/api/orgs/beta/members/bob", map[string]string{"role": "admin"})
	_, patchGhost := rawCall(t, w.e, w.tokens["betty"], "PATCH", "/api/orgs/beta/members/ghost", map[string]string{"role": "admin"})
	if strings.ReplaceAll(patchGhost, "ghost", "bob") != patchBob {
		t.Fatalf("PATCH tells existing and missing users apart:\n%s\n%s", patchBob, patchGhost)
	}
	// The refusal is in beta's audit log, without the email.
	evs, err := listAudit(w.e)
	must(t, err)
	denied := false
	for _, ev := range evs {
		if ev.OrgName == "beta" && ev.Action == "org:member:write" && ev.Outcome == gatehouse.OutcomeDenied && strings.Contains(ev.Target, "bob") {
			denied = true
			if strings.Contains(ev.Reason, "@") {
				t.Errorf("audit reason shows an email: %s", ev.Reason)
			}
		}
	}
	if !denied {
		t.Error("the refused direct add is not in the audit log")
	}

	// A site administrator adds directly.
	must(t, w.e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/members/carol", Body: map[string]string{"role": "member"}}, nil))
	if !w.isMember(t, "beta", "carol") {
		t.Fatal("the site admin's direct add did not make carol a member")
	}
	// An org admin adds back an account the organization created, while it belongs nowhere else...
	betty := w.client("betty")
	must(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/users", Body: map[string]string{"name": "own", "email": "own@beta.example"}}, nil))
	must(t, betty.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/beta/members/own"}, nil))
	must(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/members/own", Body: map[string]string{"role": "member"}}, nil))
	// ...but not once it belongs to another organization too.
	must(t, betty.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/beta/members/own"}, nil))
	must(t, w.e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/members/own", Body: map[string]string{"role": "member"}}, nil))
	wantStatus(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/members/own", Body: map[string]string{"role": "member"}}, nil), 403)
	// A member is already a member.
	wantStatus(t, betty.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/members/carol", Body: map[string]string{"role": "member"}}, nil), 409)
}

var volatile = regexp.MustCompile(`"(id|created|expires)":"[^"]*"`)

// TestInvitations: invitations for existing and missing names look alike; only the invited
// person accepts, with a personal token, before expiry and revocation.
func TestInvitations(t *testing.T) {
	w := newInviteWorld(t)
	e := w.e
	// Existing and missing names get indistinguishable answers.
	sBob, bBob := rawCall(t, e, w.tokens["betty"], "POST", "/api/orgs/beta/invitations", map[string]string{"userName": "bob", "role": "admin"})
	sGhost, bGhost := rawCall(t, e, w.tokens["betty"], "POST", "/api/orgs/beta/invitations", map[string]string{"userName": "ghost", "role": "admin"})
	if sBob != http.StatusCreated || sGhost != sBob {
		t.Fatalf("invitations: bob %d %s, ghost %d %s; want 201 both", sBob, bBob, sGhost, bGhost)
	}
	norm := func(s string) string {
		return volatile.ReplaceAllString(strings.ReplaceAll(s, "ghost", "bob"), `"$1":""`)
	}
	if norm(bBob) != norm(bGhost) {
		t.Fatalf("invitation answers differ:\n%s\n%s", bBob, bGhost)
	}
	if strings.Contains(bBob, "@acme.example") {
		t.Fatalf("the invitation shows bob's email: %s", bBob)
	}
	var inv httpapi.Invitation
	must(t, json.Unmarshal([]byte(bBob), &inv))
	if inv.ID == "" || inv.Org != "beta" || inv.UserName != "bob" || inv.Role != "admin" || inv.Status != "pending" || inv.InvitedBy != "betty" {
		t.Fatalf("invitation = %+v", inv)
	}
	if exp, err := time.Parse(time.RFC3339, inv.Expires); err != nil || exp.Sub(e.clock.Now()) < 6*24*time.Hour || exp.Sub(e.clock.Now()) > 8*24*time.Hour {
		t.Fatalf("expires %q, want in 7 days", inv.Expires)
	}
	// A second pending invitation for the same name is a conflict (for any name).
	wantStatus(t, w.client("betty").Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: map[string]string{"userName": "BOB"}}, nil), 409)
	wantStatus(t, w.client("betty").Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: map[string]string{"userName": "Ghost"}}, nil), 409)
	// Inviting a member of the organization is a conflict.
	wantStatus(t, w.client("betty").Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: map[string]string{"userName": "betty"}}, nil), 409)

	// Nobody else answers bob's invitation: another user does not see it, and team,
	// organization tokens are refused.
	var mine httpapi.InvitationList
	must(t, w.client("mallory").Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, &mine))
	if len(mine.Invitations) != 0 {
		t.Fatalf("mallory sees %+v", mine)
	}
	for _, verb := range []string{"accept", "decline"} {
		wantStatus(t, w.client("mallory").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/" + verb}, nil), 404)
		wantStatus(t, w.client("mallory").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/nosuchinvitation/" + verb}, nil), 404)
		wantStatus(t, w.client("betateam").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/" + verb}, nil), 403)
		wantStatus(t, w.client("betaorg").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/" + verb}, nil), 403)
		wantStatus(t, w.client("betty").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/" + verb}, nil), 404)
	}
	wantStatus(t, w.client("betateam").Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, nil), 403)
	if w.isMember(t, "beta", "bob") || w.isMember(t, "beta", "mallory") {
		t.Fatal("someone became a member through another's invitation")
	}

	// bob sees and accepts: he is a member of beta with the invited role.
	must(t, w.client("bob").Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, &mine))
	if len(mine.Invitations) != 1 || mine.Invitations[0].ID != inv.ID || mine.Invitations[0].Org != "beta" || mine.Invitations[0].Role != "admin" {
		t.Fatalf("bob's invitations = %+v", mine)
	}
	var acc httpapi.Invitation
	must(t, w.client("bob").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/accept"}, &acc))
	if acc.Status != "accepted" || !w.isMember(t, "beta", "bob") {
		t.Fatalf("after accepting: %+v, member %v", acc, w.isMember(t, "beta", "bob"))
	}
	var org struct {
		UserRole string `json:"userRole"`
	}
	must(t, w.client("bob").Do(cliwire.Call{Method: "GET", Path: "/api/orgs/beta"}, &org))
	if org.UserRole != "admin" {
		t.Fatalf("bob's role in beta = %q, want admin", org.UserRole)
	}
	wantStatus(t, w.client("bob").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/accept"}, nil), 409)

	// Revoked and expired invitations cannot be accepted.
	rev := w.invite(t, "betty", "dave", 0)
	var revoked httpapi.Invitation
	must(t, w.client("betty").Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/beta/invitations/" + rev.ID}, &revoked))
	if revoked.Status != "revoked" {
		t.Fatalf("revoked = %+v", revoked)
	}
	wantStatus(t, w.client("dave").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + rev.ID + "/accept"}, nil), 409)
	exp := w.invite(t, "betty", "carol", 1)
	e.clock.Advance(25 * time.Hour)
	must(t, w.client("carol").Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, &mine))
	if len(mine.Invitations) != 0 {
		t.Fatalf("carol sees an expired invitation: %+v", mine)
	}
	wantStatus(t, w.client("carol").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + exp.ID + "/accept"}, nil), 409)
	if w.isMember(t, "beta", "dave") || w.isMember(t, "beta", "carol") {
		t.Fatal("a revoked or expired invitation made a member")
	}
	// Declining.
	// Machine credentials neither invite nor revoke (review H2).
	wantStatus(t, w.client("betaorg").Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: map[string]string{"userName": "erin"}}, nil), 403)
	wantStatus(t, w.client("betateam").Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/invitations", Body: map[string]string{"userName": "erin"}}, nil), 403)
	dec := w.invite(t, "betty", "erin", 0)
	wantStatus(t, w.client("betaorg").Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/beta/invitations/" + dec.ID}, nil), 403)
	must(t, w.client("erin").Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + dec.ID + "/decline"}, nil))
	if w.isMember(t, "beta", "erin") {
		t.Fatal("declining made erin a member")
	}
	// Another organization's admin cannot revoke beta's invitations.
	wantStatus(t, w.client("bob").Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/invitations/" + dec.ID}, nil), 404)
	wantStatus(t, w.e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/invitations/" + dec.ID}, nil), 404)

	// The organization's list shows every invitation and where it stands.
	var list httpapi.InvitationList
	must(t, w.client("betty").Do(cliwire.Call{Method: "GET", Path: "/api/orgs/beta/invitations"}, &list))
	got := map[string]string{}
	for _, i := range list.Invitations {
		got[i.UserName] = i.Status
	}
	want := map[string]string{"bob": "accepted", "ghost": "pending", "dave": "revoked", "carol": "expired", "erin": "declined"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("beta's invitation of %s: %q, want %q (all: %v)", k, got[k], v, got)
		}
	}
	if strings.Contains(must2(json.Marshal(list)), "@acme.example") {
		t.Error("the invitation list shows an email")
	}
	// Every step is audited, in beta's log.
	evs, err := listAudit(e)
	must(t, err)
	seen := map[string]bool{}
	for _, ev := range evs {
		if ev.OrgName == "beta" && ev.Outcome == gatehouse.OutcomeSuccess {
			seen[ev.Action] = true
		}
	}
	for _, a := range []string{"org:invitation:create", "org:invitation:revoke", "user:invitation:accept", "user:invitation:decline"} {
		if !seen[a] {
			t.Errorf("no successful %s in beta's audit log", a)
		}
	}
}

// TestInvitationSquat (review H1): an invitation belongs to the user who had the name when
// it was made, not to whoever holds the name when it is accepted. beta invites "newbie",
// who has no account yet; eve, admin of the unrelated organization globex, creates a user
// "newbie" in globex. That user neither sees nor answers beta's invitation, and the
// organization's answer to the invitation was the same as for an existing name.
func TestInvitationSquat(t *testing.T) {
	w := newInviteWorld(t)
	e := w.e
	sGhost, bGhost := rawCall(t, e, w.tokens["betty"], "POST", "/api/orgs/beta/invitations", map[string]string{"userName": "newbie", "role": "admin"})
	sBob, bBob := rawCall(t, e, w.tokens["betty"], "POST", "/api/orgs/beta/invitations", map[string]string{"userName": "bob", "role": "admin"})
	norm := func(s string) string {
		return volatile.ReplaceAllString(strings.ReplaceAll(s, "newbie", "bob"), `"$1":""`)
	}
	if sGhost != http.StatusCreated || sBob != sGhost || norm(bGhost) != norm(bBob) {
		t.Fatalf("invitations of a missing and an existing name differ:\n%d %s\n%d %s", sGhost, bGhost, sBob, bBob)
	}
	var inv httpapi.Invitation
	must(t, json.Unmarshal([]byte(bGhost), &inv))

	// An unrelated organization whose admin is not a site administrator.
	must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	var eve, squatter createdToken
	must(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/users", Body: map[string]string{"name": "eve", "role": "admin"}}, &eve))
	must(t, cliwire.New(e.url, eve.TokenValue).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/users", Body: map[string]string{"name": "newbie", "role": "member"}}, &squatter))
	sq := cliwire.New(e.url, squatter.TokenValue)
	var mine httpapi.InvitationList
	must(t, sq.Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, &mine))
	if len(mine.Invitations) != 0 {
		t.Fatalf("the squatter sees %+v", mine.Invitations)
	}
	for _, verb := range []string{"accept", "decline"} {
		wantStatus(t, sq.Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + inv.ID + "/" + verb}, nil), 404)
	}
	if w.isMember(t, "beta", "newbie") {
		t.Fatal("the squatter became a member of beta")
	}
	wantStatus(t, sq.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/beta/tokens", Body: map[string]any{"name": "x", "admin": true}}, nil), 404)
	var list httpapi.InvitationList
	must(t, w.client("betty").Do(cliwire.Call{Method: "GET", Path: "/api/orgs/beta/invitations?pending=true"}, &list))
	if len(list.Invitations) != 2 {
		t.Fatalf("beta's pending invitations = %+v, want newbie's and bob's", list.Invitations)
	}

	// Invited again now that the account exists, the user whose name it is accepts.
	must(t, w.client("betty").Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/beta/invitations/" + inv.ID}, nil))
	again := w.invite(t, "betty", "NewBie", 0)
	must(t, sq.Do(cliwire.Call{Method: "GET", Path: "/api/user/invitations"}, &mine))
	if len(mine.Invitations) != 1 || mine.Invitations[0].ID != again.ID {
		t.Fatalf("newbie's invitations = %+v, want the new one", mine.Invitations)
	}
	must(t, sq.Do(cliwire.Call{Method: "POST", Path: "/api/user/invitations/" + again.ID + "/accept"}, nil))
	if !w.isMember(t, "beta", "newbie") {
		t.Fatal("accepting the new invitation did not make newbie a member")
	}
}

func must2(b []byte, err error) string {
	if err != nil {
		panic(err)
	}
	return string(b)
}

// TestMemberListingsHideEmails: members and team tokens see names and roles, not other
// people's emails; admins (and each person for themself) see them.
func TestMemberListingsHideEmails(t *testing.T) {
	w := newInviteWorld(t)
	must(t, w.e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "devs"}}, nil))
	must(t, w.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/devs", Body: map[string]string{"memberAction": "add", "member": "carol"}}, nil))
	for _, who := range []string{"bob", "mallory"} {
		for _, p := range []string{"/api/orgs/acme/members", "/api/orgs/acme/teams/devs"} {
			var raw json.RawMessage
			must(t, w.client(who).Do(cliwire.Call{Method: "GET", Path: p}, &raw))
			for _, other := range []string{"carol", "alice", "dave"} {
				if strings.Contains(string(raw), other+"@acme.example") {
					t.Errorf("%s sees %s's email in %s: %s", who, other, p, raw)
				}
			}
			if p == "/api/orgs/acme/members" && !strings.Contains(string(raw), who+"@acme.example") {
				t.Errorf("%s does not see their own email in %s", who, p)
			}
		}
	}
	var raw json.RawMessage
	must(t, w.e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, &raw))
	if !strings.Contains(string(raw), "carol@acme.example") {
		t.Errorf("the admin does not see emails: %s", raw)
	}
}
