package httpapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/scim"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/token"
)

// SCIM 2.0 provisioning at /scim/v2/{org} (package scim has the domain). Every SCIM route
// takes the organization's SCIM token (AuthSCIM), answers SCIM's media type and error
// envelope, and records every change in the audit log with the identity provider's token as
// the actor, in the change's transaction.

const scimBase = "/scim/v2/{org}"

// scimAuthFailure is the audit event of a refused SCIM token (as Pulumi Cloud names it).
const scimAuthFailure = "Auth Failure SCIM Access Token"

func (s *Server) registerSCIMRoutes() {
	get, post, patch, del, put := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut
	s.handle(get, scimBase+"/ServiceProviderConfig", authz.SCIMRead, s.scimSPConfig)
	s.handle(get, scimBase+"/ResourceTypes", authz.SCIMRead, s.scimResourceTypes)
	s.handle(get, scimBase+"/ResourceTypes/{name}", authz.SCIMRead, s.scimResourceType)
	s.handle(get, scimBase+"/Schemas", authz.SCIMRead, s.scimSchemas)
	s.handle(get, scimBase+"/Schemas/{name}", authz.SCIMRead, s.scimSchema)
	s.handle(get, scimBase+"/Users", authz.SCIMRead, s.scimListUsers)
	s.handle(post, scimBase+"/Users", authz.SCIMUserWrite, s.scimCreateUser)
	s.handle(get, scimBase+"/Users/{id}", authz.SCIMRead, s.scimGetUser)
	s.handle(put, scimBase+"/Users/{id}", authz.SCIMUserWrite, s.scimReplaceUser)
	s.handle(patch, scimBase+"/Users/{id}", authz.SCIMUserWrite, s.scimPatchUser)
	s.handle(del, scimBase+"/Users/{id}", authz.SCIMUserWrite, s.scimDeleteUser)
	s.handle(get, scimBase+"/Groups", authz.SCIMRead, s.scimListGroups)
	s.handle(post, scimBase+"/Groups", authz.SCIMGroupWrite, s.scimCreateGroup)
	s.handle(get, scimBase+"/Groups/{id}", authz.SCIMRead, s.scimGetGroup)
	s.handle(put, scimBase+"/Groups/{id}", authz.SCIMGroupWrite, s.scimReplaceGroup)
	s.handle(patch, scimBase+"/Groups/{id}", authz.SCIMGroupWrite, s.scimPatchGroup)
	s.handle(del, scimBase+"/Groups/{id}", authz.SCIMGroupWrite, s.scimDeleteGroup)

	// The organization's SCIM token: an org admin (a person) creates or regenerates it.
	s.handle(get, "/api/orgs/{org}/scim/token", authz.OrgSCIMToken, s.getSCIMToken)
	s.handle(post, "/api/orgs/{org}/scim/token", authz.OrgSCIMToken, s.createSCIMToken).NoStore = true
	s.handle(del, "/api/orgs/{org}/scim/teams/{team}", authz.OrgSCIMTeamRelease, s.releaseSCIMTeam)
	// Unknown SCIM endpoints: a SCIM 404, not the API's.
	s.mux.HandleFunc("/scim/v2/", func(w http.ResponseWriter, r *http.Request) {
		writeSCIMError(w, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such SCIM endpoint: %s %s", r.Method, r.URL.Path))
	})
}

// scimResult is a SCIM answer: body as JSON with the SCIM media type (nil: no body).
type scimResult struct{ body any }

func writeSCIM(w http.ResponseWriter, status int, body any) {
	secureHeaders(w.Header())
	if body == nil {
		w.WriteHeader(status)
		return
	}
	b, err := json.Marshal(body)
	if err != nil {
		writeSCIMError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeSCIMError answers an error with the SCIM envelope (status as a string, scimType
// where the error carries one).
func writeSCIMError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse-scim"`)
	}
	body := scim.NewErrorBody(status, err)
	if body.ScimType == "" && status == http.StatusBadRequest {
		body.ScimType = string(scim.InvalidValue)
		if strings.Contains(body.Detail, "JSON") {
			body.ScimType = string(scim.InvalidSyntax)
		}
	}
	b, _ := json.Marshal(body)
	secureHeaders(w.Header())
	w.Header().Set("Content-Type", "application/scim+json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// authenticateSCIM checks the bearer token against the SCIM token of the organization the
// path names: one digest lookup by organization, compared in constant time. Any failure
// (no token, another kind, another organization's, a replaced one, an unknown
// organization) is the same 401 and the audit event "Auth Failure SCIM Access Token".
func (s *Server) authenticateSCIM(rq *Request, tx gatehouse.Tx, scheme, cred string) error {
	fail := func(why string) error {
		rq.event.Action = "scim:auth-failure"
		rq.event.Reason = scimAuthFailure + ": " + why
		rq.Detail("event", scimAuthFailure)
		return s.authFailed(rq, "scim", "Invalid SCIM token.")
	}
	if cred == "" {
		return fail("no token")
	}
	if !strings.EqualFold(scheme, "bearer") && !strings.EqualFold(scheme, "token") {
		return fail("unsupported authorization scheme")
	}
	if k, err := token.Parse(cred); err != nil || k != token.SCIM {
		return fail("not a SCIM token")
	}
	org, err := tx.GetOrgByName(rq.PathValue("org"))
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return fail("unknown organization")
		}
		return err
	}
	rq.event.OrgID, rq.event.OrgName = org.ID, org.Name
	st, err := tx.GetSCIMToken(org.ID)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return fail("the organization has no SCIM token")
		}
		return err
	}
	if !token.Equal(st.Digest, token.Digest(cred)) {
		return fail("not the organization's SCIM token (another organization's, or replaced)")
	}
	rq.Subject = &authz.Subject{Kind: authz.SCIMToken, Token: scimTokenAsToken(st)}
	rq.setActor()
	return nil
}

