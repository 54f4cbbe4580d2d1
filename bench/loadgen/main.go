// Command loadgen is a bounded load generator for Gatehouse: C concurrent CI-like clients,
// each running full update lifecycles through the wire protocol exactly as the pulumi CLI
// drives them (create stack, create update, start, engine-event batches and K full
// checkpoints of a growing N-resource deployment, gzip-compressed, complete, export),
// against a list of server URLs, one request after another round-robin over the servers
// (a load balancer without affinity). Every client runs a fixed number of lifecycles, and
// the whole run stops at a hard time limit. It reports throughput (lifecycles/s and
// requests/s) and p50/p99 latency per call kind.
//
//	go run ./bench/loadgen -urls http://127.0.0.1:8080,http://127.0.0.1:8081 -token "$TOKEN" \
//	    -c 16 -n 20 -resources 200 -checkpoints 10
//
// bench/load.sh starts the servers (PostgreSQL with two processes, or SQLite with one) and
// runs it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// Call kinds, in lifecycle order.
var kinds = []string{"create-stack", "create-update", "start-update", "events", "checkpoint", "journalentries", "complete", "export"}

type config struct {
	urls        []string
	token       string
	org         string
	project     string
	clients     int
	lifecycles  int
	resources   int
	checkpoints int
	journal     bool
	timeLimit   time.Duration
	reqTimeout  time.Duration
	label       string
	asJSON      bool
}

func main() {
	var cfg config
	var urls string
	flag.StringVar(&urls, "urls", "http://127.0.0.1:8080", "comma-separated server URLs, used round-robin per request")
	flag.StringVar(&cfg.token, "token", os.Getenv("GATEHOUSE_TOKEN"), "access token (env GATEHOUSE_TOKEN)")
	flag.StringVar(&cfg.org, "org", "acme", "organization")
	flag.StringVar(&cfg.project, "project", "loadgen", "project of the stacks created")
	flag.IntVar(&cfg.clients, "c", 16, "concurrent clients")
	flag.IntVar(&cfg.lifecycles, "n", 20, "update lifecycles per client")
	flag.IntVar(&cfg.resources, "resources", 200, "resources in the final deployment (N)")
	flag.IntVar(&cfg.checkpoints, "checkpoints", 10, "checkpoints per update (K)")
	flag.BoolVar(&cfg.journal, "journal", false, "ask for the journaling protocol and send journal entries (a begin and a success per resource, in batches of 100) instead of checkpoints; the server must grant it (serve --journal=on)")
	flag.DurationVar(&cfg.timeLimit, "time-limit", 10*time.Minute, "hard limit of the whole run")
	flag.DurationVar(&cfg.reqTimeout, "request-timeout", time.Minute, "limit of one request")
	flag.StringVar(&cfg.label, "label", "", "a label printed with the results")
	flag.BoolVar(&cfg.asJSON, "json", false, "print the results as JSON")
	flag.Parse()
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			cfg.urls = append(cfg.urls, strings.TrimRight(u, "/"))
		}
	}
	if len(cfg.urls) == 0 || cfg.token == "" || cfg.clients < 1 || cfg.lifecycles < 1 || cfg.resources < 2 || cfg.checkpoints < 1 {
		fmt.Fprintln(os.Stderr, "loadgen: need -urls, -token (or GATEHOUSE_TOKEN), -c >= 1, -n >= 1, -resources >= 2, -checkpoints >= 1")
		os.Exit(2)
	}
	res := run(cfg)
	if cfg.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(res)
	} else {
		res.print(os.Stdout)
	}
	if res.Failed > 0 || res.Unfinished > 0 {
		os.Exit(1)
	}
}

// recorder collects one client's latencies per call kind.
type recorder struct {
	lat    map[string][]time.Duration
	errs   map[string]int
	sample []string
}

func newRecorder() *recorder {
	return &recorder{lat: map[string][]time.Duration{}, errs: map[string]int{}}
}

// runner is one client: its own stacks, the servers shared.
type runner struct {
	cfg     *config
	clients []*cliwire.Client
	next    *atomic.Uint64 // round-robin position, shared by every client
	rec     *recorder
	ctx     context.Context
}

var errTimeLimit = errors.New("time limit reached")

