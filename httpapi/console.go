package httpapi

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/console"
)

// The web console's page handlers. Every page is a route of the one route table
// (routes.go) with the authz action of the API it shows or changes, so it is authenticated,
// resolved, authorized and audited by the same request path as the API. Reads use the same
// store calls and decisions as the API's listings; changes call the API's own handlers
// (createTeam, updateTeam, createToken, ...) with the form turned into the API's JSON body,
// so they make the same checks and the same audit events. Parts of a page that need another
// action are shown only when authz.Decide allows that action too (Request.may).

// consolePage is a handler result rendered as an HTML page.
type consolePage struct {
	name    string
	page    console.Page
	noStore bool // the page carries a new token's value
}

// consoleRedirect is a handler result answered with 303 See Other (after a change).
type consoleRedirect string

// consoleHeaders are the headers of every console answer.
func consoleHeaders(h http.Header) {
	console.SecureHeaders(h)
	// Pages show an organization's access facts: never cached, never shared.
	h.Set("Cache-Control", "no-store")
}

func (rq *Request) writePage(p *consolePage) {
	w := rq.w
	if p.page.CSRF == "" {
		p.page.CSRF = rq.csrfToken()
	}
	b, err := console.Render(p.name, &p.page)
	if err != nil {
		rq.s.log.Error("console: cannot render a page", "page", p.name, "request_id", rq.ID, "err", err)
		rq.status = http.StatusInternalServerError
		b = []byte("internal error")
	}
	consoleHeaders(w.Header())
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(rq.status)
	_, _ = w.Write(b)
}

// consoleError answers a console route's error with a page: the sign-in page for a
// missing or invalid credential, otherwise the error's status and message (the same
// message the API gives).
func (s *Server) consoleError(rq *Request, err error) {
	rq.status = statusOf(err)
	if rq.status == http.StatusUnauthorized {
		p := &consolePage{name: "signin", page: console.Page{Title: "Sign in", Data: s.signInData(rq, rq.URL.RequestURI())}}
		if rq.Method == http.MethodPost || rq.Header.Get("Authorization") != "" || s.sso.HasCookie(rq.Request) {
			p.page.Error = gatehouse.ErrorMessage(err) // a refused token, an ended session
		}
		rq.writePage(p)
		return
	}
	title := http.StatusText(rq.status)
	msg := gatehouse.ErrorMessage(err)
	if rq.status >= 500 {
		msg = "Something went wrong on the server (request " + rq.ID + ")."
	}
	p := &consolePage{name: "error", page: console.Page{Title: title, Data: struct{ Message string }{msg}}}
	if rq.Subject != nil && rq.Subject.Kind != authz.Anonymous {
		p.page.User = rq.Subject.Name()
	}
	rq.writePage(p)
}

// may reports whether the caller may perform action on the request's organization (a
// silent authz.Decide: it decides what a page shows, and records nothing).
func (rq *Request) may(action authz.Action) bool {
	return authz.Decide(rq.Subject, action, authz.Resource{Org: rq.Org}, rq.facts).Allow
}

// flashes are the messages a change's redirect may ask a page to show (by code, so that a
// link cannot make a page say anything else).
var flashes = map[string]string{
	"team-created":   "Team created.",
	"team-updated":   "Team updated.",
	"team-deleted":   "Team deleted; its tokens were revoked.",
	"member-updated": "Member's role changed.",
	"member-removed": "Member removed from the organization.",
	"token-revoked":  "Token revoked.",
}

// page builds a page of the request's organization (or of none).
func (rq *Request) page(name, title, nav string, data any) *consolePage {
	p := &consolePage{name: name, page: console.Page{Title: title, Nav: nav, Data: data, Flash: flashes[rq.URL.Query().Get("done")]}}
	if rq.Subject != nil && rq.Subject.Kind != authz.Anonymous {
		p.page.User = rq.Subject.Name()
	}
	if rq.Org != nil {
		p.page.Org = rq.Org.Name
		p.page.May = map[string]bool{
			"access":      rq.may(authz.OrgMemberRead),
			"members":     rq.may(authz.OrgMemberRead),
			"memberWrite": rq.may(authz.OrgMemberWrite),
			"teams":       rq.may(authz.OrgTeamRead),
			"teamWrite":   rq.may(authz.OrgTeamWrite),
			"tokens":      rq.may(authz.OrgTokenRead),
			"tokenWrite":  rq.may(authz.OrgTokenWrite),
			"audit":       rq.may(authz.OrgAuditRead),
		}
	}
	return p
}

