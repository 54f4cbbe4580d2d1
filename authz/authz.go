// Package authz is Gatehouse's single decision point: Decide turns a subject, an action and
// a resource (with the facts loaded for them) into allow or deny, with a reason. No other
// package reads roles or grants to make an access decision.
package authz

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Action is what a route does. Every route declares one.
type Action string

// Actions. The prefix names the kind of resource the action is checked against.
const (
	// Public routes need no credentials (health, readiness, metrics, capabilities).
	Public Action = "public"

	// The caller's own identity.
	UserRead   Action = "user:read"   // GET /api/user, default organization
	UserStacks Action = "user:stacks" // list stacks across the caller's organizations (filtered per stack)
	UserTokens Action = "user:tokens" // the caller's personal tokens
	// UserEnvironments lists environments across the caller's organizations (filtered per environment).
	UserEnvironments Action = "user:environments"

	// Invitations to the caller (the invited person, with their own personal token).
	UserInvitationRead    Action = "user:invitation:read" // list the caller's pending invitations
	UserInvitationAccept  Action = "user:invitation:accept"
	UserInvitationDecline Action = "user:invitation:decline"

	// Site administration.
	SiteOrgCreate   Action = "site:org:create"
	SiteAuditVerify Action = "site:audit:verify" // verify the whole audit log's chain and checkpoints
	SiteUserRead    Action = "site:user:read"    // list every user of the site
	SiteUserDisable Action = "site:user:disable" // disable a user: every personal token ends
	// The site-wide audit log (events of no organization) and the failed-authentication
	// limiter's counters.
	SiteAuditRead      Action = "site:audit:read"
	SiteRateLimitRead  Action = "site:ratelimit:read"
	SiteRateLimitClear Action = "site:ratelimit:clear" // end a rate-limit block

	// Organization-level.
	OrgRead        Action = "org:read"         // see the organization, list its projects
	OrgUpdate      Action = "org:update"       // settings
	OrgMemberRead  Action = "org:member:read"  // list members
	OrgMemberWrite Action = "org:member:write" // add, remove, change roles
	OrgUserCreate  Action = "org:user:create"  // create a person (who gets a first personal token)
	OrgTeamRead    Action = "org:team:read"
	OrgTeamWrite   Action = "org:team:write" // teams, their members and grants
	OrgTokenRead   Action = "org:token:read" // organization and team tokens
	OrgTokenWrite  Action = "org:token:write"
	OrgAuditRead   Action = "org:audit:read"
	OrgProtect     Action = "org:protect" // protection rules
	OrgOIDC        Action = "org:oidc"    // OIDC issuers and policies: register, change, delete
	OrgOIDCRead    Action = "org:oidc:read"

	// OrgWebhooks is the organization's webhooks, their delivery logs and pings.
	OrgWebhooks Action = "org:webhooks"

	// OrgSCIMToken is creating (regenerating) the organization's SCIM token and reading
	// its facts: an organization admin, a person.
	OrgSCIMToken Action = "org:scim:token"
	// OrgSCIMTeamRelease is ending SCIM's management of a team (DELETE
	// /api/orgs/{org}/scim/teams/{team}): an organization admin, a person.
	OrgSCIMTeamRelease Action = "org:scim:team:release"

	// SCIM 2.0 provisioning (/scim/v2/{org}): only the organization's SCIM token (subject
	// kind SCIMToken), and that token nothing else.
	SCIMRead       Action = "scim:read"        // Users, Groups, discovery
	SCIMUserWrite  Action = "scim:user:write"  // create, replace, patch (deprovision), delete people
	SCIMGroupWrite Action = "scim:group:write" // create, replace, patch, delete groups (teams)
	// Posture: a token's usage inventory, the posture report, thresholds and anomalies, and
	// the address allow-lists and named ranges (administrators).
	OrgTokenUsage     Action = "org:token:usage"
	OrgPostureRead    Action = "org:posture:read"
	OrgPostureWrite   Action = "org:posture:write"
	OrgAllowListRead  Action = "org:allowlist:read"
	OrgAllowListWrite Action = "org:allowlist:write"
	// The organization's SAML identity provider (its metadata and sign-in settings).
	OrgSAMLRead  Action = "org:saml:read"
	OrgSAMLWrite Action = "org:saml:write"
	// OrgSSO is the organization's single sign-on configuration and sign-in policy (OIDC,
	// GitHub, allowed methods, SSO required, just-in-time role, group mapping).
	OrgSSO Action = "org:sso"
	// Policy as code (package policy): members see the organization's policy packs,
	// groups, approved providers and results; admins publish and remove packs, manage
	// groups and the provider allow-list.
	OrgPolicyRead  Action = "org:policy:read"
	OrgPolicyWrite Action = "org:policy:write"

	// Invitations of people who are not the organization's own (see decideDirectAdd).
	OrgInvitationRead   Action = "org:invitation:read" // list the organization's invitations
	OrgInvitationCreate Action = "org:invitation:create"
	OrgInvitationRevoke Action = "org:invitation:revoke"
	// OrgMemberEmails is seeing other members' email addresses in member and team listings
	// (no route of its own: the listings ask it what to show).
	OrgMemberEmails Action = "org:member:emails"

	// Stack-level.
	StackCreate  Action = "stack:create"
	StackRead    Action = "stack:read"   // metadata, history, update status and events
	StackExport  Action = "stack:export" // the state document (secrets stay encrypted)
	StackEncrypt Action = "stack:encrypt"
	StackDecrypt Action = "stack:decrypt"
	StackPreview Action = "stack:preview" // dry-run updates of any kind
	StackUpdate  Action = "stack:update"  // up, refresh, destroy, resource import (changes)
	StackImport  Action = "stack:import"  // state import and state edits
	StackTags    Action = "stack:tags"
	StackConfig  Action = "stack:config" // the stack's remote configuration (ESC environment, secrets provider)
	StackCancel  Action = "stack:cancel"
	StackRename  Action = "stack:rename"
	StackDelete  Action = "stack:delete"
	StackAccess  Action = "stack:access" // who can access the stack

	// StackWebhooks is the stack's webhooks, their delivery logs and pings (admin: a
	// webhook sends the stack's activity to an outside address).
	StackWebhooks Action = "stack:webhooks"

	// StackPolicy is adding a stack to, or removing it from, a policy group by name (stack
	// admins may; org:policy:write covers every stack). Protected: it may lift a required
	// policy.
	StackPolicy Action = "stack:policy"

	// Environment-level (Pulumi ESC). The levels are read < open < write < admin.
	EnvCreate Action = "env:create" // create an environment (refined with the new one's project)
	EnvRead   Action = "env:read"   // definition with secrets as ciphertext, check, revisions, tags
	EnvOpen   Action = "env:open"   // values in the clear: open, read a session, /decrypt, check?showSecrets
	EnvWrite  Action = "env:write"  // new revisions, revision tags
	EnvAdmin  Action = "env:admin"  // delete, settings
	// EnvWebhooks is the environment's webhooks, their delivery logs and pings (admin, as
	// stack:webhooks: a webhook sends the environment's activity to an outside address).
	EnvWebhooks Action = "env:webhooks"

	// Deployments (package deploy). Settings are the stack admin's: they say what code the
	// pipeline runs with a pipeline credential. Triggering a run needs what running the
	// operation by hand needs (write for update, refresh, destroy; read for a preview), but
	// no protection applies to it: the run itself is the pipeline.
	StackDeployRead     Action = "stack:deploy:read"     // settings (secrets sealed), runs, their logs and updates
	StackDeploySettings Action = "stack:deploy:settings" // change settings, encrypt a settings secret
	StackDeployPreview  Action = "stack:deploy:preview"  // trigger a preview run
	StackDeployUpdate   Action = "stack:deploy:update"   // trigger update/refresh/destroy runs, cancel, pause, resume
	// OrgDeployPools is the organization's runner pools (their tokens).
	OrgDeployPools Action = "org:deploy:pools"
	// OrgDeployWebhooks is the organization's own VCS webhook secrets (GitHub, GitLab):
	// whoever holds one can start the organization's webhook runs, so setting one (or
	// having one generated and shown) is a person's act, as minting a token is.
	OrgDeployWebhooks Action = "org:deploy:webhooks"
	// RunnerLease is a runner's calls: lease a queued deployment, heartbeat, send output,
	// finish. Only a runner pool's token performs them.
	RunnerLease Action = "runner:lease"

	// Leaked tokens, named by value: holding a token's value is the proof of the right to
	// ask whether it is live and to kill it (as with GitHub's credential revocation API).
	TokenCheck        Action = "token:check"
	TokenRevokeLeaked Action = "token:revoke-leaked"

	// Update-lease calls (Authorization: update-token ...).
	UpdateLease    Action = "update:lease"    // checkpoints, events, lease renewal
	UpdateComplete Action = "update:complete" // the last call of an update (idempotent)
)