// scimService returns the SCIM domain service for the request, in tx.
func (rq *Request) scimService(tx gatehouse.Tx) *scim.Service {
	return &scim.Service{Tx: tx, Org: rq.Org, Base: rq.scimBaseURL(), Detail: rq.Detail, EndSessions: rq.s.endSessions}
}

// scimBaseURL is the absolute base URL of the organization's service provider.
func (rq *Request) scimBaseURL() string {
	scheme := "http"
	if rq.TLS != nil || rq.s.trustedForwardedProto(rq.Request) == "https" {
		scheme = "https"
	}
	return scheme + "://" + rq.Host + "/scim/v2/" + rq.Org.Name
}

// trustedForwardedProto returns X-Forwarded-Proto when the peer is a trusted proxy.
func (s *Server) trustedForwardedProto(r *http.Request) string {
	if len(s.cfg.TrustedProxies) == 0 {
		return ""
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		host = strings.Trim(host[:i], "[]")
	}
	if ip := forwardedIP(host); ip != nil && trusted(s.cfg.TrustedProxies, ip) {
		return strings.ToLower(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")))
	}
	return ""
}

func (rq *Request) scimTarget(kind, id string) {
	rq.event.Target = rq.Org.Name + "/scim/" + kind
	if id != "" {
		rq.event.Target += "/" + id
	}
	rq.Detail("scim_method", rq.Method)
}

func (s *Server) scimSPConfig(rq *Request) (any, error) {
	return scimResult{scim.ServiceProviderConfig(rq.scimBaseURL())}, nil
}

func (s *Server) scimResourceTypes(rq *Request) (any, error) {
	rts := scim.ResourceTypes(rq.scimBaseURL())
	return scimResult{&scim.ListResponse{Schemas: []string{scim.SchemaList}, TotalResults: len(rts), StartIndex: 1, ItemsPerPage: len(rts), Resources: rts}}, nil
}

func (s *Server) scimResourceType(rq *Request) (any, error) {
	if rt := scim.ResourceType(rq.scimBaseURL(), rq.PathValue("name")); rt != nil {
		return scimResult{rt}, nil
	}
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "Resource type %s not found.", rq.PathValue("name"))
}

