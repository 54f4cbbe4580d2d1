package policy

import (
	"encoding/json"
	"sort"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Groups returns the organization's groups, the default group first (an empty one when it
// was never written).
func Groups(tx gatehouse.Tx, orgID int64) ([]gatehouse.PolicyGroup, error) {
	gs, err := tx.ListPolicyGroups(orgID)
	if err != nil {
		return nil, err
	}
	out := []gatehouse.PolicyGroup{}
	var def *gatehouse.PolicyGroup
	for i := range gs {
		if gs[i].Name == DefaultGroup {
			gs[i].IsDefault = true
			def = &gs[i]
		}
	}
	if def == nil {
		def = &gatehouse.PolicyGroup{OrgID: orgID, Name: DefaultGroup, IsDefault: true}
	}
	out = append(out, *def)
	for _, g := range gs {
		if g.Name != DefaultGroup {
			out = append(out, g)
		}
	}
	return out, nil
}

// Group returns one group (the default one even when never written).
func Group(tx gatehouse.Tx, orgID int64, name string) (*gatehouse.PolicyGroup, error) {
	g, err := tx.GetPolicyGroup(orgID, name)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) && name == DefaultGroup {
		return &gatehouse.PolicyGroup{OrgID: orgID, Name: DefaultGroup, IsDefault: true}, nil
	}
	if g != nil && g.Name == DefaultGroup {
		g.IsDefault = true
	}
	return g, err
}

// Selects reports whether the group applies to the stack: the default group to every stack
// of its organization, any other through one of its selectors.
func Selects(g *gatehouse.PolicyGroup, st *gatehouse.Stack) bool {
	if g.OrgID != st.OrgID {
		return false
	}
	if g.IsDefault || g.Name == DefaultGroup {
		return true
	}
	for _, sc := range g.Selectors {
		if sc.Matches(st.ID, st.Project, st.Tags) {
			return true
		}
	}
	return false
}

// Left returns the names of the organization's groups that select the stack now and would
// no longer select it with the tags tags: the groups a tag change takes it out of (which is
// removing it from them, so it needs what removeStack needs). Selection is Selects's.
func Left(tx gatehouse.Tx, st *gatehouse.Stack, tags map[string]string) ([]string, error) {
	groups, err := Groups(tx, st.OrgID)
	if err != nil {
		return nil, err
	}
	after := *st
	after.Tags = tags
	var out []string
	for i := range groups {
		if Selects(&groups[i], st) && !Selects(&groups[i], &after) {
			out = append(out, groups[i].Name)
		}
	}
	return out, nil
}

// Requirement is a pack version a stack must run, with its configuration and the groups
// that require it.
type Requirement struct {
	Pack   *gatehouse.PolicyPack
	Config map[string]*json.RawMessage
	Groups []string
}

// Required returns the pack versions every update and preview of the stack must run, by
// pack name. An enabled pack that has no ready version fails the call: an update must not
// start without a policy it is required to run.
func Required(tx gatehouse.Tx, st *gatehouse.Stack) ([]Requirement, error) {
	groups, err := Groups(tx, st.OrgID)
	if err != nil {
		return nil, err
	}
	byKey := map[string]*Requirement{}
	var keys []string
	for i := range groups {
		g := &groups[i]
		if !Selects(g, st) {
			continue
		}
		for _, gp := range g.Packs {
			p, err := Resolve(tx, st.OrgID, gp.Name, gp.VersionTag)
			if err != nil {
				return nil, gatehouse.Errorf(gatehouse.EINVALID, "policy group %s requires policy pack %s, which cannot be used: %s", g.Name, gp.Name, gatehouse.ErrorMessage(err))
			}
			k := p.Name + "@" + p.VersionTag
			if r, ok := byKey[k]; ok {
				r.Groups = append(r.Groups, g.Name)
				continue
			}
			byKey[k] = &Requirement{Pack: p, Config: gp.Config, Groups: []string{g.Name}}
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]Requirement, 0, len(keys))
	for _, k := range keys {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// Summary is a group as `pulumi policy group ls` lists it; numStacks counts the stacks it
// selects now.
func Summary(g *gatehouse.PolicyGroup, stacks []gatehouse.Stack) apitype.PolicyGroupSummary {
	n := 0
	for i := range stacks {
		if Selects(g, &stacks[i]) {
			n++
		}
	}
	return apitype.PolicyGroupSummary{
		Name: g.Name, IsOrgDefault: g.IsDefault, NumStacks: n, EntityType: apitype.Stacks,
		Mode: apitype.PolicyGroupModePreventative, NumEnabledPolicyPacks: len(g.Packs),
	}
}

// EnablePack enables a ready pack version in the group (replacing another version of the
// same pack, as the service does); enabling the version already enabled is a conflict.
func EnablePack(tx gatehouse.Tx, g *gatehouse.PolicyGroup, m *apitype.PolicyPackMetadata) error {
	if err := ValidPackName(m.Name); err != nil {
		return err
	}
	if err := byNumber(tx, g.OrgID, m); err != nil {
		return err
	}
	p, err := Resolve(tx, g.OrgID, m.Name, m.VersionTag)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return gatehouse.Errorf(gatehouse.EINVALID, "%s", gatehouse.ErrorMessage(err))
		}
		return err
	}
	if err := ValidateConfig(p, m.Config); err != nil {
		return err
	}
	gp := gatehouse.PolicyGroupPack{Name: m.Name, VersionTag: m.VersionTag, Config: m.Config}
	for i, have := range g.Packs {
		if have.Name != m.Name {
			continue
		}
		if have.VersionTag == m.VersionTag {
			what := "version " + m.VersionTag
			if m.VersionTag == "" {
				what = "its newest version"
			}
			return gatehouse.Errorf(gatehouse.ECONFLICT, "policy pack %s (%s) is already enabled in policy group %s", m.Name, what, g.Name)
		}
		g.Packs[i] = gp
		return nil
	}
	g.Packs = append(g.Packs, gp)
	_ = p
	return nil
}

