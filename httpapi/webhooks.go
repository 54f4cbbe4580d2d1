package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"strconv"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// Webhooks (Pulumi Cloud's organization, stack and environment webhooks; package webhook
// delivers them).

const (
	orgHooksPath   = "/api/orgs/{org}/hooks"
	stackHooksPath = stackPath + "/hooks"
	envHooksPath   = envPath + "/hooks"
	// legacyEnvHooksPath is Pulumi's older path of environment webhooks (project: the
	// default one), an alias of envHooksPath.
	legacyEnvHooksPath = "/api/preview/environments/{org}/{env}/hooks"
)

func (s *Server) registerWebhookRoutes() {
	get, post, patch, del := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
	for _, r := range []struct {
		base   string
		action authz.Action
	}{{orgHooksPath, authz.OrgWebhooks}, {stackHooksPath, authz.StackWebhooks}, {envHooksPath, authz.EnvWebhooks}, {legacyEnvHooksPath, authz.EnvWebhooks}} {
		if r.base != envHooksPath { // GET E/hooks is served by getEnvSub (E/{what})
			s.handle(get, r.base, r.action, s.listWebhooks)
		}
		s.handle(post, r.base, r.action, s.createWebhook)
		s.handle(get, r.base+"/{hookName}", r.action, s.getWebhook)
		s.handle(patch, r.base+"/{hookName}", r.action, s.updateWebhook)
		s.handle(del, r.base+"/{hookName}", r.action, s.deleteWebhook)
		s.handle(get, r.base+"/{hookName}/deliveries", r.action, s.listWebhookDeliveries)
		s.handle(post, r.base+"/{hookName}/deliveries/{event}/redeliver", r.action, s.redeliverWebhook)
		s.handle(post, r.base+"/{hookName}/ping", r.action, s.pingWebhook)
	}
}

// removeSecret is the secret value of an update that removes the webhook's secret.
const removeSecret = "__remove-secret"

// webhookRequest is Pulumi's WebhookRequest.
type webhookRequest struct {
	OrganizationName string   `json:"organizationName"`
	ProjectName      string   `json:"projectName"`
	StackName        string   `json:"stackName"`
	EnvName          string   `json:"envName"`
	Name             string   `json:"name"`
	DisplayName      string   `json:"displayName"`
	PayloadURL       string   `json:"payloadUrl"`
	Secret           string   `json:"secret"`
	Active           *bool    `json:"active"`
	Format           *string  `json:"format"`
	Filters          []string `json:"filters"`
	Groups           []string `json:"groups"`
}

// webhookResponse is Pulumi's WebhookResponse. The secret is never in it: hasSecret says
// whether there is one, secretCiphertext is an opaque digest that changes with it.
type webhookResponse struct {
	OrganizationName string   `json:"organizationName"`
	ProjectName      string   `json:"projectName,omitempty"`
	StackName        string   `json:"stackName,omitempty"`
	EnvName          string   `json:"envName,omitempty"`
	Name             string   `json:"name"`
	DisplayName      string   `json:"displayName"`
	PayloadURL       string   `json:"payloadUrl"`
	Active           bool     `json:"active"`
	Format           string   `json:"format"`
	Filters          []string `json:"filters"`
	Groups           []string `json:"groups"`
	HasSecret        bool     `json:"hasSecret"`
	SecretCiphertext string   `json:"secretCiphertext"` // "" without a secret
}

func (rq *Request) webhookJSON(h *gatehouse.Webhook) webhookResponse {
	out := webhookResponse{
		OrganizationName: rq.Org.Name, Name: h.Name, DisplayName: h.DisplayName, PayloadURL: h.PayloadURL,
		Active: h.Active, Format: h.Format, Filters: h.Filters, Groups: h.Groups, HasSecret: h.Secret != nil,
	}
	if out.Filters == nil {
		out.Filters = []string{}
	}
	if out.Groups == nil {
		out.Groups = []string{}
	}
	if rq.Stack != nil {
		out.ProjectName, out.StackName = rq.Stack.Project, rq.Stack.Name
	}
	if rq.Env != nil {
		out.ProjectName, out.EnvName = rq.Env.Project, rq.Env.Name
	}
	if h.Secret != nil {
		d := sha256.Sum256(h.Secret)
		out.SecretCiphertext = hex.EncodeToString(d[:16])
	}
	return out
}