func (s *Server) scimSchemas(rq *Request) (any, error) {
	ss := scim.Schemas(rq.scimBaseURL())
	return scimResult{&scim.ListResponse{Schemas: []string{scim.SchemaList}, TotalResults: len(ss), StartIndex: 1, ItemsPerPage: len(ss), Resources: ss}}, nil
}

func (s *Server) scimSchema(rq *Request) (any, error) {
	if sc := scim.Schema(rq.scimBaseURL(), rq.PathValue("name")); sc != nil {
		return scimResult{sc}, nil
	}
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "Schema %s not found.", rq.PathValue("name"))
}

// scimView runs a read in a read-only transaction.
func (rq *Request) scimView(fn func(*scim.Service) (any, error)) (any, error) {
	var out any
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		out, err = fn(rq.scimService(tx))
		return err
	})
	if err != nil {
		return nil, err
	}
	return scimResult{out}, nil
}

// scimChange runs a change and its audit record in one transaction; status is the
// success status (204: no body).
func (rq *Request) scimChange(status int, fn func(*scim.Service) (any, error)) (any, error) {
	var out any
	err := rq.Change(func(tx gatehouse.Tx) error {
		var err error
		out, err = fn(rq.scimService(tx))
		return err
	})
	if err != nil {
		return nil, err
	}
	rq.status = status
	if status == http.StatusNoContent {
		return scimResult{}, nil
	}
	return scimResult{out}, nil
}

// scimBody reads a request body (bounded, nesting-checked).
func (rq *Request) scimBody() ([]byte, error) {
	b, err := rq.readJSON()
	if err != nil && gatehouse.IsCode(err, gatehouse.EINVALID) {
		return nil, gatehouse.Wrap(gatehouse.EINVALID, scim.InvalidSyntax, "%s", gatehouse.ErrorMessage(err))
	}
	return b, err
}

func withMembers(rq *Request) bool {
	for _, a := range strings.Split(rq.URL.Query().Get("excludedAttributes"), ",") {
		if strings.EqualFold(strings.TrimSpace(a), "members") {
			return false
		}
	}
	return true
}

func (s *Server) scimListUsers(rq *Request) (any, error) {
	q := rq.URL.Query()
	return rq.scimView(func(sv *scim.Service) (any, error) {
		return sv.ListUsers(q.Get("filter"), q.Get("startIndex"), q.Get("count"))
	})
}

func (s *Server) scimGetUser(rq *Request) (any, error) {
	return rq.scimView(func(sv *scim.Service) (any, error) { return sv.GetUser(rq.PathValue("id")) })
}

func (s *Server) scimCreateUser(rq *Request) (any, error) {
	rq.scimTarget("Users", "")
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	res, err := rq.scimChange(http.StatusCreated, func(sv *scim.Service) (any, error) { return sv.CreateUser(b) })
	if err == nil {
		if u, ok := res.(scimResult).body.(*scim.User); ok {
			rq.ResponseHeader().Set("Location", u.Meta.Location)
		}
	}
	return res, err
}

func (s *Server) scimReplaceUser(rq *Request) (any, error) {
	rq.scimTarget("Users", rq.PathValue("id"))
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	return rq.scimChange(http.StatusOK, func(sv *scim.Service) (any, error) { return sv.ReplaceUser(rq.PathValue("id"), b) })
}

func (s *Server) scimPatchUser(rq *Request) (any, error) {
	rq.scimTarget("Users", rq.PathValue("id"))
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	return rq.scimChange(http.StatusOK, func(sv *scim.Service) (any, error) { return sv.PatchUser(rq.PathValue("id"), b) })
}

func (s *Server) scimDeleteUser(rq *Request) (any, error) {
	rq.scimTarget("Users", rq.PathValue("id"))
	return rq.scimChange(http.StatusNoContent, func(sv *scim.Service) (any, error) { return nil, sv.DeleteUser(rq.PathValue("id")) })
}

func (s *Server) scimListGroups(rq *Request) (any, error) {
	q := rq.URL.Query()
	return rq.scimView(func(sv *scim.Service) (any, error) { return sv.ListGroups(q.Get("filter"), withMembers(rq)) })
}

func (s *Server) scimGetGroup(rq *Request) (any, error) {
	return rq.scimView(func(sv *scim.Service) (any, error) { return sv.GetGroup(rq.PathValue("id"), withMembers(rq)) })
}

