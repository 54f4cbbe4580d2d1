package httpapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/token"
)

// The administration API: organizations, members, users, teams, grants, protection rules
// and stack access listings. Paths and shapes follow Pulumi Cloud's REST API where it has
// one; Gatehouse's additions (tag and project grants, decrypt rights, protection rules,
// user creation) extend those shapes.

// Pulumi Cloud's numeric stack permissions.
var pulumiPerm = map[gatehouse.Permission]int{gatehouse.PermNone: 0, gatehouse.PermRead: 101, gatehouse.PermWrite: 102, gatehouse.PermAdmin: 103}

func permFromPulumi(n int) (gatehouse.Permission, error) {
	switch n {
	case 0:
		return gatehouse.PermNone, nil
	case 101:
		return gatehouse.PermRead, nil
	case 102:
		return gatehouse.PermWrite, nil
	case 103, 104:
		return gatehouse.PermAdmin, nil
	}
	return 0, gatehouse.Errorf(gatehouse.EINVALID, "invalid stack permission %d (0 none, 101 read, 102 write, 103 admin)", n)
}

// permission is a permission given either as Pulumi's number or as a name.
type permission struct {
	gatehouse.Permission
}

func (p *permission) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	if n, err := strconv.Atoi(s); err == nil {
		v, err := permFromPulumi(n)
		p.Permission = v
		return err
	}
	v, err := gatehouse.ParsePermission(s)
	p.Permission = v
	return err
}

type orgJSON struct {
	Name                     string `json:"name"`
	GitHubLogin              string `json:"githubLogin"`
	Kind                     string `json:"kind"`
	DefaultStackPermission   int    `json:"defaultStackPermission"`
	MembersCanCreateStacks   bool   `json:"membersCanCreateStacks"`
	MembersCanDeleteStacks   bool   `json:"membersCanDeleteStacks"`
	MaxAccessTokenExpiryDays int    `json:"maxAccessTokenExpiryDays"`
	UserRole                 string `json:"userRole,omitempty"`
	Created                  string `json:"created"`
	// DefaultEnvironmentPermission: none, read, open, write or admin (environments.go).
	DefaultEnvironmentPermission string `json:"defaultEnvironmentPermission"`
}

func (rq *Request) orgJSON(o *gatehouse.Org) orgJSON {
	return orgJSON{
		Name: o.Name, GitHubLogin: o.Name, Kind: "gatehouse",
		DefaultStackPermission: pulumiPerm[o.Settings.DefaultStackPermission], MembersCanCreateStacks: o.Settings.MembersCanCreateStacks,
		MembersCanDeleteStacks: o.Settings.MembersCanDeleteStacks, MaxAccessTokenExpiryDays: o.Settings.MaxTokenLifetimeDays,
		UserRole: string(rq.facts.Role), Created: o.Created.Format("2006-01-02T15:04:05Z07:00"),
		DefaultEnvironmentPermission: o.Settings.DefaultEnvironmentPermission.String(),
	}
}

// createOrg is POST /api/orgs (site administrators): the caller becomes its first admin.
func (s *Server) createOrg(rq *Request) (any, error) {
	var req struct {
		Name string `json:"name"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validOwner("organization", req.Name); err != nil {
		return nil, err
	}
	o := &gatehouse.Org{Name: req.Name, Settings: gatehouse.DefaultOrgSettings()}
	rq.event.Target = req.Name
	err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.CreateOrg(o); err != nil {
			return err
		}
		rq.event.OrgID, rq.event.OrgName = o.ID, o.Name
		return tx.PutMember(o.ID, rq.Subject.User.ID, gatehouse.RoleAdmin)
	})
	if err != nil {
		return nil, err
	}
	rq.facts.Role = gatehouse.RoleAdmin
	return rq.orgJSON(o), nil
}

func (s *Server) getOrg(rq *Request) (any, error) { return rq.orgJSON(rq.Org), nil }

// updateOrgSettings is PATCH /api/orgs/{org} with Pulumi's set* fields.
func (s *Server) updateOrgSettings(rq *Request) (any, error) {
	var req struct {
		SetDefaultStackPermission   *permission `json:"setDefaultStackPermission"`
		SetMembersCanCreateStacks   *bool       `json:"setMembersCanCreateStacks"`
		SetMembersCanDeleteStacks   *bool       `json:"setMembersCanDeleteStacks"`
		SetMaxAccessTokenExpiryDays *int        `json:"setMaxAccessTokenExpiryDays"`
		// SetDefaultEnvironmentPermission: none, read, open, write or admin (environments.go).
		SetDefaultEnvironmentPermission *gatehouse.EnvPermission `json:"setDefaultEnvironmentPermission"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	o := *rq.Org
	st := &o.Settings
	if p := req.SetDefaultStackPermission; p != nil {
		st.DefaultStackPermission = p.Permission
		rq.Detail("defaultStackPermission", p.Permission.String())
	}
	if v := req.SetMembersCanCreateStacks; v != nil {
		st.MembersCanCreateStacks = *v
		rq.Detail("membersCanCreateStacks", strconv.FormatBool(*v))
	}
	if v := req.SetMembersCanDeleteStacks; v != nil {
		st.MembersCanDeleteStacks = *v
		rq.Detail("membersCanDeleteStacks", strconv.FormatBool(*v))
	}
	if v := req.SetMaxAccessTokenExpiryDays; v != nil {
		if *v < 0 || *v > 3650 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "maxAccessTokenExpiryDays must be 0 (no limit) to 3650")
		}
		st.MaxTokenLifetimeDays = *v
		rq.Detail("maxAccessTokenExpiryDays", strconv.Itoa(*v))
	}
	if p := req.SetDefaultEnvironmentPermission; p != nil {
		st.DefaultEnvironmentPermission = *p
		rq.Detail("defaultEnvironmentPermission", p.String())
	}
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.UpdateOrgSettings(o.ID, *st) }); err != nil {
		return nil, err
	}
	return rq.orgJSON(&o), nil
}

