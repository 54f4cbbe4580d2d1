package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestKill9MidUpdate: an update is driven over the wire exactly as the CLI drives it; the
// server is killed with SIGKILL while checkpoints are streaming in, then restarted on the
// same data directory. Every acknowledged checkpoint must be there, the stack must still be
// locked by the interrupted update, `pulumi cancel` (its wire call) must release it, and a
// new update must run to completion. Once with full checkpoints (the default protocol) and
// once with the journaling protocol (--journal).
func TestKill9MidUpdate(t *testing.T) {
	bin := gatehouseBinary(t)
	t.Run("checkpoint", func(t *testing.T) { testKill9(t, bin, false) })
	t.Run("journal", func(t *testing.T) { testKill9(t, bin, true) })
}

const (
	crashOrg, crashProject, crashStack = "acme", "crash", "dev"
	ackedBeforeKill                    = 25 // acknowledged checkpoints (or journal batches) before the kill
)

func testKill9(t *testing.T, bin string, journal bool) {
	dataDir := t.TempDir()
	token := bootstrap(t, bin, dataDir, crashOrg, "alice")
	addr := freeAddr(t)
	var extra []string
	if journal {
		extra = append(extra, "--journal")
	}
	srv := startServer(t, bin, dataDir, addr, extra...)
	c := client(srv.URL, token)
	sp := "/api/stacks/" + crashOrg + "/" + crashProject + "/" + crashStack

	must(t, c.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/" + crashOrg + "/" + crashProject,
		Body: apitype.CreateStackRequest{StackName: crashStack}}, &json.RawMessage{}))

	// Update 1 runs to completion: the stack and two components.
	u1 := startUpdate(t, c, sp, journal)
	base := []apitype.ResourceV3{stackResource(), comp("base-0"), comp("base-1")}
	if journal {
		j := &journalWriter{}
		j.secrets()
		for _, r := range base {
			j.create(r)
		}
		must(t, u1.journal(j.take()))
	} else {
		must(t, u1.checkpoint(deployment(base)))
	}
	must(t, u1.events(0, 1, 2))
	must(t, u1.complete(apitype.UpdateStatusSucceeded))
	wantResources(t, exportDeployment(t, c, sp, ""), urnsOf(base), "export after update 1")
	v1 := exportDeployment(t, c, sp, "")

	// Update 2 is interrupted while writes stream in.
	u2 := startUpdate(t, c, sp, journal)
	if u2.Version != 2 {
		t.Fatalf("update 2 started as version %d", u2.Version)
	}
	j := &journalWriter{}
	if journal {
		// The engine's first entries: its secrets manager, then a "same" step per old resource.
		j.secrets()
		for i, r := range base {
			j.same(int64(i), r)
		}
		must(t, u2.journal(j.take()))
	}
	must(t, u2.events(0, 1))
	const total = 5000 // far more than the server ingests before the kill
	// stateAt(i) is what the CLI holds after i acknowledged writes of update 2.
	stateAt := func(i int) []apitype.ResourceV3 {
		rs := slices.Clone(base)
		for k := 0; k < i; k++ {
			rs = append(rs, comp(fmt.Sprintf("new-%d", k)))
		}
		return rs
	}
	var acked, sent atomic.Int64
	var streamErr error
	streamDone := make(chan struct{})
	go func() {
		defer close(streamDone)
		for i := 1; i <= total; i++ {
			sent.Store(int64(i))
			var err error
			if journal {
				j.create(comp(fmt.Sprintf("new-%d", i-1)))
				err = u2.journal(j.take())
			} else {
				err = u2.checkpoint(deployment(stateAt(i)))
			}
			if err != nil {
				streamErr = err
				return
			}
			acked.Store(int64(i))
		}
	}()
	deadline := time.Now().Add(3 * time.Minute)
	for acked.Load() < ackedBeforeKill {
		select {
		case <-streamDone:
			t.Fatalf("checkpoint stream ended before the kill: %v", streamErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d checkpoints acknowledged in 3 minutes", acked.Load())
		}
		time.Sleep(time.Millisecond)
	}
	srv.kill9()
	<-streamDone
	lastAcked, lastSent := int(acked.Load()), int(sent.Load())
	if streamErr == nil {
		t.Fatal("every checkpoint was acknowledged although the server was killed")
	}
	t.Logf("killed with %d writes acknowledged, %d sent (the last one failed with: %v)", lastAcked, lastSent, streamErr)

	// Restart on the same data directory and address: the URL the CLI holds.
	srv = startServer(t, bin, dataDir, addr, extra...)
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: "/readyz"}, nil))

	// The interrupted update still holds the stack (its lease has not run out)...
	var st apitype.Stack
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != u2.ID {
		t.Fatalf("after restart the stack's active update is %q, want the interrupted %q", st.ActiveUpdate, u2.ID)
	}
	if _, err := tryStartUpdate(c, sp, journal); cliwire.Status(err) != http.StatusConflict {
		t.Fatalf("a second update while the interrupted one holds the lease: want 409, got %v", err)
	}
	// ...and version 1 is exactly what update 1 left.
	if got := exportDeployment(t, c, sp, "1"); !jsonEqual(got, v1) {
		t.Fatalf("export/1 changed across the crash:\n got %s\nwant %s", got, v1)
	}

	// Every acknowledged write is intact. With full checkpoints the stored state is the last
	// acknowledged one, or the one in flight at the kill if it was committed but not answered.
	candidates := []int{lastAcked}
	if lastSent > lastAcked {
		candidates = append(candidates, lastSent)
	}
	if !journal {
		got := exportDeployment(t, c, sp, "")
		if n := matchState(got, stateAt, candidates, true); n < 0 {
			t.Fatalf("after the crash the stored state is none of the acknowledged or in-flight checkpoints %v:\n%s", candidates, got)
		} else {
			t.Logf("stored state after the crash = checkpoint %d (last acknowledged %d)", n, lastAcked)
		}
	} else {
		// A journaling update's state is rebuilt when it ends; until then export shows version 1.
		if got := exportDeployment(t, c, sp, ""); !jsonEqual(got, v1) {
			t.Fatalf("export during the interrupted journaling update = %s, want version 1", got)
		}
	}

	// The lease survived the restart (leases live in the store): the CLI may renew it.
	var renewed apitype.RenewUpdateLeaseResponse
	if err := u2.lease(http.MethodPost, "/renew_lease", apitype.RenewUpdateLeaseRequest{Duration: 300}, &renewed); err != nil {
		t.Fatalf("renewing the interrupted update's lease after the restart: %v", err)
	}

	// pulumi cancel: GET the stack for its active update, POST …/cancel with the access token.
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	must(t, c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + st.ActiveUpdate + "/cancel"}, nil))
	must(t, c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + st.ActiveUpdate + "/cancel"}, nil)) // the CLI retries it
	if err := u2.checkpoint(deployment(base)); cliwire.Status(err) != http.StatusForbidden {
		t.Fatalf("checkpoint with the cancelled update's lease: want 403, got %v", err)
	}
	st = apitype.Stack{}
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != "" {
		t.Fatalf("the stack is still locked after cancel: active update %q", st.ActiveUpdate)
	}

	// After the cancel the state still holds every acknowledged write.
	afterCancel := exportDeployment(t, c, sp, "")
	if n := matchState(afterCancel, stateAt, candidates, !journal); n < 0 {
		t.Fatalf("after cancel the state is none of the acknowledged or in-flight states %v:\n%s", candidates, afterCancel)
	} else {
		t.Logf("state after cancel has %d of %d sent resources (%d acknowledged)", n, lastSent, lastAcked)
	}
	var hist apitype.GetHistoryResponse
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: sp + "/updates?pageSize=10&page=1"}, &hist))
	if len(hist.Updates) != 2 || hist.Updates[0].Version != 2 || hist.Updates[0].Result != apitype.FailedResult ||
		hist.Updates[1].Version != 1 || hist.Updates[1].Result != apitype.SucceededResult {
		t.Fatalf("history after crash and cancel = %+v", hist.Updates)
	}

	// A new update runs to completion on top of it.
	u3 := startUpdate(t, c, sp, journal)
	if u3.Version != 3 {
		t.Fatalf("update after cancel started as version %d, want 3", u3.Version)
	}
	var prev apitype.DeploymentV3
	must(t, json.Unmarshal(afterCancel, &prev))
	final := append(slices.Clone(prev.Resources), comp("after-crash"))
	if journal {
		j := &journalWriter{}
		j.secrets()
		for i, r := range prev.Resources {
			j.same(int64(i), r)
		}
		j.create(comp("after-crash"))
		must(t, u3.journal(j.take()))
	} else {
		must(t, u3.checkpoint(deployment(final)))
	}
	must(t, u3.complete(apitype.UpdateStatusSucceeded))
	wantResources(t, exportDeployment(t, c, sp, ""), urnsOf(final), "export after the post-crash update")
	st = apitype.Stack{}
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: sp}, &st))
	if st.ActiveUpdate != "" || st.Version != 3 {
		t.Fatalf("stack after the post-crash update: active %q, version %d", st.ActiveUpdate, st.Version)
	}
}

