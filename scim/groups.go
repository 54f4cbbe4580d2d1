package scim

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Groups are teams. A team the IdP created or changed is managed by SCIM: its members and
// name are read-only through the other APIs (its grants are not: admins give SCIM teams
// their permissions in Gatehouse).

func (s *Service) findTeam(id string) (*gatehouse.Team, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return nil, notFound("Group", id)
	}
	t, err := s.Tx.GetTeam(n)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || err == nil && t.OrgID != s.Org.ID {
		return nil, notFound("Group", id)
	}
	return t, err
}

// groupView builds the Group resource of a team (without members when withMembers is not set).
func (s *Service) groupView(t *gatehouse.Team, withMembers bool) (*Group, error) {
	id := strconv.FormatInt(t.ID, 10)
	g := &Group{Schemas: []string{SchemaGroup}, ID: id, DisplayName: displayOf(t),
		Meta: Meta{ResourceType: "Group", Created: timeString(t.Created), LastModified: timeString(t.Created), Location: s.Base + "/Groups/" + id}}
	if _, m, err := s.Tx.SCIMTeamTimes(t.ID); err == nil {
		g.Meta.LastModified = timeString(m)
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, err
	}
	if withMembers {
		ms, err := s.Tx.ListTeamMembers(t.ID)
		if err != nil {
			return nil, err
		}
		members := make([]Member, 0, len(ms))
		for _, m := range ms {
			uid := strconv.FormatInt(m.User.ID, 10)
			members = append(members, Member{Value: uid, Display: m.User.Name, Ref: s.Base + "/Users/" + uid})
		}
		g.Members = &members
	}
	return g, nil
}

func displayOf(t *gatehouse.Team) string {
	if t.DisplayName != "" {
		return t.DisplayName
	}
	return t.Name
}

// GetGroup is GET /Groups/{id} (any team of the organization).
func (s *Service) GetGroup(id string, withMembers bool) (*Group, error) {
	t, err := s.findTeam(id)
	if err != nil {
		return nil, err
	}
	return s.groupView(t, withMembers)
}

// ListGroups is GET /Groups: every team, or those whose display name is the filter's
// (displayName eq "..." only), unpaginated as in Pulumi Cloud.
func (s *Service) ListGroups(filter string, withMembers bool) (*ListResponse, error) {
	var want *string
	if strings.TrimSpace(filter) != "" {
		f, err := ParseFilter(filter, SchemaGroup, "displayName")
		if err != nil {
			return nil, err
		}
		want = &f.Value
	}
	teams, err := s.Tx.ListTeams(s.Org.ID)
	if err != nil {
		return nil, err
	}
	res := []any{}
	for i := range teams {
		if want != nil && !strings.EqualFold(displayOf(&teams[i]), *want) {
			continue
		}
		g, err := s.groupView(&teams[i], withMembers)
		if err != nil {
			return nil, err
		}
		res = append(res, g)
	}
	return listOf(res, len(res), 1), nil
}

func checkDisplayName(name string) error {
	if strings.TrimSpace(name) == "" {
		return invalid(InvalidValue, "displayName is required.")
	}
	if len([]rune(name)) > MaxDisplayName {
		return invalid(InvalidValue, "Display name is too long. It must be %d characters or less", MaxDisplayName)
	}
	return checkText("displayName", name, 4*MaxDisplayName)
}