type userJSON struct {
	Name        string `json:"name"`
	GitHubLogin string `json:"githubLogin"`
	AvatarURL   string `json:"avatarUrl"`
	Email       string `json:"email,omitempty"`
}

func userOf(u *gatehouse.User) userJSON {
	return userJSON{Name: u.Name, GitHubLogin: u.Name, Email: u.Email}
}

type memberJSON struct {
	Role         string   `json:"role"`
	User         userJSON `json:"user"`
	KnownToPulum bool     `json:"knownToPulumi"`
	Created      string   `json:"created"`
}

func (s *Server) listMembers(rq *Request) (any, error) {
	var ms []gatehouse.Member
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ms, err = tx.ListMembers(rq.Org.ID)
		return err
	}); err != nil {
		return nil, err
	}
	out := struct {
		Members []memberJSON `json:"members"`
	}{Members: []memberJSON{}}
	emails := rq.mayReadEmails() // others' emails only for those who manage members
	for i := range ms {
		out.Members = append(out.Members, memberJSON{Role: string(ms[i].Role), User: rq.userFor(&ms[i].User, emails), KnownToPulum: true, Created: ms[i].Created.Format("2006-01-02T15:04:05Z07:00")})
	}
	return out, nil
}

func parseRole(s string) (gatehouse.Role, error) {
	if s == "billingManager" {
		s = string(gatehouse.RoleBillingManager)
	}
	r := gatehouse.Role(s)
	if s == "" {
		r = gatehouse.RoleMember
	}
	if !r.Valid() {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "invalid role %q (admin, member or billing-manager)", s)
	}
	return r, nil
}

// putMember adds an existing user (POST) or changes a member's role (PATCH).
func (s *Server) putMember(mustExist bool) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		var req struct {
			Role string `json:"role"`
		}
		if err := rq.decode(&req); err != nil {
			return nil, err
		}
		role, err := parseRole(req.Role)
		if err != nil {
			return nil, err
		}
		name := rq.PathValue("user")
		rq.event.Target = rq.Org.Name + "/members/" + name
		rq.Detail("role", string(role))
		if !mustExist {
			// Adding someone who is not the organization's own needs their consent (an
			// invitation) or a site administrator; the refusal is the same for a name nobody has.
			if err := rq.authorizeDirectAdd(name); err != nil {
				return nil, err
			}
		}
		err = rq.Change(func(tx gatehouse.Tx) error {
			var u *gatehouse.User
			var err error
			if mustExist {
				u, err = tx.GetUserByName(name)
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					// The same answer as for a user who exists but is not a member.
					return gatehouse.Errorf(gatehouse.ENOTFOUND, "%s is not a member of %s", name, rq.Org.Name)
				}
			} else {
				u, err = rq.directAdd(tx, name)
			}
			if err != nil {
				return err
			}
			m, err := tx.GetMember(rq.Org.ID, u.ID)
			switch {
			case err == nil && !mustExist:
				return gatehouse.Errorf(gatehouse.ECONFLICT, "%s is already a member of %s", u.Name, rq.Org.Name)
			case gatehouse.IsCode(err, gatehouse.ENOTFOUND) && mustExist:
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "%s is not a member of %s", name, rq.Org.Name)
			case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
				return err
			}
			if m != nil && m.Role == gatehouse.RoleAdmin && role != gatehouse.RoleAdmin {
				if err := keepAnAdmin(tx, rq.Org.ID, u.ID); err != nil {
					return err
				}
			}
			return tx.PutMember(rq.Org.ID, u.ID, role)
		})
		return noContent{}, err
	}
}