// hookScope is the stack ID of the request's webhooks (0: the organization's; an
// environment's: webhook.EnvScope).
func (rq *Request) hookScope() int64 {
	if rq.Stack != nil {
		return rq.Stack.ID
	}
	if rq.Env != nil {
		return webhook.EnvScope(rq.Env.ID)
	}
	return 0
}

// scoped reports whether the request's webhooks are a stack's or an environment's.
func (rq *Request) scoped() bool { return rq.Stack != nil || rq.Env != nil }

// bodyScopeOK reports whether the organization, project, stack and environment a webhook
// request names (if any) are the URL's.
func (rq *Request) bodyScopeOK(req *webhookRequest) bool {
	if req.OrganizationName != "" && req.OrganizationName != rq.Org.Name {
		return false
	}
	diff := func(body, url string) bool { return body != "" && body != url }
	switch {
	case rq.Stack != nil:
		return req.EnvName == "" && !diff(req.ProjectName, rq.Stack.Project) && !diff(req.StackName, rq.Stack.Name)
	case rq.Env != nil:
		return req.StackName == "" && !diff(req.ProjectName, rq.Env.Project) && !diff(req.EnvName, rq.Env.Name)
	}
	return req.ProjectName == "" && req.StackName == "" && req.EnvName == ""
}

// webhookKeys seals webhook secrets (nil when the server has no keyring).
func (s *Server) webhookKeys() error {
	if s.hookKeys == nil {
		return gatehouse.Errorf(gatehouse.EUNAVAILABLE, "webhook secrets need the server's keyring")
	}
	return nil
}

func (s *Server) sealSecret(rq *Request, secret string) ([]byte, error) {
	if err := s.webhookKeys(); err != nil {
		return nil, err
	}
	if len(secret) > 1024 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "the secret is too long (at most 1024 bytes)")
	}
	return s.hookKeys.Encrypt(rq.Context(), rq.Org.ID, []byte(secret))
}

func (s *Server) checkPayloadURL(u string) error {
	if len(u) > 2048 {
		return gatehouse.Errorf(gatehouse.EINVALID, "payloadUrl is too long")
	}
	if err := webhook.CheckURL(u, s.cfg.AllowPrivateWebhooks, s.cfg.Webhooks.Permit); err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "%s", err.Error())
	}
	return nil
}

func (s *Server) createWebhook(rq *Request) (any, error) {
	var req webhookRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if !rq.bodyScopeOK(&req) {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "the organization, project, stack or environment in the body is not the one in the URL")
	}
	if req.Name == "" {
		var b [4]byte
		_, _ = rand.Read(b[:])
		req.Name = hex.EncodeToString(b[:])
	}
	if err := validWebhookName(req.Name); err != nil {
		return nil, err
	}
	if err := s.checkPayloadURL(req.PayloadURL); err != nil {
		return nil, err
	}
	format := ""
	if req.Format != nil {
		format = *req.Format
	}
	format, err := webhook.CheckFilters(format, req.Filters, req.Groups, rq.scoped())
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", err.Error())
	}
	h := &gatehouse.Webhook{OrgID: rq.Org.ID, StackID: rq.hookScope(), Name: req.Name, DisplayName: truncate(req.DisplayName, 256),
		PayloadURL: req.PayloadURL, Active: req.Active == nil || *req.Active, Format: format, Filters: req.Filters, Groups: req.Groups}
	if req.Secret != "" && req.Secret != removeSecret {
		if h.Secret, err = s.sealSecret(rq, req.Secret); err != nil {
			return nil, err
		}
	}
	rq.hookDetails(h)
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.CreateWebhook(h) }); err != nil {
		return nil, err
	}
	rq.status = http.StatusCreated // as Pulumi Cloud answers CreateOrganizationWebhook
	return rq.webhookJSON(h), nil
}