// required is the stack permission each stack action needs.
var required = map[Action]gatehouse.Permission{
	StackRead:    gatehouse.PermRead,
	StackExport:  gatehouse.PermRead,
	StackEncrypt: gatehouse.PermRead,
	StackDecrypt: gatehouse.PermRead, // plus the decrypt right, see decide
	StackPreview: gatehouse.PermRead,
	StackAccess:  gatehouse.PermRead,
	StackUpdate:  gatehouse.PermWrite,
	StackImport:  gatehouse.PermWrite,
	StackTags:    gatehouse.PermWrite,
	StackConfig:  gatehouse.PermWrite,
	StackCancel:  gatehouse.PermWrite,
	StackRename:  gatehouse.PermAdmin,
	StackDelete:  gatehouse.PermAdmin,

	StackWebhooks: gatehouse.PermAdmin,

	StackDeployRead:     gatehouse.PermRead,
	StackDeploySettings: gatehouse.PermAdmin,
	StackDeployPreview:  gatehouse.PermRead,
	StackDeployUpdate:   gatehouse.PermWrite,
	StackPolicy:         gatehouse.PermAdmin,
}

// envRequired is the environment permission each environment action needs.
var envRequired = map[Action]gatehouse.EnvPermission{
	EnvRead:  gatehouse.EnvRead,
	EnvOpen:  gatehouse.EnvOpen,
	EnvWrite: gatehouse.EnvWrite,
	EnvAdmin: gatehouse.EnvAdmin,

	EnvWebhooks: gatehouse.EnvAdmin,
}

// IsEnvAction reports whether a is checked against an environment.
func IsEnvAction(a Action) bool { _, ok := envRequired[a]; return ok }

// protectedActions may change a protected stack only with a pipeline credential.
// Tag edits are among them: tags select protection rules and grants, so editing them
// could lift a protection. Cancelling is too, unless the update is a preview (people may
// run previews on protected stacks, so they may also cancel them).
var protectedActions = map[Action]bool{
	StackUpdate: true, StackImport: true, StackRename: true, StackDelete: true, StackTags: true, StackCancel: true,
	StackConfig: true, // the configuration is what the next update deploys
	StackPolicy: true, // a policy group's stacks are what it requires policies of
}

// credentialActions create, show or end people and access tokens, or change who is a member
// and with which role: every route that returns a token value is among them, and so is every
// route that makes, promotes, removes or invites a person (a person made an admin mints
// tokens of their own). Only a person, with a token the person made, performs them; machine
// credentials (team, organization, OIDC-issued and lease tokens) never do, so a short-lived
// or narrow credential cannot mint itself, or a person, a longer-lived or wider one.
var credentialActions = map[Action]bool{
	UserTokens: true, OrgTokenRead: true, OrgTokenWrite: true, OrgUserCreate: true, OrgDeployPools: true, OrgDeployWebhooks: true,
	OrgMemberWrite: true, OrgInvitationCreate: true, OrgInvitationRevoke: true,
	OrgSCIMToken: true, OrgSCIMTeamRelease: true,
	// The identity provider decides who signs in (and, with just-in-time membership, who
	// becomes a member): people only.
	OrgSAMLWrite: true,
	OrgSSO:       true, // who the identity provider may sign in as a member is who is a member
	// An OIDC issuer and its policies decide which ID tokens are exchanged for which access
	// tokens: registering one is minting tokens (found in review: an organization token
	// registered an issuer with a key it held and exchanged its own ID tokens).
	OrgOIDC: true,
}

// isPerson reports whether the subject is a person acting with a personal token that is
// not a pipeline credential (a personal token issued by OIDC exchange is one).
func isPerson(sub *Subject) bool {
	return sub.Kind == UserKind && sub.User != nil && !sub.Pipeline && (sub.Token == nil || sub.Token.Issuer == "")
}

