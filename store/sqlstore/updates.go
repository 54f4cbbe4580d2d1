package sqlstore

import (
	"encoding/json"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

const updateCols = `id, stack_id, kind, dry_run, status, version, program, author, created, started, ended, lease_digest, lease_expires, journal_version, sequence, resource_changes, resource_count, starter_kind, starter_id`

func scanUpdate(sc interface{ Scan(...any) error }) (*gatehouse.Update, error) {
	var u gatehouse.Update
	var kind, status, changes string
	var dry, created, started, ended, leaseExp int64
	var lease []byte
	if err := sc.Scan(&u.ID, &u.StackID, &kind, &dry, &status, &u.Version, (*[]byte)(&u.Program), &u.Author, &created, &started, &ended,
		&lease, &leaseExp, &u.JournalVersion, &u.Sequence, &changes, &u.ResourceCount, &u.StartedBy.Kind, &u.StartedBy.ID); err != nil {
		return nil, err
	}
	u.Kind = gatehouse.UpdateKind(kind)
	u.DryRun = dry != 0
	u.Status = gatehouse.UpdateStatus(status)
	u.Created, u.Started, u.Ended = fromNS(created), fromNS(started), fromNS(ended)
	u.LeaseDigest = digestOf(lease)
	u.LeaseExpires = fromNS(leaseExp)
	if err := json.Unmarshal([]byte(changes), &u.ResourceChanges); err != nil {
		return nil, err
	}
	return &u, nil
}

func (t *tx) CreateUpdate(u *gatehouse.Update) error {
	// Never-started updates lapse after PendingUpdateTTL, and a stack holds at most
	// MaxPendingUpdates of them (the literal status lets both engines use the partial index
	// updates_pending, migration 0036).
	if _, err := t.exec(`DELETE FROM updates WHERE stack_id = ? AND status = 'not started' AND created < ?`,
		u.StackID, ns(t.now.Add(-gatehouse.PendingUpdateTTL))); err != nil {
		return err
	}
	var pending int
	if err := t.queryRow(`SELECT COUNT(*) FROM updates WHERE stack_id = ? AND status = 'not started' AND starter_kind = ? AND starter_id = ?`,
		u.StackID, u.StartedBy.Kind, u.StartedBy.ID).Scan(&pending); err != nil {
		return dbErr(err)
	}
	if pending >= gatehouse.MaxPendingUpdates {
		return gatehouse.Errorf(gatehouse.ERATELIMITED,
			"you have %d updates of this stack created and not started in the last hour: start them, or wait for them to lapse", pending)
	}
	u.Created = t.now
	if u.Status == "" {
		u.Status = gatehouse.StatusNotStarted
	}
	changes, err := json.Marshal(u.ResourceChanges)
	if err != nil {
		return err
	}
	if u.ResourceChanges == nil {
		changes = []byte("{}")
	}
	program := []byte(u.Program)
	if program == nil {
		program = []byte("{}")
	}
	_, err = t.exec(`INSERT INTO updates (id, stack_id, kind, dry_run, status, version, program, author, created, started, ended, journal_version, resource_changes, resource_count, starter_kind, starter_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		u.ID, u.StackID, string(u.Kind), b2i(u.DryRun), string(u.Status), u.Version, program, u.Author, ns(u.Created),
		ns(u.Started), ns(u.Ended), u.JournalVersion, string(changes), u.ResourceCount, u.StartedBy.Kind, u.StartedBy.ID)
	return t.conflictOr(err, "update already exists")
}

func (t *tx) GetUpdate(id string) (*gatehouse.Update, error) {
	u, err := scanUpdate(t.queryRow(`SELECT `+updateCols+` FROM updates WHERE id = ?`, id))
	if err != nil {
		return nil, one(err, "update not found")
	}
	return u, nil
}

func (t *tx) GetUpdateByLease(d [32]byte) (*gatehouse.Update, error) {
	u, err := scanUpdate(t.queryRow(`SELECT `+updateCols+` FROM updates WHERE lease_digest = ?`, d[:]))
	if err != nil {
		return nil, one(err, "no update holds this lease")
	}
	return u, nil
}

func (t *tx) StartUpdate(id string, tags map[string]string, lease [32]byte, leaseExpires time.Time, journalVersion int) (int, error) {
	u, err := t.GetUpdate(id)
	if err != nil {
		return 0, err
	}
	if u.Status != gatehouse.StatusNotStarted {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "update %s has already been started", id)
	}
	s, err := t.GetStackByID(u.StackID)
	if err != nil {
		return 0, err
	}
	version := s.Version
	if !u.DryRun {
		held := s.ActiveUpdate
		if held != "" {
			other, err := t.GetUpdate(held)
			switch {
			case gatehouse.IsCode(err, gatehouse.ENOTFOUND):
				// A dangling lock: nothing holds it.
			case err != nil:
				return 0, err
			case !other.Status.Finished() && other.LeaseExpires.After(t.now):
				return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "Another update is currently in progress.")
			default:
				// The holder's lease expired (its CLI died): it is cancelled and the lock is taken over.
				if _, err := t.FinishUpdate(held, gatehouse.StatusCancelled, nil, -1); err != nil {
					return 0, err
				}
			}
		}
		// Compare-and-set on the lock: of two racing starts exactly one changes the row.
		r, err := t.exec(`UPDATE stacks SET active_update = ?, version = version + 1 WHERE id = ? AND active_update IN ('', ?)`, id, s.ID, held)
		if err != nil {
			return 0, err
		}
		if affected(r) == 0 {
			return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "Another update is currently in progress.")
		}
		if err := t.queryRow(`SELECT version FROM stacks WHERE id = ?`, s.ID).Scan(&version); err != nil {
			return 0, dbErr(err)
		}
	}
	if tags != nil && !u.DryRun {
		// The CLI sends the tags it derives from the project; they are merged into the
		// stack's tags so that tags set by people (which grants and protection rules may
		// select on) survive updates. Previews change nothing.
		merged := make(map[string]string, len(s.Tags)+len(tags))
		for k, v := range s.Tags {
			merged[k] = v
		}
		for k, v := range tags {
			merged[k] = v
		}
		if err := t.SetStackTags(s.ID, merged); err != nil {
			return 0, err
		}
	}
	r, err := t.exec(`UPDATE updates SET status = ?, started = ?, version = ?, lease_digest = ?, lease_expires = ?, journal_version = ? WHERE id = ? AND status = ?`,
		string(gatehouse.StatusRunning), ns(t.now), version, lease[:], ns(leaseExpires), journalVersion, id, string(gatehouse.StatusNotStarted))
	if err != nil {
		return 0, err
	}
	if affected(r) == 0 {
		return 0, gatehouse.Errorf(gatehouse.ECONFLICT, "update %s has already been started", id)
	}
	return version, nil
}

func (t *tx) RenewLease(id string, lease [32]byte, expires time.Time) error {
	r, err := t.exec(`UPDATE updates SET lease_expires = ? WHERE id = ? AND lease_digest = ? AND status = ?`,
		ns(expires), id, lease[:], string(gatehouse.StatusRunning))
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.EGONE, "the update has ended or its lease is no longer valid")
	}
	return nil
}

func (t *tx) SetUpdateSequence(id string, seq int) error {
	_, err := t.exec(`UPDATE updates SET sequence = ? WHERE id = ?`, seq, id)
	return err
}

func (t *tx) SetUpdateStarter(id string, p gatehouse.Principal) error {
	r, err := t.exec(`UPDATE updates SET starter_kind = ?, starter_id = ? WHERE id = ?`, p.Kind, p.ID, id)
	if err != nil {
		return err
	}
	if affected(r) == 0 {
		return gatehouse.Errorf(gatehouse.ENOTFOUND, "update not found")
	}
	return nil
}

func (t *tx) SetUpdateChanges(id string, changes map[string]int) error {
	b, err := json.Marshal(changes)
	if err != nil {
		return err
	}
	_, err = t.exec(`UPDATE updates SET resource_changes = ? WHERE id = ?`, string(b), id)
	return err
}

func (t *tx) FinishUpdate(id string, status gatehouse.UpdateStatus, changes map[string]int, resourceCount int) (gatehouse.UpdateStatus, error) {
	u, err := t.GetUpdate(id)
	if err != nil {
		return "", err
	}
	if u.Status.Finished() {
		return u.Status, nil
	}
	if changes == nil {
		changes = u.ResourceChanges
	}
	cj, err := json.Marshal(changes)
	if err != nil {
		return "", err
	}
	if changes == nil {
		cj = []byte("{}")
	}
	count := u.ResourceCount
	if resourceCount >= 0 {
		count = resourceCount
	}
	// Only an unfinished update changes: of two finishes racing (on an engine that runs
	// them concurrently) the first wins and the other reports how it ended.
	r, err := t.exec(`UPDATE updates SET status = ?, ended = ?, lease_expires = 0, resource_changes = ?, resource_count = ? WHERE id = ? AND status IN (?, ?)`,
		string(status), ns(t.now), string(cj), count, id, string(gatehouse.StatusNotStarted), string(gatehouse.StatusRunning))
	if err != nil {
		return "", err
	}
	if affected(r) == 0 {
		if u, err = t.GetUpdate(id); err != nil {
			return "", err
		}
		return u.Status, nil
	}
	if !u.DryRun {
		q := `UPDATE stacks SET active_update = '', last_update = ? WHERE id = ? AND active_update = ?`
		args := []any{ns(t.now), u.StackID, id}
		if resourceCount >= 0 {
			q = `UPDATE stacks SET active_update = '', last_update = ?, resource_count = ? WHERE id = ? AND active_update = ?`
			args = []any{ns(t.now), resourceCount, u.StackID, id}
		}
		if _, err := t.exec(q, args...); err != nil {
			return "", err
		}
		// The version's state is final now: store it packed (pack.go).
		if err := t.packCheckpoint(u.StackID, u.Version); err != nil {
			return "", err
		}
	}
	return status, nil
}

func (t *tx) ListUpdates(stackID int64, f gatehouse.UpdateFilter) ([]gatehouse.Update, error) {
	q := `SELECT ` + updateCols + ` FROM updates WHERE stack_id = ? AND status <> ?`
	args := []any{stackID, string(gatehouse.StatusNotStarted)}
	if !f.IncludeDryRuns {
		q += ` AND dry_run = 0`
	}
	q += ` ORDER BY version DESC, created DESC`
	if f.PageSize > 0 {
		page := max(f.Page, 1)
		q += ` LIMIT ? OFFSET ?`
		args = append(args, f.PageSize, (page-1)*f.PageSize)
	}
	return queryAll(t, scanUpdate, q, args...)
}

func (t *tx) AppendEngineEvents(updateID string, events []gatehouse.EngineEvent) error {
	for _, e := range events {
		if _, err := t.exec(`INSERT INTO engine_events (update_id, seq, data) VALUES (?, ?, ?) ON CONFLICT (update_id, seq) DO NOTHING`, updateID, e.Seq, e.Data); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) ListEngineEvents(updateID string, afterSeq int, limit int) ([]gatehouse.EngineEvent, error) {
	if limit <= 0 {
		limit = 1000
	}
	scan := func(sc scanner) (*gatehouse.EngineEvent, error) {
		var e gatehouse.EngineEvent
		if err := sc.Scan(&e.Seq, &e.Data); err != nil {
			return nil, err
		}
		return &e, nil
	}
	return queryAll(t, scan, `SELECT seq, data FROM engine_events WHERE update_id = ? AND seq > ? ORDER BY seq LIMIT ?`, updateID, afterSeq, limit)
}

// AppendJournal stores a batch of entries in multi-row INSERTs (up to journalChunk rows
// each): one statement per batch instead of one per entry. A retried batch (same seqs)
// changes nothing.
func (t *tx) AppendJournal(updateID string, entries []gatehouse.JournalRecord) error {
	args := make([]any, 0, 3*min(len(entries), journalChunk))
	for len(entries) > 0 {
		n := min(len(entries), journalChunk)
		args = args[:0]
		for _, e := range entries[:n] {
			args = append(args, updateID, e.Seq, e.Data)
		}
		if _, err := t.exec(journalInsert[n], args...); err != nil {
			return err
		}
		entries = entries[n:]
	}
	return nil
}

const journalChunk = 100 // the CLI's batch size

// journalInsert[n] inserts n entries.
var journalInsert = multiRowInserts(`INSERT INTO journal_entries (update_id, seq, data) VALUES `, "(?, ?, ?)",
	` ON CONFLICT (update_id, seq) DO NOTHING`, journalChunk)

func (t *tx) JournalHead(updateID string) (int, int64, error) {
	var n int
	var last int64
	if err := t.queryRow(`SELECT COUNT(*), COALESCE(MAX(seq), 0) FROM journal_entries WHERE update_id = ?`, updateID).Scan(&n, &last); err != nil {
		return 0, 0, dbErr(err)
	}
	return n, last, nil
}

func (t *tx) ListJournal(updateID string) ([]gatehouse.JournalRecord, error) {
	scan := func(sc scanner) (*gatehouse.JournalRecord, error) {
		var e gatehouse.JournalRecord
		if err := sc.Scan(&e.Seq, &e.Data); err != nil {
			return nil, err
		}
		return &e, nil
	}
	return queryAll(t, scan, `SELECT seq, data FROM journal_entries WHERE update_id = ? ORDER BY seq`, updateID)
}
