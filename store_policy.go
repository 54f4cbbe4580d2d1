package gatehouse

import (
	"encoding/json"
	"time"
)

// Policy as code (package policy): policy packs published by an organization, policy groups
// that require them of stacks, the results the CLI reports and the organization's approved
// providers.

// Policy pack version states.
const (
	PolicyPackPending = "pending" // created; the archive is not uploaded or the publish not completed
	PolicyPackReady   = "ready"   // published: may be enabled and downloaded
)

// PolicyPack is one version of a policy pack. The archive (the npm-pack .tgz the CLI
// uploads) is stored apart, like a checkpoint (in the database or the blob store), and
// checked against Digest when read.
type PolicyPack struct {
	ID          int64
	OrgID       int64
	Name        string
	Version     int // 1, 2, ... per name, in order of publication
	VersionTag  string
	DisplayName string
	// Metadata is the publish request as the CLI sent it (apitype.CreatePolicyPackRequest).
	Metadata  []byte
	Status    string
	Digest    string // hex SHA-256 of the archive; "" before the upload
	Size      int64
	CreatedBy string
	Created   time.Time
	Completed time.Time
}

// PolicyGroup requires policy packs of the stacks it selects. The organization's default
// group (IsDefault) selects every stack of the organization.
type PolicyGroup struct {
	ID        int64
	OrgID     int64
	Name      string
	IsDefault bool
	// Selectors are stack scopes (one stack, a project, or a tag), as grants have.
	Selectors []Scope
	Packs     []PolicyGroupPack
	Created   time.Time
	Modified  time.Time
}

// PolicyGroupPack is a pack version enabled in a group; VersionTag "" means the newest
// ready version at the time of each update.
type PolicyGroupPack struct {
	Name       string                      `json:"name"`
	VersionTag string                      `json:"versionTag,omitempty"`
	Config     map[string]*json.RawMessage `json:"config,omitempty"`
}

// PolicyURL is a short-lived capability to upload (once) or download a pack's archive,
// handed to the CLI as an URL; only its digest is stored.
type PolicyURL struct {
	Digest   [32]byte
	Purpose  string // "upload" or "download"
	PackID   int64
	UpdateID string // download: the update it was minted for
	Expires  time.Time
	Used     bool
}

// PolicyResult is one policy finding an update reported (a violation, a remediation, a
// summary) or one Gatehouse itself made (an unapproved provider, Kind "provider").
type PolicyResult struct {
	ID          int64
	OrgID       int64
	StackID     int64
	UpdateID    string
	DryRun      bool
	Kind        string // violation, remediation, summary, provider
	PackName    string
	PackVersion string
	PolicyName  string
	Level       string // mandatory, advisory, remediate, ...
	Severity    string
	URN         string
	Message     string
	Created     time.Time
	// StackRef is filled in by listings.
	StackRef *StackRef
}

// PolicyResultFilter selects policy results of an organization, newest first.
type PolicyResultFilter struct {
	OrgID   int64
	StackID int64
	// StackIDs, when not nil, keeps the results of these stacks only (none when empty): a
	// caller's readable stacks, so that Limit counts what they may see.
	StackIDs []int64
	UpdateID string
	PackName string
	Kind     string
	ID       int64
	Limit    int
}

// ApprovedProvider is an entry of an organization's provider allow-list: a provider
// package name (aws, kubernetes, ...) and an optional semver range (">=6.0.0 <7.0.0").
type ApprovedProvider struct {
	Name     string `json:"name"`
	Versions string `json:"versions,omitempty"`
}

// PolicySettings are an organization's policy settings. Enforced is false until an
// allow-list is set: then only the providers listed may be added to a stack's state.
type PolicySettings struct {
	OrgID             int64
	Enforced          bool
	ApprovedProviders []ApprovedProvider
	Modified          time.Time
}

// PolicyTx is the storage of policy packs, groups, results and settings.
type PolicyTx interface {
	// CreatePolicyPack adds a pending version; Version is assigned (ECONFLICT when the
	// version tag exists for the pack).
	CreatePolicyPack(p *PolicyPack) error
	GetPolicyPack(orgID int64, name, versionTag string) (*PolicyPack, error)
	GetPolicyPackByID(id int64) (*PolicyPack, error)
	// ListPolicyPacks returns every version of the organization's packs, by name and version.
	ListPolicyPacks(orgID int64) ([]PolicyPack, error)
	// PutPolicyPackArchive stores a pending version's archive (its digest and size).
	PutPolicyPackArchive(id int64, data []byte) error
	// GetPolicyPackArchive returns the archive, checked against the digest (EINTERNAL when
	// it does not match).
	GetPolicyPackArchive(id int64) ([]byte, error)
	// CompletePolicyPack makes an uploaded version ready (EINVALID when nothing was uploaded).
	CompletePolicyPack(id int64) error
	DeletePolicyPack(id int64) error
	// DeletePendingPolicyPacks removes the versions still pending that were created before
	// before (abandoned publishes); it returns how many.
	DeletePendingPolicyPacks(before time.Time) (int, error)

	CreatePolicyURL(u *PolicyURL) error
	// UsePolicyURL finds a live URL by digest and purpose; an upload URL is spent by it
	// (EGONE when expired or already used, ENOTFOUND when unknown).
	UsePolicyURL(d [32]byte, purpose string) (*PolicyURL, error)
	// CheckPolicyURL is UsePolicyURL without spending an upload URL (it runs in a read
	// transaction): the upload handler asks it before reading the archive.
	CheckPolicyURL(d [32]byte, purpose string) (*PolicyURL, error)

	// PutPolicyGroup creates or replaces the group of that name (ID and Created set).
	PutPolicyGroup(g *PolicyGroup) error
	GetPolicyGroup(orgID int64, name string) (*PolicyGroup, error)
	ListPolicyGroups(orgID int64) ([]PolicyGroup, error)
	DeletePolicyGroup(orgID int64, name string) error

	AppendPolicyResults(rs []PolicyResult) error
	ListPolicyResults(f PolicyResultFilter) ([]PolicyResult, error)

	// GetPolicySettings returns the organization's settings (zero ones when never set).
	GetPolicySettings(orgID int64) (*PolicySettings, error)
	// PutPolicySettings replaces them (a security fact: bumps the epoch).
	PutPolicySettings(s *PolicySettings) error
}
