package gatehouse

import "time"

// Deployment statuses, as Pulumi Deployments names them.
const (
	DeployNotStarted = "not-started" // queued, waiting for a runner (and for the stack's earlier runs)
	DeployRunning    = "running"     // leased by a runner
	DeploySucceeded  = "succeeded"
	DeployFailed     = "failed"
	DeploySkipped    = "skipped"
)

// DeployFinished reports whether a deployment status is terminal.
func DeployFinished(status string) bool {
	return status == DeploySucceeded || status == DeployFailed || status == DeploySkipped
}

// DeploySettings is a stack's deployment settings: the JSON document of Pulumi's
// DeploymentSettings with every secret value sealed ({"ciphertext": ...}). Repo is the
// repository webhooks map to the stack ("github:owner/repo", "gitlab:group/project"; ""
// when none).
type DeploySettings struct {
	StackID  int64
	OrgID    int64
	Repo     string
	Settings []byte
	Paused   bool
	Modified time.Time
	// ModifiedBy is who last stored the settings (Put): the principal runs triggered by a
	// VCS webhook act for (zero: not recorded).
	ModifiedBy Principal
}

// Principal kinds: a user by ID (a person signed in with a browser session), or an access
// token by ID (a personal token acts as its user; team and organization tokens as
// themselves).
const (
	PrincipalUser  = "user"
	PrincipalToken = "token"
)

// Principal names, durably and unambiguously, who a deployment run acts for: a user ID or
// a token ID, with its kind. The zero Principal is none.
type Principal struct {
	Kind string // PrincipalUser, PrincipalToken, or "" (none)
	ID   string // the user's ID (decimal) or the token's ID
}

// IsZero reports whether p names nobody.
func (p Principal) IsZero() bool { return p.Kind == "" || p.ID == "" }

// String is "user:ID" or "token:ID" ("" when none).
func (p Principal) String() string {
	if p.IsZero() {
		return ""
	}
	return p.Kind + ":" + p.ID
}

// DeployPool is a runner pool of an organization (Pulumi's agent pool). Runners of the
// pool authenticate with its token, stored only as a digest.
type DeployPool struct {
	ID          string
	OrgID       int64
	Name        string
	Description string
	Digest      [32]byte
	Created     time.Time
	CreatedBy   string
	Revoked     time.Time
}

// Deployment is one run of a stack's deployment: queued, leased by a runner, ended.
type Deployment struct {
	ID        string
	OrgID     int64
	StackID   int64
	Version   int // per stack, from 1
	Operation string
	Status    string
	// Request is the run's resolved settings (DeploymentSettings JSON, secrets sealed).
	Request []byte
	// Initiator is how it was triggered (cli, api, github, gitlab); RequestedBy who asked
	// (a display name).
	Initiator   string
	RequestedBy string
	// ActsFor is the principal the run acts for when its credential reads and opens
	// environments: who triggered it over the REST API, or, for a VCS webhook, who last
	// stored the stack's deployment settings (zero: nobody; no environment opens; so for
	// a pull/merge request's run unless the settings opt in).
	ActsFor Principal
	// Editor is who last stored the stack's deployment settings when the run was queued:
	// who chose the code it runs (pre-run commands, repository); the trigger itself when
	// the run does not inherit the settings. The credential reads and opens an environment
	// only when both ActsFor and Editor may (zero: nobody; no environment opens).
	Editor   Principal
	PoolID   string // "" : any pool of the organization
	Created  time.Time
	Modified time.Time
	Started  time.Time
	Ended    time.Time
	// Lease is the claim of the runner running it ("" when none); LeaseUntil its expiry.
	Lease      string
	LeaseUntil time.Time
	Runner     string
	// CredDigest is the digest of the run's deployment credential; CredUntil its expiry.
	CredDigest [32]byte
	CredUntil  time.Time
	Cancel     bool // cancellation requested
	UpdateID   string
	// UpdateVersion is the stack version the run's update produced (0: none yet).
	UpdateVersion int
	Message       string
	// Report says where to report the result (a VCS commit status; JSON; "" none).
	Report string
}

// DeployLogLine is one line of a deployment's output.
type DeployLogLine struct {
	Seq    int64
	Header string
	Line   string
	At     time.Time
}

