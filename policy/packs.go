package policy

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"sort"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/token"
)

// DefaultGroup is the name of every organization's default policy group.
const DefaultGroup = apitype.DefaultPolicyGroup

// How long the URLs handed to the CLI live, and how long a publish may stay incomplete.
const (
	UploadURLLifetime   = 15 * time.Minute
	DownloadURLLifetime = 30 * time.Minute
	// PendingLifetime is how long a created version may wait for its upload and complete
	// before it is deleted (it is never usable before).
	PendingLifetime = time.Hour
)

var (
	packNameRE   = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$`)
	versionTagRE = regexp.MustCompile(`^[a-zA-Z0-9-_.]{1,100}$`) // the CLI's validatePolicyPackVersion
	groupNameRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}$`)
)

// ValidPackName checks a policy pack name.
func ValidPackName(s string) error {
	if !packNameRE.MatchString(s) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid policy pack name %q: letters, digits, '-', '_' and '.', at most 100", s)
	}
	return nil
}

// ValidVersionTag checks a version tag as the CLI does.
func ValidVersionTag(s string) error {
	if !versionTagRE.MatchString(s) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid policy pack version %q: letters, digits, '-', '_' and '.', 1 to 100", s)
	}
	return nil
}

// ValidGroupName checks a policy group name.
func ValidGroupName(s string) error {
	if !groupNameRE.MatchString(s) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid policy group name %q", s)
	}
	return nil
}

// NewURLToken returns a fresh unguessable URL token (256 random bits) and its digest.
func NewURLToken() (string, [32]byte, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", [32]byte{}, gatehouse.Wrap(gatehouse.EINTERNAL, err, "cannot create a policy URL")
	}
	v := base64.RawURLEncoding.EncodeToString(b[:])
	return v, token.Digest(v), nil
}

// URLDigest is the digest a URL token is stored under.
func URLDigest(v string) [32]byte { return token.Digest(v) }

// Publish validates a publish request and creates the pending version (the first of
// `pulumi policy publish`'s three calls). Versions without a tag (very old
// @pulumi/policy) get their number as tag.
func Publish(tx gatehouse.Tx, orgID int64, req *apitype.CreatePolicyPackRequest, by string) (*gatehouse.PolicyPack, error) {
	if err := ValidPackName(req.Name); err != nil {
		return nil, err
	}
	if req.VersionTag != "" {
		if err := ValidVersionTag(req.VersionTag); err != nil {
			return nil, err
		}
	}
	for i, p := range req.Policies {
		if p.Name == "" {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "policy %d has no name", i)
		}
		if p.EnforcementLevel != "" && !p.EnforcementLevel.IsValid() {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "policy %s: invalid enforcement level %q", p.Name, p.EnforcementLevel)
		}
	}
	meta, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	p := &gatehouse.PolicyPack{OrgID: orgID, Name: req.Name, VersionTag: req.VersionTag, DisplayName: req.DisplayName, Metadata: meta, CreatedBy: by}
	if p.VersionTag == "" {
		var n int
		packs, err := tx.ListPolicyPacks(orgID)
		if err != nil {
			return nil, err
		}
		for _, q := range packs {
			if q.Name == req.Name && q.Version > n {
				n = q.Version
			}
		}
		p.VersionTag = itoa(n + 1)
	}
	if err := tx.CreatePolicyPack(p); err != nil {
		return nil, err
	}
	return p, nil
}

// Metadata decodes a version's publish request.
func Metadata(p *gatehouse.PolicyPack) apitype.CreatePolicyPackRequest {
	var req apitype.CreatePolicyPackRequest
	_ = json.Unmarshal(p.Metadata, &req)
	return req
}

// Schema is a version's configuration schema per policy (`pulumi policy validate-config`).
func Schema(p *gatehouse.PolicyPack) apitype.GetPolicyPackConfigSchemaResponse {
	out := apitype.GetPolicyPackConfigSchemaResponse{ConfigSchema: map[string]apitype.PolicyConfigSchema{}}
	for _, pol := range Metadata(p).Policies {
		if pol.ConfigSchema != nil {
			out.ConfigSchema[pol.Name] = *pol.ConfigSchema
		}
	}
	return out
}

// List answers `pulumi policy ls`: ready versions per pack.
func List(packs []gatehouse.PolicyPack) apitype.ListPolicyPacksResponse {
	out := apitype.ListPolicyPacksResponse{PolicyPacks: []apitype.PolicyPackWithVersions{}}
	idx := map[string]int{}
	for _, p := range packs {
		if p.Status != gatehouse.PolicyPackReady {
			continue
		}
		i, ok := idx[p.Name]
		if !ok {
			i = len(out.PolicyPacks)
			idx[p.Name] = i
			out.PolicyPacks = append(out.PolicyPacks, apitype.PolicyPackWithVersions{Name: p.Name, Versions: []int{}, VersionTags: []string{}})
		}
		w := &out.PolicyPacks[i]
		if p.DisplayName != "" {
			w.DisplayName = p.DisplayName
		}
		w.Versions = append(w.Versions, p.Version)
		w.VersionTags = append(w.VersionTags, p.VersionTag)
	}
	return out
}

// Latest returns the newest ready version of a pack (ENOTFOUND when none).
func Latest(tx gatehouse.Tx, orgID int64, name string) (*gatehouse.PolicyPack, error) {
	packs, err := tx.ListPolicyPacks(orgID)
	if err != nil {
		return nil, err
	}
	var best *gatehouse.PolicyPack
	for i := range packs {
		p := &packs[i]
		if p.Name == name && p.Status == gatehouse.PolicyPackReady && (best == nil || p.Version > best.Version) {
			best = p
		}
	}
	if best == nil {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack %s has no published version", name)
	}
	return best, nil
}

// Resolve finds the ready version an enabled pack names (the newest for no tag).
func Resolve(tx gatehouse.Tx, orgID int64, name, tag string) (*gatehouse.PolicyPack, error) {
	if tag == "" {
		return Latest(tx, orgID, name)
	}
	p, err := tx.GetPolicyPack(orgID, name, tag)
	if err != nil {
		return nil, err
	}
	if p.Status != gatehouse.PolicyPackReady {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "policy pack %s version %s was never completely published", name, tag)
	}
	return p, nil
}

// EnabledIn returns the groups that enable the pack: that version tag, or any version
// (including "the newest") when tag is "".
func EnabledIn(groups []gatehouse.PolicyGroup, name, tag string) []string {
	var out []string
	for _, g := range groups {
		for _, p := range g.Packs {
			if p.Name == name && (tag == "" || p.VersionTag == tag) {
				out = append(out, g.Name)
				break
			}
		}
	}
	sort.Strings(out)
	return out
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
