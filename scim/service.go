package scim

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// MaxCount is the largest page of Users a query may ask for (Pulumi Cloud: 100; more is
// 400, not silently fewer).
const MaxCount = 100

// MaxMembers bounds the members one group request may name (Pulumi Cloud's validation
// window).
const MaxMembers = 3000

// MaxDisplayName is the longest group display name.
const MaxDisplayName = 100

// Service applies SCIM requests of one organization in the caller's transaction. A
// function run in a transaction may be run again (the store retries serialization
// failures), so Service keeps no state of its own between calls.
type Service struct {
	Tx  gatehouse.Tx
	Org *gatehouse.Org
	// Base is the service provider's base URL (https://host/scim/v2/{org}), for meta.location.
	Base string
	// Detail records a fact in the request's audit event (never a secret).
	Detail func(k, v string)
	// EndSessions ends the person's sessions when they are deprovisioned: those started by
	// the organization's sign-in, or every one of theirs when all is set (an account the
	// organization owns). It returns how many ended. Nil: the server has no sessions.
	EndSessions func(tx gatehouse.Tx, userID, orgID int64, all bool) (int, error)
}

func (s *Service) detail(k, v string) {
	if s.Detail != nil {
		s.Detail(k, v)
	}
}

func notFound(kind, id string) error {
	return errorf(gatehouse.ENOTFOUND, "", "%s %s not found.", kind, quoteFilter(id))
}

// --- users ---

// userView builds the User resource of a record.
func (s *Service) userView(u *gatehouse.SCIMUser) *User {
	out := &User{
		Schemas: []string{SchemaUser}, ID: strconv.FormatInt(u.UserID, 10), ExternalID: u.ExternalID,
		UserName: u.UserName, DisplayName: u.DisplayName, Active: u.Active,
		Meta: Meta{ResourceType: "User", Created: timeString(u.Created), LastModified: timeString(u.Modified), Location: s.Base + "/Users/" + strconv.FormatInt(u.UserID, 10)},
	}
	if u.GivenName != "" || u.FamilyName != "" {
		out.Name = &Name{GivenName: u.GivenName, FamilyName: u.FamilyName, Formatted: strings.TrimSpace(u.GivenName + " " + u.FamilyName)}
	}
	if u.Email != "" {
		out.Emails = []Email{{Value: u.Email, Type: "work", Primary: true}}
	}
	return out
}

// findUser returns the record of the provisioned person id (404 otherwise).
func (s *Service) findUser(id string) (*gatehouse.SCIMUser, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 {
		return nil, notFound("User", id)
	}
	u, err := s.Tx.GetSCIMUser(s.Org.ID, n)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, notFound("User", id)
	}
	return u, err
}

// GetUser is GET /Users/{id}.
func (s *Service) GetUser(id string) (*User, error) {
	u, err := s.findUser(id)
	if err != nil {
		return nil, err
	}
	return s.userView(u), nil
}

// ListUsers is GET /Users: filter userName eq "..." only, paged by startIndex and count.
func (s *Service) ListUsers(filter, startIndex, count string) (*ListResponse, error) {
	start, n, err := paging(startIndex, count)
	if err != nil {
		return nil, err
	}
	var f gatehouse.SCIMUserFilter
	if strings.TrimSpace(filter) != "" {
		pf, err := ParseFilter(filter, SchemaUser, "userName")
		if err != nil {
			return nil, err
		}
		f.UserName = pf.Value
		if f.UserName == "" {
			return listOf(nil, 0, start), nil
		}
	}
	f.Offset, f.Limit = start-1, n
	us, total, err := s.Tx.ListSCIMUsers(s.Org.ID, f)
	if err != nil {
		return nil, err
	}
	res := make([]any, 0, len(us))
	for i := range us {
		res = append(res, s.userView(&us[i]))
	}
	return listOf(res, total, start), nil
}

func listOf(res []any, total, start int) *ListResponse {
	if res == nil {
		res = []any{}
	}
	return &ListResponse{Schemas: []string{SchemaList}, TotalResults: total, StartIndex: start, ItemsPerPage: len(res), Resources: res}
}

