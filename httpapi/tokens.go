package httpapi

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/token"
)

// The CLI's owner-name rule, used for organizations, users and teams.
var ownerRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9-_]{1,38}[a-zA-Z0-9]$`)

var tokenNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9 _.:@-]{0,39}$`)

// newAccessToken makes a token value and its metadata.
func newAccessToken(kind gatehouse.TokenKind) (string, *gatehouse.Token, error) {
	v, err := token.New(token.Kind(kind))
	if err != nil {
		return "", nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "cannot create a token")
	}
	return v, &gatehouse.Token{ID: uuid.NewString(), Kind: kind, Digest: token.Digest(v)}, nil
}

// limitExpiry applies an organization's maximum token lifetime to a new token: a token
// without expiry gets the maximum; a longer one is refused, or with clamp shortened to it.
func limitExpiry(org *gatehouse.Org, tk *gatehouse.Token, now time.Time, clamp bool) error {
	maxDays := org.Settings.MaxTokenLifetimeDays
	if maxDays <= 0 {
		return nil
	}
	limit := now.Add(time.Duration(maxDays) * 24 * time.Hour)
	if tk.Expires.IsZero() || clamp && tk.Expires.After(limit) {
		tk.Expires = limit
		return nil
	}
	if tk.Expires.After(limit) {
		return gatehouse.Errorf(gatehouse.EINVALID, "organization %s allows tokens to live at most %d days", org.Name, maxDays)
	}
	return nil
}

type tokenJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Type        string `json:"type"` // personal, organization, team
	Created     string `json:"created"`
	CreatedBy   string `json:"createdBy"`
	Expires     int64  `json:"expires"`  // unix seconds, 0: never
	LastUsed    int64  `json:"lastUsed"` // unix seconds, 0: never
	LastUsedIP  string `json:"lastUsedFrom,omitempty"`
	LastAgent   string `json:"lastUsedAgent,omitempty"`
	Admin       bool   `json:"admin"`
	// Role is an organization token's role, in the service's AccessTokenRole shape.
	Role     *tokenRoleJSON `json:"role,omitempty"`
	Team     string         `json:"team,omitempty"`
	Pipeline bool           `json:"pipeline"`
	Revoked  int64          `json:"revoked,omitempty"`
	// GraceEnds is when a rotated token stops working (unix seconds; status rotating).
	GraceEnds int64  `json:"graceEnds,omitempty"`
	Status    string `json:"status"` // active, rotating (replaced, in its grace period), expired, revoked
	// A team token acts with its team's grants: the team's stack permissions (as in the
	// team's grants) beside its environment permissions (Pulumi's team shape). Team token
	// listings only.
	StackPermissions       *[]grantJSON   `json:"stackPermissions,omitempty"`
	EnvironmentPermissions *[]envPermJSON `json:"environmentPermissions,omitempty"`
}

// tokenRoleJSON is the service's AccessTokenRole: Gatehouse's roles are the built-in
// ones, so the ID, the name and the default identifier are the role's name.
type tokenRoleJSON struct {
	ID                string `json:"id"`
	Name              string `json:"name"`
	DefaultIdentifier string `json:"defaultIdentifier"`
}

var tokenTypes = map[gatehouse.TokenKind]string{gatehouse.TokenPersonal: "personal", gatehouse.TokenOrg: "organization", gatehouse.TokenTeam: "team"}

func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func tokenOf(tk *gatehouse.Token, now time.Time) tokenJSON {
	out := tokenJSON{
		ID: tk.ID, Name: tk.Name, Description: tk.Description, Type: tokenTypes[tk.Kind],
		Created: tk.Created.Format(time.RFC3339), CreatedBy: tk.CreatedBy, Expires: unix(tk.Expires), LastUsed: unix(tk.LastUsed),
		LastUsedIP: tk.LastIP, LastAgent: tk.LastAgent, Admin: tk.Role == gatehouse.RoleAdmin,
		Pipeline: tk.Pipeline, Revoked: unix(tk.Revoked), Status: "active",
	}
	if tk.Role != "" {
		out.Role = &tokenRoleJSON{ID: string(tk.Role), Name: string(tk.Role), DefaultIdentifier: string(tk.Role)}
	}
	switch {
	case !tk.Revoked.IsZero() && !now.Before(tk.Revoked):
		out.Status = "revoked"
	case !tk.Expires.IsZero() && !now.Before(tk.Expires):
		out.Status = "expired"
	case !tk.Revoked.IsZero():
		out.Status, out.GraceEnds = "rotating", unix(tk.Revoked)
	}
	return out
}

// tokenScope is the set of tokens a route manages: the caller's personal tokens, the
// organization's tokens, or a team's tokens.
func (rq *Request) tokenScope() (gatehouse.TokenFilter, gatehouse.TokenKind) {
	switch {
	case rq.Team != nil:
		return gatehouse.TokenFilter{Kind: gatehouse.TokenTeam, OrgID: rq.Org.ID, TeamID: rq.Team.ID}, gatehouse.TokenTeam
	case rq.Org != nil:
		return gatehouse.TokenFilter{Kind: gatehouse.TokenOrg, OrgID: rq.Org.ID}, gatehouse.TokenOrg
	}
	return gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal, UserID: rq.Subject.User.ID}, gatehouse.TokenPersonal
}