func (s *Server) scimCreateGroup(rq *Request) (any, error) {
	rq.scimTarget("Groups", "")
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	res, err := rq.scimChange(http.StatusCreated, func(sv *scim.Service) (any, error) { return sv.CreateGroup(b) })
	if err == nil {
		if g, ok := res.(scimResult).body.(*scim.Group); ok {
			rq.ResponseHeader().Set("Location", g.Meta.Location)
		}
	}
	return res, err
}

func (s *Server) scimReplaceGroup(rq *Request) (any, error) {
	rq.scimTarget("Groups", rq.PathValue("id"))
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	return rq.scimChange(http.StatusOK, func(sv *scim.Service) (any, error) { return sv.ReplaceGroup(rq.PathValue("id"), b) })
}

// scimPatchGroup answers 204, as Entra ID expects (Okta accepts it).
func (s *Server) scimPatchGroup(rq *Request) (any, error) {
	rq.scimTarget("Groups", rq.PathValue("id"))
	b, err := rq.scimBody()
	if err != nil {
		return nil, err
	}
	return rq.scimChange(http.StatusNoContent, func(sv *scim.Service) (any, error) { return nil, sv.PatchGroup(rq.PathValue("id"), b) })
}

func (s *Server) scimDeleteGroup(rq *Request) (any, error) {
	rq.scimTarget("Groups", rq.PathValue("id"))
	return rq.scimChange(http.StatusNoContent, func(sv *scim.Service) (any, error) { return nil, sv.DeleteGroup(rq.PathValue("id")) })
}

// endSessions ends a deprovisioned person's sessions (scim.Service.EndSessions), in the
// deprovisioning's transaction: those started by the organization's sign-in, or every one
// of theirs when the organization owns the account (all). Sessions are read from the
// database on every request, so each fails on its next request on every process.
func (s *Server) endSessions(tx gatehouse.Tx, userID, orgID int64, all bool) (int, error) {
	if all {
		orgID = 0
	}
	return sso.EndSessions(tx, userID, orgID)
}

type scimTokenJSON struct {
	// Configured: the organization has a SCIM token.
	Configured bool   `json:"configured"`
	ID         string `json:"id,omitempty"`
	Token      string `json:"token,omitempty"`
	CreatedBy  string `json:"createdBy,omitempty"`
	Created    string `json:"created,omitempty"`
	// BaseURL is what the identity provider is configured with.
	BaseURL string `json:"baseUrl"`
}

// getSCIMToken is GET /api/orgs/{org}/scim/token: whether the organization has a SCIM
// token, who made it and when (never its value), and the base URL to give the IdP.
func (s *Server) getSCIMToken(rq *Request) (any, error) {
	var st *gatehouse.SCIMToken
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		st, err = tx.GetSCIMToken(rq.Org.ID)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil
		}
		return err
	}); err != nil {
		return nil, err
	}
	if st == nil {
		return scimTokenJSON{BaseURL: rq.scimBaseURL()}, nil
	}
	return scimTokenJSON{Configured: true, ID: st.ID, CreatedBy: st.CreatedBy, Created: st.Created.UTC().Format(time.RFC3339), BaseURL: rq.scimBaseURL()}, nil
}