// orgActions need an organization role (or, for tokens, the token's role).
var orgActions = map[Action]gatehouse.Role{
	OrgRead:        gatehouse.RoleMember,
	OrgMemberRead:  gatehouse.RoleMember,
	OrgTeamRead:    gatehouse.RoleMember,
	OrgUpdate:      gatehouse.RoleAdmin,
	OrgMemberWrite: gatehouse.RoleAdmin,
	OrgUserCreate:  gatehouse.RoleAdmin,
	OrgTeamWrite:   gatehouse.RoleAdmin,
	OrgTokenRead:   gatehouse.RoleAdmin,
	OrgTokenWrite:  gatehouse.RoleAdmin,
	OrgAuditRead:   gatehouse.RoleAdmin,
	OrgProtect:     gatehouse.RoleAdmin,
	OrgOIDC:        gatehouse.RoleAdmin,
	OrgOIDCRead:    gatehouse.RoleAdmin,

	OrgWebhooks: gatehouse.RoleAdmin,
	OrgSSO:      gatehouse.RoleAdmin,

	OrgSCIMToken:       gatehouse.RoleAdmin,
	OrgSCIMTeamRelease: gatehouse.RoleAdmin,
	OrgTokenUsage:      gatehouse.RoleAdmin,
	OrgPostureRead:     gatehouse.RoleAdmin,
	OrgPostureWrite:    gatehouse.RoleAdmin,
	OrgAllowListRead:   gatehouse.RoleAdmin,
	OrgAllowListWrite:  gatehouse.RoleAdmin,
	OrgSAMLRead:        gatehouse.RoleAdmin,
	OrgSAMLWrite:       gatehouse.RoleAdmin,

	OrgDeployPools:    gatehouse.RoleAdmin,
	OrgDeployWebhooks: gatehouse.RoleAdmin,

	OrgPolicyRead:  gatehouse.RoleMember,
	OrgPolicyWrite: gatehouse.RoleAdmin,

	OrgInvitationRead:   gatehouse.RoleAdmin,
	OrgInvitationCreate: gatehouse.RoleAdmin,
	OrgInvitationRevoke: gatehouse.RoleAdmin,
	OrgMemberEmails:     gatehouse.RoleAdmin,
}

// IsStackAction reports whether a is checked against a stack.
func IsStackAction(a Action) bool { _, ok := required[a]; return ok }

// SubjectKind is the kind of credential a request carries.
type SubjectKind string

// Subject kinds.
const (
	Anonymous SubjectKind = "anonymous"
	UserKind  SubjectKind = "user"       // a personal token: acts as its user
	TeamToken SubjectKind = "team-token" // acts with exactly its team's grants
	OrgToken  SubjectKind = "org-token"  // acts with its organization role
	Lease     SubjectKind = "lease"      // an update-lease token: one update of one stack
	// SCIMToken is an organization's SCIM token (the identity provider): SCIM actions of
	// that organization only.
	SCIMToken SubjectKind = "scim-token"
	// Runner is a runner pool's token: it leases the pool's deployments and nothing else.
	Runner SubjectKind = "runner"
	// Deployment is a deployment run's credential: a pipeline credential for exactly the
	// run's stack and operation, live while the run is.
	Deployment SubjectKind = "deployment"
)

// IsSCIMAction reports whether a is a SCIM provisioning action (only SCIM tokens).
func IsSCIMAction(a Action) bool {
	return a == SCIMRead || a == SCIMUserWrite || a == SCIMGroupWrite
}

// Subject is who is asking.
type Subject struct {
	Kind SubjectKind
	// User is set for personal tokens.
	User *gatehouse.User
	// Token is the access token used (nil for anonymous and lease subjects).
	Token *gatehouse.Token
	// Update is the leased update (lease subjects).
	Update *gatehouse.Update
	// Pipeline is true for pipeline credentials (team, organization and OIDC-issued tokens).
	Pipeline bool
	// Session is the browser session a person authenticated with (cookie; Token is nil
	// then). A session acts as its user, like a personal token the person made.
	Session *gatehouse.Session
	// Pool is the runner pool (runner subjects).
	Pool *gatehouse.DeployPool
	// Deployment is the run a deployment credential belongs to (deployment subjects).
	Deployment *gatehouse.Deployment
	// ActsFor is the principal a deployment credential's run acts for, as it is at this
	// request (deployment subjects; see gatehouse.Deployment.ActsFor): the credential's
	// environment reads and opens are decided for it, with Facts.ActsFor. Nil when the run
	// acts for nobody or its principal can no longer act (ActsForGone says why).
	ActsFor *Subject
	// ActsForName names that principal in decisions and audit ("" : nobody).
	ActsForName string
	// ActsForGone says why ActsFor is nil although a principal is recorded (deleted,
	// revoked, expired, disabled), or why the run acts for nobody.
	ActsForGone string
	// Editor is the last editor of the stack's deployment settings when the run was queued
	// (gatehouse.Deployment.Editor: who chose the code the run executes), as it is at this
	// request, when it differs from the principal the run acts for (nil when the same, or
	// when it cannot act: EditorGone says why). Environment reads and opens need both to
	// be allowed, with Facts.Editor.
	Editor *Subject
	// EditorName names the editor in decisions and audit; EditorGone as ActsForGone.
	EditorName string
	EditorGone string
}

// Principal is the durable name of the subject for a deployment run to act for: its access
// token (personal, team, organization) or, for a browser session, its user. Zero for every
// other credential (lease, runner, deployment and SCIM credentials never act for a run).
func (s *Subject) Principal() gatehouse.Principal {
	if s == nil || (s.Kind != UserKind && s.Kind != TeamToken && s.Kind != OrgToken) {
		return gatehouse.Principal{}
	}
	if s.Token != nil {
		return gatehouse.Principal{Kind: gatehouse.PrincipalToken, ID: s.Token.ID}
	}
	if s.User != nil {
		return gatehouse.Principal{Kind: gatehouse.PrincipalUser, ID: strconv.FormatInt(s.User.ID, 10)}
	}
	return gatehouse.Principal{}
}

// BoundOrg is the organization the subject's credential is confined to, 0 when none. Team
// and organization tokens belong to their organization; a personal token issued by OIDC
// token exchange records the organization whose issuer and policy issued it, and acts as
// its user there only, never in organizations the user belongs to (or joins) besides.
// Ordinary personal tokens act in every organization of their user.
func (s *Subject) BoundOrg() int64 {
	if s == nil || s.Token == nil {
		return 0
	}
	return s.Token.OrgID
}

// ActsIn reports whether the subject's credential may act in organization orgID at all:
// the tenancy check of Decide, for listings that span organizations (a user's
// organizations and stacks). Membership is checked separately.
func (s *Subject) ActsIn(orgID int64) bool {
	if s == nil || s.Token == nil {
		return true
	}
	if s.Kind != UserKind || s.BoundOrg() != 0 {
		return s.Token.OrgID == orgID
	}
	return true
}

// Name is the subject's display name for logs and audit.
func (s *Subject) Name() string {
	switch {
	case s == nil:
		return "anonymous"
	case s.User != nil:
		return s.User.Name
	case s.Token != nil:
		return s.Token.Name
	case s.Update != nil:
		return "update " + s.Update.ID
	case s.Deployment != nil:
		return "deployment " + s.Deployment.ID
	case s.Pool != nil:
		return "runner pool " + s.Pool.Name
	}
	return string(s.Kind)
}

