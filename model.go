package gatehouse

import (
	"encoding/json"
	"strconv"
	"time"
)

// Role is an organization role.
type Role string

// Organization roles.
const (
	RoleAdmin          Role = "admin"
	RoleMember         Role = "member"
	RoleBillingManager Role = "billing-manager"
)

// Valid reports whether r is a known organization role.
func (r Role) Valid() bool {
	return r == RoleAdmin || r == RoleMember || r == RoleBillingManager
}

// Permission is a stack permission level. Levels are ordered: a higher level includes the
// lower ones.
type Permission int

// Stack permission levels.
const (
	PermNone Permission = iota
	PermRead
	PermWrite
	PermAdmin
)

var permNames = []string{"none", "read", "write", "admin"}

func (p Permission) String() string {
	if p < PermNone || p > PermAdmin {
		return "invalid"
	}
	return permNames[p]
}

// ParsePermission parses "none", "read", "write" or "admin".
func ParsePermission(s string) (Permission, error) {
	for i, n := range permNames {
		if n == s {
			return Permission(i), nil
		}
	}
	return PermNone, Errorf(EINVALID, "unknown permission %q (want none, read, write or admin)", s)
}

// OrgSettings are the organization-wide access settings.
type OrgSettings struct {
	// DefaultStackPermission is what every member may do on every stack of the org,
	// before any team grant. New organizations default to none.
	DefaultStackPermission Permission `json:"defaultStackPermission"`
	MembersCanCreateStacks bool       `json:"membersCanCreateStacks"`
	MembersCanDeleteStacks bool       `json:"membersCanDeleteStacks"`
	// MaxTokenLifetimeDays caps the expiry of tokens in the org (0 = no cap).
	MaxTokenLifetimeDays int `json:"maxTokenLifetimeDays"`
	// DefaultEnvironmentPermission is what every member may do on every environment of the
	// org, before any team grant (none for new organizations, and for older ones).
	DefaultEnvironmentPermission EnvPermission `json:"defaultEnvironmentPermission"`
}

// DefaultOrgSettings are the settings of a new organization: least privilege.
func DefaultOrgSettings() OrgSettings {
	return OrgSettings{DefaultStackPermission: PermNone, MembersCanCreateStacks: true, MembersCanDeleteStacks: true}
}

// Org is an organization: the tenant and blast-radius boundary.
type Org struct {
	ID       int64
	Name     string
	Settings OrgSettings
	Created  time.Time
}

// User is a person.
type User struct {
	ID        int64
	Name      string
	Email     string
	SiteAdmin bool
	// CreatedByOrg is the organization whose admin created the account (POST
	// /api/orgs/{org}/users); 0 when it was created otherwise (bootstrap, or before
	// Gatehouse recorded it).
	CreatedByOrg int64
	Created      time.Time
	// Disabled is when the user was disabled (zero: active). A disabled user cannot
	// authenticate; GetUser, GetUserByName and ListUsers fill it in (member listings do not).
	Disabled time.Time
}

// Member is a user's membership of an organization.
type Member struct {
	OrgID   int64
	User    User
	Role    Role
	Created time.Time
}

// TokenKind is the kind of an access token.
type TokenKind string

// Token kinds. The values double as the kind segment of the token format (see package token).
const (
	TokenPersonal TokenKind = "pat"
	TokenTeam     TokenKind = "team"
	TokenOrg      TokenKind = "org"
)

// Token is an access token's metadata. Its value is never stored: only its SHA-256 digest.
type Token struct {
	ID          string
	Kind        TokenKind
	Digest      [32]byte
	Name        string
	Description string
	UserID      int64 // personal tokens: the user it acts as
	OrgID       int64 // team and organization tokens
	TeamID      int64 // team tokens
	Role        Role  // organization tokens
	// Pipeline marks a pipeline credential: team and organization tokens, and tokens
	// issued by OIDC token exchange. Only pipeline credentials may change protected stacks.
	Pipeline bool
	// Issuer names the OIDC issuer whose token exchange issued the token ("" for tokens
	// people created). Such tokens are not rotated: a pipeline gets a new one by exchange.
	Issuer    string
	CreatedBy string
	Created   time.Time
	Expires   time.Time // zero: never
	Revoked   time.Time // zero: live
	LastUsed  time.Time
	LastIP    string
	LastAgent string
}

// Live reports whether the token may be used at now.
func (t *Token) Live(now time.Time) bool {
	end := t.Ends()
	return end.IsZero() || now.Before(end)
}

// Ends is when the token stops working: the earlier of its expiry and its revocation (a
// rotation's grace period ends in a revocation time to come); zero when neither is set.
func (t *Token) Ends() time.Time {
	if t.Revoked.IsZero() || !t.Expires.IsZero() && t.Expires.Before(t.Revoked) {
		return t.Expires
	}
	return t.Revoked
}