// memberByName returns the user called name and their membership of org. A name nobody has
// and a user who is not a member get the same answer (ENOTFOUND, "NAME is not a member of
// ORG"), so that an organization's admins cannot probe which user names exist elsewhere on
// the site.
func memberByName(tx gatehouse.Tx, org *gatehouse.Org, name string) (*gatehouse.User, *gatehouse.Member, error) {
	u, err := tx.GetUserByName(name)
	if err == nil {
		var m *gatehouse.Member
		if m, err = tx.GetMember(org.ID, u.ID); err == nil {
			return u, m, nil
		}
	}
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "%s is not a member of %s", name, org.Name)
	}
	return nil, nil, err
}

// keepAnAdmin refuses a change that would leave the organization without an admin.
func keepAnAdmin(tx gatehouse.Tx, orgID, leaving int64) error {
	ms, err := tx.ListMembers(orgID)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Role == gatehouse.RoleAdmin && m.User.ID != leaving {
			return nil
		}
	}
	return gatehouse.Errorf(gatehouse.ECONFLICT, "the organization must keep at least one admin")
}

func (s *Server) removeMember(rq *Request) (any, error) {
	name := rq.PathValue("user")
	rq.event.Target = rq.Org.Name + "/members/" + name
	err := rq.Change(func(tx gatehouse.Tx) error {
		u, m, err := memberByName(tx, rq.Org, name)
		if err != nil {
			return err
		}
		if err := refuseSCIMMember(tx, rq.Org, u); err != nil {
			return err
		}
		if m.Role == gatehouse.RoleAdmin {
			if err := keepAnAdmin(tx, rq.Org.ID, u.ID); err != nil {
				return err
			}
		}
		// Leaving the organization leaves its teams too.
		teams, err := tx.ListTeams(rq.Org.ID)
		if err != nil {
			return err
		}
		for _, t := range teams {
			if err := tx.RemoveTeamMember(t.ID, u.ID); err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
		}
		return tx.RemoveMember(rq.Org.ID, u.ID)
	})
	return noContent{}, err
}

func validOwner(kind, name string) error {
	if !ownerRE.MatchString(name) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid %s name %q: 3-40 letters, digits, '-' or '_', starting and ending with a letter or digit", kind, name)
	}
	return nil
}

// firstTokenLifetime is how long the first personal token of a user an admin creates lives
// when the organization sets no shorter maximum: long enough to hand it over and make one's
// own tokens with it, short enough that a forgotten copy (in a chat, a mail) dies.
const firstTokenLifetime = 30 * 24 * time.Hour