// Facts are what a decision about an organization's resources depends on, loaded per request.
type Facts struct {
	// Role is the subject's organization role; "" when it is not a member.
	Role gatehouse.Role
	// Grants are the grants of the subject's teams in the organization (the token's team for
	// team tokens).
	Grants []gatehouse.Grant
	// Protections are the scopes of the organization's protection rules.
	Protections []gatehouse.Scope
	// Now is the time of the request (token lifetime policy).
	Now time.Time
	// ActsFor are the facts of the principal a deployment credential acts for
	// (Subject.ActsFor), nil when none; Editor those of the run's settings editor
	// (Subject.Editor).
	ActsFor *Facts
	Editor  *Facts
}

// Resource is what the action is performed on. Org is set for every organization-scoped
// action; Stack for stack actions on an existing stack; NewStack for stack creation.
type Resource struct {
	Org      *gatehouse.Org
	Stack    *gatehouse.Stack
	Update   *gatehouse.Update
	NewStack *NewStack

	// Invitation is the invitation an invitation action is about.
	Invitation *gatehouse.Invitation
	// Person is the existing user an org:member:write adds to the organization directly
	// (without an invitation); nil for every other member change.
	Person *Person
	// Env is the environment of environment actions; NewEnv the one env:create makes.
	Env    *gatehouse.Environment
	NewEnv *NewEnv
	// UpdateKind is the kind of the update about to be created (stack:update on create).
	UpdateKind gatehouse.UpdateKind
}

// NewEnv describes an environment about to be created.
type NewEnv struct {
	Project string
	Name    string
}

// Person is a user about to be added to an organization directly, as far as the decision
// needs to know them.
type Person struct {
	// Name is the user name the caller gave.
	Name string
	// User is the user of that name; nil when there is none.
	User *gatehouse.User
	// OtherOrgs is how many organizations besides Resource.Org the user belongs to.
	OtherOrgs int
}

// NewStack describes a stack about to be created.
type NewStack struct {
	Project string
	Name    string
	Tags    map[string]string
	// AnyTags asks before the stack's name and tags are known (the request body is not
	// read yet): is the caller denied whatever they turn out to be? A grant on a tag counts
	// as if the stack had that tag. Only an early refusal may rest on it; an allowance must
	// be decided again with the real name and tags.
	AnyTags bool
}

// Decision is the outcome of Decide.
type Decision struct {
	Allow  bool
	Reason string
	// Hide means the caller must not learn that the resource exists: answer 404.
	Hide bool
}

func allow(reason string) Decision { return Decision{Allow: true, Reason: reason} }
func deny(format string, args ...any) Decision {
	return Decision{Reason: fmt.Sprintf(format, args...)}
}
func hide(reason string) Decision { return Decision{Reason: reason, Hide: true} }

// Decide is the authorization function.
func Decide(sub *Subject, action Action, res Resource, f Facts) Decision {
	if action == Public {
		return allow("public route")
	}
	if sub == nil || sub.Kind == Anonymous {
		return deny("authentication required")
	}
	if sub.Kind == Lease {
		return decideLease(sub, action, res)
	}
	if sub.Kind == SCIMToken || IsSCIMAction(action) {
		return decideSCIM(sub, action, res)
	}
	if sub.Kind == Runner || action == RunnerLease {
		if sub.Kind == Runner && action == RunnerLease && sub.Pool != nil {
			return allow("runner pool " + sub.Pool.Name)
		}
		return deny("a runner pool's token only leases and runs the pool's deployments")
	}
	switch action {
	case UserRead, UserStacks, UserEnvironments:
		return allow("own identity")
	case UserTokens:
		if !isPerson(sub) {
			// A short-lived token from OIDC exchange must not mint itself a long-lived one.
			return deny("only a person's own personal token manages personal tokens; machine credentials (team, organization, OIDC-issued tokens) never manage tokens")
		}
		return allow("own tokens")
	case SiteOrgCreate:
		if sub.Kind == UserKind && sub.User.SiteAdmin && sub.BoundOrg() == 0 {
			return allow("site administrator")
		}
		return deny("only a site administrator may create organizations")
	case SiteAuditVerify:
		if sub.Kind == UserKind && sub.User.SiteAdmin && sub.BoundOrg() == 0 {
			return allow("site administrator")
		}
		return deny("only a site administrator may verify the audit log")
	case SiteAuditRead, SiteRateLimitRead, SiteRateLimitClear:
		// Site-wide facts: not for a token bound to one organization (OIDC-issued).
		if sub.Kind == UserKind && sub.User.SiteAdmin && sub.BoundOrg() == 0 {
			return allow("site administrator")
		}
		return deny("only a site administrator may read the site-wide audit log or the rate limits")
	case SiteUserRead, SiteUserDisable:
		if sub.Kind == UserKind && sub.User.SiteAdmin && sub.BoundOrg() == 0 {
			return allow("site administrator")
		}
		return deny("only a site administrator may list or disable users")
	case UpdateLease, UpdateComplete:
		return deny("this call needs the update's lease token")
	case UserInvitationRead, UserInvitationAccept, UserInvitationDecline:
		return decideOwnInvitation(sub, action, res)
	case TokenCheck, TokenRevokeLeaked:
		// Any authenticated caller (anonymous and lease subjects were turned away above): the
		// token values in the request are the proof. What an answer reveals beyond live or
		// dead (a token's ID and name) is decided per token with UserTokens / OrgTokenRead.
		return allow("possession of the token value")
	}
	if res.Org == nil {
		return deny("no organization given")
	}
	if d, ok := seesOrg(sub, res.Org, f); !ok {
		return d
	}
	if res.Invitation != nil && res.Invitation.OrgID != res.Org.ID {
		return hide("invitation belongs to another organization")
	}
	role := f.Role
	if d, ok := tokenPolicy(sub, res.Org, f.Now); !ok {
		return d
	}
	if sub.Kind == Deployment {
		return decideDeployment(sub, action, res, f)
	}
	if credentialActions[action] && !isPerson(sub) {
		return deny("people and tokens are managed by people, not by machine credentials (team, organization, OIDC-issued or lease tokens)")
	}
	if need, ok := orgActions[action]; ok && action == OrgMemberWrite && res.Person != nil {
		if d := decideOrg(sub, action, need, role); !d.Allow {
			return d
		}
		return decideDirectAdd(sub, res)
	}
	if need, ok := orgActions[action]; ok {
		return decideOrg(sub, action, need, role)
	}
	if action == StackCreate {
		return decideCreate(sub, res, f)
	}
	if action == EnvCreate {
		return decideEnvCreate(sub, res, f)
	}
	if _, ok := envRequired[action]; ok {
		if res.Env == nil {
			return deny("no environment given")
		}
		return decideEnv(sub, action, res, f)
	}
	if _, ok := required[action]; ok {
		if res.Stack == nil {
			return deny("no stack given")
		}
		return decideStack(sub, action, res, f)
	}
	return deny("unknown action %q", action)
}

