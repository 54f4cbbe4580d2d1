package httpapi

import (
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

type orgSummary struct {
	GitHubLogin string `json:"githubLogin"`
	Name        string `json:"name"`
	Role        string `json:"role,omitempty"`
}

type tokenInfo struct {
	Name         string `json:"name"`
	Organization string `json:"organization,omitempty"`
	Team         string `json:"team,omitempty"`
}

type userResponse struct {
	ID            string       `json:"id"`
	GitHubLogin   string       `json:"githubLogin"`
	Name          string       `json:"name"`
	Email         string       `json:"email,omitempty"`
	AvatarURL     string       `json:"avatarUrl"`
	Organizations []orgSummary `json:"organizations"`
	SiteAdmin     bool         `json:"siteAdmin,omitempty"`
	TokenInfo     *tokenInfo   `json:"tokenInfo,omitempty"`
}

// identity is who the caller is, as GET /api/user tells the CLI: for a personal token its
// user and their organizations; for a team or organization token the organization (and the
// team), which is what `pulumi whoami -v` shows.
func (rq *Request) identity(tx gatehouse.Tx) (*userResponse, error) {
	sub := rq.Subject
	resp := &userResponse{Organizations: []orgSummary{}}
	switch sub.Kind {
	case authz.UserKind:
		u := sub.User
		resp.ID, resp.GitHubLogin, resp.Name, resp.Email, resp.SiteAdmin = itoa(u.ID), u.Name, u.Name, u.Email, u.SiteAdmin
		orgs, err := tx.ListUserOrgs(u.ID)
		if err != nil {
			return nil, err
		}
		for _, om := range orgs {
			if !sub.ActsIn(om.Org.ID) {
				continue // an OIDC-issued personal token: its organization only
			}
			if ok, err := rq.s.orgListable(rq, tx, &om.Org); err != nil {
				return nil, err
			} else if !ok {
				continue // its allow-list or its SSO requirement refuses the caller
			}
			resp.Organizations = append(resp.Organizations, orgSummary{GitHubLogin: om.Org.Name, Name: om.Org.Name, Role: string(om.Role)})
		}
		if sub.Token != nil && sub.Token.Pipeline {
			resp.TokenInfo = &tokenInfo{Name: sub.Token.Name}
		}
	case authz.TeamToken, authz.OrgToken:
		org, err := tx.GetOrg(sub.Token.OrgID)
		if err != nil {
			return nil, err
		}
		resp.ID, resp.GitHubLogin, resp.Name = sub.Token.ID, org.Name, sub.Token.Name
		resp.Organizations = append(resp.Organizations, orgSummary{GitHubLogin: org.Name, Name: org.Name, Role: string(sub.Token.Role)})
		resp.TokenInfo = &tokenInfo{Name: sub.Token.Name, Organization: org.Name}
		if sub.Kind == authz.TeamToken {
			team, err := tx.GetTeam(sub.Token.TeamID)
			if err != nil {
				return nil, err
			}
			resp.GitHubLogin = team.Name
			resp.TokenInfo.Team = team.Name
		}
	case authz.Deployment:
		org, err := tx.GetOrg(sub.Deployment.OrgID)
		if err != nil {
			return nil, err
		}
		name := sub.Name()
		resp.ID, resp.GitHubLogin, resp.Name = "deployment-"+sub.Deployment.ID, org.Name, name
		resp.Organizations = append(resp.Organizations, orgSummary{GitHubLogin: org.Name, Name: org.Name, Role: string(gatehouse.RoleMember)})
		resp.TokenInfo = &tokenInfo{Name: name, Organization: org.Name}
	}
	return resp, nil
}

func (s *Server) getUser(rq *Request) (any, error) {
	var resp *userResponse
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		resp, err = rq.identity(tx)
		return err
	})
	return resp, err
}

func (s *Server) getDefaultOrg(rq *Request) (any, error) {
	var resp *userResponse
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		resp, err = rq.identity(tx)
		return err
	}); err != nil {
		return nil, err
	}
	if len(resp.Organizations) == 0 {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no default organization")
	}
	return map[string]any{"gitHubLogin": resp.Organizations[0].GitHubLogin, "messages": []any{}}, nil
}

func (s *Server) getCapabilities(rq *Request) (any, error) {
	caps := []apitype.APICapabilityConfig{
		{Capability: apitype.BatchEncrypt},
		{Capability: apitype.StackPolicyPacks, Version: 1}, // GET stack/policypacks (policy.go): `pulumi policy install`
		{Capability: apitype.DeploymentSchemaVersion, Version: 1, Configuration: mustJSON(apitype.DeploymentSchemaVersionConfig{Version: 4})},
	}
	if s.cfg.DeltaCheckpointCutoff > 0 {
		caps = append(caps, apitype.APICapabilityConfig{
			Capability: apitype.DeltaCheckpointUploadsV2, Version: 2,
			Configuration: mustJSON(apitype.DeltaCheckpointUploadsConfigV2{CheckpointCutoffSizeBytes: s.cfg.DeltaCheckpointCutoff}),
		})
	}
	return apitype.CapabilitiesResponse{Capabilities: caps}, nil
}
