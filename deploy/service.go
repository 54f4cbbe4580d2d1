package deploy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/periodic"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/token"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// Options configure the service.
type Options struct {
	// ConsoleURL is the server's public base URL (console links); "" : none.
	ConsoleURL string
	// LeaseDuration is how long a runner's lease lasts without a heartbeat (default 60s).
	LeaseDuration time.Duration
	// CredentialMargin is how long a run's credential outlives its lease (default 2m).
	CredentialMargin time.Duration
	// GitHub and GitLab configure the VCS webhooks and commit statuses.
	GitHub VCS
	GitLab VCS
	// HTTPClient reports commit statuses (default: a client with a 10s timeout).
	HTTPClient *http.Client
	// Now is the clock (tests).
	Now func() time.Time
	// Wake, when set, is called after a transaction queued webhook events (the
	// dispatcher's Wake).
	Wake func()
	// SweepInterval is how often Start's sweep fails the runs of dead runners (default
	// 10s).
	SweepInterval time.Duration
	// PRComments turns pull/merge request comments off when set to false (default on).
	PRComments *bool
	// CommentAttempts bounds the tries of one comment post or edit (default 3);
	// CommentBackoff is the wait before the second (doubling after; default 2s).
	CommentAttempts int
	CommentBackoff  time.Duration
}

// VCS is a provider's configuration: the webhook secret (GitHub: the HMAC key of
// X-Hub-Signature-256; GitLab: the X-Gitlab-Token value), the API base URL (GitHub
// Enterprise, self-managed GitLab) and the API token commit statuses are posted with.
type VCS struct {
	WebhookSecret string
	APIURL        string
	Token         string
}

// Service is Deployments' domain logic.
type Service struct {
	store gatehouse.Store
	keys  *secrets.Manager
	// vcsKeys seals organizations' own VCS webhook secrets (orghooks.go).
	vcsKeys *secrets.Manager
	log     *slog.Logger
	opts    Options

	// ctx ends at Close: it bounds the VCS reports in flight (reports waits for them).
	ctx     context.Context
	cancel  context.CancelFunc
	reports sync.WaitGroup

	mu     sync.Mutex
	closed bool
	sweep  periodic.Loop // the dead-runner sweep (sweep.go)
	// commentLocks serializes this process's comment posts per pull request (so that a
	// run's edit cannot overtake the post of the comment it edits).
	commentLocks map[string]*commentLock
}

// New returns the service; stackKeys is the stack secrets' manager.
func New(store gatehouse.Store, stackKeys *secrets.Manager, log *slog.Logger, opts Options) *Service {
	if opts.LeaseDuration <= 0 {
		opts.LeaseDuration = 60 * time.Second
	}
	if opts.CredentialMargin <= 0 {
		opts.CredentialMargin = 2 * time.Minute
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.GitHub.APIURL == "" {
		opts.GitHub.APIURL = "https://api.github.com"
	}
	if opts.GitLab.APIURL == "" {
		opts.GitLab.APIURL = "https://gitlab.com/api/v4"
	}
	if opts.SweepInterval <= 0 {
		opts.SweepInterval = 10 * time.Second
	}
	if opts.CommentAttempts <= 0 {
		opts.CommentAttempts = 3
	}
	if opts.CommentBackoff <= 0 {
		opts.CommentBackoff = 2 * time.Second
	}
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{store: store, keys: Keys(stackKeys, store), vcsKeys: VCSKeys(stackKeys, store), log: log, opts: opts, ctx: ctx, cancel: cancel, commentLocks: map[string]*commentLock{}}
}

// Change runs fn in a read-write transaction that records the request's audit event with
// it (httpapi's Request.Change).
type Change func(func(gatehouse.Tx) error) error

// Operations a run may perform.
var operations = map[string]bool{"update": true, "preview": true, "refresh": true, "destroy": true}

// IsPreview reports whether op changes nothing.
func IsPreview(op string) bool { return op == "preview" }

func (s *Service) sealer(ctx context.Context, stackID int64) sealer {
	return sealer{ctx: ctx, keys: s.keys, stackID: stackID}
}

// GetSettings returns the stack's settings with secrets sealed; ENOTFOUND when none.
func (s *Service) GetSettings(ctx context.Context, stack *gatehouse.Stack) (json.RawMessage, error) {
	var out json.RawMessage
	err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		ds, err := tx.GetDeploySettings(stack.ID)
		if err != nil {
			return err
		}
		out = ds.Settings
		return nil
	})
	return out, err
}

