package sqlstore

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
)

// EnsureAuditHead creates the chain's head row if it is missing (once, after migrating).
func (db *DB) EnsureAuditHead(ctx context.Context) error {
	_, err := db.w.ExecContext(ctx, db.rebind(`INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING`), audit.Genesis())
	return dbErr(err)
}

func newEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func (t *tx) AppendAudit(e *gatehouse.AuditEvent) error {
	var seq int64
	var prev []byte
	// The head row serializes appends: SQLite runs one writer at a time, PostgreSQL locks
	// the row (ForUpdate), so the chain stays one line with several writers.
	if err := t.queryRow(`SELECT seq, hash FROM audit_head WHERE id = 1`+t.db.d.ForUpdate).Scan(&seq, &prev); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return gatehouse.Errorf(gatehouse.EUNAVAILABLE, "the audit log is not initialized")
		}
		return dbErr(err)
	}
	if e.ID == "" {
		e.ID = newEventID()
	}
	if e.Time.IsZero() {
		e.Time = t.now
	}
	e.Time = e.Time.UTC()
	validAuditText(e)
	e.Seq = seq + 1
	e.PrevHash = prev
	e.Hash = audit.Hash(prev, e)
	details := "{}"
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		details = string(b)
	}
	if _, err := t.exec(`INSERT INTO audit_events (seq, id, time, org_id, org_name, actor_kind, actor_name, user_id, token_id, source_ip, user_agent, action, target, outcome, reason, request_id, details, prev_hash, hash)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.Seq, e.ID, ns(e.Time), e.OrgID, e.OrgName, e.ActorKind, e.ActorName, e.UserID, e.TokenID, e.SourceIP, e.UserAgent,
		e.Action, e.Target, e.Outcome, e.Reason, e.RequestID, details, e.PrevHash, e.Hash); err != nil {
		return err
	}
	_, err := t.exec(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, e.Seq, e.Hash)
	return err
}

const auditCols = `seq, id, time, org_id, org_name, actor_kind, actor_name, user_id, token_id, source_ip, user_agent, action, target, outcome, reason, request_id, details, prev_hash, hash`

func scanAudit(sc interface{ Scan(...any) error }) (*gatehouse.AuditEvent, error) {
	var e gatehouse.AuditEvent
	var tm int64
	var details string
	if err := sc.Scan(&e.Seq, &e.ID, &tm, &e.OrgID, &e.OrgName, &e.ActorKind, &e.ActorName, &e.UserID, &e.TokenID, &e.SourceIP,
		&e.UserAgent, &e.Action, &e.Target, &e.Outcome, &e.Reason, &e.RequestID, &details, &e.PrevHash, &e.Hash); err != nil {
		return nil, err
	}
	e.Time = fromNS(tm)
	if details != "" && details != "{}" {
		if err := json.Unmarshal([]byte(details), &e.Details); err != nil {
			return nil, err
		}
	}
	return &e, nil
}

func (t *tx) ListAudit(f gatehouse.AuditFilter) ([]gatehouse.AuditEvent, error) {
	var where []string
	var args []any
	if f.OrgID != 0 {
		where, args = append(where, "org_id = ?"), append(args, f.OrgID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, ns(f.Since))
	}
	if !f.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, ns(f.Until))
	}
	if f.Action != "" {
		where, args = append(where, "action = ?"), append(args, f.Action)
	}
	if f.ActorName != "" {
		where, args = append(where, "actor_name = ?"), append(args, f.ActorName)
	}
	if f.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, f.AfterSeq)
	}
	if f.BeforeSeq > 0 {
		where, args = append(where, "seq < ?"), append(args, f.BeforeSeq)
	}
	q := `SELECT ` + auditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	if f.Ascending {
		q += " ORDER BY seq ASC"
	} else {
		q += " ORDER BY seq DESC"
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	q += " LIMIT ?"
	args = append(args, limit)
	rows, err := t.query(q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []gatehouse.AuditEvent
	for rows.Next() {
		e, err := scanAudit(rows)
		if err != nil {
			return nil, dbErr(err)
		}
		out = append(out, *e)
	}
	return out, dbErr(rows.Err())
}
