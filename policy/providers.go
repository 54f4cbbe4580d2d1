package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	fastjson "github.com/segmentio/encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Approved providers: an organization that sets an allow-list may add to its stacks'
// state only provider resources (type pulumi:providers:NAME) whose package NAME is listed
// and, when the entry has a version range, whose version (the provider's "version" input)
// is in it. Gatehouse checks every state an update sends (full checkpoints, verbatim
// checkpoints, deltas, journal entries) before storing it, so the engine's registration of
// a provider fails, and with it every resource that needs the provider, before any is
// created. Providers already in the stack's last state are left alone (an allow-list set
// later does not strand existing stacks).

// ProviderTypePrefix starts the type of every provider resource.
const ProviderTypePrefix = "pulumi:providers:"

var providerNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,99}$`)

// AllowList is a parsed allow-list.
type AllowList struct {
	enforced bool
	entries  map[string][]allowEntry
}

type allowEntry struct {
	text string
	rng  semver.Range // nil: any version
}

// ParseAllowList checks and parses the organization's entries: lower-case package names
// (letters, digits, '-', '_', '.') and semver ranges as in ">=6.0.0 <7.0.0 || 7.1.x".
func ParseAllowList(s *gatehouse.PolicySettings) (*AllowList, error) {
	al := &AllowList{enforced: s != nil && s.Enforced, entries: map[string][]allowEntry{}}
	if s == nil {
		return al, nil
	}
	for _, e := range s.ApprovedProviders {
		if err := ValidProviderName(e.Name); err != nil {
			return nil, err
		}
		ae := allowEntry{text: e.Versions}
		if v := strings.TrimSpace(e.Versions); v != "" && v != "*" {
			r, err := parseRange(v)
			if err != nil {
				return nil, gatehouse.Errorf(gatehouse.EINVALID, "provider %s: invalid version range %q: %v", e.Name, e.Versions, err)
			}
			ae.rng = r
		}
		al.entries[e.Name] = append(al.entries[e.Name], ae)
	}
	return al, nil
}

func parseRange(s string) (r semver.Range, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("%v", p)
		}
	}()
	if len(s) > 200 {
		return nil, fmt.Errorf("too long")
	}
	return semver.ParseRange(s)
}

// ValidProviderName checks a provider package name of an allow-list entry.
func ValidProviderName(s string) error {
	if !providerNameRE.MatchString(s) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid provider name %q: lower-case letters, digits, '-', '_' and '.', as in aws or azure-native", s)
	}
	return nil
}

// Enforced reports whether the organization restricts providers at all.
func (al *AllowList) Enforced() bool { return al != nil && al.enforced }

// Provider is a provider resource found in a state.
type Provider struct {
	URN     string
	Name    string // the package: aws for pulumi:providers:aws
	Version string // "" when the state does not say
}

// Allowed checks one provider; the error says why it is not allowed.
func (al *AllowList) Allowed(p Provider) error {
	if !al.Enforced() {
		return nil
	}
	entries, ok := al.entries[p.Name]
	if !ok {
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "provider %s (%s) is not an approved provider of this organization", p.Name, p.URN)
	}
	for _, e := range entries {
		if e.rng == nil {
			return nil
		}
		if p.Version == "" {
			continue
		}
		v, err := semver.ParseTolerant(p.Version)
		if err == nil && e.rng(v) {
			return nil
		}
	}
	ranges := make([]string, 0, len(entries))
	for _, e := range entries {
		ranges = append(ranges, e.text)
	}
	ver := p.Version
	if ver == "" {
		ver = "an unknown version"
	}
	return gatehouse.Errorf(gatehouse.EFORBIDDEN, "provider %s %s (%s) is not an approved version of this organization (approved: %s)", p.Name, ver, p.URN, strings.Join(ranges, ", "))
}

// providerOf returns the provider of a resource of type typ with inputs, or false.
func providerOf(urn, typ string, inputs map[string]any) (Provider, bool) {
	if !strings.HasPrefix(typ, ProviderTypePrefix) {
		return Provider{}, false
	}
	p := Provider{URN: urn, Name: strings.TrimPrefix(typ, ProviderTypePrefix)}
	if v, ok := inputs["version"].(string); ok {
		p.Version = v
	}
	return p, true
}

// InDeployment returns the providers of a deployment (apitype.DeploymentV3 JSON): its
// resources and the resources of its pending operations.
func InDeployment(raw json.RawMessage) ([]Provider, error) {
	var d struct {
		Resources         []resourceHead `json:"resources"`
		PendingOperations []struct {
			Resource resourceHead `json:"resource"`
		} `json:"pending_operations"`
	}
	if err := fastjson.Unmarshal(raw, &d); err != nil {
		return nil, err
	}
	var out []Provider
	for i := range d.Resources {
		if p, ok := d.Resources[i].provider(); ok {
			out = append(out, p)
		}
	}
	for i := range d.PendingOperations {
		if p, ok := d.PendingOperations[i].Resource.provider(); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// resourceHead is what the check reads of a resource; inputs are decoded only for
// providers (a large state's resources are not decoded into maps).
type resourceHead struct {
	URN    string          `json:"urn"`
	Type   string          `json:"type"`
	Inputs json.RawMessage `json:"inputs"`
}

func (r *resourceHead) provider() (Provider, bool) {
	if !strings.HasPrefix(r.Type, ProviderTypePrefix) {
		return Provider{}, false
	}
	var in struct {
		Version any `json:"version"`
	}
	_ = json.Unmarshal(r.Inputs, &in)
	v, _ := in.Version.(string)
	return providerOf(r.URN, r.Type, map[string]any{"version": v})
}

// InUntyped returns the providers of an untyped deployment document ({version, deployment}).
func InUntyped(doc []byte) ([]Provider, error) {
	var u apitype.UntypedDeployment
	if err := json.Unmarshal(doc, &u); err != nil {
		return nil, err
	}
	if len(u.Deployment) == 0 {
		return nil, nil
	}
	return InDeployment(u.Deployment)
}

// InJournal returns the providers journal entries register (their states and the states
// of their operations, and the snapshots some entries carry).
func InJournal(entries []apitype.JournalEntry) []Provider {
	var out []Provider
	add := func(r *apitype.ResourceV3) {
		if r == nil {
			return
		}
		if p, ok := providerOf(string(r.URN), string(r.Type), r.Inputs); ok {
			out = append(out, p)
		}
	}
	for i := range entries {
		e := &entries[i]
		add(e.State)
		if e.Operation != nil {
			add(&e.Operation.Resource)
		}
		if e.NewSnapshot != nil {
			for j := range e.NewSnapshot.Resources {
				add(&e.NewSnapshot.Resources[j])
			}
		}
	}
	return out
}

// InEvents returns the providers that engine events (a preview's) say the update would
// create or update.
func InEvents(events []json.RawMessage) []Provider {
	var out []Provider
	for _, raw := range events {
		var e struct {
			ResourcePreEvent *struct {
				Metadata apitype.StepEventMetadata `json:"metadata"`
			} `json:"resourcePreEvent"`
		}
		if json.Unmarshal(raw, &e) != nil || e.ResourcePreEvent == nil {
			continue
		}
		m := e.ResourcePreEvent.Metadata
		if m.New == nil || m.Op == apitype.OpDelete || m.Op == apitype.OpDeleteReplaced || m.Op == apitype.OpRead || m.Op == apitype.OpReadDiscard || m.Op == apitype.OpDiscardReplaced {
			continue
		}
		in := m.New.Inputs
		if p, ok := providerOf(m.URN, m.Type, in); ok {
			out = append(out, p)
		} else if p, ok := defaultProviderOf(m.Provider); ok {
			// The CLI does not send the events of default providers' own steps
			// (internal): the resources name them in their provider reference.
			out = append(out, p)
		}
	}
	return out
}

// defaultProviderOf returns the default provider a provider reference (URN::ID) names:
// pulumi:providers:NAME, named "default" or "default_" + its version with '.' as '_'.
// Explicit providers are left out (their own events carry their version).
func defaultProviderOf(ref string) (Provider, bool) {
	i := strings.LastIndex(ref, "::")
	if i < 0 {
		return Provider{}, false
	}
	urn := ref[:i]
	parts := strings.Split(urn, "::")
	if len(parts) < 4 {
		return Provider{}, false
	}
	typ, name := parts[len(parts)-2], parts[len(parts)-1]
	if j := strings.LastIndex(typ, "$"); j >= 0 {
		typ = typ[j+1:]
	}
	if !strings.HasPrefix(typ, ProviderTypePrefix) || (name != "default" && !strings.HasPrefix(name, "default_")) {
		return Provider{}, false
	}
	p := Provider{URN: urn, Name: strings.TrimPrefix(typ, ProviderTypePrefix)}
	if v, ok := strings.CutPrefix(name, "default_"); ok {
		p.Version = strings.ReplaceAll(v, "_", ".")
	}
	return p, true
}

// Violations returns the providers the allow-list refuses, leaving out those already in
// the stack's last state with the same version (base; nil when the stack had none).
func (al *AllowList) Violations(found []Provider, base []Provider) []error {
	if !al.Enforced() {
		return nil
	}
	had := map[string]bool{}
	for _, p := range base {
		had[p.URN+"\x00"+p.Version] = true
	}
	seen := map[string]bool{}
	var out []error
	for _, p := range found {
		k := p.URN + "\x00" + p.Version
		if seen[k] || had[k] {
			continue
		}
		seen[k] = true
		if err := al.Allowed(p); err != nil {
			out = append(out, err)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Error() < out[j].Error() })
	return out
}
