package httpapi_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/scimwire"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// scimToken creates (or regenerates) org's SCIM token as the admin and returns a client.
func (e *env) scimClient(t *testing.T, org string) *scimwire.Client {
	t.Helper()
	var out struct {
		Token   string `json:"token"`
		BaseURL string `json:"baseUrl"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/" + org + "/scim/token"}, &out))
	if !strings.HasPrefix(out.Token, "gatehouse_scim_") || !strings.HasSuffix(out.BaseURL, "/scim/v2/"+org) {
		t.Fatalf("SCIM token answer: %+v", out)
	}
	return &scimwire.Client{BaseURL: e.url + "/scim/v2/" + org, Token: out.Token}
}

// step is one recorded request of an identity provider and what its answer must be.
type step struct {
	name   string
	method string
	path   string // after the base URL; {u} and {g} are the user and group IDs
	body   string
	status int
	check  func(t *testing.T, r *scimwire.Response)
}

// replay runs the steps in order, substituting IDs learned from answers (the first
// created User's id for {u}, the first created Group's for {g}).
func replay(t *testing.T, c *scimwire.Client, steps []step, ids map[string]string) {
	t.Helper()
	for _, s := range steps {
		path, body := s.path, s.body
		for k, v := range ids {
			path = strings.ReplaceAll(path, "{"+k+"}", v)
			body = strings.ReplaceAll(body, "{"+k+"}", v)
		}
		var b any
		if body != "" {
			b = body
		}
		r, err := c.Do(s.method, path, b)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		if r.Status != s.status {
			t.Fatalf("%s: %s %s: HTTP %d, want %d: %s", s.name, s.method, path, r.Status, s.status, r.Body)
		}
		if len(r.Body) > 0 && !strings.HasPrefix(r.Header.Get("Content-Type"), "application/scim+json") {
			t.Fatalf("%s: Content-Type %q", s.name, r.Header.Get("Content-Type"))
		}
		if r.Status >= 400 {
			if sc, _ := r.JSON["schemas"].([]any); len(sc) != 1 || sc[0] != "urn:ietf:params:scim:api:messages:2.0:Error" {
				t.Fatalf("%s: not a SCIM error: %s", s.name, r.Body)
			}
			if st, ok := r.JSON["status"].(string); !ok || st != fmt.Sprint(s.status) {
				t.Fatalf("%s: status must be the string %q: %s", s.name, fmt.Sprint(s.status), r.Body)
			}
		}
		if r.Status == http.StatusCreated {
			kind := "u"
			if strings.HasPrefix(s.path, "/Groups") {
				kind = "g"
			}
			if _, ok := ids[kind]; !ok {
				ids[kind] = r.String("id")
			}
			if r.Header.Get("Location") == "" {
				t.Fatalf("%s: 201 without Location", s.name)
			}
		}
		if s.check != nil {
			s.check(t, r)
		}
	}
}

func wantField(key, want string) func(*testing.T, *scimwire.Response) {
	return func(t *testing.T, r *scimwire.Response) {
		t.Helper()
		if got := r.String(key); got != want {
			t.Fatalf("%s = %q, want %q: %s", key, got, want, r.Body)
		}
	}
}

func wantTotal(n int) func(*testing.T, *scimwire.Response) {
	return func(t *testing.T, r *scimwire.Response) {
		t.Helper()
		if got := r.String("totalResults"); got != fmt.Sprint(n) || len(r.Resources()) > n {
			t.Fatalf("totalResults = %s (%d resources), want %d: %s", got, len(r.Resources()), n, r.Body)
		}
		if sc, _ := r.JSON["schemas"].([]any); len(sc) != 1 || sc[0] != "urn:ietf:params:scim:api:messages:2.0:ListResponse" {
			t.Fatalf("not a ListResponse: %s", r.Body)
		}
	}
}

func wantType(typ string) func(*testing.T, *scimwire.Response) {
	return func(t *testing.T, r *scimwire.Response) {
		t.Helper()
		if got := r.String("scimType"); got != typ {
			t.Fatalf("scimType = %q, want %q: %s", got, typ, r.Body)
		}
	}
}

func all(fs ...func(*testing.T, *scimwire.Response)) func(*testing.T, *scimwire.Response) {
	return func(t *testing.T, r *scimwire.Response) {
		t.Helper()
		for _, f := range fs {
			f(t, r)
		}
	}
}

// member reports whether name is a member of acme (through the API), with its role.
func (e *env) memberRole(t *testing.T, org, name string) string {
	t.Helper()
	var out struct {
		Members []struct {
			Role string `json:"role"`
			User struct {
				GithubLogin string `json:"githubLogin"`
				Name        string `json:"name"`
			} `json:"user"`
		} `json:"members"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/" + org + "/members"}, &out))
	for _, m := range out.Members {
		if m.User.GithubLogin == name || m.User.Name == name {
			return m.Role
		}
	}
	return ""
}

func (e *env) teamMembers(t *testing.T, team string) []string {
	t.Helper()
	var out struct {
		Members []struct {
			GithubLogin string `json:"githubLogin"`
			Name        string `json:"name"`
		} `json:"members"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/" + team}, &out))
	var names []string
	for _, m := range out.Members {
		names = append(names, m.GithubLogin)
	}
	return names
}

// TestSCIMOktaSequence replays the requests Okta's SCIM 2.0 client sends (test connection,
// create, update by PUT with extra keys, deactivate and reactivate by PATCH without a path,
// push group, add members, rename, remove a member, delete group) and checks every answer.
func TestSCIMOktaSequence(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	ids := map[string]string{}
	patchOp := `"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`
	replay(t, c, []step{
		{name: "test connection users", method: "GET", path: "/Users?startIndex=1&count=2", status: 200, check: wantTotal(0)},
		{name: "test connection groups", method: "GET", path: "/Groups?startIndex=1&count=100", status: 200},
		{name: "discovery", method: "GET", path: "/ServiceProviderConfig", status: 200},
		{name: "search before create", method: "GET", path: "/Users?filter=userName%20eq%20%22dana%40example.com%22&startIndex=1&count=100", status: 200, check: wantTotal(0)},
		{name: "create", method: "POST", path: "/Users", status: 201, body: `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
			"userName":"dana@example.com","name":{"givenName":"Dana","familyName":"Scully"},
			"emails":[{"primary":true,"value":"dana@example.com","type":"work"}],"displayName":"Dana Scully",
			"locale":"en-US","externalId":"00u1abcd","groups":[],"password":"placeholder-Okta-sends","active":true}`,
			check: all(wantField("userName", "dana@example.com"), wantField("active", "true"), wantField("externalId", "00u1abcd"))},
		{name: "search after create", method: "GET", path: "/Users?filter=userName%20eq%20%22DANA%40example.com%22&startIndex=1&count=100", status: 200, check: wantTotal(1)},
		{name: "get", method: "GET", path: "/Users/{u}", status: 200, check: wantField("displayName", "Dana Scully")},
		{name: "profile update (PUT, extra keys)", method: "PUT", path: "/Users/{u}", status: 200, body: `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],
			"id":"{u}","userName":"dana@example.com","name":{"givenName":"Dana K","familyName":"Scully"},
			"emails":[{"primary":true,"value":"dana@example.com","type":"work"}],"displayName":"Dana K Scully",
			"locale":"en-US","password":"x","groups":[{"value":"1"}],"active":true}`,
			check: func(t *testing.T, r *scimwire.Response) {
				if n, _ := r.JSON["name"].(map[string]any); n["givenName"] != "Dana K" {
					t.Fatalf("givenName not updated: %s", r.Body)
				}
			}},
		{name: "deactivate", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"replace","value":{"active":false}}]}`,
			check: wantField("active", "false")},
		{name: "get deactivated", method: "GET", path: "/Users/{u}", status: 200, check: wantField("active", "false")},
	}, ids)
	if r := e.memberRole(t, "acme", "dana"); r != "" {
		t.Fatalf("deactivated person is still a member (%s)", r)
	}
	replay(t, c, []step{
		{name: "reactivate", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"replace","value":{"active":true}}]}`,
			check: wantField("active", "true")},
		{name: "push group", method: "POST", path: "/Groups", status: 201, body: `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"displayName":"Engineering","members":[]}`,
			check: wantField("displayName", "Engineering")},
		{name: "search group", method: "GET", path: "/Groups?filter=displayName%20eq%20%22Engineering%22&startIndex=1&count=100", status: 200, check: wantTotal(1)},
		{name: "add member", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"add","path":"members","value":[{"value":"{u}","display":"dana@example.com"}]}]}`},
		{name: "rename", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"replace","value":{"id":"{g}","displayName":"Platform Engineering"}}]}`},
		{name: "get group", method: "GET", path: "/Groups/{g}", status: 200, check: func(t *testing.T, r *scimwire.Response) {
			ms, _ := r.JSON["members"].([]any)
			if r.String("displayName") != "Platform Engineering" || len(ms) != 1 || ms[0].(map[string]any)["value"] != ids["u"] {
				t.Fatalf("group after add and rename: %s", r.Body)
			}
		}},
	}, ids)
	if r := e.memberRole(t, "acme", "dana"); r != "member" {
		t.Fatalf("reactivated person's role = %q, want member", r)
	}
	if got := e.teamMembers(t, "engineering"); len(got) != 1 || got[0] != "dana" {
		t.Fatalf("team members = %v", got)
	}
	replay(t, c, []step{
		{name: "remove member", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"remove","path":"members[value eq \"{u}\"]"}]}`},
		{name: "get group after removal", method: "GET", path: "/Groups/{g}", status: 200, check: func(t *testing.T, r *scimwire.Response) {
			if ms, _ := r.JSON["members"].([]any); len(ms) != 0 {
				t.Fatalf("members after removal: %s", r.Body)
			}
		}},
		{name: "delete group", method: "DELETE", path: "/Groups/{g}", status: 204},
		{name: "get deleted group", method: "GET", path: "/Groups/{g}", status: 404},
	}, ids)
	// Every change is audited with the SCIM token as the actor.
	evs, err := listAudit(e)
	e.must(err)
	n := 0
	for _, ev := range evs {
		if strings.HasPrefix(ev.Action, "scim:") && ev.Outcome == gatehouse.OutcomeSuccess {
			if ev.ActorKind != "scim-token" || ev.ActorName != "SCIM provisioning" || ev.OrgName != "acme" {
				t.Fatalf("SCIM change audited as %s %q in %q", ev.ActorKind, ev.ActorName, ev.OrgName)
			}
			n++
		}
	}
	if n != 9 { // create, put, 2 patches, group create, 3 group patches, delete
		t.Fatalf("%d SCIM changes audited, want 9", n)
	}
}

// TestSCIMEntraSequence replays Entra ID's requests: test connection with a random
// userName, create with the enterprise extension, PATCH with capitalised ops, the
// enterprise extension path refused, groups with member add and remove by value list,
// excludedAttributes=members, deactivation with the string "False", hard delete, and a
// create again after it.
func TestSCIMEntraSequence(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	ids := map[string]string{}
	patchOp := `"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`
	create := `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User","urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
		"externalId":"erin","userName":"erin@contoso.com","active":true,"displayName":"Erin Example",
		"emails":[{"primary":true,"type":"work","value":"erin@contoso.com"}],
		"meta":{"resourceType":"User"},"name":{"formatted":"Erin Example","familyName":"Example","givenName":"Erin"},
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User":{"employeeNumber":"42","department":"Ops"}}`
	replay(t, c, []step{
		{name: "test connection", method: "GET", path: "/Users?filter=userName+eq+%228d4b0c1e-7b7f-4c41-9a3c-0f5b2a4c9e11%22", status: 200, check: wantTotal(0)},
		{name: "schemas", method: "GET", path: "/Schemas", status: 200, check: wantTotal(2)},
		{name: "resource types", method: "GET", path: "/ResourceTypes", status: 200, check: wantTotal(2)},
		{name: "query", method: "GET", path: "/Users?filter=userName+eq+%22erin%40contoso.com%22", status: 200, check: wantTotal(0)},
		{name: "create", method: "POST", path: "/Users", body: create, status: 201, check: wantField("active", "true")},
		{name: "update", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[
			{"op":"Replace","path":"displayName","value":"Erin M"},
			{"op":"Replace","path":"name.familyName","value":"M"},
			{"op":"Replace","path":"emails[type eq \"work\"].value","value":"erin.m@contoso.com"}]}`,
			check: func(t *testing.T, r *scimwire.Response) {
				es, _ := r.JSON["emails"].([]any)
				if r.String("displayName") != "Erin M" || len(es) != 1 || es[0].(map[string]any)["value"] != "erin.m@contoso.com" {
					t.Fatalf("after update: %s", r.Body)
				}
			}},
		{name: "enterprise extension path", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidPath"), body: `{` + patchOp + `,"Operations":[
			{"op":"Add","path":"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department","value":"Eng"}]}`},
		{name: "group", method: "POST", path: "/Groups", status: 201, body: `{"schemas":["urn:ietf:params:scim:schemas:core:2.0:Group"],"externalId":"a1b2","displayName":"Ops","members":[]}`},
		{name: "group add", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"Add","path":"members","value":[{"$ref":null,"value":"{u}"}]}]}`},
		{name: "group query", method: "GET", path: "/Groups?excludedAttributes=members&filter=displayName+eq+%22Ops%22", status: 200, check: func(t *testing.T, r *scimwire.Response) {
			res := r.Resources()
			if len(res) != 1 || res[0]["members"] != nil || res[0]["id"] != ids["g"] {
				t.Fatalf("group query: %s", r.Body)
			}
		}},
		{name: "group remove", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"Remove","path":"members","value":[{"value":"{u}"}]}]}`},
		{name: "group add again", method: "PATCH", path: "/Groups/{g}", status: 204, body: `{` + patchOp + `,"Operations":[{"op":"Add","path":"members","value":[{"value":"{u}"}]}]}`},
		{name: "soft delete", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
			check: wantField("active", "false")},
		{name: "get soft-deleted", method: "GET", path: "/Users/{u}", status: 200, check: wantField("active", "false")},
	}, ids)
	if got := e.teamMembers(t, "ops"); len(got) != 0 {
		t.Fatalf("deprovisioned person still in team ops: %v", got)
	}
	replay(t, c, []step{
		{name: "restore", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"Replace","path":"active","value":"True"}]}`,
			check: wantField("active", "true")},
		{name: "soft delete again", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"Replace","path":"active","value":false}]}`},
		{name: "hard delete", method: "DELETE", path: "/Users/{u}", status: 204},
		{name: "get hard-deleted", method: "GET", path: "/Users/{u}", status: 404},
		{name: "query hard-deleted", method: "GET", path: "/Users?filter=userName+eq+%22erin%40contoso.com%22", status: 200, check: wantTotal(0)},
		{name: "assigned again", method: "POST", path: "/Users", status: 201, body: strings.Replace(create, "erin@contoso.com\"}]", "erin.m@contoso.com\"}]", 1),
			check: wantField("id", ids["u"])}, // their account, taken back
	}, map[string]string{"u": ids["u"], "g": ids["g"]})
}

// TestSCIMBadInput: unknown filters and paths, oversized count, malformed JSON,
// duplicates, immutable userName, invalid members (nothing applied), a PATCH failing half
// way (nothing applied), long display names, unknown IDs.
func TestSCIMBadInput(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	ids := map[string]string{}
	patchOp := `"schemas":["urn:ietf:params:scim:api:messages:2.0:PatchOp"]`
	replay(t, c, []step{
		{name: "create", method: "POST", path: "/Users", status: 201, body: `{"userName":"fox@example.com","emails":[{"value":"fox@example.com","type":"work"}],"displayName":"Fox"}`},
		{name: "contains filter", method: "GET", path: "/Users?filter=userName+co+%22fox%22", status: 400, check: wantType("invalidFilter")},
		{name: "other attribute", method: "GET", path: "/Users?filter=emails+eq+%22fox%40example.com%22", status: 400, check: wantType("invalidFilter")},
		{name: "and", method: "GET", path: "/Users?filter=userName+eq+%22a%22+and+displayName+eq+%22b%22", status: 400, check: wantType("invalidFilter")},
		{name: "group filter", method: "GET", path: "/Groups?filter=externalId+eq+%22x%22", status: 400, check: wantType("invalidFilter")},
		{name: "count too big", method: "GET", path: "/Users?count=101", status: 400, check: wantType("invalidValue")},
		{name: "count 100", method: "GET", path: "/Users?count=100&startIndex=1", status: 200, check: wantTotal(1)},
		{name: "malformed JSON", method: "POST", path: "/Users", body: `{"userName": "x"`, status: 400, check: wantType("invalidSyntax")},
		{name: "duplicate userName", method: "POST", path: "/Users", status: 409, check: wantType("uniqueness"), body: `{"userName":"FOX@example.com","emails":[{"value":"other@example.com"}]}`},
		{name: "duplicate email", method: "POST", path: "/Users", status: 409, check: wantType("uniqueness"), body: `{"userName":"fox2@example.com","emails":[{"value":"Fox@example.com","type":"work"}]}`},
		{name: "no userName", method: "POST", path: "/Users", status: 400, body: `{"displayName":"x"}`},
		{name: "userName immutable (PUT)", method: "PUT", path: "/Users/{u}", status: 400, check: wantType("mutability"), body: `{"userName":"other@example.com"}`},
		{name: "userName immutable (PATCH)", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("mutability"), body: `{` + patchOp + `,"Operations":[{"op":"replace","path":"userName","value":"x@example.com"}]}`},
		{name: "unknown path", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidPath"), body: `{` + patchOp + `,"Operations":[{"op":"replace","path":"title","value":"x"}]}`},
		{name: "unknown key without path", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidPath"), body: `{` + patchOp + `,"Operations":[{"op":"replace","value":{"nickName":"x"}}]}`},
		{name: "bad op", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidSyntax"), body: `{` + patchOp + `,"Operations":[{"op":"move","path":"displayName","value":"x"}]}`},
		{name: "half way", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidPath"), body: `{` + patchOp + `,"Operations":[
			{"op":"replace","path":"displayName","value":"Changed"},{"op":"replace","path":"active","value":false},{"op":"replace","path":"nope","value":1}]}`},
		{name: "nothing applied", method: "GET", path: "/Users/{u}", status: 200, check: all(wantField("displayName", "Fox"), wantField("active", "true"))},
		{name: "bad boolean", method: "PATCH", path: "/Users/{u}", status: 400, check: wantType("invalidValue"), body: `{` + patchOp + `,"Operations":[{"op":"replace","path":"active","value":"maybe"}]}`},
		{name: "unknown user", method: "GET", path: "/Users/999999", status: 404},
		{name: "unknown user id", method: "PATCH", path: "/Users/abc", status: 404, body: `{` + patchOp + `,"Operations":[{"op":"replace","path":"active","value":false}]}`},
		{name: "group", method: "POST", path: "/Groups", status: 201, body: `{"displayName":"G1","members":[{"value":"{u}"}]}`},
		{name: "invalid members", method: "PATCH", path: "/Groups/{g}", status: 400, check: wantType("invalidValue"), body: `{` + patchOp + `,"Operations":[
			{"op":"remove","path":"members[value eq \"{u}\"]"},{"op":"add","path":"members","value":[{"value":"424242"},{"value":"nope"}]}]}`},
		{name: "members untouched", method: "GET", path: "/Groups/{g}", status: 200, check: func(t *testing.T, r *scimwire.Response) {
			if ms, _ := r.JSON["members"].([]any); len(ms) != 1 {
				t.Fatalf("members changed by a failed PATCH: %s", r.Body)
			}
			if !strings.Contains(r.String("displayName"), "G1") {
				t.Fatalf("%s", r.Body)
			}
		}},
		{name: "create with invalid member", method: "POST", path: "/Groups", status: 400, check: wantType("invalidValue"), body: `{"displayName":"G2","members":[{"value":"31337"}]}`},
		{name: "no G2", method: "GET", path: "/Groups?filter=displayName+eq+%22G2%22", status: 200, check: wantTotal(0)},
		{name: "long name", method: "POST", path: "/Groups", status: 400, check: wantType("invalidValue"), body: `{"displayName":"` + strings.Repeat("n", 101) + `"}`},
		{name: "duplicate group", method: "POST", path: "/Groups", status: 409, check: wantType("uniqueness"), body: `{"displayName":"g1"}`},
		{name: "group externalId path", method: "PATCH", path: "/Groups/{g}", status: 400, check: wantType("invalidPath"), body: `{` + patchOp + `,"Operations":[{"op":"replace","path":"externalId","value":"x"}]}`},
		{name: "unknown endpoint", method: "GET", path: "/Bulk", status: 404},
	}, ids)
	// A deprovisioned person is not a valid member.
	replay(t, c, []step{
		{name: "deactivate", method: "PATCH", path: "/Users/{u}", status: 200, body: `{` + patchOp + `,"Operations":[{"op":"replace","value":{"active":"false"}}]}`},
		{name: "add deactivated", method: "PATCH", path: "/Groups/{g}", status: 400, check: wantType("invalidValue"), body: `{` + patchOp + `,"Operations":[{"op":"add","path":"members","value":[{"value":"{u}"}]}]}`},
	}, ids)
}

// TestSCIMAuth: only the organization's current SCIM token authenticates; every refusal is
// 401 with the SCIM envelope and the audit event "Auth Failure SCIM Access Token"; the SCIM
// token authenticates nowhere else.
func TestSCIMAuth(t *testing.T) {
	e := newEnv(t)
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	acme := e.scimClient(t, "acme")
	globex := e.scimClient(t, "globex")
	check := func(name string, c *scimwire.Client, want int) {
		t.Helper()
		r, err := c.Do("GET", "/Users", nil)
		e.must(err)
		if r.Status != want {
			t.Fatalf("%s: HTTP %d, want %d: %s", name, r.Status, want, r.Body)
		}
		if want == 401 && (r.String("status") != "401" || !strings.Contains(string(r.Body), "urn:ietf:params:scim:api:messages:2.0:Error")) {
			t.Fatalf("%s: %s", name, r.Body)
		}
	}
	check("acme's token", acme, 200)
	check("token scheme", &scimwire.Client{BaseURL: acme.BaseURL, Token: acme.Token, Scheme: "token"}, 200)
	check("no token", &scimwire.Client{BaseURL: acme.BaseURL}, 401)
	check("another organization's token", &scimwire.Client{BaseURL: acme.BaseURL, Token: globex.Token}, 401)
	check("a personal token", &scimwire.Client{BaseURL: acme.BaseURL, Token: e.admin.Token}, 401)
	check("garbage", &scimwire.Client{BaseURL: acme.BaseURL, Token: "gatehouse_scim_xyz"}, 401)
	check("unknown organization", &scimwire.Client{BaseURL: e.url + "/scim/v2/nope", Token: acme.Token}, 401)
	// Regenerating ends the old token at once.
	old := acme.Token
	acme2 := e.scimClient(t, "acme")
	check("replaced token", &scimwire.Client{BaseURL: acme.BaseURL, Token: old}, 401)
	check("new token", acme2, 200)
	// The SCIM token is nothing elsewhere: the CLI API refuses it.
	err := cliwire.New(e.url, acme2.Token).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil)
	wantStatus(t, err, 401)
	err = cliwire.New(e.url, acme2.Token).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)
	wantStatus(t, err, 401)
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Action == "scim:auth-failure" && strings.HasPrefix(ev.Reason, "Auth Failure SCIM Access Token") && ev.Outcome == gatehouse.OutcomeFailure {
			found = true
			if strings.Contains(ev.Reason, old) || strings.Contains(ev.Reason, globex.Token) {
				t.Fatal("a token value reached the audit log")
			}
		}
	}
	if !found {
		t.Fatal("no audit event Auth Failure SCIM Access Token")
	}
	// Only an admin, a person, makes SCIM tokens; no machine token does.
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "ci-admin", "admin": true}}, &tok))
	err = cliwire.New(e.url, tok.TokenValue).Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/scim/token"}, nil)
	wantStatus(t, err, 403)
}

// personalToken gives the account name a personal token (as a sign-in would).
func (e *env) personalToken(t *testing.T, name string) string {
	t.Helper()
	v, tk, err := app.NewToken(gatehouse.TokenPersonal)
	e.must(err)
	tk.Name = "laptop"
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUserByName(name)
		if err != nil {
			return err
		}
		tk.UserID = u.ID
		return tx.CreateToken(tk)
	}))
	return v
}

// session starts a browser session for account name started by org's sign-in (as a
// sign-in would) and returns its cookie.
func (e *env) session(t *testing.T, name, org string) *http.Cookie {
	t.Helper()
	value := fmt.Sprintf("scim-test-session-%s-%s-%d", name, org, e.clock.Now().UnixNano())
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		u, err := tx.GetUserByName(name)
		if err != nil {
			return err
		}
		var orgID int64
		if org != "" {
			o, err := tx.GetOrgByName(org)
			if err != nil {
				return err
			}
			orgID = o.ID
		}
		now := e.clock.Now()
		return tx.CreateSession(&gatehouse.Session{Digest: sso.SessionDigest(value), UserID: u.ID, OrgID: orgID, Method: gatehouse.SignInOIDC,
			IdleExpires: now.Add(time.Hour), Expires: now.Add(8 * time.Hour), CSRF: "csrf"})
	}))
	return &http.Cookie{Name: sso.DevCookieName, Value: value}
}

// TestSCIMDeprovisionEndsAccess: deactivation ends the person's access to the organization
// on the very next request (a cached identity included), removes them from every team and
// kills the personal tokens of an account the organization owns; reactivation gives the
// membership back but not the tokens. Team tokens they made keep working.
func TestSCIMDeprovisionEndsAccess(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	r, err := c.Do("POST", "/Users", `{"userName":"gil@example.com","emails":[{"value":"gil@example.com","type":"work"}]}`)
	e.must(err)
	if r.Status != 201 {
		t.Fatalf("%s", r.Body)
	}
	id := r.String("id")
	g, err := c.Do("POST", "/Groups", `{"displayName":"Deployers","members":[{"value":"`+id+`"}]}`)
	e.must(err)
	if g.Status != 201 {
		t.Fatalf("%s", g.Body)
	}
	// An admin gives the team a grant (grants of SCIM teams stay editable) and a team token.
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/deployers", Body: map[string]any{"addGrant": map[string]any{"project": "proj", "permission": "write"}}}, nil))
	var tt struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/deployers/tokens", Body: map[string]any{"name": "pipeline"}}, &tt))
	gil := cliwire.New(e.url, e.personalToken(t, "gil"))
	e.must(gil.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)) // cached now
	cookie, other := e.session(t, "gil", "acme"), e.session(t, "gil", "")
	for _, c := range []*http.Cookie{cookie, other} {
		if code, body := sessionDo(t, e, c, "GET", "/api/orgs/acme", "", "", ""); code != 200 {
			t.Fatalf("session before deprovisioning: %d %s", code, body)
		}
	}
	// Deactivate.
	r, err = c.Do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","value":{"active":false}}]}`)
	e.must(err)
	if r.Status != 200 {
		t.Fatalf("%s", r.Body)
	}
	err = gil.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)
	wantStatus(t, err, 401) // the account belongs to acme only: its personal tokens are revoked
	// And its sessions end, acme's and (an account acme owns) every other one.
	for _, c := range []*http.Cookie{cookie, other} {
		if code, body := sessionDo(t, e, c, "GET", "/api/user", "", "", ""); code != 401 {
			t.Fatalf("session after deprovisioning: %d %s, want 401", code, body)
		}
	}
	if got := e.teamMembers(t, "deployers"); len(got) != 0 {
		t.Fatalf("still in the team: %v", got)
	}
	// The team's token keeps working.
	e.must(cliwire.New(e.url, tt.TokenValue).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil))
	// Reactivate: member again, the old token stays dead.
	r, err = c.Do("PATCH", "/Users/"+id, `{"Operations":[{"op":"replace","value":{"active":true}}]}`)
	e.must(err)
	if r.Status != 200 || e.memberRole(t, "acme", "gil") != "member" {
		t.Fatalf("reactivation: %s", r.Body)
	}
	err = gil.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/members"}, nil)
	wantStatus(t, err, 401)
	evs, err := listAudit(e)
	e.must(err)
	ok := false
	for _, ev := range evs {
		if ev.Action == "scim:user:write" && ev.Details["deprovisioned"] == "true" && ev.Details["revoked_tokens"] == "1" && ev.Details["teams_left"] == "1" && ev.Details["ended_sessions"] == "2" {
			ok = true
		}
	}
	if !ok {
		t.Fatal("the deprovisioning is not audited with its facts")
	}
}