// form parses the request's form (bounded like every small body).
func (rq *Request) form() error {
	rq.Body = http.MaxBytesReader(rq.w, rq.Body, rq.route.MaxBody)
	if err := rq.ParseForm(); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid form: %v", err)
	}
	return nil
}

// callAPI runs an API handler with body as its JSON request body: the console's changes
// go through exactly the code (checks, store calls, audit details) of the API's.
func (rq *Request) callAPI(h func(*Request) (any, error), body any) (any, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	rq.Body = io.NopCloser(bytes.NewReader(b))
	rq.ContentLength = int64(len(b))
	rq.Header.Del("Content-Encoding")
	return h(rq)
}

// confirmed reports whether a destructive form was confirmed; when not, it returns the
// confirmation page that posts the same form again with confirm=yes.
func (rq *Request) confirmed(question, consequence, button, back string) (*consolePage, bool) {
	if rq.PostForm.Get("confirm") == "yes" {
		return nil, true
	}
	// Nothing changes until the answer: no audit event for the question.
	rq.audited = true
	type field struct{ Name, Value string }
	var fields []field
	keys := make([]string, 0, len(rq.PostForm))
	for k := range rq.PostForm {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if k == console.CSRFField || k == "confirm" {
			continue
		}
		for _, v := range rq.PostForm[k] {
			fields = append(fields, field{k, v})
		}
	}
	p := rq.page("confirm", question, "", struct {
		Question, Consequence, Button, Action, Back string
		Fields                                      []field
	}{question, consequence, button, rq.URL.Path, back, fields})
	return p, false
}

func orgPath(org string, parts ...string) string {
	p := "/console/orgs/" + url.PathEscape(org)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// --- home, redirects, assets ---

func (s *Server) consoleRoot(rq *Request) (any, error) { return consoleRedirect("/console"), nil }

func (s *Server) consoleStatic(rq *Request) (any, error) {
	if !console.Static(rq.w, rq.Request, rq.PathValue("file")) {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "Not found")
	}
	rq.w = discardResponse{h: http.Header{}}
	return headOnly{}, nil
}

