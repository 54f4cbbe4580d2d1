package audit

import (
	"bufio"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// The forms a checkpoint travels in besides the database: its JSON (a checkpoint file kept
// outside the database for `gatehouse audit verify --checkpoint`), and the details of the
// audit:checkpoint and audit:prune events that record it (so every sink receives it).

// FromStored converts a stored checkpoint to the form Verify checks.
func FromStored(c gatehouse.AuditCheckpoint) Checkpoint {
	return Checkpoint{Seq: c.Seq, Hash: c.Hash, Time: c.Time, KeyID: c.KeyID, Signature: c.Signature,
		Kind: c.Kind, Index: c.Index, PrevSeq: c.PrevSeq, Prev: c.Prev}
}

// Stored converts cp to the form the store keeps.
func (cp *Checkpoint) Stored() *gatehouse.AuditCheckpoint {
	return &gatehouse.AuditCheckpoint{Seq: cp.Seq, Hash: cp.Hash, Time: cp.Time, KeyID: cp.KeyID, Signature: cp.Signature,
		Kind: cp.Kind, Index: cp.Index, PrevSeq: cp.PrevSeq, Prev: cp.Prev}
}

// checkpointJSON is the JSON form of a checkpoint.
type checkpointJSON struct {
	Kind      string `json:"kind"`
	Index     int64  `json:"index"`
	Seq       int64  `json:"seq"`
	Hash      string `json:"hash"` // hex
	Time      string `json:"time"` // RFC 3339, UTC
	KeyID     string `json:"keyId"`
	Signature string `json:"signature"`         // base64
	PrevSeq   int64  `json:"prevSeq,omitempty"` // chained checkpoints
	Prev      string `json:"prev,omitempty"`    // hex
}

// MarshalJSON encodes cp as {"kind", "index", "seq", "hash" (hex), "time" (RFC 3339),
// "keyId", "signature" (base64), "prevSeq", "prev" (hex)}.
func (cp Checkpoint) MarshalJSON() ([]byte, error) {
	return json.Marshal(checkpointJSON{
		Kind: cp.Kind, Index: cp.Index, Seq: cp.Seq, Hash: hex.EncodeToString(cp.Hash),
		Time: cp.Time.UTC().Format(time.RFC3339Nano), KeyID: cp.KeyID,
		Signature: base64.StdEncoding.EncodeToString(cp.Signature),
		PrevSeq:   cp.PrevSeq, Prev: hex.EncodeToString(cp.Prev),
	})
}

// UnmarshalJSON decodes the form MarshalJSON writes.
func (cp *Checkpoint) UnmarshalJSON(b []byte) error {
	var j checkpointJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	c, err := checkpointFromStrings(j.Kind, strconv.FormatInt(j.Index, 10), strconv.FormatInt(j.Seq, 10), j.Hash, j.Time,
		j.KeyID, j.Signature, strconv.FormatInt(j.PrevSeq, 10), j.Prev)
	if err != nil {
		return err
	}
	*cp = c
	return nil
}

// CheckpointDetails returns the details of the audit event that records cp.
func CheckpointDetails(cp Checkpoint) map[string]string {
	d := map[string]string{
		"kind": cp.Kind, "seq": strconv.FormatInt(cp.Seq, 10), "hash": hex.EncodeToString(cp.Hash),
		"checkpointTime": cp.Time.UTC().Format(time.RFC3339Nano), "keyId": cp.KeyID,
		"signature": base64.StdEncoding.EncodeToString(cp.Signature),
	}
	if cp.Index > 0 {
		d["index"] = strconv.FormatInt(cp.Index, 10)
		d["prevSeq"] = strconv.FormatInt(cp.PrevSeq, 10)
		d["prev"] = hex.EncodeToString(cp.Prev)
	}
	return d
}

// CheckpointFromEvent returns the checkpoint an audit:checkpoint or audit:prune event
// records (false for any other event).
func CheckpointFromEvent(e *gatehouse.AuditEvent) (Checkpoint, bool, error) {
	if e.Action != gatehouse.AuditActionCheckpoint && e.Action != gatehouse.AuditActionPrune {
		return Checkpoint{}, false, nil
	}
	d := e.Details
	idx, prevSeq := d["index"], d["prevSeq"]
	if idx == "" {
		idx, prevSeq = "0", "0"
	}
	cp, err := checkpointFromStrings(d["kind"], idx, d["seq"], d["hash"], d["checkpointTime"], d["keyId"], d["signature"], prevSeq, d["prev"])
	if err != nil {
		return Checkpoint{}, false, fmt.Errorf("audit: the %s event at seq %d: %w", e.Action, e.Seq, err)
	}
	return cp, true, nil
}

func checkpointFromStrings(kind, index, seq, hash, tm, keyID, sig, prevSeq, prev string) (Checkpoint, error) {
	var cp Checkpoint
	var err error
	cp.Kind, cp.KeyID = kind, keyID
	if cp.Index, err = strconv.ParseInt(index, 10, 64); err != nil {
		return cp, fmt.Errorf("checkpoint: bad index %q", index)
	}
	if cp.Seq, err = strconv.ParseInt(seq, 10, 64); err != nil || cp.Seq < 1 {
		return cp, fmt.Errorf("checkpoint: bad seq %q", seq)
	}
	if cp.Hash, err = hex.DecodeString(hash); err != nil || len(cp.Hash) != HashSize {
		return cp, fmt.Errorf("checkpoint: bad hash %q", hash)
	}
	if cp.Time, err = time.Parse(time.RFC3339Nano, tm); err != nil {
		return cp, fmt.Errorf("checkpoint: bad time %q", tm)
	}
	if cp.Signature, err = base64.StdEncoding.DecodeString(sig); err != nil || len(cp.Signature) == 0 {
		return cp, errors.New("checkpoint: bad signature (want base64)")
	}
	if cp.PrevSeq, err = strconv.ParseInt(prevSeq, 10, 64); err != nil {
		return cp, fmt.Errorf("checkpoint: bad prevSeq %q", prevSeq)
	}
	if cp.Prev, err = hex.DecodeString(prev); err != nil {
		return cp, fmt.Errorf("checkpoint: bad prev %q", prev)
	}
	if len(cp.Prev) == 0 {
		cp.Prev = nil
	}
	return cp, nil
}

// ReadCheckpointFile reads an outside reference for Verify: the last checkpoint in r, which
// holds either checkpoint JSON objects (as `gatehouse audit checkpoint` prints them) or
// exported events (JSON Lines, as a file or blob sink writes them, or the JSON arrays a
// webhook receives; the audit:checkpoint and audit:prune events carry their checkpoints),
// one JSON value after another.
func ReadCheckpointFile(r io.Reader) (Checkpoint, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 1<<16))
	var last *Checkpoint
	for n := 1; ; n++ {
		var val json.RawMessage
		err := dec.Decode(&val)
		if errors.Is(err, io.EOF) {
			break
		}
		var objs []map[string]json.RawMessage
		if err == nil {
			if len(val) > 0 && val[0] == '[' {
				err = json.Unmarshal(val, &objs)
			} else {
				objs = append(objs, nil)
				err = json.Unmarshal(val, &objs[0])
			}
		}
		if err != nil {
			return Checkpoint{}, fmt.Errorf("audit: checkpoint file, value %d: %w", n, err)
		}
		for _, raw := range objs {
			cp, err := checkpointInValue(raw)
			if err != nil {
				return Checkpoint{}, fmt.Errorf("audit: checkpoint file, value %d: %w", n, err)
			}
			if cp != nil {
				last = cp
			}
		}
	}
	if last == nil {
		return Checkpoint{}, errors.New("audit: the checkpoint file holds no checkpoint (neither checkpoint JSON nor audit:checkpoint events)")
	}
	return *last, nil
}

// checkpointInValue returns the checkpoint a JSON object is or carries (nil if none).
func checkpointInValue(raw map[string]json.RawMessage) (*Checkpoint, error) {
	if _, isCP := raw["signature"]; isCP {
		b, _ := json.Marshal(raw)
		var cp Checkpoint
		if err := json.Unmarshal(b, &cp); err != nil {
			return nil, err
		}
		return &cp, nil
	}
	var act string
	if a, ok := raw["action"]; !ok || json.Unmarshal(a, &act) != nil ||
		(act != gatehouse.AuditActionCheckpoint && act != gatehouse.AuditActionPrune) {
		return nil, nil
	}
	var e struct {
		Seq     int64             `json:"seq"`
		Details map[string]string `json:"details"`
	}
	b, _ := json.Marshal(raw)
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	cp, ok, err := CheckpointFromEvent(&gatehouse.AuditEvent{Seq: e.Seq, Action: act, Details: e.Details})
	if err != nil || !ok {
		return nil, err
	}
	return &cp, nil
}