func (s *Server) listTokens(rq *Request) (any, error) {
	f, _ := rq.tokenScope()
	filter := rq.URL.Query().Get("filter")
	if filter == "" {
		filter = "active"
		if rq.URL.Query().Get("show_expired") == "true" {
			filter = "all"
		}
	}
	if filter != "active" && filter != "expired" && filter != "all" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "filter must be active, expired or all")
	}
	f.IncludeRevoked = filter != "active"
	var tks []gatehouse.Token
	var teamName string
	var stackPerms []grantJSON
	var envPerms []envPermJSON
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		if tks, err = tx.ListTokens(f); err != nil || rq.Team == nil {
			return err
		}
		gs, err := tx.ListGrants(rq.Team.ID)
		if err != nil {
			return err
		}
		if envPerms, err = teamEnvironments(tx, gs); err != nil {
			return err
		}
		stackPerms = []grantJSON{}
		for i := range gs {
			if !gs[i].Scope.IsEnv() {
				stackPerms = append(stackPerms, grantOf(&gs[i]))
			}
		}
		if envPerms == nil {
			envPerms = []envPermJSON{}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if rq.Team != nil {
		teamName = rq.Team.Name
	}
	now := s.cfg.Now()
	out := struct {
		Tokens []tokenJSON `json:"tokens"`
	}{Tokens: []tokenJSON{}}
	for i := range tks {
		tj := tokenOf(&tks[i], now)
		tj.Team = teamName
		if rq.Team != nil {
			tj.StackPermissions, tj.EnvironmentPermissions = &stackPerms, &envPerms
		}
		live := tj.Status == "active" || tj.Status == "rotating"
		if filter == "active" && !live || filter == "expired" && live {
			continue
		}
		out.Tokens = append(out.Tokens, tj)
	}
	return out, nil
}

type createTokenReq struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Expires     int64  `json:"expires"` // unix seconds, 0: never (subject to the org's limit)
	Admin       bool   `json:"admin"`   // organization tokens: admin role (else member)
	Role        string `json:"role"`    // organization tokens: admin or member
}

func (s *Server) createToken(rq *Request) (any, error) {
	var req createTokenReq
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	f, kind := rq.tokenScope()
	value, tk, err := newAccessToken(kind)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	if req.Name == "" {
		if kind != gatehouse.TokenPersonal {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "organization and team tokens need a name")
		}
		req.Name = "token-" + strconv.FormatInt(now.Unix(), 10) + "-" + tk.ID[:8]
	}
	if !tokenNameRE.MatchString(req.Name) {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid token name %q: up to 40 letters, digits, spaces or _ . : @ -", req.Name)
	}
	if len(req.Description) > 1024 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "description is longer than 1024 characters")
	}
	if err := plainText("description", req.Description); err != nil {
		return nil, err
	}
	if req.Expires != 0 {
		exp := time.Unix(req.Expires, 0)
		if !exp.After(now) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "expires must be in the future (unix seconds)")
		}
		tk.Expires = exp
	}
	tk.Name, tk.Description, tk.CreatedBy = req.Name, req.Description, rq.Subject.Name()
	switch kind {
	case gatehouse.TokenPersonal:
		tk.UserID = f.UserID
	case gatehouse.TokenTeam:
		tk.OrgID, tk.TeamID, tk.Pipeline = f.OrgID, f.TeamID, true
	case gatehouse.TokenOrg:
		tk.OrgID, tk.Pipeline, tk.Role = f.OrgID, true, gatehouse.RoleMember
		if req.Admin || req.Role == string(gatehouse.RoleAdmin) {
			tk.Role = gatehouse.RoleAdmin
		} else if req.Role != "" && req.Role != string(gatehouse.RoleMember) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "an organization token's role is admin or member")
		}
	}
	rq.Detail("token_id", tk.ID)
	rq.Detail("token_name", tk.Name)
	if r := rq.URL.Query().Get("reason"); r != "" {
		rq.Detail("reason", truncate(r, 256))
	}
	err = rq.Change(func(tx gatehouse.Tx) error {
		if err := applyOrgLimits(tx, rq, tk, now, false); err != nil {
			return err
		}
		if err := s.ssoRequired(tx, rq, tk); err != nil {
			return err
		}
		return tx.CreateToken(tk)
	})
	if err != nil {
		return nil, err
	}
	return struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
		Expires    int64  `json:"expires"`
	}{tk.ID, value, unix(tk.Expires)}, nil
}

// applyOrgLimits applies the maximum token lifetime of the token's organization, or for a
// personal token the strictest of its user's organizations (see limitExpiry for clamp).
func applyOrgLimits(tx gatehouse.Tx, rq *Request, tk *gatehouse.Token, now time.Time, clamp bool) error {
	if tk.Kind != gatehouse.TokenPersonal {
		return limitExpiry(rq.Org, tk, now, clamp)
	}
	oms, err := tx.ListUserOrgs(tk.UserID)
	if err != nil {
		return err
	}
	for i := range oms {
		if err := limitExpiry(&oms[i].Org, tk, now, clamp); err != nil {
			return err
		}
	}
	return nil
}

