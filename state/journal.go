package state

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/providers"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// ErrBadJournal is wrapped by every error Replay and ReplayTyped return.
var ErrBadJournal = errors.New("bad journal")

// Replay reconstructs the deployment the CLI holds after applying entries over
// base. Entries may be given in any order and may contain duplicates (the CLI
// retries whole batches): they are de-duplicated by sequenceID and processed
// in sequenceID order.
//
// The semantics are those of the Pulumi CLI's reference replayer,
// JournalReplayer in pkg/backend/journal.go of github.com/pulumi/pulumi
// (v3.243.0, the version whose apitype this module pins). See ReplayTyped for
// the places where we deliberately differ.
//
// base and entries are not modified. The result is freshly allocated at the
// top level but may share nested maps, slices and pointers (inputs, outputs,
// secrets provider, operations) with base and entries; treat it as read-only
// or deep-copy it before mutating nested data. A nil base means an empty
// deployment, as in the CLI.
func Replay(base *apitype.DeploymentV3, entries []apitype.JournalEntry) (*apitype.DeploymentV3, error) {
	td, err := ReplayTyped(base, entries)
	if err != nil {
		return nil, err
	}
	return td.Deployment, nil
}

// ReplayTyped is Replay, additionally returning the deployment schema version
// (apitype.DeploymentSchemaVersionCurrent = 3, or DeploymentSchemaVersionLatest
// = 4 if any feature is required) and the sorted feature list, computed exactly
// as JournalReplayer.GenerateDeployment does (features are collected before
// dependency repair and URN normalisation, from the resources and from the
// pending operations' resources).
//
// Deliberate differences from the CLI's JournalReplayer (v3.243.0):
//
//   - Malformed references are rejected with ErrBadJournal instead of being
//     resolved the way a Go map/slice happens to behave: an operation ID that
//     names no new resource (the CLI silently uses new resource #0, or panics
//     when there is none), a base index outside the current base (the CLI
//     silently ignores it), a write entry without newSnapshot, a sequenceID <= 0
//     (the CLI's SnapshotJournaler records "journal entry has no sequence ID"),
//     two entries with the same sequenceID but different content, and
//     URN/provider references that make the CLI's NormalizeURNReferences panic.
//   - A secrets-manager entry without secretsProvider is a no-op (the CLI does
//     the same when the base has no secrets provider, and panics otherwise).
//   - Indices of new resources are their position in the new-resource list.
//     The CLI keeps counting across a rebuilt-base-state entry (r.index is not
//     reset), which mis-addresses later entries if new resources existed
//     before it; the engine tries to forbid that journal shape.
//   - Dangling replaceWith references are pruned individually after a refresh,
//     as in pulumi/pulumi#23927 (v3.249+); v3.243.0 had a shadowed-index bug
//     there.
//   - Pending operations of unfinished begin entries are ordered by the begin
//     entry's sequenceID (the CLI iterates a Go map, so its order is random),
//     followed by the base's pending "creating" operations.
//   - The manifest is carried over from the (current) base instead of being
//     stamped with time.Now() and the CLI's version; callers that want a fresh
//     manifest set it themselves. This keeps Replay pure and deterministic.
//   - Entry kinds this apitype version does not model (8
//     extension-parameterize, 9 snippets, sent by CLIs >= v3.249) and unknown
//     kinds are ignored, as the v3.243.0 replayer ignores unknown kinds; their
//     payload fields (extensionRef/extension/snippets) are not representable in
//     apitype v3.243.0 and are lost at decode time anyway.
func ReplayTyped(base *apitype.DeploymentV3, entries []apitype.JournalEntry) (apitype.TypedDeployment, error) {
	ordered, err := orderEntries(entries) // strictly increasing sequenceIDs, as ReplayStream wants
	if err != nil {
		return apitype.TypedDeployment{}, err
	}
	i := 0
	return ReplayStream(base, func() (*apitype.JournalEntry, error) {
		if i == len(ordered) {
			return nil, nil
		}
		i++
		return ordered[i-1], nil
	})
}

// DeploymentSchemaVersion returns the schema version (3, or 4 if any feature
// is used) and the sorted list of features required to store d, using the
// same feature rules as the CLI (pkg/resource/stack/deployment.go,
// ApplyFeatures) applied to d's resources and pending operations.
func DeploymentSchemaVersion(d *apitype.DeploymentV3) (int, []string) {
	features := map[string]bool{}
	if d != nil {
		for i := range d.Resources {
			applyFeatures(&d.Resources[i], features)
		}
		for i := range d.PendingOperations {
			applyFeatures(&d.PendingOperations[i].Resource, features)
		}
	}
	return versionFor(features)
}

