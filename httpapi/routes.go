package httpapi

import (
	"net/http"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

const (
	stackPath  = "/api/stacks/{org}/{project}/{stack}"
	updatePath = stackPath + "/update/{updateID}"
)

// registerRoutes is the route table: every route with the action it performs.
func (s *Server) registerRoutes() {
	get, post, patch, del, head := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodHead

	// Operations.
	s.handle(get, "/healthz", authz.Public, s.healthz)
	s.handle(get, "/readyz", authz.Public, s.readyz)
	s.handle(get, "/api/capabilities", authz.Public, s.getCapabilities)

	// Identity.
	s.handle(get, "/api/user", authz.UserRead, s.getUser)
	s.handle(get, "/api/user/organizations/default", authz.UserRead, s.getDefaultOrg)
	s.handle(get, "/api/user/stacks", authz.UserStacks, s.listUserStacks)

	// Stacks.
	s.handle(head, "/api/stacks/{org}/{project}", authz.OrgRead, s.projectExists)
	s.handle(post, "/api/stacks/{org}/{project}", authz.OrgRead, s.createStack) // refined to stack:create with the new stack's facts
	s.handle(get, stackPath, authz.StackRead, s.getStack)
	s.handle(del, stackPath, authz.StackDelete, s.deleteStack)
	s.handle(post, stackPath+"/rename", authz.StackRename, s.renameStack)
	s.handle(patch, stackPath+"/tags", authz.StackTags, s.setTags)
	s.handle(get, stackPath+"/export", authz.StackExport, s.exportStack)
	s.handle(get, stackPath+"/export/{version}", authz.StackExport, s.exportStack)
	s.handle(post, stackPath+"/import", authz.StackImport, s.importStack)
	s.handle(get, stackPath+"/updates", authz.StackRead, s.getHistory)
	s.handle(get, stackPath+"/updates/latest", authz.StackRead, s.getLatestUpdate)

	// Secrets.
	s.handle(post, stackPath+"/encrypt", authz.StackEncrypt, s.encrypt)
	s.handle(post, stackPath+"/batch-encrypt", authz.StackEncrypt, s.batchEncrypt)
	s.handle(post, stackPath+"/decrypt", authz.StackDecrypt, s.decrypt)
	s.handle(post, stackPath+"/batch-decrypt", authz.StackDecrypt, s.batchDecrypt)
	s.handle(post, stackPath+"/decrypt/log-decryption", authz.StackDecrypt, s.logDecryption)
	s.handle(post, stackPath+"/decrypt/log-batch-decryption", authz.StackDecrypt, s.logDecryption)

	// Stack access.
	s.handle(get, stackPath+"/teams", authz.StackAccess, s.stackTeams)
	s.handle(get, stackPath+"/access", authz.StackAccess, s.stackAccess)

	// Organizations, members, users.
	s.handle(post, "/api/orgs", authz.SiteOrgCreate, s.createOrg)
	s.handle(get, "/api/orgs/{org}", authz.OrgRead, s.getOrg)
	s.handle(patch, "/api/orgs/{org}", authz.OrgUpdate, s.updateOrgSettings)
	s.handle(get, "/api/orgs/{org}/members", authz.OrgMemberRead, s.listMembers)
	s.handle(post, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.putMember(false))
	s.handle(patch, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.putMember(true))
	s.handle(del, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.removeMember)
	s.handle(post, "/api/orgs/{org}/users", authz.OrgUserCreate, s.createUser)

	// Teams and their grants.
	s.handle(get, "/api/orgs/{org}/teams", authz.OrgTeamRead, s.listTeams)
	s.handle(post, "/api/orgs/{org}/teams/pulumi", authz.OrgTeamWrite, s.createTeam)
	s.handle(get, "/api/orgs/{org}/teams/{team}", authz.OrgTeamRead, s.getTeam)
	s.handle(patch, "/api/orgs/{org}/teams/{team}", authz.OrgTeamWrite, s.updateTeam)
	s.handle(del, "/api/orgs/{org}/teams/{team}", authz.OrgTeamWrite, s.deleteTeam)

	// Protection rules.
	s.handle(get, "/api/orgs/{org}/protections", authz.OrgRead, s.listProtections)
	s.handle(post, "/api/orgs/{org}/protections", authz.OrgProtect, s.changeProtection(true))
	s.handle(del, "/api/orgs/{org}/protections", authz.OrgProtect, s.changeProtection(false))

	// Access tokens: personal, organization, team.
	s.handle(get, "/api/user/tokens", authz.UserTokens, s.listTokens)
	s.handle(post, "/api/user/tokens", authz.UserTokens, s.createToken)
	s.handle(del, "/api/user/tokens/{tokenID}", authz.UserTokens, s.revokeToken)
	s.handle(post, "/api/user/tokens/{tokenID}/rotate", authz.UserTokens, s.rotateToken)
	s.handle(get, "/api/orgs/{org}/tokens", authz.OrgTokenRead, s.listTokens)
	s.handle(post, "/api/orgs/{org}/tokens", authz.OrgTokenWrite, s.createToken)
	s.handle(del, "/api/orgs/{org}/tokens/{tokenID}", authz.OrgTokenWrite, s.revokeToken)
	s.handle(post, "/api/orgs/{org}/tokens/{tokenID}/rotate", authz.OrgTokenWrite, s.rotateToken)
	s.handle(get, "/api/orgs/{org}/teams/{team}/tokens", authz.OrgTokenRead, s.listTokens)
	s.handle(post, "/api/orgs/{org}/teams/{team}/tokens", authz.OrgTokenWrite, s.createToken)
	s.handle(del, "/api/orgs/{org}/teams/{team}/tokens/{tokenID}", authz.OrgTokenWrite, s.revokeToken)
	s.handle(post, "/api/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate", authz.OrgTokenWrite, s.rotateToken)

	// Updates: created per kind; a real run is refined to stack:update (or import) in the handler.
	for _, kind := range []gatehouse.UpdateKind{gatehouse.KindUpdate, gatehouse.KindPreview, gatehouse.KindRefresh, gatehouse.KindDestroy} {
		s.handle(post, stackPath+"/"+string(kind), authz.StackPreview, s.createUpdate(kind))
	}
	s.handle(post, updatePath, authz.StackPreview, s.startUpdate) // refined by the update's kind
	s.handle(get, updatePath, authz.StackRead, s.getUpdate)
	s.handle(get, updatePath+"/events", authz.StackRead, s.getUpdateEvents)
	s.handle(post, updatePath+"/cancel", authz.StackCancel, s.cancelUpdate)
	s.handle(post, updatePath+"/renew_lease", authz.UpdateLease, s.renewLease)
	s.handle(patch, updatePath+"/checkpoint", authz.UpdateLease, s.patchCheckpoint)
	s.handle(patch, updatePath+"/checkpointverbatim", authz.UpdateLease, s.patchCheckpointVerbatim)
	s.handle(patch, updatePath+"/checkpointdelta", authz.UpdateLease, s.patchCheckpointDelta)
	s.handle(patch, updatePath+"/journalentries", authz.UpdateLease, s.patchJournal)
	s.handle(post, updatePath+"/events/batch", authz.UpdateLease, s.postEvents)
	s.handle(post, updatePath+"/complete", authz.UpdateComplete, s.completeUpdate)
	s.registerOIDCRoutes()
	s.registerLeakRoutes()
	s.registerAuditRoutes()
	s.registerEnvRoutes()
}

func (s *Server) healthz(rq *Request) (any, error) { return map[string]string{"status": "ok"}, nil }

func (s *Server) readyz(rq *Request) (any, error) {
	if err := s.store.Ping(rq.Context()); err != nil {
		return nil, err
	}
	return map[string]string{"status": "ready", "database": s.store.Engine()}, nil
}
