package audit

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

// jsonEvent is the JSON form of an event in JSONL output, webhook batches and blob objects.
// It carries every field, so an export can be verified with Verify (see ReadJSONL).
type jsonEvent struct {
	Seq       int64             `json:"seq"`
	ID        string            `json:"id"`
	Time      string            `json:"time"` // RFC 3339, UTC, nanoseconds
	OrgID     int64             `json:"orgId"`
	OrgName   string            `json:"orgName"`
	ActorKind string            `json:"actorKind"`
	ActorName string            `json:"actorName"`
	UserID    int64             `json:"userId"`
	TokenID   string            `json:"tokenId"`
	SourceIP  string            `json:"sourceIP"`
	UserAgent string            `json:"userAgent"`
	Action    string            `json:"action"`
	Target    string            `json:"target"`
	Outcome   string            `json:"outcome"`
	Reason    string            `json:"reason"`
	RequestID string            `json:"requestId"`
	Details   map[string]string `json:"details,omitempty"`
	PrevHash  string            `json:"prevHash"` // hex
	Hash      string            `json:"hash"`     // hex
}

func toJSONEvent(e *gatehouse.AuditEvent) jsonEvent {
	return jsonEvent{
		Seq: e.Seq, ID: e.ID, Time: e.Time.UTC().Format(time.RFC3339Nano),
		OrgID: e.OrgID, OrgName: e.OrgName, ActorKind: e.ActorKind, ActorName: e.ActorName,
		UserID: e.UserID, TokenID: e.TokenID, SourceIP: e.SourceIP, UserAgent: e.UserAgent,
		Action: e.Action, Target: e.Target, Outcome: e.Outcome, Reason: e.Reason,
		RequestID: e.RequestID, Details: e.Details,
		PrevHash: hex.EncodeToString(e.PrevHash), Hash: hex.EncodeToString(e.Hash),
	}
}

func (j *jsonEvent) event() (gatehouse.AuditEvent, error) {
	t, err := time.Parse(time.RFC3339Nano, j.Time)
	if err != nil {
		return gatehouse.AuditEvent{}, fmt.Errorf("seq %d: bad time: %w", j.Seq, err)
	}
	prev, err := hex.DecodeString(j.PrevHash)
	if err != nil {
		return gatehouse.AuditEvent{}, fmt.Errorf("seq %d: bad prevHash: %w", j.Seq, err)
	}
	h, err := hex.DecodeString(j.Hash)
	if err != nil {
		return gatehouse.AuditEvent{}, fmt.Errorf("seq %d: bad hash: %w", j.Seq, err)
	}
	return gatehouse.AuditEvent{
		Seq: j.Seq, ID: j.ID, Time: t.UTC(),
		OrgID: j.OrgID, OrgName: j.OrgName, ActorKind: j.ActorKind, ActorName: j.ActorName,
		UserID: j.UserID, TokenID: j.TokenID, SourceIP: j.SourceIP, UserAgent: j.UserAgent,
		Action: j.Action, Target: j.Target, Outcome: j.Outcome, Reason: j.Reason,
		RequestID: j.RequestID, Details: j.Details, PrevHash: prev, Hash: h,
	}, nil
}

// appendJSON appends the JSON form of e and a newline to b.
func appendJSON(b []byte, e *gatehouse.AuditEvent) ([]byte, error) {
	buf := bytes.NewBuffer(b)
	enc := json.NewEncoder(buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(toJSONEvent(e)); err != nil {
		return b, err
	}
	return buf.Bytes(), nil
}

// WriteJSONL writes events as JSON Lines: one object per line with every field of the event
// (seq, id, time as RFC 3339 UTC with nanoseconds, orgId, orgName, actorKind, actorName,
// userId, tokenId, sourceIP, userAgent, action, target, outcome, reason, requestId,
// details, and prevHash and hash in hex). ReadJSONL reads it back, hash-exact, so an export
// or archive can be verified with Verify.
func WriteJSONL(w io.Writer, events iter.Seq2[gatehouse.AuditEvent, error]) error {
	bw := bufio.NewWriter(w)
	var line []byte
	for e, err := range events {
		if err != nil {
			return err
		}
		line, err = appendJSON(line[:0], &e)
		if err != nil {
			return fmt.Errorf("audit: encoding event %d: %w", e.Seq, err)
		}
		if _, err := bw.Write(line); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// MaxJSONLine is the longest line ReadJSONL accepts.
const MaxJSONLine = 8 << 20

// ReadJSONL returns an iterator over the events of JSON Lines written by WriteJSONL (or a
// file, webhook or blob sink in the jsonl format). Empty lines are skipped; a line that is
// not a valid event, or longer than MaxJSONLine, ends the iteration with an error.
func ReadJSONL(r io.Reader) iter.Seq2[gatehouse.AuditEvent, error] {
	return func(yield func(gatehouse.AuditEvent, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), MaxJSONLine)
		lineNo := 0
		for sc.Scan() {
			lineNo++
			line := bytes.TrimSpace(sc.Bytes())
			if len(line) == 0 {
				continue
			}
			if err := jsondepth.Check(line, 0); err != nil {
				yield(gatehouse.AuditEvent{}, fmt.Errorf("audit: JSONL line %d: %w", lineNo, err))
				return
			}
			var j jsonEvent
			dec := json.NewDecoder(bytes.NewReader(line))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&j); err != nil {
				yield(gatehouse.AuditEvent{}, fmt.Errorf("audit: JSONL line %d: %w", lineNo, err))
				return
			}
			e, err := j.event()
			if err != nil {
				yield(gatehouse.AuditEvent{}, fmt.Errorf("audit: JSONL line %d: %w", lineNo, err))
				return
			}
			if !yield(e, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			if errors.Is(err, bufio.ErrTooLong) {
				err = fmt.Errorf("line %d is longer than %d bytes", lineNo+1, MaxJSONLine)
			}
			yield(gatehouse.AuditEvent{}, fmt.Errorf("audit: reading JSONL: %w", err))
		}
	}
}