// StackRef names a stack the way the CLI does.
type StackRef struct {
	Org     string
	Project string
	Stack   string
}

func (r StackRef) String() string { return r.Org + "/" + r.Project + "/" + r.Stack }

// Stack is a Pulumi stack.
type Stack struct {
	ID            int64
	OrgID         int64
	OrgName       string
	Project       string
	Name          string
	Tags          map[string]string
	Version       int // the version of the newest (non-preview) update, 0 if never updated
	ActiveUpdate  string
	ResourceCount int
	LastUpdate    time.Time
	Created       time.Time
	CreatedBy     string // login of the creator (user name, or token name for machines)
	CreatorUserID int64  // the creating user, 0 for machine tokens; gets admin on the stack
	RemoteConfig  bool   // the stack has a remote configuration (StackConfigTx)
}

// Ref returns the stack's reference.
func (s *Stack) Ref() StackRef { return StackRef{Org: s.OrgName, Project: s.Project, Stack: s.Name} }

// UpdateKind is the kind of an update, as named by the CLI's endpoint.
type UpdateKind string

// Update kinds.
const (
	KindUpdate  UpdateKind = "update"
	KindPreview UpdateKind = "preview"
	KindRefresh UpdateKind = "refresh"
	KindDestroy UpdateKind = "destroy"
	KindImport  UpdateKind = "import" // pulumi stack import / state edits
)

// UpdateStatus is the status of an update.
type UpdateStatus string

// Update statuses as the CLI reads them.
const (
	StatusNotStarted UpdateStatus = "not started"
	StatusRunning    UpdateStatus = "running"
	StatusSucceeded  UpdateStatus = "succeeded"
	StatusFailed     UpdateStatus = "failed"
	StatusCancelled  UpdateStatus = "cancelled"
)

// The bound on a stack's updates created and never started (CreateUpdate): the CLI starts
// an update right after creating it, so these are abandoned runs, or someone filling the
// database with preview programs.
const (
	MaxPendingUpdates = 100
	PendingUpdateTTL  = time.Hour
)

// Finished reports whether the status is terminal.
func (s UpdateStatus) Finished() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusCancelled
}

// Update is one run of the engine against a stack (an update, preview, refresh, destroy or
// import).
type Update struct {
	ID      string
	StackID int64
	Kind    UpdateKind
	DryRun  bool
	Status  UpdateStatus
	// Version is the stack version this update produces (dry runs: the version it read).
	Version int
	// Program is the create-update request as the CLI sent it (JSON): config, metadata.
	Program json.RawMessage
	Author  string
	Created time.Time
	Started time.Time
	Ended   time.Time
	// LeaseDigest is the SHA-256 digest of the update's lease token. It is kept after the
	// update ends, so that a retried complete still authenticates (and is a no-op).
	LeaseDigest    [32]byte
	LeaseExpires   time.Time
	JournalVersion int
	// Sequence is the last applied checkpoint sequence number (delta protocol).
	Sequence        int
	ResourceChanges map[string]int
	ResourceCount   int
	// StartedBy is the credential that started the update (and so holds its lease): the
	// lease is renewed only while it may still run the update. Zero for deployment runs
	// (their run bounds their updates) and updates started before it was recorded. Before
	// the start, it is the update's creator (the bound on never-started updates).
	StartedBy Principal
}

// AuditEvent is one entry of the audit log. Events form a hash chain: Hash commits to the
// event's fields and to PrevHash, the hash of the event before it.
type AuditEvent struct {
	Seq       int64 // position in the chain, assigned when appended
	ID        string
	Time      time.Time
	OrgID     int64
	OrgName   string
	ActorKind string // "user", "team-token", "org-token", "lease", "anonymous", "system"
	ActorName string // user name or token name
	UserID    int64
	TokenID   string
	SourceIP  string
	UserAgent string
	Action    string // what was attempted, e.g. "stack:create" or "auth:login"
	Target    string // what it was attempted on, e.g. "acme/web/prod"
	Outcome   string // "success", "denied", "failure"
	Reason    string // why it was denied or failed
	RequestID string
	// Details are extra facts (never secret values).
	Details  map[string]string
	PrevHash []byte
	Hash     []byte
}

// Audit event outcomes.
const (
	OutcomeSuccess = "success"
	OutcomeDenied  = "denied"
	OutcomeFailure = "failure"
)

// Team is a group of an organization's members with grants.
type Team struct {
	ID          int64
	OrgID       int64
	Name        string
	DisplayName string
	Description string
	Created     time.Time
}

// TeamMember is a user's membership of a team; Role is "member" or "admin".
type TeamMember struct {
	TeamID int64
	User   User
	Role   string
}