// seesOrg is the tenancy check of every organization-scoped decision: a credential of
// another organization (including an OIDC-issued personal token of another organization's
// issuer, and a deployment run's credential), or a user who is not a member, must not
// learn that anything in org exists. The decision is then the one to answer (Hide).
func seesOrg(sub *Subject, org *gatehouse.Org, f Facts) (Decision, bool) {
	switch {
	case !sub.ActsIn(org.ID):
		return hide("credential belongs to another organization"), false
	case sub.Kind == UserKind && f.Role == "":
		return hide("not a member of organization " + org.Name), false
	case sub.Kind == Deployment && (sub.Deployment == nil || sub.Deployment.OrgID != org.ID):
		return hide("the deployment credential belongs to another organization"), false
	}
	return Decision{}, true
}

// SeesOrg reports whether Decide lets the subject learn that the organization of res
// exists (the tenancy check every organization-scoped action passes first; res is what the
// path resolved to, f are the subject's facts in its organization). Checks made before the
// decision that refuse with an answer naming the organization (its address allow-list, its
// single sign-on requirement) apply only to such subjects: to anyone else the organization
// must answer exactly as without them (the decision's 404). An update-lease token sees only
// the stack of its own update (decideLease hides everything else), so it sees the
// organization only on a path whose stack resolved to that stack.
func SeesOrg(sub *Subject, res Resource, f Facts) bool {
	if sub == nil || res.Org == nil {
		return false
	}
	if sub.Kind == Lease {
		return leaseSeesStack(sub, res)
	}
	_, ok := seesOrg(sub, res.Org, f)
	return ok
}

// leaseSeesStack: a lease token belongs to one update of one stack; it may learn only that
// this stack (and so its organization) exists.
func leaseSeesStack(sub *Subject, res Resource) bool {
	u := sub.Update
	return u != nil && res.Org != nil && res.Stack != nil && u.StackID == res.Stack.ID && res.Stack.OrgID == res.Org.ID
}

// tokenPolicy enforces the organization's maximum token lifetime on every request: a token
// that never expires, or outlives the limit, is refused in that organization.
func tokenPolicy(sub *Subject, org *gatehouse.Org, now time.Time) (Decision, bool) {
	maxDays := org.Settings.MaxTokenLifetimeDays
	if maxDays <= 0 || sub.Token == nil || now.IsZero() {
		return Decision{}, true
	}
	limit := now.Add(time.Duration(maxDays) * 24 * time.Hour)
	if sub.Token.Expires.IsZero() || sub.Token.Expires.After(limit) {
		return deny("organization %s allows only tokens that expire within %d days; this token (%s) does not: create a new one", org.Name, maxDays, sub.Token.Name), false
	}
	return Decision{}, true
}

func decideLease(sub *Subject, action Action, res Resource) Decision {
	if !leaseSeesStack(sub, res) {
		// A stack other than its update's, in its own organization or another: the lease
		// must not learn that it (or its organization) exists.
		return hide("the lease token belongs to an update of another stack")
	}
	if action != UpdateLease && action != UpdateComplete {
		return deny("an update-lease token is only valid for the calls of its own update")
	}
	u := sub.Update
	if res.Update == nil || u.ID != res.Update.ID {
		return deny("the lease token belongs to another update")
	}
	if res.Update.Status.Finished() {
		if action == UpdateComplete {
			return allow("completing an ended update is idempotent")
		}
		return deny("the update has ended (%s)", res.Update.Status)
	}
	if res.Update.Status != gatehouse.StatusRunning {
		return deny("the update has not started")
	}
	return allow("lease holder")
}

// decideSCIM: SCIM actions are for the organization's own SCIM token only, and a SCIM token
// performs nothing else (it is the identity provider, not a person or a pipeline).
func decideSCIM(sub *Subject, action Action, res Resource) Decision {
	if sub.Kind != SCIMToken || sub.Token == nil {
		return deny("SCIM provisioning takes the organization's SCIM token")
	}
	if !IsSCIMAction(action) {
		return deny("a SCIM token is valid only for SCIM provisioning (/scim/v2/{org})")
	}
	if res.Org == nil || sub.Token.OrgID != res.Org.ID {
		return deny("the SCIM token belongs to another organization")
	}
	return allow("the organization's SCIM token")
}

// decideOwnInvitation: invitations are seen and answered only by the invited person, with a
// personal token of their own. A token of a team or an organization, or one issued by OIDC
// token exchange, is a machine's: it must not make a person a member of anything.
func decideOwnInvitation(sub *Subject, action Action, res Resource) Decision {
	if sub.Kind != UserKind || sub.User == nil || sub.Pipeline {
		return deny("invitations are answered by the invited person with their own personal token, not by a team, organization or OIDC-issued token")
	}
	if action == UserInvitationRead {
		return allow("own invitations")
	}
	inv := res.Invitation
	if inv == nil {
		return deny("no invitation given")
	}
	if !InvitedUser(inv, sub.User) {
		// Someone else's invitation (or one for a name nobody had when it was made): the
		// caller must not learn that it exists.
		return hide("the invitation is for another user")
	}
	return allow("invited person")
}

// InvitedUser reports whether u is the user inv was made for: the user bound to it by ID
// when it was made (never by name: an account made later under the invited name, by another
// organization's admin say, does not get it), and, in case IDs were ever reused, a user
// that already existed then.
func InvitedUser(inv *gatehouse.Invitation, u *gatehouse.User) bool {
	return inv != nil && u != nil && inv.UserID != 0 && inv.UserID == u.ID && !u.Created.After(inv.Created)
}

// decideDirectAdd decides whether an organization admin may add an existing user without
// the user's consent. A direct add shows the organization's admins the user's email and
// whether the name exists at all, so it is allowed only for accounts the organization
// created itself (POST /api/orgs/{org}/users) that belong to no other organization, and to
// site administrators. Everyone else is invited and becomes a member by accepting. The
// refusal reads the same whether the user exists or not.
func decideDirectAdd(sub *Subject, res Resource) Decision {
	if sub.Kind == UserKind && sub.User != nil && sub.User.SiteAdmin && !sub.Pipeline {
		return allow("site administrator")
	}
	p := res.Person
	if p.User != nil && p.User.CreatedByOrg == res.Org.ID && p.OtherOrgs == 0 {
		return allow("organization admin; the account was created by " + res.Org.Name + " and belongs to no other organization")
	}
	return deny("%s cannot be added to %s directly: invite them instead (POST /api/orgs/%s/invitations, or gatehouse invite create %s); they become a member when they accept. Only a site administrator adds a user of another organization directly", p.Name, res.Org.Name, res.Org.Name, p.Name)
}