// TestSCIMDeprovisionMemberOfOtherOrg: a person who also belongs to another organization
// loses this one at once (their token is refused here on the next request) but keeps the
// other, and their ordinary personal token keeps working there.
func TestSCIMDeprovisionMemberOfOtherOrg(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	r, err := c.Do("POST", "/Users", `{"userName":"hal@example.com","emails":[{"value":"hal@example.com","type":"work"}]}`)
	e.must(err)
	id := r.String("id")
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/globex/members/hal", Body: map[string]string{"role": "member"}}, nil))
	hal := cliwire.New(e.url, e.personalToken(t, "hal"))
	e.must(hal.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil))
	acmeSession, globexSession := e.session(t, "hal", "acme"), e.session(t, "hal", "globex")
	r, err = c.Do("PATCH", "/Users/"+id, `{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`)
	e.must(err)
	if r.Status != 200 {
		t.Fatalf("%s", r.Body)
	}
	wantStatus(t, hal.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil), 404)
	e.must(hal.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/globex"}, nil))
	if code, _ := sessionDo(t, e, acmeSession, "GET", "/api/user", "", "", ""); code != 401 {
		t.Fatalf("the session acme's sign-in started survived: %d", code)
	}
	if code, body := sessionDo(t, e, globexSession, "GET", "/api/orgs/globex", "", "", ""); code != 200 {
		t.Fatalf("the globex session: %d %s", code, body)
	}
}