// Scope is what a grant or a protection rule covers: exactly one of one stack (StackID),
// every stack of a project (Project), or every stack whose tag TagName has value TagValue.
type Scope struct {
	StackID  int64
	Project  string
	TagName  string
	TagValue string
	// EnvID names one environment and EnvProject every environment of an ESC project
	// (environment scopes; they never match stacks). Protection rules by Project or tag
	// select environments too (see MatchesEnv).
	EnvID      int64
	EnvProject string
	// EnvTagName and EnvTagValue select every environment with that tag (team grants only;
	// the protection rules by tag select environments already).
	EnvTagName  string
	EnvTagValue string
	// StackRef is filled in when listing stack-scoped rules, for display.
	StackRef *StackRef
}

// Valid reports whether exactly one kind of scope is set.
func (sc Scope) Valid() bool {
	n := 0
	if sc.StackID != 0 {
		n++
	}
	if sc.Project != "" {
		n++
	}
	if sc.TagName != "" {
		n++
	}
	if sc.EnvID != 0 {
		n++
	}
	if sc.EnvProject != "" {
		n++
	}
	if sc.EnvTagName != "" {
		n++
	}
	return n == 1
}

// Matches reports whether the scope covers a stack with this ID, project and tags.
func (sc Scope) Matches(stackID int64, project string, tags map[string]string) bool {
	switch {
	case sc.StackID != 0:
		return sc.StackID == stackID
	case sc.Project != "":
		return sc.Project == project
	case sc.TagName != "":
		v, ok := tags[sc.TagName]
		return ok && v == sc.TagValue
	}
	return false
}

// IsEnv reports whether the scope names environments only (a grant on it is an
// environment grant).
func (sc Scope) IsEnv() bool { return sc.EnvID != 0 || sc.EnvProject != "" || sc.EnvTagName != "" }

// MatchesEnv reports whether the scope covers an environment. Environment scopes match by
// ID or ESC project; with protect set (protection rules), the stack rules by project or
// tag also select environments of that project or with that tag (a project rule protects
// a project's stacks and environments alike).
func (sc Scope) MatchesEnv(envID int64, project string, tags map[string]string, protect bool) bool {
	switch {
	case sc.EnvID != 0:
		return sc.EnvID == envID
	case sc.EnvProject != "":
		return sc.EnvProject == project
	case sc.EnvTagName != "":
		v, ok := tags[sc.EnvTagName]
		return ok && v == sc.EnvTagValue
	case protect && sc.StackID == 0:
		return sc.Matches(0, project, tags)
	}
	return false
}

func (sc Scope) String() string {
	switch {
	case sc.StackID != 0 && sc.StackRef != nil:
		return "stack " + sc.StackRef.Project + "/" + sc.StackRef.Stack
	case sc.StackID != 0:
		return "stack #" + itoa(sc.StackID)
	case sc.Project != "":
		return "project " + sc.Project
	case sc.TagName != "":
		return "tag " + sc.TagName + "=" + sc.TagValue
	case sc.EnvID != 0:
		return "environment #" + itoa(sc.EnvID)
	case sc.EnvProject != "":
		return "environment project " + sc.EnvProject
	case sc.EnvTagName != "":
		return "environments tagged " + sc.EnvTagName + "=" + sc.EnvTagValue
	}
	return "nothing"
}

// Key is a canonical string form of the scope, unique per scope (for storage).
func (sc Scope) Key() string {
	switch {
	case sc.StackID != 0:
		return "stack:" + itoa(sc.StackID)
	case sc.Project != "":
		return "project:" + sc.Project
	case sc.TagName != "":
		return "tag:" + sc.TagName + "=" + sc.TagValue
	case sc.EnvID != 0:
		return "env:" + itoa(sc.EnvID)
	case sc.EnvProject != "":
		return "envproject:" + sc.EnvProject
	case sc.EnvTagName != "":
		return "envtag:" + sc.EnvTagName + "=" + sc.EnvTagValue
	}
	return ""
}

// Grant gives a team a permission on a scope.
type Grant struct {
	ID         int64
	TeamID     int64
	TeamName   string
	Scope      Scope
	Permission Permission
	// Decrypt gives a read grant the right to decrypt secrets (write and admin include it).
	Decrypt bool
	// MaxOpen caps how long the grant's environments are opened for through it (Pulumi's
	// maxOpenDuration; environment grants only); 0 is no cap beyond the server's.
	MaxOpen time.Duration
	Created time.Time
}

// Protection marks a scope as protected: changes only through pipeline credentials.
type Protection struct {
	ID        int64
	OrgID     int64
	Scope     Scope
	CreatedBy string
	Created   time.Time
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