func decideOrg(sub *Subject, action Action, need, role gatehouse.Role) Decision {
	switch sub.Kind {
	case TeamToken:
		if need == gatehouse.RoleMember {
			return allow("team token reads its organization")
		}
		return deny("a team token cannot perform %s", action)
	case OrgToken:
		role = sub.Token.Role
	}
	if role == gatehouse.RoleAdmin {
		return allow("organization admin")
	}
	if need == gatehouse.RoleMember && role == gatehouse.RoleMember {
		return allow("organization member")
	}
	return deny("%s requires the organization admin role", action)
}

// stackPermission computes what the subject may do on a stack: the maximum over the org
// default (members only), the creator grant (users only) and every matching team grant.
func stackPermission(sub *Subject, stackID int64, project string, tags map[string]string, creator int64, res Resource, f Facts) (perm gatehouse.Permission, decrypt bool, why string) {
	if sub.Kind == OrgToken {
		switch sub.Token.Role {
		case gatehouse.RoleAdmin:
			return gatehouse.PermAdmin, true, "organization token with admin role"
		case gatehouse.RoleMember:
			p := res.Org.Settings.DefaultStackPermission
			return p, p >= gatehouse.PermWrite, "organization token with member role: the org's default stack permission"
		}
		return gatehouse.PermNone, false, "organization token without a stack role"
	}
	if sub.Kind == UserKind {
		switch f.Role {
		case gatehouse.RoleAdmin:
			return gatehouse.PermAdmin, true, "organization admin"
		case gatehouse.RoleMember:
			perm = res.Org.Settings.DefaultStackPermission
			decrypt = perm >= gatehouse.PermWrite
			why = "the organization's default stack permission"
			if creator != 0 && creator == sub.User.ID {
				perm, decrypt, why = gatehouse.PermAdmin, true, "stack creator"
			}
		default:
			return gatehouse.PermNone, false, "role " + string(f.Role) + " has no stack access"
		}
	}
	for _, g := range f.Grants {
		if !g.Scope.Matches(stackID, project, tags) {
			continue
		}
		if g.Permission > perm {
			perm, why = g.Permission, "team "+g.TeamName+" grant on "+g.Scope.String()
		}
		if g.Permission >= gatehouse.PermWrite || (g.Permission >= gatehouse.PermRead && g.Decrypt) {
			decrypt = true
		}
	}
	if perm >= gatehouse.PermWrite {
		decrypt = true
	}
	if why == "" {
		why = "no grant"
	}
	return perm, decrypt, why
}

func decideCreate(sub *Subject, res Resource, f Facts) Decision {
	ns := res.NewStack
	if ns == nil {
		return deny("no stack given")
	}
	switch sub.Kind {
	case UserKind:
		if f.Role == gatehouse.RoleAdmin {
			return allow("organization admin")
		}
		if f.Role == gatehouse.RoleMember && res.Org.Settings.MembersCanCreateStacks {
			return allow("members may create stacks")
		}
	case OrgToken:
		if sub.Token.Role == gatehouse.RoleAdmin {
			return allow("organization token with admin role")
		}
		if sub.Token.Role == gatehouse.RoleMember && res.Org.Settings.MembersCanCreateStacks {
			return allow("members may create stacks")
		}
	}
	// Otherwise a team (the user's or the token's) must hold write on what the stack will be:
	// its project, or a tag it is created with.
	for _, g := range f.Grants {
		if g.Scope.StackID == 0 && g.Permission >= gatehouse.PermWrite &&
			(g.Scope.Matches(0, ns.Project, ns.Tags) || ns.AnyTags && g.Scope.TagName != "") {
			return allow("team " + g.TeamName + " grant on " + g.Scope.String())
		}
	}
	return deny("not allowed to create stacks in organization %s", res.Org.Name)
}

func decideStack(sub *Subject, action Action, res Resource, f Facts) Decision {
	s := res.Stack
	perm, decrypt, why := stackPermission(sub, s.ID, s.Project, s.Tags, s.CreatorUserID, res, f)
	if perm == gatehouse.PermNone {
		// A member without any access learns nothing about the stack.
		return hide("no access to stack " + s.Ref().String() + " (" + why + ")")
	}
	need := required[action]
	if perm < need {
		return deny("%s requires %s permission on stack %s; you have %s (%s)", action, need, s.Ref(), perm, why)
	}
	if action == StackDecrypt && !decrypt {
		return deny("reading stack %s does not include decrypting its secrets; ask for a grant with decrypt (%s)", s.Ref(), why)
	}
	if action == StackDelete && sub.Kind == UserKind && f.Role != gatehouse.RoleAdmin && !res.Org.Settings.MembersCanDeleteStacks {
		return deny("only organization admins may delete stacks in %s", res.Org.Name)
	}
	if protectedActions[action] && !sub.Pipeline && !(action == StackCancel && res.Update != nil && res.Update.DryRun) {
		for _, p := range f.Protections {
			if p.Matches(s.ID, s.Project, s.Tags) {
				return deny("stack %s is protected (%s): changes must come from a pipeline credential (a team, organization or OIDC-issued token); previews are allowed", s.Ref(), p)
			}
		}
	}
	return allow(why)
}

// EnvPermission computes what the subject may do on an environment: the maximum over the
// org default environment permission (members), the creator's admin (people only) and
// every team grant on an environment scope that covers it (the environment, or its ESC
// project). Stack grants never give environment permissions.
func EnvPermission(sub *Subject, env *gatehouse.Environment, org *gatehouse.Org, f Facts) (perm gatehouse.EnvPermission, why string) {
	switch sub.Kind {
	case OrgToken:
		switch sub.Token.Role {
		case gatehouse.RoleAdmin:
			return gatehouse.EnvAdmin, "organization token with admin role"
		case gatehouse.RoleMember:
			return org.Settings.DefaultEnvironmentPermission, "organization token with member role: the org's default environment permission"
		}
		return gatehouse.EnvNone, "organization token without an environment role"
	case UserKind:
		switch f.Role {
		case gatehouse.RoleAdmin:
			return gatehouse.EnvAdmin, "organization admin"
		case gatehouse.RoleMember:
			perm, why = org.Settings.DefaultEnvironmentPermission, "the organization's default environment permission"
			if env.CreatorUserID != 0 && env.CreatorUserID == sub.User.ID && isPerson(sub) {
				perm, why = gatehouse.EnvAdmin, "environment creator"
			}
		default:
			return gatehouse.EnvNone, "role " + string(f.Role) + " has no environment access"
		}
	}
	for _, g := range f.Grants {
		if !g.Scope.IsEnv() || !g.Scope.MatchesEnv(env.ID, env.Project, env.Tags, false) {
			continue
		}
		if p := gatehouse.EnvPermissionOf(g.Permission, g.Decrypt); p > perm {
			perm, why = p, "team "+g.TeamName+" grant on "+g.Scope.String()
		}
	}
	if why == "" {
		why = "no grant"
	}
	return perm, why
}