func (s *Server) consoleHome(rq *Request) (any, error) {
	type orgRole struct{ Name, Role string }
	var orgs []orgRole
	if rq.Subject.User != nil {
		err := rq.View(func(tx gatehouse.Tx) error {
			oms, err := tx.ListUserOrgs(rq.Subject.User.ID)
			if err != nil {
				return err
			}
			for _, om := range oms {
				if !rq.Subject.ActsIn(om.Org.ID) {
					continue
				}
				if ok, err := s.orgListable(rq, tx, &om.Org); err != nil {
					return err
				} else if ok {
					orgs = append(orgs, orgRole{om.Org.Name, string(om.Role)})
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	} else if rq.Subject.Token != nil && rq.Subject.Token.OrgID != 0 {
		err := rq.View(func(tx gatehouse.Tx) error {
			o, err := tx.GetOrg(rq.Subject.Token.OrgID)
			if err == nil {
				orgs = append(orgs, orgRole{o.Name, string(rq.Subject.Kind)})
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	if len(orgs) == 1 && rq.URL.Query().Get("all") == "" && orgs[0].Role != string(gatehouse.RoleBillingManager) {
		return consoleRedirect(orgPath(orgs[0].Name)), nil
	}
	return rq.page("home", "Your organizations", "", struct{ Orgs []orgRole }{orgs}), nil
}

// --- organization overview ---

type consoleMember struct {
	Name, Email, Role string
	Since             time.Time
}

type consoleToken struct {
	ID, Name, Description, Kind, Status, Role, CreatedBy, LastIP, LastAgent, Team string
	Created, Expires, LastUsed, GraceEnds                                         time.Time
	Live                                                                          bool
}

func consoleTokenOf(tk *gatehouse.Token, now time.Time) consoleToken {
	j := tokenOf(tk, now)
	out := consoleToken{ID: tk.ID, Name: tk.Name, Description: tk.Description, Kind: j.Type, Status: j.Status, Role: string(tk.Role),
		CreatedBy: tk.CreatedBy, LastIP: tk.LastIP, LastAgent: tk.LastAgent, Created: tk.Created, Expires: tk.Expires, LastUsed: tk.LastUsed,
		Live: j.Status == "active" || j.Status == "rotating"}
	if j.GraceEnds != 0 {
		out.GraceEnds = time.Unix(j.GraceEnds, 0)
	}
	return out
}

type consoleStack struct {
	Project, Name string
	Tags          []string
	LastUpdate    time.Time
	Resources     int
	Protected     bool
}

func stackTags(tags map[string]string) []string {
	out := make([]string, 0, len(tags))
	for k, v := range tags {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// visibleStacks are the organization's stacks the caller may read (as GET /api/stacks/{org}).
func (rq *Request) visibleStacks(tx gatehouse.Tx) ([]consoleStack, error) {
	sts, err := orgStacks(tx, rq.Org.ID)
	if err != nil {
		return nil, err
	}
	var out []consoleStack
	for i := range sts {
		st := &sts[i]
		if !mayReadStack(rq.Subject, rq.Org, rq.facts, st) {
			continue
		}
		out = append(out, consoleStack{Project: st.Project, Name: st.Name, Tags: stackTags(st.Tags), LastUpdate: st.LastUpdate,
			Resources: st.ResourceCount, Protected: stackProtected(rq.facts.Protections, st)})
	}
	return out, nil
}

func (s *Server) consoleOverview(rq *Request) (any, error) {
	data := struct {
		Role, DefaultStackPermission, DefaultEnvPermission string
		Members                                            []consoleMember
		Teams                                              []gatehouse.Team
		Stacks                                             []consoleStack
		Environments                                       []string
		Protections                                        []string
		Tokens                                             []consoleToken
		LiveTokens                                         int
	}{Role: string(rq.facts.Role), DefaultStackPermission: rq.Org.Settings.DefaultStackPermission.String(),
		DefaultEnvPermission: rq.Org.Settings.DefaultEnvironmentPermission.String()}
	if data.Role == "" {
		data.Role = string(rq.Subject.Kind)
	}
	if rq.may(authz.OrgMemberRead) {
		ms, err := rq.members()
		if err != nil {
			return nil, err
		}
		data.Members = ms
	}
	now := s.cfg.Now()
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		if rq.may(authz.OrgTeamRead) {
			if data.Teams, err = tx.ListTeams(rq.Org.ID); err != nil {
				return err
			}
		}
		if data.Stacks, err = rq.visibleStacks(tx); err != nil {
			return err
		}
		envs, err := orgEnvironments(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		for i := range envs {
			if authz.Decide(rq.Subject, authz.EnvRead, authz.Resource{Org: rq.Org, Env: &envs[i]}, rq.facts).Allow {
				data.Environments = append(data.Environments, envs[i].Project+"/"+envs[i].Name)
			}
		}
		ps, err := tx.ListProtections(rq.Org.ID)
		if err != nil {
			return err
		}
		for _, p := range ps {
			data.Protections = append(data.Protections, p.Scope.String())
		}
		if rq.may(authz.OrgTokenRead) {
			tks, err := tx.ListTokens(gatehouse.TokenFilter{OrgID: rq.Org.ID})
			if err != nil {
				return err
			}
			for i := range tks {
				ct := consoleTokenOf(&tks[i], now)
				if ct.Live {
					data.LiveTokens++
					data.Tokens = append(data.Tokens, ct)
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rq.page("overview", rq.Org.Name, "overview", data), nil
}

// members lists the organization's members as GET /api/orgs/{org}/members does (emails
// only for those who may read them).
func (rq *Request) members() ([]consoleMember, error) {
	res, err := rq.s.listMembers(rq)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(res)
	var list struct {
		Members []memberJSON `json:"members"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, err
	}
	out := make([]consoleMember, 0, len(list.Members))
	for _, m := range list.Members {
		since, _ := time.Parse(time.RFC3339, m.Created)
		out = append(out, consoleMember{Name: m.User.Name, Email: m.User.Email, Role: m.Role, Since: since})
	}
	return out, nil
}

// --- access review ---

func (s *Server) consoleAccess(rq *Request) (any, error) {
	f, err := reviewFilterOf(rq.URL.Query())
	if err != nil {
		return nil, err
	}
	rv, err := rq.accessReview(f)
	if err != nil {
		return nil, err
	}
	type cell struct {
		Permission, Via               string
		Decrypt, Protected, CanChange bool
	}
	type row struct {
		Kind, Name string
		Cells      []cell
	}
	idx := map[string]int{}
	for i, r := range rv.Resources {
		idx[r.Kind+"\x00"+r.Name] = i
	}
	byPrincipal := map[string]*row{}
	var rows []*row
	for _, p := range rv.Principals {
		r := &row{Kind: p.Kind, Name: p.Name, Cells: make([]cell, len(rv.Resources))}
		byPrincipal[p.Kind+"\x00"+p.Name] = r
		rows = append(rows, r)
	}
	has := map[*row]bool{}
	for _, e := range rv.Entries {
		r := byPrincipal[e.PrincipalKind+"\x00"+e.Principal]
		if r == nil {
			continue
		}
		r.Cells[idx[e.ResourceKind+"\x00"+e.Resource]] = cell{e.Permission, e.Via, e.Decrypt, e.Protected, e.CanChange}
		has[r] = true
	}
	// With a permission filter, a principal without any matching cell is left out.
	var shown []*row
	for _, r := range rows {
		if f.Min == "" || has[r] {
			shown = append(shown, r)
		}
	}
	q := f.query()
	q.Set("format", "csv")
	return rq.page("access", "Access review", "access", struct {
		Filter   reviewFilter
		Columns  []reviewResource
		Rows     []*row
		CSVQuery string
	}{f, rv.Resources, shown, q.Encode()}), nil
}

// --- stacks ---

func (s *Server) consoleStacks(rq *Request) (any, error) {
	q := strings.ToLower(rq.URL.Query().Get("q"))
	var out []consoleStack
	err := rq.View(func(tx gatehouse.Tx) error {
		all, err := rq.visibleStacks(tx)
		for _, st := range all {
			if q == "" || strings.Contains(strings.ToLower(st.Project+"/"+st.Name+" "+strings.Join(st.Tags, " ")), q) {
				out = append(out, st)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return rq.page("stacks", "Stacks", "stacks", struct {
		Q      string
		Stacks []consoleStack
	}{rq.URL.Query().Get("q"), out}), nil
}

func (s *Server) consoleStack(rq *Request) (any, error) {
	st := rq.Stack
	type update struct {
		Version              int
		Kind, Status, Author string
		Started, Ended       time.Time
		Resources            int
	}
	data := struct {
		Ref, CreatedBy      string
		Resources, Version  int
		Created, LastUpdate time.Time
		Tags                []string
		Protected           bool
		Updates             []update
		Access              []accessJSON
	}{Ref: st.Ref().String(), CreatedBy: st.CreatedBy, Resources: st.ResourceCount, Version: st.Version, Created: st.Created,
		LastUpdate: st.LastUpdate, Tags: stackTags(st.Tags), Protected: stackProtected(rq.facts.Protections, st)}
	err := rq.View(func(tx gatehouse.Tx) error {
		ups, err := tx.ListUpdates(st.ID, gatehouse.UpdateFilter{Page: 1, PageSize: 50})
		if err != nil {
			return err
		}
		for _, u := range ups {
			kind := string(u.Kind)
			if u.DryRun {
				kind = "preview"
			}
			data.Updates = append(data.Updates, update{u.Version, kind, string(u.Status), u.Author, u.Started, u.Ended, u.ResourceCount})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Who can access it: GET S/access (stack:access), when the caller may ask that.
	if authz.Decide(rq.Subject, authz.StackAccess, authz.Resource{Org: rq.Org, Stack: st}, rq.facts).Allow {
		res, err := s.stackAccess(rq)
		if err != nil {
			return nil, err
		}
		b, _ := json.Marshal(res)
		var acc struct {
			Access []accessJSON `json:"access"`
		}
		if err := json.Unmarshal(b, &acc); err != nil {
			return nil, err
		}
		data.Access = acc.Access
	}
	return rq.page("stack", "Stack "+st.Ref().String(), "stacks", data), nil
}

// --- teams ---

func (s *Server) consoleTeams(rq *Request) (any, error) {
	var ts []gatehouse.Team
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ts, err = tx.ListTeams(rq.Org.ID)
		return err
	}); err != nil {
		return nil, err
	}
	return rq.page("teams", "Teams", "teams", struct{ Teams []gatehouse.Team }{ts}), nil
}

func (s *Server) consoleCreateTeam(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	name := strings.TrimSpace(rq.PostForm.Get("name"))
	if _, err := rq.callAPI(s.createTeam, map[string]string{"name": name, "displayName": rq.PostForm.Get("displayName"), "description": rq.PostForm.Get("description")}); err != nil {
		return nil, err
	}
	return consoleRedirect(orgPath(rq.Org.Name, "teams", name) + "?done=team-created"), nil
}

func (s *Server) consoleTeam(rq *Request) (any, error) {
	res, err := s.getTeam(rq)
	if err != nil {
		return nil, err
	}
	t := res.(teamJSON)
	type envGrant struct{ Project, Env, Permission string }
	data := struct {
		Name, Description string
		Members           []teamMemberJSON
		Grants            []grantView
		EnvGrants         []envGrant
		Candidates        []string
		Stacks            []string
	}{Name: t.Name, Description: t.Description, Members: t.Members}
	for _, g := range t.Grants {
		data.Grants = append(data.Grants, grantViewOf(g))
	}
	if t.Environments != nil {
		for _, e := range *t.Environments {
			data.EnvGrants = append(data.EnvGrants, envGrant{e.ProjectName, e.EnvName, e.Permission})
		}
	}
	if rq.may(authz.OrgTeamWrite) {
		in := map[string]bool{}
		for _, m := range t.Members {
			in[m.Name] = true
		}
		ms, err := rq.members()
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			if !in[m.Name] {
				data.Candidates = append(data.Candidates, m.Name)
			}
		}
		if err := rq.View(func(tx gatehouse.Tx) error {
			sts, err := orgStacks(tx, rq.Org.ID)
			for _, st := range sts {
				data.Stacks = append(data.Stacks, st.Project+"/"+st.Name)
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	return rq.page("team", "Team "+t.Name, "teams", data), nil
}

type grantView struct {
	Scope, Permission, Stack, Project, Tag string
	Decrypt                                bool
}

func grantViewOf(g grantJSON) grantView {
	v := grantView{Permission: g.Permission, Decrypt: g.Decrypt, Stack: g.Stack, Project: g.Project, Tag: g.Tag}
	switch {
	case g.Stack != "":
		v.Scope = "stack " + g.Stack
	case g.Project != "":
		v.Scope = "project " + g.Project
	default:
		v.Scope = "tag " + g.Tag
	}
	return v
}

// consoleUpdateTeam applies one change of the team page (op) through PATCH
// /api/orgs/{org}/teams/{team}'s handler. Removals are confirmed first.
func (s *Server) consoleUpdateTeam(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	f := rq.PostForm
	back := orgPath(rq.Org.Name, "teams", rq.Team.Name)
	var body map[string]any
	switch op := f.Get("op"); op {
	case "addMember", "promote", "demote":
		body = map[string]any{"member": f.Get("member"), "memberAction": map[string]string{"addMember": "add", "promote": "promote", "demote": "demote"}[op]}
	case "removeMember":
		if p, ok := rq.confirmed("Remove "+f.Get("member")+" from team "+rq.Team.Name+"?", "They lose every permission the team's grants give them.", "Remove from team", back); !ok {
			return p, nil
		}
		body = map[string]any{"member": f.Get("member"), "memberAction": "remove"}
	case "addGrant":
		g := map[string]any{"permission": f.Get("permission"), "decrypt": f.Get("decrypt") == "true"}
		for _, k := range []string{"stack", "project", "tag"} {
			if v := strings.TrimSpace(f.Get(k)); v != "" {
				g[k] = v
			}
		}
		body = map[string]any{"addGrant": g}
	case "removeGrant":
		scope := f.Get("stack") + f.Get("project") + f.Get("tag")
		if p, ok := rq.confirmed("Remove the grant on "+scope+" from team "+rq.Team.Name+"?", "The team's members and tokens lose the access this grant gives.", "Remove grant", back); !ok {
			return p, nil
		}
		g := map[string]any{}
		for _, k := range []string{"stack", "project", "tag"} {
			if v := f.Get(k); v != "" {
				g[k] = v
			}
		}
		body = map[string]any{"removeGrant": g}
	case "addEnv":
		body = map[string]any{"addEnvironmentPermission": envPermJSON{ProjectName: strings.TrimSpace(f.Get("envProject")), EnvName: strings.TrimSpace(f.Get("env")), Permission: f.Get("permission")}}
	case "removeEnv":
		name := f.Get("envProject") + "/" + f.Get("env")
		if p, ok := rq.confirmed("Remove the environment grant on "+name+" from team "+rq.Team.Name+"?", "The team's members and tokens lose the access this grant gives.", "Remove grant", back); !ok {
			return p, nil
		}
		body = map[string]any{"removeEnvironment": envPermJSON{ProjectName: f.Get("envProject"), EnvName: f.Get("env")}}
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "unknown change %q", truncate(op, 64))
	}
	if _, err := rq.callAPI(s.updateTeam, body); err != nil {
		return nil, err
	}
	return consoleRedirect(back + "?done=team-updated"), nil
}

func (s *Server) consoleDeleteTeam(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	if p, ok := rq.confirmed("Delete team "+rq.Team.Name+"?", "Its grants are removed and its tokens revoked, at once. This cannot be undone.", "Delete team", orgPath(rq.Org.Name, "teams", rq.Team.Name)); !ok {
		return p, nil
	}
	if _, err := s.deleteTeam(rq); err != nil {
		return nil, err
	}
	return consoleRedirect(orgPath(rq.Org.Name, "teams") + "?done=team-deleted"), nil
}

// --- members ---

func (s *Server) consoleMembers(rq *Request) (any, error) {
	ms, err := rq.members()
	if err != nil {
		return nil, err
	}
	return rq.page("members", "Members", "members", struct {
		Members []consoleMember
		Emails  bool
		Roles   []string
	}{ms, rq.mayReadEmails(), []string{string(gatehouse.RoleAdmin), string(gatehouse.RoleMember), string(gatehouse.RoleBillingManager)}}), nil
}

func (s *Server) consoleMember(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	name := rq.PathValue("user")
	back := orgPath(rq.Org.Name, "members")
	switch rq.PostForm.Get("op") {
	case "role":
		role := rq.PostForm.Get("role")
		if p, ok := rq.confirmed("Make "+name+" "+role+" of "+rq.Org.Name+"?", "Their organization role decides what they may see and change.", "Change role", back); !ok {
			return p, nil
		}
		if _, err := rq.callAPI(s.putMember(true), map[string]string{"role": role}); err != nil {
			return nil, err
		}
		return consoleRedirect(back + "?done=member-updated"), nil
	case "remove":
		if p, ok := rq.confirmed("Remove "+name+" from "+rq.Org.Name+"?", "They leave every team of the organization and lose all access to it.", "Remove member", back); !ok {
			return p, nil
		}
		if _, err := s.removeMember(rq); err != nil {
			return nil, err
		}
		return consoleRedirect(back + "?done=member-removed"), nil
	}
	return nil, gatehouse.Errorf(gatehouse.EINVALID, "unknown change")
}

// --- tokens ---

type tokenGroup struct {
	Title, Anchor, Kind, Base string
	CanCreate                 bool
	Tokens                    []consoleToken
}

func (s *Server) consoleOrgTokens(rq *Request) (any, error) {
	now := s.cfg.Now()
	write := rq.may(authz.OrgTokenWrite)
	groups := []tokenGroup{{Title: "Organization tokens", Anchor: "org", Kind: "organization", Base: orgPath(rq.Org.Name, "tokens"), CanCreate: write}}
	err := rq.View(func(tx gatehouse.Tx) error {
		tks, err := tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenOrg, OrgID: rq.Org.ID})
		if err != nil {
			return err
		}
		for i := range tks {
			if ct := consoleTokenOf(&tks[i], now); ct.Live {
				groups[0].Tokens = append(groups[0].Tokens, ct)
			}
		}
		ts, err := tx.ListTeams(rq.Org.ID)
		if err != nil {
			return err
		}
		for _, t := range ts {
			g := tokenGroup{Title: "Team " + t.Name, Anchor: "team-" + t.Name, Kind: "team", Base: orgPath(rq.Org.Name, "teams", t.Name, "tokens"), CanCreate: write}
			tks, err := tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenTeam, OrgID: rq.Org.ID, TeamID: t.ID})
			if err != nil {
				return err
			}
			for i := range tks {
				if ct := consoleTokenOf(&tks[i], now); ct.Live {
					g.Tokens = append(g.Tokens, ct)
				}
			}
			groups = append(groups, g)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rq.page("tokens", "Tokens", "tokens", struct {
		Title   string
		MaxDays int
		Groups  []tokenGroup
	}{"Organization and team tokens", rq.Org.Settings.MaxTokenLifetimeDays, groups}), nil
}

func (s *Server) consoleMyTokens(rq *Request) (any, error) {
	now := s.cfg.Now()
	g := tokenGroup{Title: "Personal tokens of " + rq.Subject.Name(), Anchor: "personal", Kind: "personal", Base: "/console/tokens", CanCreate: true}
	err := rq.View(func(tx gatehouse.Tx) error {
		tks, err := tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal, UserID: rq.Subject.User.ID})
		for i := range tks {
			if ct := consoleTokenOf(&tks[i], now); ct.Live {
				g.Tokens = append(g.Tokens, ct)
			}
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return rq.page("tokens", "Your tokens", "", struct {
		Title   string
		MaxDays int
		Groups  []tokenGroup
	}{"Your personal access tokens", 0, []tokenGroup{g}}), nil
}

// tokensBack is the token page a token change returns to.
func (rq *Request) tokensBack() string {
	switch {
	case rq.Team != nil:
		return orgPath(rq.Org.Name, "tokens") + "#team-" + url.PathEscape(rq.Team.Name)
	case rq.Org != nil:
		return orgPath(rq.Org.Name, "tokens")
	}
	return "/console/tokens"
}

// newTokenPage shows a new token's value, once (Cache-Control: no-store).
func (rq *Request) newTokenPage(heading, name, value, note string) *consolePage {
	p := rq.page("token_new", heading, "tokens", struct{ Heading, Name, Value, Note, Back string }{heading, name, value, note, rq.tokensBack()})
	p.noStore = true
	return p
}

func (s *Server) consoleCreateToken(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	f := rq.PostForm
	req := createTokenReq{Name: strings.TrimSpace(f.Get("name")), Description: f.Get("description"), Role: f.Get("role")}
	if d := f.Get("days"); d != "" {
		n, err := strconv.Atoi(d)
		if err != nil || n < 1 || n > 3650 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "expiry must be 1 to 3650 days")
		}
		req.Expires = s.cfg.Now().Add(time.Duration(n) * 24 * time.Hour).Unix()
	}
	res, err := rq.callAPI(s.createToken, req)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(res)
	var out struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	_ = json.Unmarshal(b, &out)
	name := req.Name
	if name == "" {
		name = out.ID
	}
	return rq.newTokenPage("New token "+name, name, out.TokenValue, ""), nil
}

func (s *Server) consoleRotateToken(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	grace, err := strconv.ParseInt(rq.PostForm.Get("grace"), 10, 64)
	if err != nil {
		grace = 3600
	}
	if p, ok := rq.confirmed("Rotate this token?", "A successor is issued now; the old token stops working after the grace period ("+(time.Duration(grace)*time.Second).String()+"). Pipelines using it must get the new value before then.", "Rotate token", rq.tokensBack()); !ok {
		return p, nil
	}
	res, err := rq.callAPI(s.rotateToken, map[string]any{"graceSeconds": grace})
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(res)
	var out struct {
		Name       string `json:"name"`
		TokenValue string `json:"tokenValue"`
		OldEnds    int64  `json:"previousTokenEnds"`
	}
	_ = json.Unmarshal(b, &out)
	return rq.newTokenPage("Rotated: new token "+out.Name, out.Name, out.TokenValue,
		"The previous token works until "+time.Unix(out.OldEnds, 0).UTC().Format("2006-01-02 15:04 UTC")+"."), nil
}

func (s *Server) consoleRevokeToken(rq *Request) (any, error) {
	if err := rq.form(); err != nil {
		return nil, err
	}
	if p, ok := rq.confirmed("Revoke this token?", "It stops working at once, everywhere. This cannot be undone.", "Revoke token", rq.tokensBack()); !ok {
		return p, nil
	}
	if _, err := s.revokeToken(rq); err != nil {
		return nil, err
	}
	back := rq.tokensBack()
	if i := strings.IndexByte(back, '#'); i >= 0 {
		return consoleRedirect(back[:i] + "?done=token-revoked" + back[i:]), nil
	}
	return consoleRedirect(back + "?done=token-revoked"), nil
}

// --- audit ---

const consoleTimeLayout = "2006-01-02T15:04"

// consoleAuditQuery turns the timeline's form (since/until as datetime-local in UTC,
// target) into the API's audit query (startTime/endTime); target is returned apart (the
// store filters by the other fields).
func (rq *Request) consoleAuditQuery() (target string, err error) {
	q := rq.URL.Query()
	for form, api := range map[string]string{"since": "startTime", "until": "endTime"} {
		if v := q.Get(form); v != "" {
			t, perr := time.Parse(consoleTimeLayout, v)
			if perr != nil {
				return "", gatehouse.Errorf(gatehouse.EINVALID, "invalid %s %q", form, truncate(v, 64))
			}
			q.Set(api, t.UTC().Format(time.RFC3339))
		}
		q.Del(form)
	}
	target, err = auditQueryText("target", q.Get("target"))
	q.Del("target")
	rq.URL.RawQuery = q.Encode()
	return target, err
}

func (s *Server) consoleAudit(rq *Request) (any, error) {
	orig := rq.URL.Query()
	target, err := rq.consoleAuditQuery()
	if err != nil {
		return nil, err
	}
	f, err := rq.auditFilter(2)
	if err != nil {
		return nil, err
	}
	const pageSize = 100
	now := s.cfg.Now().UTC()
	// The chart's window: the filter's, or the last 24 hours.
	to := f.Until
	if to.IsZero() {
		to = now
	}
	from := f.Since
	if from.IsZero() || to.Sub(from) > 14*24*time.Hour {
		from = to.Add(-24 * time.Hour)
	}
	from = from.Truncate(time.Hour)
	var events []gatehouse.AuditEvent
	var older string
	hours := make([]console.HourCount, int(to.Sub(from)/time.Hour)+1)
	for i := range hours {
		hours[i].Hour = from.Add(time.Duration(i) * time.Hour)
	}
	err = rq.View(func(tx gatehouse.Tx) error {
		lf := f
		lf.Limit = 500
		for len(events) <= pageSize {
			evs, err := tx.ListAudit(lf)
			if err != nil {
				return err
			}
			for i := range evs {
				if target == "" || strings.Contains(strings.ToLower(evs[i].Target), strings.ToLower(target)) {
					events = append(events, evs[i])
				}
			}
			if len(evs) < lf.Limit {
				break
			}
			lf.BeforeSeq = evs[len(evs)-1].Seq
		}
		if len(events) > pageSize {
			events = events[:pageSize]
			q := orig
			q.Set("continuationToken", encodeAuditToken(events[pageSize-1].Seq))
			older = q.Encode()
		}
		cf := f
		cf.Since, cf.Until, cf.BeforeSeq, cf.Limit = from, to.Add(time.Nanosecond), 0, 20000
		evs, err := tx.ListAudit(cf)
		if err != nil {
			return err
		}
		for i := range evs {
			e := &evs[i]
			if target != "" && !strings.Contains(strings.ToLower(e.Target), strings.ToLower(target)) {
				continue
			}
			h := int(e.Time.Sub(from) / time.Hour)
			if h < 0 || h >= len(hours) {
				continue
			}
			hours[h].Events++
			if e.Outcome == gatehouse.OutcomeDenied {
				hours[h].Denials++
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	export := url.Values{}
	for _, k := range []string{"startTime", "endTime", "eventFilter", "userFilter", "outcome"} {
		if v := rq.URL.Query().Get(k); v != "" {
			export.Set(k, v)
		}
	}
	fmtTime := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(consoleTimeLayout)
	}
	actions := []string{}
	for _, rt := range s.routes {
		if !rt.HTML && rt.Action != authz.Public {
			actions = append(actions, string(rt.Action))
		}
	}
	sort.Strings(actions)
	actions = compactStrings(actions)
	return rq.page("audit", "Audit timeline", "audit", struct {
		Filter      struct{ Since, Until, Actor, Action, Target, Outcome string }
		Events      []gatehouse.AuditEvent
		Chart       console.Chart
		ExportQuery string
		Older       string
		Actions     []string
	}{
		Filter:      struct{ Since, Until, Actor, Action, Target, Outcome string }{fmtTime(f.Since), fmtTime(f.Until), f.ActorName, f.Action, target, f.Outcome},
		Events:      events,
		Chart:       console.HourChart(hours),
		ExportQuery: export.Encode(),
		Older:       older,
		Actions:     actions,
	}), nil
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func (s *Server) consoleAuditEvent(rq *Request) (any, error) {
	seq, err := strconv.ParseInt(rq.PathValue("seq"), 10, 64)
	if err != nil || seq < 1 {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such audit event")
	}
	type detail struct{ Name, Value string }
	data := struct {
		Event            gatehouse.AuditEvent
		Details          []detail
		Head, Checkpoint int64
		PrevHash, Hash   string
	}{}
	err = rq.View(func(tx gatehouse.Tx) error {
		evs, err := tx.ListAudit(gatehouse.AuditFilter{OrgID: rq.Org.ID, AfterSeq: seq - 1, Ascending: true, Limit: 1})
		if err != nil {
			return err
		}
		// Only this organization's events (the filter is on the organization).
		if len(evs) == 0 || evs[0].Seq != seq {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "no such audit event")
		}
		data.Event = evs[0]
		if data.Head, _, err = tx.AuditHead(); err != nil {
			return err
		}
		cps, err := tx.ListAuditCheckpoints()
		if err != nil {
			return err
		}
		for _, cp := range cps {
			if cp.Seq >= seq {
				data.Checkpoint = cp.Seq
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	data.PrevHash, data.Hash = hex.EncodeToString(data.Event.PrevHash), hex.EncodeToString(data.Event.Hash)
	for k, v := range data.Event.Details {
		data.Details = append(data.Details, detail{k, v})
	}
	sort.Slice(data.Details, func(i, j int) bool { return data.Details[i].Name < data.Details[j].Name })
	return rq.page("audit_event", "Audit event "+strconv.FormatInt(seq, 10), "audit", data), nil
}

// consoleAuditExport is the timeline's download: GET /api/orgs/{org}/auditlogs/v2/export's
// handler (recorded in the log like every export) with the timeline's filter.
func (s *Server) consoleAuditExport(rq *Request) (any, error) {
	if _, err := rq.consoleAuditQuery(); err != nil {
		return nil, err
	}
	return s.exportAuditLogs(2)(rq)
}
