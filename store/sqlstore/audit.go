package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"strings"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/audit"
)

// EnsureAuditHead creates the chain's head row if it is missing (once, after migrating).
func (db *DB) EnsureAuditHead(ctx context.Context) error {
	_, err := db.w.ExecContext(ctx, db.rebind(`INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, ?) ON CONFLICT (id) DO NOTHING`), audit.Genesis())
	return dbErr(err)
}

// newEventID is a UUIDv7: time-ordered, so the unique index on event IDs grows at its end
// like the log itself instead of touching a random page per event (measured: random v4 IDs
// dirtied about one index page per event in a batch).
func newEventID() string {
	id, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return id.String()
}

// AppendAudit chains e onto the log. The head is read (and, on PostgreSQL, locked) at the
// transaction's first append; the event's seq and hash are computed here, and its row is
// buffered and written with the others of the transaction in multi-row INSERTs, with one
// update of the head, before the transaction commits (flushAudit). A transaction that
// appends many events (the group commit of audited reads and denials) so pays for its SQL
// statements once per batch, not per event: modernc's SQLite compiles every statement it
// runs, prepared or not. Reads of the log in the same transaction flush first.
func (t *tx) AppendAudit(e *gatehouse.AuditEvent) error {
	if t.audit.err != nil {
		return t.audit.err
	}
	if !t.audit.loaded {
		// The head row serializes appends: SQLite runs one writer at a time, PostgreSQL locks
		// the row (ForUpdate), so the chain stays one line with several writers.
		if err := t.queryRow(`SELECT seq, hash FROM audit_head WHERE id = 1`+t.db.d.ForUpdate).Scan(&t.audit.seq, &t.audit.hash); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return gatehouse.Errorf(gatehouse.EUNAVAILABLE, "the audit log is not initialized")
			}
			return dbErr(err)
		}
		t.audit.loaded = true
	}
	if e.ID == "" {
		e.ID = newEventID()
	}
	if e.Time.IsZero() {
		e.Time = t.now
	}
	e.Time = e.Time.UTC()
	validAuditText(e)
	e.Seq = t.audit.seq + 1
	e.PrevHash = t.audit.hash
	e.Hash = audit.Hash(e.PrevHash, e)
	details := "{}"
	if len(e.Details) > 0 {
		b, err := json.Marshal(e.Details)
		if err != nil {
			return err
		}
		details = string(b)
	}
	t.audit.rows = append(t.audit.rows, e.Seq, e.ID, ns(e.Time), e.OrgID, e.OrgName, e.ActorKind, e.ActorName, e.UserID, e.TokenID,
		e.SourceIP, e.UserAgent, e.Action, e.Target, e.Outcome, e.Reason, e.RequestID, details, e.PrevHash, e.Hash)
	t.audit.seq, t.audit.hash = e.Seq, e.Hash
	if len(t.audit.rows) >= auditChunk*auditNCols {
		return t.flushAudit()
	}
	return nil
}

// auditTxState is a transaction's view of the chain: its head and the rows not yet written.
type auditTxState struct {
	loaded bool
	seq    int64
	hash   []byte
	rows   []any // auditNCols values per event
	dirty  bool  // rows were written, the head row is not updated yet
	// err is the first failure to write the log: every later append, flush and read of the
	// transaction returns it, so a caller that ignored it can neither commit nor keep
	// appending to a chain whose rows did not land.
	err error
}

const (
	auditNCols = 19
	auditChunk = 16 // rows per INSERT (304 parameters); more was measured no faster
)

// auditInsert[n] is the INSERT statement for n rows, without its verb (Dialect.AppendInsert).
var auditInsert = multiRowInserts(` INTO audit_events (`+auditCols+`) VALUES `,
	"("+strings.Repeat("?, ", auditNCols-1)+"?)", "", auditChunk)

// flushAudit writes the buffered events and moves the head. It runs before commit and
// before any read of the log in the transaction.
func (t *tx) flushAudit() error {
	if t.audit.err != nil {
		return t.audit.err
	}
	verb := t.db.d.AppendInsert
	if verb == "" {
		verb = "INSERT"
	}
	for rows := t.audit.rows; len(rows) > 0; {
		n := min(len(rows)/auditNCols, auditChunk)
		if _, err := t.exec(verb+auditInsert[n], rows[:n*auditNCols]...); err != nil {
			t.audit.err = err
			return err
		}
		rows = rows[n*auditNCols:]
		t.audit.dirty = true
	}
	clear(t.audit.rows)
	t.audit.rows = t.audit.rows[:0]
	if !t.audit.dirty {
		return nil
	}
	if _, err := t.exec(`UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1`, t.audit.seq, t.audit.hash); err != nil {
		t.audit.err = err
		return err
	}
	t.audit.dirty = false
	return nil
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
	if err := t.flushAudit(); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	if f.OrgID != 0 {
		where, args = append(where, "org_id = ?"), append(args, f.OrgID)
	}
	if f.SiteOnly {
		where = append(where, "org_id = 0")
	}
	if f.Outcome != "" {
		where, args = append(where, "outcome = ?"), append(args, f.Outcome)
	}
	if f.SourceIP != "" {
		where, args = append(where, "source_ip = ?"), append(args, f.SourceIP)
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
	return queryAll(t, scanAudit, q, args...)
}
