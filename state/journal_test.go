package state

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

const (
	stackURN    = resource.URN("urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev")
	providerURN = resource.URN("urn:pulumi:dev::proj::pulumi:providers:aws::default")
	providerRef = string(providerURN) + "::prov-1"
)

func urnOf(name string) resource.URN {
	return resource.URN("urn:pulumi:dev::proj::aws:s3/bucket:Bucket::" + name)
}

func stackRes() apitype.ResourceV3 {
	return apitype.ResourceV3{URN: stackURN, Type: "pulumi:pulumi:Stack"}
}

func provRes(v string) apitype.ResourceV3 {
	return apitype.ResourceV3{
		URN: providerURN, Custom: true, ID: "prov-1", Type: "pulumi:providers:aws",
		Inputs: map[string]any{"v": v, "region": "eu-west-1"},
	}
}

// bucket is a custom resource at version v (recorded in Inputs["v"]).
func bucket(name, v string, opts ...func(*apitype.ResourceV3)) apitype.ResourceV3 {
	r := apitype.ResourceV3{
		URN: urnOf(name), Custom: true, ID: resource.ID("id-" + name), Type: "aws:s3/bucket:Bucket",
		Provider: providerRef, Parent: stackURN,
		Inputs:  map[string]any{"v": v, "bucket": name},
		Outputs: map[string]any{"v": v, "arn": "arn:aws:s3:::" + name},
	}
	for _, o := range opts {
		o(&r)
	}
	return r
}

func p(r apitype.ResourceV3) *apitype.ResourceV3 { return &r }
func i64(i int64) *int64                         { return &i }

// jb builds journals the way the engine's JournalSnapshotManager
// (pkg/engine/journal_snapshot.go) does: sequence IDs and operation IDs both
// count from 1, writes and secrets-manager entries use operation 0.
type jb struct {
	seq, op int64
	es      []apitype.JournalEntry
}

func (j *jb) add(e apitype.JournalEntry) {
	j.seq++
	e.Version = 1
	e.SequenceID = j.seq
	j.es = append(j.es, e)
}

func (j *jb) secrets(typ string) {
	j.add(apitype.JournalEntry{
		Kind:            apitype.JournalEntryKindSecretsManager,
		SecretsProvider: &apitype.SecretsProvidersV1{Type: typ, State: json.RawMessage(`{"url":"` + typ + `"}`)},
	})
}

// begin starts an operation; r == nil is a begin without operation (same,
// refresh, remove-pending-replace steps).
func (j *jb) begin(typ apitype.OperationType, r *apitype.ResourceV3) int64 {
	j.op++
	e := apitype.JournalEntry{Kind: apitype.JournalEntryKindBegin, OperationID: j.op}
	if r != nil {
		e.Operation = &apitype.OperationV2{Resource: *r, Type: typ}
	}
	j.add(e)
	return j.op
}

type opt func(*apitype.JournalEntry)

func st(r apitype.ResourceV3) opt { return func(e *apitype.JournalEntry) { e.State = &r } }
func rmOld(i int64) opt           { return func(e *apitype.JournalEntry) { e.RemoveOld = i64(i) } }
func rmNew(op int64) opt          { return func(e *apitype.JournalEntry) { e.RemoveNew = i64(op) } }
func delOld(i int64) opt          { return func(e *apitype.JournalEntry) { e.DeleteOld = i64(i) } }
func delNew(op int64) opt         { return func(e *apitype.JournalEntry) { e.DeleteNew = i64(op) } }
func prOld(i int64) opt           { return func(e *apitype.JournalEntry) { e.PendingReplacementOld = i64(i) } }
func prNew(op int64) opt          { return func(e *apitype.JournalEntry) { e.PendingReplacementNew = i64(op) } }
func isRefresh() opt              { return func(e *apitype.JournalEntry) { e.IsRefresh = true } }

func (j *jb) end(kind apitype.JournalEntryKind, op int64, opts ...opt) {
	e := apitype.JournalEntry{Kind: kind, OperationID: op}
	for _, o := range opts {
		o(&e)
	}
	j.add(e)
}

func (j *jb) ok(op int64, opts ...opt) { j.end(apitype.JournalEntryKindSuccess, op, opts...) }

// Engine step shapes.
func (j *jb) same(oldIdx int64, r apitype.ResourceV3) int64 {
	op := j.begin("", nil)
	j.ok(op, st(r), rmOld(oldIdx))
	return op
}

func (j *jb) create(r apitype.ResourceV3) int64 {
	op := j.begin(apitype.OperationTypeCreating, &r)
	j.ok(op, st(r))
	return op
}

func (j *jb) update(oldIdx int64, r apitype.ResourceV3) int64 {
	op := j.begin(apitype.OperationTypeUpdating, &r)
	j.ok(op, st(r), rmOld(oldIdx))
	return op
}

func (j *jb) delete(oldIdx int64, old apitype.ResourceV3) int64 {
	op := j.begin(apitype.OperationTypeDeleting, &old)
	j.ok(op, rmOld(oldIdx))
	return op
}

func (j *jb) refresh(oldIdx int64, r *apitype.ResourceV3) int64 {
	op := j.begin("", nil)
	opts := []opt{rmOld(oldIdx), isRefresh()}
	if r != nil {
		opts = append(opts, st(*r))
	}
	j.end(apitype.JournalEntryKindRefreshSuccess, op, opts...)
	return op
}

