package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/token"
)

// Deployments (package deploy): the REST API the CLI speaks, runner pools, the runner
// protocol and the VCS webhooks.

const (
	deployPath = stackPath + "/deployments"
	runnerPath = "/api/deployments/runner"
)

func (s *Server) registerDeployRoutes() {
	get, post, put, del := http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete
	if s.deploy == nil {
		return
	}
	s.handle(get, deployPath+"/settings", authz.StackDeployRead, s.getDeploySettings)
	s.handle(post, deployPath+"/settings", authz.StackDeploySettings, s.saveDeploySettings(false))
	s.handle(put, deployPath+"/settings", authz.StackDeploySettings, s.saveDeploySettings(true))
	s.handle(del, deployPath+"/settings", authz.StackDeploySettings, s.deleteDeploySettings)
	s.handle(post, deployPath+"/settings/encrypt", authz.StackDeploySettings, s.encryptDeploySecret)
	// Admitted as a preview trigger, refined in the handler to stack:deploy:update for
	// update, refresh and destroy.
	s.handle(post, deployPath, authz.StackDeployPreview, s.triggerDeployment)
	s.handle(get, deployPath, authz.StackDeployRead, s.listDeployments)
	s.handle(get, deployPath+"/{deploymentID}", authz.StackDeployRead, s.getDeployment)
	// {what} is logs or updates, or the number of GET S/version/{n}.
	s.handle(get, deployPath+"/{deploymentID}/{what}", authz.StackDeployRead, s.getDeploymentSub)
	s.handle(post, deployPath+"/{deploymentID}/cancel", authz.StackDeployUpdate, s.cancelDeployment)
	s.handle(post, deployPath+"/pause", authz.StackDeployUpdate, s.pauseDeployments(true))
	s.handle(post, deployPath+"/resume", authz.StackDeployUpdate, s.pauseDeployments(false))
	s.handle(get, "/api/console/orgs/{org}/integrations/github-app", authz.OrgRead, s.githubAppIntegration)

	// Runner pools (Pulumi's agent pools).
	s.handle(get, "/api/orgs/{org}/agent-pools", authz.OrgDeployPools, s.listPools)
	s.handle(post, "/api/orgs/{org}/agent-pools", authz.OrgDeployPools, s.createPool)
	s.handle(del, "/api/orgs/{org}/agent-pools/{poolID}", authz.OrgDeployPools, s.revokePool)

	// The runner protocol. Polls and heartbeats are not audited one by one: a lease (the
	// run's start) and a completion (its end) are, in their transactions.
	s.handle(post, runnerPath+"/lease", authz.RunnerLease, s.runnerLease).Audit = false
	// Output may come in megabyte lines (cut by the server) and up to 1,000 lines a call.
	s.handle(post, runnerPath+"/{deploymentID}/heartbeat", authz.RunnerLease, s.runnerHeartbeat).carriesState().Audit = false
	s.handle(post, runnerPath+"/{deploymentID}/complete", authz.RunnerLease, s.runnerComplete).carriesState().Audit = false

	// Incoming VCS webhooks: public, authenticated by the provider's signature (checked
	// by the handler; a failure is a 401 and audited). The server-wide URLs check the
	// server's secret and reach only organizations without a secret of their own; an
	// organization's URL ({orgName}, not {org}: an unknown organization is a 401 like a
	// wrong signature, not a 404) checks that organization's secret and reaches only its
	// stacks.
	s.handle(post, "/api/deployments/webhooks/github", authz.Public, s.vcsWebhook("github", false)).carriesState()
	s.handle(post, "/api/deployments/webhooks/gitlab", authz.Public, s.vcsWebhook("gitlab", false)).carriesState()
	s.handle(post, "/api/deployments/webhooks/github/{orgName}", authz.Public, s.vcsWebhook("github", true)).carriesState()
	s.handle(post, "/api/deployments/webhooks/gitlab/{orgName}", authz.Public, s.vcsWebhook("gitlab", true)).carriesState()
	// An organization's own webhook secrets (values never shown, except a generated one in
	// the answer that generated it).
	s.handle(get, "/api/orgs/{org}/deployments/webhooks", authz.OrgDeployWebhooks, s.listOrgVCSSecrets)
	s.handle(get, "/api/orgs/{org}/deployments/webhooks/{provider}", authz.OrgDeployWebhooks, s.getOrgVCSSecret)
	s.handle(put, "/api/orgs/{org}/deployments/webhooks/{provider}", authz.OrgDeployWebhooks, s.putOrgVCSSecret)
	s.handle(del, "/api/orgs/{org}/deployments/webhooks/{provider}", authz.OrgDeployWebhooks, s.deleteOrgVCSSecret)
	s.noStore("POST "+runnerPath+"/lease", "POST /api/orgs/{org}/agent-pools", "PUT /api/orgs/{org}/deployments/webhooks/{provider}")
}

