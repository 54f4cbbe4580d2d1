package gatehouse

import (
	"context"
	"time"
)

// Store is the storage interface every engine implements (store/sqlite, store/postgres) and
// the conformance suite in store/storetest checks. All access goes through transactions:
// Update runs a read-write transaction, View a read-only one. A function passed to Update
// may be run more than once (when the engine retries a serialization failure), so it must
// not have side effects outside the transaction.
type Store interface {
	Update(ctx context.Context, fn func(Tx) error) error
	View(ctx context.Context, fn func(Tx) error) error
	// TouchTokens records last-used facts for many tokens at once (batched off the request path).
	TouchTokens(ctx context.Context, uses []TokenUse) error
	Ping(ctx context.Context) error
	Close() error
	// Engine names the engine, e.g. "sqlite" or "postgres".
	Engine() string
}

// TokenUse is a token's last-use facts.
type TokenUse struct {
	TokenID string
	At      time.Time
	IP      string
	Agent   string
}

// Tx is a storage transaction. Methods return *Error values with ENOTFOUND, ECONFLICT
// or EINVALID codes where the caller can act on them.
type Tx interface {
	// Now is the transaction's clock reading, taken once at its start.
	Now() time.Time

	// SecurityEpoch is a counter that every change to authentication or authorization facts
	// (token revocation, membership, teams, grants, protections, organization settings)
	// advances in its own transaction: caches of those facts are valid while it stands.
	SecurityEpoch() (int64, error)

	GetMeta(key string) ([]byte, error) // ENOTFOUND when unset
	SetMeta(key string, value []byte) error
	// CreateMeta stores value under key unless the key is set; it returns the value stored
	// afterwards (the winner of a race between processes).
	CreateMeta(key string, value []byte) ([]byte, error)

	// Organizations, users and membership.
	CreateOrg(o *Org) error // ECONFLICT when the name is taken; sets ID and Created
	GetOrg(id int64) (*Org, error)
	GetOrgByName(name string) (*Org, error)
	ListOrgs() ([]Org, error)
	UpdateOrgSettings(orgID int64, s OrgSettings) error
	CreateUser(u *User) error // ECONFLICT when the name is taken
	GetUser(id int64) (*User, error)
	GetUserByName(name string) (*User, error)
	CountUsers() (int, error)
	// ListUsers returns every user, by name.
	ListUsers() ([]User, error)
	// DisableUser disables the user at at and revokes every personal token of theirs that
	// is still live then; it returns how many it revoked. ENOTFOUND for an unknown user.
	// Disabling a disabled user keeps the first time and revokes nothing more.
	DisableUser(id int64, at time.Time) (int, error)
	PutMember(orgID, userID int64, role Role) error // adds or changes the role
	GetMember(orgID, userID int64) (*Member, error)
	ListMembers(orgID int64) ([]Member, error)
	RemoveMember(orgID, userID int64) error
	// ListUserOrgs returns the organizations the user is a member of, with the role.
	ListUserOrgs(userID int64) ([]OrgMembership, error)

	// Teams, their members and grants.
	CreateTeam(t *Team) error // ECONFLICT when the name is taken in the organization
	GetTeam(id int64) (*Team, error)
	GetTeamByName(orgID int64, name string) (*Team, error)
	ListTeams(orgID int64) ([]Team, error)
	UpdateTeam(t *Team) error  // display name and description
	DeleteTeam(id int64) error // with its members and grants; revokes its tokens
	PutTeamMember(teamID, userID int64, role string) error
	RemoveTeamMember(teamID, userID int64) error
	ListTeamMembers(teamID int64) ([]TeamMember, error)
	// PutGrant adds or replaces the team's grant on g.Scope.
	PutGrant(g *Grant) error
	DeleteGrant(teamID int64, scope Scope) error
	ListGrants(teamID int64) ([]Grant, error)
	// ListUserGrants returns the grants of every team of orgID that userID belongs to.
	ListUserGrants(orgID, userID int64) ([]Grant, error)
	// ListStackGrants returns the grants that name the stack directly.
	ListStackGrants(stackID int64) ([]Grant, error)

	// Protection rules.
	PutProtection(p *Protection) error // ECONFLICT when the scope is already protected
	DeleteProtection(orgID int64, scope Scope) error
	ListProtections(orgID int64) ([]Protection, error)

	// Access tokens. Values are never stored, only digests.
	CreateToken(t *Token) error // ECONFLICT when the name is taken in its scope (names stay reserved after revocation)
	GetToken(id string) (*Token, error)
	GetTokenByDigest(d [32]byte) (*Token, error)
	ListTokens(f TokenFilter) ([]Token, error)
	RevokeToken(id string, at time.Time) error

	// Stacks.
	CreateStack(s *Stack) error // ECONFLICT when it exists; sets ID and Created
	GetStack(orgID int64, project, name string) (*Stack, error)
	GetStackByID(id int64) (*Stack, error)
	ListStacks(f StackFilter) ([]Stack, string, error) // the string is the continuation token, "" on the last page
	ProjectExists(orgID int64, project string) (bool, error)
	DeleteStack(id int64) error
	RenameStack(id int64, project, name string) error // ECONFLICT when the target exists
	SetStackTags(id int64, tags map[string]string) error

	// Stack data keys (wrapped by the keyring; see package secrets).
	GetStackKey(stackID int64) ([]byte, error) // ENOTFOUND when none
	CreateStackKey(stackID int64, wrapped []byte) ([]byte, error)
	ListStackKeys() ([]StackKey, error)
	ReplaceStackKey(stackID int64, oldWrapped, newWrapped []byte) error

	// Checkpoints: the stack's state as an UntypedDeployment JSON document, per version.
	PutCheckpoint(stackID int64, version int, data []byte) error
	// GetCheckpoint returns the newest checkpoint with a version <= version (version < 0:
	// the newest of all) and its version; ENOTFOUND when there is none.
	GetCheckpoint(stackID int64, version int) ([]byte, int, error)

	// Updates.
	// CreateUpdate creates an update (not started); u.StartedBy is its creator until a start
	// records the starter. A creator holds at most MaxPendingUpdates updates of a stack
	// created and never started: the stack's older than PendingUpdateTTL are deleted first,
	// and ERATELIMITED past the bound (each may hold a program body of megabytes, and anyone
	// who may preview creates them; per creator, so that one cannot block the others).
	CreateUpdate(u *Update) error
	GetUpdate(id string) (*Update, error)
	// GetUpdateByLease finds the update whose lease digest is d (kept after the update
	// ends); the caller checks the update's status and the lease's expiry.
	GetUpdateByLease(d [32]byte) (*Update, error)
	// StartUpdate marks the update running. For a non-dry run it takes the stack's lock
	// (ECONFLICT when another update holds a live lease), bumps the stack version and
	// merges tags into the stack's tags; it returns the version the update produces.
	StartUpdate(id string, tags map[string]string, lease [32]byte, leaseExpires time.Time, journalVersion int) (int, error)
	// RenewLease extends the lease of a running update held with lease; EGONE when the
	// update has ended or the lease is not its current one.
	RenewLease(id string, lease [32]byte, expires time.Time) error
	SetUpdateSequence(id string, seq int) error
	// SetUpdateStarter records the credential that started the update (Update.StartedBy).
	SetUpdateStarter(id string, p Principal) error
	// SetUpdateChanges records the update's resource changes (from the engine's summary event).
	SetUpdateChanges(id string, changes map[string]int) error
	// FinishUpdate ends an update with status, releases the stack lock if it holds it and
	// ends its lease (the lease token then only authenticates an idempotent complete). resourceCount < 0 leaves the stack's count as it is. Finishing
	// a finished update is a no-op that returns the status it ended with.
	FinishUpdate(id string, status UpdateStatus, changes map[string]int, resourceCount int) (UpdateStatus, error)
	ListUpdates(stackID int64, f UpdateFilter) ([]Update, error)
	AppendEngineEvents(updateID string, events []EngineEvent) error // idempotent per sequence
	ListEngineEvents(updateID string, afterSeq int, limit int) ([]EngineEvent, error)
	AppendJournal(updateID string, entries []JournalRecord) error // idempotent per sequence
	ListJournal(updateID string) ([]JournalRecord, error)
	// JournalHead returns how many journal entries an update has and the highest sequence.
	// Entries are only ever added (first data kept per sequence), so two equal heads of the
	// same update mean the same journal.
	JournalHead(updateID string) (count int, lastSeq int64, err error)

	// Rate limits on failed authentication, shared by every process.
	// RecordAuthFailure counts a failure for key in a fixed window and returns the count
	// and the window's start.
	RecordAuthFailure(key string, window time.Duration) (int, time.Time, error)
	// AuthFailures returns the count of key's current window (0 when none).
	AuthFailures(key string, window time.Duration) (int, time.Time, error)
	// PruneAuthFailures deletes the counters whose window (of this length) has ended and
	// returns how many it deleted.
	PruneAuthFailures(window time.Duration) (int64, error)

	// Audit log.
	AppendAudit(e *AuditEvent) error // assigns Seq, PrevHash and Hash
	ListAudit(f AuditFilter) ([]AuditEvent, error)
	AuditTx
	OIDCTx
	ScanningTx
	InvitationTx
	StackConfigTx
	EnvTx
	RateLimitAdminTx
	WebhookTx
	SCIMTx
	SAMLTx
	SSOTx
	PostureTx
	DeployTx
	DeployVCSTx
	PolicyTx
	ProtocolTx
}