// outputs is RegisterResourceOutputs: its own operation ID, no begin.
func (j *jb) outputs(opts ...opt) {
	j.op++
	j.end(apitype.JournalEntryKindOutputs, j.op, opts...)
}

func (j *jb) entries() []apitype.JournalEntry { return j.es }

// describe renders resources as name@v plus flags, and operations as type:name@v.
func describe(d *apitype.DeploymentV3) (res, ops []string) {
	one := func(r apitype.ResourceV3) string {
		s := string(r.URN)
		s = s[strings.LastIndex(s, "::")+2:]
		if v, ok := r.Inputs["v"]; ok {
			s += "@" + fmt.Sprint(v)
		}
		if r.Delete {
			s += "+delete"
		}
		if r.PendingReplacement {
			s += "+pendingReplacement"
		}
		return s
	}
	for _, r := range d.Resources {
		res = append(res, one(r))
	}
	for _, o := range d.PendingOperations {
		ops = append(ops, string(o.Type)+":"+one(o.Resource))
	}
	return res, ops
}

// cWithRefs is bucket c, a child of b that references a and b in every way.
func cWithRefs(v string) apitype.ResourceV3 {
	return bucket("c", v, func(r *apitype.ResourceV3) {
		r.Parent = urnOf("b")
		r.Dependencies = []resource.URN{urnOf("b"), urnOf("a")}
		r.PropertyDependencies = map[resource.PropertyKey][]resource.URN{
			"bucket": {urnOf("b")}, "acl": {urnOf("a"), urnOf("b")},
		}
		r.DeletedWith = urnOf("b")
		r.ReplaceWith = []resource.URN{urnOf("b"), urnOf("a")}
	})
}

// cRepaired is cWithRefs after b was deleted by a refresh: references to b
// are dropped (the "bucket" key disappears) and the orphan loses its parent,
// as in the CLI's rebuildDependencies/undangleParentResources.
func cRepaired(v string) apitype.ResourceV3 {
	return bucket("c", v, func(r *apitype.ResourceV3) {
		r.Parent = ""
		r.Dependencies = []resource.URN{urnOf("a")}
		r.PropertyDependencies = map[resource.PropertyKey][]resource.URN{"acl": {urnOf("a")}}
		r.ReplaceWith = []resource.URN{urnOf("a")}
	})
}

func stdBase() *apitype.DeploymentV3 {
	return &apitype.DeploymentV3{
		Manifest:         apitype.ManifestV1{Magic: "m", Version: "v3.243.0"},
		SecretsProviders: &apitype.SecretsProvidersV1{Type: "service", State: json.RawMessage(`{"url":"service"}`)},
		Resources: []apitype.ResourceV3{
			stackRes(), provRes("1"), bucket("a", "1"), bucket("b", "1"), bucket("c", "1"),
		},
	}
}

type scenario struct {
	name    string
	base    func() *apitype.DeploymentV3
	journal func(j *jb)
	want    []string
	wantOps []string
	check   func(t *testing.T, d *apitype.DeploymentV3)
}