// hookDetails records what the audit event needs (never the secret).
func (rq *Request) hookDetails(h *gatehouse.Webhook) {
	rq.Detail("webhook", h.Name)
	// Only the host: a chat service's incoming-webhook URL is itself a credential.
	if u, err := url.Parse(h.PayloadURL); err == nil {
		rq.Detail("payload_host", truncate(u.Scheme+"://"+u.Host, 256))
	}
	rq.Detail("active", strconv.FormatBool(h.Active))
	rq.Detail("has_secret", strconv.FormatBool(h.Secret != nil))
}

func validWebhookName(n string) error {
	if len(n) == 0 || len(n) > 100 {
		return gatehouse.Errorf(gatehouse.EINVALID, "a webhook name has 1 to 100 characters")
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return gatehouse.Errorf(gatehouse.EINVALID, "a webhook name has only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}

func (rq *Request) loadWebhook(tx gatehouse.Tx) (*gatehouse.Webhook, error) {
	return tx.GetWebhook(rq.Org.ID, rq.hookScope(), rq.PathValue("hookName"))
}

func (s *Server) listWebhooks(rq *Request) (any, error) {
	var hooks []gatehouse.Webhook
	if err := rq.View(func(tx gatehouse.Tx) (err error) { hooks, err = tx.ListWebhooks(rq.Org.ID, rq.hookScope()); return err }); err != nil {
		return nil, err
	}
	out := make([]webhookResponse, 0, len(hooks))
	for i := range hooks {
		out = append(out, rq.webhookJSON(&hooks[i]))
	}
	return out, nil
}

func (s *Server) getWebhook(rq *Request) (any, error) {
	var h *gatehouse.Webhook
	if err := rq.View(func(tx gatehouse.Tx) (err error) { h, err = rq.loadWebhook(tx); return err }); err != nil {
		return nil, err
	}
	return rq.webhookJSON(h), nil
}

// updateWebhook is PATCH: the body is the webhook's whole state (display name, URL, active,
// filters, groups); format absent keeps it; secret empty keeps it, "__remove-secret"
// removes it.
func (s *Server) updateWebhook(rq *Request) (any, error) {
	var req webhookRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.Name != "" && req.Name != rq.PathValue("hookName") {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "a webhook cannot be renamed")
	}
	if err := s.checkPayloadURL(req.PayloadURL); err != nil {
		return nil, err
	}
	var sealed []byte
	if req.Secret != "" && req.Secret != removeSecret {
		var err error
		if sealed, err = s.sealSecret(rq, req.Secret); err != nil {
			return nil, err
		}
	}
	var h *gatehouse.Webhook
	err := rq.Change(func(tx gatehouse.Tx) error {
		var err error
		if h, err = rq.loadWebhook(tx); err != nil {
			return err
		}
		format := h.Format
		if req.Format != nil {
			format = *req.Format
		}
		if h.Format, err = webhook.CheckFilters(format, req.Filters, req.Groups, rq.scoped()); err != nil {
			return gatehouse.Errorf(gatehouse.EINVALID, "%s", err.Error())
		}
		h.DisplayName, h.PayloadURL, h.Filters, h.Groups = truncate(req.DisplayName, 256), req.PayloadURL, req.Filters, req.Groups
		if req.Active != nil {
			h.Active = *req.Active
		}
		switch {
		case req.Secret == removeSecret:
			h.Secret = nil
		case sealed != nil:
			h.Secret = sealed
		}
		rq.hookDetails(h)
		return tx.UpdateWebhook(h)
	})
	if err != nil {
		return nil, err
	}
	return rq.webhookJSON(h), nil
}

func (s *Server) deleteWebhook(rq *Request) (any, error) {
	rq.Detail("webhook", rq.PathValue("hookName"))
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		h, err := rq.loadWebhook(tx)
		if err != nil {
			return err
		}
		return tx.DeleteWebhook(h.ID)
	})
}