// do performs one call on the next server and records its latency.
func (r *runner) do(kind string, c cliwire.Call, out any) error {
	if r.ctx.Err() != nil {
		return errTimeLimit
	}
	cl := r.clients[int(r.next.Add(1)-1)%len(r.clients)]
	start := time.Now()
	err := cl.Do(c, out)
	d := time.Since(start)
	if err != nil {
		r.rec.errs[kind]++
		if len(r.rec.sample) < 5 {
			r.rec.sample = append(r.rec.sample, fmt.Sprintf("%s %s %s: %v", kind, cl.BaseURL, c.Path, err))
		}
		return err
	}
	r.rec.lat[kind] = append(r.rec.lat[kind], d)
	return nil
}

// lifecycle runs one stack's update from creation to export, as the CLI does it.
func (r *runner) lifecycle(stack string) error {
	cfg := r.cfg
	sp := "/api/stacks/" + cfg.org + "/" + cfg.project + "/" + stack
	tags := map[apitype.StackTagName]string{"pulumi:project": cfg.project, "pulumi:runtime": "nodejs", "env": "load"}
	if err := r.do("create-stack", cliwire.Call{Method: http.MethodPost, Path: "/api/stacks/" + cfg.org + "/" + cfg.project,
		Body: apitype.CreateStackRequest{StackName: stack, Tags: tags}}, &json.RawMessage{}); err != nil {
		return err
	}
	prog := apitype.UpdateProgramRequest{
		Name: cfg.project, Runtime: "nodejs", Main: "", Description: "load test",
		Options:  apitype.UpdateOptions{Color: "never"},
		Config:   map[string]apitype.ConfigValue{cfg.project + ":region": {String: "eu-west-1"}},
		Metadata: apitype.UpdateMetadata{Message: "loadgen", Environment: map[string]string{"exec.kind": "cli", "ci.system": "loadgen"}},
	}
	var created apitype.UpdateProgramResponse
	if err := r.do("create-update", cliwire.Call{Method: http.MethodPost, Path: sp + "/update", Body: prog}, &created); err != nil {
		return err
	}
	var started apitype.StartUpdateResponse
	start := apitype.StartUpdateRequest{Tags: tags}
	if cfg.journal {
		start.JournalVersion = 1
	}
	if err := r.do("start-update", cliwire.Call{Method: http.MethodPost, Path: sp + "/update/" + created.UpdateID,
		Body: start}, &started); err != nil {
		return err
	}
	if cfg.journal && started.JournalVersion != 1 {
		return fmt.Errorf("the server did not grant journaling (journalVersion %d): run it with --journal=on", started.JournalVersion)
	}
	up := sp + "/update/" + created.UpdateID
	lease := func(kind, method, suffix string, body any) error {
		return r.do(kind, cliwire.Call{Method: method, Path: up + suffix, LeaseToken: started.Token, Body: body,
			Gzip: suffix != "/complete"}, nil)
	}
	seq := 0
	events := func(n int, summary bool) error {
		evs := make([]apitype.EngineEvent, 0, n+1)
		for range n {
			evs = append(evs, apitype.EngineEvent{Sequence: seq, Timestamp: int(time.Now().Unix()),
				DiagnosticEvent: &apitype.DiagnosticEvent{Message: "creating resource", Color: "never", Severity: "info"}})
			seq++
		}
		if summary {
			evs = append(evs, apitype.EngineEvent{Sequence: seq, Timestamp: int(time.Now().Unix()),
				SummaryEvent: &apitype.SummaryEvent{ResourceChanges: map[apitype.OpType]int{"create": cfg.resources}}})
			seq++
		}
		return lease("events", http.MethodPost, "/events/batch", apitype.EngineEventBatch{Events: evs})
	}
	if cfg.journal {
		// A begin and a success entry per resource, as the CLI journals a create, sent in
		// the CLI's batches of 100.
		rs := resources(cfg.project, stack, cfg.resources)
		entries := make([]apitype.JournalEntry, 0, 2*len(rs))
		for i := range rs {
			op := int64(i + 1)
			entries = append(entries,
				apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindBegin, OperationID: op,
					Operation: &apitype.OperationV2{Resource: rs[i], Type: apitype.OperationTypeCreating}},
				apitype.JournalEntry{Version: 1, Kind: apitype.JournalEntryKindSuccess, OperationID: op, State: &rs[i]})
		}
		for i := range entries {
			entries[i].SequenceID = int64(i + 1)
		}
		for b := 0; len(entries) > 0; b++ {
			n := min(100, len(entries))
			if b%10 == 0 {
				if err := events(20, false); err != nil {
					return err
				}
			}
			if err := lease("journalentries", http.MethodPatch, "/journalentries", map[string]any{"entries": entries[:n]}); err != nil {
				return err
			}
			entries = entries[n:]
		}
	}
	for k := 1; k <= cfg.checkpoints && !cfg.journal; k++ {
		n := max(1, cfg.resources*k/cfg.checkpoints)
		if err := events(2*cfg.resources/cfg.checkpoints, false); err != nil {
			return err
		}
		dep, err := deployment(cfg.project, stack, n)
		if err != nil {
			return err
		}
		if err := lease("checkpoint", http.MethodPatch, "/checkpoint", apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: dep}); err != nil {
			return err
		}
	}
	if err := events(0, true); err != nil {
		return err
	}
	if err := lease("complete", http.MethodPost, "/complete", apitype.CompleteUpdateRequest{Status: apitype.UpdateStatusSucceeded}); err != nil {
		return err
	}
	var doc apitype.UntypedDeployment
	if err := r.do("export", cliwire.Call{Method: http.MethodGet, Path: sp + "/export"}, &doc); err != nil {
		return err
	}
	var d apitype.DeploymentV3
	if err := json.Unmarshal(doc.Deployment, &d); err != nil || len(d.Resources) != cfg.resources {
		r.rec.errs["export"]++
		return fmt.Errorf("export of %s: %d resources, want %d (%v)", stack, len(d.Resources), cfg.resources, err)
	}
	return nil
}