// Feature names, as in pkg/resource/stack/deployment.go at v3.243.0.
const (
	featureRefreshBeforeUpdate = "refreshBeforeUpdate"
	featureViews               = "views"
	featureHooks               = "hooks"
	featureTaint               = "taint"
	featureReplaceWith         = "replaceWith"
)

// applyFeatures mirrors stack.ApplyFeatures (v3.243.0).
func applyFeatures(res *apitype.ResourceV3, features map[string]bool) {
	if res.RefreshBeforeUpdate {
		features[featureRefreshBeforeUpdate] = true
	}
	if res.ViewOf != "" {
		features[featureViews] = true
	}
	if len(res.ResourceHooks) > 0 {
		features[featureHooks] = true
	}
	if res.Taint {
		features[featureTaint] = true
	}
	if len(res.ReplaceWith) > 0 {
		features[featureReplaceWith] = true
	}
}

func versionFor(features map[string]bool) (int, []string) {
	if len(features) == 0 {
		return apitype.DeploymentSchemaVersionCurrent, nil
	}
	return apitype.DeploymentSchemaVersionLatest, slices.Sorted(maps.Keys(features))
}

// orderEntries de-duplicates entries by sequenceID and sorts them by it.
func orderEntries(entries []apitype.JournalEntry) ([]*apitype.JournalEntry, error) {
	ordered := make([]*apitype.JournalEntry, 0, len(entries))
	for i := range entries {
		e := &entries[i]
		if e.SequenceID <= 0 {
			return nil, fmt.Errorf("%w: entry %d has no valid sequenceID (%d)", ErrBadJournal, i, e.SequenceID)
		}
		ordered = append(ordered, e)
	}
	slices.SortStableFunc(ordered, func(a, b *apitype.JournalEntry) int {
		return cmp.Compare(a.SequenceID, b.SequenceID)
	})
	out := ordered[:0]
	for _, e := range ordered {
		if n := len(out); n > 0 && out[n-1].SequenceID == e.SequenceID {
			if !sameEntry(out[n-1], e) {
				return nil, fmt.Errorf("%w: two different entries share sequenceID %d", ErrBadJournal, e.SequenceID)
			}
			continue
		}
		out = append(out, e)
	}
	return out, nil
}

// ReplayStream is ReplayTyped over entries delivered one at a time, by next, in strictly
// increasing sequenceID order with no duplicates (as a store keyed by sequenceID returns
// them); next returns nil at the end. An entry is applied as soon as it arrives and is not
// kept, so a caller that decodes entries lazily holds in memory only what the replay itself
// still needs (the unfinished operations and the new resources), not the whole journal.
// Entries out of order are refused with ErrBadJournal.
func ReplayStream(base *apitype.DeploymentV3, next func() (*apitype.JournalEntry, error)) (apitype.TypedDeployment, error) {
	r := newReplayer(base)
	var last int64
	for {
		e, err := next()
		if err != nil {
			return apitype.TypedDeployment{}, err
		}
		if e == nil {
			break
		}
		if e.SequenceID <= last {
			return apitype.TypedDeployment{}, fmt.Errorf("%w: entry sequenceID=%d follows sequenceID=%d: not in increasing order",
				ErrBadJournal, e.SequenceID, last)
		}
		last = e.SequenceID
		if err := r.add(e); err != nil {
			return apitype.TypedDeployment{}, fmt.Errorf("%w: entry sequenceID=%d operationID=%d kind=%v: %v",
				ErrBadJournal, e.SequenceID, e.OperationID, e.Kind, err)
		}
	}
	td, err := r.generate()
	if err != nil {
		return apitype.TypedDeployment{}, fmt.Errorf("%w: %v", ErrBadJournal, err)
	}
	return td, nil
}

// pendingBegin is an unfinished begin entry.
type pendingBegin struct {
	seq int64
	op  *apitype.OperationV2
}

