package sqlstore

import (
	"encoding/hex"
	"time"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Deployments (issue 19): settings, runner pools, the deployment queue and its logs.

func (t *tx) GetDeploySettings(stackID int64) (*gatehouse.DeploySettings, error) {
	var s gatehouse.DeploySettings
	var settings string
	var paused, mod int64
	err := t.queryRow(`SELECT stack_id, org_id, repo, settings, paused, modified, modified_by_kind, modified_by_id FROM deploy_settings WHERE stack_id = ?`, stackID).
		Scan(&s.StackID, &s.OrgID, &s.Repo, &settings, &paused, &mod, &s.ModifiedBy.Kind, &s.ModifiedBy.ID)
	if err != nil {
		return nil, one(err, "deployment settings not found")
	}
	if settings == "" {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "deployment settings not found")
	}
	s.Settings, s.Paused, s.Modified = []byte(settings), paused != 0, fromNS(mod)
	return &s, nil
}

func (t *tx) PutDeploySettings(s *gatehouse.DeploySettings) error {
	s.Modified = t.now
	by := s.ModifiedBy
	if by.IsZero() {
		by = gatehouse.Principal{}
	}
	r, err := t.exec(`UPDATE deploy_settings SET repo = ?, settings = ?, modified = ?, modified_by_kind = ?, modified_by_id = ? WHERE stack_id = ?`,
		s.Repo, string(s.Settings), ns(t.now), by.Kind, by.ID, s.StackID)
	if err != nil {
		return err
	}
	if affected(r) > 0 {
		return nil
	}
	_, err = t.exec(`INSERT INTO deploy_settings (stack_id, org_id, repo, settings, paused, modified, modified_by_kind, modified_by_id) VALUES (?, ?, ?, ?, 0, ?, ?, ?)`,
		s.StackID, s.OrgID, s.Repo, string(s.Settings), ns(t.now), by.Kind, by.ID)
	return err
}

func (t *tx) DeleteDeploySettings(stackID int64) error {
	r, err := t.exec(`UPDATE deploy_settings SET settings = '', repo = '', modified = ?, modified_by_kind = '', modified_by_id = '' WHERE stack_id = ? AND settings <> ''`, ns(t.now), stackID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "deployment settings not found")
	}
	return nil
}

func (t *tx) SetDeployPaused(stackID, orgID int64, paused bool) error {
	p := int64(0)
	if paused {
		p = 1
	}
	r, err := t.exec(`UPDATE deploy_settings SET paused = ? WHERE stack_id = ?`, p, stackID)
	if err != nil {
		return err
	}
	if affected(r) > 0 {
		return nil
	}
	_, err = t.exec(`INSERT INTO deploy_settings (stack_id, org_id, repo, settings, paused, modified) VALUES (?, ?, '', '', ?, ?)`, stackID, orgID, p, ns(t.now))
	return err
}

func (t *tx) ListDeploySettingsByRepo(repo string) ([]gatehouse.DeploySettings, error) {
	scan := func(sc scanner) (*gatehouse.DeploySettings, error) {
		var s gatehouse.DeploySettings
		var settings string
		var paused, mod int64
		if err := sc.Scan(&s.StackID, &s.OrgID, &s.Repo, &settings, &paused, &mod, &s.ModifiedBy.Kind, &s.ModifiedBy.ID); err != nil {
			return nil, err
		}
		s.Settings, s.Paused, s.Modified = []byte(settings), paused != 0, fromNS(mod)
		return &s, nil
	}
	return queryAll(t, scan, `SELECT stack_id, org_id, repo, settings, paused, modified, modified_by_kind, modified_by_id FROM deploy_settings WHERE repo = ? AND settings <> '' ORDER BY stack_id`, repo)
}

