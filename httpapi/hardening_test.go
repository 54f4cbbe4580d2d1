package httpapi_test

import (
	"context"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Regression tests for issue 12 ("Security hardening"), items 3, 4, 8b, 8c and 8e.

type tokenListing struct {
	Tokens []struct {
		ID        string `json:"id"`
		Name      string `json:"name"`
		Status    string `json:"status"`
		Expires   int64  `json:"expires"`
		Revoked   int64  `json:"revoked"`
		GraceEnds int64  `json:"graceEnds"`
	} `json:"tokens"`
}

// personalToken creates a personal token for an existing user straight in the store.
func personalToken(t *testing.T, e *env, user string, expires time.Time) (string, string) {
	t.Helper()
	v, tk, err := app.NewToken(gatehouse.TokenPersonal)
	e.must(err)
	tk.Name, tk.Expires = "own-"+user, expires
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUserByName(user)
		if err != nil {
			return err
		}
		tk.UserID = u.ID
		return tx.CreateToken(tk)
	}))
	return v, tk.ID
}

// tokenIDOf finds the ID of a token by its value.
func tokenIDOf(t *testing.T, e *env, value string) *gatehouse.Token {
	t.Helper()
	var tk *gatehouse.Token
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		tk, err = tx.GetTokenByDigest(token.Digest(value))
		return err
	}))
	return tk
}

// Item 3: a token issued by OIDC exchange cannot be rotated into a long-lived pipeline
// credential, by the person it acts as or by an org admin.
func TestRotateRefusesOIDCIssuedTokens(t *testing.T) {
	w := newOIDCWorld(t)
	e := w.e
	bobValue, _ := personalToken(t, e, "bob", time.Time{})
	bob := cliwire.New(e.url, bobValue)

	oidcPersonal := granted(t, w.exchange(t, exchangeParams(w.token("acme/bob-sandbox", "", nil), "personal", "user:bob"), false), "personal", "user:bob", 7200)
	tk := tokenIDOf(t, e, oidcPersonal)
	tenYears := e.clock.Now().Add(10 * 365 * 24 * time.Hour).Unix()
	err := bob.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + tk.ID + "/rotate", Body: map[string]any{"expires": tenYears}}, nil)
	if ce := wantStatus(t, err, 400); !strings.Contains(ce.Message, "exchange") {
		t.Fatalf("refusal does not say to exchange again: %s", ce.Message)
	}

	oidcTeam := granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)
	tk = tokenIDOf(t, e, oidcTeam)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/production-deployers/tokens/" + tk.ID + "/rotate", Body: map[string]any{"expires": tenYears}}, nil), 400)

	oidcOrg := granted(t, w.exchange(t, exchangeParams(w.token("acme/tools", "", nil), "organization", ""), false), "organization", "", 7200)
	tk = tokenIDOf(t, e, oidcOrg)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens/" + tk.ID + "/rotate", Body: map[string]any{}}, nil), 400)

	// No pipeline personal token exists but the one the exchange issued.
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		tks, err := tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal, IncludeRevoked: true})
		for _, tk := range tks {
			if tk.Pipeline && tk.Issuer == "" {
				t.Errorf("a pipeline personal token not issued by exchange: %+v", tk)
			}
		}
		return err
	}))
}

// Item 3: a successor never outlives its predecessor or the organization's maximum.
func TestRotationNeverExtendsLifetime(t *testing.T) {
	e := newEnv(t)
	var tok createdToken
	oldExp := e.clock.Now().Add(time.Hour).Unix()
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "hour", "expires": oldExp}}, &tok))
	tenYears := e.clock.Now().Add(10 * 365 * 24 * time.Hour).Unix()
	var rot createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + tok.ID + "/rotate", Body: map[string]any{"expires": tenYears}}, &rot))
	if rot.Expires == 0 || rot.Expires > oldExp {
		t.Fatalf("successor expires %d, after its predecessor (%d)", rot.Expires, oldExp)
	}
	// Rotating later does not extend it either (the default was "the same lifetime from now").
	e.clock.Advance(30 * time.Minute)
	var rot2 createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + rot.ID + "/rotate", Body: map[string]any{}}, &rot2))
	if rot2.Expires == 0 || rot2.Expires > oldExp {
		t.Fatalf("second successor expires %d, after the first token (%d)", rot2.Expires, oldExp)
	}

	// Team token without expiry, then the org sets a 30-day maximum: the successor is capped.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	var team createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens", Body: map[string]any{"name": "ci"}}, &team))
	var short createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "admin-short", "expires": e.clock.Now().Add(24 * time.Hour).Unix()}}, &short))
	admin := cliwire.New(e.url, short.TokenValue)
	e.must(admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setMaxAccessTokenExpiryDays": 30}}, nil))
	var rot3 createdToken
	e.must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens/" + team.ID + "/rotate", Body: map[string]any{"expires": tenYears}}, &rot3))
	if limit := e.clock.Now().Add(30*24*time.Hour + time.Minute).Unix(); rot3.Expires == 0 || rot3.Expires > limit {
		t.Fatalf("successor expires %d, beyond the org's 30 days (%d)", rot3.Expires, limit)
	}
}