// webhookDelivery is Pulumi's WebhookDelivery, with Gatehouse's queue state.
type webhookDelivery struct {
	ID              string `json:"id"`
	Kind            string `json:"kind"`
	Event           string `json:"event,omitempty"`
	Payload         string `json:"payload"`
	Timestamp       int64  `json:"timestamp"`
	Duration        int64  `json:"duration"`
	RequestURL      string `json:"requestUrl"`
	RequestHeaders  string `json:"requestHeaders"`
	ResponseCode    int    `json:"responseCode"`
	ResponseHeaders string `json:"responseHeaders"`
	ResponseBody    string `json:"responseBody"`
	Status          string `json:"status"`
	Attempts        int    `json:"attempts"`
	NextAttempt     int64  `json:"nextAttempt,omitempty"`
	Error           string `json:"error,omitempty"`
	// AttemptLog is every recorded attempt (the newest gatehouse.MaxWebhookAttemptsKept),
	// oldest first; the fields above are the last one's.
	AttemptLog []deliveryAttempt `json:"attemptLog"`
}

// deliveryAttempt is one attempt of a delivery (Gatehouse's; Pulumi shows only the last).
type deliveryAttempt struct {
	Attempt         int    `json:"attempt"`
	Timestamp       int64  `json:"timestamp"`
	Duration        int64  `json:"duration"`
	RequestURL      string `json:"requestUrl"`
	RequestHeaders  string `json:"requestHeaders"`
	ResponseCode    int    `json:"responseCode"`
	ResponseHeaders string `json:"responseHeaders"`
	ResponseBody    string `json:"responseBody"`
	Status          string `json:"status"`
	Error           string `json:"error,omitempty"`
}

func deliveryJSON(d *gatehouse.WebhookDelivery, attempts []gatehouse.WebhookAttempt) webhookDelivery {
	out := webhookDelivery{
		ID: d.UUID, Kind: d.Kind, Event: d.Event, Payload: string(d.Payload), Timestamp: d.Created.Unix(), Duration: d.DurationMS,
		RequestURL: d.RequestURL, RequestHeaders: d.RequestHeaders, ResponseCode: d.ResponseCode, ResponseHeaders: d.ResponseHeaders,
		ResponseBody: d.ResponseBody, Status: d.Status, Attempts: d.Attempts, Error: d.Error,
	}
	if d.Status == gatehouse.DeliveryPending {
		out.NextAttempt = d.NextAttempt.Unix()
	}
	out.AttemptLog = make([]deliveryAttempt, 0, len(attempts))
	for _, a := range attempts {
		out.AttemptLog = append(out.AttemptLog, deliveryAttempt{Attempt: a.Number, Timestamp: a.At.Unix(), Duration: a.DurationMS, RequestURL: a.RequestURL,
			RequestHeaders: a.RequestHeaders, ResponseCode: a.ResponseCode, ResponseHeaders: a.ResponseHeaders, ResponseBody: a.ResponseBody, Status: a.Status, Error: a.Error})
	}
	return out
}

func (s *Server) listWebhookDeliveries(rq *Request) (any, error) {
	var ds []gatehouse.WebhookDelivery
	var attempts map[int64][]gatehouse.WebhookAttempt
	if err := rq.View(func(tx gatehouse.Tx) error {
		h, err := rq.loadWebhook(tx)
		if err != nil {
			return err
		}
		if ds, err = tx.ListWebhookDeliveries(h.ID, 100); err != nil {
			return err
		}
		ids := make([]int64, len(ds))
		for i := range ds {
			ids[i] = ds[i].ID
		}
		attempts, err = tx.ListWebhookAttempts(ids)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]webhookDelivery, 0, len(ds))
	for i := range ds {
		out = append(out, deliveryJSON(&ds[i], attempts[ds[i].ID]))
	}
	return out, nil
}