func scenarios() []scenario {
	return []scenario{
		{
			name: "create resources on an empty stack",
			base: func() *apitype.DeploymentV3 { return nil },
			journal: func(j *jb) {
				j.secrets("service")
				j.create(stackRes())
				j.create(provRes("1"))
				for _, n := range []string{"a", "b", "c", "d"} {
					j.create(bucket(n, "1"))
				}
			},
			want: []string{"proj-dev", "default@1", "a@1", "b@1", "c@1", "d@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if d.SecretsProviders == nil || d.SecretsProviders.Type != "service" {
					t.Errorf("secrets provider = %+v", d.SecretsProviders)
				}
			},
		},
		{
			name: "only the secrets manager: base carried over, non-create pending ops dropped",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.PendingOperations = []apitype.OperationV2{
					{Type: apitype.OperationTypeCreating, Resource: bucket("x", "1")},
					{Type: apitype.OperationTypeDeleting, Resource: bucket("y", "1")},
					{Type: apitype.OperationTypeUpdating, Resource: bucket("z", "1")},
				}
				return b
			},
			journal: func(j *jb) { j.secrets("service") },
			want:    []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
			wantOps: []string{"creating:x@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if want := stdBase(); !reflect.DeepEqual(d.Resources, want.Resources) {
					t.Errorf("resources changed:\n got %+v\nwant %+v", d.Resources, want.Resources)
				}
				if d.Manifest.Magic != "m" {
					t.Errorf("manifest not carried over: %+v", d.Manifest)
				}
			},
		},
		{
			name: "same, update one, delete one",
			base: stdBase,
			journal: func(j *jb) {
				j.secrets("service")
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				j.update(2, bucket("a", "2"))
				j.same(3, bucket("b", "1"))
				j.delete(4, bucket("c", "1"))
			},
			want: []string{"proj-dev", "default@1", "a@2", "b@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if got := d.Resources[2].Outputs["v"]; got != "2" {
					t.Errorf("a outputs v = %v", got)
				}
			},
		},
		{
			name: "targeted update: untouched base resources follow the new ones",
			base: stdBase,
			journal: func(j *jb) {
				j.update(3, bucket("b", "2"))
			},
			want: []string{"b@2", "proj-dev", "default@1", "a@1", "c@1"},
		},
		{
			name: "create-before-delete replace",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				op := j.begin(apitype.OperationTypeCreating, p(bucket("a", "2")))
				j.ok(op, st(bucket("a", "2")), delOld(2))
				j.same(3, bucket("b", "1"))
				j.same(4, bucket("c", "1"))
				j.delete(2, bucket("a", "1"))
			},
			want: []string{"proj-dev", "default@1", "a@2", "b@1", "c@1"},
		},
		{
			name: "create-before-delete replace interrupted during the delete",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				op := j.begin(apitype.OperationTypeCreating, p(bucket("a", "2")))
				j.ok(op, st(bucket("a", "2")), delOld(2))
				j.same(3, bucket("b", "1"))
				j.same(4, bucket("c", "1"))
				j.begin(apitype.OperationTypeDeleting, p(bucket("a", "1")))
			},
			want:    []string{"proj-dev", "default@1", "a@2", "b@1", "c@1", "a@1+delete"},
			wantOps: []string{"deleting:a@1"},
		},
		{
			name: "delete-before-replace",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				del := j.begin(apitype.OperationTypeDeleting, p(bucket("a", "1")))
				j.ok(del, prOld(2))
				op := j.begin(apitype.OperationTypeCreating, p(bucket("a", "2")))
				j.ok(op, st(bucket("a", "2")), rmOld(2))
				j.same(3, bucket("b", "1"))
				j.same(4, bucket("c", "1"))
			},
			want: []string{"proj-dev", "default@1", "a@2", "b@1", "c@1"},
		},
		{
			name: "delete-before-replace whose create fails keeps the pending replacement",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				del := j.begin(apitype.OperationTypeDeleting, p(bucket("a", "1")))
				j.ok(del, prOld(2))
				op := j.begin(apitype.OperationTypeCreating, p(bucket("a", "2")))
				// The engine sends the new state on failures; replay ignores it.
				j.end(apitype.JournalEntryKindFailure, op, st(bucket("a", "2")))
			},
			want: []string{"proj-dev", "default@1", "a@1+pendingReplacement", "b@1", "c@1"},
		},
		{
			name: "delete-before-replace interrupted during the create",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				del := j.begin(apitype.OperationTypeDeleting, p(bucket("a", "1")))
				j.ok(del, prOld(2))
				j.begin(apitype.OperationTypeCreating, p(bucket("a", "2")))
			},
			want:    []string{"proj-dev", "default@1", "a@1+pendingReplacement", "b@1", "c@1"},
			wantOps: []string{"creating:a@2"},
		},
		{
			name: "failed update and failed delete clear their operations",
			base: stdBase,
			journal: func(j *jb) {
				op := j.begin(apitype.OperationTypeUpdating, p(bucket("a", "2")))
				j.end(apitype.JournalEntryKindFailure, op, st(bucket("a", "2")), rmOld(2))
				op = j.begin(apitype.OperationTypeDeleting, p(bucket("c", "1")))
				j.end(apitype.JournalEntryKindFailure, op)
			},
			want: []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
		},
		{
			name: "interrupted operations become pending operations in begin order",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.PendingOperations = []apitype.OperationV2{
					{Type: apitype.OperationTypeCreating, Resource: bucket("x", "1")},
					{Type: apitype.OperationTypeUpdating, Resource: bucket("y", "1")},
				}
				return b
			},
			journal: func(j *jb) {
				j.same(0, stackRes())
				j.begin(apitype.OperationTypeCreating, p(bucket("d", "1")))
				j.begin(apitype.OperationTypeUpdating, p(bucket("a", "2")))
				j.begin("", nil) // a same step: no operation, nothing pending
				j.begin(apitype.OperationTypeReading, p(bucket("e", "1")))
			},
			want:    []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
			wantOps: []string{"creating:d@1", "updating:a@2", "reading:e@1", "creating:x@1"},
		},
		{
			name: "resource created and deleted in the same update",
			base: stdBase,
			journal: func(j *jb) {
				op := j.create(bucket("d", "1"))
				del := j.begin(apitype.OperationTypeDeleting, p(bucket("d", "1")))
				j.ok(del, rmNew(op))
			},
			want: []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
		},
		{
			name: "deleteNew and pendingReplacementNew mark new resources",
			base: stdBase,
			journal: func(j *jb) {
				d1 := j.create(bucket("d", "1"))
				op := j.begin(apitype.OperationTypeCreating, p(bucket("d", "2")))
				j.ok(op, st(bucket("d", "2")), delNew(d1))
				e1 := j.create(bucket("e", "1"))
				del := j.begin(apitype.OperationTypeDeleting, p(bucket("e", "1")))
				j.ok(del, prNew(e1))
			},
			want: []string{
				"d@1+delete", "d@2", "e@1+pendingReplacement",
				"proj-dev", "default@1", "a@1", "b@1", "c@1",
			},
		},
		{
			name: "register outputs on a new and on a base resource",
			base: stdBase,
			journal: func(j *jb) {
				j.same(0, stackRes())
				comp := apitype.ResourceV3{URN: "urn:pulumi:dev::proj::my:Comp::comp", Type: "my:Comp", Parent: stackURN}
				op := j.create(comp)
				comp.Outputs = map[string]any{"url": "https://x"}
				j.outputs(st(comp), rmNew(op))
				j.outputs(st(bucket("b", "out")), rmOld(3))
			},
			want: []string{"proj-dev", "comp", "default@1", "a@1", "b@out", "c@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if d.Resources[1].Outputs["url"] != "https://x" {
					t.Errorf("component outputs = %v", d.Resources[1].Outputs)
				}
			},
		},
		{
			name: "refresh replaces in place, drops deleted resources and repairs references",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.Resources[4] = cWithRefs("1")
				return b
			},
			journal: func(j *jb) {
				j.secrets("service")
				j.refresh(2, p(bucket("a", "refreshed")))
				j.refresh(3, nil) // b no longer exists
				j.refresh(4, p(cWithRefs("refreshed")))
			},
			want: []string{"proj-dev", "default@1", "a@refreshed", "c@refreshed"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if got, want := d.Resources[3], cRepaired("refreshed"); !reflect.DeepEqual(got, want) {
					t.Errorf("c =\n %+v\nwant\n %+v", got, want)
				}
			},
		},
		{
			name: "refresh repairs references of resources it did not touch",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.Resources[4] = cWithRefs("1")
				return b
			},
			journal: func(j *jb) {
				j.refresh(3, nil)
			},
			want: []string{"proj-dev", "default@1", "a@1", "c@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if got, want := d.Resources[3], cRepaired("1"); !reflect.DeepEqual(got, want) {
					t.Errorf("c =\n %+v\nwant\n %+v", got, want)
				}
			},
		},
		{
			name: "persisted refresh (success with isRefresh) also repairs dependencies",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.Resources[3].Dependencies = []resource.URN{urnOf("a")}
				return b
			},
			journal: func(j *jb) {
				op := j.begin("", nil)
				j.ok(op, rmOld(2), isRefresh())
			},
			want: []string{"proj-dev", "default@1", "b@1", "c@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if deps := d.Resources[2].Dependencies; deps == nil || len(deps) != 0 {
					t.Errorf("b dependencies = %#v, want empty non-nil", deps)
				}
			},
		},
		{
			name: "up --refresh: rebuilt base state re-bases later indices",
			base: stdBase,
			journal: func(j *jb) {
				j.secrets("service")
				j.refresh(2, p(bucket("a", "refreshed")))
				j.refresh(3, nil) // b is gone
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState})
				// Rebuilt base: [stack, prov, a@refreshed, c@1].
				j.same(0, stackRes())
				j.same(1, provRes("1"))
				j.update(2, bucket("a", "2"))
				j.create(bucket("d", "1"))
				j.same(3, bucket("c", "1"))
			},
			want: []string{"proj-dev", "default@1", "a@2", "d@1", "c@1"},
		},
		{
			name: "rebuilt base state materialises unfinished creates as base pending operations",
			base: stdBase,
			journal: func(j *jb) {
				j.begin(apitype.OperationTypeCreating, p(bucket("d", "1")))
				j.begin(apitype.OperationTypeUpdating, p(bucket("a", "2")))
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState})
			},
			want: []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
			// The unfinished update was a pending op of the materialised base,
			// and only "creating" ones survive from a base.
			wantOps: []string{"creating:d@1"},
		},
		{
			name: "repeated rebuilt base state entries",
			base: stdBase,
			journal: func(j *jb) {
				j.refresh(3, nil)
				j.begin(apitype.OperationTypeCreating, p(bucket("d", "1")))
				j.begin(apitype.OperationTypeUpdating, p(bucket("a", "2")))
				for range 3 {
					j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState})
				}
				j.update(2, bucket("a", "3"))
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState})
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState})
			},
			want:    []string{"a@3", "proj-dev", "default@1", "c@1"},
			wantOps: []string{"creating:d@1"},
		},
		{
			name: "write entry replaces the base",
			base: func() *apitype.DeploymentV3 {
				b := stdBase()
				b.PendingOperations = []apitype.OperationV2{
					{Type: apitype.OperationTypeCreating, Resource: bucket("x", "1")},
				}
				return b
			},
			journal: func(j *jb) {
				j.secrets("service")
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindWrite, NewSnapshot: &apitype.DeploymentV3{
					Manifest:         apitype.ManifestV1{Magic: "m2", Version: "v3.243.0"},
					SecretsProviders: &apitype.SecretsProvidersV1{Type: "service"},
					Resources:        []apitype.ResourceV3{stackRes(), provRes("2"), bucket("a", "1"), bucket("b", "1")},
				}})
				j.same(0, stackRes())
				j.same(1, provRes("2"))
				j.update(2, bucket("a", "2"))
			},
			want: []string{"proj-dev", "default@2", "a@2", "b@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if d.Manifest.Magic != "m2" {
					t.Errorf("manifest = %+v", d.Manifest)
				}
				if d.SecretsProviders.Type != "service" || d.SecretsProviders.State != nil {
					t.Errorf("secrets provider = %+v", d.SecretsProviders)
				}
			},
		},
		{
			name: "secrets manager change after a write",
			base: stdBase,
			journal: func(j *jb) {
				j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindWrite, NewSnapshot: &apitype.DeploymentV3{}})
				j.secrets("passphrase")
				j.create(bucket("a", "1"))
			},
			want: []string{"a@1"},
			check: func(t *testing.T, d *apitype.DeploymentV3) {
				if d.SecretsProviders.Type != "passphrase" {
					t.Errorf("secrets provider = %+v", d.SecretsProviders)
				}
			},
		},
		{
			name: "kinds 8, 9 and unknown kinds are ignored",
			base: stdBase,
			journal: func(j *jb) {
				j.add(apitype.JournalEntry{Kind: 8})
				j.add(apitype.JournalEntry{Kind: 9})
				j.add(apitype.JournalEntry{Kind: 42, State: p(bucket("z", "1")), RemoveOld: i64(99)})
			},
			want: []string{"proj-dev", "default@1", "a@1", "b@1", "c@1"},
		},
	}
}

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestReplayScenarios(t *testing.T) {
	t.Parallel()
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			base := sc.base()
			j := &jb{}
			sc.journal(j)
			entries := j.entries()
			baseJSON, entriesJSON := marshal(t, base), marshal(t, entries)

			d, err := Replay(base, entries)
			if err != nil {
				t.Fatalf("Replay: %v", err)
			}
			res, ops := describe(d)
			if !slices.Equal(res, sc.want) {
				t.Errorf("resources:\n got %q\nwant %q", res, sc.want)
			}
			if !slices.Equal(ops, sc.wantOps) {
				t.Errorf("pending operations:\n got %q\nwant %q", ops, sc.wantOps)
			}
			if sc.check != nil {
				sc.check(t, d)
			}
			if marshal(t, base) != baseJSON || marshal(t, entries) != entriesJSON {
				t.Error("Replay modified its inputs")
			}

			// ReplayStream over the entries in order, one at a time, gives the same result.
			sorted := slices.Clone(entries)
			slices.SortStableFunc(sorted, func(a, b apitype.JournalEntry) int { return cmp.Compare(a.SequenceID, b.SequenceID) })
			sorted = slices.CompactFunc(sorted, func(a, b apitype.JournalEntry) bool { return a.SequenceID == b.SequenceID })
			i := 0
			td, err := ReplayStream(sc.base(), func() (*apitype.JournalEntry, error) {
				if i == len(sorted) {
					return nil, nil
				}
				e := sorted[i] // a fresh copy each time, as a lazy decoder would produce
				i++
				return &e, nil
			})
			if err != nil {
				t.Fatalf("ReplayStream: %v", err)
			}
			if marshal(t, td.Deployment) != marshal(t, d) {
				t.Fatalf("ReplayStream gave a different result:\n%s\nvs\n%s", marshal(t, td.Deployment), marshal(t, d))
			}
			if len(sorted) > 1 {
				rev := []apitype.JournalEntry{sorted[1], sorted[0]}
				k := 0
				_, err := ReplayStream(sc.base(), func() (*apitype.JournalEntry, error) {
					if k == len(rev) {
						return nil, nil
					}
					k++
					return &rev[k-1], nil
				})
				if !errors.Is(err, ErrBadJournal) {
					t.Fatalf("ReplayStream of entries out of order: err = %v, want ErrBadJournal", err)
				}
			}

			// Retried batches and out-of-order delivery change nothing.
			rng := rand.New(rand.NewPCG(1, uint64(len(entries))))
			for range 5 {
				mixed := slices.Clone(entries)
				for _, k := range rng.Perm(len(entries))[:len(entries)/2+1] {
					mixed = append(mixed, entries[k]) // a retried entry
				}
				rng.Shuffle(len(mixed), func(a, b int) { mixed[a], mixed[b] = mixed[b], mixed[a] })
				d2, err := Replay(sc.base(), mixed)
				if err != nil {
					t.Fatalf("Replay(shuffled+duplicated): %v", err)
				}
				if marshal(t, d2) != marshal(t, d) {
					t.Fatalf("shuffled/duplicated journal gave a different result:\n%s\nvs\n%s",
						marshal(t, d2), marshal(t, d))
				}
			}
		})
	}
}