// byNumber turns a version number (`pulumi policy group edit --add-policy-pack pack@3`)
// into its tag.
func byNumber(tx gatehouse.Tx, orgID int64, m *apitype.PolicyPackMetadata) error {
	if m.VersionTag != "" || m.Version <= 0 {
		return nil
	}
	packs, err := tx.ListPolicyPacks(orgID)
	if err != nil {
		return err
	}
	for _, p := range packs {
		if p.Name == m.Name && p.Version == m.Version {
			m.VersionTag = p.VersionTag
			return nil
		}
	}
	return gatehouse.Errorf(gatehouse.EINVALID, "policy pack %s has no version %d", m.Name, m.Version)
}

// DisablePack removes the pack from the group (the given version, or whichever is enabled
// for no version); ENOTFOUND when it is not enabled there.
func DisablePack(tx gatehouse.Tx, g *gatehouse.PolicyGroup, m *apitype.PolicyPackMetadata) error {
	if err := byNumber(tx, g.OrgID, m); err != nil {
		return err
	}
	for i, have := range g.Packs {
		if have.Name == m.Name && (m.VersionTag == "" || have.VersionTag == m.VersionTag) {
			g.Packs = append(g.Packs[:i:i], g.Packs[i+1:]...)
			return nil
		}
	}
	return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack %s is not enabled in policy group %s", m.Name, g.Name)
}

// ValidateConfig checks a pack configuration against the version's schema: every policy
// named must exist and every required property be present (the CLI validates the JSON
// schema itself before it sends it).
func ValidateConfig(p *gatehouse.PolicyPack, cfg map[string]*json.RawMessage) error {
	if len(cfg) == 0 {
		return nil
	}
	pols := map[string]*apitype.Policy{}
	meta := Metadata(p)
	for i := range meta.Policies {
		pols[meta.Policies[i].Name] = &meta.Policies[i]
	}
	for name, raw := range cfg {
		pol, ok := pols[name]
		if !ok && name != "all" {
			return gatehouse.Errorf(gatehouse.EINVALID, "policy pack %s has no policy %q to configure", p.Name, name)
		}
		if raw == nil {
			continue
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(*raw, &obj); err != nil {
			var s string
			if json.Unmarshal(*raw, &s) == nil && apitype.EnforcementLevel(s).IsValid() {
				continue // "policy": "mandatory"
			}
			return gatehouse.Errorf(gatehouse.EINVALID, "configuration of policy %s must be an object", name)
		}
		if pol == nil || pol.ConfigSchema == nil {
			continue
		}
		for _, req := range pol.ConfigSchema.Required {
			if _, ok := obj[req]; !ok {
				return gatehouse.Errorf(gatehouse.EINVALID, "configuration of policy %s lacks required property %q", name, req)
			}
		}
	}
	return nil
}

// StackSelector turns a PulumiStackReference of a group update into a selector of the
// organization's stack; a stack of another organization (or one that does not exist) is
// refused.
func StackSelector(tx gatehouse.Tx, org *gatehouse.Org, ref *apitype.PulumiStackReference) (gatehouse.Scope, *gatehouse.Stack, error) {
	name, project := ref.Name, ref.RoutingProject
	if project == "" {
		// "project/stack" or "org/project/stack" in name.
		parts := strings.Split(name, "/")
		switch len(parts) {
		case 2:
			project, name = parts[0], parts[1]
		case 3:
			if parts[0] != org.Name {
				return gatehouse.Scope{}, nil, gatehouse.Errorf(gatehouse.EINVALID, "stack %s belongs to another organization: a policy group of %s selects only its own stacks", ref.Name, org.Name)
			}
			project, name = parts[1], parts[2]
		default:
			return gatehouse.Scope{}, nil, gatehouse.Errorf(gatehouse.EINVALID, "name the stack as project/stack (or set routingProject)")
		}
	}
	st, err := tx.GetStack(org.ID, project, name)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return gatehouse.Scope{}, nil, gatehouse.Errorf(gatehouse.EINVALID, "stack %s/%s/%s does not exist", org.Name, project, name)
		}
		return gatehouse.Scope{}, nil, err
	}
	return gatehouse.Scope{StackID: st.ID, StackRef: &gatehouse.StackRef{Org: org.Name, Project: project, Stack: name}}, st, nil
}

// AddSelector adds a selector (ECONFLICT when present).
func AddSelector(g *gatehouse.PolicyGroup, sc gatehouse.Scope) error {
	for _, have := range g.Selectors {
		if have.Key() == sc.Key() {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "policy group %s already selects %s", g.Name, sc.String())
		}
	}
	g.Selectors = append(g.Selectors, sc)
	return nil
}

// RemoveSelector removes a selector (ENOTFOUND when absent).
func RemoveSelector(g *gatehouse.PolicyGroup, sc gatehouse.Scope) error {
	for i, have := range g.Selectors {
		if have.Key() == sc.Key() {
			g.Selectors = append(g.Selectors[:i:i], g.Selectors[i+1:]...)
			return nil
		}
	}
	return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy group %s does not select %s", g.Name, sc.String())
}