// replayer mirrors the state of the CLI's JournalReplayer.
type replayer struct {
	// base is a private shallow copy of the current base deployment. Its
	// Resources and PendingOperations slices are shared and read-only.
	base *apitype.DeploymentV3

	// newResources are private copies of the states produced by this update.
	newResources []*apitype.ResourceV3
	// opIndex maps an operation ID to its resource's index in newResources.
	opIndex map[int64]int
	// toRemove holds operation IDs whose new resource is dropped.
	toRemove map[int64]struct{}

	// Base indices to drop, replace, mark delete:true, mark pendingReplacement:true.
	dropBase               map[int64]struct{}
	replaceBase            map[int64]*apitype.ResourceV3
	markDelete             map[int64]struct{}
	markPendingReplacement map[int64]struct{}

	// incomplete holds begin entries not (yet) followed by an end entry.
	incomplete map[int64]pendingBegin

	// hasRefresh is set once any refresh was journaled; it survives
	// rebuilt-base-state entries, as in the CLI.
	hasRefresh bool

	// rebuilt is set by a rebuilt-base-state entry and cleared by any entry
	// that may change the replay state; see the rebuilt-base-state case.
	rebuilt bool
}

func newReplayer(base *apitype.DeploymentV3) *replayer {
	r := &replayer{base: &apitype.DeploymentV3{}}
	if base != nil {
		b := *base
		r.base = &b
	}
	r.reset()
	return r
}

// reset clears everything but base and hasRefresh.
func (r *replayer) reset() {
	r.newResources = nil
	r.opIndex = map[int64]int{}
	r.toRemove = map[int64]struct{}{}
	r.dropBase = map[int64]struct{}{}
	r.replaceBase = map[int64]*apitype.ResourceV3{}
	r.markDelete = map[int64]struct{}{}
	r.markPendingReplacement = map[int64]struct{}{}
	r.incomplete = map[int64]pendingBegin{}
}

// oldIndex validates an index into the current base's resources.
func (r *replayer) oldIndex(field string, idx int64) (int64, error) {
	if idx < 0 || idx >= int64(len(r.base.Resources)) {
		return 0, fmt.Errorf("%s=%d is not an index into the %d base resources", field, idx, len(r.base.Resources))
	}
	return idx, nil
}

// newIndex resolves an operation ID to an index into newResources.
func (r *replayer) newIndex(field string, opID int64) (int, error) {
	i, ok := r.opIndex[opID]
	if !ok {
		return 0, fmt.Errorf("%s=%d does not name an operation that produced a resource", field, opID)
	}
	return i, nil
}