// CreateGroup is POST /Groups: a new team managed by SCIM, with the members given (every
// one a provisioned, active person, or nothing is created).
func (s *Service) CreateGroup(body []byte) (*Group, error) {
	var in groupIn
	if err := decodeJSON(body, &in); err != nil {
		return nil, err
	}
	if in.DisplayName == nil {
		return nil, invalid(InvalidValue, "displayName is required.")
	}
	name := strings.TrimSpace(*in.DisplayName)
	if err := checkDisplayName(name); err != nil {
		return nil, err
	}
	s.detail("displayName", name)
	teams, err := s.Tx.ListTeams(s.Org.ID)
	if err != nil {
		return nil, err
	}
	taken := map[string]bool{}
	for i := range teams {
		if strings.EqualFold(displayOf(&teams[i]), name) {
			return nil, errorf(gatehouse.ECONFLICT, Uniqueness, "Group with displayName %s already exists.", name)
		}
		taken[strings.ToLower(teams[i].Name)] = true
	}
	t := &gatehouse.Team{OrgID: s.Org.ID, Name: freeTeamName(name, taken), DisplayName: name, Description: "Managed by SCIM provisioning"}
	if err := s.Tx.CreateTeam(t); err != nil {
		return nil, err
	}
	if err := s.Tx.MarkSCIMTeam(s.Org.ID, t.ID); err != nil {
		return nil, err
	}
	s.detail("scim_id", strconv.FormatInt(t.ID, 10))
	s.detail("team", t.Name)
	if in.Members != nil {
		if err := s.setMembers(t, nil, memberIDs(*in.Members)); err != nil {
			return nil, err
		}
	}
	return s.groupView(t, true)
}

// freeTeamName derives an unused team name (3-40 of letters, digits, '-', '_') from a
// display name.
func freeTeamName(display string, taken map[string]bool) string {
	base := Login(strings.ReplaceAll(display, "@", "-"))
	name := base
	for i := 2; taken[strings.ToLower(name)]; i++ {
		suffix := "-" + strconv.Itoa(i)
		name = strings.TrimRight(base[:min(len(base), 40-len(suffix))], "-_") + suffix
	}
	return name
}

func memberIDs(ms []memberIn) []string {
	out := make([]string, 0, len(ms))
	for _, m := range ms {
		out = append(out, strings.TrimSpace(m.Value))
	}
	return out
}

// setMembers makes the team's members exactly want (IDs), given the current ones (nil:
// load them). Every member added must be a provisioned, active person of the organization;
// otherwise nothing changes (400 invalidValue naming them all). Changes are written as the
// difference, so two requests adding different members never lose either.
func (s *Service) setMembers(t *gatehouse.Team, current map[int64]bool, want []string) error {
	if len(want) > MaxMembers {
		return invalid(InvalidValue, "Too many members in one request (at most %d).", MaxMembers)
	}
	if current == nil {
		var err error
		if current, err = s.members(t); err != nil {
			return err
		}
	}
	target := map[int64]bool{}
	var bad []string
	for _, id := range want {
		n, ok, err := s.validMember(id)
		if err != nil {
			return err
		}
		if !ok {
			bad = append(bad, quoteFilter(id))
			continue
		}
		target[n] = true
	}
	if len(bad) > 0 {
		return invalid(InvalidValue, "Cannot add invalid members to team. Invalid member ids: %s", strings.Join(bad, ", "))
	}
	return s.applyMembers(t, current, target)
}

// validMember reports whether id names a provisioned, active person of the organization.
func (s *Service) validMember(id string) (int64, bool, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, nil
	}
	u, err := s.Tx.GetSCIMUser(s.Org.ID, n)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return n, u.Active, nil
}

func (s *Service) members(t *gatehouse.Team) (map[int64]bool, error) {
	ms, err := s.Tx.ListTeamMembers(t.ID)
	if err != nil {
		return nil, err
	}
	cur := map[int64]bool{}
	for _, m := range ms {
		cur[m.User.ID] = true
	}
	return cur, nil
}

// applyMembers writes the difference between current and target.
func (s *Service) applyMembers(t *gatehouse.Team, current, target map[int64]bool) error {
	var added, removed []int64
	for id := range target {
		if !current[id] {
			added = append(added, id)
		}
	}
	for id := range current {
		if !target[id] {
			removed = append(removed, id)
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i] < added[j] })
	sort.Slice(removed, func(i, j int) bool { return removed[i] < removed[j] })
	for _, id := range added {
		if err := s.Tx.PutTeamMember(t.ID, id, "member"); err != nil {
			return err
		}
	}
	for _, id := range removed {
		if err := s.Tx.RemoveTeamMember(t.ID, id); err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
	}
	if len(added) > 0 {
		s.detail("members_added", joinIDs(added))
	}
	if len(removed) > 0 {
		s.detail("members_removed", joinIDs(removed))
	}
	return nil
}