// TestReplayRetriedBatch models the CLI re-sending a whole batch of 100
// (pkg/backend/httpstate/journal: sendBatches / sendBatch 413 split) after
// the server had already stored it, followed by the next batch.
func TestReplayRetriedBatch(t *testing.T) {
	t.Parallel()
	j := &jb{}
	j.secrets("service")
	for i := range 60 {
		j.create(bucket(fmt.Sprintf("r%02d", i), "1"))
	}
	all := j.entries()
	first, second := all[:100], all[100:]
	stored := slices.Concat(first, first, second, second[:10]) // batch 1 twice, then batch 2, part of it retried
	d, err := Replay(nil, stored)
	if err != nil {
		t.Fatal(err)
	}
	want, err := Replay(nil, all)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Resources) != 60 || marshal(t, d) != marshal(t, want) {
		t.Fatalf("retried batches changed the result: %d resources", len(d.Resources))
	}
}

func TestReplayFeatures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		base         []apitype.ResourceV3
		journal      func(j *jb)
		wantVersion  int
		wantFeatures []string
	}{
		{"none", []apitype.ResourceV3{bucket("a", "1")}, func(j *jb) {}, 3, nil},
		{
			"base resource features",
			[]apitype.ResourceV3{bucket("a", "1", func(r *apitype.ResourceV3) {
				r.Taint = true
				r.RefreshBeforeUpdate = true
			})},
			func(j *jb) {}, 4, []string{"refreshBeforeUpdate", "taint"},
		},
		{
			"new resource features",
			nil,
			func(j *jb) {
				j.create(bucket("a", "1", func(r *apitype.ResourceV3) {
					r.ViewOf = urnOf("b")
					r.ResourceHooks = map[resource.HookType][]string{"before-create": {"h"}}
				}))
			},
			4, []string{"hooks", "views"},
		},
		{
			"pending operation features count",
			nil,
			func(j *jb) {
				j.begin(apitype.OperationTypeCreating, p(bucket("a", "1", func(r *apitype.ResourceV3) { r.Taint = true })))
			},
			4, []string{"taint"},
		},
		{
			"replaceWith counts even when a refresh prunes it (features are collected first, as in the CLI)",
			[]apitype.ResourceV3{bucket("a", "1"), bucket("b", "1", func(r *apitype.ResourceV3) {
				r.ReplaceWith = []resource.URN{urnOf("a")}
			})},
			func(j *jb) { j.refresh(0, nil) },
			4, []string{"replaceWith"},
		},
		{
			"dropped resources do not count",
			[]apitype.ResourceV3{bucket("a", "1", func(r *apitype.ResourceV3) { r.Taint = true })},
			func(j *jb) { j.delete(0, bucket("a", "1")) },
			3, nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := &jb{}
			tt.journal(j)
			td, err := ReplayTyped(&apitype.DeploymentV3{Resources: tt.base}, j.entries())
			if err != nil {
				t.Fatal(err)
			}
			if td.Version != tt.wantVersion || !slices.Equal(td.Features, tt.wantFeatures) {
				t.Fatalf("got version %d features %q, want %d %q", td.Version, td.Features, tt.wantVersion, tt.wantFeatures)
			}
		})
	}

	v, f := DeploymentSchemaVersion(&apitype.DeploymentV3{Resources: []apitype.ResourceV3{
		bucket("a", "1", func(r *apitype.ResourceV3) { r.ReplaceWith = []resource.URN{urnOf("b")} }),
	}, PendingOperations: []apitype.OperationV2{{Resource: bucket("b", "1", func(r *apitype.ResourceV3) { r.Taint = true })}}})
	if v != 4 || !slices.Equal(f, []string{"replaceWith", "taint"}) {
		t.Fatalf("DeploymentSchemaVersion = %d %q", v, f)
	}
	if v, f := DeploymentSchemaVersion(nil); v != 3 || f != nil {
		t.Fatalf("DeploymentSchemaVersion(nil) = %d %q", v, f)
	}
}