// StackTagsRaise reports whether giving the stack res.Stack the tags tags would raise what
// sub may do on it (a team's grant on a tag that would then select it): nobody raises their
// own permission by tagging (found in review: a writer tagged a stack to pick up their
// team's admin grant on that tag). why names the grant that would raise it.
func StackTagsRaise(sub *Subject, res Resource, f Facts, tags map[string]string) (raise bool, why string) {
	s := res.Stack
	p0, d0, _ := stackPermission(sub, s.ID, s.Project, s.Tags, s.CreatorUserID, res, f)
	p1, d1, why := stackPermission(sub, s.ID, s.Project, tags, s.CreatorUserID, res, f)
	return p1 > p0 || d1 && !d0, why
}

// EnvTagsRaise is StackTagsRaise for an environment's tags: a higher permission, or a
// longer (or no) limit on how long the caller may open it (a grant's maxOpenDuration).
func EnvTagsRaise(sub *Subject, env *gatehouse.Environment, org *gatehouse.Org, f Facts, tags map[string]string) (raise bool, why string) {
	p0, _ := EnvPermission(sub, env, org, f)
	next := *env
	next.Tags = tags
	p1, why := EnvPermission(sub, &next, org, f)
	if p1 > p0 {
		return true, why
	}
	if p1 >= gatehouse.EnvOpen {
		l0, l1 := EnvOpenLimit(sub, env, org, f), EnvOpenLimit(sub, &next, org, f)
		if l0 > 0 && (l1 == 0 || l1 > l0) {
			return true, fmt.Sprintf("opening it for longer than %s", l0)
		}
	}
	return false, why
}

// EnvOpenLimit is the longest the subject may open env for (0: no limit beyond the
// server's). Only team grants carry limits (Pulumi's maxOpenDuration): when the subject's
// open right comes from anything without a limit (the org's default permission, an admin
// role, the creator's admin, a grant without a limit) there is none; otherwise the largest
// limit of the grants that give open.
func EnvOpenLimit(sub *Subject, env *gatehouse.Environment, org *gatehouse.Org, f Facts) time.Duration {
	switch sub.Kind {
	case Deployment:
		// The tightest limit of the principals the run acts for (decideDeploymentEnv).
		var limit time.Duration
		for _, p := range runPrincipals(sub, f) {
			if p.sub == nil || p.f == nil || p.sub.Kind == Deployment {
				continue
			}
			if l := EnvOpenLimit(p.sub, env, org, *p.f); l > 0 && (limit == 0 || l < limit) {
				limit = l
			}
		}
		return limit
	case OrgToken:
		return 0
	case UserKind:
		switch {
		case f.Role == gatehouse.RoleAdmin:
			return 0
		case f.Role == gatehouse.RoleMember && org.Settings.DefaultEnvironmentPermission >= gatehouse.EnvOpen:
			return 0
		case env.CreatorUserID != 0 && env.CreatorUserID == sub.User.ID && isPerson(sub):
			return 0
		}
	}
	var limit time.Duration
	for _, g := range f.Grants {
		if !g.Scope.IsEnv() || !g.Scope.MatchesEnv(env.ID, env.Project, env.Tags, false) || gatehouse.EnvPermissionOf(g.Permission, g.Decrypt) < gatehouse.EnvOpen {
			continue
		}
		if g.MaxOpen <= 0 {
			return 0
		}
		limit = max(limit, g.MaxOpen)
	}
	return limit
}

func decideEnv(sub *Subject, action Action, res Resource, f Facts) Decision {
	env := res.Env
	perm, why := EnvPermission(sub, env, res.Org, f)
	if perm == gatehouse.EnvNone {
		return hide("no access to environment " + env.Ref().String() + " (" + why + ")")
	}
	need := envRequired[action]
	if perm < need {
		return deny("%s requires %s permission on environment %s; you have %s (%s)", action, need, env.Ref(), perm, why)
	}
	// Protected environments are opened and changed only by pipeline credentials; people
	// keep read.
	if need >= gatehouse.EnvOpen && !sub.Pipeline {
		for _, p := range f.Protections {
			if p.MatchesEnv(env.ID, env.Project, env.Tags, true) {
				return deny("environment %s is protected (%s): it is opened and changed only with a pipeline credential (a team, organization or OIDC-issued token); people may read it", env.Ref(), p)
			}
		}
	}
	return allow(why)
}

func decideEnvCreate(sub *Subject, res Resource, f Facts) Decision {
	ne := res.NewEnv
	if ne == nil {
		return deny("no environment given")
	}
	switch sub.Kind {
	case UserKind:
		if f.Role == gatehouse.RoleAdmin || f.Role == gatehouse.RoleMember {
			return allow("organization members may create environments")
		}
	case OrgToken:
		if sub.Token.Role == gatehouse.RoleAdmin || sub.Token.Role == gatehouse.RoleMember {
			return allow("organization token")
		}
	}
	// A team token needs write on the ESC project the environment goes into.
	for _, g := range f.Grants {
		if g.Scope.EnvProject != "" && g.Scope.EnvProject == ne.Project && gatehouse.EnvPermissionOf(g.Permission, g.Decrypt) >= gatehouse.EnvWrite {
			return allow("team " + g.TeamName + " grant on " + g.Scope.String())
		}
	}
	return deny("not allowed to create environments in project %s of organization %s", ne.Project, res.Org.Name)
}

// deploymentActions are what a deployment credential may do on its own stack, per
// operation: read what the program needs (its state, config, secrets) and run exactly the
// run's operation.
var deploymentActions = map[string]map[Action]bool{
	"update":  {StackUpdate: true},
	"refresh": {StackUpdate: true},
	"destroy": {StackUpdate: true},
	"preview": {},
}

// deploymentReads are allowed to every deployment credential on its stack; decrypting only
// to a run that acts for someone (decideDeployment).
var deploymentReads = map[Action]bool{
	StackRead: true, StackExport: true, StackEncrypt: true, StackDecrypt: true, StackPreview: true,
}