// pingWebhook queues a ping for the webhook and answers its (pending) delivery.
func (s *Server) pingWebhook(rq *Request) (any, error) {
	rq.Detail("webhook", rq.PathValue("hookName"))
	var d *gatehouse.WebhookDelivery
	err := rq.Change(func(tx gatehouse.Tx) error {
		h, err := rq.loadWebhook(tx)
		if err != nil {
			return err
		}
		ev := &webhook.Event{Name: webhook.Ping, OrgID: rq.Org.ID, OrgName: rq.Org.Name, User: rq.Subject.Name(), Message: "This is a test message from Gatehouse for webhook " + h.Name + "."}
		if rq.Stack != nil {
			ev.Project, ev.Stack = rq.Stack.Project, rq.Stack.Name
		}
		if rq.Env != nil {
			ev.Project, ev.Env = rq.Env.Project, rq.Env.Name
		}
		d, err = webhook.EnqueueFor(tx, h, ev)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return deliveryJSON(d, nil), nil
}

// redeliverWebhook queues a delivery's payload again, as a new delivery.
func (s *Server) redeliverWebhook(rq *Request) (any, error) {
	id := rq.PathValue("event") // the delivery's ID
	rq.Detail("webhook", rq.PathValue("hookName"))
	rq.Detail("delivery", id)
	var d *gatehouse.WebhookDelivery
	err := rq.Change(func(tx gatehouse.Tx) error {
		h, err := rq.loadWebhook(tx)
		if err != nil {
			return err
		}
		ds, err := tx.ListWebhookDeliveries(h.ID, 1000)
		if err != nil {
			return err
		}
		for i := range ds {
			if ds[i].UUID == id {
				d = &gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: ds[i].Kind, Event: ds[i].Event, Payload: ds[i].Payload}
				return tx.EnqueueWebhookDelivery(d)
			}
		}
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "delivery '%s' not found", id)
	})
	if err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return deliveryJSON(d, nil), nil
}

// emit queues a webhook event in tx (the transaction of the change it reports).
func emit(tx gatehouse.Tx, ev *webhook.Event) error {
	_, err := webhook.Enqueue(tx, ev)
	return err
}

func (s *Server) wakeWebhooks() {
	if s.hooks != nil {
		s.hooks.Wake()
	}
}

// StartWebhooks starts the webhook delivery worker (stopped by Close).
func (s *Server) StartWebhooks() {
	if s.hooks != nil {
		s.hooks.Start()
	}
}

// DeliverWebhooks runs one round of deliveries now (tests, tools).
func (s *Server) DeliverWebhooks(ctx context.Context) (int, error) {
	if s.hooks == nil {
		return 0, nil
	}
	return s.hooks.RunOnce(ctx)
}

// updateEvent queues the webhook event of an update that started (result "started") or
// ended, in tx.
func (rq *Request) updateEvent(tx gatehouse.Tx, u *gatehouse.Update, result string) error {
	st := rq.Stack
	if st == nil {
		return nil
	}
	kind := string(u.Kind)
	name := kind
	if u.DryRun {
		name = "preview"
	}
	ev := &webhook.Event{
		Name: name + "_" + result, OrgID: rq.Org.ID, OrgName: rq.Org.Name, StackID: st.ID, Project: st.Project, Stack: st.Name,
		User: u.Author, UpdateKind: kind, Result: result, ResourceChanges: u.ResourceChanges, Version: u.Version,
	}
	if u.DryRun {
		ev.UpdateKind = string(gatehouse.KindPreview)
	}
	if webhook.KindOf(ev.Name) == "" {
		return nil // a kind with no event (e.g. a resource import run)
	}
	if u.Version > 0 {
		scheme := "http"
		if rq.TLS != nil {
			scheme = "https"
		}
		ev.UpdateURL = scheme + "://" + rq.Host + "/api/stacks/" + rq.Org.Name + "/" + st.Project + "/" + st.Name + "/updates/" + strconv.Itoa(u.Version)
	}
	return emit(tx, ev)
}