func (t *tx) CreateDeployPool(p *gatehouse.DeployPool) error {
	if p.ID == "" {
		p.ID = uuid.NewString()
	}
	p.Created = t.now
	_, err := t.exec(`INSERT INTO deploy_pools (id, org_id, name, description, digest, created, created_by) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		p.ID, p.OrgID, p.Name, p.Description, p.Digest[:], ns(p.Created), p.CreatedBy)
	return t.conflictOr(err, "a runner pool of that name exists")
}

const poolCols = `id, org_id, name, description, digest, created, created_by, revoked`

func scanPool(s interface{ Scan(...any) error }) (*gatehouse.DeployPool, error) {
	var p gatehouse.DeployPool
	var digest []byte
	var created, revoked int64
	if err := s.Scan(&p.ID, &p.OrgID, &p.Name, &p.Description, &digest, &created, &p.CreatedBy, &revoked); err != nil {
		return nil, err
	}
	copy(p.Digest[:], digest)
	p.Created, p.Revoked = fromNS(created), fromNS(revoked)
	return &p, nil
}

func (t *tx) GetDeployPoolByDigest(d [32]byte) (*gatehouse.DeployPool, error) {
	p, err := scanPool(t.queryRow(`SELECT `+poolCols+` FROM deploy_pools WHERE digest = ?`, d[:]))
	if err != nil {
		return nil, one(err, "runner pool not found")
	}
	return p, nil
}

func (t *tx) ListDeployPools(orgID int64) ([]gatehouse.DeployPool, error) {
	return queryAll(t, scanPool, `SELECT `+poolCols+` FROM deploy_pools WHERE org_id = ? AND revoked = 0 ORDER BY name`, orgID)
}

func (t *tx) RevokeDeployPool(orgID int64, id string) error {
	r, err := t.exec(`UPDATE deploy_pools SET revoked = ? WHERE org_id = ? AND id = ? AND revoked = 0`, ns(t.now), orgID, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "runner pool not found")
	}
	return nil
}

func (t *tx) CreateDeployment(d *gatehouse.Deployment) error {
	if d.ID == "" {
		d.ID = uuid.NewString()
	}
	// The stack's row serializes version numbers between processes (a row lock on
	// PostgreSQL, the single writer on SQLite).
	r, err := t.exec(`UPDATE stacks SET id = id WHERE id = ?`, d.StackID)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack not found")
	}
	if err := t.queryRow(`SELECT COALESCE(MAX(version), 0) + 1 FROM deployments WHERE stack_id = ?`, d.StackID).Scan(&d.Version); err != nil {
		return dbErr(err)
	}
	d.Status, d.Created, d.Modified = gatehouse.DeployNotStarted, t.now, t.now
	actsFor, editor := d.ActsFor, d.Editor
	if actsFor.IsZero() {
		actsFor = gatehouse.Principal{}
	}
	if editor.IsZero() {
		editor = gatehouse.Principal{}
	}
	_, err = t.exec(`INSERT INTO deployments (id, org_id, stack_id, version, operation, status, request, initiator, requested_by, pool_id, created, modified, report,
		acts_for_kind, acts_for_id, editor_kind, editor_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		d.ID, d.OrgID, d.StackID, d.Version, d.Operation, d.Status, string(d.Request), d.Initiator, d.RequestedBy, d.PoolID, ns(d.Created), ns(d.Modified), d.Report,
		actsFor.Kind, actsFor.ID, editor.Kind, editor.ID)
	return t.conflictOr(err, "a deployment of that version exists")
}

const deploymentCols = `id, org_id, stack_id, version, operation, status, request, initiator, requested_by, pool_id, created, modified, started, ended,
	lease, lease_until, runner, cred_digest, cred_until, cancel, update_id, update_version, message, report, acts_for_kind, acts_for_id, editor_kind, editor_id`

func scanDeployment(s interface{ Scan(...any) error }) (*gatehouse.Deployment, error) {
	var d gatehouse.Deployment
	var req, cred string
	var created, modified, started, ended, leaseUntil, credUntil, cancel int64
	if err := s.Scan(&d.ID, &d.OrgID, &d.StackID, &d.Version, &d.Operation, &d.Status, &req, &d.Initiator, &d.RequestedBy, &d.PoolID,
		&created, &modified, &started, &ended, &d.Lease, &leaseUntil, &d.Runner, &cred, &credUntil, &cancel, &d.UpdateID, &d.UpdateVersion,
		&d.Message, &d.Report, &d.ActsFor.Kind, &d.ActsFor.ID, &d.Editor.Kind, &d.Editor.ID); err != nil {
		return nil, err
	}
	d.Request = []byte(req)
	if b, err := hex.DecodeString(cred); err == nil && len(b) == 32 {
		copy(d.CredDigest[:], b)
	}
	d.Created, d.Modified, d.Started, d.Ended = fromNS(created), fromNS(modified), fromNS(started), fromNS(ended)
	d.LeaseUntil, d.CredUntil, d.Cancel = fromNS(leaseUntil), fromNS(credUntil), cancel != 0
	return &d, nil
}

func (t *tx) getDeployment(where string, args ...any) (*gatehouse.Deployment, error) {
	d, err := scanDeployment(t.queryRow(`SELECT `+deploymentCols+` FROM deployments WHERE `+where, args...))
	if err != nil {
		return nil, one(err, "deployment not found")
	}
	return d, nil
}

func (t *tx) GetDeployment(id string) (*gatehouse.Deployment, error) {
	return t.getDeployment(`id = ?`, id)
}

func (t *tx) GetDeploymentByVersion(stackID int64, version int) (*gatehouse.Deployment, error) {
	return t.getDeployment(`stack_id = ? AND version = ?`, stackID, version)
}

func (t *tx) GetDeploymentByCred(d [32]byte) (*gatehouse.Deployment, error) {
	return t.getDeployment(`cred_digest = ?`, hex.EncodeToString(d[:]))
}

func (t *tx) ListDeployments(stackID int64, page, pageSize int, asc bool) ([]gatehouse.Deployment, int, error) {
	var total int
	if err := t.queryRow(`SELECT COUNT(*) FROM deployments WHERE stack_id = ?`, stackID).Scan(&total); err != nil {
		return nil, 0, dbErr(err)
	}
	order := "DESC"
	if asc {
		order = "ASC"
	}
	page, pageSize = max(page, 1), max(pageSize, 1)
	out, err := queryAll(t, scanDeployment, `SELECT `+deploymentCols+` FROM deployments WHERE stack_id = ? ORDER BY version `+order+` LIMIT ? OFFSET ?`,
		stackID, pageSize, (page-1)*pageSize)
	if err != nil {
		return nil, 0, err
	}
	return out, total, nil
}

func (t *tx) LeaseDeployment(orgID int64, poolID, runner, lease string, leaseUntil time.Time, cred [32]byte, credUntil time.Time) (*gatehouse.Deployment, error) {
	if lease == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "a lease needs a lease token")
	}
	// Candidates: the oldest queued run of each stack that is neither paused nor running
	// anything. The checks are repeated under the row's write lock below; the partial
	// unique index on active rows is the last word between two processes.
	ids, err := queryColumn[string](t, `SELECT d.id FROM deployments d WHERE d.org_id = ? AND d.status = ? AND (d.pool_id = '' OR d.pool_id = ?)
		AND NOT EXISTS (SELECT 1 FROM deploy_settings s WHERE s.stack_id = d.stack_id AND s.paused = 1)
		AND NOT EXISTS (SELECT 1 FROM deployments a WHERE a.stack_id = d.stack_id AND a.active = 1)
		AND NOT EXISTS (SELECT 1 FROM deployments e WHERE e.stack_id = d.stack_id AND e.status = ? AND e.version < d.version)
		ORDER BY d.created, d.id LIMIT 10`, orgID, gatehouse.DeployNotStarted, poolID, gatehouse.DeployNotStarted)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		r, err := t.exec(`UPDATE deployments SET status = ?, active = 1, lease = ?, lease_until = ?, runner = ?, cred_digest = ?, cred_until = ?, started = ?, modified = ?
			WHERE id = ? AND status = ? AND NOT EXISTS (SELECT 1 FROM deploy_settings s WHERE s.stack_id = deployments.stack_id AND s.paused = 1)`,
			gatehouse.DeployRunning, lease, ns(leaseUntil), runner, hex.EncodeToString(cred[:]), ns(credUntil), ns(t.now), ns(t.now),
			id, gatehouse.DeployNotStarted)
		if err != nil {
			if t.db.d.IsUnique(err) {
				// Another process started a run of this stack at the same moment.
				return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "the stack's previous deployment is running")
			}
			return nil, err
		}
		if affected(r) == 0 {
			continue
		}
		return t.GetDeployment(id)
	}
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no deployment is due")
}