// createUser is POST /api/orgs/{org}/users: an org admin (a person: see authz
// OrgUserCreate) creates a user account, adds it to the organization and receives its first
// personal access token (shown once), which expires within firstTokenLifetime and the
// organization's maximum token lifetime.
func (s *Server) createUser(rq *Request) (any, error) {
	var req struct {
		Name  string `json:"name"`
		Email string `json:"email"`
		Role  string `json:"role"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validOwner("user", req.Name); err != nil {
		return nil, err
	}
	role, err := parseRole(req.Role)
	if err != nil {
		return nil, err
	}
	if err := plainText("email", req.Email); err != nil {
		return nil, err
	}
	value, tk, err := newAccessToken(gatehouse.TokenPersonal)
	if err != nil {
		return nil, err
	}
	rq.event.Target = rq.Org.Name + "/members/" + req.Name
	rq.Detail("role", string(role))
	u := &gatehouse.User{Name: req.Name, Email: req.Email, CreatedByOrg: rq.Org.ID} // the org may add it back directly
	err = rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.CreateUser(u); err != nil {
			return err
		}
		if err := tx.PutMember(rq.Org.ID, u.ID, role); err != nil {
			return err
		}
		tk.Name, tk.Description, tk.UserID, tk.CreatedBy = "initial", "first token, created with the account", u.ID, rq.Subject.Name()
		tk.Expires = tx.Now().Add(firstTokenLifetime)
		if err := limitExpiry(rq.Org, tk, tx.Now(), true); err != nil {
			return err
		}
		rq.Detail("token_id", tk.ID)
		rq.Detail("expires", tk.Expires.UTC().Format(time.RFC3339))
		return tx.CreateToken(tk)
	})
	if err != nil {
		return nil, err
	}
	return struct {
		User         userJSON `json:"user"`
		Role         string   `json:"role"`
		TokenID      string   `json:"tokenId"`
		TokenValue   string   `json:"tokenValue"`
		TokenExpires int64    `json:"tokenExpires"` // unix seconds
	}{userOf(u), string(role), tk.ID, value, unix(tk.Expires)}, nil
}

// --- teams ---

type teamStackJSON struct {
	ProjectName string `json:"projectName"`
	StackName   string `json:"stackName"`
	Permission  int    `json:"permission"`
	Decrypt     bool   `json:"decrypt"`
}

type grantJSON struct {
	Stack      string `json:"stack,omitempty"` // "project/stack"
	Project    string `json:"project,omitempty"`
	Tag        string `json:"tag,omitempty"` // "name=value"
	Permission string `json:"permission"`
	Decrypt    bool   `json:"decrypt"`
}

func grantOf(g *gatehouse.Grant) grantJSON {
	out := grantJSON{Permission: g.Permission.String(), Decrypt: g.Decrypt || g.Permission >= gatehouse.PermWrite}
	switch {
	case g.Scope.StackRef != nil:
		out.Stack = g.Scope.StackRef.Project + "/" + g.Scope.StackRef.Stack
	case g.Scope.Project != "":
		out.Project = g.Scope.Project
	case g.Scope.TagName != "":
		out.Tag = g.Scope.TagName + "=" + g.Scope.TagValue
	}
	return out
}

type teamMemberJSON struct {
	userJSON
	Role string `json:"role"`
}

type teamJSON struct {
	Kind        string           `json:"kind"`
	Name        string           `json:"name"`
	DisplayName string           `json:"displayName"`
	Description string           `json:"description"`
	Members     []teamMemberJSON `json:"members,omitempty"`
	Stacks      []teamStackJSON  `json:"stacks,omitempty"`
	Grants      []grantJSON      `json:"grants,omitempty"`
	// Environments are the team's environment permissions (environments.go).
	Environments *[]envPermJSON `json:"environments,omitempty"` // absent except in GetTeam, where it is always a list
}

func (s *Server) listTeams(rq *Request) (any, error) {
	var ts []gatehouse.Team
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ts, err = tx.ListTeams(rq.Org.ID)
		return err
	}); err != nil {
		return nil, err
	}
	out := struct {
		Teams []teamJSON `json:"teams"`
	}{Teams: []teamJSON{}}
	for _, t := range ts {
		out.Teams = append(out.Teams, teamJSON{Kind: "pulumi", Name: t.Name, DisplayName: t.DisplayName, Description: t.Description})
	}
	return out, nil
}

func (s *Server) createTeam(rq *Request) (any, error) {
	var req struct {
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
		Description string `json:"description"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validOwner("team", req.Name); err != nil {
		return nil, err
	}
	for f, v := range map[string]string{"displayName": req.DisplayName, "description": req.Description} {
		if err := plainText(f, v); err != nil {
			return nil, err
		}
	}
	t := &gatehouse.Team{OrgID: rq.Org.ID, Name: req.Name, DisplayName: req.DisplayName, Description: req.Description}
	if t.DisplayName == "" {
		t.DisplayName = t.Name
	}
	rq.event.Target = rq.Org.Name + "/teams/" + req.Name
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.CreateTeam(t) }); err != nil {
		return nil, err
	}
	rq.status = http.StatusCreated // as Pulumi Cloud answers CreatePulumiTeam
	return teamJSON{Kind: "pulumi", Name: t.Name, DisplayName: t.DisplayName, Description: t.Description}, nil
}

func (s *Server) getTeam(rq *Request) (any, error) {
	t := rq.Team
	out := teamJSON{Kind: "pulumi", Name: t.Name, DisplayName: t.DisplayName, Description: t.Description, Members: []teamMemberJSON{}, Stacks: []teamStackJSON{}, Grants: []grantJSON{}}
	emails := rq.mayReadEmails()
	err := rq.View(func(tx gatehouse.Tx) error {
		ms, err := tx.ListTeamMembers(t.ID)
		if err != nil {
			return err
		}
		for i := range ms {
			out.Members = append(out.Members, teamMemberJSON{userJSON: rq.userFor(&ms[i].User, emails), Role: ms[i].Role})
		}
		gs, err := tx.ListGrants(t.ID)
		if err != nil {
			return err
		}
		envs, err := teamEnvironments(tx, gs)
		if err != nil {
			return err
		}
		if envs == nil {
			envs = []envPermJSON{} // always a list: the pulumiservice provider reads it
		}
		out.Environments = &envs
		for i := range gs {
			g := &gs[i]
			if g.Scope.IsEnv() {
				continue // listed in Environments
			}
			if g.Scope.StackRef != nil {
				out.Stacks = append(out.Stacks, teamStackJSON{ProjectName: g.Scope.StackRef.Project, StackName: g.Scope.StackRef.Stack, Permission: pulumiPerm[g.Permission], Decrypt: g.Decrypt || g.Permission >= gatehouse.PermWrite})
			}
			out.Grants = append(out.Grants, grantOf(g))
		}
		return nil
	})
	return out, err
}