// paging parses startIndex (1-based; less than 1 is 1) and count (default and at most
// MaxCount; more is 400; negative is 0).
func paging(startIndex, count string) (int, int, error) {
	start, n := 1, MaxCount
	if startIndex != "" {
		v, err := strconv.Atoi(startIndex)
		if err != nil {
			return 0, 0, invalid(InvalidValue, "startIndex must be an integer.")
		}
		start = max(v, 1)
	}
	if count != "" {
		v, err := strconv.Atoi(count)
		if err != nil {
			return 0, 0, invalid(InvalidValue, "count must be an integer.")
		}
		if v > MaxCount {
			return 0, 0, invalid(InvalidValue, "count must be %d or less.", MaxCount)
		}
		n = max(v, 0)
	}
	return start, n, nil
}

// userState is a person's SCIM attributes while a request changes them.
type userState struct {
	UserName, ExternalID, Given, Family, Display, Email string
	Active                                              bool
}

func stateOf(u *gatehouse.SCIMUser) userState {
	return userState{UserName: u.UserName, ExternalID: u.ExternalID, Given: u.GivenName, Family: u.FamilyName, Display: u.DisplayName, Email: u.Email, Active: u.Active}
}

func (st *userState) fromInput(in *userIn) {
	if in.ExternalID != nil {
		st.ExternalID = *in.ExternalID
	}
	if in.DisplayName != nil {
		st.Display = *in.DisplayName
	}
	if in.Name != nil {
		if in.Name.GivenName != nil {
			st.Given = *in.Name.GivenName
		}
		if in.Name.FamilyName != nil {
			st.Family = *in.Name.FamilyName
		}
	}
	if in.Emails != nil {
		st.Email = workEmail(in.Emails)
	}
	if in.Active != nil {
		st.Active = bool(*in.Active)
	}
}

// checkText refuses values that are not plain text (control characters) or too long.
func checkText(field, v string, maxLen int) error {
	if len(v) > maxLen {
		return invalid(InvalidValue, "%s is too long (at most %d characters).", field, maxLen)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' {
			return invalid(InvalidValue, "%s must be plain text.", field)
		}
	}
	return nil
}

func (st *userState) validate() error {
	for _, f := range []struct {
		name, v string
		n       int
	}{{"userName", st.UserName, 256}, {"externalId", st.ExternalID, 256}, {"name.givenName", st.Given, 256},
		{"name.familyName", st.Family, 256}, {"displayName", st.Display, 256}, {"emails", st.Email, 256}} {
		if err := checkText(f.name, f.v, f.n); err != nil {
			return err
		}
	}
	if strings.TrimSpace(st.UserName) == "" {
		return invalid(InvalidValue, "userName is required.")
	}
	if st.Email != "" && (!strings.Contains(st.Email, "@") || strings.ContainsAny(st.Email, " \t")) {
		return invalid(InvalidValue, "emails: %s is not an email address.", quoteFilter(st.Email))
	}
	return nil
}

