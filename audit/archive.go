package audit

import (
	"bytes"
	"context"
	"fmt"
	"time"
)

// Archiver copies the oldest events of the log to a sink before retention prunes them.
//
// Retention works like this (the store does the deleting):
//
//  1. res, err := archiver.Archive(ctx, time.Now().Add(-retention))
//  2. if res.Archived > 0 (even when err != nil: res covers the batches that were written),
//     in one transaction: sign a retention checkpoint at (res.LastSeq, res.LastHash),
//     chained to the newest stored checkpoint (Signer.Sign), store it as the new retention
//     anchor, then delete the events with seq <= res.LastSeq.
//  3. Verify (or VerifyFrom(anchor.Seq, anchor.Hash, ...)) then checks what remains from
//     that checkpoint; the archive itself verifies with VerifyFrom(previous anchor, ...)
//     over ReadJSONL of its objects.
type Archiver struct {
	Source Source
	Sink   Sink
	// BatchSize is the number of events per sink write (default 1000).
	BatchSize int
	// MaxSeq, if > 0, stops archiving after this seq. Set it to the lowest export cursor,
	// so that pruning never removes events a sink has not received yet.
	MaxSeq int64
}

// ArchiveResult describes what Archive wrote and acknowledged.
type ArchiveResult struct {
	Archived int   // events written
	FirstSeq int64 // first archived event (0 if none)
	LastSeq  int64 // last archived event: the store may prune through it
	// FirstPrevHash is the PrevHash of the first archived event: the anchor the archived
	// segment continues from (Genesis(), or the previous retention checkpoint's hash).
	FirstPrevHash []byte
	LastHash      []byte // hash of the last archived event: the new anchor
}

// Archive writes the events older than cutoff, from the oldest on, to the sink, in
// batches, and stops at the first event that is not older than cutoff (seq order is
// authoritative; times are only compared), after MaxSeq, or at the end of the log. It
// checks every event's hash and link before writing it and refuses to archive (and so to
// let the store prune) a chain that does not verify. On error the result still describes
// the batches written before it; pruning through its LastSeq is safe.
func (a *Archiver) Archive(ctx context.Context, cutoff time.Time) (ArchiveResult, error) {
	var res ArchiveResult
	size := a.BatchSize
	if size <= 0 {
		size = 1000
	}
	var after int64
	var prevHash []byte
	for {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		events, err := a.Source.AuditEventsAfter(ctx, after, size)
		if err != nil {
			return res, fmt.Errorf("audit: archive: reading events after %d: %w", after, err)
		}
		n := 0
		done := len(events) < size
		for n < len(events) {
			e := &events[n]
			if !e.Time.Before(cutoff) || (a.MaxSeq > 0 && e.Seq > a.MaxSeq) {
				done = true
				break
			}
			if e.Seq <= after {
				return res, fmt.Errorf("audit: archive: source returned seq %d after %d", e.Seq, after)
			}
			if prevHash != nil {
				if e.Seq != after+1 || !bytes.Equal(e.PrevHash, prevHash) {
					return res, fmt.Errorf("audit: refusing to archive: seq %d: %s", e.Seq, ProblemChainBroken)
				}
			}
			if !bytes.Equal(Hash(e.PrevHash, e), e.Hash) {
				return res, fmt.Errorf("audit: refusing to archive: seq %d: %s", e.Seq, ProblemHashMismatch)
			}
			prevHash, after = e.Hash, e.Seq
			n++
		}
		if n > 0 {
			batch := events[:n]
			if err := a.Sink.Write(ctx, batch); err != nil {
				return res, fmt.Errorf("audit: archive: writing to %s: %w", a.Sink.Name(), err)
			}
			if res.Archived == 0 {
				res.FirstSeq = batch[0].Seq
				res.FirstPrevHash = append([]byte(nil), batch[0].PrevHash...)
			}
			res.Archived += n
			res.LastSeq = batch[n-1].Seq
			res.LastHash = append([]byte(nil), batch[n-1].Hash...)
		}
		if done || n == 0 {
			return res, nil
		}
	}
}