// deleteTeam deletes a team with its members and grants; the store revokes its tokens in
// the same transaction (they are counted in the audit event).
func (s *Server) deleteTeam(rq *Request) (any, error) {
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		if err := refuseSCIMTeam(tx, rq.Team, "deleted"); err != nil {
			return err
		}
		tks, err := tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenTeam, OrgID: rq.Org.ID, TeamID: rq.Team.ID})
		if err != nil {
			return err
		}
		rq.Detail("revoked_tokens", strconv.Itoa(len(tks)))
		return tx.DeleteTeam(rq.Team.ID)
	})
}

type stackPermJSON struct {
	ProjectName string     `json:"projectName"`
	StackName   string     `json:"stackName"`
	Permission  permission `json:"permission"`
	Decrypt     bool       `json:"decrypt"`
}

type grantReq struct {
	Stack      string     `json:"stack"`
	Project    string     `json:"project"`
	Tag        string     `json:"tag"`
	Permission permission `json:"permission"`
	Decrypt    bool       `json:"decrypt"`
}

// updateTeam is Pulumi's one-endpoint team PATCH, extended with addGrant/removeGrant for
// project and tag-selector grants and a decrypt flag.
func (s *Server) updateTeam(rq *Request) (any, error) {
	var req struct {
		Member              string         `json:"member"`
		MemberAction        string         `json:"memberAction"`
		NewDisplayName      *string        `json:"newDisplayName"`
		NewDescription      *string        `json:"newDescription"`
		AddStackPermission  *stackPermJSON `json:"addStackPermission"`
		EditStackPermission *stackPermJSON `json:"editStackPermission"`
		RemoveStack         *stackPermJSON `json:"removeStack"`
		AddGrant            *grantReq      `json:"addGrant"`
		RemoveGrant         *grantReq      `json:"removeGrant"`
		// Pulumi's team environment permissions (environments.go).
		AddEnvironmentPermission  *envPermJSON `json:"addEnvironmentPermission"`
		EditEnvironmentPermission *envPermJSON `json:"editEnvironmentPermission"` // as add: replaces the grant
		RemoveEnvironment         *envPermJSON `json:"removeEnvironment"`
		_                         struct{}     `json:"-"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.AddEnvironmentPermission == nil {
		req.AddEnvironmentPermission = req.EditEnvironmentPermission
	}
	t := *rq.Team
	err := rq.Change(func(tx gatehouse.Tx) error {
		if req.Member != "" || req.MemberAction != "" || req.NewDisplayName != nil {
			if err := refuseSCIMTeam(tx, &t, "changed (members, display name)"); err != nil {
				return err
			}
		}
		if req.Member != "" || req.MemberAction != "" {
			if err := teamMember(rq, tx, &t, req.Member, req.MemberAction); err != nil {
				return err
			}
		}
		if req.NewDisplayName != nil || req.NewDescription != nil {
			for f, v := range map[string]*string{"newDisplayName": req.NewDisplayName, "newDescription": req.NewDescription} {
				if v != nil {
					if err := plainText(f, *v); err != nil {
						return err
					}
				}
			}
			if req.NewDisplayName != nil {
				t.DisplayName = *req.NewDisplayName
			}
			if req.NewDescription != nil {
				t.Description = *req.NewDescription
			}
			if err := tx.UpdateTeam(&t); err != nil {
				return err
			}
		}
		for _, sp := range []*stackPermJSON{req.AddStackPermission, req.EditStackPermission} {
			if sp == nil {
				continue
			}
			if err := putGrant(rq, tx, &t, grantReq{Stack: sp.ProjectName + "/" + sp.StackName, Permission: sp.Permission, Decrypt: sp.Decrypt}); err != nil {
				return err
			}
		}
		if req.AddGrant != nil {
			if err := putGrant(rq, tx, &t, *req.AddGrant); err != nil {
				return err
			}
		}
		if req.RemoveStack != nil {
			if err := removeGrant(rq, tx, &t, grantReq{Stack: req.RemoveStack.ProjectName + "/" + req.RemoveStack.StackName}); err != nil {
				return err
			}
		}
		if req.RemoveGrant != nil {
			if err := removeGrant(rq, tx, &t, *req.RemoveGrant); err != nil {
				return err
			}
		}
		if err := teamEnvGrant(rq, tx, &t, req.AddEnvironmentPermission, req.RemoveEnvironment); err != nil {
			return err
		}
		return nil
	})
	return noContent{}, err
}

func teamMember(rq *Request, tx gatehouse.Tx, t *gatehouse.Team, name, action string) error {
	rq.Detail("member", name)
	rq.Detail("memberAction", action)
	u, _, err := memberByName(tx, rq.Org, name)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) && action != "remove" {
			return gatehouse.Errorf(gatehouse.EINVALID, "%s is not a member of %s; add them to the organization first", name, rq.Org.Name)
		}
		return err
	}
	switch action {
	case "add", "promote", "demote":
		role := "member"
		if action == "promote" {
			role = "admin"
		}
		return tx.PutTeamMember(t.ID, u.ID, role)
	case "remove":
		return tx.RemoveTeamMember(t.ID, u.ID)
	}
	return gatehouse.Errorf(gatehouse.EINVALID, "invalid memberAction %q (add, remove, promote or demote)", action)
}

// scopeOf turns a grant or protection request into a scope of this organization.
func scopeOf(rq *Request, tx gatehouse.Tx, stack, project, tag string) (gatehouse.Scope, error) {
	var sc gatehouse.Scope
	n := 0
	for _, v := range []string{stack, project, tag} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		// Checked first: with two scopes, "stack does not exist" would mislead.
		return sc, gatehouse.Errorf(gatehouse.EINVALID, "name exactly one of stack (project/stack), project or tag (name=value)")
	}
	if stack != "" {
		p, name, ok := strings.Cut(stack, "/")
		if !ok {
			return sc, gatehouse.Errorf(gatehouse.EINVALID, "stack must be given as project/stack, not %q", stack)
		}
		st, err := tx.GetStack(rq.Org.ID, p, name)
		if err != nil {
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return sc, gatehouse.Errorf(gatehouse.EINVALID, "stack %s/%s does not exist", rq.Org.Name, stack)
			}
			return sc, err
		}
		sc.StackID, sc.StackRef = st.ID, &gatehouse.StackRef{Org: rq.Org.Name, Project: p, Stack: name}
	}
	if project != "" {
		if err := validName("project", project); err != nil {
			return sc, err
		}
		sc.Project = project
	}
	if tag != "" {
		k, v, ok := strings.Cut(tag, "=")
		if !ok || !tagKeyRE.MatchString(k) || len(v) > 256 {
			return sc, gatehouse.Errorf(gatehouse.EINVALID, "tag selector must be name=value, not %q", tag)
		}
		sc.TagName, sc.TagValue = k, v
	}
	return sc, nil
}

func putGrant(rq *Request, tx gatehouse.Tx, t *gatehouse.Team, g grantReq) error {
	sc, err := scopeOf(rq, tx, g.Stack, g.Project, g.Tag)
	if err != nil {
		return err
	}
	if g.Permission.Permission == gatehouse.PermNone {
		return gatehouse.Errorf(gatehouse.EINVALID, "a grant needs read, write or admin")
	}
	rq.Detail("grant", sc.String()+":"+g.Permission.String()+decryptNote(g.Decrypt))
	return tx.PutGrant(&gatehouse.Grant{TeamID: t.ID, Scope: sc, Permission: g.Permission.Permission, Decrypt: g.Decrypt})
}

func decryptNote(d bool) string {
	if d {
		return "+decrypt"
	}
	return ""
}

func removeGrant(rq *Request, tx gatehouse.Tx, t *gatehouse.Team, g grantReq) error {
	sc, err := scopeOf(rq, tx, g.Stack, g.Project, g.Tag)
	if err != nil {
		return err
	}
	rq.Detail("removed_grant", sc.String())
	return tx.DeleteGrant(t.ID, sc)
}

// --- protection rules ---

type protectionJSON struct {
	Stack   string `json:"stack,omitempty"`
	Project string `json:"project,omitempty"`
	Tag     string `json:"tag,omitempty"`
	// Env (project/name) protects one environment, EnvProject every environment of an ESC
	// project (and no stack); a Project or Tag rule selects stacks and environments alike.
	Env        string `json:"env,omitempty"`
	EnvProject string `json:"envProject,omitempty"`
	CreatedBy  string `json:"createdBy,omitempty"`
	Created    string `json:"created,omitempty"`
}

func (s *Server) listProtections(rq *Request) (any, error) {
	var ps []gatehouse.Protection
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ps, err = tx.ListProtections(rq.Org.ID)
		return err
	}); err != nil {
		return nil, err
	}
	out := struct {
		Protections []protectionJSON `json:"protections"`
	}{Protections: []protectionJSON{}}
	for _, p := range ps {
		pj := protectionJSON{Project: p.Scope.Project, CreatedBy: p.CreatedBy, Created: p.Created.Format("2006-01-02T15:04:05Z07:00")}
		if p.Scope.StackRef != nil {
			pj.Stack = p.Scope.StackRef.Project + "/" + p.Scope.StackRef.Stack
		}
		if p.Scope.TagName != "" {
			pj.Tag = p.Scope.TagName + "=" + p.Scope.TagValue
		}
		pj.EnvProject = p.Scope.EnvProject
		if p.Scope.EnvID != 0 {
			name, err := envName(rq, p.Scope.EnvID)
			if err != nil {
				return nil, err
			}
			pj.Env = name
		}
		out.Protections = append(out.Protections, pj)
	}
	return out, nil
}

// envName is project/name of an environment (for listings of rules that name one).
func envName(rq *Request, id int64) (string, error) {
	var name string
	err := rq.View(func(tx gatehouse.Tx) error {
		env, err := tx.GetEnvironmentByID(id)
		if err == nil {
			name = env.Project + "/" + env.Name
		}
		return err
	})
	return name, err
}

// protectionScope is the scope of a protection rule: a stack scope (scopeOf) or an
// environment scope (env project/name, envProject).
func protectionScope(rq *Request, tx gatehouse.Tx, req protectionJSON) (gatehouse.Scope, error) {
	if req.Env == "" && req.EnvProject == "" {
		return scopeOf(rq, tx, req.Stack, req.Project, req.Tag)
	}
	if req.Stack != "" || req.Project != "" || req.Tag != "" || (req.Env != "" && req.EnvProject != "") {
		return gatehouse.Scope{}, gatehouse.Errorf(gatehouse.EINVALID, "name exactly one of stack (project/stack), project, tag (name=value), env (project/name) or envProject")
	}
	if req.EnvProject != "" {
		return envScope(rq, tx, &envPermJSON{ProjectName: req.EnvProject})
	}
	project, name, ok := strings.Cut(req.Env, "/")
	if !ok || name == "" {
		return gatehouse.Scope{}, gatehouse.Errorf(gatehouse.EINVALID, "env must be given as project/name, not %q", req.Env)
	}
	return envScope(rq, tx, &envPermJSON{ProjectName: project, EnvName: name})
}

func (s *Server) changeProtection(add bool) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		var req protectionJSON
		if err := rq.decode(&req); err != nil {
			return nil, err
		}
		err := rq.Change(func(tx gatehouse.Tx) error {
			sc, err := protectionScope(rq, tx, req)
			if err != nil {
				return err
			}
			rq.event.Target = rq.Org.Name + "/protections/" + sc.Key()
			if add {
				return tx.PutProtection(&gatehouse.Protection{OrgID: rq.Org.ID, Scope: sc, CreatedBy: rq.Subject.Name()})
			}
			return tx.DeleteProtection(rq.Org.ID, sc)
		})
		return noContent{}, err
	}
}

// --- who can access a stack ---

type accessJSON struct {
	Kind       string `json:"kind"` // "user", "team", "org-token", "team-token"
	Name       string `json:"name"`
	Permission string `json:"permission"`
	Decrypt    bool   `json:"decrypt"`
	Via        string `json:"via"`
	CanChange  bool   `json:"canChange"` // false when the stack is protected and this is not a pipeline credential
}

// stackAccess lists every principal of the organization that can access the stack, with
// the effective permission and why: the same decision function the request path uses.
func (s *Server) stackAccess(rq *Request) (any, error) {
	st := rq.Stack
	out := struct {
		Stack     string       `json:"stack"`
		Protected bool         `json:"protected"`
		Access    []accessJSON `json:"access"`
	}{Stack: st.Ref().String(), Access: []accessJSON{}}
	out.Protected = stackProtected(rq.facts.Protections, st)
	err := rq.View(func(tx gatehouse.Tx) error {
		ps, err := orgPrincipals(tx, rq.Org, false)
		if err != nil {
			return err
		}
		for i := range ps {
			if acc, ok := stackAccessOf(&ps[i], rq.Org, st); ok {
				out.Access = append(out.Access, acc)
			}
		}
		return nil
	})
	return out, err
}

// stackProtected reports whether a protection rule covers the stack.
func stackProtected(ps []gatehouse.Scope, st *gatehouse.Stack) bool {
	for _, p := range ps {
		if p.Matches(st.ID, st.Project, st.Tags) {
			return true
		}
	}
	return false
}

// principal is someone (or something) of an organization whose access can be explained:
// a member, a team (what its grants give), or a live organization or team token.
type principal struct {
	Kind  string // "user", "team", "org-token", "team-token"
	Name  string
	Sub   *authz.Subject
	Facts authz.Facts
}

// orgPrincipals loads the organization's members and live tokens (and, with teams, its
// teams) with the facts authz.Decide needs about each.
func orgPrincipals(tx gatehouse.Tx, org *gatehouse.Org, teams bool) ([]principal, error) {
	var out []principal
	ms, err := tx.ListMembers(org.ID)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		u := ms[i].User
		sub := &authz.Subject{Kind: authz.UserKind, User: &u}
		f, err := loadFacts(tx, sub, org)
		if err != nil {
			return nil, err
		}
		out = append(out, principal{Kind: "user", Name: u.Name, Sub: sub, Facts: f})
	}
	if teams {
		ts, err := tx.ListTeams(org.ID)
		if err != nil {
			return nil, err
		}
		ps, err := tx.ListProtections(org.ID)
		if err != nil {
			return nil, err
		}
		var prot []gatehouse.Scope
		for _, p := range ps {
			prot = append(prot, p.Scope)
		}
		for _, t := range ts {
			gs, err := tx.ListGrants(t.ID)
			if err != nil {
				return nil, err
			}
			// A team acts with exactly its grants (as its tokens do); its members act as
			// people, so protection rules apply (Pipeline false).
			out = append(out, principal{Kind: "team", Name: t.Name, Sub: &authz.Subject{Kind: authz.TeamToken},
				Facts: authz.Facts{Grants: gs, Protections: prot, Now: tx.Now()}})
		}
	}
	tokens, err := tx.ListTokens(gatehouse.TokenFilter{OrgID: org.ID})
	if err != nil {
		return nil, err
	}
	now := tx.Now()
	for i := range tokens {
		tk := &tokens[i]
		if !tk.Live(now) {
			continue
		}
		sub := &authz.Subject{Token: tk, Pipeline: tk.Pipeline, Kind: authz.OrgToken}
		kind := "org-token"
		if tk.Kind == gatehouse.TokenTeam {
			sub.Kind, kind = authz.TeamToken, "team-token"
		}
		f, err := loadFacts(tx, sub, org)
		if err != nil {
			return nil, err
		}
		out = append(out, principal{Kind: kind, Name: tk.Name, Sub: sub, Facts: f})
	}
	return out, nil
}

// stackAccessOf is what p may do on st and why, asked of authz.Decide; false when nothing.
func stackAccessOf(p *principal, org *gatehouse.Org, st *gatehouse.Stack) (accessJSON, bool) {
	res := authz.Resource{Org: org, Stack: st}
	// The permission level is what the grants give; whether it may be used for changes
	// on a protected stack is CanChange.
	unprotected := p.Facts
	unprotected.Protections = nil
	for _, a := range []authz.Action{authz.StackDelete, authz.StackUpdate, authz.StackRead} {
		if p.Sub.Kind == authz.UserKind && a == authz.StackDelete {
			a = authz.StackRename // both need admin; delete also depends on an org setting
		}
		if d := authz.Decide(p.Sub, a, res, unprotected); d.Allow {
			best := map[authz.Action]string{authz.StackDelete: "admin", authz.StackRename: "admin", authz.StackUpdate: "write", authz.StackRead: "read"}[a]
			acc := accessJSON{Kind: p.Kind, Name: p.Name, Permission: best, Via: d.Reason}
			acc.Decrypt = authz.Decide(p.Sub, authz.StackDecrypt, res, p.Facts).Allow
			acc.CanChange = authz.Decide(p.Sub, authz.StackImport, res, p.Facts).Allow
			return acc, true
		}
	}
	return accessJSON{}, false
}

// stackTeams is GET S/teams: the teams with a grant naming or covering the stack.
func (s *Server) stackTeams(rq *Request) (any, error) {
	st := rq.Stack
	type teamPerm struct {
		Name        string `json:"name"`
		DisplayName string `json:"displayName"`
		Description string `json:"description"`
		Permission  int    `json:"permission"`
		IsMember    bool   `json:"isMember"` // the caller is in the team
		Decrypt     bool   `json:"decrypt"`
		Via         string `json:"via"`
	}
	out := struct {
		ProjectName string     `json:"projectName"`
		Teams       []teamPerm `json:"teams"`
	}{ProjectName: st.Project, Teams: []teamPerm{}}
	mine := map[int64]bool{} // the caller's teams: its facts hold their grants
	for _, g := range rq.facts.Grants {
		mine[g.TeamID] = true
	}
	err := rq.View(func(tx gatehouse.Tx) error {
		ts, err := tx.ListTeams(rq.Org.ID)
		if err != nil {
			return err
		}
		for _, t := range ts {
			gs, err := tx.ListGrants(t.ID)
			if err != nil {
				return err
			}
			// One entry per team: its strongest grant covering the stack.
			var best *teamPerm
			for i := range gs {
				g := &gs[i]
				if !g.Scope.Matches(st.ID, st.Project, st.Tags) {
					continue
				}
				decrypt := g.Decrypt || g.Permission >= gatehouse.PermWrite
				if best == nil {
					best = &teamPerm{Name: t.Name, DisplayName: t.DisplayName, Description: t.Description, IsMember: mine[t.ID]}
				}
				if pulumiPerm[g.Permission] > best.Permission {
					best.Permission, best.Via = pulumiPerm[g.Permission], g.Scope.String()
				}
				best.Decrypt = best.Decrypt || decrypt
			}
			if best != nil {
				out.Teams = append(out.Teams, *best)
			}
		}
		return nil
	})
	return out, err
}

var _ = token.Parse