// TestReplayNormalizesAliases checks the NormalizeURNReferences step: a
// renamed resource's old URN is rewritten everywhere, including in provider
// references and in resources the update did not touch, and aliases are
// dropped; the caller's base is not written through shared slices.
func TestReplayNormalizesAliases(t *testing.T) {
	t.Parallel()
	oldProv := resource.URN("urn:pulumi:dev::proj::pulumi:providers:aws::old")
	newProv := providerURN
	base := &apitype.DeploymentV3{Resources: []apitype.ResourceV3{
		{URN: oldProv, Custom: true, ID: "prov-1", Type: "pulumi:providers:aws"},
		bucket("a", "1", func(r *apitype.ResourceV3) { r.Provider = string(oldProv) + "::prov-1" }),
		bucket("b", "1", func(r *apitype.ResourceV3) {
			r.Provider = string(oldProv) + "::prov-1"
			r.Dependencies = []resource.URN{oldProv, urnOf("a")}
			r.PropertyDependencies = map[resource.PropertyKey][]resource.URN{"p": {urnOf("a"), oldProv}}
			r.DeletedWith = oldProv
		}),
	}}
	baseJSON := marshal(t, base)

	j := &jb{}
	renamed := apitype.ResourceV3{URN: newProv, Custom: true, ID: "prov-1", Type: "pulumi:providers:aws",
		Aliases: []resource.URN{oldProv}}
	j.same(0, renamed)
	d, err := Replay(base, j.entries())
	if err != nil {
		t.Fatal(err)
	}
	if marshal(t, base) != baseJSON {
		t.Fatal("base modified")
	}
	if d.Resources[0].URN != newProv || d.Resources[0].Aliases != nil {
		t.Errorf("provider = %+v", d.Resources[0])
	}
	b := d.Resources[2]
	if b.Provider != providerRef || d.Resources[1].Provider != providerRef {
		t.Errorf("provider refs = %q, %q", d.Resources[1].Provider, b.Provider)
	}
	if !slices.Equal(b.Dependencies, []resource.URN{newProv, urnOf("a")}) ||
		!slices.Equal(b.PropertyDependencies["p"], []resource.URN{urnOf("a"), newProv}) ||
		b.DeletedWith != newProv {
		t.Errorf("b references not normalised: %+v", b)
	}

	// A child of an aliased parent gets a new URN; the provider ID defaults like the SDK does.
	parent := resource.URN("urn:pulumi:dev::proj::my:Comp::p")
	base = &apitype.DeploymentV3{Resources: []apitype.ResourceV3{
		{URN: "urn:pulumi:dev::proj::my:Comp$aws:s3/bucket:Bucket::child", Type: "aws:s3/bucket:Bucket",
			Parent: "urn:pulumi:dev::proj::my:OldComp::p", Provider: string(providerURN) + "::"},
	}}
	j = &jb{}
	j.create(apitype.ResourceV3{URN: parent, Type: "my:Comp", Aliases: []resource.URN{"urn:pulumi:dev::proj::my:OldComp::p"}})
	d, err = Replay(base, j.entries())
	if err != nil {
		t.Fatal(err)
	}
	child := d.Resources[1]
	if child.Parent != parent || child.Provider != string(providerURN)+"::04da6b54-80e4-46f7-96ec-b56ff0331ba9" {
		t.Errorf("child = %+v", child)
	}
}

