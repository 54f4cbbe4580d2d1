package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// gh runs the gatehouse command and returns its stdout and error.
func gh(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

// TestInviteCommands: beta's admin invites acme's bob (a direct add is refused and points
// to invitations), bob lists and accepts, and is then a member of beta.
func TestInviteCommands(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	if code, out := apiCall(t, url, admin, "POST", "/api/orgs", map[string]string{"name": "beta"}); code != 200 {
		t.Fatalf("creating beta: %d %v", code, out)
	}
	token := map[string]string{}
	for _, u := range []struct{ org, name, role string }{{"beta", "betty", "admin"}, {"acme", "bob", "member"}, {"acme", "carol", "member"}} {
		code, out := apiCall(t, url, admin, "POST", "/api/orgs/"+u.org+"/users", map[string]string{"name": u.name, "role": u.role, "email": u.name + "@example.com"})
		if code != 200 {
			t.Fatalf("creating %s: %d %v", u.name, code, out)
		}
		token[u.name] = out["tokenValue"].(string)
	}
	as := func(who string, args ...string) (string, error) {
		return gh(t, append(args, "--server", url, "--token", token[who])...)
	}

	_, err := as("betty", "member", "add", "bob", "--org", "beta")
	if err == nil || !strings.Contains(err.Error(), "invite them instead") || strings.Contains(err.Error(), "@example.com") {
		t.Fatalf("member add of acme's bob by beta's admin: %v; want a refusal that says to invite", err)
	}
	out, err := as("betty", "invite", "create", "bob", "--org", "beta", "--role", "admin", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var inv httpapi.Invitation
	if err := json.Unmarshal([]byte(out), &inv); err != nil || inv.ID == "" || inv.Status != "pending" {
		t.Fatalf("invite create --json: %v %q", err, out)
	}
	if out, err := as("betty", "invite", "ls", "--org", "beta"); err != nil || !strings.Contains(out, inv.ID) || !strings.Contains(out, "pending") {
		t.Fatalf("invite ls --org beta: %v\n%s", err, out)
	}
	if out, err := as("carol", "invite", "ls", "--mine"); err != nil || strings.Contains(out, inv.ID) {
		t.Fatalf("carol's invitations: %v\n%s", err, out)
	}
	if _, err := as("carol", "invite", "accept", inv.ID); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("carol accepts bob's invitation: %v, want 404", err)
	}
	if out, err := as("bob", "invite", "ls", "--mine"); err != nil || !strings.Contains(out, inv.ID) || !strings.Contains(out, "beta") {
		t.Fatalf("bob's invitations: %v\n%s", err, out)
	}
	if out, err := as("bob", "invite", "accept", inv.ID); err != nil || !strings.Contains(out, "member of beta") {
		t.Fatalf("bob accepts: %v\n%s", err, out)
	}
	out, err = as("betty", "member", "ls", "--org", "beta", "--json")
	if err != nil || !strings.Contains(out, `"bob"`) {
		t.Fatalf("beta's members after bob accepted: %v\n%s", err, out)
	}
	// Revoke and decline.
	out, err = as("betty", "invite", "create", "carol", "--org", "beta", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var second httpapi.Invitation
	_ = json.Unmarshal([]byte(out), &second)
	if _, err := as("betty", "invite", "revoke", second.ID, "--org", "beta"); err != nil {
		t.Fatal(err)
	}
	if _, err := as("carol", "invite", "decline", second.ID); err == nil || !strings.Contains(err.Error(), "409") {
		t.Fatalf("declining a revoked invitation: %v, want 409", err)
	}
	if _, err := as("betty", "invite", "ls"); err == nil || !strings.Contains(err.Error(), "--org") {
		t.Fatalf("invite ls without --org or --mine: %v", err)
	}
}