// deployment is the checkpoint of a stack holding n resources: the stack and n-1 cloud
// resources with inputs and outputs of a realistic size (about 600 bytes each as JSON).
func deployment(project, stack string, n int) (json.RawMessage, error) {
	return json.Marshal(apitype.DeploymentV3{
		Manifest:  apitype.ManifestV1{Time: time.Now().UTC(), Magic: "loadgen", Version: "v3.260.0"},
		Resources: resources(project, stack, n),
	})
}

// resources are the n resources of deployment.
func resources(project, stack string, n int) []apitype.ResourceV3 {
	stackURN := resource.URN("urn:pulumi:" + stack + "::" + project + "::pulumi:pulumi:Stack::" + project + "-" + stack)
	provURN := resource.URN("urn:pulumi:" + stack + "::" + project + "::pulumi:providers:aws::default_6_0_0")
	rs := make([]apitype.ResourceV3, 0, n)
	rs = append(rs, apitype.ResourceV3{URN: stackURN, Type: "pulumi:pulumi:Stack", Outputs: map[string]any{"count": n - 1}})
	for i := 1; i < n; i++ {
		name := fmt.Sprintf("bucket-%04d", i)
		inputs := map[string]any{"bucket": name, "acl": "private", "forceDestroy": false,
			"tags": map[string]any{"env": "load", "team": "platform", "index": fmt.Sprint(i)}}
		outputs := map[string]any{"bucket": name, "acl": "private", "arn": "arn:aws:s3:::" + name,
			"id": name, "region": "eu-west-1", "bucketDomainName": name + ".s3.amazonaws.com",
			"tags": map[string]any{"env": "load", "team": "platform", "index": fmt.Sprint(i)}}
		rs = append(rs, apitype.ResourceV3{
			URN: resource.URN("urn:pulumi:" + stack + "::" + project + "::aws:s3/bucket:Bucket::" + name), Custom: true,
			ID: resource.ID(name), Type: "aws:s3/bucket:Bucket", Inputs: inputs, Outputs: outputs, Parent: stackURN,
			Provider: string(provURN) + "::04da6b54-80e4-46f7-96ec-b56ff0331ba9",
		})
	}
	return rs
}

// Stat is one call kind's figures.
type Stat struct {
	Kind   string  `json:"kind"`
	Count  int     `json:"count"`
	Errors int     `json:"errors"`
	P50ms  float64 `json:"p50_ms"`
	P99ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
}

// Result is the run's outcome.
type Result struct {
	Label          string   `json:"label,omitempty"`
	Servers        []string `json:"servers"`
	Clients        int      `json:"clients"`
	PerClient      int      `json:"lifecycles_per_client"`
	Resources      int      `json:"resources"`
	Checkpoints    int      `json:"checkpoints"`
	WallSeconds    float64  `json:"wall_seconds"`
	Lifecycles     int      `json:"lifecycles_ok"`
	Failed         int      `json:"lifecycles_failed"`
	Unfinished     int      `json:"lifecycles_unfinished"`
	Requests       int      `json:"requests_ok"`
	LifecyclesPerS float64  `json:"lifecycles_per_second"`
	RequestsPerS   float64  `json:"requests_per_second"`
	TimeLimitHit   bool     `json:"time_limit_reached"`
	Stats          []Stat   `json:"calls"`
	ErrorSamples   []string `json:"error_samples,omitempty"`
}