// scopedToken loads the {tokenID} of the route and checks that it belongs to the route's scope.
func (rq *Request) scopedToken(tx gatehouse.Tx) (*gatehouse.Token, error) {
	f, kind := rq.tokenScope()
	id := rq.PathValue("tokenID")
	tk, err := tx.GetToken(id)
	if err == nil && (tk.Kind != kind || f.UserID != 0 && tk.UserID != f.UserID || f.OrgID != 0 && tk.OrgID != f.OrgID || f.TeamID != 0 && tk.TeamID != f.TeamID) {
		err = gatehouse.Errorf(gatehouse.ENOTFOUND, "token not found")
	}
	if err != nil {
		return nil, err
	}
	rq.event.Target += "/tokens/" + tk.ID
	rq.Detail("token_name", tk.Name)
	return tk, nil
}

func (s *Server) revokeToken(rq *Request) (any, error) {
	err := rq.Change(func(tx gatehouse.Tx) error {
		tk, err := rq.scopedToken(tx)
		if err != nil {
			return err
		}
		return tx.RevokeToken(tk.ID, tx.Now())
	})
	return noContent{}, err
}

// rotateToken issues a successor with the same scope and role and ends the old token after
// a grace period (default one hour, at most 30 days; 0 revokes it at once). Rotation
// replaces a token's value, never extends its life or its powers: the successor expires
// when its predecessor would have (or earlier, if asked), and within the organization's
// maximum lifetime. Tokens issued by OIDC exchange are not rotated (a pipeline exchanges
// again): a person must not turn a short-lived pipeline credential into a long-lived one.
func (s *Server) rotateToken(rq *Request) (any, error) {
	var req struct {
		GraceSeconds *int64 `json:"graceSeconds"`
		Expires      int64  `json:"expires"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	grace := time.Hour
	if req.GraceSeconds != nil {
		if *req.GraceSeconds < 0 || *req.GraceSeconds > 30*24*3600 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "graceSeconds must be 0 to 2592000")
		}
		grace = time.Duration(*req.GraceSeconds) * time.Second
	}
	now := s.cfg.Now()
	var value string
	var next *gatehouse.Token
	err := rq.Change(func(tx gatehouse.Tx) error {
		old, err := rq.scopedToken(tx)
		if err != nil {
			return err
		}
		if !old.Live(now) {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "token %s is no longer live; create a new one instead", old.Name)
		}
		if old.Issuer != "" || old.Kind == gatehouse.TokenPersonal && old.Pipeline {
			return gatehouse.Errorf(gatehouse.EINVALID, "token %s was issued by OIDC token exchange and cannot be rotated: get a new one by exchange (it lives only as long as the exchange allows)", old.Name)
		}
		v, tk, err := newAccessToken(old.Kind)
		if err != nil {
			return err
		}
		value, next = v, tk
		base := old.Name
		if i := strings.LastIndex(base, "~"); i > 0 {
			base = base[:i]
		}
		suffix := "~" + now.UTC().Format("20060102T150405")
		if len(base)+len(suffix) > 40 {
			base = base[:40-len(suffix)]
		}
		tk.Name, tk.Description, tk.CreatedBy = base+suffix, old.Description, rq.Subject.Name()
		tk.UserID, tk.OrgID, tk.TeamID, tk.Role, tk.Pipeline = old.UserID, old.OrgID, old.TeamID, old.Role, old.Pipeline
		tk.Expires = old.Expires // never later than the predecessor
		if req.Expires != 0 {
			exp := time.Unix(req.Expires, 0)
			if !exp.After(now) {
				return gatehouse.Errorf(gatehouse.EINVALID, "expires must be in the future (unix seconds)")
			}
			if tk.Expires.IsZero() || exp.Before(tk.Expires) {
				tk.Expires = exp
			}
		}
		if err := applyOrgLimits(tx, rq, tk, now, true); err != nil {
			return err
		}
		if err := s.ssoRequired(tx, rq, tk); err != nil {
			return err
		}
		if !tk.Expires.IsZero() {
			rq.Detail("expires", tk.Expires.UTC().Format(time.RFC3339))
		}
		rq.Detail("rotated_to", tk.ID)
		rq.Detail("grace_seconds", strconv.FormatInt(int64(grace/time.Second), 10))
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		return tx.RevokeToken(old.ID, now.Add(grace))
	})
	if err != nil {
		return nil, err
	}
	return struct {
		ID         string `json:"id"`
		Name       string `json:"name"`
		TokenValue string `json:"tokenValue"`
		Expires    int64  `json:"expires"`
		OldExpires int64  `json:"previousTokenEnds"`
	}{next.ID, next.Name, value, unix(next.Expires), now.Add(grace).Unix()}, nil
}

var _ = authz.Public
