package gatehouse

import (
	"errors"
	"time"
)

// Environments (Pulumi ESC): named, versioned YAML definitions of configuration and secrets.
// Every write makes a new immutable revision; tags name revisions (the implicit tag latest
// names the newest). fn::secret plaintext never reaches storage: definitions are stored with
// secrets as ciphertext under the environment's data key (see package esc).

// EnvPermission is an environment permission level. Levels are ordered: a higher level
// includes the lower ones.
type EnvPermission int

// Environment permission levels.
const (
	EnvNone  EnvPermission = iota
	EnvRead                // definition and values with secrets hidden
	EnvOpen                // plus decrypt: open sessions, /decrypt, check?showSecrets
	EnvWrite               // plus edit and tag
	EnvAdmin               // plus delete, settings
)

var envPermNames = []string{"none", "read", "open", "write", "admin"}

func (p EnvPermission) String() string {
	if p < EnvNone || p > EnvAdmin {
		return "invalid"
	}
	return envPermNames[p]
}

// ParseEnvPermission parses "none", "read", "open", "write" or "admin".
func ParseEnvPermission(s string) (EnvPermission, error) {
	for i, n := range envPermNames {
		if n == s {
			return EnvPermission(i), nil
		}
	}
	return EnvNone, Errorf(EINVALID, "unknown environment permission %q (want none, read, open, write or admin)", s)
}

// MarshalText encodes the level by name (org settings store it as a string).
func (p EnvPermission) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText decodes a level name.
func (p *EnvPermission) UnmarshalText(b []byte) error {
	v, err := ParseEnvPermission(string(b))
	if err != nil {
		return errors.New(ErrorMessage(err)) // plain: decoders prefix their own context
	}
	*p = v
	return nil
}

// EnvGrantPermission maps an environment permission onto the Grant model: a team grant on
// an environment scope uses Grant.Permission for read/write/admin and Grant.Decrypt for open
// (read plus decrypt), exactly as stack grants express "read with decrypt".
func EnvGrantPermission(p EnvPermission) (Permission, bool) {
	switch p {
	case EnvRead:
		return PermRead, false
	case EnvOpen:
		return PermRead, true
	case EnvWrite:
		return PermWrite, true
	case EnvAdmin:
		return PermAdmin, true
	}
	return PermNone, false
}

// EnvPermissionOf is the inverse of EnvGrantPermission.
func EnvPermissionOf(p Permission, decrypt bool) EnvPermission {
	switch {
	case p >= PermAdmin:
		return EnvAdmin
	case p >= PermWrite:
		return EnvWrite
	case p >= PermRead && decrypt:
		return EnvOpen
	case p >= PermRead:
		return EnvRead
	}
	return EnvNone
}

// EnvRef names an environment: org/project/name.
type EnvRef struct {
	Org     string
	Project string
	Name    string
}

func (r EnvRef) String() string { return r.Org + "/" + r.Project + "/" + r.Name }

// Environment is an ESC environment.
type Environment struct {
	ID      int64
	OrgID   int64
	OrgName string
	Project string
	Name    string
	// Revision is the newest revision (the one tag latest names); a new environment has
	// revision 1 with an empty definition.
	Revision          int
	DeletionProtected bool
	Created           time.Time
	Modified          time.Time
	// Tags are the environment's name/value tags (protection rules by tag select by them).
	Tags          map[string]string
	CreatedBy     string // login of the creator
	CreatorUserID int64  // the creating person, 0 for machine tokens; gets admin
}

// Ref returns the environment's reference.
func (e *Environment) Ref() EnvRef { return EnvRef{Org: e.OrgName, Project: e.Project, Name: e.Name} }

// EnvRevision is one immutable revision of an environment's definition. YAML holds the
// definition with fn::secret values as ciphertext.
type EnvRevision struct {
	EnvID        int64
	Number       int
	YAML         []byte
	Created      time.Time
	CreatorLogin string
	Tags         []string // revision tags naming it (ListEnvRevisions fills it in)
	// Retracted is set when the revision was retracted: it can no longer be read or
	// opened, and its tags name the replacement.
	Retracted *EnvRetraction
}

// EnvRetraction records a retracted revision.
type EnvRetraction struct {
	Replacement int
	At          time.Time
	ByLogin     string
	Reason      string
}

// EnvTag is a revision tag: a name for one revision of an environment.
type EnvTag struct {
	EnvID       int64
	Name        string
	Revision    int
	Created     time.Time
	Modified    time.Time
	EditorLogin string
}