func (r *replayer) add(e *apitype.JournalEntry) error {
	// One private copy per entry, shared between the places that use it, like
	// the CLI shares entry.State.
	var st *apitype.ResourceV3
	if e.State != nil {
		c := *e.State
		st = &c
	}

	switch e.Kind {
	case apitype.JournalEntryKindBegin, apitype.JournalEntryKindSuccess, apitype.JournalEntryKindFailure,
		apitype.JournalEntryKindRefreshSuccess, apitype.JournalEntryKindOutputs, apitype.JournalEntryKindWrite,
		apitype.JournalEntryKindSecretsManager:
		r.rebuilt = false
	}

	switch e.Kind {
	case apitype.JournalEntryKindBegin:
		r.incomplete[e.OperationID] = pendingBegin{seq: e.SequenceID, op: e.Operation}

	case apitype.JournalEntryKindSuccess:
		delete(r.incomplete, e.OperationID)
		if st != nil {
			r.opIndex[e.OperationID] = len(r.newResources)
			r.newResources = append(r.newResources, st)
		}
		if e.RemoveOld != nil {
			i, err := r.oldIndex("removeOld", *e.RemoveOld)
			if err != nil {
				return err
			}
			r.dropBase[i] = struct{}{}
		}
		if e.RemoveNew != nil {
			if _, err := r.newIndex("removeNew", *e.RemoveNew); err != nil {
				return err
			}
			r.toRemove[*e.RemoveNew] = struct{}{}
		}
		if e.DeleteOld != nil {
			i, err := r.oldIndex("deleteOld", *e.DeleteOld)
			if err != nil {
				return err
			}
			r.markDelete[i] = struct{}{}
		}
		if e.DeleteNew != nil {
			i, err := r.newIndex("deleteNew", *e.DeleteNew)
			if err != nil {
				return err
			}
			r.newResources[i].Delete = true
		}
		if e.PendingReplacementOld != nil {
			i, err := r.oldIndex("pendingReplacementOld", *e.PendingReplacementOld)
			if err != nil {
				return err
			}
			r.markPendingReplacement[i] = struct{}{}
		}
		if e.PendingReplacementNew != nil {
			i, err := r.newIndex("pendingReplacementNew", *e.PendingReplacementNew)
			if err != nil {
				return err
			}
			r.newResources[i].PendingReplacement = true
		}
		if e.IsRefresh {
			r.hasRefresh = true
		}

	case apitype.JournalEntryKindRefreshSuccess:
		delete(r.incomplete, e.OperationID)
		r.hasRefresh = true
		if e.RemoveOld != nil {
			i, err := r.oldIndex("removeOld", *e.RemoveOld)
			if err != nil {
				return err
			}
			if st == nil {
				r.dropBase[i] = struct{}{}
			} else {
				r.replaceBase[i] = st
			}
		}
		if e.RemoveNew != nil {
			i, err := r.newIndex("removeNew", *e.RemoveNew)
			if err != nil {
				return err
			}
			if st == nil {
				r.toRemove[*e.RemoveNew] = struct{}{}
			} else {
				r.newResources[i] = st
			}
		}

	case apitype.JournalEntryKindFailure:
		delete(r.incomplete, e.OperationID)

	case apitype.JournalEntryKindOutputs:
		if st != nil && e.RemoveOld != nil {
			i, err := r.oldIndex("removeOld", *e.RemoveOld)
			if err != nil {
				return err
			}
			r.replaceBase[i] = st
		}
		if st != nil && e.RemoveNew != nil {
			i, err := r.newIndex("removeNew", *e.RemoveNew)
			if err != nil {
				return err
			}
			r.newResources[i] = st
		}

	case apitype.JournalEntryKindWrite:
		// Replaces the base; the engine sends this before other mutations. The
		// rest of the replay state is deliberately kept, as in the CLI.
		if e.NewSnapshot == nil {
			return errors.New("write entry without newSnapshot")
		}
		b := *e.NewSnapshot
		r.base = &b

	case apitype.JournalEntryKindSecretsManager:
		sp := e.SecretsProvider
		if sp == nil {
			return nil
		}
		if cur := r.base.SecretsProviders; cur != nil && cur.Type == sp.Type && bytes.Equal(cur.State, sp.State) {
			return nil // keep the base's provider, as the CLI does
		}
		r.base.SecretsProviders = sp

	case apitype.JournalEntryKindRebuiltBaseState:
		// Materialise the current result as the new base and start over
		// (hasRefresh is kept, as in the CLI).
		//
		// Repeating this with nothing in between reproduces the same base
		// once that base only has "creating" pending operations (dependency
		// repair and URN normalisation are idempotent), so skip the O(n)
		// rebuild then: a batch of many such entries stays cheap.
		if r.rebuilt && !slices.ContainsFunc(r.base.PendingOperations, func(op apitype.OperationV2) bool {
			return op.Type != apitype.OperationTypeCreating
		}) {
			return nil
		}
		td, err := r.generate()
		if err != nil {
			return err
		}
		r.base = td.Deployment
		r.reset()
		r.rebuilt = true

	default:
		// Kinds 8 (extension-parameterize), 9 (snippets) and anything newer:
		// not representable with apitype v3.243.0; ignored like the v3.243.0
		// replayer ignores unknown kinds.
	}
	return nil
}

