package gatehouse

import "time"

// The audit log's bookkeeping beyond the events themselves: signed checkpoints of the hash
// chain, the continuous export's cursors and leases, and retention. Package audit holds the
// cryptography and the formats; these are only the rows.

// Audit checkpoint kinds.
const (
	// CheckpointPeriodic is signed regularly by the server (and at shutdown): rewriting the
	// events it covers needs the signing key.
	CheckpointPeriodic = "periodic"
	// CheckpointRetention anchors what remains after retention pruned the events up to and
	// including its seq: verification starts from it.
	CheckpointRetention = "retention"
)

// Audit actions of the log's own maintenance (the actor is the system).
const (
	AuditActionCheckpoint = "audit:checkpoint"
	AuditActionPrune      = "audit:prune"
)

// AuditCheckpoint is a signed statement "the chain's event Seq has hash Hash" (see
// audit.Checkpoint), as stored.
type AuditCheckpoint struct {
	Seq       int64
	Hash      []byte
	Time      time.Time // as signed (UTC, microseconds)
	KeyID     string
	Signature []byte
	Kind      string // CheckpointPeriodic or CheckpointRetention (signed, when Index > 0)
	// Index is the checkpoint's position in the chain of checkpoints (in the order they were
	// made), PrevSeq and Prev the seq and digest of the one made before it (audit.Checkpoint).
	// Index 0: a checkpoint written in the old, unchained format.
	Index   int64
	PrevSeq int64
	Prev    []byte
}

// ExportCursor is the position of one continuous-export sink: the seq of the last event the
// sink acknowledged, and which process holds the sink's export lease until when.
type ExportCursor struct {
	Sink       string
	Seq        int64
	LeaseOwner string    // "" when nobody holds the lease
	LeaseUntil time.Time // zero when nobody holds the lease
}

// AuditTx is the storage of the audit log's checkpoints, export cursors and retention (part
// of Tx). Events are appended and listed with Tx.AppendAudit and Tx.ListAudit.
type AuditTx interface {
	// AuditHead returns the seq and hash of the newest event: (0, the genesis hash) for an
	// empty log. After retention pruned every event it is still the last pruned event.
	AuditHead() (int64, []byte, error)

	// PutAuditCheckpoint stores a checkpoint. It returns false, and changes nothing, when a
	// checkpoint of the same kind at the same seq, or (Index > 0) a checkpoint with the same
	// Index exists (another process made it: the checkpoint chain never forks).
	PutAuditCheckpoint(cp *AuditCheckpoint) (bool, error)
	// ListAuditCheckpoints returns every checkpoint in ascending seq (kind breaks ties).
	ListAuditCheckpoints() ([]AuditCheckpoint, error)
	// LatestAuditCheckpoint returns the checkpoint of the kind with the highest seq;
	// ENOTFOUND when there is none.
	LatestAuditCheckpoint(kind string) (*AuditCheckpoint, error)
	// LastAuditCheckpoint returns the checkpoint made last, which a new one chains to: the
	// highest Index, or when none is chained the old-format one with the highest seq
	// (retention before periodic at the same seq); ENOTFOUND when there is none.
	LastAuditCheckpoint() (*AuditCheckpoint, error)

	// ExportCursor returns the sink's cursor, 0 when it has none.
	ExportCursor(sink string) (int64, error)
	// SetExportCursor sets the sink's cursor unconditionally (administration; the exporter
	// uses AdvanceExportCursor).
	SetExportCursor(sink string, seq int64) error
	// AdvanceExportCursor sets the sink's cursor only while owner holds the sink's lease
	// (fencing: an exporter that lost its lease cannot move the cursor). It reports whether
	// the cursor was set.
	AdvanceExportCursor(sink, owner string, seq int64) (bool, error)
	// ListExportCursors returns every sink's cursor, by sink name.
	ListExportCursors() ([]ExportCursor, error)
	// AcquireExportLease takes or renews the sink's export lease for owner until the given
	// time: it succeeds when nobody holds the lease, owner holds it, or the holder's lease
	// ended before the transaction's clock. It creates the sink's cursor (at 0) if needed.
	AcquireExportLease(sink, owner string, until time.Time) (bool, error)
	// ReleaseExportLease gives up owner's lease on the sink (nothing if owner does not hold it).
	ReleaseExportLease(sink, owner string) error

	// PruneAudit deletes the events with seq <= uptoSeq (retention) and returns how many it
	// deleted. A retention checkpoint at uptoSeq must already be stored (in the same
	// transaction) with the hash of the event at uptoSeq: EINVALID otherwise, so that what
	// remains can always be verified.
	PruneAudit(uptoSeq int64) (int64, error)
}