// matchState returns the candidate i whose state stateAt(i) got holds, or -1. With exact,
// the stored document must be byte-for-byte (as JSON) the checkpoint the CLI sent; without,
// (a state rebuilt from a journal) its resources' URNs must be the same, in order.
func matchState(got json.RawMessage, stateAt func(int) []apitype.ResourceV3, candidates []int, exact bool) int {
	var d apitype.DeploymentV3
	if json.Unmarshal(got, &d) != nil {
		return -1
	}
	for _, i := range candidates {
		want := stateAt(i)
		if exact && jsonEqual(got, deployment(want)) || !exact && slices.Equal(urnsOf(d.Resources), urnsOf(want)) {
			return i
		}
	}
	return -1
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func client(url, token string) *cliwire.Client {
	c := cliwire.New(url, token)
	c.HTTP = &http.Client{Timeout: 60 * time.Second}
	return c
}

// wireUpdate is one update as the CLI drives it, holding its lease token.
type wireUpdate struct {
	c       *cliwire.Client
	path    string // stack path
	ID      string
	Lease   string
	Version int
	Journal bool
}

func tryStartUpdate(c *cliwire.Client, sp string, journal bool) (*wireUpdate, error) {
	prog := apitype.UpdateProgramRequest{
		Name: crashProject, Runtime: "nodejs", Main: "", Description: "kill -9 test",
		Options:  apitype.UpdateOptions{},
		Config:   map[string]apitype.ConfigValue{},
		Metadata: apitype.UpdateMetadata{Message: "kill -9 test", Environment: map[string]string{"exec.kind": "cli"}},
	}
	var created apitype.UpdateProgramResponse
	if err := c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update", Body: prog}, &created); err != nil {
		return nil, err
	}
	req := apitype.StartUpdateRequest{Tags: map[apitype.StackTagName]string{"pulumi:project": crashProject, "pulumi:runtime": "nodejs"}}
	if journal {
		req.JournalVersion = 1
	}
	var started apitype.StartUpdateResponse
	if err := c.Do(cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + created.UpdateID, Body: req}, &started); err != nil {
		return nil, err
	}
	if started.Token == "" {
		return nil, errors.New("start update returned no lease token")
	}
	if got := started.JournalVersion >= 1; got != journal {
		return nil, fmt.Errorf("start update negotiated journalVersion %d, want journaling=%v", started.JournalVersion, journal)
	}
	return &wireUpdate{c: c, path: sp, ID: created.UpdateID, Lease: started.Token, Version: started.Version, Journal: journal}, nil
}

