package sqlstore

import (
	"bytes"
	"database/sql"
	"errors"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
)

// The audit log's checkpoints, export cursors and leases, and retention (gatehouse.AuditTx).

func (t *tx) AuditHead() (int64, []byte, error) {
	if err := t.flushAudit(); err != nil {
		return 0, nil, err
	}
	var seq int64
	var hash []byte
	err := t.queryRow(`SELECT seq, hash FROM audit_head WHERE id = 1`).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, audit.Genesis(), nil
	}
	if err != nil {
		return 0, nil, dbErr(err)
	}
	return seq, hash, nil
}

func validCheckpointKind(kind string) error {
	if kind != gatehouse.CheckpointPeriodic && kind != gatehouse.CheckpointRetention {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid audit checkpoint kind %q", kind)
	}
	return nil
}

func (t *tx) PutAuditCheckpoint(cp *gatehouse.AuditCheckpoint) (bool, error) {
	if err := validCheckpointKind(cp.Kind); err != nil {
		return false, err
	}
	if cp.Seq < 0 || len(cp.Hash) == 0 || len(cp.Signature) == 0 || cp.KeyID == "" || cp.Index < 0 || cp.PrevSeq < 0 {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "incomplete audit checkpoint")
	}
	// No conflict target: a duplicate (seq, kind) or chain index (the unique index on
	// chain_idx > 0) both mean another process made the checkpoint.
	r, err := t.exec(`INSERT INTO audit_checkpoints (seq, kind, hash, time, key_id, signature, chain_idx, prev_seq, prev_digest)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		cp.Seq, cp.Kind, cp.Hash, ns(cp.Time), cp.KeyID, cp.Signature, cp.Index, cp.PrevSeq, nonNilBytes(cp.Prev))
	if err != nil {
		return false, err
	}
	return affected(r) == 1, nil
}

const checkpointCols = `seq, kind, hash, time, key_id, signature, chain_idx, prev_seq, prev_digest`

func nonNilBytes(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func scanCheckpoint(sc interface{ Scan(...any) error }) (*gatehouse.AuditCheckpoint, error) {
	var cp gatehouse.AuditCheckpoint
	var tm int64
	if err := sc.Scan(&cp.Seq, &cp.Kind, &cp.Hash, &tm, &cp.KeyID, &cp.Signature, &cp.Index, &cp.PrevSeq, &cp.Prev); err != nil {
		return nil, err
	}
	cp.Time = fromNS(tm)
	if len(cp.Prev) == 0 {
		cp.Prev = nil
	}
	return &cp, nil
}

func (t *tx) ListAuditCheckpoints() ([]gatehouse.AuditCheckpoint, error) {
	return queryAll(t, scanCheckpoint, `SELECT `+checkpointCols+` FROM audit_checkpoints ORDER BY seq, kind`)
}

func (t *tx) LatestAuditCheckpoint(kind string) (*gatehouse.AuditCheckpoint, error) {
	if err := validCheckpointKind(kind); err != nil {
		return nil, err
	}
	cp, err := scanCheckpoint(t.queryRow(`SELECT `+checkpointCols+` FROM audit_checkpoints WHERE kind = ? ORDER BY seq DESC LIMIT 1`, kind))
	if err != nil {
		return nil, one(err, "no "+kind+" audit checkpoint")
	}
	return cp, nil
}

func (t *tx) LastAuditCheckpoint() (*gatehouse.AuditCheckpoint, error) {
	// Two queries, each served by an index: the chain's head, else the newest old one.
	cp, err := scanCheckpoint(t.queryRow(`SELECT ` + checkpointCols + ` FROM audit_checkpoints WHERE chain_idx > 0 ORDER BY chain_idx DESC LIMIT 1`))
	if errors.Is(err, sql.ErrNoRows) {
		cp, err = scanCheckpoint(t.queryRow(`SELECT ` + checkpointCols + ` FROM audit_checkpoints WHERE chain_idx = 0 ORDER BY seq DESC, kind DESC LIMIT 1`))
	}
	if err != nil {
		return nil, one(err, "no audit checkpoint")
	}
	return cp, nil
}

func (t *tx) ExportCursor(sink string) (int64, error) {
	var seq int64
	err := t.queryRow(`SELECT seq FROM audit_export_cursors WHERE sink = ?`, sink).Scan(&seq)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return seq, dbErr(err)
}

func (t *tx) SetExportCursor(sink string, seq int64) error {
	if sink == "" || seq < 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid export cursor")
	}
	_, err := t.exec(`INSERT INTO audit_export_cursors (sink, seq) VALUES (?, ?)
		ON CONFLICT (sink) DO UPDATE SET seq = excluded.seq`, validText(sink), seq)
	return err
}

func (t *tx) AdvanceExportCursor(sink, owner string, seq int64) (bool, error) {
	if sink == "" || owner == "" || seq < 0 {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "invalid export cursor")
	}
	r, err := t.exec(`UPDATE audit_export_cursors SET seq = ? WHERE sink = ? AND lease_owner = ? AND lease_until > ?`,
		seq, sink, owner, ns(t.now))
	if err != nil {
		return false, err
	}
	return affected(r) == 1, nil
}

func (t *tx) ListExportCursors() ([]gatehouse.ExportCursor, error) {
	scan := func(sc scanner) (*gatehouse.ExportCursor, error) {
		var c gatehouse.ExportCursor
		var until int64
		if err := sc.Scan(&c.Sink, &c.Seq, &c.LeaseOwner, &until); err != nil {
			return nil, err
		}
		c.LeaseUntil = fromNS(until)
		return &c, nil
	}
	return queryAll(t, scan, `SELECT sink, seq, lease_owner, lease_until FROM audit_export_cursors ORDER BY sink`)
}

func (t *tx) AcquireExportLease(sink, owner string, until time.Time) (bool, error) {
	if sink == "" || owner == "" {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "an export lease needs a sink and an owner")
	}
	// The conditional upsert is one statement: of several processes racing for a free or
	// expired lease exactly one updates the row (SQLite has one writer; PostgreSQL re-checks
	// the WHERE clause against the row it locked).
	r, err := t.exec(`INSERT INTO audit_export_cursors (sink, seq, lease_owner, lease_until) VALUES (?, 0, ?, ?)
		ON CONFLICT (sink) DO UPDATE SET lease_owner = excluded.lease_owner, lease_until = excluded.lease_until
		WHERE audit_export_cursors.lease_owner = excluded.lease_owner OR audit_export_cursors.lease_owner = ''
			OR audit_export_cursors.lease_until <= ?`,
		validText(sink), validText(owner), ns(until), ns(t.now))
	if err != nil {
		return false, err
	}
	return affected(r) == 1, nil
}

func (t *tx) ReleaseExportLease(sink, owner string) error {
	_, err := t.exec(`UPDATE audit_export_cursors SET lease_owner = '', lease_until = 0 WHERE sink = ? AND lease_owner = ?`, sink, owner)
	return err
}

func (t *tx) PruneAudit(uptoSeq int64) (int64, error) {
	if err := t.flushAudit(); err != nil {
		return 0, err
	}
	if uptoSeq <= 0 {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "nothing to prune before seq %d", uptoSeq)
	}
	var cpHash []byte
	err := t.queryRow(`SELECT hash FROM audit_checkpoints WHERE seq = ? AND kind = ?`, uptoSeq, gatehouse.CheckpointRetention).Scan(&cpHash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "refusing to prune the audit log through seq %d: no retention checkpoint anchors it", uptoSeq)
	}
	if err != nil {
		return 0, dbErr(err)
	}
	var evHash []byte
	err = t.queryRow(`SELECT hash FROM audit_events WHERE seq = ?`, uptoSeq).Scan(&evHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		// Already pruned (a repeated prune): the checkpoint stays the anchor.
	case err != nil:
		return 0, dbErr(err)
	case !bytes.Equal(evHash, cpHash):
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "refusing to prune the audit log through seq %d: the retention checkpoint does not match the event's hash", uptoSeq)
	}
	r, err := t.exec(`DELETE FROM audit_events WHERE seq <= ?`, uptoSeq)
	if err != nil {
		return 0, err
	}
	return affected(r), nil
}
