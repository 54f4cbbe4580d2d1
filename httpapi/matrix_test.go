package httpapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/token"
)

// The authorization matrix: testdata/authz_matrix.txt lists every route of the API and,
// for every kind of caller, what must happen:
//
//	ok   the call passes authorization (any answer but 401, 403 and 404)
//	403  denied, with a reason
//	404  hidden: the caller must not learn that the resource exists
//	401  not authenticated
//
// The world each row runs in: organization acme (default stack permission none, unless
// the column says otherwise) with stack proj/prod (tag env=production, protected by the
// rule env=production, one finished update, one running update) and stack proj/other;
// organization globex with its own admin and stack. A route missing from the table fails.

var updateMatrix = flag.Bool("update-matrix", false, "rewrite testdata/authz_matrix.txt from the server's behaviour (review the diff!)")

// subjects are the matrix columns, in file order.
var subjects = []string{
	"anon",       // no credentials
	"admin",      // acme admin (and site administrator)
	"member",     // acme member, default stack permission none, no team
	"dread",      // acme member, no team, org default stack permission read
	"dwrite",     // acme member, no team, org default stack permission write
	"tread",      // member of a team with read on tag env=production
	"treadd",     // member of a team with read+decrypt on project proj
	"twrite",     // member of a team with write on stack proj/prod
	"tadmin",     // member of a team with admin on tag env=production
	"otherteam",  // member of a team with write on proj/other only
	"billing",    // acme billing manager
	"nonmember",  // a user of globex only
	"otheradmin", // globex admin
	"teamtok",    // token of the write-on-prod team (a pipeline credential)
	"orgmember",  // acme organization token, member role
	"orgadmin",   // acme organization token, admin role
	"lease",      // the lease token of prod's running update
	"otherlease", // the lease token of proj/other's running update
	"deploy",     // the credential of a running deployment (update) of prod, acting for teamtok
	"deployp",    // the credential of a running deployment (update) of proj/other, acting for the person treadd
}

type world struct {
	e       *env
	tokens  map[string]string // subject -> token value
	prodRun *run              // running update on prod
	otherRn *run              // running update on other
	// wrote is set when building a request wrote to the store (an update or a token to
	// act on): the world is no longer the template's.
	wrote bool
	// copying serializes copies of a template world.
	copying sync.Mutex
}

func (w *world) client(subject string) *cliwire.Client {
	return cliwire.New(w.e.url, w.tokens[subject])
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newWorld builds the matrix world with the given default stack permission in acme.
func newWorld(t *testing.T, defaultPerm string) *world {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 })
	w := &world{e: e, tokens: map[string]string{"admin": e.admin.Token}}
	a := e.admin
	do := func(method, path string, body any, out any) {
		t.Helper()
		must(t, a.Do(cliwire.Call{Method: method, Path: path, Body: body}, out))
	}
	for _, u := range []struct{ name, role string }{{"member", "member"}, {"dread", "member"}, {"dwrite", "member"}, {"tread", "member"},
		{"treadd", "member"}, {"twrite", "member"}, {"tadmin", "member"}, {"otherteam", "member"}, {"billing", "billing-manager"}} {
		var out struct {
			TokenValue string `json:"tokenValue"`
		}
		do("POST", "/api/orgs/acme/users", map[string]string{"name": u.name, "role": u.role}, &out)
		w.tokens[u.name] = out.TokenValue
	}
	do("POST", "/api/orgs", map[string]string{"name": "globex"}, nil)
	for _, u := range []struct{ name, role string }{{"nonmember", "member"}, {"otheradmin", "admin"}} {
		var out struct {
			TokenValue string `json:"tokenValue"`
		}
		do("POST", "/api/orgs/globex/users", map[string]string{"name": u.name, "role": u.role}, &out)
		w.tokens[u.name] = out.TokenValue
	}
	must(t, e.createStack(a, "acme", "proj", "prod", map[string]string{"env": "production"}))
	must(t, e.createStack(a, "acme", "proj", "other", nil))
	must(t, e.createStack(a, "globex", "gproj", "gstack", nil))
	for _, tm := range []struct {
		name, member string
		grant        map[string]any
	}{
		{"t-read", "tread", map[string]any{"tag": "env=production", "permission": "read"}},
		{"t-readd", "treadd", map[string]any{"project": "proj", "permission": "read", "decrypt": true}},
		{"t-write", "twrite", map[string]any{"stack": "proj/prod", "permission": "write"}},
		{"t-admin", "tadmin", map[string]any{"tag": "env=production", "permission": "admin"}},
		{"t-other", "otherteam", map[string]any{"stack": "proj/other", "permission": "write"}},
	} {
		do("POST", "/api/orgs/acme/teams/pulumi", map[string]string{"name": tm.name}, nil)
		do("PATCH", "/api/orgs/acme/teams/"+tm.name, map[string]any{"memberAction": "add", "member": tm.member, "addGrant": tm.grant}, nil)
	}
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	do("POST", "/api/orgs/acme/teams/t-write/tokens", map[string]any{"name": "pipeline"}, &tok)
	w.tokens["teamtok"] = tok.TokenValue
	do("POST", "/api/orgs/acme/tokens", map[string]any{"name": "ci-member"}, &tok)
	w.tokens["orgmember"] = tok.TokenValue
	do("POST", "/api/orgs/acme/tokens", map[string]any{"name": "ci-admin", "admin": true}, &tok)
	w.tokens["orgadmin"] = tok.TokenValue

	// One finished update on prod (version 1), then prod becomes protected and gets a
	// running update (by the pipeline), and other gets one too.
	prod := stackPath("acme", "proj", "prod")
	r, err := e.startRun(a, prod, "update", false)
	must(t, err)
	must(t, r.checkpoint(deployment(3, "")))
	must(t, r.complete("succeeded"))
	do("POST", "/api/orgs/acme/protections", map[string]string{"tag": "env=production"}, nil)
	w.prodRun, err = e.startRun(w.client("teamtok"), prod, "update", false)
	must(t, err)
	w.otherRn, err = e.startRun(a, stackPath("acme", "proj", "other"), "update", false)
	must(t, err)
	w.tokens["lease"], w.tokens["otherlease"] = w.prodRun.Lease, w.otherRn.Lease
	if defaultPerm != "none" {
		do("PATCH", "/api/orgs/acme", map[string]any{"setDefaultStackPermission": defaultPerm}, nil)
	}
	w.addEnvironments(t)
	w.addDeploymentCreds(t)
	w.addDeployments(t)
	w.addPolicy(t)
	// Webhook hook1 of acme and of proj/prod (inactive: nothing is delivered).
	for _, base := range []string{"/api/orgs/acme/hooks", prod + "/hooks"} {
		do("POST", base, map[string]any{"name": "hook1", "payloadUrl": "https://hooks.example.com/x", "active": false}, nil)
	}
	return w
}