func joinIDs(ids []int64) string {
	const most = 50
	parts := make([]string, 0, min(len(ids), most))
	for i, id := range ids {
		if i == most {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, strconv.FormatInt(id, 10))
	}
	return strings.Join(parts, ",")
}

// manage records the change's time of a team SCIM manages.
func (s *Service) manage(t *gatehouse.Team) error {
	return s.Tx.TouchSCIMTeam(t.ID)
}

// findManagedTeam finds a team SCIM may change: one it created (CreateGroup). A team made
// in Gatehouse (console, API, CLI) is refused with a 409: the identity provider must not take
// it over (its members and name would become read-only here); an admin can only release a
// team from SCIM, so a team the IdP should manage is created by the IdP.
func (s *Service) findManagedTeam(id string) (*gatehouse.Team, error) {
	t, err := s.findTeam(id)
	if err != nil {
		return nil, err
	}
	ok, err := s.Tx.IsSCIMTeam(t.ID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, errorf(gatehouse.ECONFLICT, "", "Group %s (team %s) was not created by SCIM provisioning: it is managed in Gatehouse and cannot be changed here; push a new group instead.", id, t.Name)
	}
	return t, nil
}

// ReplaceGroup is PUT /Groups/{id}: display name and exactly the members given.
func (s *Service) ReplaceGroup(id string, body []byte) (*Group, error) {
	t, err := s.findManagedTeam(id)
	if err != nil {
		return nil, err
	}
	var in groupIn
	if err := decodeJSON(body, &in); err != nil {
		return nil, err
	}
	s.detail("scim_id", id)
	s.detail("team", t.Name)
	if in.DisplayName != nil {
		if err := s.rename(t, *in.DisplayName); err != nil {
			return nil, err
		}
	}
	want := []string{}
	if in.Members != nil {
		want = memberIDs(*in.Members)
	}
	if err := s.setMembers(t, nil, want); err != nil {
		return nil, err
	}
	if err := s.manage(t); err != nil {
		return nil, err
	}
	return s.groupView(t, true)
}

func (s *Service) rename(t *gatehouse.Team, name string) error {
	name = strings.TrimSpace(name)
	if err := checkDisplayName(name); err != nil {
		return err
	}
	if name == t.DisplayName {
		return nil
	}
	teams, err := s.Tx.ListTeams(s.Org.ID)
	if err != nil {
		return err
	}
	for i := range teams {
		if teams[i].ID != t.ID && strings.EqualFold(displayOf(&teams[i]), name) {
			return errorf(gatehouse.ECONFLICT, Uniqueness, "Group with displayName %s already exists.", name)
		}
	}
	s.detail("renamed_from", displayOf(t))
	s.detail("displayName", name)
	t.DisplayName = name
	return s.Tx.UpdateTeam(t)
}