// Deploy returns the Deployments service (nil when the server has no secrets manager).
func (s *Server) Deploy() *deploy.Service { return s.deploy }

// StartDeploySweeper starts the sweep that fails the runs of dead runners (Config.Deploy's
// SweepInterval); Close stops it.
func (s *Server) StartDeploySweeper() {
	if s.deploy != nil {
		s.deploy.Start()
	}
}

// authenticateDeployCred authenticates a runner pool's token or a deployment credential.
func (s *Server) authenticateDeployCred(rq *Request, tx gatehouse.Tx, cred string, kind token.Kind, now time.Time) error {
	digest := token.Digest(cred)
	if kind == token.Runner {
		p, err := tx.GetDeployPoolByDigest(digest)
		if err != nil || !token.Equal(p.Digest, digest) {
			if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			rq.event.Reason = "unknown runner token"
			return s.authFailed(rq, "unknown", "Invalid credentials: unknown token (deleted, or never issued by this server).")
		}
		rq.event.TokenID = "pool/" + p.ID
		if !p.Revoked.IsZero() {
			rq.event.Reason = "the runner pool was deleted"
			return s.authFailed(rq, "revoked", "Invalid credentials: the runner pool's token was revoked.")
		}
		rq.Subject = &authz.Subject{Kind: authz.Runner, Pool: p}
		rq.setActor()
		rq.event.OrgID = p.OrgID
		return nil
	}
	d, err := tx.GetDeploymentByCred(digest)
	if err != nil || !token.Equal(d.CredDigest, digest) {
		if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		rq.event.Reason = "unknown deployment credential"
		return s.authFailed(rq, "unknown", "Invalid credentials: unknown token (deleted, or never issued by this server).")
	}
	rq.event.TokenID = "deployment/" + d.ID
	rq.Detail("deployment", d.ID)
	if d.Status != gatehouse.DeployRunning || d.Cancel || !now.Before(d.CredUntil) {
		rq.event.Reason = "the deployment credential has ended with its run"
		return s.authFailed(rq, "expired", "Invalid credentials: this deployment credential ended with its run.")
	}
	sub := &authz.Subject{Kind: authz.Deployment, Deployment: d, Pipeline: true}
	// Who the run acts for, as they are now (never cached: a revoked token, a deleted or
	// disabled user stops the run's environment opens at once).
	if sub.ActsFor, sub.ActsForName, sub.ActsForGone, err = resolveActsFor(tx, d.ActsFor, now); err != nil {
		return err
	}
	// And who chose the code it runs (the settings' editor at queue time), when another.
	if d.Editor != d.ActsFor {
		if sub.Editor, sub.EditorName, sub.EditorGone, err = resolveActsFor(tx, d.Editor, now); err != nil {
			return err
		}
	}
	if d.ActsFor.IsZero() && d.Editor.IsZero() {
		var rep deploy.Report
		if d.Report != "" && json.Unmarshal([]byte(d.Report), &rep) == nil && rep.PR > 0 {
			sub.ActsForGone = fmt.Sprintf("the run is of %s pull/merge request #%d, whose code is not reviewed: it opens no environment and decrypts no secret unless the stack's deployment settings opt in (\"gatehouse\": {\"pullRequestEnvironments\": true})", rep.Provider, rep.PR)
		}
	}
	rq.Subject = sub
	rq.setActor()
	return nil
}