// DeployTx is the storage of deployment settings, runner pools, deployments and their
// logs (part of Tx). A stack's settings and deployments go with the stack.
type DeployTx interface {
	GetDeploySettings(stackID int64) (*DeploySettings, error) // ENOTFOUND when none
	PutDeploySettings(s *DeploySettings) error
	DeleteDeploySettings(stackID int64) error // ENOTFOUND when none
	// SetDeployPaused pauses or resumes the stack's deployments (settings or not).
	SetDeployPaused(stackID, orgID int64, paused bool) error
	// ListDeploySettingsByRepo lists the settings that follow repository repo.
	ListDeploySettingsByRepo(repo string) ([]DeploySettings, error)

	CreateDeployPool(p *DeployPool) error // ECONFLICT when the name is taken in the organization
	GetDeployPoolByDigest(d [32]byte) (*DeployPool, error)
	ListDeployPools(orgID int64) ([]DeployPool, error)
	RevokeDeployPool(orgID int64, id string) error

	// CreateDeployment queues d, assigning Version (the stack's next), Status, Created.
	CreateDeployment(d *Deployment) error
	GetDeployment(id string) (*Deployment, error)
	GetDeploymentByVersion(stackID int64, version int) (*Deployment, error)
	GetDeploymentByCred(d [32]byte) (*Deployment, error)
	// ListDeployments lists the stack's deployments, newest first; it returns the total.
	ListDeployments(stackID int64, page, pageSize int, asc bool) ([]Deployment, int, error)
	// LeaseDeployment claims the oldest queued deployment of orgID (of pool poolID, or of
	// no pool) whose stack is not paused and runs nothing else, for lease until leaseUntil,
	// with the credential digest cred valid until credUntil; ENOTFOUND when none is due.
	// Two transactions, in any processes, never lease one deployment, or two of one stack,
	// at once.
	LeaseDeployment(orgID int64, poolID, runner, lease string, leaseUntil time.Time, cred [32]byte, credUntil time.Time) (*Deployment, error)
	// RenewDeploymentLease extends the lease held with lease; EGONE when it is not the
	// deployment's live lease. It returns the deployment (whose Cancel the runner obeys).
	RenewDeploymentLease(id, lease string, leaseUntil, credUntil time.Time) (*Deployment, error)
	// FinishDeployment ends the deployment held with lease (lease "": whatever holds it, or
	// a queued one) with status and message, ends its credential and frees its stack; EGONE
	// when lease is not its lease; a finished one is left as it is (EGONE).
	FinishDeployment(id, lease, status, message string) (*Deployment, error)
	// ExpireDeploymentLeases fails the running deployments whose lease ran out (their
	// runner died) and returns them.
	ExpireDeploymentLeases() ([]Deployment, error)
	// RequestDeploymentCancel marks the deployment to be cancelled (its credential ends at
	// once); a queued one ends as failed. It returns the deployment afterwards.
	RequestDeploymentCancel(id string) (*Deployment, error)
	// SetDeploymentUpdate records the update a deployment's run created.
	SetDeploymentUpdate(id, updateID string, version int) error
	// GetDeployComment returns the id of the comment the stack's runs for the pull or
	// merge request prKey ("github:owner/repo#7") report to; ENOTFOUND when none yet.
	GetDeployComment(stackID int64, prKey string) (string, error)
	// PutDeployComment records (or replaces) that comment's id.
	PutDeployComment(stackID, orgID int64, prKey, commentID string) error
	AppendDeployLogs(id string, lines []DeployLogLine) error // assigns Seq
	// ListDeployLogs returns up to limit lines with Seq > after.
	ListDeployLogs(id string, after int64, limit int) ([]DeployLogLine, error)
}

// DeployVCSSecret is an organization's own VCS webhook secret (GitHub: the HMAC key of
// X-Hub-Signature-256; GitLab: the X-Gitlab-Token value), sealed with the organization's
// data key. An organization with one is reachable only through its own delivery URLs.
type DeployVCSSecret struct {
	OrgID     int64
	Provider  string // github, gitlab
	Sealed    []byte
	Created   time.Time
	CreatedBy string
}

// DeployVCSTx is the storage of organizations' VCS webhook secrets (part of Tx).
type DeployVCSTx interface {
	// GetDeployVCSSecret returns the organization's secret for provider; ENOTFOUND when none.
	GetDeployVCSSecret(orgID int64, provider string) (*DeployVCSSecret, error)
	// ListDeployVCSSecrets lists the organization's secrets, by provider.
	ListDeployVCSSecrets(orgID int64) ([]DeployVCSSecret, error)
	// PutDeployVCSSecret sets (or replaces) the organization's secret for s.Provider,
	// assigning Created.
	PutDeployVCSSecret(s *DeployVCSSecret) error
	// DeleteDeployVCSSecret removes it; ENOTFOUND when none.
	DeleteDeployVCSSecret(orgID int64, provider string) error
}