// PatchGroup is PATCH /Groups/{id}: rename (displayName, or Okta's value object without a
// path) and member changes: add, remove (Okta: members[value eq "id"]; Entra: a value
// list), replace. The operations are applied to a copy; members added are validated all
// together; then the difference is written. Anything invalid fails the whole request.
func (s *Service) PatchGroup(id string, body []byte) error {
	t, err := s.findManagedTeam(id)
	if err != nil {
		return err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return err
	}
	s.detail("scim_id", id)
	s.detail("team", t.Name)
	current, err := s.members(t)
	if err != nil {
		return err
	}
	target := map[int64]bool{}
	for id := range current {
		target[id] = true
	}
	var added []string // IDs added by the operations, validated together
	addedSet := map[string]bool{}
	add := func(ids []string) {
		for _, id := range ids {
			if !addedSet[id] {
				addedSet[id] = true
				added = append(added, id)
			}
		}
	}
	del := func(id string) {
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			delete(target, n)
		}
		if addedSet[id] {
			delete(addedSet, id)
			for i, a := range added {
				if a == id {
					added = append(added[:i], added[i+1:]...)
					break
				}
			}
		}
	}
	var newName *string
	members := func(op string, v json.RawMessage) error {
		var ms []memberIn
		if len(v) > 0 && string(v) != "null" {
			if err := json.Unmarshal(v, &ms); err != nil {
				return invalid(InvalidValue, "Invalid value for members: expected a list of members.")
			}
		}
		switch op {
		case "add":
			add(memberIDs(ms))
		case "replace":
			for id := range target {
				del(strconv.FormatInt(id, 10))
			}
			for _, id := range added {
				delete(addedSet, id)
			}
			added = nil
			add(memberIDs(ms))
		case "remove":
			if len(ms) == 0 && (len(v) == 0 || string(v) == "null") {
				for id := range target {
					del(strconv.FormatInt(id, 10))
				}
				added, addedSet = nil, map[string]bool{}
			}
			for _, id := range memberIDs(ms) {
				del(id)
			}
		}
		return nil
	}
	apply := func(op string, p Path, v json.RawMessage) error {
		switch {
		case p.Is(SchemaGroup, "displayName", ""):
			if op == "remove" {
				return invalid(InvalidValue, "displayName cannot be removed.")
			}
			var name string
			if err := json.Unmarshal(v, &name); err != nil {
				return invalid(InvalidValue, "Invalid value for displayName: expected a string.")
			}
			newName = &name
			return nil
		case p.Is(SchemaGroup, "members", ""):
			return members(op, v)
		case p.Filter != nil && p.inSchema(SchemaGroup) && strings.EqualFold(p.Attr, "members") &&
			strings.EqualFold(p.Filter.Attr, "value") && p.Sub == "" && op == "remove":
			del(p.Filter.Value)
			return nil
		}
		return invalid(InvalidPath, "Unknown path: %s.", quoteFilter(p.String()))
	}
	for _, op := range ops {
		if op.Path == "" {
			var m map[string]json.RawMessage
			if err := json.Unmarshal(op.Value, &m); err != nil {
				return invalid(InvalidValue, "An operation without a path needs an object value.")
			}
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if strings.EqualFold(k, "schemas") || strings.EqualFold(k, "id") && strings.Trim(string(m[k]), `"`) == id {
					continue
				}
				p, err := ParsePath(k)
				if err != nil {
					return err
				}
				if err := apply(op.Op, p, m[k]); err != nil {
					return err
				}
			}
			continue
		}
		p, err := ParsePath(op.Path)
		if err != nil {
			return err
		}
		if err := apply(op.Op, p, op.Value); err != nil {
			return err
		}
	}
	if len(added) > MaxMembers {
		return invalid(InvalidValue, "Too many members in one request (at most %d).", MaxMembers)
	}
	var bad []string
	for _, id := range added {
		n, ok, err := s.validMember(id)
		if err != nil {
			return err
		}
		if !ok {
			bad = append(bad, quoteFilter(id))
			continue
		}
		target[n] = true
	}
	if len(bad) > 0 {
		return invalid(InvalidValue, "Cannot add invalid members to team. Invalid member ids: %s", strings.Join(bad, ", "))
	}
	if newName != nil {
		if err := s.rename(t, *newName); err != nil {
			return err
		}
	}
	if err := s.applyMembers(t, current, target); err != nil {
		return err
	}
	return s.manage(t)
}

// DeleteGroup is DELETE /Groups/{id}: the team goes, with its grants (its tokens are
// revoked by the store); its members stay in the organization. Only a team SCIM manages
// (findManagedTeam): a team made in Gatehouse, or one an admin released, is refused with a
// 409, as its PUT and PATCH are, so a SCIM token cannot delete teams (and revoke their
// tokens) it never provisioned. The deletion is audited (the SCIM token is the actor).
func (s *Service) DeleteGroup(id string) error {
	t, err := s.findManagedTeam(id)
	if err != nil {
		return err
	}
	s.detail("scim_id", id)
	s.detail("team", t.Name)
	tks, err := s.Tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenTeam, OrgID: s.Org.ID, TeamID: t.ID})
	if err != nil {
		return err
	}
	s.detail("revoked_tokens", strconv.Itoa(len(tks)))
	return s.Tx.DeleteTeam(t.ID)
}