// matrixDownload is the download URL token of policy pack pk 1 in every world.
const matrixDownload = "matrix-download-token"

// addPolicy adds policy pack pk (version 1, published), policy group g1 (tag
// env=production, no packs), one policy result (issue 1) and a download URL of pk.
func (w *world) addPolicy(t *testing.T) {
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		p := &gatehouse.PolicyPack{OrgID: 1, Name: "pk", VersionTag: "1"}
		if err := tx.CreatePolicyPack(p); err != nil {
			return err
		}
		if err := tx.PutPolicyPackArchive(p.ID, []byte("tgz")); err != nil {
			return err
		}
		if err := tx.CompletePolicyPack(p.ID); err != nil {
			return err
		}
		if err := tx.PutPolicyGroup(&gatehouse.PolicyGroup{OrgID: 1, Name: "g1", Selectors: []gatehouse.Scope{{TagName: "env", TagValue: "production"}}}); err != nil {
			return err
		}
		st, err := tx.GetStack(1, "proj", "prod")
		if err != nil {
			return err
		}
		if err := tx.AppendPolicyResults([]gatehouse.PolicyResult{{OrgID: 1, StackID: st.ID, Kind: "violation", PackName: "pk", PolicyName: "p", Level: "mandatory"}}); err != nil {
			return err
		}
		return tx.CreatePolicyURL(&gatehouse.PolicyURL{Digest: token.Digest(matrixDownload), Purpose: "download", PackID: p.ID, Expires: time.Now().Add(24 * time.Hour)})
	}))
}

// policyUpload creates a pending pack version with an upload URL and returns the URL's token.
func (w *world) policyUpload(t *testing.T, subject string) string {
	v := fmt.Sprintf("upload-%s-%d", subject, time.Now().UnixNano())
	w.wrote = true
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		p := &gatehouse.PolicyPack{OrgID: 1, Name: "up", VersionTag: v}
		if err := tx.CreatePolicyPack(p); err != nil {
			return err
		}
		return tx.CreatePolicyURL(&gatehouse.PolicyURL{Digest: token.Digest(v), Purpose: "upload", PackID: p.ID, Expires: time.Now().Add(time.Hour)})
	}))
	return v
}

// hookDelivery queues a delivery for webhook hook1 (of prod when stack) and returns its ID.
func (w *world) hookDelivery(t *testing.T, stack bool) string {
	d := &gatehouse.WebhookDelivery{Kind: "ping", Event: "ping", Payload: []byte(`{}`)}
	w.wrote = true
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		var stackID int64
		if stack {
			st, err := tx.GetStack(1, "proj", "prod")
			if err != nil {
				return err
			}
			stackID = st.ID
		}
		h, err := tx.GetWebhook(1, stackID, "hook1")
		if err != nil {
			return err
		}
		d.WebhookID = h.ID
		return tx.EnqueueWebhookDelivery(d)
	}))
	return d.UUID
}

// addEnvironments adds environment proj/penv to acme (revision 2 with a secret, tag t1 on
// revision 1), protected by a rule naming it; team t-readd (treadd) may open every
// environment of ESC project proj, team t-write (twrite, teamtok) may write penv.
func (w *world) addEnvironments(t *testing.T) {
	a := w.e.admin
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "proj", "name": "penv"}}, nil))
	must(t, a.Do(cliwire.Call{Method: "PATCH", Path: "/api/esc/environments/acme/proj/penv", Body: []byte("values:\n  pw:\n    fn::secret: hunter2\n")}, nil))
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme/proj/penv/versions/tags", Body: map[string]any{"name": "t1", "revision": 1}}, nil))
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme/proj/penv/tags", Body: map[string]any{"name": "owner", "value": "x"}}, nil))
	// default/penv: the environment of the legacy /api/preview/environments/{org}/{env} rows.
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "default", "name": "penv"}}, nil))
	id := w.e.envID("proj", "penv")
	w.e.envGrant("t-readd", "proj", "", "open")
	w.e.envGrant("t-write", "proj", "penv", "write")
	must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		return tx.PutProtection(&gatehouse.Protection{OrgID: 1, Scope: gatehouse.Scope{EnvID: id}, CreatedBy: "matrix"})
	}))
}