func startUpdate(t *testing.T, c *cliwire.Client, sp string, journal bool) *wireUpdate {
	t.Helper()
	u, err := tryStartUpdate(c, sp, journal)
	if err != nil {
		t.Fatalf("start update: %v", err)
	}
	return u
}

// lease calls an update route with the lease token; bodies are gzip-compressed as the CLI
// compresses them (all but complete and renew_lease).
func (u *wireUpdate) lease(method, suffix string, body, out any) error {
	gz := body != nil && suffix != "/complete" && suffix != "/renew_lease"
	return u.c.Do(cliwire.Call{Method: method, Path: u.path + "/update/" + u.ID + suffix, LeaseToken: u.Lease, Body: body, Gzip: gz}, out)
}

func (u *wireUpdate) checkpoint(dep json.RawMessage) error {
	return u.lease(http.MethodPatch, "/checkpoint", apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: dep}, nil)
}

func (u *wireUpdate) journal(entries []apitype.JournalEntry) error {
	return u.lease(http.MethodPatch, "/journalentries", apitype.JournalEntries{Entries: entries}, nil)
}

func (u *wireUpdate) events(seqs ...int) error {
	evs := make([]apitype.EngineEvent, 0, len(seqs))
	for _, s := range seqs {
		evs = append(evs, apitype.EngineEvent{Sequence: s, Timestamp: int(time.Now().Unix()),
			StdoutEvent: &apitype.StdoutEngineEvent{Message: "working", Color: "never"}})
	}
	return u.lease(http.MethodPost, "/events/batch", apitype.EngineEventBatch{Events: evs}, nil)
}

