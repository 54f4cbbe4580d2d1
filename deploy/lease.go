package deploy

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// The runner protocol (Gatehouse's own; Pulumi's is not public). All calls carry the
// pool's runner token; every call after the lease names the lease.
//
//	POST /api/deployments/runner/lease                 {runner}          -> 200 Job | 204
//	POST /api/deployments/runner/{id}/heartbeat        {lease, lines}    -> 200 {cancel} | 403 (lease lost)
//	POST /api/deployments/runner/{id}/complete         {lease, status, message, lines} -> 200 | 403

// LeaseRequest is a runner's request for work.
type LeaseRequest struct {
	Runner string `json:"runner"`
	Pool   string `json:"pool"`
}

// Job is a leased run, as the runner gets it. Settings hold secrets in the clear: the
// response is sent to the runner only (Cache-Control: no-store) and never logged.
type Job struct {
	ID          string          `json:"id"`
	Version     int             `json:"version"`
	Operation   string          `json:"operation"`
	Org         string          `json:"org"`
	Project     string          `json:"project"`
	Stack       string          `json:"stack"`
	Lease       string          `json:"lease"`
	LeaseExpiry time.Time       `json:"leaseExpiry"`
	Heartbeat   int             `json:"heartbeatSeconds"`
	Credential  string          `json:"credential"`
	CredExpiry  time.Time       `json:"credentialExpiry"`
	Settings    json.RawMessage `json:"settings"`
	// Secrets are the settings' secret values (in Settings in the clear): the runner masks
	// them, and Credential, in the run's output, which every reader of the stack sees.
	Secrets []string `json:"secrets,omitempty"`
	// Withheld names the settings' secret environment variables left out of Settings: a run
	// that acts for nobody (a pull or merge request's) gets none, and the runner says so.
	Withheld []string `json:"withheldSecrets,omitempty"`
}

// LeaseCall is the body of heartbeat, logs and complete.
type LeaseCall struct {
	Lease   string    `json:"lease"`
	Lines   []LogLine `json:"lines,omitempty"`
	Status  string    `json:"status,omitempty"`
	Message string    `json:"message,omitempty"`
}

// LogLine is a line of output; Header starts a step ("pulumi update" starts the engine
// events, which the CLI reads from the update itself).
type LogLine struct {
	Header string    `json:"header,omitempty"`
	Line   string    `json:"line,omitempty"`
	At     time.Time `json:"timestamp,omitempty"`
}

// HeartbeatResponse tells the runner whether to stop.
type HeartbeatResponse struct {
	Cancel bool `json:"cancel"`
}

// MaxLineBytes bounds a stored log line; a longer one is cut and marked.
const MaxLineBytes = 16 << 10

// MaxLinesPerCall bounds the lines of one logs call.
const MaxLinesPerCall = 1000

// Sanitize makes a log line valid UTF-8 (invalid bytes become U+FFFD), without NULs, and
// at most MaxLineBytes long.
func Sanitize(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) > MaxLineBytes {
		cut := MaxLineBytes
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		trail := ""
		if strings.HasSuffix(s, "\n") {
			trail = "\n"
		}
		s = s[:cut] + " …[line truncated: " + strconv.Itoa(len(s)) + " bytes]" + trail
	}
	return s
}

