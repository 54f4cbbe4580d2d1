package sqlstore

import (
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

const teamCols = `id, org_id, name, display_name, description, created`

func scanTeam(sc interface{ Scan(...any) error }) (*gatehouse.Team, error) {
	var tm gatehouse.Team
	var created int64
	if err := sc.Scan(&tm.ID, &tm.OrgID, &tm.Name, &tm.DisplayName, &tm.Description, &created); err != nil {
		return nil, err
	}
	tm.Created = fromNS(created)
	return &tm, nil
}

func (t *tx) CreateTeam(tm *gatehouse.Team) error {
	tm.Created = t.now
	err := t.queryRow(`INSERT INTO teams (org_id, name, name_key, display_name, description, created) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		tm.OrgID, tm.Name, strings.ToLower(tm.Name), tm.DisplayName, tm.Description, ns(tm.Created)).Scan(&tm.ID)
	return t.conflictOr(err, "team '"+tm.Name+"' already exists")
}

func (t *tx) GetTeam(id int64) (*gatehouse.Team, error) {
	tm, err := scanTeam(t.queryRow(`SELECT `+teamCols+` FROM teams WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "team not found")
	}
	return tm, nil
}

func (t *tx) GetTeamByName(orgID int64, name string) (*gatehouse.Team, error) {
	tm, err := scanTeam(t.queryRow(`SELECT `+teamCols+` FROM teams WHERE org_id = ? AND name_key = ?`, orgID, strings.ToLower(name)))
	if err != nil {
		return nil, one(err, "team '"+name+"' not found")
	}
	return tm, nil
}

func (t *tx) ListTeams(orgID int64) ([]gatehouse.Team, error) {
	return queryAll(t, scanTeam, `SELECT `+teamCols+` FROM teams WHERE org_id = ? ORDER BY name_key`, orgID)
}

func (t *tx) UpdateTeam(tm *gatehouse.Team) error {
	r, err := t.exec(`UPDATE teams SET display_name = ?, description = ? WHERE id = ?`, tm.DisplayName, tm.Description, tm.ID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "team not found")
	}
	return nil
}

func (t *tx) DeleteTeam(id int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	for _, q := range []string{`DELETE FROM team_members WHERE team_id = ?`, `DELETE FROM grants WHERE team_id = ?`} {
		if _, err := t.exec(q, id); err != nil {
			return err
		}
	}
	// The team's tokens die with it (their rows stay, revoked, for the audit trail); a token
	// in its rotation grace period ends now.
	if _, err := t.exec(`UPDATE tokens SET revoked = ? WHERE kind = ? AND team_id = ? AND (revoked = 0 OR revoked > ?)`,
		ns(t.now), string(gatehouse.TokenTeam), id, ns(t.now)); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM teams WHERE id = ?`, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "team not found")
	}
	return nil
}

func (t *tx) PutTeamMember(teamID, userID int64, role string) error {
	if err := t.bump(); err != nil {
		return err
	}
	_, err := t.exec(`INSERT INTO team_members (team_id, user_id, role) VALUES (?, ?, ?) ON CONFLICT (team_id, user_id) DO UPDATE SET role = excluded.role`, teamID, userID, role)
	return err
}

func (t *tx) RemoveTeamMember(teamID, userID int64) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM team_members WHERE team_id = ? AND user_id = ?`, teamID, userID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "not a member of the team")
	}
	return nil
}

func (t *tx) ListTeamMembers(teamID int64) ([]gatehouse.TeamMember, error) {
	scan := func(sc scanner) (*gatehouse.TeamMember, error) {
		var m gatehouse.TeamMember
		var admin, created int64
		if err := sc.Scan(&m.TeamID, &m.Role, &m.User.ID, &m.User.Name, &m.User.Email, &admin, &created); err != nil {
			return nil, err
		}
		m.User.SiteAdmin = admin != 0
		m.User.Created = fromNS(created)
		return &m, nil
	}
	return queryAll(t, scan, `SELECT tm.team_id, tm.role, u.id, u.name, u.email, u.site_admin, u.created FROM team_members tm JOIN users u ON u.id = tm.user_id WHERE tm.team_id = ? ORDER BY u.name_key`, teamID)
}

const grantCols = `g.id, g.team_id, tm.name, g.stack_id, g.project, g.tag_name, g.tag_value, g.env_id, g.env_project, g.env_tag_name, g.env_tag_value, g.permission, g.decrypt, g.max_open_seconds, g.created, COALESCE(o.name, ''), COALESCE(s.project, ''), COALESCE(s.name, '')`

const grantFrom = ` FROM grants g JOIN teams tm ON tm.id = g.team_id LEFT JOIN stacks s ON s.id = g.stack_id AND g.stack_id <> 0 LEFT JOIN orgs o ON o.id = s.org_id`

