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

// registerRoutes is the route table: every route with the action it performs. Routes
// whose bodies carry state (.carriesState()) take bodies up to Config.MaxBodyBytes; all
// others at most SmallBodyBytes.
func (s *Server) registerRoutes() {
	get, post, patch, del, head, put := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodPut

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
	s.handle(post, "/api/stacks/{org}/{project}", authz.OrgRead, s.createStack).carriesState() // refined to stack:create with the new stack's facts
	s.handle(get, stackPath, authz.StackRead, s.getStack)
	s.handle(del, stackPath, authz.StackDelete, s.deleteStack)
	s.handle(post, stackPath+"/rename", authz.StackRename, s.renameStack)
	s.handle(patch, stackPath+"/tags", authz.StackTags, s.setTags)
	s.handle(post, stackPath+"/tags", authz.StackTags, s.addStackTag)
	s.handle(patch, stackPath+"/tags/{tagName}", authz.StackTags, s.updateStackTag)
	s.handle(del, stackPath+"/tags/{tagName}", authz.StackTags, s.deleteStackTag)
	s.handle(get, stackPath+"/config", authz.StackRead, s.getStackConfig)
	s.handle(put, stackPath+"/config", authz.StackConfig, s.putStackConfig)
	s.handle(del, stackPath+"/config", authz.StackConfig, s.deleteStackConfig)
	s.handle(get, stackPath+"/export", authz.StackExport, s.exportStack)
	s.handle(get, stackPath+"/export/{version}", authz.StackExport, s.exportStack)
	s.handle(post, stackPath+"/import", authz.StackImport, s.importStack).carriesState()
	s.handle(get, stackPath+"/updates", authz.StackRead, s.listUpdates) // ?output-type=service: the service's shape
	s.handle(get, stackPath+"/updates/latest", authz.StackRead, s.getLatestUpdate)
	s.handle(get, stackPath+"/updates/{version}", authz.StackRead, s.getUpdateByVersion)
	s.handle(get, "/api/stacks/{org}", authz.OrgRead, s.listOrgStacks) // filtered per stack by stack:read

	// Secrets.
	s.handle(post, stackPath+"/encrypt", authz.StackEncrypt, s.encrypt).carriesState()
	s.handle(post, stackPath+"/batch-encrypt", authz.StackEncrypt, s.batchEncrypt).carriesState()
	s.handle(post, stackPath+"/decrypt", authz.StackDecrypt, s.decrypt).carriesState()
	s.handle(post, stackPath+"/batch-decrypt", authz.StackDecrypt, s.batchDecrypt).carriesState()
	s.handle(post, stackPath+"/decrypt/log-decryption", authz.StackDecrypt, s.logDecryption)
	s.handle(post, stackPath+"/decrypt/log-batch-decryption", authz.StackDecrypt, s.logDecryption)

	// Stack access.
	s.handle(get, stackPath+"/teams", authz.StackAccess, s.stackTeams)
	s.handle(get, stackPath+"/access", authz.StackAccess, s.stackAccess)

	// Organizations, members, users.
	s.handle(post, "/api/orgs", authz.SiteOrgCreate, s.createOrg)
	s.handle(get, "/api/admin/users", authz.SiteUserRead, s.listSiteUsers)
	s.handle(post, "/api/admin/users/{user}/disable", authz.SiteUserDisable, s.disableUser)
	s.handle(get, "/api/orgs/{org}", authz.OrgRead, s.getOrg)
	s.handle(patch, "/api/orgs/{org}", authz.OrgUpdate, s.updateOrgSettings)
	s.handle(get, "/api/orgs/{org}/members", authz.OrgMemberRead, s.listMembers)
	s.handle(post, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.putMember(false))
	s.handle(patch, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.putMember(true))
	s.handle(del, "/api/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.removeMember)
	s.handle(post, "/api/orgs/{org}/users", authz.OrgUserCreate, s.createUser)

	// Invitations (invitations.go): the organization invites, the invited person answers.
	s.handle(get, "/api/orgs/{org}/invitations", authz.OrgInvitationRead, s.listOrgInvitations)
	s.handle(post, "/api/orgs/{org}/invitations", authz.OrgInvitationCreate, s.createInvitation)
	s.handle(del, "/api/orgs/{org}/invitations/{invitationID}", authz.OrgInvitationRevoke, s.revokeInvitation)
	s.handle(get, "/api/user/invitations", authz.UserInvitationRead, s.listMyInvitations)
	s.handle(post, "/api/user/invitations/{invitationID}/accept", authz.UserInvitationAccept, s.acceptInvitation)
	s.handle(post, "/api/user/invitations/{invitationID}/decline", authz.UserInvitationDecline, s.declineInvitation)

	// Teams and their grants.
	s.handle(get, "/api/orgs/{org}/teams", authz.OrgTeamRead, s.listTeams)
	s.handle(post, "/api/orgs/{org}/teams/pulumi", authz.OrgTeamWrite, s.createTeam)
	s.handle(post, "/api/orgs/{org}/teams/github", authz.OrgTeamWrite, s.createGitHubTeam) // refused: no GitHub integration
	s.handle(get, "/api/orgs/{org}/teams/{team}", authz.OrgTeamRead, s.getTeam)
	s.handle(patch, "/api/orgs/{org}/teams/{team}", authz.OrgTeamWrite, s.updateTeam)
	s.handle(del, "/api/orgs/{org}/teams/{team}", authz.OrgTeamWrite, s.deleteTeam)
	// Admitted as a stack read (so that it does not tell who cannot see the stack that it
	// exists), then refined to org:team:write in the handler.
	s.handle(patch, "/api/console/stacks/{org}/{project}/{stack}/teams/{team}", authz.StackAccess, s.updateTeamStackPermissions)

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
		// The program's configuration: kept with the update (at most MaxPendingUpdates of a
		// stack's never start), so bounded below the state routes' limit.
		s.handle(post, stackPath+"/"+string(kind), authz.StackPreview, s.createUpdate(kind)).MaxBody = min(ProgramBodyBytes, s.cfg.MaxBodyBytes)
	}
	s.handle(post, updatePath, authz.StackPreview, s.startUpdate) // refined by the update's kind
	s.handle(get, updatePath, authz.StackRead, s.getUpdate)
	s.handle(get, updatePath+"/events", authz.StackRead, s.getUpdateEvents)
	s.handle(post, updatePath+"/cancel", authz.StackCancel, s.cancelUpdate)
	s.handle(post, updatePath+"/renew_lease", authz.UpdateLease, s.renewLease)
	s.handle(patch, updatePath+"/checkpoint", authz.UpdateLease, s.patchCheckpoint).carriesState()
	s.handle(patch, updatePath+"/checkpointverbatim", authz.UpdateLease, s.patchCheckpointVerbatim).carriesState()
	s.handle(patch, updatePath+"/checkpointdelta", authz.UpdateLease, s.patchCheckpointDelta).carriesState()
	s.handle(patch, updatePath+"/journalentries", authz.UpdateLease, s.patchJournal).carriesState()
	s.handle(post, updatePath+"/events/batch", authz.UpdateLease, s.postEvents).carriesState()
	s.handle(post, updatePath+"/complete", authz.UpdateComplete, s.completeUpdate)
	// The web console (console.go): pages with the action of the API they show, forms with
	// the action of the API they change (and through its handler). GET / leads to it.
	s.handle(get, "/{$}", authz.Public, s.consoleRoot).html()
	s.handle(get, "/console/static/{file}", authz.Public, s.consoleStatic).html()
	s.handle(get, "/console/sign-in", authz.Public, s.consoleSignInPage).html() // its token form posts to sso's POST /login/token
	s.handle(get, "/console", authz.UserRead, s.consoleHome).html()
	s.handle(get, "/console/tokens", authz.UserTokens, s.consoleMyTokens).html()
	s.handle(post, "/console/tokens", authz.UserTokens, s.consoleCreateToken).html()
	s.handle(post, "/console/tokens/{tokenID}/rotate", authz.UserTokens, s.consoleRotateToken).html()
	s.handle(post, "/console/tokens/{tokenID}/revoke", authz.UserTokens, s.consoleRevokeToken).html()
	s.handle(get, "/console/orgs/{org}", authz.OrgRead, s.consoleOverview).html()
	s.handle(get, "/console/orgs/{org}/access", authz.OrgMemberRead, s.consoleAccess).html()
	s.handle(get, "/api/orgs/{org}/access-review", authz.OrgMemberRead, s.getAccessReview) // JSON, or CSV (?format=csv)
	s.handle(get, "/console/orgs/{org}/stacks", authz.OrgRead, s.consoleStacks).html()     // filtered per stack by stack:read
	s.handle(get, "/console/orgs/{org}/stacks/{project}/{stack}", authz.StackRead, s.consoleStack).html()
	s.handle(get, "/console/orgs/{org}/teams", authz.OrgTeamRead, s.consoleTeams).html()
	s.handle(post, "/console/orgs/{org}/teams", authz.OrgTeamWrite, s.consoleCreateTeam).html()
	s.handle(get, "/console/orgs/{org}/teams/{team}", authz.OrgTeamRead, s.consoleTeam).html()
	s.handle(post, "/console/orgs/{org}/teams/{team}", authz.OrgTeamWrite, s.consoleUpdateTeam).html()
	s.handle(post, "/console/orgs/{org}/teams/{team}/delete", authz.OrgTeamWrite, s.consoleDeleteTeam).html()
	s.handle(get, "/console/orgs/{org}/members", authz.OrgMemberRead, s.consoleMembers).html()
	s.handle(post, "/console/orgs/{org}/members/{user}", authz.OrgMemberWrite, s.consoleMember).html()
	s.handle(get, "/console/orgs/{org}/tokens", authz.OrgTokenRead, s.consoleOrgTokens).html()
	s.handle(post, "/console/orgs/{org}/tokens", authz.OrgTokenWrite, s.consoleCreateToken).html()
	s.handle(post, "/console/orgs/{org}/tokens/{tokenID}/rotate", authz.OrgTokenWrite, s.consoleRotateToken).html()
	s.handle(post, "/console/orgs/{org}/tokens/{tokenID}/revoke", authz.OrgTokenWrite, s.consoleRevokeToken).html()
	s.handle(post, "/console/orgs/{org}/teams/{team}/tokens", authz.OrgTokenWrite, s.consoleCreateToken).html()
	s.handle(post, "/console/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate", authz.OrgTokenWrite, s.consoleRotateToken).html()
	s.handle(post, "/console/orgs/{org}/teams/{team}/tokens/{tokenID}/revoke", authz.OrgTokenWrite, s.consoleRevokeToken).html()
	s.handle(get, "/console/orgs/{org}/audit", authz.OrgAuditRead, s.consoleAudit).html()
	s.handle(get, "/console/orgs/{org}/audit/export", authz.OrgAuditRead, s.consoleAuditExport).html()
	s.handle(get, "/console/orgs/{org}/audit/{seq}", authz.OrgAuditRead, s.consoleAuditEvent).html()

	s.registerOIDCRoutes()
	s.registerLeakRoutes()
	s.registerAuditRoutes()
	s.registerRateLimitRoutes()
	s.registerEnvRoutes()
	s.registerWebhookRoutes()
	s.registerSCIMRoutes()
	s.registerSAMLRoutes()
	s.registerSSORoutes()
	s.registerPostureRoutes()
	s.registerDeployRoutes()
	s.registerPolicyRoutes()

	// Responses that carry a credential value: Cache-Control: no-store.
	s.noStore(
		"POST /api/user/tokens", "POST /api/user/tokens/{tokenID}/rotate",
		"POST /api/orgs/{org}/tokens", "POST /api/orgs/{org}/tokens/{tokenID}/rotate",
		"POST /api/orgs/{org}/teams/{team}/tokens", "POST /api/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate",
		"POST /api/orgs/{org}/users", // the new user's first token
		"POST /api/oauth/token",      // OIDC token exchange
		"POST "+updatePath,           // start: the lease token
		"POST "+updatePath+"/renew_lease",
		"POST /console/tokens", "POST /console/tokens/{tokenID}/rotate", // the console's one-time token pages
		"POST /console/orgs/{org}/tokens", "POST /console/orgs/{org}/tokens/{tokenID}/rotate",
		"POST /console/orgs/{org}/teams/{team}/tokens", "POST /console/orgs/{org}/teams/{team}/tokens/{tokenID}/rotate",
	)
}

// html marks a web console route (its answers and errors are pages).
func (rt *Route) html() *Route {
	rt.HTML = true
	return rt
}

// noStore sets Route.NoStore on the routes named "METHOD pattern"; a name that is not in
// the table is a bug in the table.
func (s *Server) noStore(keys ...string) {
	for _, key := range keys {
		found := false
		for _, rt := range s.routes {
			if rt.Method+" "+rt.Pattern == key {
				rt.NoStore, found = true, true
			}
		}
		if !found {
			panic("noStore: no route " + key)
		}
	}
}

func (s *Server) healthz(rq *Request) (any, error) { return map[string]string{"status": "ok"}, nil }

func (s *Server) readyz(rq *Request) (any, error) {
	if err := s.store.Ping(rq.Context()); err != nil {
		return nil, err
	}
	return map[string]string{"status": "ready", "database": s.store.Engine()}, nil
}