func (u *wireUpdate) complete(status apitype.UpdateStatus) error {
	return u.lease(http.MethodPost, "/complete", apitype.CompleteUpdateRequest{Status: status}, nil)
}

// journalWriter numbers journal entries the way the engine's journaler does: sequence and
// operation IDs count from 1.
type journalWriter struct {
	seq, op int64
	pending []apitype.JournalEntry
}

func (j *journalWriter) add(e apitype.JournalEntry) {
	j.seq++
	e.Version = 1
	e.SequenceID = j.seq
	j.pending = append(j.pending, e)
}

func (j *journalWriter) take() []apitype.JournalEntry {
	out := j.pending
	j.pending = nil
	return out
}

func (j *journalWriter) secrets() {
	j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindSecretsManager, SecretsProvider: secretsProvider(crashStack)})
}

func (j *journalWriter) create(r apitype.ResourceV3) {
	j.op++
	j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindBegin, OperationID: j.op,
		Operation: &apitype.OperationV2{Resource: r, Type: apitype.OperationTypeCreating}})
	st := r
	j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindSuccess, OperationID: j.op, State: &st})
}

// same is the engine's same step: an old resource (at index old of the base) carried over.
func (j *journalWriter) same(old int64, r apitype.ResourceV3) {
	j.op++
	j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindBegin, OperationID: j.op})
	st := r
	j.add(apitype.JournalEntry{Kind: apitype.JournalEntryKindSuccess, OperationID: j.op, State: &st, RemoveOld: &old})
}

const stackURN = resource.URN("urn:pulumi:" + crashStack + "::" + crashProject + "::pulumi:pulumi:Stack::" + crashProject + "-" + crashStack)

func stackResource() apitype.ResourceV3 {
	return apitype.ResourceV3{URN: stackURN, Type: "pulumi:pulumi:Stack", Outputs: map[string]any{}}
}

func comp(name string) apitype.ResourceV3 {
	return apitype.ResourceV3{
		URN:     resource.URN("urn:pulumi:" + crashStack + "::" + crashProject + "::e2e:index:Comp::" + name),
		Type:    "e2e:index:Comp",
		Parent:  stackURN,
		Outputs: map[string]any{"name": name},
	}
}

func secretsProvider(stack string) *apitype.SecretsProvidersV1 {
	state, _ := json.Marshal(map[string]string{"url": "http://gatehouse", "owner": crashOrg, "project": crashProject, "stack": stack})
	return &apitype.SecretsProvidersV1{Type: "service", State: state}
}

// deployment is the v3 deployment the CLI would checkpoint holding rs, for crashStack.
func deployment(rs []apitype.ResourceV3) json.RawMessage {
	return deploymentOf(crashStack, rs)
}

// deploymentOf is deployment for the stack named stack of crashProject (its own service
// secrets manager: a state naming another stack's is refused).
func deploymentOf(stack string, rs []apitype.ResourceV3) json.RawMessage {
	d := apitype.DeploymentV3{
		Manifest:         apitype.ManifestV1{Time: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), Magic: "e2e", Version: "v3.260.0"},
		SecretsProviders: secretsProvider(stack),
		Resources:        rs,
	}
	b, err := json.Marshal(d)
	if err != nil {
		panic(err)
	}
	return b
}

func urnsOf(rs []apitype.ResourceV3) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r.URN)
	}
	return out
}

// exportDeployment is `pulumi stack export [--version v]`: the deployment of the document.
func exportDeployment(t *testing.T, c *cliwire.Client, sp, version string) json.RawMessage {
	t.Helper()
	path := sp + "/export"
	if version != "" {
		path += "/" + version
	}
	var doc apitype.UntypedDeployment
	must(t, c.Do(cliwire.Call{Method: http.MethodGet, Path: path}, &doc))
	if doc.Version != 3 {
		t.Fatalf("export %s: version %d", path, doc.Version)
	}
	return doc.Deployment
}

func wantResources(t *testing.T, dep json.RawMessage, want []string, what string) {
	t.Helper()
	var d apitype.DeploymentV3
	must(t, json.Unmarshal(dep, &d))
	if got := urnsOf(d.Resources); !slices.Equal(got, want) {
		t.Fatalf("%s: resources\n got %v\nwant %v", what, got, want)
	}
}

func jsonEqual(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}