// decideDeployment: a deployment credential acts on its run's stack only, for the run's
// operation only, while the run lasts (authentication checks that); it is a pipeline
// credential, so protection rules do not stop it.
func decideDeployment(sub *Subject, action Action, res Resource, f Facts) Decision {
	d := sub.Deployment
	if d == nil || res.Org == nil || d.OrgID != res.Org.ID {
		return hide("the deployment credential belongs to another organization")
	}
	switch action {
	case OrgRead:
		return allow("deployment credential reads its organization")
	}
	if IsEnvAction(action) || action == EnvCreate {
		return decideDeploymentEnv(sub, action, res, f)
	}
	if _, ok := required[action]; !ok {
		return deny("a deployment credential is valid only for its stack's %s", d.Operation)
	}
	if res.Stack == nil || res.Stack.ID != d.StackID {
		return hide("the deployment credential is for another stack")
	}
	if action == StackDecrypt && d.ActsFor.IsZero() && d.Editor.IsZero() {
		// A run that acts for nobody (a pull/merge request's, whose code nobody reviewed
		// and anyone who may push a branch wrote, unless the settings opt in) is lent no
		// one's rights: no environment, and no secret of the stack either.
		why := sub.ActsForGone
		if why == "" {
			why = "no principal is recorded for the run (trigger it again, or store the stack's deployment settings again so that its runs act for you)"
		}
		return deny("deployment %s acts for nobody, so its credential decrypts no secret of stack %s: %s", d.ID, res.Stack.Ref(), why)
	}
	if deploymentReads[action] {
		return allow("deployment " + d.ID + " (" + d.Operation + ")")
	}
	kind := res.UpdateKind
	if res.Update != nil {
		kind = res.Update.Kind
	}
	if deploymentActions[d.Operation][action] && string(kind) == d.Operation {
		return allow("deployment " + d.ID + " (" + d.Operation + ")")
	}
	return deny("deployment %s's credential is valid only for a %s of stack %s, not for %s", d.ID, d.Operation, res.Stack.Ref(), action)
}

// deploymentEnvActions are the environment actions a deployment credential may perform:
// reading and opening environment definitions (what the CLI does for a stack's
// `environment:` imports: yaml/open and yaml/check, whose imports are each decided here,
// and direct reads, checks and opens). Never writes, tags, grants, settings, deletes or
// retractions.
var deploymentEnvActions = map[Action]bool{EnvRead: true, EnvOpen: true}

// runPrincipal is one principal a deployment run's environment reads and opens are
// decided for.
type runPrincipal struct {
	role string // "trigger", "settings editor"; "" when the run has a single principal
	sub  *Subject
	name string // "" : nobody
	gone string
	f    *Facts
}

func (p runPrincipal) who() string {
	w := p.name
	if w == "" {
		w = "nobody"
	}
	if p.role != "" {
		w += " (" + p.role + ")"
	}
	return w
}

// runPrincipals are the principals a deployment credential's environment reads and opens
// must each be allowed for: who triggered the run and who last edited the settings whose
// code it runs; one when they are the same (webhook runs, an editor's own trigger, a run
// acting for nobody).
func runPrincipals(sub *Subject, f Facts) []runPrincipal {
	d := sub.Deployment
	if d == nil || d.Editor == d.ActsFor {
		return []runPrincipal{{sub: sub.ActsFor, name: sub.ActsForName, gone: sub.ActsForGone, f: f.ActsFor}}
	}
	return []runPrincipal{
		{role: "trigger", sub: sub.ActsFor, name: sub.ActsForName, gone: sub.ActsForGone, f: f.ActsFor},
		{role: "settings editor", sub: sub.Editor, name: sub.EditorName, gone: sub.EditorGone, f: f.Editor},
	}
}

// decideDeploymentEnv: a deployment credential reads and opens environments on behalf of
// the principals of its run: who triggered it and who last stored the stack's deployment
// settings (whose pre-run commands and repository it runs), the same principal for a VCS
// webhook's run; nobody for a pull/merge request's run unless the settings opt in. Each is
// decided now (its grants, membership, protections, token lifetime policy), and the
// credential may only what all of them may: never more than the principal with the least,
// so that neither lends its rights to the other's code. Only read-side actions, and only
// while the run is live in its organization (above).
func decideDeploymentEnv(sub *Subject, action Action, res Resource, f Facts) Decision {
	d := sub.Deployment
	ps := runPrincipals(sub, f)
	var names []string
	for _, p := range ps {
		names = append(names, p.who())
	}
	acting := "deployment " + d.ID + " acting for " + strings.Join(names, " and ")
	if !deploymentEnvActions[action] {
		// An environment a principal may not see reads as missing, as it does to them.
		for _, p := range ps {
			if p.sub != nil && p.f != nil && res.Env != nil && p.sub.Kind != Deployment {
				if rd := Decide(p.sub, EnvRead, res, *p.f); rd.Hide {
					return hide(acting + ": " + p.who() + ": " + rd.Reason)
				}
			}
		}
		return deny("deployment %s's credential only reads and opens environments (acting for %s); it may not perform %s", d.ID, strings.Join(names, " and "), action)
	}
	if res.Env == nil {
		return deny("no environment given")
	}
	// Every principal is decided; a hidden answer wins over a refusal (no existence
	// oracle for code chosen by a principal who may not see the environment).
	var refused *Decision
	var reasons []string
	for _, p := range ps {
		var pd Decision
		switch {
		case p.sub == nil || p.f == nil:
			why := p.gone
			if why == "" {
				why = "no principal is recorded for the run (trigger it again, or store the stack's deployment settings again so that its runs act for you)"
			}
			pd = deny("%s acts for %s, who cannot open environments: %s", "deployment "+d.ID, p.who(), why)
		case p.sub.Kind != UserKind && p.sub.Kind != TeamToken && p.sub.Kind != OrgToken:
			pd = deny("deployment %s acts for %s, which is not a person or an access token", d.ID, p.who())
		case p.sub.Kind == UserKind && p.f.Role == "":
			pd = deny("deployment %s acts for %s, who is no longer a member of organization %s", d.ID, p.who(), res.Org.Name)
		default:
			pd = Decide(p.sub, action, res, *p.f)
			if pd.Allow {
				reasons = append(reasons, p.who()+": "+pd.Reason)
				continue
			}
			pd.Reason = acting + ": " + p.who() + " may not: " + pd.Reason
		}
		if pd.Hide {
			return pd
		}
		if refused == nil {
			refused = &pd
		}
	}
	if refused != nil {
		return *refused
	}
	return allow(acting + ": " + strings.Join(reasons, "; "))
}