// CreateUser is POST /Users. A userName taken in the organization, or an email of another
// account of the organization (a member, provisioned, or created by it), is 409 uniqueness;
// accounts of other organizations with the email are no conflict (a separate account is made). An account the organization created itself and that belongs
// to no other organization (for instance one it provisioned and the IdP hard-deleted) is
// taken over instead of refused.
func (s *Service) CreateUser(body []byte) (*User, error) {
	var in userIn
	if err := decodeJSON(body, &in); err != nil {
		return nil, err
	}
	st := userState{Active: true}
	if in.UserName != nil {
		st.UserName = strings.TrimSpace(*in.UserName)
	}
	st.fromInput(&in)
	if err := st.validate(); err != nil {
		return nil, err
	}
	s.detail("userName", st.UserName)
	if _, total, err := s.Tx.ListSCIMUsers(s.Org.ID, gatehouse.SCIMUserFilter{UserName: st.UserName}); err != nil {
		return nil, err
	} else if total > 0 {
		return nil, errorf(gatehouse.ECONFLICT, Uniqueness, "User with userName %s already exists.", st.UserName)
	}
	var acct *gatehouse.User
	if st.Email != "" {
		users, err := s.Tx.FindUsersByEmail(st.Email)
		if err != nil {
			return nil, err
		}
		for i := range users {
			ok, err := s.adoptable(&users[i])
			if err != nil {
				return nil, err
			}
			if ok {
				acct = &users[i]
				continue
			}
			mine, err := s.ofThisOrg(&users[i])
			if err != nil {
				return nil, err
			}
			if mine {
				return nil, errorf(gatehouse.ECONFLICT, Uniqueness, "Email %s already in use by another Gatehouse account.", st.Email)
			}
			// An account of other organizations only (its email is whatever was typed
			// there, unverified): not a conflict, or any organization could block this
			// one's provisioning by creating an account with the email first. The person
			// gets a separate account. The audit event says so without naming the other
			// account: it belongs to other organizations, whose members this one's admins
			// do not see.
			s.detail("email_also_on_other_account", "true")
		}
	}
	if acct == nil {
		login, err := s.freeLogin(st.UserName)
		if err != nil {
			return nil, err
		}
		acct = &gatehouse.User{Name: login, Email: st.Email, CreatedByOrg: s.Org.ID}
		if err := s.Tx.CreateUser(acct); err != nil {
			return nil, err
		}
		s.detail("created_account", acct.Name)
	} else {
		s.detail("adopted_account", acct.Name)
	}
	rec := &gatehouse.SCIMUser{OrgID: s.Org.ID, UserID: acct.ID, UserName: st.UserName, ExternalID: st.ExternalID,
		GivenName: st.Given, FamilyName: st.Family, DisplayName: st.Display, Active: st.Active}
	if !st.Active {
		rec.Role = gatehouse.RoleMember
	}
	if err := s.Tx.CreateSCIMUser(rec); err != nil {
		if gatehouse.IsCode(err, gatehouse.ECONFLICT) {
			return nil, errorf(gatehouse.ECONFLICT, Uniqueness, "User with userName %s already exists.", st.UserName)
		}
		return nil, err
	}
	if st.Active {
		if _, err := s.Tx.GetMember(s.Org.ID, acct.ID); gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			if err := s.Tx.PutMember(s.Org.ID, acct.ID, gatehouse.RoleMember); err != nil {
				return nil, err
			}
		} else if err != nil {
			return nil, err
		}
	}
	s.detail("scim_id", strconv.FormatInt(acct.ID, 10))
	rec, err := s.Tx.GetSCIMUser(s.Org.ID, acct.ID)
	if err != nil {
		return nil, err
	}
	return s.userView(rec), nil
}

// ofThisOrg reports whether an account is the organization's business: a member, provisioned
// here, or created by it. Only such accounts make an email a conflict (CreateUser).
func (s *Service) ofThisOrg(u *gatehouse.User) (bool, error) {
	if u.CreatedByOrg == s.Org.ID {
		return true, nil
	}
	if _, err := s.Tx.GetMember(s.Org.ID, u.ID); err == nil {
		return true, nil
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return false, err
	}
	if _, err := s.Tx.GetSCIMUser(s.Org.ID, u.ID); err == nil {
		return true, nil
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return false, err
	}
	return false, nil
}

// adoptable reports whether an existing account with the new person's email may become
// theirs: the organization created it, it is not provisioned here already, not a site
// administrator, not disabled, and it belongs to no other organization.
func (s *Service) adoptable(u *gatehouse.User) (bool, error) {
	if u.CreatedByOrg != s.Org.ID || u.SiteAdmin || !u.Disabled.IsZero() {
		return false, nil
	}
	if _, err := s.Tx.GetSCIMUser(s.Org.ID, u.ID); err == nil {
		return false, nil
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return false, err
	}
	orgs, err := s.Tx.ListUserOrgs(u.ID)
	if err != nil {
		return false, err
	}
	for _, o := range orgs {
		if o.Org.ID != s.Org.ID {
			return false, nil
		}
	}
	return true, nil
}