// Item 4: machine credentials (org tokens, also admin ones, and OIDC-issued ones) cannot
// create people, whose first token would be a permanent credential.
func TestMachineCredentialsCannotCreateUsers(t *testing.T) {
	w := newOIDCWorld(t)
	e := w.e
	var tok createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "tooling", "admin": true}}, &tok))
	orgAdmin := cliwire.New(e.url, tok.TokenValue)
	err := orgAdmin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "mallory", "role": "admin"}}, nil)
	if ce := wantStatus(t, err, 403); !strings.Contains(ce.Message, "people") {
		t.Fatalf("refusal does not say why: %s", ce.Message)
	}
	oidcAdmin := granted(t, w.exchange(t, exchangeParams(w.token("acme/tools", "admin", nil), "organization", "admin"), false), "organization", "admin", 7200)
	wantStatus(t, cliwire.New(e.url, oidcAdmin).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "mallory2"}}, nil), 403)
	// Nor tokens of any kind.
	for _, p := range []string{"/api/orgs/acme/tokens", "/api/orgs/acme/teams/dev-deployers/tokens", "/api/user/tokens"} {
		wantStatus(t, cliwire.New(e.url, oidcAdmin).Do(cliwire.Call{Method: "POST", Path: p, Body: map[string]any{"name": "x"}}, nil), 403)
	}
	// The denial is audited.
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Outcome == gatehouse.OutcomeDenied && ev.TokenID == tok.ID && ev.Action == "org:user:create" {
			found = true
		}
	}
	if !found {
		t.Fatal("the refused user creation is not in the audit log")
	}
}

// Review H2: machine credentials do not manage people either. An OIDC-issued (2-hour)
// organization admin token, or a permanent one, must not promote a person to admin (who
// would then mint permanent tokens of their own), remove one, or invite or uninvite one.
func TestMachineCredentialsCannotManagePeople(t *testing.T) {
	w := newOIDCWorld(t)
	e := w.e
	var mallory createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "mallory", "role": "member"}}, &mallory))
	var inv struct{ ID string }
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/invitations", Body: map[string]string{"userName": "someone", "role": "member"}}, &inv))
	var orgTok, teamTok createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "tooling", "admin": true}}, &orgTok))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/dev-deployers/tokens", Body: map[string]any{"name": "ci"}}, &teamTok))
	oidcAdmin := granted(t, w.exchange(t, exchangeParams(w.token("acme/tools", "admin", nil), "organization", "admin"), false), "organization", "admin", 7200)
	for name, tok := range map[string]string{"oidc org admin": oidcAdmin, "org admin token": orgTok.TokenValue, "team token": teamTok.TokenValue} {
		c := cliwire.New(e.url, tok)
		// Reading the members stays allowed.
		if err := c.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil); err != nil {
			t.Fatalf("%s lists members: %v", name, err)
		}
		for _, call := range []cliwire.Call{
			{Method: "PATCH", Path: "/api/orgs/acme/members/mallory", Body: map[string]string{"role": "admin"}},
			{Method: "DELETE", Path: "/api/orgs/acme/members/bob"},
			{Method: "POST", Path: "/api/orgs/acme/invitations", Body: map[string]string{"userName": "outsider", "role": "admin"}},
			{Method: "DELETE", Path: "/api/orgs/acme/invitations/" + inv.ID},
		} {
			ce := wantStatus(t, c.Do(call, nil), 403)
			if name != "team token" && !strings.Contains(ce.Message, "people") {
				t.Fatalf("%s %s %s: refusal does not say why: %s", name, call.Method, call.Path, ce.Message)
			}
		}
	}
	// mallory is still a plain member: she cannot mint an organization admin token.
	err := cliwire.New(e.url, mallory.TokenValue).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "forever", "admin": true}}, nil)
	wantStatus(t, err, 403)
	var members struct {
		Members []struct {
			Role string `json:"role"`
			User struct {
				Name string `json:"name"`
			} `json:"user"`
		} `json:"members"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, &members))
	roles := map[string]string{}
	for _, m := range members.Members {
		roles[m.User.Name] = m.Role
	}
	if roles["mallory"] != "member" || roles["bob"] != "member" {
		t.Fatalf("members after the refused changes: %v", roles)
	}
	// The invitation is still pending and none was made for outsider.
	var list httpapi.InvitationList
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/invitations"}, &list))
	if len(list.Invitations) != 1 || list.Invitations[0].ID != inv.ID || list.Invitations[0].Status != "pending" {
		t.Fatalf("invitations after the refused changes: %+v", list.Invitations)
	}
	// A person, with their own personal token, still does all of it.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/members/mallory", Body: map[string]string{"role": "admin"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/invitations/" + inv.ID}, nil))
}

// Item 4: a new user's first token expires: within the org's maximum, or by default within
// 30 days when the org sets none.
func TestCreatedUsersFirstTokenExpires(t *testing.T) {
	e := newEnv(t)
	var u struct {
		TokenValue string `json:"tokenValue"`
		Expires    int64  `json:"tokenExpires"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob"}}, &u))
	tk := tokenIDOf(t, e, u.TokenValue)
	if limit := e.clock.Now().Add(30*24*time.Hour + time.Minute); tk.Expires.IsZero() || tk.Expires.After(limit) {
		t.Fatalf("first token expires %v, want within 30 days", tk.Expires)
	}
	if u.Expires != tk.Expires.Unix() {
		t.Fatalf("answer says the token expires %d, it expires %d", u.Expires, tk.Expires.Unix())
	}
	var short createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "admin-short", "expires": e.clock.Now().Add(24 * time.Hour).Unix()}}, &short))
	admin := cliwire.New(e.url, short.TokenValue)
	e.must(admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setMaxAccessTokenExpiryDays": 7}}, nil))
	e.must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "carol"}}, &u))
	tk = tokenIDOf(t, e, u.TokenValue)
	if limit := e.clock.Now().Add(7*24*time.Hour + time.Minute); tk.Expires.IsZero() || tk.Expires.After(limit) {
		t.Fatalf("first token expires %v, beyond the org's 7 days", tk.Expires)
	}
}

