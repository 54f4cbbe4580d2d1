package httpapi_test

import (
	"bufio"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/delayproxy"
	"github.com/gatehouse-dev/gatehouse/protocol"
)

// startJournaling starts a real run of kind on path as a CLI that offers journaling, with
// extra headers; it returns the run and the journal version the server granted.
func (e *env) startJournaling(c *cliwire.Client, path, kind string, h http.Header) (*run, int64) {
	e.t.Helper()
	var cr apitype.UpdateProgramResponse
	e.must(c.Do(cliwire.Call{Method: "POST", Path: path + "/" + kind, Body: apitype.UpdateProgramRequest{Name: "proj"}, Header: h}, &cr))
	var sr apitype.StartUpdateResponse
	e.must(c.Do(cliwire.Call{Method: "POST", Path: path + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}, Header: h}, &sr))
	return &run{e: e, c: c, path: path, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}, sr.JournalVersion
}

// latestProtocol is the gatehouseProtocol of the stack's newest update record.
func (e *env) latestProtocol(path string) *gatehouse.UpdateProtocol {
	e.t.Helper()
	var u struct {
		Protocol *gatehouse.UpdateProtocol `json:"gatehouseProtocol"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: path + "/updates/latest"}, &u))
	if u.Protocol == nil {
		e.t.Fatal("the update's record has no gatehouseProtocol")
	}
	return u.Protocol
}

// metric returns the value of one sample line of /metrics ("" when absent).
func (e *env) metric(prefix string) string {
	e.t.Helper()
	resp, err := http.Get(e.url + "/metrics")
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix+" ") {
			return strings.TrimPrefix(sc.Text(), prefix+" ")
		}
	}
	return ""
}

// parallelEvents posts engine events of n steps of which up to k run at once.
func (r *run) parallelEvents(n, k int) error {
	var evs []apitype.EngineEvent
	seq := 0
	add := func(e apitype.EngineEvent) { e.Sequence = seq; e.Timestamp = 1; seq++; evs = append(evs, e) }
	urn := func(i int) string { return "urn:pulumi:dev::proj::bench:index:Comp::c" + itoa(i) }
	for i := 0; i < n; i++ {
		add(apitype.EngineEvent{ResourcePreEvent: &apitype.ResourcePreEvent{Metadata: apitype.StepEventMetadata{Op: "create", URN: urn(i)}}})
		if i >= k-1 {
			add(apitype.EngineEvent{ResOutputsEvent: &apitype.ResOutputsEvent{Metadata: apitype.StepEventMetadata{Op: "create", URN: urn(i - k + 1)}}})
		}
	}
	return r.lease(http.MethodPost, "/events/batch", apitype.EngineEventBatch{Events: evs}, nil)
}

// TestProtocolChoiceLearns: the first update of a new stack uses full checkpoints; what its
// engine events show (ten steps in flight) is learned, and the next update journals; a
// sequential update brings the stack back to checkpoints. Each choice is in the update's
// record, the start's audit event and gatehouse_update_protocol_total; --journal=off and
// =on still force.
func TestProtocolChoiceLearns(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	up, jv := e.startJournaling(e.admin, p, "update", nil)
	if jv != 0 {
		t.Fatalf("first update of a new stack: journalVersion %d, want 0", jv)
	}
	if got := e.latestProtocol(p); got.Protocol != "checkpoint" || got.Reason != "new_stack" || got.RTTSource != "unknown" {
		t.Fatalf("first update's record: %+v", got)
	}
	e.must(up.parallelEvents(40, 10))
	e.must(up.checkpoint(deployment(3, "")))
	e.must(up.complete("succeeded"))

	up, jv = e.startJournaling(e.admin, p, "update", nil)
	if jv != 1 {
		t.Fatalf("update of a stack with parallel programs: journalVersion %d, want 1", jv)
	}
	got := e.latestProtocol(p)
	if got.Protocol != "journal" || got.Reason != "faster_journal" || got.Parallelism < 8 {
		t.Fatalf("second update's record: %+v", got)
	}
	e.must(up.parallelEvents(40, 1)) // the program became sequential
	e.must(up.complete("succeeded"))
	third, jv := e.startJournaling(e.admin, p, "update", nil)
	if got := e.latestProtocol(p); jv != 0 || got.Reason != "faster_checkpoints" || got.Parallelism != 1 {
		t.Fatalf("after a sequential update: journalVersion %d, record %+v", jv, got)
	}
	if v := e.metric(`gatehouse_update_protocol_total{protocol="journal",reason="faster_journal"}`); v != "1" {
		t.Errorf("gatehouse_update_protocol_total journal/faster_journal = %q, want 1", v)
	}
	if v := e.metric(`gatehouse_update_protocol_total{protocol="checkpoint",reason="new_stack"}`); v != "1" {
		t.Errorf("gatehouse_update_protocol_total checkpoint/new_stack = %q, want 1", v)
	}
	evs, err := listAudit(e)
	e.must(err)
	found := false
	for _, ev := range evs {
		if ev.Details["protocol"] == "journal" && ev.Details["protocol_reason"] == "faster_journal" {
			found = true
		}
	}
	if !found {
		t.Error("no audit event of an update start with the protocol and its reason")
	}

	// The overrides.
	for mode, want := range map[httpapi.JournalMode]int64{httpapi.JournalOff: 0, httpapi.JournalOn: 1} {
		f := e.clone(t, func(c *httpapi.Config) { c.Journal = mode })
		f.must(f.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + third.ID + "/cancel"}, nil)) // the clone's copy of the running update
		_, jv := f.startJournaling(f.admin, p, "update", nil)
		if got := f.latestProtocol(p); jv != want || !strings.HasPrefix(got.Reason, "forced_") {
			t.Errorf("--journal=%s: journalVersion %d, record %+v", mode, jv, got)
		}
	}
}

// TestProtocolChoiceBehindProxy: a trusted reverse proxy's X-Client-RTT is the client's round
// trip; from any other peer the header is ignored. A stack whose programs run about two
// steps at once journals at 80 ms and uses checkpoints at the 20 ms assumed when the round
// trip is unknown.
func TestProtocolChoiceBehindProxy(t *testing.T) {
	for _, c := range []struct {
		name    string
		trusted string
		want    int64
		source  string
	}{
		{"trusted proxy", "127.0.0.1", 1, "proxy_header"},
		{"untrusted peer", "10.0.0.0/8", 0, "unknown"},
	} {
		t.Run(c.name, func(t *testing.T) {
			nets, err := httpapi.ParseTrustedProxies(c.trusted)
			if err != nil {
				t.Fatal(err)
			}
			e := newEnv(t, func(cfg *httpapi.Config) { cfg.TrustedProxies = nets })
			p := stackPath("acme", "proj", "dev")
			e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
			e.must(e.srv.Store.Update(t.Context(), func(tx gatehouse.Tx) error {
				org, err := tx.GetOrgByName("acme")
				if err != nil {
					return err
				}
				s, err := tx.GetStack(org.ID, "proj", "dev")
				if err != nil {
					return err
				}
				return tx.PutProtocolProfile(s.ID, &gatehouse.ProtocolProfile{Updates: 4, Parallelism: 2, Source: "journal_batches"})
			}))
			h := http.Header{"X-Client-Rtt": {"80000"}, "X-Forwarded-For": {"203.0.113.9"}}
			_, jv := e.startJournaling(e.admin, p, "update", h)
			got := e.latestProtocol(p)
			if jv != c.want || got.RTTSource != c.source {
				t.Fatalf("journalVersion %d, record %+v; want %d from %s", jv, got, c.want, c.source)
			}
			if c.source == "proxy_header" && got.RTTMicros != 80000 {
				t.Errorf("rttMicros %d, want 80000", got.RTTMicros)
			}
		})
	}
}

// TestProtocolRTTMeasured: with the server's ConnContext, a direct client's round trip is
// measured: about nothing on loopback, and the added delay through a delay proxy (which the
// kernel's estimate of the loopback connection cannot see, but request timing does).
func TestProtocolRTTMeasured(t *testing.T) {
	e := newEnv(t)
	hs := httptest.NewUnstartedServer(e.srv.Handler)
	hs.Config.ConnContext = httpapi.ConnContext
	hs.Start()
	defer hs.Close()
	proxy := &delayproxy.Proxy{Target: strings.TrimPrefix(hs.URL, "http://"), Up: 20 * time.Millisecond, Down: 20 * time.Millisecond}
	e.must(proxy.Start("127.0.0.1:0"))
	defer proxy.Close()
	for i, c := range []struct {
		url      string
		min, max time.Duration
	}{
		{hs.URL, 0, 20 * time.Millisecond},
		{"http://" + proxy.Addr(), 40 * time.Millisecond, 400 * time.Millisecond},
	} {
		cl := cliwire.New(c.url, e.admin.Token)
		cl.HTTP = &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{}).DialContext}}
		name := "s" + itoa(i)
		p := stackPath("acme", "proj", name)
		e.must(e.createStack(cl, "acme", "proj", name, nil))
		e.must(cl.Do(cliwire.Call{Method: "GET", Path: p}, nil))
		e.startJournaling(cl, p, "update", nil)
		got := e.latestProtocol(p)
		rtt := time.Duration(got.RTTMicros) * time.Microsecond
		if rtt < c.min || rtt > c.max || got.RTTSource == "unknown" {
			t.Errorf("%s: measured %s from %s, want %s to %s", c.url, rtt, got.RTTSource, c.min, c.max)
		}
		if i == 1 && got.RTTSource != "request_timing" {
			t.Errorf("through the delay proxy: source %s, want request_timing", got.RTTSource)
		}
	}
}

// TestProtocolRTTFreshConnection: a start on a fresh connection (no gap of its own) uses
// the gaps the same peer showed on its other connections.
func TestProtocolRTTFreshConnection(t *testing.T) {
	e := newEnv(t)
	hs := httptest.NewUnstartedServer(e.srv.Handler)
	hs.Config.ConnContext = httpapi.ConnContext
	hs.Start()
	defer hs.Close()
	proxy := &delayproxy.Proxy{Target: strings.TrimPrefix(hs.URL, "http://"), Up: 20 * time.Millisecond, Down: 20 * time.Millisecond}
	e.must(proxy.Start("127.0.0.1:0"))
	defer proxy.Close()
	warm := cliwire.New("http://"+proxy.Addr(), e.admin.Token)
	warm.HTTP = &http.Client{Transport: &http.Transport{}}
	p := stackPath("acme", "proj", "fresh")
	e.must(e.createStack(warm, "acme", "proj", "fresh", nil))
	e.must(warm.Do(cliwire.Call{Method: "GET", Path: p}, nil))
	var cr apitype.UpdateProgramResponse
	e.must(warm.Do(cliwire.Call{Method: "POST", Path: p + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	fresh := cliwire.New("http://"+proxy.Addr(), e.admin.Token)
	fresh.HTTP = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	e.must(fresh.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, nil))
	got := e.latestProtocol(p)
	if rtt := time.Duration(got.RTTMicros) * time.Microsecond; got.RTTSource != "request_timing" || rtt < 40*time.Millisecond || rtt > 400*time.Millisecond {
		t.Errorf("start on a fresh connection: %s from %s, want about 40ms from request_timing", rtt, got.RTTSource)
	}
}

// TestProtocolClientBatchPeriod: a CLI that sets its own journaling batch period (its
// update metadata names PULUMI_JOURNALING_BATCH_PERIOD, never the value) has its stack's
// first update journaled to learn the period from the gaps between its batches; the next
// update uses the learned period (journaling, which with a short period is faster than
// checkpoints even on loopback), and shows it in its record. A CLI that does not set it
// keeps the default 50 ms, whatever was learned.
func TestProtocolClientBatchPeriod(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	start := func(setPeriod bool) (*run, int64) {
		req := apitype.UpdateProgramRequest{Name: "proj"}
		if setPeriod {
			req.Metadata.Environment = map[string]string{"pulumi.version": "v3.260.0", "pulumi.env.PULUMI_JOURNALING_BATCH_PERIOD": "set"}
		}
		var cr apitype.UpdateProgramResponse
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update", Body: req}, &cr))
		var sr apitype.StartUpdateResponse
		e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
		return &run{e: e, c: e.admin, path: p, ID: cr.UpdateID, Lease: sr.Token, Version: sr.Version}, sr.JournalVersion
	}
	// The first update of a stack whose CLI sets its period: journaled, to learn it.
	up, jv := start(true)
	got := e.latestProtocol(p)
	if jv != 1 || got.Reason != "learn_batch_period" || !got.ClientBatchPeriod || got.BatchPeriodMicros != 0 {
		t.Fatalf("first update: journalVersion %d, record %+v", jv, got)
	}
	// Its CLI sends a batch every ~3 ms: one resource created per batch.
	const gap = 3 * time.Millisecond
	for i := int64(0); i < 8; i++ {
		if i > 0 {
			time.Sleep(gap)
		}
		st := apitype.ResourceV3{URN: resource.URN("urn:pulumi:dev::proj::bench:index:Comp::c" + itoa(int(i))), Type: "bench:index:Comp"}
		entry := apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindSuccess, SequenceID: i + 1, OperationID: i + 1, State: &st}
		e.must(up.lease("PATCH", "/journalentries", map[string]any{"entries": []apitype.JournalEntry{entry}}, nil))
	}
	e.must(up.complete("succeeded"))

	// The next update uses the learned period: at least the gap (the test client's own time
	// per request adds to it, more under the race detector) and below the default 50 ms,
	// and the protocol the model predicts with it.
	up, jv = start(true)
	got = e.latestProtocol(p)
	learned := time.Duration(got.BatchPeriodMicros) * time.Microsecond
	want := protocol.Choose(protocol.Input{Mode: protocol.Auto, ClientJournal: true, BatchPeriodSet: true,
		Network: protocol.Network{Source: got.RTTSource, RTT: got.RTT},
		Shape:   protocol.Shape{Updates: 1, Parallelism: 1, Resources: 8, BatchPeriod: learned}})
	if !got.ClientBatchPeriod || learned < gap || learned >= protocol.BatchPeriod || got.Reason != want.Reason || jv != map[protocol.Protocol]int64{protocol.Journal: 1}[want.Protocol] {
		t.Fatalf("second update: journalVersion %d, record %+v (learned period %s), want %s", jv, got, learned, want)
	}
	e.must(up.complete("succeeded"))
	// With a 1 ms period a sequential program of 200 resources journals even next to its
	// server (stock CLI, README: 4.2 s journaled against 5.5 s with checkpoints).
	if d := protocol.Choose(protocol.Input{Mode: protocol.Auto, ClientJournal: true, BatchPeriodSet: true,
		Network: protocol.Network{Source: protocol.RTTKernel, RTT: 50 * time.Microsecond},
		Shape:   protocol.Shape{Updates: 2, Parallelism: 1, Resources: 200, BatchPeriod: time.Millisecond}}); d.Protocol != protocol.Journal {
		t.Errorf("a 1 ms period on loopback: %s", d)
	}

	// A CLI without the setting: the default period, checkpoints for this small sequential
	// program next to its server (the stack's parallelism learned as 1 from its batches).
	_, jv = start(false)
	got = e.latestProtocol(p)
	if jv != 0 || got.ClientBatchPeriod || got.BatchPeriodMicros != 50_000 || got.Reason != "faster_checkpoints" {
		t.Fatalf("update without the setting: journalVersion %d, record %+v", jv, got)
	}
	if v := e.metric(`gatehouse_update_protocol_total{protocol="journal",reason="learn_batch_period"}`); v != "1" {
		t.Errorf("gatehouse_update_protocol_total journal/learn_batch_period = %q, want 1", v)
	}
}