func TestReplayErrors(t *testing.T) {
	t.Parallel()
	base := stdBase()
	e := func(kind apitype.JournalEntryKind, seq, op int64, opts ...opt) apitype.JournalEntry {
		en := apitype.JournalEntry{Version: 1, Kind: kind, SequenceID: seq, OperationID: op}
		for _, o := range opts {
			o(&en)
		}
		return en
	}
	const (
		success = apitype.JournalEntryKindSuccess
		refresh = apitype.JournalEntryKindRefreshSuccess
		outputs = apitype.JournalEntryKindOutputs
	)
	tests := []struct {
		name    string
		entries []apitype.JournalEntry
		msg     string
	}{
		{"sequenceID zero", []apitype.JournalEntry{e(success, 0, 1)}, "no valid sequenceID"},
		{"negative sequenceID", []apitype.JournalEntry{e(success, -4, 1)}, "no valid sequenceID"},
		{"conflicting duplicate", []apitype.JournalEntry{e(success, 1, 1), e(success, 1, 2)}, "share sequenceID 1"},
		{"removeOld out of range", []apitype.JournalEntry{e(success, 1, 1, rmOld(5))}, "removeOld=5"},
		{"removeOld negative", []apitype.JournalEntry{e(success, 1, 1, rmOld(-1))}, "removeOld=-1"},
		{"deleteOld out of range", []apitype.JournalEntry{e(success, 1, 1, delOld(5))}, "deleteOld=5"},
		{"pendingReplacementOld out of range", []apitype.JournalEntry{e(success, 1, 1, prOld(9))}, "pendingReplacementOld=9"},
		{"removeNew unknown", []apitype.JournalEntry{e(success, 1, 1, rmNew(7))}, "removeNew=7"},
		{"deleteNew unknown", []apitype.JournalEntry{e(success, 1, 1, delNew(7))}, "deleteNew=7"},
		{"pendingReplacementNew unknown", []apitype.JournalEntry{e(success, 1, 1, prNew(7))}, "pendingReplacementNew=7"},
		{"refresh removeNew unknown", []apitype.JournalEntry{e(refresh, 1, 1, rmNew(7), st(bucket("a", "1")))}, "removeNew=7"},
		{"refresh removeOld out of range", []apitype.JournalEntry{e(refresh, 1, 1, rmOld(70))}, "removeOld=70"},
		{"outputs removeNew unknown", []apitype.JournalEntry{e(outputs, 1, 1, rmNew(7), st(bucket("a", "1")))}, "removeNew=7"},
		{"outputs removeOld out of range", []apitype.JournalEntry{e(outputs, 1, 1, rmOld(70), st(bucket("a", "1")))}, "removeOld=70"},
		{"write without snapshot", []apitype.JournalEntry{e(apitype.JournalEntryKindWrite, 1, 0)}, "without newSnapshot"},
		{
			"index into base replaced by write",
			[]apitype.JournalEntry{
				{Kind: apitype.JournalEntryKindWrite, SequenceID: 1, NewSnapshot: &apitype.DeploymentV3{}},
				e(success, 2, 1, rmOld(0)),
			},
			"removeOld=0 is not an index into the 0 base resources",
		},
		{
			"operation IDs do not survive rebuilt base state",
			[]apitype.JournalEntry{
				e(success, 1, 1, st(bucket("d", "1"))),
				e(apitype.JournalEntryKindRebuiltBaseState, 2, 0),
				e(success, 3, 2, rmNew(1)),
			},
			"removeNew=1",
		},
		{
			"duplicate alias",
			[]apitype.JournalEntry{
				e(success, 1, 1, st(bucket("d", "1", func(r *apitype.ResourceV3) { r.Aliases = []resource.URN{urnOf("x")} }))),
				e(success, 2, 2, st(bucket("e", "1", func(r *apitype.ResourceV3) { r.Aliases = []resource.URN{urnOf("x")} }))),
			},
			"have the same alias",
		},
		{
			"malformed provider reference",
			[]apitype.JournalEntry{e(success, 1, 1, st(bucket("d", "1", func(r *apitype.ResourceV3) { r.Provider = "nope" })))},
			"malformed provider reference",
		},
		{
			"provider type the SDK would panic on",
			[]apitype.JournalEntry{e(success, 1, 1, st(bucket("d", "1", func(r *apitype.ResourceV3) {
				r.Provider = "urn:pulumi:s::p::pulumi:x::n::id"
			})))},
			"invalid provider type",
		},
		{
			"non-provider URN in provider reference",
			[]apitype.JournalEntry{e(success, 1, 1, st(bucket("d", "1", func(r *apitype.ResourceV3) {
				r.Provider = string(urnOf("x")) + "::id"
			})))},
			"invalid module",
		},
		{
			"aliased parent that is not a URN",
			[]apitype.JournalEntry{e(success, 1, 1, st(bucket("d", "1", func(r *apitype.ResourceV3) {
				r.Aliases = []resource.URN{"junk-parent"}
				r.URN = "junk"
			}))), e(success, 2, 2, st(bucket("e", "1", func(r *apitype.ResourceV3) { r.Parent = "junk-parent" })))},
			"is not a URN",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := Replay(base, tt.entries)
			if err == nil {
				res, _ := describe(d)
				t.Fatalf("expected error, got %q", res)
			}
			if !errors.Is(err, ErrBadJournal) {
				t.Fatalf("%v does not wrap ErrBadJournal", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestReplaySecretsManagerWithoutProviderIsNoop(t *testing.T) {
	t.Parallel()
	base := stdBase()
	d, err := Replay(base, []apitype.JournalEntry{{Kind: apitype.JournalEntryKindSecretsManager, SequenceID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d.SecretsProviders, base.SecretsProviders) {
		t.Fatalf("secrets provider = %+v", d.SecretsProviders)
	}
}

// TestReplayManyRebuiltBaseStates guards against a batch of rebuilt-base-state
// entries costing O(entries × resources).
func TestReplayManyRebuiltBaseStates(t *testing.T) {
	t.Parallel()
	base, entries := benchJournal(1000)
	want, err := Replay(base, append(slices.Clone(entries),
		apitype.JournalEntry{Kind: apitype.JournalEntryKindRebuiltBaseState, SequenceID: 1000}))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 20000 {
		entries = append(entries, apitype.JournalEntry{
			Kind: apitype.JournalEntryKindRebuiltBaseState, SequenceID: int64(1000 + i),
		})
	}
	got, err := Replay(base, entries)
	if err != nil {
		t.Fatal(err)
	}
	if marshal(t, got) != marshal(t, want) {
		t.Fatal("repeated rebuilt-base-state entries changed the result")
	}
}

// benchJournal returns a base of n resources and a 100-entry batch of the
// shape the CLI sends during an update: 10 updates, 10 creates, 10 deletes,
// 20 sames (2 entries per step).
func benchJournal(n int) (*apitype.DeploymentV3, []apitype.JournalEntry) {
	base := &apitype.DeploymentV3{
		SecretsProviders: &apitype.SecretsProvidersV1{Type: "service"},
		Resources:        make([]apitype.ResourceV3, 0, n+1),
	}
	base.Resources = append(base.Resources, provRes("1"))
	for i := range n {
		base.Resources = append(base.Resources, benchResource(i))
	}
	j := &jb{}
	idx := int64(1)
	for range 20 {
		j.same(idx, base.Resources[idx])
		idx++
	}
	for range 10 {
		r := base.Resources[idx]
		r.Inputs = maps.Clone(r.Inputs)
		r.Inputs["acl"] = "public-read"
		j.update(idx, r)
		idx++
	}
	for range 10 {
		j.delete(idx, base.Resources[idx])
		idx++
	}
	for i := range 10 {
		j.create(benchResource(n + i))
	}
	return base, j.entries()
}

func BenchmarkReplay(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		base, entries := benchJournal(n)
		if len(entries) != 100 {
			b.Fatalf("%d entries", len(entries))
		}
		b.Run(fmt.Sprintf("base=%d/entries=100", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Replay(base, entries); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// fuzzBase is a small base with a provider, parent/child, dependencies and
// aliases-relevant URNs so that fuzzed indices and references hit real data.
func fuzzBase() *apitype.DeploymentV3 {
	b := stdBase()
	b.Resources[4].Dependencies = []resource.URN{urnOf("b")}
	b.Resources[4].Parent = urnOf("a")
	b.PendingOperations = []apitype.OperationV2{{Type: apitype.OperationTypeCreating, Resource: bucket("x", "1")}}
	return b
}

// FuzzReplay decodes arbitrary JSON into journal entries and replays them:
// Replay must not panic, must not modify its inputs, must be deterministic,
// and must be insensitive to retried (duplicated) and reordered entries.
func FuzzReplay(f *testing.F) {
	for _, sc := range scenarios() {
		j := &jb{}
		sc.journal(j)
		b, err := json.Marshal(j.entries())
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`[{"kind":1,"sequenceID":1,"operationID":1,"deleteNew":0}]`))
	f.Add([]byte(`[{"kind":3,"sequenceID":1,"operationID":1,"removeNew":0,"state":{"urn":"x"}}]`))
	f.Add([]byte(`[{"kind":5,"sequenceID":1}]`))
	f.Add([]byte(`[{"kind":6,"sequenceID":1}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var entries []apitype.JournalEntry
		if err := json.Unmarshal(data, &entries); err != nil {
			return
		}
		base := fuzzBase()
		before, err := json.Marshal(struct {
			B *apitype.DeploymentV3
			E []apitype.JournalEntry
		}{base, entries})
		if err != nil {
			return
		}
		d1, err1 := Replay(base, entries)
		after, _ := json.Marshal(struct {
			B *apitype.DeploymentV3
			E []apitype.JournalEntry
		}{base, entries})
		if string(before) != string(after) {
			t.Fatal("inputs modified")
		}
		if err1 != nil {
			if !errors.Is(err1, ErrBadJournal) {
				t.Fatalf("error does not wrap ErrBadJournal: %v", err1)
			}
		} else if d1 == nil {
			t.Fatal("nil deployment without error")
		}

		again := slices.Concat(entries, entries)
		slices.Reverse(again)
		d2, err2 := Replay(fuzzBase(), again)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("duplicated+reversed journal: err %v vs %v", err1, err2)
		}
		if err1 == nil {
			j1, _ := json.Marshal(d1)
			j2, _ := json.Marshal(d2)
			if string(j1) != string(j2) {
				t.Fatalf("duplicated+reversed journal gave a different result:\n%s\n%s", j1, j2)
			}
		}
	})
}