// Item 8b: deleting a team revokes its tokens at once.
func TestDeleteTeamRevokesItsTokens(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	var tok createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens", Body: map[string]any{"name": "ci"}}, &tok))
	team := cliwire.New(e.url, tok.TokenValue)
	e.must(team.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)) // cached now
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/teams/deployers"}, nil))
	wantStatus(t, team.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil), 401)
	wantStatus(t, team.Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil), 401)
	if tk := tokenIDOf(t, e, tok.TokenValue); tk.Revoked.IsZero() {
		t.Fatal("the team token is not marked revoked")
	}
}

// Item 8c: tokens in their rotation grace period are in the default listings.
func TestRotatingTokensAreListed(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	for i, base := range []string{"/api/user/tokens", "/api/orgs/acme/tokens", "/api/orgs/acme/teams/deployers/tokens"} {
		var tok createdToken
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: base, Body: map[string]any{"name": "rot" + itoa(i)}}, &tok))
		var rot struct {
			ID   string `json:"id"`
			Ends int64  `json:"previousTokenEnds"`
		}
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: base + "/" + tok.ID + "/rotate", Body: map[string]any{"graceSeconds": 3600}}, &rot))
		var list tokenListing
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: base}, &list))
		seen := map[string]string{}
		for _, tk := range list.Tokens {
			seen[tk.ID] = tk.Status
			if tk.ID == tok.ID && (tk.GraceEnds != rot.Ends || tk.Revoked != rot.Ends) {
				t.Fatalf("%s: rotating token listed with graceEnds %d revoked %d, want %d", base, tk.GraceEnds, tk.Revoked, rot.Ends)
			}
		}
		if seen[tok.ID] != "rotating" || seen[rot.ID] != "active" {
			t.Fatalf("%s: default listing %v; want the old token rotating and the new one active", base, seen)
		}
		var expired tokenListing
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: base + "?filter=expired"}, &expired))
		for _, tk := range expired.Tokens {
			if tk.ID == tok.ID {
				t.Fatalf("%s: a token in its grace period listed as expired", base)
			}
		}
	}
	// After the grace period, it is revoked (not in the default listing).
	e.clock.Advance(2 * time.Hour)
	var list tokenListing
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/user/tokens"}, &list))
	for _, tk := range list.Tokens {
		if tk.Status != "active" {
			t.Fatalf("default listing after the grace period: %+v", list.Tokens)
		}
	}
}

// Item 8e: cancelling a real update on a protected stack needs a pipeline credential.
func TestCancelOnProtectedStackNeedsPipeline(t *testing.T) {
	e := newEnv(t)
	prod := stackPath("acme", "proj", "prod")
	e.must(e.createStack(e.admin, "acme", "proj", "prod", map[string]string{"env": "production"}))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "deployers"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/deployers", Body: map[string]any{"addGrant": map[string]any{"tag": "env=production", "permission": "write"}}}, nil))
	var tok createdToken
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens", Body: map[string]any{"name": "ci"}}, &tok))
	pipeline := cliwire.New(e.url, tok.TokenValue)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))

	r, err := e.startRun(pipeline, prod, "update", false)
	e.must(err)
	err = e.admin.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + r.ID + "/cancel"}, nil)
	if ce := wantStatus(t, err, 403); !strings.Contains(ce.Message, "protected") {
		t.Fatalf("refusal does not say why: %s", ce.Message)
	}
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Action == "stack:cancel" && ev.Outcome == gatehouse.OutcomeDenied && strings.Contains(ev.Target, r.ID) {
			found = true
		}
	}
	if !found {
		t.Fatal("the refused cancel is not in the audit log")
	}
	e.must(r.events(1)) // still running
	e.must(pipeline.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + r.ID + "/cancel"}, nil))

	// A person may cancel a preview (people may run previews on protected stacks).
	p, err := e.startRun(e.admin, prod, "preview", true)
	e.must(err)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: prod + "/update/" + p.ID + "/cancel"}, nil))
}
