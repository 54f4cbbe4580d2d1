package audit

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"gocloud.dev/blob/memblob"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// TestArchivePruneVerify is the retention flow: archive the old events, prune them, keep the
// signed checkpoint, and verify both the remaining log and the archive.
func TestArchivePruneVerify(t *testing.T) {
	ctx := context.Background()
	signer := newTestSigner(t)
	src := newMemSource(100) // event i (seq i+1) at baseTime + i s
	full := src.snapshot()
	bucket := memblob.OpenBucket(nil)
	sink := NewBlobSink(bucket, "archive", FormatJSONL, "gh-1")
	defer sink.Close()
	a := &Archiver{Source: src, Sink: sink, BatchSize: 16}

	res, err := a.Archive(ctx, baseTime.Add(60*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res.Archived != 60 || res.FirstSeq != 1 || res.LastSeq != 60 || !bytes.Equal(res.FirstPrevHash, Genesis()) || !bytes.Equal(res.LastHash, full[59].Hash) {
		t.Fatalf("result %+v", res)
	}
	// The store keeps a retention checkpoint and prunes.
	cps := []Checkpoint{signer.Sign(gatehouse.CheckpointRetention, nil, res.LastSeq, res.LastHash, baseTime)}
	src.prune(res.LastSeq)
	rep, err := Verify(ctx, Events(src.snapshot()), cps, signer.Public())
	if err != nil || !rep.OK || rep.AnchorSeq != 60 || rep.Checked != 40 {
		t.Fatalf("verify the pruned log: %v, %v", rep, err)
	}
	// The archive verifies from the genesis to the anchor.
	_, archived := bucketEvents(t, bucket)
	rep, err = VerifyFrom(ctx, 0, Genesis(), Events(archived), cps, signer.Public())
	if err != nil || !rep.OK || rep.Checked != 60 || rep.Checkpoints != 1 || !bytes.Equal(rep.Head, res.LastHash) {
		t.Fatalf("verify the archive: %v, %v", rep, err)
	}

	// A second round continues from the anchor, capped by MaxSeq (the slowest export cursor).
	a.MaxSeq = 75
	res2, err := a.Archive(ctx, baseTime.Add(90*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Archived != 15 || res2.FirstSeq != 61 || res2.LastSeq != 75 || !bytes.Equal(res2.FirstPrevHash, res.LastHash) {
		t.Fatalf("second round %+v", res2)
	}
	src.prune(res2.LastSeq)
	cps = append(cps, signer.Sign(gatehouse.CheckpointRetention, &cps[0], res2.LastSeq, res2.LastHash, baseTime))
	rep, err = Verify(ctx, Events(src.snapshot()), cps, signer.Public())
	if err != nil || !rep.OK || rep.AnchorSeq != 75 || rep.Checked != 25 {
		t.Fatalf("verify after the second prune: %v, %v", rep, err)
	}

	// Nothing old enough: nothing archived, no checkpoint.
	res3, err := a.Archive(ctx, baseTime)
	if err != nil || res3.Archived != 0 {
		t.Fatalf("nothing to archive: %+v, %v", res3, err)
	}
}

func TestArchiveRefusesTamperedChain(t *testing.T) {
	ctx := context.Background()
	src := newMemSource(50)
	src.mu.Lock()
	src.events[29].Reason = "rewritten" // seq 30
	src.mu.Unlock()
	sink := &recSink{name: "archive"}
	a := &Archiver{Source: src, Sink: sink, BatchSize: 10}
	res, err := a.Archive(ctx, baseTime.Add(time.Hour))
	if err == nil || !strings.Contains(err.Error(), ProblemHashMismatch) {
		t.Fatalf("err = %v", err)
	}
	// The batches before the bad one were written and may be pruned.
	if res.Archived != 20 || res.LastSeq != 20 || len(sink.received()) != 20 {
		t.Fatalf("result %+v, sink got %d", res, len(sink.received()))
	}

	// A failing sink: nothing is reported archived.
	failing := &recSink{name: "archive"}
	failing.failing.Store(true)
	a = &Archiver{Source: newMemSource(5), Sink: failing}
	if res, err := a.Archive(ctx, baseTime.Add(time.Hour)); err == nil || res.Archived != 0 {
		t.Fatalf("failing sink: %+v, %v", res, err)
	}
}