func (t *tx) RenewDeploymentLease(id, lease string, leaseUntil, credUntil time.Time) (*gatehouse.Deployment, error) {
	r, err := t.exec(`UPDATE deployments SET lease_until = ?, cred_until = CASE WHEN cancel = 1 THEN cred_until ELSE ? END, modified = ?
		WHERE id = ? AND lease = ? AND status = ? AND lease_until > ?`,
		ns(leaseUntil), ns(credUntil), ns(t.now), id, lease, gatehouse.DeployRunning, ns(t.now))
	if err != nil {
		return nil, err
	}
	if affected(r) == 0 || lease == "" {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the runner no longer holds this deployment's lease")
	}
	return t.GetDeployment(id)
}

func (t *tx) FinishDeployment(id, lease, status, message string) (*gatehouse.Deployment, error) {
	if !gatehouse.DeployFinished(status) {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid final status %q", status)
	}
	q := `UPDATE deployments SET status = ?, message = ?, active = 0, lease = '', lease_until = 0, cred_until = ?, ended = ?, modified = ? WHERE id = ? AND status IN (?, ?)`
	args := []any{status, validText(message), ns(t.now), ns(t.now), ns(t.now), id, gatehouse.DeployNotStarted, gatehouse.DeployRunning}
	if lease != "" {
		q += ` AND lease = ? AND lease_until > ?`
		args = append(args, lease, ns(t.now))
	}
	r, err := t.exec(q, args...)
	if err != nil {
		return nil, err
	}
	if affected(r) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the deployment has ended or its lease has passed")
	}
	return t.GetDeployment(id)
}