// generate mirrors JournalReplayer.GenerateDeployment.
func (r *replayer) generate() (apitype.TypedDeployment, error) {
	features := map[string]bool{}

	removed := make(map[int]struct{}, len(r.toRemove))
	for op := range r.toRemove {
		// Every op in toRemove was validated when added and opIndex only grows
		// until the next reset, which also clears toRemove.
		if i, ok := r.opIndex[op]; ok {
			removed[i] = struct{}{}
		}
	}

	base := r.base
	resources := make([]apitype.ResourceV3, 0, len(r.newResources)+len(base.Resources))
	for i, res := range r.newResources {
		if _, ok := removed[i]; ok {
			continue
		}
		resources = append(resources, *res)
		applyFeatures(res, features)
	}
	for i, res := range base.Resources {
		idx := int64(i)
		if _, ok := r.dropBase[idx]; ok {
			continue
		}
		if _, ok := r.markPendingReplacement[idx]; ok {
			res.PendingReplacement = true
		}
		if st, ok := r.replaceBase[idx]; ok {
			// A replacement wins over marks on the old state, as in the CLI.
			resources = append(resources, *st)
			applyFeatures(st, features)
			continue
		}
		if _, ok := r.markDelete[idx]; ok {
			res.Delete = true
		}
		resources = append(resources, res)
		applyFeatures(&res, features)
	}

	var operations []apitype.OperationV2
	if len(r.incomplete) > 0 {
		begins := slices.SortedFunc(maps.Values(r.incomplete), func(a, b pendingBegin) int {
			return cmp.Compare(a.seq, b.seq)
		})
		for _, b := range begins {
			if b.op != nil {
				operations = append(operations, *b.op)
				applyFeatures(&b.op.Resource, features)
			}
		}
	}
	// Pending creates need user intervention, so they survive from the base.
	for i := range base.PendingOperations {
		if op := base.PendingOperations[i]; op.Type == apitype.OperationTypeCreating {
			operations = append(operations, op)
			applyFeatures(&op.Resource, features)
		}
	}

	if r.hasRefresh {
		rebuildDependencies(resources)
	}

	d := &apitype.DeploymentV3{
		Manifest:          base.Manifest,
		SecretsProviders:  base.SecretsProviders,
		Resources:         resources,
		PendingOperations: operations,
		Metadata:          base.Metadata,
	}
	if err := normalizeURNReferences(d); err != nil {
		return apitype.TypedDeployment{}, fmt.Errorf("failed to normalize URN references: %w", err)
	}
	version, feats := versionFor(features)
	return apitype.TypedDeployment{Version: version, Features: feats, Deployment: d}, nil
}

// rebuildDependencies mirrors the CLI's rebuildDependencies (with the
// replaceWith fix of pulumi/pulumi#23927): after a refresh, drop references
// to resources that no longer exist (or appear only later in the list, which
// is assumed to be in dependency order) and re-parent orphans. resources are
// our own copies; reference slices and maps are replaced, never written to.
func rebuildDependencies(resources []apitype.ResourceV3) {
	referenceable := make(map[resource.URN]bool, len(resources))
	for i := range resources {
		res := &resources[i]
		if len(res.Dependencies) > 0 {
			deps := []resource.URN{}
			for _, dep := range res.Dependencies {
				if referenceable[dep] {
					deps = append(deps, dep)
				}
			}
			res.Dependencies = deps
		}
		if len(res.PropertyDependencies) > 0 {
			propDeps := make(map[resource.PropertyKey][]resource.URN)
			for k, deps := range res.PropertyDependencies {
				for _, dep := range deps {
					if referenceable[dep] {
						propDeps[k] = append(propDeps[k], dep)
					}
				}
			}
			res.PropertyDependencies = propDeps
		}
		if len(res.ReplaceWith) > 0 {
			rw := []resource.URN{}
			for _, u := range res.ReplaceWith {
				if referenceable[u] {
					rw = append(rw, u)
				}
			}
			res.ReplaceWith = rw
		}
		if !referenceable[res.DeletedWith] {
			res.DeletedWith = ""
		}
		referenceable[res.URN] = true
	}

	// undangleParentResources: a parent that is not in the final list is
	// replaced by its own (already fixed) parent. Since a missing parent never
	// appears in the list, this resolves to "" in practice, exactly as in the
	// CLI, whose availableParents only ever holds URNs that are present.
	availableParents := make(map[resource.URN]resource.URN, len(resources))
	for i := range resources {
		res := &resources[i]
		oldParent := res.Parent
		if !referenceable[oldParent] {
			res.Parent = availableParents[oldParent]
		}
		availableParents[res.URN] = oldParent
	}
}

const urnPrefix = "urn:pulumi:"