// TestSCIMManagedTeamReadOnly: the team and member APIs refuse to change what the identity
// provider manages, with a clear error; grants stay editable.
func TestSCIMManagedTeamReadOnly(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	r, err := c.Do("POST", "/Users", `{"userName":"ivy@example.com"}`)
	e.must(err)
	if r.Status != 201 {
		t.Fatalf("%s", r.Body)
	}
	g, err := c.Do("POST", "/Groups", `{"displayName":"SRE"}`)
	e.must(err)
	if g.Status != 201 {
		t.Fatalf("%s", g.Body)
	}
	for _, body := range []map[string]any{
		{"memberAction": "add", "member": "alice"},
		{"newDisplayName": "renamed"},
	} {
		err := e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/sre", Body: body}, nil)
		ce := wantStatus(t, err, 409)
		if !strings.Contains(ce.Message, "managed by SCIM") {
			t.Fatalf("unclear refusal: %s", ce.Message)
		}
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/teams/sre"}, nil), 409)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/members/ivy"}, nil), 409)
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/sre", Body: map[string]any{"addGrant": map[string]any{"project": "p", "permission": "read"}}}, nil))
	// A console team is not managed: it can be changed.
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "console"}}, nil))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/teams/console", Body: map[string]any{"newDisplayName": "Console"}}, nil))
}