// envSession opens penv (or an anonymous definition) as subject (or, when subject may
// not, as the pipeline) for the session-read rows.
func (w *world) envSession(t *testing.T, subject, what string) string {
	var out struct {
		ID string `json:"id"`
	}
	for _, s := range []string{subject, "teamtok"} {
		if s == "anon" || s == "lease" || s == "otherlease" {
			continue
		}
		if w.client(s).Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme/" + what + "?duration=1h", Body: []byte(`{"imports":[]}`)}, &out) == nil {
			return out.ID
		}
	}
	t.Fatal("cannot open penv for the session row")
	return ""
}

// call is one request of a matrix row.
type call struct {
	path string
	body any
	gzip bool
}

// requests builds each route's request. The bodies are chosen to change as little as
// possible: many are invalid on purpose (the handler's 400 proves authorization passed).
func (w *world) request(t *testing.T, method, pattern, subject string) call {
	prod := stackPath("acme", "proj", "prod")
	up := prod + "/update/" + w.prodRun.ID
	if subject == "otherlease" {
		// Another stack's lease, presented on prod's update.
		up = prod + "/update/" + w.prodRun.ID
	}
	newUpdate := func(dry bool) string {
		// Created in the store directly: the API would refuse some callers before we get there.
		u := &gatehouse.Update{ID: fmt.Sprintf("matrix-%s-%d", subject, time.Now().UnixNano()), Kind: gatehouse.KindUpdate, DryRun: dry, Author: "matrix"}
		w.wrote = true
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			st, err := tx.GetStack(1, "proj", "prod")
			if err != nil {
				return err
			}
			u.StackID = st.ID
			return tx.CreateUpdate(u)
		}))
		return u.ID
	}
	ownToken := func(kind gatehouse.TokenKind) string {
		// A token in the route's scope to revoke or rotate.
		v, tk, err := app.NewToken(kind)
		must(t, err)
		_ = v
		tk.Name = "victim-" + subject
		w.wrote = true
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			switch kind {
			case gatehouse.TokenPersonal:
				u, err := tx.GetUserByName(map[bool]string{true: subject, false: "alice"}[w.tokens[subject] != "" && subject != "admin" && isUser(subject)])
				if err != nil {
					return err
				}
				tk.UserID = u.ID
			case gatehouse.TokenTeam:
				tm, err := tx.GetTeamByName(1, "t-write")
				if err != nil {
					return err
				}
				tk.OrgID, tk.TeamID, tk.Pipeline = 1, tm.ID, true
			case gatehouse.TokenOrg:
				tk.OrgID, tk.Role, tk.Pipeline = 1, gatehouse.RoleMember, true
			}
			return tx.CreateToken(tk)
		}))
		return tk.ID
	}
	invitation := func() string {
		// An invitation to acme for the subject's user name (alice for machines) to answer or revoke.
		name := map[bool]string{true: subject, false: "alice"}[w.tokens[subject] != "" && subject != "admin" && isUser(subject)]
		inv := &gatehouse.Invitation{OrgID: 1, UserName: name, Role: gatehouse.RoleMember, InvitedBy: "matrix", Expires: time.Now().Add(time.Hour)}
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			u, err := tx.GetUserByName(name)
			if err != nil {
				return err
			}
			inv.UserID = u.ID
			for _, old := range must1(tx.ListInvitations(gatehouse.InvitationFilter{OrgID: 1, UserID: u.ID, Pending: true})) {
				if _, err := tx.ResolveInvitation(old.ID, gatehouse.InvitationRevoked); err != nil {
					return err
				}
			}
			return tx.CreateInvitation(inv)
		}))
		return inv.ID
	}
	switch method + " " + pattern {
	case "POST /api/orgs/{org}/invitations":
		return call{path: "/api/orgs/acme/invitations", body: map[string]string{"userName": "inv-" + subject}}
	case "DELETE /api/orgs/{org}/invitations/{invitationID}":
		return call{path: "/api/orgs/acme/invitations/" + invitation()}
	case "POST /api/user/invitations/{invitationID}/accept", "POST /api/user/invitations/{invitationID}/decline":
		return call{path: strings.Replace(pattern, "{invitationID}", invitation(), 1)}
	case "POST /api/esc/environments/{org}":
		return call{path: "/api/esc/environments/acme", body: map[string]string{"project": "proj", "name": "new-" + subject}}
	case "POST /api/esc/environments/{org}/yaml/check":
		return call{path: "/api/esc/environments/acme/yaml/check", body: []byte("values: {a: 1}\n")}
	case "PATCH /api/esc/environments/{org}/{project}/{env}":
		return call{path: fill(pattern), body: []byte("values: {a: 1}\n")}
	case "POST /api/esc/environments/{org}/{project}/{env}/check":
		return call{path: fill(pattern)}
	case "POST /api/esc/environments/{org}/{project}/{env}/open", "POST /api/esc/environments/{org}/{project}/{env}/versions/{version}/open":
		return call{path: fill(pattern) + "?duration=1h"}
	case "GET /api/esc/environments/{org}/{project}/{env}/open/{session}":
		return call{path: strings.Replace(fill(pattern), "{session}", w.envSession(t, subject, "proj/penv/open"), 1)}
	case "POST /api/esc/environments/{org}/yaml/open":
		return call{path: fill(pattern) + "?duration=1h", body: []byte(`{"imports":[]}`)}
	case "GET /api/esc/environments/{org}/yaml/open/{session}":
		return call{path: strings.Replace(fill(pattern), "{session}", w.envSession(t, subject, "yaml/open"), 1)}
	case "POST /api/esc/environments/{org}/{project}/{env}/versions/tags":
		return call{path: fill(pattern), body: map[string]string{"name": "tag-" + subject}}
	case "PATCH /api/esc/environments/{org}/{project}/{env}/versions/tags/{tag}":
		return call{path: fill(pattern), body: map[string]int{"revision": 2}}
	case "POST /api/esc/environments/{org}/{project}/{env}/tags":
		return call{path: fill(pattern), body: map[string]string{"name": "t-" + subject, "value": "v"}}
	case "PATCH /api/esc/environments/{org}/{project}/{env}/tags/{name}":
		return call{path: fill(pattern), body: map[string]any{"currentTag": map[string]string{"value": "x"}, "newTag": map[string]string{"value": "x"}}}
	case "POST /api/stacks/{org}/{project}":
		return call{path: "/api/stacks/acme/proj", body: apitype.CreateStackRequest{StackName: "new-" + subject}}
	case "HEAD /api/stacks/{org}/{project}":
		return call{path: "/api/stacks/acme/proj"}
	case "DELETE /api/stacks/{org}/{project}/{stack}":
		return call{path: prod + "?force=true"}
	case "POST /api/stacks/{org}/{project}/{stack}/rename":
		return call{path: prod + "/rename", body: apitype.StackRenameRequest{NewName: "renamed-" + subject, NewProject: "proj"}}
	case "PATCH /api/stacks/{org}/{project}/{stack}/tags":
		return call{path: prod + "/tags", body: map[string]string{"env": "production", "touched": subject}}
	case "GET /api/stacks/{org}/{project}/{stack}/export/{version}":
		return call{path: prod + "/export/1"}
	case "POST /api/stacks/{org}/{project}/{stack}/import":
		return call{path: prod + "/import", body: map[string]any{"version": 0}, gzip: true}
	case "POST /api/stacks/{org}/{project}/{stack}/update", "POST /api/stacks/{org}/{project}/{stack}/refresh", "POST /api/stacks/{org}/{project}/{stack}/destroy":
		return call{path: prod + strings.TrimPrefix(pattern, "/api/stacks/{org}/{project}/{stack}"), body: apitype.UpdateProgramRequest{Name: "proj", Options: apitype.UpdateOptions{DryRun: false}}}
	case "POST /api/stacks/{org}/{project}/{stack}/preview":
		return call{path: prod + "/preview", body: apitype.UpdateProgramRequest{Name: "proj", Options: apitype.UpdateOptions{DryRun: true}}}
	case "POST /api/stacks/{org}/{project}/{stack}/update/{updateID}":
		return call{path: prod + "/update/" + newUpdate(false), body: apitype.StartUpdateRequest{}}
	case "POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/cancel":
		return call{path: up + "/cancel"}
	case "POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/renew_lease":
		return call{path: up + "/renew_lease", body: apitype.RenewUpdateLeaseRequest{Duration: 300}}
	case "PATCH /api/stacks/{org}/{project}/{stack}/update/{updateID}/checkpoint":
		return call{path: up + "/checkpoint", body: apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: deployment(3, "")}, gzip: true}
	case "PATCH /api/stacks/{org}/{project}/{stack}/update/{updateID}/checkpointverbatim":
		return call{path: up + "/checkpointverbatim", body: map[string]any{"version": 3, "sequenceNumber": 1, "untypedDeployment": map[string]any{"version": 3, "deployment": json.RawMessage(deployment(3, ""))}}, gzip: true}
	case "PATCH /api/stacks/{org}/{project}/{stack}/update/{updateID}/checkpointdelta":
		return call{path: up + "/checkpointdelta", body: map[string]any{"version": 3, "sequenceNumber": 2, "checkpointHash": "00", "deploymentDelta": []any{}}, gzip: true}
	case "PATCH /api/stacks/{org}/{project}/{stack}/update/{updateID}/journalentries":
		return call{path: up + "/journalentries", body: map[string]any{"entries": []any{}}, gzip: true}
	case "POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/events/batch":
		return call{path: up + "/events/batch", body: map[string]any{"events": []any{}}, gzip: true}
	case "POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/complete":
		return call{path: up + "/complete", body: apitype.CompleteUpdateRequest{Status: "succeeded"}}
	case "GET /api/stacks/{org}/{project}/{stack}/update/{updateID}", "GET /api/stacks/{org}/{project}/{stack}/update/{updateID}/events":
		return call{path: up + strings.TrimPrefix(pattern, "/api/stacks/{org}/{project}/{stack}/update/{updateID}")}
	case "POST /api/stacks/{org}/{project}/{stack}/encrypt", "POST /api/stacks/{org}/{project}/{stack}/decrypt":
		return call{path: prod + strings.TrimPrefix(pattern, "/api/stacks/{org}/{project}/{stack}"), body: map[string]any{"plaintext": "aGk=", "ciphertext": "AAAA"}}
	case "POST /api/stacks/{org}/{project}/{stack}/batch-encrypt":
		return call{path: prod + "/batch-encrypt", body: map[string]any{"plaintexts": []string{"aGk="}}, gzip: true}
	case "POST /api/stacks/{org}/{project}/{stack}/batch-decrypt":
		return call{path: prod + "/batch-decrypt", body: map[string]any{"ciphertexts": []string{"AAAA"}}, gzip: true}
	case "POST /api/stacks/{org}/{project}/{stack}/decrypt/log-decryption", "POST /api/stacks/{org}/{project}/{stack}/decrypt/log-batch-decryption":
		return call{path: prod + strings.TrimPrefix(pattern, "/api/stacks/{org}/{project}/{stack}"), body: map[string]any{"commandName": "test"}}
	case "GET /api/stacks/{org}/{project}/{stack}/config", "DELETE /api/stacks/{org}/{project}/{stack}/config":
		// A remote configuration to read or delete (put in the store: callers the API
		// refuses must still find one).
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			st, err := tx.GetStack(1, "proj", "prod")
			if err != nil {
				return err
			}
			return tx.PutStackConfig(st.ID, &gatehouse.StackConfig{Environment: "proj/prod"})
		}))
		return call{path: prod + "/config"}
	case "PUT /api/stacks/{org}/{project}/{stack}/config":
		return call{path: prod + "/config", body: apitype.StackConfig{Environment: "proj/" + subject}}
	case "POST /api/stacks/{org}/{project}/{stack}/tags":
		return call{path: prod + "/tags", body: map[string]string{"name": "new-" + subject, "value": "v"}}
	case "PATCH /api/stacks/{org}/{project}/{stack}/tags/{tagName}", "DELETE /api/stacks/{org}/{project}/{stack}/tags/{tagName}":
		// A tag that selects no grant or protection, there for every caller.
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			st, err := tx.GetStack(1, "proj", "prod")
			if err != nil {
				return err
			}
			st.Tags["victim"] = "v"
			return tx.SetStackTags(st.ID, st.Tags)
		}))
		return call{path: prod + "/tags/victim", body: map[string]string{"name": "victim", "value": subject}}
	case "POST /api/orgs":
		return call{path: "/api/orgs", body: map[string]string{"name": "org-" + subject}}
	case "PATCH /api/orgs/{org}":
		return call{path: "/api/orgs/acme", body: map[string]any{}}
	case "POST /api/orgs/{org}/members/{user}":
		return call{path: "/api/orgs/acme/members/nonmember", body: map[string]string{"role": "member"}}
	case "PATCH /api/orgs/{org}/members/{user}":
		return call{path: "/api/orgs/acme/members/member", body: map[string]string{"role": "member"}}
	case "DELETE /api/orgs/{org}/members/{user}":
		return call{path: "/api/orgs/acme/members/otherteam"}
	case "POST /api/admin/users/{user}/disable":
		return call{path: "/api/admin/users/nonmember/disable"}
	case "DELETE /api/admin/ratelimits/{source...}":
		return call{path: "/api/admin/ratelimits/ip:192.0.2.1"}
	case "POST /api/orgs/{org}/users":
		return call{path: "/api/orgs/acme/users", body: map[string]string{"name": "user-" + subject}}
	case "POST /api/orgs/{org}/teams/pulumi":
		return call{path: "/api/orgs/acme/teams/pulumi", body: map[string]string{"name": "team-" + subject}}
	case "PATCH /api/orgs/{org}/teams/{team}":
		return call{path: "/api/orgs/acme/teams/t-read", body: map[string]any{}}
	case "POST /api/orgs/{org}/protections":
		return call{path: "/api/orgs/acme/protections", body: map[string]string{"tag": "env=x" + subject}}
	case "DELETE /api/orgs/{org}/protections":
		return call{path: "/api/orgs/acme/protections", body: map[string]string{"tag": "env=production"}}
	case "POST /api/user/tokens", "POST /api/orgs/{org}/tokens", "POST /api/orgs/{org}/teams/{team}/tokens":
		return call{path: fill(pattern), body: map[string]any{"name": "tok-" + subject}}
	case "DELETE /api/user/tokens/{tokenID}":
		return call{path: "/api/user/tokens/" + ownToken(gatehouse.TokenPersonal)}
	case "POST /api/user/tokens/{tokenID}/rotate":
		return call{path: "/api/user/tokens/" + ownToken(gatehouse.TokenPersonal) + "/rotate", body: map[string]any{}}
	case "DELETE /api/orgs/{org}/tokens/{tokenID}":
		return call{path: "/api/orgs/acme/tokens/" + ownToken(gatehouse.TokenOrg)}
	case "POST /api/orgs/{org}/tokens/{tokenID}/rotate":
		return call{path: "/api/orgs/acme/tokens/" + ownToken(gatehouse.TokenOrg) + "/rotate", body: map[string]any{}}
	case "GET /api/orgs/{org}/saml", "PATCH /api/orgs/{org}/saml", "DELETE /api/orgs/{org}/saml":
		// A SAML configuration to read, change or delete (put in the store: callers the
		// API refuses must still find one; putting it again changes nothing).
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			return tx.PutSAMLConfig(&gatehouse.SAMLConfig{OrgID: 1, IDPMetadata: "<EntityDescriptor/>", EntityID: "https://idp.example.com"})
		}))
		return call{path: "/api/orgs/acme/saml", body: map[string]any{"allowIdpInitiated": true}}
	case "POST /api/orgs/{org}/hooks", "POST /api/stacks/{org}/{project}/{stack}/hooks":
		return call{path: fill(pattern), body: map[string]any{"name": "h-" + subject, "payloadUrl": "https://hooks.example.com/" + subject, "active": false}}
	case "PATCH /api/orgs/{org}/hooks/{hookName}", "PATCH /api/stacks/{org}/{project}/{stack}/hooks/{hookName}":
		return call{path: fill(pattern), body: map[string]any{"payloadUrl": "https://hooks.example.com/p", "active": false}}
	case "POST /api/orgs/{org}/hooks/{hookName}/deliveries/{event}/redeliver", "POST /api/stacks/{org}/{project}/{stack}/hooks/{hookName}/deliveries/{event}/redeliver":
		return call{path: strings.Replace(fill(pattern), "{event}", w.hookDelivery(t, strings.Contains(pattern, "{stack}")), 1), body: map[string]any{}}
	case "GET /api/orgs/{org}/tokens/{tokenID}/usage":
		return call{path: "/api/orgs/acme/tokens/" + ownToken(gatehouse.TokenOrg) + "/usage"}
	case "GET /api/user/tokens/{tokenID}/usage":
		return call{path: "/api/user/tokens/" + ownToken(gatehouse.TokenPersonal) + "/usage"}
	case "PUT /api/orgs/{org}/allowlist":
		return call{path: fill(pattern), body: map[string]any{"entries": []string{}}}
	case "PUT /api/orgs/{org}/tokens/{tokenID}/allowlist":
		return call{path: "/api/orgs/acme/tokens/" + ownToken(gatehouse.TokenOrg) + "/allowlist", body: map[string]any{"entries": []string{}}}
	case "PUT /api/orgs/{org}/ranges/{name}":
		return call{path: "/api/orgs/acme/ranges/r-" + subject, body: map[string]any{"cidrs": []string{"10.0.0.0/8"}}}
	case "DELETE /api/orgs/{org}/ranges/{name}":
		w.wrote = true
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			return tx.PutAddressRange(&gatehouse.AddressRange{OrgID: 1, Name: "d-" + subject, CIDRs: []string{"10.0.0.0/8"}})
		}))
		return call{path: "/api/orgs/acme/ranges/d-" + subject}
	case "GET /{$}":
		return call{path: "/"}
	case "POST /console/tokens/{tokenID}/rotate", "POST /console/tokens/{tokenID}/revoke":
		return call{path: strings.Replace(pattern, "{tokenID}", ownToken(gatehouse.TokenPersonal), 1)}
	case "POST /console/orgs/{org}/tokens/{tokenID}/rotate", "POST /console/orgs/{org}/tokens/{tokenID}/revoke":
		return call{path: strings.Replace(fill(pattern), "{tokenID}", ownToken(gatehouse.TokenOrg), 1)}
	case "POST /console/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate", "POST /console/orgs/{org}/teams/{team}/tokens/{tokenID}/revoke":
		return call{path: strings.Replace(strings.Replace(pattern, "{org}/teams/{team}", "acme/teams/t-write", 1), "{tokenID}", ownToken(gatehouse.TokenTeam), 1)}
	case "DELETE /api/orgs/{org}/deployments/webhooks/{provider}":
		// A secret to delete, there for every caller.
		w.wrote = true
		must(t, w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
			return tx.PutDeployVCSSecret(&gatehouse.DeployVCSSecret{OrgID: 1, Provider: "github", Sealed: []byte("sealed"), CreatedBy: "matrix"})
		}))
		return call{path: fill(pattern)}
	case "PUT /api/orgs/{org}/deployments/webhooks/{provider}":
		return call{path: fill(pattern), body: map[string]any{"generate": true}}
	case "DELETE /api/orgs/{org}/agent-pools/{poolID}":
		return call{path: "/api/orgs/acme/agent-pools/" + w.pool(t)}
	case "GET /api/stacks/{org}/{project}/{stack}/deployments/{deploymentID}/{what}":
		return call{path: prod + "/deployments/" + matrixDeploymentID + "/logs"}
	case "POST /api/stacks/{org}/{project}/{stack}/deployments":
		return call{path: prod + "/deployments", body: map[string]any{"operation": "update"}}
	case "PUT /api/policypacks/archives/{token}":
		return call{path: "/api/policypacks/archives/" + w.policyUpload(t, subject), body: []byte("tgz")}
	case "GET /api/policypacks/archives/{token}":
		return call{path: "/api/policypacks/archives/" + matrixDownload}
	case "POST /api/orgs/{org}/policypacks":
		return call{path: fill(pattern), body: apitype.CreatePolicyPackRequest{Name: "pk-" + subject, VersionTag: "1.0.0"}}
	case "POST /api/orgs/{org}/policygroups":
		return call{path: fill(pattern), body: apitype.CreatePolicyGroupRequest{Name: "g-" + subject}}
	case "PUT /api/orgs/{org}/policy/providers":
		return call{path: fill(pattern), body: map[string]any{"enforced": false}}
	case "POST /api/orgs/{org}/policyresults/issues":
		return call{path: fill(pattern), body: apitype.ListPolicyIssuesRequest{EndRow: 10}}
	case "DELETE /api/orgs/{org}/teams/{team}/tokens/{tokenID}":
		return call{path: "/api/orgs/acme/teams/t-write/tokens/" + ownToken(gatehouse.TokenTeam)}
	case "POST /api/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate":
		return call{path: "/api/orgs/acme/teams/t-write/tokens/" + ownToken(gatehouse.TokenTeam) + "/rotate", body: map[string]any{}}
	}
	if method == "GET" || method == "DELETE" || method == "HEAD" {
		return call{path: fill(pattern)}
	}
	return call{path: fill(pattern), body: map[string]any{}}
}