// resolveActsFor loads the principal a deployment run acts for: its subject, its name for
// decisions and audit, or why it can no longer act (deleted, revoked, expired, disabled).
func resolveActsFor(tx gatehouse.Tx, p gatehouse.Principal, now time.Time) (sub *authz.Subject, name, gone string, err error) {
	if p.IsZero() {
		return nil, "", "", nil
	}
	name = p.String()
	missing := func(err error, what string) (*authz.Subject, string, string, error) {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, name, what, nil
		}
		return nil, name, "", err
	}
	switch p.Kind {
	case gatehouse.PrincipalUser:
		id, perr := strconv.ParseInt(p.ID, 10, 64)
		if perr != nil {
			return nil, name, "the recorded user ID is invalid", nil
		}
		u, err := tx.GetUser(id)
		if err != nil {
			return missing(err, "the user no longer exists")
		}
		name = "user " + u.Name + " (" + p.String() + ")"
		if !u.Disabled.IsZero() {
			return nil, name, "the user is disabled", nil
		}
		return &authz.Subject{Kind: authz.UserKind, User: u}, name, "", nil
	case gatehouse.PrincipalToken:
		tk, err := tx.GetToken(p.ID)
		if err != nil {
			return missing(err, "the token no longer exists")
		}
		name = string(tk.Kind) + " token " + strconv.Quote(tk.Name) + " (" + p.String() + ")"
		if !tk.Live(now) {
			if t := tk.Revoked; !t.IsZero() && !now.Before(t) {
				return nil, name, "the token was revoked", nil
			}
			return nil, name, "the token has expired", nil
		}
		s := &authz.Subject{Token: tk, Pipeline: tk.Pipeline}
		switch tk.Kind {
		case gatehouse.TokenPersonal:
			u, err := tx.GetUser(tk.UserID)
			if err != nil {
				return missing(err, "the token's user no longer exists")
			}
			name = "user " + u.Name + " with personal token " + strconv.Quote(tk.Name) + " (" + p.String() + ")"
			if !u.Disabled.IsZero() {
				return nil, name, "the user is disabled", nil
			}
			s.Kind, s.User = authz.UserKind, u
		case gatehouse.TokenTeam:
			s.Kind = authz.TeamToken
		case gatehouse.TokenOrg:
			s.Kind = authz.OrgToken
		default:
			return nil, name, "the token cannot act for a run", nil
		}
		return s, name, "", nil
	}
	return nil, name, "the recorded principal is of an unknown kind", nil
}

// linkDeployment records, for a deployment credential, the update its run created.
func linkDeployment(rq *Request, tx gatehouse.Tx, updateID string, version int) error {
	if rq.Subject == nil || rq.Subject.Kind != authz.Deployment || rq.Subject.Deployment == nil {
		return nil
	}
	return tx.SetDeploymentUpdate(rq.Subject.Deployment.ID, updateID, version)
}

func (s *Server) getDeploySettings(rq *Request) (any, error) {
	b, err := s.deploy.GetSettings(rq.Context(), rq.Stack)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "Deployment settings for stack '%s' not found", rq.Stack.Ref())
		}
		return nil, err
	}
	return rawJSON(b), nil
}

func (s *Server) saveDeploySettings(replace bool) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		body, err := rq.readJSON()
		if err != nil {
			return nil, err
		}
		rq.Detail("replace", strconv.FormatBool(replace))
		by := rq.Subject.Principal()
		rq.Detail("actsFor", by.String())
		// The stored opt-in of pull/merge request runs into environments, audited with
		// every change of the settings.
		change := func(fn func(gatehouse.Tx) error) error {
			return rq.Change(func(tx gatehouse.Tx) error {
				if err := fn(tx); err != nil {
					return err
				}
				ds, err := tx.GetDeploySettings(rq.Stack.ID)
				if err != nil {
					return err
				}
				rq.Detail("pullRequestEnvironments", strconv.FormatBool(deploy.PullRequestEnvironments(ds.Settings)))
				return nil
			})
		}
		b, err := s.deploy.SaveSettings(rq.Context(), change, rq.Stack, body, replace, by)
		if err != nil {
			return nil, err
		}
		return rawJSON(b), nil
	}
}

func (s *Server) deleteDeploySettings(rq *Request) (any, error) {
	return nil, s.deploy.DeleteSettings(rq.Change, rq.Stack)
}