// freeLogin derives an unused Gatehouse login (3-40 of letters, digits, '-' and '_',
// starting and ending with a letter or digit) from a SCIM userName.
func (s *Service) freeLogin(userName string) (string, error) {
	base := Login(userName)
	for i := 1; i < 1000; i++ {
		name := base
		if i > 1 {
			suffix := "-" + strconv.Itoa(i)
			name = strings.TrimRight(base[:min(len(base), 40-len(suffix))], "-_") + suffix
		}
		if _, err := s.Tx.GetUserByName(name); gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return name, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", errorf(gatehouse.ECONFLICT, Uniqueness, "No free account name for userName %s.", userName)
}

// Login derives a Gatehouse login from a SCIM userName: the part before '@', with every
// other character than letters, digits, '-' and '_' made '-', lower-cased, 3 to 40 long.
func Login(userName string) string {
	local, _, _ := strings.Cut(userName, "@")
	var b strings.Builder
	for _, r := range strings.ToLower(local) {
		switch {
		case 'a' <= r && r <= 'z', '0' <= r && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-_")
	if len(name) > 40 {
		name = strings.TrimRight(name[:40], "-_")
	}
	for len(name) < 3 {
		name += "0"
	}
	return name
}

// ReplaceUser is PUT /Users/{id}: the whole resource; keys Gatehouse does not keep are
// ignored (Okta sends password, groups, locale); userName may not change.
func (s *Service) ReplaceUser(id string, body []byte) (*User, error) {
	rec, err := s.findUser(id)
	if err != nil {
		return nil, err
	}
	var in userIn
	if err := decodeJSON(body, &in); err != nil {
		return nil, err
	}
	if in.UserName != nil && !strings.EqualFold(strings.TrimSpace(*in.UserName), rec.UserName) {
		return nil, immutable()
	}
	st := stateOf(rec)
	// A replacement: attributes it leaves out are cleared (active and userName excepted).
	st.ExternalID, st.Given, st.Family, st.Display = "", "", "", ""
	if in.Emails == nil {
		in.Emails = []emailIn{}
	}
	st.fromInput(&in)
	return s.store(rec, st)
}

func immutable() error {
	return invalid(Mutability, "Attribute 'userName' is immutable.")
}

// PatchRequest is a PATCH body.
type PatchRequest struct {
	Schemas    []string  `json:"schemas"`
	Operations []PatchOp `json:"Operations"`
}

// PatchOp is one operation; Op is matched regardless of case (Entra sends "Replace").
type PatchOp struct {
	Op    string          `json:"op"`
	Path  string          `json:"path"`
	Value json.RawMessage `json:"value"`
}

func parsePatch(body []byte) ([]PatchOp, error) {
	var pr PatchRequest
	if err := decodeJSON(body, &pr); err != nil {
		return nil, err
	}
	if len(pr.Operations) == 0 {
		return nil, invalid(InvalidSyntax, "A PATCH request needs at least one operation.")
	}
	if len(pr.Operations) > 1000 {
		return nil, invalid(InvalidSyntax, "Too many operations (at most 1000).")
	}
	for i := range pr.Operations {
		op := &pr.Operations[i]
		op.Op = strings.ToLower(strings.TrimSpace(op.Op))
		switch op.Op {
		case "add", "replace", "remove":
		default:
			return nil, invalid(InvalidSyntax, "Unknown operation %q: use add, replace or remove.", quoteFilter(op.Op))
		}
		if op.Op == "add" && (len(op.Value) == 0 || string(op.Value) == "null") {
			return nil, invalid(InvalidValue, "The add operation needs a value.")
		}
	}
	return pr.Operations, nil
}

// PatchUser is PATCH /Users/{id}. Every operation is checked and applied to a copy first:
// one that fails fails the request and nothing is stored.
func (s *Service) PatchUser(id string, body []byte) (*User, error) {
	rec, err := s.findUser(id)
	if err != nil {
		return nil, err
	}
	ops, err := parsePatch(body)
	if err != nil {
		return nil, err
	}
	st := stateOf(rec)
	for _, op := range ops {
		if op.Path == "" {
			// Okta's (and Entra's) form: the value is an object of attributes.
			var m map[string]json.RawMessage
			if err := json.Unmarshal(op.Value, &m); err != nil {
				return nil, invalid(InvalidValue, "An operation without a path needs an object value.")
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
				if strings.EqualFold(k, SchemaUser) {
					// The core schema's attributes nested under its URN.
					var inner map[string]json.RawMessage
					if err := json.Unmarshal(m[k], &inner); err != nil {
						return nil, invalid(InvalidValue, "Invalid value for %s.", k)
					}
					for ik, iv := range inner {
						if err := s.patchUserPath(&st, op.Op, ik, iv); err != nil {
							return nil, err
						}
					}
					continue
				}
				if err := s.patchUserPath(&st, op.Op, k, m[k]); err != nil {
					return nil, err
				}
			}
			continue
		}
		if err := s.patchUserPath(&st, op.Op, op.Path, op.Value); err != nil {
			return nil, err
		}
	}
	return s.store(rec, st)
}

func (s *Service) patchUserPath(st *userState, op, path string, v json.RawMessage) error {
	p, err := ParsePath(path)
	if err != nil {
		return err
	}
	return applyUser(st, op, p, v)
}

// applyUser applies one operation on one path to st.
func applyUser(st *userState, op string, p Path, v json.RawMessage) error {
	remove := op == "remove" || len(v) == 0 || string(v) == "null"
	str := func(dst *string) error {
		if remove {
			*dst = ""
			return nil
		}
		if err := json.Unmarshal(v, dst); err != nil {
			return invalid(InvalidValue, "Invalid value for %s: expected a string.", p)
		}
		return nil
	}
	switch {
	case p.Is(SchemaUser, "userName", ""):
		var name string
		if remove {
			return immutable()
		}
		if err := json.Unmarshal(v, &name); err != nil {
			return invalid(InvalidValue, "Invalid value for %s: expected a string.", p)
		}
		if !strings.EqualFold(strings.TrimSpace(name), st.UserName) {
			return immutable()
		}
		return nil
	case p.Is(SchemaUser, "displayName", ""):
		return str(&st.Display)
	case p.Is(SchemaUser, "externalId", ""):
		return str(&st.ExternalID)
	case p.Is(SchemaUser, "name", "givenName"):
		return str(&st.Given)
	case p.Is(SchemaUser, "name", "familyName"):
		return str(&st.Family)
	case p.Is(SchemaUser, "name", ""):
		if remove {
			st.Given, st.Family = "", ""
			return nil
		}
		var n struct {
			GivenName  *string `json:"givenName"`
			FamilyName *string `json:"familyName"`
		}
		if err := json.Unmarshal(v, &n); err != nil {
			return invalid(InvalidValue, "Invalid value for name: expected an object.")
		}
		if op == "replace" {
			st.Given, st.Family = "", ""
		}
		if n.GivenName != nil {
			st.Given = *n.GivenName
		}
		if n.FamilyName != nil {
			st.Family = *n.FamilyName
		}
		return nil
	case p.Is(SchemaUser, "active", ""):
		if remove {
			return invalid(InvalidValue, "active cannot be removed.")
		}
		var b flexBool
		if err := json.Unmarshal(v, &b); err != nil {
			return invalid(InvalidValue, "Invalid value for active: expected a boolean.")
		}
		st.Active = bool(b)
		return nil
	case p.Is(SchemaUser, "emails", ""):
		if remove {
			st.Email = ""
			return nil
		}
		var es []emailIn
		if err := json.Unmarshal(v, &es); err != nil {
			return invalid(InvalidValue, "Invalid value for emails: expected a list of emails.")
		}
		if e := workEmail(es); e != "" || op == "replace" {
			st.Email = e
		}
		return nil
	case p.Filter != nil && p.inSchema(SchemaUser) && strings.EqualFold(p.Attr, "emails") &&
		strings.EqualFold(p.Filter.Attr, "type") && strings.EqualFold(p.Filter.Value, "work") &&
		(strings.EqualFold(p.Sub, "value") || p.Sub == ""):
		if p.Sub == "" && !remove {
			var e emailIn
			if err := json.Unmarshal(v, &e); err != nil {
				return invalid(InvalidValue, "Invalid value for %s: expected an email.", p)
			}
			st.Email = strings.TrimSpace(e.Value)
			return nil
		}
		if err := str(&st.Email); err != nil {
			return err
		}
		st.Email = strings.TrimSpace(st.Email)
		return nil
	}
	return invalid(InvalidPath, "Unknown path: %s.", quoteFilter(p.String()))
}

// store writes a person's changed attributes, checking a new email's uniqueness, and
// deprovisions or reactivates them when active changes.
func (s *Service) store(rec *gatehouse.SCIMUser, st userState) (*User, error) {
	st.UserName = rec.UserName
	if err := st.validate(); err != nil {
		return nil, err
	}
	s.detail("userName", rec.UserName)
	s.detail("scim_id", strconv.FormatInt(rec.UserID, 10))
	if !strings.EqualFold(st.Email, rec.Email) {
		users, err := s.Tx.FindUsersByEmail(st.Email)
		if err != nil {
			return nil, err
		}
		for _, u := range users {
			if u.ID != rec.UserID {
				return nil, errorf(gatehouse.ECONFLICT, Uniqueness, "Email %s already in use by another Gatehouse account.", st.Email)
			}
		}
	}
	if st.Email != rec.Email {
		if err := s.Tx.SetUserEmail(rec.UserID, st.Email); err != nil {
			return nil, err
		}
	}
	wasActive := rec.Active
	rec.ExternalID, rec.GivenName, rec.FamilyName, rec.DisplayName, rec.Active = st.ExternalID, st.Given, st.Family, st.Display, st.Active
	switch {
	case wasActive && !st.Active:
		if err := s.deprovision(rec); err != nil {
			return nil, err
		}
	case !wasActive && st.Active:
		if err := s.reactivate(rec); err != nil {
			return nil, err
		}
	}
	if err := s.Tx.UpdateSCIMUser(rec); err != nil {
		return nil, err
	}
	rec, err := s.Tx.GetSCIMUser(s.Org.ID, rec.UserID)
	if err != nil {
		return nil, err
	}
	return s.userView(rec), nil
}

// deprovision ends the person's access to the organization in the caller's transaction:
// their membership (its role is kept in the record for a reactivation) and every team of
// the organization; their personal tokens bound to the organization (issued by its OIDC
// token exchange) and, for an account the organization owns (created by it, a member of no
// other organization), every personal token; their sessions. The store bumps the security
// epoch, so every process drops what it cached on its next request. Updates they started
// keep their lease until it expires (it is not renewed: see httpapi renewLease).
func (s *Service) deprovision(rec *gatehouse.SCIMUser) error {
	s.detail("deprovisioned", "true")
	rec.Active = false
	m, err := s.Tx.GetMember(s.Org.ID, rec.UserID)
	switch {
	case err == nil:
		rec.Role = m.Role
		teams, err := s.Tx.ListTeams(s.Org.ID)
		if err != nil {
			return err
		}
		left := 0
		for _, t := range teams {
			if err := s.Tx.RemoveTeamMember(t.ID, rec.UserID); err == nil {
				left++
			} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
		}
		s.detail("teams_left", strconv.Itoa(left))
		if err := s.Tx.RemoveMember(s.Org.ID, rec.UserID); err != nil {
			return err
		}
	case gatehouse.IsCode(err, gatehouse.ENOTFOUND):
		if rec.Role == "" {
			rec.Role = gatehouse.RoleMember
		}
	default:
		return err
	}
	u, err := s.Tx.GetUser(rec.UserID)
	if err != nil {
		return err
	}
	orgs, err := s.Tx.ListUserOrgs(rec.UserID)
	if err != nil {
		return err
	}
	owned := u.CreatedByOrg == s.Org.ID && len(orgs) == 0 && !u.SiteAdmin
	tks, err := s.Tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal, UserID: rec.UserID})
	if err != nil {
		return err
	}
	now := s.Tx.Now()
	revoked := 0
	for _, tk := range tks {
		if !tk.Live(now) {
			continue
		}
		if tk.OrgID == s.Org.ID || owned {
			if err := s.Tx.RevokeToken(tk.ID, now); err != nil {
				return err
			}
			revoked++
		}
	}
	s.detail("revoked_tokens", strconv.Itoa(revoked))
	if s.EndSessions != nil {
		n, err := s.EndSessions(s.Tx, rec.UserID, s.Org.ID, owned)
		if err != nil {
			return err
		}
		s.detail("ended_sessions", strconv.Itoa(n))
	}
	return nil
}

// reactivate gives the person their membership back, with the role they had (revoked
// tokens and ended sessions stay ended; teams come back as the IdP pushes its groups).
func (s *Service) reactivate(rec *gatehouse.SCIMUser) error {
	s.detail("reactivated", "true")
	role := rec.Role
	if !role.Valid() {
		role = gatehouse.RoleMember
	}
	if _, err := s.Tx.GetMember(s.Org.ID, rec.UserID); gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		if err := s.Tx.PutMember(s.Org.ID, rec.UserID, role); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	rec.Active, rec.Role = true, ""
	return nil
}

// DeleteUser is DELETE /Users/{id} (Entra ID's hard delete, after its soft delete): the
// person is deprovisioned and the SCIM record forgotten; the account and its history stay.
// Pulumi Cloud has no user deletion; answering 204 keeps Entra's provisioning logs clean.
func (s *Service) DeleteUser(id string) error {
	rec, err := s.findUser(id)
	if err != nil {
		return err
	}
	s.detail("userName", rec.UserName)
	s.detail("scim_id", id)
	if rec.Active {
		if err := s.deprovision(rec); err != nil {
			return err
		}
	}
	return s.Tx.DeleteSCIMUser(s.Org.ID, rec.UserID)
}