// SaveSettings merges body into the stack's settings (replace: replaces them), seals
// every secret, checks the result and stores it, recording by as their last editor (the
// principal a VCS webhook's runs act for). It returns the stored document.
func (s *Service) SaveSettings(ctx context.Context, change Change, stack *gatehouse.Stack, body []byte, replace bool, by gatehouse.Principal) (json.RawMessage, error) {
	patch, err := parseDoc(body)
	if err != nil {
		return nil, err
	}
	// Secrets are sealed before the transaction: the keyring may be remote, and a stack's
	// first data key is stored in a transaction of its own. The stored document's secrets
	// are sealed already.
	sl := s.sealer(ctx, stack.ID)
	if err := sl.sealAll(patch); err != nil {
		return nil, err
	}
	var out []byte
	err = change(func(tx gatehouse.Tx) error {
		doc := map[string]any{}
		if !replace {
			ds, err := tx.GetDeploySettings(stack.ID)
			switch {
			case err == nil:
				if doc, err = parseDoc(ds.Settings); err != nil {
					return err
				}
			case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
				return err
			}
			doc = MergePatch(doc, patch)
		} else {
			doc = patch
		}
		if err := validate(doc); err != nil {
			return err
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		out = b
		return tx.PutDeploySettings(&gatehouse.DeploySettings{StackID: stack.ID, OrgID: stack.OrgID, Repo: repoKey(doc), Settings: b, ModifiedBy: by})
	})
	return out, err
}

// DeleteSettings removes the stack's settings.
func (s *Service) DeleteSettings(change Change, stack *gatehouse.Stack) error {
	return change(func(tx gatehouse.Tx) error { return tx.DeleteDeploySettings(stack.ID) })
}

// EncryptSecret seals a value for the stack's settings.
func (s *Service) EncryptSecret(ctx context.Context, stack *gatehouse.Stack, plaintext string) (string, error) {
	return s.sealer(ctx, stack.ID).seal(plaintext)
}

// Trigger is a run's request: Pulumi's CreateDeploymentRequest, plus who asked and how.
type Trigger struct {
	Body        []byte // CreateDeploymentRequest JSON
	Initiator   string // cli, api, github, gitlab
	RequestedBy string
	// ActsFor is the principal who triggered the run (REST API): the run's credential
	// opens environments on their behalf, and on behalf of the settings' last editor (who
	// chose the code), only where both may (gatehouse.Deployment.Editor).
	ActsFor gatehouse.Principal
	// ForSettingsEditor (VCS webhooks, which carry no Gatehouse principal): the run acts for
	// whoever last stored the stack's deployment settings, read in the transaction that
	// queues it.
	ForSettingsEditor bool
	// PullRequest: the run is of a pull/merge request (its code is the request's, not
	// reviewed): it acts for nobody, and its credential opens no environment, unless the
	// stack's settings opt in (gatehouse.pullRequestEnvironments).
	PullRequest bool
	// Report says where the result goes (a commit status), JSON; "" none.
	Report string
	// MayOverride: the trigger may decide beyond the stored settings (Overrides): its
	// caller holds stack:deploy:settings (decided by the REST handler), or it is a VCS
	// webhook's (the event's branch and commit, for settings that follow them). Otherwise
	// Queue refuses a body that decides anything beyond the settings it reads in its
	// transaction (they may have changed since the handler looked).
	MayOverride bool
}

// Operation returns the operation a CreateDeploymentRequest body asks for (400 when it
// names none or one Gatehouse does not run).
func Operation(body []byte) (string, error) {
	var req struct {
		Operation string `json:"operation"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: %v", err)
	}
	switch {
	case req.Operation == "":
		return "", gatehouse.Errorf(gatehouse.EINVALID, "operation is required (update, preview, refresh or destroy)")
	case req.Operation == "detect-drift" || req.Operation == "remediate-drift":
		return "", gatehouse.Errorf(gatehouse.EINVALID, "operation %q is not supported by Gatehouse runners", req.Operation)
	case !operations[req.Operation]:
		return "", gatehouse.Errorf(gatehouse.EINVALID, "unknown operation %q", req.Operation)
	}
	return req.Operation, nil
}

// Overrides says what a trigger's body decides beyond the stored settings' own choices
// ("" nothing): settings not inherited, a context it overrides, or a source other than
// the settings' own (any sourceContext.git member whose value is not the stored one: the
// branch, the commit, the repository, repoDir; gitAuth always). Such a trigger decides
// what code the pipeline runs, where, and with which of the settings' secrets (git
// credentials, secret variables) and the run's credential (which decrypts the stack's
// secrets): it needs the right to change the settings (stack:deploy:settings), not only
// to trigger. settings is the stack's stored settings document (nil or empty: none).
func Overrides(body, settings []byte) (string, error) {
	req, err := parseDoc(body)
	if err != nil {
		return "", err
	}
	if v, ok := req["inheritSettings"].(bool); ok && !v {
		return "inheritSettings: false", nil
	}
	for _, k := range []string{"executorContext", "operationContext", "agentPoolID"} {
		v := req[k]
		if oc, ok := v.(map[string]any); ok && k == "operationContext" {
			c := map[string]any{}
			for ck, cv := range oc {
				if ck != "operation" { // the run's operation, checked by Queue
					c[ck] = cv
				}
			}
			v = c
		}
		if pruneEmpty(v) != nil {
			return k, nil
		}
	}
	sc := pruneEmpty(req["sourceContext"])
	if sc == nil {
		return "", nil
	}
	m, _ := sc.(map[string]any)
	if m == nil {
		return "sourceContext", nil
	}
	stored, err := parseDoc(settings)
	if err != nil {
		return "", err
	}
	own := gitSource(stored)
	for k, v := range m {
		if k != "git" {
			return "sourceContext." + k, nil
		}
		g, _ := v.(map[string]any)
		if g == nil {
			return "sourceContext.git", nil
		}
		for gk, gv := range g {
			switch gk {
			case "branch", "commit", "repoUrl", "repoDir":
				// The settings' own value (as the CLI sends it back with --git-branch
				// main, or a repository URL argument) decides nothing new.
				s, _ := gv.(string)
				o, _ := own[gk].(string)
				if gk == "branch" {
					s, o = strings.TrimPrefix(s, "refs/heads/"), strings.TrimPrefix(o, "refs/heads/")
				}
				if s != "" && s == o {
					continue
				}
			}
			return "sourceContext.git." + gk, nil
		}
	}
	return "", nil
}

// gitSource is the sourceContext.git object of a settings document (nil when none).
func gitSource(doc map[string]any) map[string]any {
	if sc, ok := doc["sourceContext"].(map[string]any); ok {
		if g, ok := sc["git"].(map[string]any); ok {
			return g
		}
	}
	return nil
}

// Queue creates a deployment of the stack from the trigger: the request's contexts merged
// over the saved settings (inheritSettings, default true).
func (s *Service) Queue(ctx context.Context, change Change, stack *gatehouse.Stack, t Trigger) (*gatehouse.Deployment, error) {
	op, err := Operation(t.Body)
	if err != nil {
		return nil, err
	}
	req, err := parseDoc(t.Body)
	if err != nil {
		return nil, err
	}
	inherit := true
	if v, ok := req["inheritSettings"].(bool); ok {
		inherit = v
	}
	if oc, ok := req["operationContext"].(map[string]any); ok {
		// The CLI always sends operationContext.operation, empty.
		if v, _ := oc["operation"].(string); v != "" && v != op {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "operation belongs at the top of the request, not in operationContext")
		}
		delete(oc, "operation")
	}
	// The request's contexts override the settings where they say something: the CLI
	// sends empty and null fields for everything it was not given.
	over := map[string]any{}
	for _, k := range []string{"executorContext", "sourceContext", "operationContext", "agentPoolID"} {
		if v := pruneEmpty(req[k]); v != nil {
			over[k] = v
		}
	}
	// Sealed before the transaction (see SaveSettings).
	if err := s.sealer(ctx, stack.ID).sealAll(over); err != nil {
		return nil, err
	}
	var d *gatehouse.Deployment
	err = change(func(tx gatehouse.Tx) error {
		doc := map[string]any{}
		// Who the run acts for, and who chose its code: the trigger, and the settings' last
		// editor when the run inherits them (their pre-run commands, repository, variables);
		// for a webhook both are the editor. Its credential opens only what both may.
		actsFor, editor := t.ActsFor, t.ActsFor
		ds, err := tx.GetDeploySettings(stack.ID)
		if !t.MayOverride {
			var stored []byte
			if err == nil {
				stored = ds.Settings
			}
			what, oerr := Overrides(t.Body, stored)
			if oerr != nil {
				return oerr
			}
			if what != "" {
				return gatehouse.Errorf(gatehouse.EFORBIDDEN, "this request overrides the stack's deployment settings (%s): that needs the right to change them (stack:deploy:settings)", what)
			}
		}
		switch {
		case err == nil:
			if t.ForSettingsEditor {
				actsFor, editor = ds.ModifiedBy, ds.ModifiedBy
			}
			if inherit {
				editor = ds.ModifiedBy
				if doc, err = parseDoc(ds.Settings); err != nil {
					return err
				}
			}
		case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return err
		}
		doc = MergePatch(doc, over)
		if err := validate(doc); err != nil {
			return err
		}
		if repoURL(doc) == "" {
			return gatehouse.Errorf(gatehouse.EINVALID, "the deployment has no source: set sourceContext.git.repoUrl in the stack's deployment settings or the request")
		}
		b, err := json.Marshal(doc)
		if err != nil {
			return err
		}
		if t.PullRequest && !pullRequestEnvironments(doc) {
			// A pull request's code is unreviewed: it acts for nobody (the stack operation
			// itself runs as usual).
			actsFor, editor = gatehouse.Principal{}, gatehouse.Principal{}
		}
		pool, _ := doc["agentPoolID"].(string)
		d = &gatehouse.Deployment{OrgID: stack.OrgID, StackID: stack.ID, Operation: op, Request: b, Initiator: t.Initiator,
			RequestedBy: t.RequestedBy, ActsFor: actsFor, Editor: editor, PoolID: pool, Report: t.Report}
		if err := tx.CreateDeployment(d); err != nil {
			return err
		}
		return s.event(tx, d, stack, webhook.DeploymentQueued)
	})
	if err != nil {
		return nil, err
	}
	s.wake()
	return d, nil
}

// pruneEmpty drops nulls, empty strings, empty lists and empty objects (recursively).
func pruneEmpty(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		if x == "" {
			return nil
		}
	case []any:
		if len(x) == 0 {
			return nil
		}
	case map[string]any:
		if isSecretWire(x) {
			return x
		}
		out := map[string]any{}
		for k, e := range x {
			if p := pruneEmpty(e); p != nil {
				out[k] = p
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	return v
}

func repoURL(doc map[string]any) string {
	if sc, ok := doc["sourceContext"].(map[string]any); ok {
		if g, ok := sc["git"].(map[string]any); ok {
			u, _ := g["repoUrl"].(string)
			return u
		}
	}
	return ""
}

// ConsoleURL is the link to a deployment: under Options.ConsoleURL, else under base (the
// URL the request came to).
func (s *Service) ConsoleURL(base string, stack *gatehouse.Stack, d *gatehouse.Deployment) string {
	if s.opts.ConsoleURL != "" {
		base = s.opts.ConsoleURL
	}
	if base == "" {
		return ""
	}
	return strings.TrimRight(base, "/") + "/api/stacks/" + stack.OrgName + "/" + stack.Project + "/" + stack.Name + "/deployments/" + d.ID
}

// expire fails the runs whose runner stopped reporting; it records each end in the audit
// log and the webhook queue (in the transaction that ends it) and reports it to the VCS.
// It returns how many runs it ended.
func (s *Service) expire(ctx context.Context) (int, error) {
	var ended []gatehouse.Deployment
	err := s.store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		ended, err = tx.ExpireDeploymentLeases()
		if err != nil {
			return err
		}
		for i := range ended {
			// An expired run leaves its update alone (auditEnd): that update ends when its
			// own lease lapses, as the run's lease refuses renewing it.
			if err := s.auditEnd(tx, &ended[i], "system", "gatehouse", false); err != nil {
				return err
			}
			if err := s.endEvent(tx, &ended[i], nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	if len(ended) > 0 {
		s.wake()
	}
	for i := range ended {
		s.log.Warn("deploy: a run's runner stopped reporting (its lease ran out): the run failed", "deployment", ended[i].ID,
			"version", ended[i].Version, "runner", ended[i].Runner)
		s.report(&ended[i])
	}
	return len(ended), nil
}

// ExpireIfDue ends d if it is running and its lease ran out (its runner died).
func (s *Service) ExpireIfDue(ctx context.Context, d *gatehouse.Deployment) {
	if d.Status == gatehouse.DeployRunning && !d.LeaseUntil.After(s.opts.Now()) {
		if _, err := s.expire(ctx); err != nil {
			s.log.Warn("deploy: expiring runner leases failed", "err", err)
		}
	}
}

// auditEnd appends the "deployment:end" event of d. When endsUpdate (the runner finished
// the run), it first ends the update the run's credential started if that is still
// unfinished (endUpdate; details.updateEnded). A run whose lease ran out (expire) does not
// end its update: its runner's heartbeats may only have stalled (a network blip, an
// overloaded runner) while `pulumi up` still runs, and failing the update at once would
// refuse its next checkpoints, so resources created after them would be missing from the
// state. That update keeps its own lease, whose renewal is refused from now on (httpapi
// refuseEndedRun): it ends when that lease lapses (the next update takes the stack over),
// at most one update lease (5 minutes) after its last renewal, or when its CLI completes it.
func (s *Service) auditEnd(tx gatehouse.Tx, d *gatehouse.Deployment, actorKind, actorName string, endsUpdate bool) error {
	st, err := tx.GetStackByID(d.StackID)
	if err != nil {
		return err
	}
	ended := ""
	if endsUpdate {
		if ended, err = s.endUpdate(tx, d, st); err != nil {
			return err
		}
	}
	details := map[string]string{"deployment": d.ID, "version": strconv.Itoa(d.Version), "operation": d.Operation, "status": d.Status, "message": truncate(d.Message, 512)}
	if ended != "" {
		details["updateEnded"] = ended
	}
	return tx.AppendAudit(&gatehouse.AuditEvent{OrgID: d.OrgID, OrgName: st.OrgName, ActorKind: actorKind, ActorName: actorName,
		Action: "deployment:end", Target: st.Ref().String(), Outcome: gatehouse.OutcomeSuccess, Details: details})
}

// endUpdate ends the update the run's credential started (d.UpdateID) when it is still
// unfinished as its runner finishes the run: its lease token, which the run's code may hold, must not
// outlive the run's credential (renewing it, taking checkpoints, holding the stack's
// lock). The update fails, the stack's lock is released and its update_failed (or
// preview_failed) webhook event is queued, in the transaction that ends the run. It
// returns the ended update's ID ("" when there was none to end).
func (s *Service) endUpdate(tx gatehouse.Tx, d *gatehouse.Deployment, st *gatehouse.Stack) (string, error) {
	if d.UpdateID == "" {
		return "", nil
	}
	u, err := tx.GetUpdate(d.UpdateID)
	switch {
	case gatehouse.IsCode(err, gatehouse.ENOTFOUND):
		return "", nil
	case err != nil:
		return "", err
	case u.Status.Finished() || u.StackID != d.StackID:
		return "", nil
	}
	status, err := tx.FinishUpdate(u.ID, gatehouse.StatusFailed, nil, -1)
	if err != nil || status != gatehouse.StatusFailed {
		return "", err
	}
	kind, name := string(u.Kind), string(u.Kind)
	if u.DryRun {
		kind, name = string(gatehouse.KindPreview), "preview"
	}
	ev := &webhook.Event{Name: name + "_failed", OrgID: d.OrgID, OrgName: st.OrgName, StackID: st.ID, Project: st.Project, Stack: st.Name,
		User: u.Author, UpdateKind: kind, Result: "failed", ResourceChanges: u.ResourceChanges, Version: u.Version}
	if webhook.KindOf(ev.Name) != "" {
		if _, err := webhook.Enqueue(tx, ev); err != nil {
			return "", err
		}
	}
	return u.ID, nil
}

// Cancel asks for d to be cancelled: a queued run ends now (deployment_failed); a running
// one loses its credential now and is stopped by its runner (or fails when its lease runs
// out).
func (s *Service) Cancel(change Change, d *gatehouse.Deployment) (*gatehouse.Deployment, error) {
	var out *gatehouse.Deployment
	ended := false
	err := change(func(tx gatehouse.Tx) (err error) {
		ended = false
		if cur, err := tx.GetDeployment(d.ID); err == nil && cur.Status == gatehouse.DeployNotStarted {
			// Ended by FinishDeployment, whose conditional update is the one that ends
			// the run: of two cancels at once (in any processes) one alone sends the event.
			f, err := tx.FinishDeployment(d.ID, "", gatehouse.DeployFailed, "cancelled before it started")
			switch {
			case err == nil:
				ended = true
				if err := s.endEvent(tx, f, nil); err != nil {
					return err
				}
			case !gatehouse.IsCode(err, gatehouse.EGONE):
				return err
			}
		}
		out, err = tx.RequestDeploymentCancel(d.ID)
		return err
	})
	if err == nil && ended {
		s.wake()
	}
	if err == nil && gatehouse.DeployFinished(out.Status) && !gatehouse.DeployFinished(d.Status) {
		s.report(out)
	}
	return out, err
}

// newCredential mints a deployment credential.
func newCredential() (string, [32]byte, error) {
	v, err := token.New(token.Deploy)
	if err != nil {
		return "", [32]byte{}, err
	}
	return v, token.Digest(v), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
