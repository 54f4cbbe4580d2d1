// Package state holds the pure (I/O-free) state-reconstruction logic behind the
// checkpoint endpoints the Pulumi CLI calls during an update:
//
//   - ApplyDelta rebuilds a verbatim checkpoint from a textual delta
//     (PATCH .../checkpointdelta);
//   - Replay rebuilds a deployment from journal entries
//     (PATCH .../journalentries, journalVersion 1).
//
// Nothing in this package panics on malformed input; every rejection wraps
// ErrBadDelta or ErrBadJournal so that HTTP handlers can map it to 400.
package state

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

// ErrBadDelta is wrapped by every error ApplyDelta returns.
var ErrBadDelta = errors.New("bad checkpoint delta")

// deltaPoint is the part of a gotextdiff span.Point we care about. The CLI
// (pkg/backend/httpstate/diffs.go, computeEdits) always sends line 1 and
// column 0 and encodes the position in Offset, a byte offset into the
// previously saved deployment JSON.
type deltaPoint struct {
	Offset *int64 `json:"offset"`
}

type deltaSpan struct {
	Start *deltaPoint `json:"start"`
	End   *deltaPoint `json:"end"`
}

// deltaEdit mirrors the JSON form of github.com/hexops/gotextdiff.TextEdit:
//
//	{"Span":{"uri":"","start":{"line":1,"column":0,"offset":A},"end":{...,"offset":B}},"NewText":"..."}
type deltaEdit struct {
	Span    *deltaSpan `json:"Span"`
	NewText string     `json:"NewText"`
}

// edit is a validated, decoded deltaEdit.
type edit struct {
	start, end int
	text       string
	index      int // position in the request, for error messages
}

// ApplyDelta applies deltaJSON, a JSON array of text edits as sent by the
// Pulumi CLI in PatchUpdateCheckpointDeltaRequest.DeploymentDelta, to base and
// returns the result, provided lowercase-hex(SHA-256(result)) == wantHashHex.
//
// Edits replace the byte range [start, end) of base with NewText. They are
// applied in order of (start, end) offset; the sort is stable, so several
// insertions at the same offset keep their request order. This is the order
// gotextdiff.ApplyEdits (SortTextEdits / span.Compare) uses. Offsets must lie
// within base, start must not exceed end and edits must not overlap.
//
// The result must not nest deeper than jsondepth.Max. base is never modified and the
// result never aliases it. All errors wrap ErrBadDelta.
func ApplyDelta(base []byte, deltaJSON json.RawMessage, wantHashHex string) ([]byte, error) {
	if len(bytes.TrimSpace(deltaJSON)) == 0 {
		return nil, fmt.Errorf("%w: empty delta", ErrBadDelta)
	}
	var raw []deltaEdit
	if err := json.Unmarshal(deltaJSON, &raw); err != nil {
		return nil, fmt.Errorf("%w: decoding edits: %v", ErrBadDelta, err)
	}

	n := int64(len(base))
	edits := make([]edit, len(raw))
	for i, e := range raw {
		if e.Span == nil || e.Span.Start == nil || e.Span.End == nil ||
			e.Span.Start.Offset == nil || e.Span.End.Offset == nil {
			return nil, fmt.Errorf("%w: edit %d: missing Span start/end offset", ErrBadDelta, i)
		}
		start, end := *e.Span.Start.Offset, *e.Span.End.Offset
		switch {
		case start < 0 || end < 0:
			return nil, fmt.Errorf("%w: edit %d: negative offset (start %d, end %d)", ErrBadDelta, i, start, end)
		case start > end:
			return nil, fmt.Errorf("%w: edit %d: start offset %d is after end offset %d", ErrBadDelta, i, start, end)
		case end > n:
			return nil, fmt.Errorf("%w: edit %d: end offset %d is beyond the %d-byte base checkpoint",
				ErrBadDelta, i, end, n)
		}
		edits[i] = edit{start: int(start), end: int(end), text: e.NewText, index: i}
	}

	slices.SortStableFunc(edits, func(a, b edit) int {
		if c := cmp.Compare(a.start, b.start); c != 0 {
			return c
		}
		return cmp.Compare(a.end, b.end)
	})

	size := len(base)
	for i, e := range edits {
		if i > 0 && e.start < edits[i-1].end {
			p := edits[i-1]
			return nil, fmt.Errorf("%w: edit %d [%d,%d) overlaps edit %d [%d,%d)",
				ErrBadDelta, e.index, e.start, e.end, p.index, p.start, p.end)
		}
		size += len(e.text) - (e.end - e.start)
	}

	out := make([]byte, 0, size)
	last := 0
	for _, e := range edits {
		out = append(out, base[last:e.start]...)
		out = append(out, e.text...)
		last = e.end
	}
	out = append(out, base[last:]...)

	// Edits are text: a shallow delta can make a deep document, which the request
	// decoder (and every later reader of the stored checkpoint) must never see.
	if err := jsondepth.Check(out, 0); err != nil {
		return nil, fmt.Errorf("%w: the result is %v", ErrBadDelta, err)
	}
	sum := sha256.Sum256(out)
	if got := hex.EncodeToString(sum[:]); got != wantHashHex {
		return nil, fmt.Errorf("%w: checkpoint hash mismatch: delta produces %s, request says %q",
			ErrBadDelta, got, truncate(wantHashHex, 80))
	}
	return out, nil
}

// truncate bounds client-supplied strings echoed in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