// TestSCIMTokenOnlyForSCIM: the SCIM token authenticates on no route but the SCIM ones,
// and no other credential authenticates on those (the matrix, for the SCIM token column).
func TestSCIMTokenOnlyForSCIM(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 })
	c := e.scimClient(t, "acme")
	for _, rt := range e.srv.API.Routes() {
		if rt.Method == "HEAD" {
			continue
		}
		path := strings.NewReplacer("{org}", "acme", "{id}", "1", "{name}", "User").Replace(fill(rt.Pattern))
		r, err := (&scimwire.Client{BaseURL: e.url, Token: c.Token}).Do(rt.Method, path, nil)
		e.must(err)
		scimRoute := strings.HasPrefix(rt.Pattern, "/scim/")
		switch {
		case rt.Auth == 0: // public
		case scimRoute && (r.Status == 401 || r.Status == 403):
			t.Errorf("%s %s: the SCIM token is refused (%d)", rt.Method, rt.Pattern, r.Status)
		case !scimRoute && r.Status != 401:
			t.Errorf("%s %s: the SCIM token got HTTP %d, want 401", rt.Method, rt.Pattern, r.Status)
		}
	}
}

// TestSCIMDeprovisionedUpdateKeepsLeaseUntilExpiry: an update a person started keeps its
// lease after they are deprovisioned (the running deployment is not cut off mid-way), but
// the lease is not renewed.
func TestSCIMDeprovisionedUpdateKeepsLeaseUntilExpiry(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	r, err := c.Do("POST", "/Users", `{"userName":"kim@example.com"}`)
	e.must(err)
	if r.Status != 201 {
		t.Fatalf("%s", r.Body)
	}
	kim := cliwire.New(e.url, e.personalToken(t, "kim"))
	path := stackPath("acme", "proj", "kims")
	e.must(e.createStack(kim, "acme", "proj", "kims", nil))
	run, err := e.startRun(kim, path, "update", false)
	e.must(err)
	e.must(run.lease(http.MethodPost, "/renew_lease", map[string]int{"duration": 300}, nil))
	r, err = c.Do("PATCH", "/Users/"+r.String("id"), `{"Operations":[{"op":"replace","value":{"active":false}}]}`)
	e.must(err)
	if r.Status != 200 {
		t.Fatalf("%s", r.Body)
	}
	e.must(run.checkpoint(deployment(2, ""))) // the lease still holds
	wantStatus(t, run.lease(http.MethodPost, "/renew_lease", map[string]int{"duration": 300}, nil), 403)
	e.must(run.complete("succeeded"))
}