// Lease hands the oldest due run of the pool's organization to runner, with a fresh
// credential; nil when nothing is due. The start is audited in the lease's transaction.
func (s *Service) Lease(ctx context.Context, pool *gatehouse.DeployPool, runner string, audit func(gatehouse.Tx, *gatehouse.Deployment, *gatehouse.Stack) error) (*Job, error) {
	if _, err := s.expire(ctx); err != nil {
		s.log.Warn("deploy: expiring runner leases failed", "err", err)
	}
	lease, err := newLeaseID()
	if err != nil {
		return nil, err
	}
	cred, digest, err := newCredential()
	if err != nil {
		return nil, err
	}
	now := s.opts.Now()
	leaseUntil := now.Add(s.opts.LeaseDuration)
	credUntil := leaseUntil.Add(s.opts.CredentialMargin)
	var d *gatehouse.Deployment
	var st *gatehouse.Stack
	err = s.store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		d, err = tx.LeaseDeployment(pool.OrgID, pool.ID, truncate(runner, 200), lease, leaseUntil, digest, credUntil)
		if err != nil {
			return err
		}
		if st, err = tx.GetStackByID(d.StackID); err != nil {
			return err
		}
		if err := s.event(tx, d, st, webhook.DeploymentStarted); err != nil {
			return err
		}
		return audit(tx, d, st)
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.ECONFLICT) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	s.wake()
	doc, err := parseDoc(d.Request)
	if err != nil {
		return nil, err
	}
	open, secrets, withheld, err := s.sealer(ctx, d.StackID).openAll(doc, d.ActsFor.IsZero())
	if err != nil {
		// The run cannot start without its secrets: it fails, and says why.
		_, _ = s.Finish(ctx, d.ID, lease, gatehouse.DeployFailed, "the settings' secrets cannot be opened: "+gatehouse.ErrorMessage(err), "system", "gatehouse")
		return nil, nil
	}
	settings, _ := json.Marshal(open)
	s.report(d)
	return &Job{ID: d.ID, Version: d.Version, Operation: d.Operation, Org: st.OrgName, Project: st.Project, Stack: st.Name,
		Lease: lease, LeaseExpiry: leaseUntil, Heartbeat: max(int(s.opts.LeaseDuration/time.Second)/4, 1),
		Credential: cred, CredExpiry: credUntil, Settings: settings, Secrets: secrets, Withheld: withheld}, nil
}

// Heartbeat renews the lease (and the credential with it) and says whether to cancel.
func (s *Service) Heartbeat(ctx context.Context, pool *gatehouse.DeployPool, id, lease string, lines []LogLine) (*HeartbeatResponse, error) {
	if len(lines) > MaxLinesPerCall {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "at most %d lines per call", MaxLinesPerCall)
	}
	now := s.opts.Now()
	leaseUntil := now.Add(s.opts.LeaseDuration)
	var d *gatehouse.Deployment
	err := s.store.Update(ctx, func(tx gatehouse.Tx) error {
		cur, err := tx.GetDeployment(id)
		if err != nil || cur.OrgID != pool.OrgID {
			return gatehouse.Errorf(gatehouse.EGONE, "the runner no longer holds this deployment's lease")
		}
		if d, err = tx.RenewDeploymentLease(id, lease, leaseUntil, leaseUntil.Add(s.opts.CredentialMargin)); err != nil {
			return err
		}
		if len(lines) == 0 {
			return nil
		}
		ls := make([]gatehouse.DeployLogLine, len(lines))
		for i, l := range lines {
			ls[i] = gatehouse.DeployLogLine{Header: Sanitize(l.Header), Line: Sanitize(l.Line), At: l.At}
		}
		return tx.AppendDeployLogs(id, ls)
	})
	if err != nil {
		return nil, err
	}
	return &HeartbeatResponse{Cancel: d.Cancel}, nil
}

// Finish ends a run held with lease ("" : whatever holds it) and reports it.
func (s *Service) Finish(ctx context.Context, id, lease, status, message, actorKind, actorName string) (*gatehouse.Deployment, error) {
	switch status {
	case gatehouse.DeploySucceeded, gatehouse.DeployFailed, gatehouse.DeploySkipped:
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "status must be succeeded, failed or skipped")
	}
	var d *gatehouse.Deployment
	err := s.store.Update(ctx, func(tx gatehouse.Tx) error {
		cur, err := tx.GetDeployment(id)
		if err != nil {
			return err
		}
		if cur.Cancel && status == gatehouse.DeploySucceeded {
			status = gatehouse.DeployFailed
		}
		if cur.Cancel && message == "" {
			message = "cancelled"
		}
		if d, err = tx.FinishDeployment(id, lease, status, Sanitize(message)); err != nil {
			return err
		}
		if err := s.endEvent(tx, d, nil); err != nil {
			return err
		}
		// The runner reports the run's end: an update of it still unfinished is over.
		return s.auditEnd(tx, d, actorKind, actorName, true)
	})
	if err != nil {
		return nil, err
	}
	s.wake()
	s.report(d)
	return d, nil
}

// AuthorizeRunner checks that the pool may act on deployment id (same organization).
func AuthorizeRunner(tx gatehouse.Tx, pool *gatehouse.DeployPool, id string) (*gatehouse.Deployment, error) {
	d, err := tx.GetDeployment(id)
	if err != nil || d.OrgID != pool.OrgID || (d.PoolID != "" && d.PoolID != pool.ID) {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the runner no longer holds this deployment's lease")
	}
	return d, nil
}