// OrgMembership is an organization with the caller's role in it.
type OrgMembership struct {
	Org  Org
	Role Role
}

// StackKey is a stack's wrapped data key.
type StackKey struct {
	StackID int64
	Wrapped []byte
}

// TokenFilter selects tokens.
type TokenFilter struct {
	Kind   TokenKind
	UserID int64
	OrgID  int64
	TeamID int64
	// IncludeRevoked lists revoked tokens too; without it, tokens revoked at a later time
	// (in their rotation grace period) are still listed.
	IncludeRevoked bool
}

// StackFilter selects stacks for listing. OrgIDs limits the organizations searched (the
// caller's); an empty list selects nothing.
type StackFilter struct {
	OrgIDs            []int64
	Project           string
	TagName, TagValue string
	Continuation      string
	Limit             int
}

// UpdateFilter selects updates of a stack, newest first.
type UpdateFilter struct {
	IncludeDryRuns bool
	Page, PageSize int // 1-based page; PageSize 0 = all
}

// EngineEvent is an engine event of an update, as the CLI sent it (JSON).
type EngineEvent struct {
	Seq  int
	Data []byte
}

// JournalRecord is a journal entry of an update, as the CLI sent it (JSON).
type JournalRecord struct {
	Seq  int64
	Data []byte
}

// AuditFilter selects audit events.
type AuditFilter struct {
	OrgID     int64 // 0: all organizations (site-wide)
	Since     time.Time
	Until     time.Time
	Action    string
	ActorName string
	// SiteOnly keeps the site-wide events only: those of no organization (failed
	// authentications before an organization was known, rate limiting, site administration).
	SiteOnly  bool
	Outcome   string // success, failure or denied; "": any
	SourceIP  string // the caller's address exactly; "": any
	AfterSeq  int64  // continuation: events with Seq > AfterSeq (ascending) or < BeforeSeq
	BeforeSeq int64
	Limit     int
	Ascending bool
}
