package gatehouse

import "time"

// Posture: what every token was used for and from where (the usage inventory), anomalies
// found in that use, address allow-lists and the per-organization thresholds of the
// posture report (package posture holds the logic; these are the rows).

// UsageDelta is the aggregated use of one token by one client (address, user agent, CI
// identity) on one target during one flush interval of one process.
type UsageDelta struct {
	TokenID string
	OrgID   int64 // the organization the requests were made in (0: none)
	IP      string
	Agent   string
	CI      string // CI identity: OIDC issuer and subject of an exchanged token, or the CI system an update named
	// Target is what the requests touched: "stack:org/project/stack", "env:org/project/env" or "".
	Target   string
	First    time.Time
	Last     time.Time
	Requests int64
	Denied   int64
	// Hours has bit h set when a request was made in UTC hour h of the day.
	Hours uint32
	// HourCounts are the requests (and denials) per UTC clock hour (Unix hour number).
	HourCounts map[int64][2]int64
}

// TokenClient is one distinct client of a token in the inventory.
type TokenClient struct {
	IP        string
	Agent     string
	CI        string
	OrgID     int64
	FirstSeen time.Time
	LastSeen  time.Time
	Requests  int64
	Denied    int64
}

// TokenTarget is a stack or environment a token touched.
type TokenTarget struct {
	Kind      string // stack or env
	Name      string // org/project/name
	FirstSeen time.Time
	LastSeen  time.Time
	Requests  int64
}

// TokenUsage is a token's usage inventory: a summary, its clients, its targets and its
// recent hourly request counts.
type TokenUsage struct {
	TokenID   string
	OrgID     int64
	FirstSeen time.Time // zero: never used (since recording started)
	LastSeen  time.Time
	Requests  int64
	Denied    int64
	// HoursMask has bit h set when the token was ever used in UTC hour h of the day.
	HoursMask uint32
	// OverflowClients counts uses by clients that were not recorded because the token
	// already had the most distinct clients the inventory keeps; OverflowRequests their
	// requests. The same for targets.
	OverflowClients  int64
	OverflowRequests int64
	OverflowTargets  int64
	Clients          []TokenClient
	Targets          []TokenTarget
	// Hours are request counts per UTC clock hour (Unix hour number -> requests, denied),
	// for the last days (see PruneTokenUsage).
	Hours map[int64][2]int64
}

// UsageLimits bound the inventory of one token.
type UsageLimits struct {
	MaxClients int
	MaxTargets int
}

// Anomaly is an unusual use of a token, recorded once per (token, kind, window).
type Anomaly struct {
	ID      int64
	OrgID   int64
	TokenID string
	Kind    string
	// Window names the period the anomaly is counted in (e.g. "2026-12-05" or
	// "2026-12-05T03"): a kind is flagged at most once per token and window.
	Window string
	At     time.Time
	Detail string
	IP     string
	Agent  string
}

// AllowList is an address allow-list: of an organization (TokenID "") or of one token.
// Entries are CIDR networks, single addresses, or "@name" references to a named range of
// the organization.
type AllowList struct {
	OrgID      int64
	TokenID    string
	Entries    []string
	ModifiedBy string
	Modified   time.Time
}

// AddressRange is a named list of networks (e.g. a CI provider's ranges) that allow-lists
// of its organization reference as "@name".
type AddressRange struct {
	OrgID      int64
	Name       string
	CIDRs      []string
	ModifiedBy string
	Modified   time.Time
}

// UsageInventoryStats counts the rows of the usage inventory (sizing).
type UsageInventoryStats struct {
	Tokens, Clients, Targets, Hours, Anomalies int64
}

// PostureTx is the posture part of Tx.
type PostureTx interface {
	// GetTokenUsage returns the token's inventory; a token never used has an empty one
	// (no error). Clients and targets are by last use, newest first.
	GetTokenUsage(tokenID string) (*TokenUsage, error)
	// RecordTokenUsage merges aggregated uses into the inventory: per-token summary, one row
	// per distinct client and per target (up to limits; beyond, the overflow is counted),
	// and hourly counts. First-seen times only move back, last-seen only forward, so
	// batches of processes whose clocks differ merge to the same result in any order.
	RecordTokenUsage(deltas []UsageDelta, limits UsageLimits) error
	// PruneTokenUsage deletes clients and targets last seen before before, hourly counts
	// before hoursBefore, anomalies before before, and the inventory of tokens that no
	// longer exist; it returns how many rows it deleted.
	PruneTokenUsage(before, hoursBefore time.Time) (int64, error)
	UsageInventoryStats() (UsageInventoryStats, error)

	// RecordAnomaly stores a.ID unless the (token, kind, window) is recorded already; it
	// reports whether it stored it (of racing processes, exactly one gets true).
	RecordAnomaly(a *Anomaly) (bool, error)
	// ListAnomalies returns the organization's anomalies at or after since, newest first.
	ListAnomalies(orgID int64, since time.Time, limit int) ([]Anomaly, error)

	// ListAllowLists returns the organization's allow-lists (its own first, then per token).
	ListAllowLists(orgID int64) ([]AllowList, error)
	// GetAllowList returns an allow-list; ENOTFOUND when there is none.
	GetAllowList(orgID int64, tokenID string) (*AllowList, error)
	// PutAllowList replaces an allow-list (no entries: deletes it). It bumps the security epoch.
	PutAllowList(l *AllowList) error
	ListAddressRanges(orgID int64) ([]AddressRange, error)
	// PutAddressRange creates or replaces a named range; it bumps the security epoch.
	PutAddressRange(r *AddressRange) error
	// DeleteAddressRange deletes a named range (ENOTFOUND when none); it bumps the epoch.
	DeleteAddressRange(orgID int64, name string) error

	// GetPostureSettings returns the organization's posture settings as stored (JSON),
	// nil when unset.
	GetPostureSettings(orgID int64) ([]byte, error)
	PutPostureSettings(orgID int64, settings []byte) error
}