func run(cfg config) Result {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeLimit)
	defer cancel()
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        4 * cfg.clients * len(cfg.urls),
		MaxIdleConnsPerHost: 2 * cfg.clients,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true, // cliwire decodes gzip itself, as the CLI does
	}
	hc := &http.Client{Transport: tr, Timeout: cfg.reqTimeout}
	var clients []*cliwire.Client
	for _, u := range cfg.urls {
		c := cliwire.New(u, cfg.token)
		c.HTTP = hc
		clients = append(clients, c)
	}
	runID := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	var next atomic.Uint64
	recs := make([]*recorder, cfg.clients)
	var ok, failed, unfinished atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range cfg.clients {
		recs[i] = newRecorder()
		r := &runner{cfg: &cfg, clients: clients, next: &next, rec: recs[i], ctx: ctx}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for l := range cfg.lifecycles {
				if ctx.Err() != nil {
					unfinished.Add(int64(cfg.lifecycles - l))
					return
				}
				err := r.lifecycle(fmt.Sprintf("r%s-c%02d-l%03d", runID, i, l))
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, errTimeLimit) || ctx.Err() != nil:
					unfinished.Add(int64(cfg.lifecycles - l))
					return
				default:
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)

	res := Result{Label: cfg.label, Servers: cfg.urls, Clients: cfg.clients, PerClient: cfg.lifecycles, Resources: cfg.resources,
		Checkpoints: cfg.checkpoints, WallSeconds: wall.Seconds(), Lifecycles: int(ok.Load()), Failed: int(failed.Load()),
		Unfinished: int(unfinished.Load()), TimeLimitHit: ctx.Err() != nil}
	var all []time.Duration
	for _, k := range kinds {
		var lat []time.Duration
		errs := 0
		for _, rec := range recs {
			lat = append(lat, rec.lat[k]...)
			errs += rec.errs[k]
		}
		all = append(all, lat...)
		res.Stats = append(res.Stats, stat(k, lat, errs))
		res.Requests += len(lat)
	}
	totalErrs := 0
	for _, rec := range recs {
		for _, n := range rec.errs {
			totalErrs += n
		}
		res.ErrorSamples = append(res.ErrorSamples, rec.sample...)
	}
	res.Stats = append(res.Stats, stat("all", all, totalErrs))
	if len(res.ErrorSamples) > 10 {
		res.ErrorSamples = res.ErrorSamples[:10]
	}
	res.LifecyclesPerS = float64(res.Lifecycles) / wall.Seconds()
	res.RequestsPerS = float64(res.Requests) / wall.Seconds()
	return res
}

func stat(kind string, lat []time.Duration, errs int) Stat {
	s := Stat{Kind: kind, Count: len(lat), Errors: errs}
	if len(lat) == 0 {
		return s
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	// Nearest rank.
	rank := func(q float64) time.Duration {
		i := int(q*float64(len(lat))+0.999999) - 1
		return lat[min(max(i, 0), len(lat)-1)]
	}
	s.P50ms, s.P99ms, s.MaxMs = ms(rank(0.50)), ms(rank(0.99)), ms(lat[len(lat)-1])
	return s
}

func (r Result) print(w *os.File) {
	if r.Label != "" {
		fmt.Fprintf(w, "== %s\n", r.Label)
	}
	fmt.Fprintf(w, "servers: %s\n", strings.Join(r.Servers, " "))
	fmt.Fprintf(w, "clients: %d x %d lifecycles, %d resources, %d checkpoints per update\n", r.Clients, r.PerClient, r.Resources, r.Checkpoints)
	fmt.Fprintf(w, "wall: %.1fs; lifecycles: %d ok, %d failed, %d unfinished%s\n", r.WallSeconds, r.Lifecycles, r.Failed, r.Unfinished,
		map[bool]string{true: " (time limit reached)", false: ""}[r.TimeLimitHit])
	fmt.Fprintf(w, "throughput: %.2f lifecycles/s, %.1f requests/s\n", r.LifecyclesPerS, r.RequestsPerS)
	fmt.Fprintf(w, "%-14s %7s %7s %9s %9s %9s\n", "call", "count", "errors", "p50 ms", "p99 ms", "max ms")
	for _, s := range r.Stats {
		fmt.Fprintf(w, "%-14s %7d %7d %9.1f %9.1f %9.1f\n", s.Kind, s.Count, s.Errors, s.P50ms, s.P99ms, s.MaxMs)
	}
	for _, e := range r.ErrorSamples {
		fmt.Fprintln(w, "error:", e)
	}
}