func must1[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func isUser(s string) bool {
	switch s {
	case "anon", "teamtok", "orgmember", "orgadmin", "lease", "otherlease", "deploy", "deployp":
		return false
	}
	return true
}

// fill substitutes the world's names into a route pattern.
func fill(p string) string {
	r := strings.NewReplacer("{org}", "acme", "{project}", "proj", "{stack}", "prod", "{team}", "t-read", "{user}", "member", "{version}", "1", "{issuerId}", "none", "{policyId}", "none", "{env}", "penv", "{tag}", "t1", "{sub}", "decrypt", "{what}", "decrypt", "{name}", "owner", "{hookName}", "hook1", "{seq}", "1", "{file}", "style.css", "{orgName}", "acme", "{provider}", "github", "{deploymentID}", matrixDeploymentID, "{pack}", "pk", "{group}", "g1", "{issueID}", "1")
	return r.Replace(p)
}

// destructive routes get a fresh world for every caller the table allows.
var destructive = map[string]bool{
	"DELETE /api/stacks/{org}/{project}/{stack}":                                 true,
	"POST /api/stacks/{org}/{project}/{stack}/rename":                            true,
	"POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/cancel":          true,
	"POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/complete":        true,
	"DELETE /api/orgs/{org}/members/{user}":                                      true,
	"POST /api/orgs/{org}/members/{user}":                                        true, // the first add would make the others "already a member"
	"DELETE /api/orgs/{org}/teams/{team}":                                        true,
	"DELETE /api/orgs/{org}/protections":                                         true,
	"PATCH /api/orgs/{org}/members/{user}":                                       true,
	"POST /api/admin/users/{user}/disable":                                       true,
	"POST /api/stacks/{org}/{project}/{stack}/update/{updateID}/checkpointdelta": true,
	"DELETE /api/esc/environments/{org}/{project}/{env}":                         true,
	"DELETE /api/esc/environments/{org}/{project}/{env}/versions/tags/{tag}":     true,
	"DELETE /api/esc/environments/{org}/{project}/{env}/tags/{name}":             true,
	"DELETE /api/orgs/{org}/hooks/{hookName}":                                    true,
	"DELETE /api/stacks/{org}/{project}/{stack}/hooks/{hookName}":                true,
	"DELETE /api/stacks/{org}/{project}/{stack}/deployments/settings":            true,
	"DELETE /api/orgs/{org}/policypacks/{pack}":                                  true,
	"DELETE /api/orgs/{org}/policypacks/{pack}/versions/{version}":               true,
	"DELETE /api/orgs/{org}/policygroups/{group}":                                true,
}

func outcome(err error) string {
	switch cliwire.Status(err) {
	case 0:
		return "ok"
	case 401, 403, 404:
		return fmt.Sprint(cliwire.Status(err))
	case -1:
		return "error:" + err.Error()
	}
	return "ok" // any other answer came from the handler, past authorization
}

func (w *world) do(t *testing.T, method, pattern, subject string) string {
	c := w.request(t, method, pattern, subject)
	cl := w.client(subject)
	req := cliwire.Call{Method: method, Path: c.path, Body: c.body, Gzip: c.gzip}
	switch subject {
	case "anon":
		req.NoAuth = true
	case "lease", "otherlease":
		req.LeaseToken = w.tokens[subject]
	}
	return outcome(cl.Do(req, nil))
}

type matrixRow struct {
	method, pattern string
	want            map[string]string
}

const matrixFile = "testdata/authz_matrix.txt"

func readMatrix(t *testing.T) map[string]matrixRow {
	rows := map[string]matrixRow{}
	f, err := os.Open(matrixFile)
	if err != nil {
		if *updateMatrix {
			return rows
		}
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2+len(subjects) {
			if *updateMatrix {
				continue // a column was added: the row is written anew
			}
			t.Fatalf("%s: %q has %d columns, want %d", matrixFile, line, len(fields), 2+len(subjects))
		}
		r := matrixRow{method: fields[0], pattern: fields[1], want: map[string]string{}}
		for i, s := range subjects {
			r.want[s] = fields[2+i]
		}
		rows[r.method+" "+r.pattern] = r
	}
	return rows
}

func TestAuthorizationMatrix(t *testing.T) {
	if testing.Short() {
		t.Skip("the authorization matrix builds many worlds; run without -short")
	}
	// One template world per default permission; every world used is a copy of one. The
	// "read" and "write" templates are copies of the "none" one with the setting changed
	// (newWorld changes it last, so they are the same worlds).
	base := newWorld(t, "none")
	rows := readMatrix(t)
	var routes []string
	for _, rt := range base.e.srv.API.Routes() {
		key := rt.Method + " " + rt.Pattern
		routes = append(routes, key)
		if _, ok := rows[key]; !ok && !*updateMatrix {
			t.Errorf("route %s is missing from %s: every route must be in the authorization matrix", key, matrixFile)
		}
	}
	if t.Failed() {
		return
	}
	var mu sync.Mutex // guards got, copies and templates
	got := map[string]map[string]string{}
	copies := 0
	copyOf := func(t *testing.T, tpl *world) *world {
		mu.Lock()
		copies++
		mu.Unlock()
		tpl.copying.Lock() // clone checkpoints the template's database and copies its files
		defer tpl.copying.Unlock()
		w := &world{e: tpl.e.clone(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 }), tokens: tpl.tokens}
		prodRun, otherRn := *tpl.prodRun, *tpl.otherRn
		prodRun.e, prodRun.c, otherRn.e, otherRn.c = w.e, w.e.admin, w.e, w.e.admin
		w.prodRun, w.otherRn = &prodRun, &otherRn
		return w
	}
	templates := map[string]*world{"none": base}
	for _, perm := range []string{"read", "write"} {
		tpl := copyOf(t, base)
		must(t, tpl.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme", Body: map[string]any{"setDefaultStackPermission": perm}}, nil))
		templates[perm] = tpl
	}
	fresh := func(t *testing.T, defaultPerm string) *world { return copyOf(t, templates[defaultPerm]) }
	defaultOf := map[string]string{"dread": "read", "dwrite": "write"}
	// runRoutes runs every caller of the routes given. Shared worlds serve every call that
	// must not (or cannot) change anything. A world is replaced by a fresh copy once a
	// route's calls may have changed it: a call of a changing route passed authorization,
	// or building a request wrote to the store. Each world copy runs a server and a
	// database with background work: closed when replaced.
	runRoutes := func(t *testing.T, routes []string) {
		worlds := map[string]*world{}
		dirty := map[string]bool{}
		worldFor := func(defaultPerm string) *world {
			if w := worlds[defaultPerm]; w != nil && !dirty[defaultPerm] {
				return w
			}
			if w := worlds[defaultPerm]; w != nil {
				w.e.close()
			}
			worlds[defaultPerm], dirty[defaultPerm] = fresh(t, defaultPerm), false
			return worlds[defaultPerm]
		}
		for _, key := range routes {
			method, pattern, _ := strings.Cut(key, " ")
			changes := method != "GET" && method != "HEAD"
			res := map[string]string{}
			// Run the callers expected to be refused first (they must change nothing), then
			// the allowed ones.
			order := append([]string{}, subjects...)
			if row, ok := rows[key]; ok {
				sort.SliceStable(order, func(i, j int) bool { return row.want[order[i]] != "ok" && row.want[order[j]] == "ok" })
			}
			touched := map[string]bool{}
			for _, s := range order {
				perm := defaultOf[s]
				if perm == "" {
					perm = "none"
				}
				if destructive[key] && (rows[key].want[s] == "ok" || *updateMatrix) {
					w := fresh(t, perm) // a fresh world: this call may change it
					res[s] = w.do(t, method, pattern, s)
					w.e.close()
					continue
				}
				w := worldFor(perm)
				res[s] = w.do(t, method, pattern, s)
				if w.wrote || changes && res[s] == "ok" {
					touched[perm] = true
				}
			}
			// Worlds are shared across routes; rebuild (before the next use) those whose
			// calls in this route may have changed them.
			for perm := range touched {
				dirty[perm] = true
			}
			mu.Lock()
			got[key] = res
			mu.Unlock()
		}
		for _, w := range worlds {
			w.e.close()
		}
	}
	// Every route starts on worlds equal to the templates, so the routes split into lanes
	// with worlds of their own that run in parallel.
	lanes := min(4, runtime.GOMAXPROCS(0))
	t.Run("lanes", func(t *testing.T) {
		for l := range lanes {
			var mine []string
			for i := l; i < len(routes); i += lanes {
				mine = append(mine, routes[i])
			}
			t.Run(fmt.Sprintf("%d", l), func(t *testing.T) {
				t.Parallel()
				runRoutes(t, mine)
			})
		}
	})
	if t.Failed() {
		return
	}
	t.Logf("%d routes x %d callers in %d world copies, %d lanes", len(routes), len(subjects), copies, lanes)
	if *updateMatrix {
		writeMatrix(t, routes, got)
		return
	}
	for _, key := range routes {
		for _, s := range subjects {
			if want, have := rows[key].want[s], got[key][s]; want != have {
				t.Errorf("%s as %s: want %s, got %s", key, s, want, have)
			}
		}
	}
}

func writeMatrix(t *testing.T, routes []string, got map[string]map[string]string) {
	var b strings.Builder
	b.WriteString("# Authorization matrix: every route x every kind of caller. See matrix_test.go for the world.\n")
	b.WriteString("# ok = passes authorization; 401 unauthenticated; 403 denied; 404 hidden (or absent).\n")
	b.WriteString(fmt.Sprintf("# %-7s %-70s", "method", "route"))
	for _, s := range subjects {
		b.WriteString(fmt.Sprintf(" %-10s", s))
	}
	b.WriteString("\n")
	for _, key := range routes {
		method, pattern, _ := strings.Cut(key, " ")
		b.WriteString(fmt.Sprintf("%-9s %-70s", method, pattern))
		for _, s := range subjects {
			b.WriteString(fmt.Sprintf(" %-10s", got[key][s]))
		}
		b.WriteString("\n")
	}
	must(t, os.MkdirAll("testdata", 0o755))
	must(t, os.WriteFile(matrixFile, []byte(b.String()), 0o644))
}

var (
	_ = http.MethodGet
	_ = token.Parse
)