// finishEvent queues the event of an update that finish (in tx) just ended; nothing when it
// had ended before (a retried complete).
func (rq *Request) finishEvent(tx gatehouse.Tx, id string, wasFinished bool, status gatehouse.UpdateStatus) error {
	if wasFinished {
		return nil
	}
	u, err := tx.GetUpdate(id)
	if err != nil {
		return err
	}
	result := "failed"
	if status == gatehouse.StatusSucceeded {
		result = "succeeded"
	}
	return rq.updateEvent(tx, u, result)
}

// stackEvent queues stack_created or stack_deleted (organization webhooks).
func (rq *Request) stackEvent(tx gatehouse.Tx, st *gatehouse.Stack, action string) error {
	return emit(tx, &webhook.Event{Name: "stack_" + action, OrgID: rq.Org.ID, OrgName: rq.Org.Name, Project: st.Project, Stack: st.Name, User: rq.Subject.Name(), Action: action})
}

// envEvent queues an environment event (environment_created, environment_deleted,
// environment_revision_created, environment_revision_tag_*) about env in tx.
func (rq *Request) envEvent(tx gatehouse.Tx, env *gatehouse.Environment, name, action string, revision int, tag string) error {
	return emit(tx, &webhook.Event{Name: name, OrgID: rq.Org.ID, OrgName: rq.Org.Name, EnvID: env.ID, Project: env.Project, Env: env.Name,
		User: rq.Subject.Name(), Action: action, Revision: revision, TagName: tag})
}

// importedEnvEvents queues imported_environment_changed, in tx, for every other environment
// of the organization whose latest revision imports env (without a version, or @latest),
// now at revision rev: the event goes to the importer's (and the organization's) webhooks.
// Only direct importers: an environment importing one of those hears nothing.
func (rq *Request) importedEnvEvents(tx gatehouse.Tx, env *gatehouse.Environment, rev int) error {
	cont := ""
	for {
		envs, next, err := tx.ListEnvironments(gatehouse.EnvFilter{OrgIDs: []int64{env.OrgID}, Continuation: cont, Limit: 500})
		if err != nil {
			return err
		}
		for i := range envs {
			other := &envs[i]
			if other.ID == env.ID {
				continue
			}
			latest, err := tx.GetEnvRevision(other.ID, other.Revision)
			// Stored definitions are re-encoded by the evaluator (EncryptSecrets), so an import
			// spelled with a YAML escape holds the name plainly (TestWebhookImportedEnvironmentChanged).
			if err == nil && !bytes.Contains(latest.YAML, []byte(env.Name)) {
				continue // cannot import env: no need to parse it
			}
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				continue
			}
			if err != nil {
				return err
			}
			if !importsLatest(latest.YAML, env) {
				continue
			}
			if err := emit(tx, &webhook.Event{Name: webhook.ImportedEnvironmentChanged, OrgID: rq.Org.ID, OrgName: rq.Org.Name, EnvID: other.ID,
				Project: other.Project, Env: other.Name, User: rq.Subject.Name(), AffectedRevisions: []int{latest.Number},
				Imported: &webhook.EnvReference{ProjectName: env.Project, EnvironmentName: env.Name, Revision: rev}}); err != nil {
				return err
			}
		}
		if next == "" {
			return nil
		}
		cont = next
	}
}

// importsLatest reports whether the definition def imports env unpinned (no version, or
// @latest).
func importsLatest(def []byte, env *gatehouse.Environment) bool {
	for _, ref := range esc.Imports(def) {
		project, name, version, err := esc.ParseImport(ref)
		if err == nil && project == env.Project && name == env.Name && (version == "" || version == "latest") {
			return true
		}
	}
	return false
}