// TestSCIMTokenLeakRevocation: a leaked SCIM token is recognised by the leaked-token API
// (live, then revoked: deleted), after which the identity provider is refused.
func TestSCIMTokenLeakRevocation(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	var status struct {
		Tokens []struct {
			Kind, Status, Result, ID string
		} `json:"tokens"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/tokens/status", Body: map[string]any{"tokens": []string{c.Token}}}, &status))
	if len(status.Tokens) != 1 || status.Tokens[0].Kind != "scim" || status.Tokens[0].Status != "live" || status.Tokens[0].ID == "" {
		t.Fatalf("status of a live SCIM token: %+v", status)
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/tokens/revoke", Body: map[string]any{"tokens": []string{c.Token}}}, &status))
	if len(status.Tokens) != 1 || status.Tokens[0].Result != "revoked" {
		t.Fatalf("revoking a leaked SCIM token: %+v", status)
	}
	r, err := c.Do("GET", "/Users", nil)
	e.must(err)
	if r.Status != 401 {
		t.Fatalf("a revoked SCIM token: HTTP %d", r.Status)
	}
}

// TestSCIMPatchForms: the other PATCH shapes IdPs send: attributes as keys of a value
// object without path (dotted and filtered keys, the core schema URN), a PUT that
// deactivates, and count=0 (the total only).
func TestSCIMPatchForms(t *testing.T) {
	e := newEnv(t)
	c := e.scimClient(t, "acme")
	ids := map[string]string{}
	replay(t, c, []step{
		{name: "create", method: "POST", path: "/Users", status: 201, body: `{"userName":"lou@example.com","active":"True"}`, check: wantField("active", "true")},
		{name: "no-path keys", method: "PATCH", path: "/Users/{u}", status: 200, body: `{"Operations":[{"op":"Add","value":{
			"name.givenName":"Lou","name.familyName":"Reed","emails[type eq \"work\"].value":"lou@example.com",
			"urn:ietf:params:scim:schemas:core:2.0:User:displayName":"Lou Reed","externalId":"x1"}}]}`,
			check: func(t *testing.T, r *scimwire.Response) {
				n, _ := r.JSON["name"].(map[string]any)
				es, _ := r.JSON["emails"].([]any)
				if n["givenName"] != "Lou" || n["familyName"] != "Reed" || r.String("displayName") != "Lou Reed" || len(es) != 1 || r.String("externalId") != "x1" {
					t.Fatalf("%s", r.Body)
				}
			}},
		{name: "core URN object", method: "PATCH", path: "/Users/{u}", status: 200, body: `{"Operations":[{"op":"replace","value":{
			"urn:ietf:params:scim:schemas:core:2.0:User":{"displayName":"L. Reed"}}}]}`, check: wantField("displayName", "L. Reed")},
		{name: "remove name", method: "PATCH", path: "/Users/{u}", status: 200, body: `{"Operations":[{"op":"remove","path":"name.familyName"}]}`,
			check: func(t *testing.T, r *scimwire.Response) {
				if n, _ := r.JSON["name"].(map[string]any); n["familyName"] != nil {
					t.Fatalf("%s", r.Body)
				}
			}},
		{name: "PUT deactivates", method: "PUT", path: "/Users/{u}", status: 200, body: `{"userName":"lou@example.com","active":false,"emails":[{"value":"lou@example.com","primary":"true"}]}`,
			check: wantField("active", "false")},
		{name: "count 0", method: "GET", path: "/Users?count=0", status: 200, check: func(t *testing.T, r *scimwire.Response) {
			if r.String("totalResults") != "1" || len(r.Resources()) != 0 {
				t.Fatalf("%s", r.Body)
			}
		}},
	}, ids)
	if e.memberRole(t, "acme", "lou") != "" {
		t.Fatal("a PUT with active false left the person a member")
	}
}