// EnvSession is an open session: an evaluated environment, readable by its opener until
// it expires. Data is the evaluated environment sealed under the environment's data key
// (it holds secret plaintext), never the plaintext itself.
type EnvSession struct {
	ID    string
	OrgID int64
	// EnvID is the environment opened; 0 for an anonymous definition (yaml/open).
	EnvID    int64
	Revision int
	// Owner identifies the opener (a token ID, or "user:<id>"): only the opener reads it.
	Owner   string
	Data    []byte
	Created time.Time
	Expires time.Time
}

// EnvFilter selects environments for listing, by name order.
type EnvFilter struct {
	OrgIDs       []int64
	Continuation string
	Limit        int
}

// EnvTx is the environment part of Tx.
type EnvTx interface {
	// CreateEnvironment stores a new environment with revision 1 holding yaml. ECONFLICT when
	// the name is taken in the organization's project; sets ID, Revision and times.
	CreateEnvironment(e *Environment, yaml []byte) error
	GetEnvironment(orgID int64, project, name string) (*Environment, error)
	GetEnvironmentByID(id int64) (*Environment, error)
	// ListEnvironments lists by org, project, name; the string is the continuation token.
	ListEnvironments(f EnvFilter) ([]Environment, string, error)
	// DeleteEnvironment deletes it with its revisions, tags, sessions and data key;
	// ECONFLICT when it is deletion-protected.
	DeleteEnvironment(id int64) error
	SetEnvironmentProtected(id int64, protected bool) error
	// PutEnvRevision stores yaml as the next revision. When expect >= 0 the environment's
	// current revision must be expect (ECONFLICT otherwise): two editors racing on one
	// ETag cannot both win. Returns the new revision number.
	PutEnvRevision(envID int64, expect int, yaml []byte, login string) (int, error)
	GetEnvRevision(envID int64, number int) (*EnvRevision, error)
	// ListEnvRevisions lists revisions with a number < before (0: all), newest first, at
	// most count (0: all).
	ListEnvRevisions(envID int64, before, count int) ([]EnvRevision, error)
	// RetractEnvRevision retracts revision number: it can no longer be read or opened and
	// the revision tags naming it move to replacement (0: the newest earlier revision that
	// is not retracted). The latest revision cannot be retracted (EINVALID), nor one that
	// is already (ECONFLICT); the replacement must exist and not be retracted. Open
	// sessions of the revision end. Returns the replacement used.
	RetractEnvRevision(envID int64, number, replacement int, login, reason string) (int, error)
	// CreateEnvTag adds a revision tag (ECONFLICT when it exists; ENOTFOUND for a
	// revision that does not exist).
	CreateEnvTag(t *EnvTag) error
	UpdateEnvTag(envID int64, name string, revision int, login string) error
	GetEnvTag(envID int64, name string) (*EnvTag, error)
	ListEnvTags(envID int64) ([]EnvTag, error)
	DeleteEnvTag(envID int64, name string) error
	// Environment tags (name/value metadata). SetEnvTag adds or changes one; DeleteEnvTagKV
	// removes one (ENOTFOUND when absent). GetEnvironment* fill Environment.Tags.
	ListEnvKVTags(envID int64) ([]EnvKVTag, error)
	SetEnvKVTag(t *EnvKVTag) error
	DeleteEnvKVTag(envID int64, name string) error
	// Open sessions. GetEnvSession returns ENOTFOUND for unknown and expired sessions.
	CreateEnvSession(s *EnvSession) error
	GetEnvSession(id string) (*EnvSession, error)
	// Environment data keys (wrapped by the keyring; see package secrets).
	GetEnvKey(envID int64) ([]byte, error) // ENOTFOUND when none
	CreateEnvKey(envID int64, wrapped []byte) ([]byte, error)
	// ListEnvKeys and ReplaceEnvKey serve key rotation (compare-and-swap, as for stacks).
	ListEnvKeys() ([]EnvKey, error)
	ReplaceEnvKey(envID int64, oldWrapped, newWrapped []byte) error
}

// EnvKey is an environment's wrapped data key.
type EnvKey struct {
	EnvID   int64
	Wrapped []byte
}

// EnvKVTag is an environment tag: name/value metadata.
type EnvKVTag struct {
	EnvID       int64
	Name        string
	Value       string
	Created     time.Time
	Modified    time.Time
	EditorLogin string
}