// createSCIMToken is POST /api/orgs/{org}/scim/token: a new SCIM token for the
// organization, shown once; the one it replaces stops working at once on every process
// (the row is replaced and the security epoch bumped in the same transaction).
func (s *Server) createSCIMToken(rq *Request) (any, error) {
	value, err := token.New(token.SCIM)
	if err != nil {
		return nil, err
	}
	st := &gatehouse.SCIMToken{OrgID: rq.Org.ID, ID: newRequestID()[:16], Digest: token.Digest(value), CreatedBy: rq.Subject.Name()}
	rq.event.Target = rq.Org.Name + "/scim/token"
	err = rq.Change(func(tx gatehouse.Tx) error {
		if old, err := tx.GetSCIMToken(rq.Org.ID); err == nil {
			rq.Detail("replaced_token", old.ID)
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		rq.Detail("token_id", st.ID)
		return tx.PutSCIMToken(st)
	})
	if err != nil {
		return nil, err
	}
	rq.status = http.StatusCreated
	return scimTokenJSON{Configured: true, ID: st.ID, Token: value, CreatedBy: st.CreatedBy, Created: st.Created.UTC().Format(time.RFC3339), BaseURL: rq.scimBaseURL()}, nil
}

// releaseSCIMTeam is DELETE /api/orgs/{org}/scim/teams/{team}: the team is no longer
// managed by SCIM provisioning (an ordinary team again: its members and name are edited
// here, and the identity provider can no longer change it). Audited; 409 when the team is
// not managed.
func (s *Server) releaseSCIMTeam(rq *Request) (any, error) {
	rq.event.Target = rq.Org.Name + "/scim/teams/" + rq.Team.Name
	err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.ReleaseSCIMTeam(rq.Team.ID); err != nil {
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return gatehouse.Errorf(gatehouse.ECONFLICT, "team %s is not managed by SCIM provisioning", rq.Team.Name)
			}
			return err
		}
		rq.Detail("team", rq.Team.Name)
		return nil
	})
	return nil, err
}

// refuseSCIMTeam refuses a change of a team the identity provider manages (its members,
// its name, the team itself): they are made in the identity provider, and a change here
// would be undone, or silently kept apart, by the next push. Its grants stay editable.
func refuseSCIMTeam(tx gatehouse.Tx, t *gatehouse.Team, what string) error {
	managed, err := tx.IsSCIMTeam(t.ID)
	if err != nil || !managed {
		return err
	}
	return gatehouse.Errorf(gatehouse.ECONFLICT, "team %s is managed by SCIM provisioning (the organization's identity provider): it cannot be %s here; change the group in the identity provider (its permissions can be changed here)", t.Name, what)
}

// refuseSCIMMember refuses removing an active provisioned person from the organization
// through the member API: they are deprovisioned in the identity provider (which would
// otherwise find them still assigned, and Gatehouse would disagree with it).
func refuseSCIMMember(tx gatehouse.Tx, org *gatehouse.Org, u *gatehouse.User) error {
	su, err := tx.GetSCIMUser(org.ID, u.ID)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || err == nil && !su.Active {
		return nil
	}
	if err != nil {
		return err
	}
	return gatehouse.Errorf(gatehouse.ECONFLICT, "%s is provisioned by SCIM (the organization's identity provider): deprovision them there (unassign the application); that removes them from %s at once", u.Name, org.Name)
}

// refuseDeprovisionedAuthor refuses renewing the lease of an update started by a person the
// organization's identity provider has since deprovisioned: the update keeps its lease
// until it expires, no longer (the CLI reads the 403 as "lease expired").
func refuseDeprovisionedAuthor(tx gatehouse.Tx, orgID int64, author string) error {
	u, err := tx.GetUserByName(author)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return err
	}
	su, err := tx.GetSCIMUser(orgID, u.ID)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || err == nil && su.Active {
		return nil
	}
	if err != nil {
		return err
	}
	return gatehouse.Errorf(gatehouse.EGONE, "the update's author was deprovisioned: its lease is not renewed")
}

// scimTokenAsToken is a SCIM token as the token metadata the subject, audit and leak
// reports use (it is not in the tokens table).
func scimTokenAsToken(st *gatehouse.SCIMToken) *gatehouse.Token {
	return &gatehouse.Token{ID: st.ID, Kind: gatehouse.TokenKind(token.SCIM), Digest: st.Digest, Name: "SCIM provisioning",
		OrgID: st.OrgID, CreatedBy: st.CreatedBy, Created: st.Created}
}

// revokeLeakedToken ends a leaked token: a SCIM token is deleted (the organization makes a
// new one), any other is revoked.
func revokeLeakedToken(tx gatehouse.Tx, tk *gatehouse.Token) error {
	if tk.Kind == gatehouse.TokenKind(token.SCIM) {
		return tx.DeleteSCIMToken(tk.OrgID)
	}
	return tx.RevokeToken(tk.ID, tx.Now())
}