func (t *tx) grants(where string, args ...any) ([]gatehouse.Grant, error) {
	scan := func(sc scanner) (*gatehouse.Grant, error) {
		var g gatehouse.Grant
		var perm, decrypt, maxOpen, created int64
		var org, project, stack string
		if err := sc.Scan(&g.ID, &g.TeamID, &g.TeamName, &g.Scope.StackID, &g.Scope.Project, &g.Scope.TagName, &g.Scope.TagValue, &g.Scope.EnvID, &g.Scope.EnvProject, &g.Scope.EnvTagName, &g.Scope.EnvTagValue,
			&perm, &decrypt, &maxOpen, &created, &org, &project, &stack); err != nil {
			return nil, err
		}
		g.Permission = gatehouse.Permission(perm)
		g.Decrypt = decrypt != 0
		g.MaxOpen = time.Duration(maxOpen) * time.Second
		g.Created = fromNS(created)
		if g.Scope.StackID != 0 {
			g.Scope.StackRef = &gatehouse.StackRef{Org: org, Project: project, Stack: stack}
		}
		return &g, nil
	}
	return queryAll(t, scan, `SELECT `+grantCols+grantFrom+` WHERE `+where+` ORDER BY tm.name_key, g.scope_key`, args...)
}

func (t *tx) PutGrant(g *gatehouse.Grant) error {
	if err := t.bump(); err != nil {
		return err
	}
	if !g.Scope.Valid() {
		return gatehouse.Errorf(gatehouse.EINVALID, "a grant names exactly one stack, project, tag, environment or environment project")
	}
	if g.MaxOpen < 0 || g.MaxOpen > 0 && (!g.Scope.IsEnv() || g.MaxOpen < time.Second) {
		return gatehouse.Errorf(gatehouse.EINVALID, "a maximum open duration is for environment grants only, and at least one second")
	}
	g.Created = t.now
	_, err := t.exec(`INSERT INTO grants (team_id, scope_key, stack_id, project, tag_name, tag_value, env_id, env_project, env_tag_name, env_tag_value, permission, decrypt, max_open_seconds, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (team_id, scope_key) DO UPDATE SET permission = excluded.permission, decrypt = excluded.decrypt, max_open_seconds = excluded.max_open_seconds`,
		g.TeamID, g.Scope.Key(), g.Scope.StackID, g.Scope.Project, g.Scope.TagName, g.Scope.TagValue, g.Scope.EnvID, g.Scope.EnvProject, g.Scope.EnvTagName, g.Scope.EnvTagValue, int64(g.Permission), b2i(g.Decrypt), int64(g.MaxOpen/time.Second), ns(g.Created))
	return err
}

func (t *tx) DeleteGrant(teamID int64, scope gatehouse.Scope) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM grants WHERE team_id = ? AND scope_key = ?`, teamID, scope.Key())
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "the team has no grant on %s", scope)
	}
	return nil
}

func (t *tx) ListGrants(teamID int64) ([]gatehouse.Grant, error) {
	return t.grants(`g.team_id = ?`, teamID)
}

func (t *tx) ListUserGrants(orgID, userID int64) ([]gatehouse.Grant, error) {
	return t.grants(`tm.org_id = ? AND g.team_id IN (SELECT team_id FROM team_members WHERE user_id = ?)`, orgID, userID)
}

func (t *tx) ListStackGrants(stackID int64) ([]gatehouse.Grant, error) {
	return t.grants(`g.stack_id = ?`, stackID)
}

func (t *tx) PutProtection(p *gatehouse.Protection) error {
	if err := t.bump(); err != nil {
		return err
	}
	if !p.Scope.Valid() || p.Scope.EnvTagName != "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "a protection rule names exactly one stack, project, tag, environment or environment project (a tag rule selects stacks and environments alike)")
	}
	p.Created = t.now
	err := t.queryRow(`INSERT INTO protections (org_id, scope_key, stack_id, project, tag_name, tag_value, env_id, env_project, created_by, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		p.OrgID, p.Scope.Key(), p.Scope.StackID, p.Scope.Project, p.Scope.TagName, p.Scope.TagValue, p.Scope.EnvID, p.Scope.EnvProject, p.CreatedBy, ns(p.Created)).Scan(&p.ID)
	return t.conflictOr(err, p.Scope.String()+" is already protected")
}

func (t *tx) DeleteProtection(orgID int64, scope gatehouse.Scope) error {
	if err := t.bump(); err != nil {
		return err
	}
	r, err := t.exec(`DELETE FROM protections WHERE org_id = ? AND scope_key = ?`, orgID, scope.Key())
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "%s is not protected", scope)
	}
	return nil
}

func (t *tx) ListProtections(orgID int64) ([]gatehouse.Protection, error) {
	scan := func(sc scanner) (*gatehouse.Protection, error) {
		var p gatehouse.Protection
		var created int64
		var project, stack string
		if err := sc.Scan(&p.ID, &p.OrgID, &p.Scope.StackID, &p.Scope.Project, &p.Scope.TagName, &p.Scope.TagValue, &p.Scope.EnvID, &p.Scope.EnvProject, &p.CreatedBy, &created, &project, &stack); err != nil {
			return nil, err
		}
		p.Created = fromNS(created)
		if p.Scope.StackID != 0 {
			p.Scope.StackRef = &gatehouse.StackRef{Project: project, Stack: stack}
		}
		return &p, nil
	}
	return queryAll(t, scan, `SELECT p.id, p.org_id, p.stack_id, p.project, p.tag_name, p.tag_value, p.env_id, p.env_project, p.created_by, p.created, COALESCE(s.project, ''), COALESCE(s.name, '')
		FROM protections p LEFT JOIN stacks s ON s.id = p.stack_id AND p.stack_id <> 0 WHERE p.org_id = ? ORDER BY p.scope_key`, orgID)
}