func (s *Server) encryptDeploySecret(rq *Request) (any, error) {
	var req struct {
		Secret string `json:"secret"`
		Value  string `json:"value"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.Secret == "" {
		req.Secret = req.Value
	}
	ct, err := s.deploy.EncryptSecret(rq.Context(), rq.Stack, req.Secret)
	if err != nil {
		return nil, secretsErr(err)
	}
	return map[string]string{"ciphertext": ct}, nil
}

func (s *Server) triggerDeployment(rq *Request) (any, error) {
	body, err := rq.readJSON()
	if err != nil {
		return nil, err
	}
	op, err := deploy.Operation(body)
	if err != nil {
		return nil, err
	}
	if !deploy.IsPreview(op) {
		if err := rq.Authorize(authz.StackDeployUpdate); err != nil {
			return nil, err
		}
	}
	// A trigger that overrides the settings (a branch, commit or repository other than
	// theirs included) decides what code the pipeline runs, with the settings' secrets and
	// a credential that decrypts the stack's: as the settings' editor would.
	var stored []byte
	err = rq.View(func(tx gatehouse.Tx) error {
		ds, err := tx.GetDeploySettings(rq.Stack.ID)
		switch {
		case err == nil:
			stored = ds.Settings
		case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return err
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	what, err := deploy.Overrides(body, stored)
	if err != nil {
		return nil, err
	}
	if what != "" {
		rq.Detail("overrides", what)
		if err := rq.Authorize(authz.StackDeploySettings); err != nil {
			if gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
				return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "this request overrides the stack's deployment settings (%s): that needs the right to change them (%s); trigger with the stored settings (their own repository, branch and commit) or ask a stack admin: %s",
					what, authz.StackDeploySettings, gatehouse.ErrorMessage(err))
			}
			return nil, err
		}
	}
	rq.event.Action = "deployment:trigger"
	rq.Detail("operation", op)
	initiator := rq.Header.Get("X-Pulumi-Deployment-Initiator")
	if initiator == "" {
		initiator = "api"
	}
	rq.Detail("initiator", truncate(initiator, 32))
	actsFor := rq.Subject.Principal()
	rq.Detail("actsFor", actsFor.String())
	d, err := s.deploy.Queue(rq.Context(), rq.Change, rq.Stack, deploy.Trigger{Body: body, Initiator: truncate(initiator, 32), RequestedBy: rq.Subject.Name(), ActsFor: actsFor, MayOverride: what != ""})
	if err != nil {
		return nil, err
	}
	rq.status = http.StatusAccepted
	return map[string]any{"id": d.ID, "version": d.Version, "consoleUrl": s.deploy.ConsoleURL(rq.baseURL(), rq.Stack, d)}, nil
}

// deployment resolves the {deploymentID} or {version} of the path within the stack.
func (rq *Request) deployment() (*gatehouse.Deployment, bool, error) {
	var d *gatehouse.Deployment
	var paused bool
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		id := rq.PathValue("deploymentID")
		if id == "version" || isDigits(id) {
			// GET S/version/{n}; a bare number is a version too (pulumi deployment cancel 4).
			v := id
			if id == "version" {
				v = rq.PathValue("what")
			}
			n, perr := strconv.Atoi(v)
			if perr != nil {
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "deployment version %q not found", v)
			}
			d, err = tx.GetDeploymentByVersion(rq.Stack.ID, n)
		} else {
			d, err = tx.GetDeployment(rq.PathValue("deploymentID"))
		}
		if err != nil {
			return err
		}
		if d.StackID != rq.Stack.ID {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "deployment not found")
		}
		if ds, err := tx.GetDeploySettings(rq.Stack.ID); err == nil {
			paused = ds.Paused
		}
		return nil
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		name := rq.PathValue("deploymentID")
		if name == "version" {
			name = "version " + rq.PathValue("what")
		}
		return nil, false, gatehouse.Errorf(gatehouse.ENOTFOUND, "Deployment '%s' not found", name)
	}
	if err == nil {
		rq.Detail("deployment", d.ID)
	}
	return d, paused, err
}

func (s *Server) getDeployment(rq *Request) (any, error) {
	d, paused, err := rq.deployment()
	if err != nil {
		return nil, err
	}
	if d.Status == gatehouse.DeployRunning && !d.LeaseUntil.After(s.cfg.Now()) {
		s.deploy.ExpireIfDue(rq.Context(), d)
		if d, paused, err = rq.deployment(); err != nil {
			return nil, err
		}
	}
	v := deploy.ViewOf(rq.Stack, d, paused)
	v.LatestVersion = int64(d.Version)
	return v, nil
}

func (s *Server) getDeploymentSub(rq *Request) (any, error) {
	switch {
	case rq.PathValue("deploymentID") == "version":
		return s.getDeployment(rq)
	case rq.PathValue("what") == "logs":
		return s.deploymentLogs(rq)
	case rq.PathValue("what") == "updates":
		return s.deploymentUpdates(rq)
	}
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such route: %s %s", rq.Method, rq.URL.Path)
}

func (s *Server) listDeployments(rq *Request) (any, error) {
	q := rq.URL.Query()
	page, _ := strconv.Atoi(q.Get("page"))
	size, _ := strconv.Atoi(q.Get("pageSize"))
	if size <= 0 {
		size = 10
	}
	size = min(size, 100)
	asc := q.Get("asc") == "true"
	var list []gatehouse.Deployment
	var total int
	var paused bool
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		list, total, err = tx.ListDeployments(rq.Stack.ID, page, size, asc)
		if ds, derr := tx.GetDeploySettings(rq.Stack.ID); derr == nil {
			paused = ds.Paused
		}
		return err
	}); err != nil {
		return nil, err
	}
	out := deploy.ListView{Deployments: []deploy.View{}, ItemsPerPage: int64(size), Total: int64(total)}
	for i := range list {
		out.Deployments = append(out.Deployments, deploy.ViewOf(rq.Stack, &list[i], paused))
	}
	return out, nil
}

func (s *Server) deploymentLogs(rq *Request) (any, error) {
	d, _, err := rq.deployment()
	if err != nil {
		return nil, err
	}
	q := rq.URL.Query()
	if q.Get("job") != "" || q.Get("step") != "" {
		// Step mode: the run has one job with one step; offsets count lines.
		off, _ := strconv.Atoi(q.Get("offset"))
		count, _ := strconv.Atoi(q.Get("count"))
		if count <= 0 || count > 499 {
			count = 499
		}
		var lines []gatehouse.DeployLogLine
		if err := rq.View(func(tx gatehouse.Tx) (err error) {
			lines, err = tx.ListDeployLogs(d.ID, int64(max(off, 0)), count)
			return err
		}); err != nil {
			return nil, err
		}
		out := map[string]any{"lines": deploy.LogLines(lines), "nextOffset": max(off, 0) + len(lines)}
		return out, nil
	}
	return s.deploy.Logs(rq.Context(), d, q.Get("continuationToken"))
}

func (s *Server) deploymentUpdates(rq *Request) (any, error) {
	d, _, err := rq.deployment()
	if err != nil {
		return nil, err
	}
	out := []deploy.UpdateInfo{}
	if d.UpdateID != "" {
		out = append(out, deploy.UpdateInfo{UpdateID: d.UpdateID, Version: d.UpdateVersion, LatestVersion: rq.Stack.Version})
	}
	return out, nil
}

func (s *Server) cancelDeployment(rq *Request) (any, error) {
	d, _, err := rq.deployment()
	if err != nil {
		return nil, err
	}
	rq.event.Action = "deployment:cancel"
	_, err = s.deploy.Cancel(rq.Change, d)
	return nil, err
}

func (s *Server) pauseDeployments(paused bool) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		rq.Detail("paused", strconv.FormatBool(paused))
		return nil, rq.Change(func(tx gatehouse.Tx) error { return tx.SetDeployPaused(rq.Stack.ID, rq.Stack.OrgID, paused) })
	}
}

func (s *Server) githubAppIntegration(rq *Request) (any, error) {
	installed := s.deploy.VCSConfig("github").WebhookSecret != ""
	if !installed {
		err := rq.View(func(tx gatehouse.Tx) error {
			_, err := tx.GetDeployVCSSecret(rq.Org.ID, "github")
			installed = err == nil
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return nil
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return map[string]bool{"installed": installed}, nil
}

type poolView struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	Created     int64  `json:"created"`
	CreatedBy   string `json:"createdBy,omitempty"`
	TokenValue  string `json:"tokenValue,omitempty"`
}

func (s *Server) listPools(rq *Request) (any, error) {
	var pools []gatehouse.DeployPool
	if err := rq.View(func(tx gatehouse.Tx) (err error) { pools, err = tx.ListDeployPools(rq.Org.ID); return err }); err != nil {
		return nil, err
	}
	out := []poolView{}
	for _, p := range pools {
		out = append(out, poolView{ID: p.ID, Name: p.Name, Description: p.Description, Created: p.Created.UnixMilli(), CreatedBy: p.CreatedBy})
	}
	return map[string]any{"agentPools": out}, nil
}

func (s *Server) createPool(rq *Request) (any, error) {
	var req struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 100 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "a runner pool needs a name of at most 100 characters")
	}
	v, err := token.New(token.Runner)
	if err != nil {
		return nil, err
	}
	p := &gatehouse.DeployPool{OrgID: rq.Org.ID, Name: req.Name, Description: truncate(req.Description, 1024), Digest: token.Digest(v), CreatedBy: rq.Subject.Name()}
	if err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.CreateDeployPool(p); err != nil {
			return err
		}
		rq.Detail("pool", p.ID)
		rq.Detail("name", p.Name)
		return nil
	}); err != nil {
		return nil, err
	}
	return poolView{ID: p.ID, Name: p.Name, Description: p.Description, Created: p.Created.UnixMilli(), CreatedBy: p.CreatedBy, TokenValue: v}, nil
}

func (s *Server) revokePool(rq *Request) (any, error) {
	id := rq.PathValue("poolID")
	rq.Detail("pool", id)
	return nil, rq.Change(func(tx gatehouse.Tx) error { return tx.RevokeDeployPool(rq.Org.ID, id) })
}

func (s *Server) runnerLease(rq *Request) (any, error) {
	var req deploy.LeaseRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	pool := rq.Subject.Pool
	if req.Pool != "" && req.Pool != pool.Name && req.Pool != pool.ID {
		return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "this token belongs to runner pool %q, not %q", pool.Name, req.Pool)
	}
	job, err := s.deploy.Lease(rq.Context(), pool, req.Runner, func(tx gatehouse.Tx, d *gatehouse.Deployment, st *gatehouse.Stack) error {
		ev := rq.event
		ev.Action, ev.Outcome, ev.Reason = "deployment:start", gatehouse.OutcomeSuccess, ""
		ev.OrgID, ev.OrgName, ev.Target = st.OrgID, st.OrgName, st.Ref().String()
		ev.Details = map[string]string{"deployment": d.ID, "version": strconv.Itoa(d.Version), "operation": d.Operation,
			"runner": truncate(req.Runner, 200), "pool": pool.Name, "credential_expires": d.CredUntil.UTC().Format(time.RFC3339),
			"actsFor": d.ActsFor.String(), "editor": d.Editor.String()}
		return tx.AppendAudit(&ev)
	})
	if err != nil {
		return nil, err
	}
	if job == nil {
		rq.status = http.StatusNoContent
		return headOnly{}, nil
	}
	return job, nil
}

func (s *Server) runnerCall(rq *Request) (*deploy.LeaseCall, error) {
	var req deploy.LeaseCall
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := rq.View(func(tx gatehouse.Tx) error {
		_, err := deploy.AuthorizeRunner(tx, rq.Subject.Pool, rq.PathValue("deploymentID"))
		return err
	}); err != nil {
		return nil, err
	}
	return &req, nil
}

func (s *Server) runnerHeartbeat(rq *Request) (any, error) {
	req, err := s.runnerCall(rq)
	if err != nil {
		return nil, err
	}
	return s.deploy.Heartbeat(rq.Context(), rq.Subject.Pool, rq.PathValue("deploymentID"), req.Lease, req.Lines)
}

func (s *Server) runnerComplete(rq *Request) (any, error) {
	req, err := s.runnerCall(rq)
	if err != nil {
		return nil, err
	}
	if len(req.Lines) > 0 {
		if _, err := s.deploy.Heartbeat(rq.Context(), rq.Subject.Pool, rq.PathValue("deploymentID"), req.Lease, req.Lines); err != nil {
			return nil, err
		}
	}
	_, err = s.deploy.Finish(rq.Context(), rq.PathValue("deploymentID"), req.Lease, req.Status, req.Message, string(authz.Runner), rq.Subject.Name())
	return nil, err
}

// vcsWebhook receives a GitHub or GitLab delivery: 401 when unsigned or wrongly signed,
// 204 when no stack follows the repository (or wants the event), 202 with the runs queued.
// perOrg: the delivery URL names an organization ({orgName}), whose own secret checks it
// and whose stacks alone it may trigger; an unknown organization, or one without a secret
// of the provider, is the same 401 as a wrong signature (no existence oracle).
func (s *Server) vcsWebhook(provider string, perOrg bool) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		body, err := rq.readBody()
		if err != nil {
			return nil, err
		}
		secret, scope := s.deploy.VCSConfig(provider).WebhookSecret, deploy.ServerWide
		rq.event.Action = "deployment:webhook:" + provider
		if perOrg {
			name := rq.PathValue("orgName")
			rq.Detail("organization", truncate(name, 100))
			org, own, err := s.deploy.OrgVCSSecret(rq.Context(), name, provider)
			if err != nil {
				return nil, err
			}
			secret = own
			if org != nil {
				// The organization's audit log shows failed deliveries too.
				rq.event.OrgID, rq.event.OrgName, rq.event.Target = org.ID, org.Name, org.Name
				scope = org.ID
			}
			if secret == "" {
				// Checked against a random secret, so that the answer (and its time)
				// is a wrong signature's.
				secret = s.vcsDummySecret
			}
		}
		var ev *deploy.Event
		switch provider {
		case "github":
			if !deploy.VerifyGitHub(secret, rq.Header.Get("X-Hub-Signature-256"), body) {
				s.metrics.authFailure("webhook-signature")
				return nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "the delivery's X-Hub-Signature-256 is missing or wrong")
			}
			rq.Detail("event", truncate(rq.Header.Get("X-GitHub-Event"), 64))
			rq.Detail("delivery", truncate(rq.Header.Get("X-GitHub-Delivery"), 64))
			ev, err = deploy.ParseGitHub(rq.Header.Get("X-GitHub-Event"), body)
		default:
			if !deploy.VerifyGitLab(secret, rq.Header.Get("X-Gitlab-Token")) {
				s.metrics.authFailure("webhook-signature")
				return nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "the delivery's X-Gitlab-Token is missing or wrong")
			}
			rq.Detail("event", truncate(rq.Header.Get("X-Gitlab-Event"), 64))
			ev, err = deploy.ParseGitLab(rq.Header.Get("X-Gitlab-Event"), body)
		}
		if err != nil {
			return nil, err
		}
		if ev == nil {
			rq.status = http.StatusNoContent
			return headOnly{}, nil
		}
		rq.Detail("repository", truncate(ev.Repo, 200))
		matches, err := s.deploy.Matches(rq.Context(), ev, scope)
		if err != nil {
			return nil, err
		}
		if len(matches) == 0 {
			rq.status = http.StatusNoContent
			return headOnly{}, nil
		}
		var ids []string
		for _, m := range matches {
			st := m.Stack
			d, err := s.deploy.Queue(rq.Context(), func(fn func(gatehouse.Tx) error) error {
				return s.store.Update(rq.Context(), func(tx gatehouse.Tx) error {
					if err := fn(tx); err != nil {
						return err
					}
					ev := rq.event
					ev.ActorKind, ev.ActorName = provider, truncate(m.Trigger.RequestedBy, 100)
					ev.Action, ev.Outcome = "deployment:trigger", gatehouse.OutcomeSuccess
					ev.OrgID, ev.OrgName, ev.Target = st.OrgID, st.OrgName, st.Ref().String()
					ev.Details = map[string]string{"initiator": provider, "repository": truncate(rq.event.Details["repository"], 200)}
					return tx.AppendAudit(&ev)
				})
			}, st, m.Trigger)
			if err != nil {
				s.log.Warn("deploy: a webhook's run could not be queued", "stack", st.Ref().String(), "err", err)
				continue
			}
			ids = append(ids, d.ID)
		}
		rq.Detail("deployments", strings.Join(ids, ","))
		rq.status = http.StatusAccepted
		out, _ := json.Marshal(map[string]any{"deployments": ids})
		return rawJSON(out), nil
	}
}

// vcsSecretView is an organization's webhook secret of one provider: whether it is set,
// when and by whom, and the URL to give the provider. The value never appears, except
// Secret in the answer of the PUT that generated it.
type vcsSecretView struct {
	Provider    string `json:"provider"`
	Configured  bool   `json:"configured"`
	Created     int64  `json:"created,omitempty"` // Unix milliseconds
	CreatedBy   string `json:"createdBy,omitempty"`
	DeliveryURL string `json:"deliveryUrl"`
	Secret      string `json:"secret,omitempty"`
}

func (s *Server) vcsView(rq *Request, provider string, v *gatehouse.DeployVCSSecret) vcsSecretView {
	out := vcsSecretView{Provider: provider,
		DeliveryURL: strings.TrimRight(s.deploy.BaseURL(rq.baseURL()), "/") + "/api/deployments/webhooks/" + provider + "/" + rq.Org.Name}
	if v != nil {
		out.Configured, out.Created, out.CreatedBy = true, v.Created.UnixMilli(), v.CreatedBy
	}
	return out
}

func vcsProvider(rq *Request) (string, error) {
	p := rq.PathValue("provider")
	if !deploy.IsProvider(p) {
		return "", gatehouse.Errorf(gatehouse.ENOTFOUND, "no webhook provider %q (github or gitlab)", truncate(p, 32))
	}
	return p, nil
}

func (s *Server) listOrgVCSSecrets(rq *Request) (any, error) {
	var list []gatehouse.DeployVCSSecret
	if err := rq.View(func(tx gatehouse.Tx) (err error) { list, err = tx.ListDeployVCSSecrets(rq.Org.ID); return err }); err != nil {
		return nil, err
	}
	out := []vcsSecretView{}
	for _, p := range []string{"github", "gitlab"} {
		var found *gatehouse.DeployVCSSecret
		for i := range list {
			if list[i].Provider == p {
				found = &list[i]
			}
		}
		out = append(out, s.vcsView(rq, p, found))
	}
	return map[string]any{"webhooks": out}, nil
}

func (s *Server) getOrgVCSSecret(rq *Request) (any, error) {
	p, err := vcsProvider(rq)
	if err != nil {
		return nil, err
	}
	var v *gatehouse.DeployVCSSecret
	err = rq.View(func(tx gatehouse.Tx) (err error) { v, err = tx.GetDeployVCSSecret(rq.Org.ID, p); return err })
	if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, err
	}
	return s.vcsView(rq, p, v), nil
}

// putOrgVCSSecret sets the organization's secret: {"secret": "..."} (16 to 256 printable
// characters), or {"generate": true} (a random one, returned once in the answer).
func (s *Server) putOrgVCSSecret(rq *Request) (any, error) {
	p, err := vcsProvider(rq)
	if err != nil {
		return nil, err
	}
	var req struct {
		Secret   string `json:"secret"`
		Generate bool   `json:"generate"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if (req.Secret == "") == !req.Generate {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, `give either "secret" or "generate": true`)
	}
	secret := req.Secret
	if req.Generate {
		if secret, err = deploy.GenerateVCSSecret(); err != nil {
			return nil, err
		}
	}
	sealed, err := s.deploy.SealVCSSecret(rq.Context(), rq.Org.ID, secret)
	if err != nil {
		return nil, err
	}
	v := &gatehouse.DeployVCSSecret{OrgID: rq.Org.ID, Provider: p, Sealed: sealed, CreatedBy: rq.Subject.Name()}
	rq.Detail("provider", p)
	rq.Detail("generated", strconv.FormatBool(req.Generate))
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.PutDeployVCSSecret(v) }); err != nil {
		return nil, err
	}
	out := s.vcsView(rq, p, v)
	if req.Generate {
		out.Secret = secret
	}
	return out, nil
}

func (s *Server) deleteOrgVCSSecret(rq *Request) (any, error) {
	p, err := vcsProvider(rq)
	if err != nil {
		return nil, err
	}
	rq.Detail("provider", p)
	return nil, rq.Change(func(tx gatehouse.Tx) error { return tx.DeleteDeployVCSSecret(rq.Org.ID, p) })
}

func isDigits(s string) bool {
	if s == "" || len(s) > 9 {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