// normalizeURNReferences mirrors apitype.(*DeploymentV3).NormalizeURNReferences
// (v3.243.0), except that it returns errors where that function would panic
// (contract assertions on malformed URNs and provider references) and that it
// never writes into slices or maps it may share with the caller's input.
func normalizeURNReferences(d *apitype.DeploymentV3) error {
	aliased := make(map[resource.URN]resource.URN)
	for i := range d.Resources {
		res := &d.Resources[i]
		for _, alias := range res.Aliases {
			if other, has := aliased[alias]; has && other != res.URN {
				return fmt.Errorf("two resources ('%s' and '%s') have the same alias: '%s'", other, res.URN, alias)
			}
			aliased[alias] = res.URN
		}
		// If our parent has changed URN, then we need to update our URN as well.
		if parent, has := aliased[res.Parent]; has && parent != "" {
			if !strings.HasPrefix(string(parent), urnPrefix) {
				return fmt.Errorf("resource %q: aliased parent %q is not a URN", res.URN, parent)
			}
			if parent.QualifiedType() != resource.RootStackType {
				if !strings.HasPrefix(string(res.URN), urnPrefix) {
					return fmt.Errorf("resource URN %q is not a URN", res.URN)
				}
				aliased[res.URN] = resource.NewURN(
					res.URN.Stack(), res.URN.Project(),
					parent.QualifiedType(), res.URN.Type(),
					res.URN.Name())
			}
		}
	}

	fixURN := func(u resource.URN) resource.URN {
		if n, has := aliased[u]; has {
			return n
		}
		return u
	}
	// fixURNs returns urns with aliases resolved and whether anything
	// changed; it copies instead of writing into the (possibly shared) input.
	fixURNs := func(urns []resource.URN) ([]resource.URN, bool) {
		for j, u := range urns {
			if fixURN(u) != u {
				out := slices.Clone(urns)
				for k := j; k < len(out); k++ {
					out[k] = fixURN(out[k])
				}
				return out, true
			}
		}
		return urns, false
	}

	// Resources share a handful of provider references; fixProvider is pure
	// for a given aliased map, so remember its answers.
	type fixedProvider struct {
		ref string
		err error
	}
	providerCache := map[string]fixedProvider{}

	for i := range d.Resources {
		res := &d.Resources[i]
		res.URN = fixURN(res.URN)
		res.Parent = fixURN(res.Parent)
		fp, ok := providerCache[res.Provider]
		if !ok {
			fp.ref, fp.err = fixProvider(res.Provider, fixURN)
			providerCache[res.Provider] = fp
		}
		if fp.err != nil {
			return fmt.Errorf("resource %q: %w", res.URN, fp.err)
		}
		res.Provider = fp.ref
		if len(aliased) > 0 {
			res.Dependencies, _ = fixURNs(res.Dependencies)
			var propDeps map[resource.PropertyKey][]resource.URN
			for k, deps := range res.PropertyDependencies {
				if fixed, changed := fixURNs(deps); changed {
					if propDeps == nil {
						propDeps = maps.Clone(res.PropertyDependencies)
					}
					propDeps[k] = fixed
				}
			}
			if propDeps != nil {
				res.PropertyDependencies = propDeps
			}
		}
		res.DeletedWith = fixURN(res.DeletedWith)
		res.ViewOf = fixURN(res.ViewOf)
		// Aliases are not written out once URNs are normalised.
		if len(res.Aliases) > 0 {
			res.Aliases = nil
		}
	}
	return nil
}

// fixProvider mirrors the fixProvider closure of NormalizeURNReferences.
func fixProvider(provider string, fixURN func(resource.URN) resource.URN) (string, error) {
	if provider == "" {
		return "", nil
	}
	if i := strings.LastIndex(provider, resource.URNNameDelimiter); i >= 0 {
		if err := providerURNWouldPanic(resource.URN(provider[:i])); err != nil {
			return "", fmt.Errorf("malformed provider reference %q: %w", provider, err)
		}
	}
	ref, err := providers.ParseReference(provider)
	if err != nil {
		return "", fmt.Errorf("malformed provider reference %q: %w", provider, err)
	}
	newURN := fixURN(ref.URN())
	if err := providerURNWouldPanic(newURN); err != nil {
		return "", fmt.Errorf("provider reference %q: %w", provider, err)
	}
	ref, err = providers.NewReference(newURN, ref.ID())
	if err != nil {
		return "", fmt.Errorf("provider reference %q: cannot re-create with URN %q: %w", provider, newURN, err)
	}
	return ref.String(), nil
}

// providerURNWouldPanic reports the one input on which the SDK's provider URN
// validation panics instead of returning an error: a well-formed URN whose type
// has exactly one ':' (tokens.ModuleMember asserts at least two).
func providerURNWouldPanic(u resource.URN) error {
	if u.IsValid() && strings.Count(string(u.Type()), ":") == 1 {
		return fmt.Errorf("invalid provider type %q in %q", u.Type(), u)
	}
	return nil
}

// sameEntry reports whether two entries carrying the same sequenceID are the
// same retried entry. Entries are compared by their JSON encoding, which is
// what the CLI sent (twice).
func sameEntry(a, b *apitype.JournalEntry) bool {
	if a == b {
		return true
	}
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