func (t *tx) ExpireDeploymentLeases() ([]gatehouse.Deployment, error) {
	ids, err := queryColumn[string](t, `SELECT id FROM deployments WHERE status = ? AND lease_until <= ?`, gatehouse.DeployRunning, ns(t.now))
	if err != nil {
		return nil, err
	}
	var out []gatehouse.Deployment
	for _, id := range ids {
		r, err := t.exec(`UPDATE deployments SET status = ?, message = ?, active = 0, lease = '', lease_until = 0, cred_until = ?, ended = ?, modified = ?
			WHERE id = ? AND status = ? AND lease_until <= ?`,
			gatehouse.DeployFailed, "the runner stopped reporting (its lease ran out): the run is marked failed", ns(t.now), ns(t.now), ns(t.now),
			id, gatehouse.DeployRunning, ns(t.now))
		if err != nil {
			return nil, err
		}
		if affected(r) == 0 {
			continue
		}
		d, err := t.GetDeployment(id)
		if err != nil {
			return nil, err
		}
		out = append(out, *d)
	}
	return out, nil
}

func (t *tx) RequestDeploymentCancel(id string) (*gatehouse.Deployment, error) {
	if _, err := t.exec(`UPDATE deployments SET status = ?, message = ?, cancel = 1, ended = ?, modified = ? WHERE id = ? AND status = ?`,
		gatehouse.DeployFailed, "cancelled before it started", ns(t.now), ns(t.now), id, gatehouse.DeployNotStarted); err != nil {
		return nil, err
	}
	// A running one: its credential ends now; its runner stops it at its next heartbeat.
	if _, err := t.exec(`UPDATE deployments SET cancel = 1, cred_until = ?, modified = ? WHERE id = ? AND status = ?`,
		ns(t.now), ns(t.now), id, gatehouse.DeployRunning); err != nil {
		return nil, err
	}
	return t.GetDeployment(id)
}

func (t *tx) SetDeploymentUpdate(id, updateID string, version int) error {
	_, err := t.exec(`UPDATE deployments SET update_id = ?, update_version = ?, modified = ? WHERE id = ?`, updateID, version, ns(t.now), id)
	return err
}

func (t *tx) GetDeployComment(stackID int64, prKey string) (string, error) {
	var id string
	if err := t.queryRow(`SELECT comment_id FROM deploy_comments WHERE stack_id = ? AND pr_key = ?`, stackID, prKey).Scan(&id); err != nil {
		return "", one(err, "no comment for this pull request")
	}
	return id, nil
}

func (t *tx) PutDeployComment(stackID, orgID int64, prKey, commentID string) error {
	_, err := t.exec(`INSERT INTO deploy_comments (stack_id, pr_key, org_id, comment_id, modified) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (stack_id, pr_key) DO UPDATE SET comment_id = excluded.comment_id, modified = excluded.modified`,
		stackID, validText(prKey), orgID, validText(commentID), ns(t.now))
	return err
}

func (t *tx) AppendDeployLogs(id string, lines []gatehouse.DeployLogLine) error {
	if len(lines) == 0 {
		return nil
	}
	var last int64
	if err := t.queryRow(`SELECT COALESCE(MAX(seq), 0) FROM deploy_logs WHERE deployment_id = ?`, id).Scan(&last); err != nil {
		return dbErr(err)
	}
	for i := range lines {
		last++
		lines[i].Seq = last
		at := lines[i].At
		if at.IsZero() {
			at = t.now
		}
		if _, err := t.exec(`INSERT INTO deploy_logs (deployment_id, seq, header, line, at) VALUES (?, ?, ?, ?, ?)`,
			id, last, validText(lines[i].Header), validText(lines[i].Line), ns(at)); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ListDeployLogs(id string, after int64, limit int) ([]gatehouse.DeployLogLine, error) {
	scan := func(sc scanner) (*gatehouse.DeployLogLine, error) {
		var l gatehouse.DeployLogLine
		var at int64
		if err := sc.Scan(&l.Seq, &l.Header, &l.Line, &at); err != nil {
			return nil, err
		}
		l.At = fromNS(at)
		return &l, nil
	}
	return queryAll(t, scan, `SELECT seq, header, line, at FROM deploy_logs WHERE deployment_id = ? AND seq > ? ORDER BY seq LIMIT ?`, id, after, max(limit, 1))
}

// deleteStackDeployments removes a stack's deployment settings, deployments and logs
// (DeleteStack).
func (t *tx) deleteStackDeployments(stackID int64) error {
	for _, q := range []string{
		`DELETE FROM deploy_logs WHERE deployment_id IN (SELECT id FROM deployments WHERE stack_id = ?)`,
		`DELETE FROM deployments WHERE stack_id = ?`,
		`DELETE FROM deploy_comments WHERE stack_id = ?`,
		`DELETE FROM deploy_settings WHERE stack_id = ?`,
	} {
		if _, err := t.exec(q, stackID); err != nil {
			return err
		}
	}
	return nil
}
