package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// wireEdit renders one edit exactly as the CLI sends it (gotextdiff.TextEdit
// marshalled by encoding/json; span.NewPoint(1, 0, off) cleans column to 1).
func wireEdit(start, end int, text string) string {
	t, _ := json.Marshal(text)
	return fmt.Sprintf(`{"Span":{"uri":"","start":{"line":1,"column":1,"offset":%d},`+
		`"end":{"line":1,"column":1,"offset":%d}},"NewText":%s}`, start, end, t)
}

func wireDelta(edits ...string) json.RawMessage {
	return json.RawMessage("[" + strings.Join(edits, ",") + "]")
}

func TestApplyDelta(t *testing.T) {
	t.Parallel()
	const base = `{"a":1,"b":2}`
	tests := []struct {
		name  string
		base  string
		delta json.RawMessage
		want  string
	}{
		{"no edits", base, wireDelta(), base},
		{"null delta", base, json.RawMessage("null"), base},
		{"replace", base, wireDelta(wireEdit(5, 6, "42")), `{"a":42,"b":2}`},
		{"insert at start", base, wireDelta(wireEdit(0, 0, " ")), " " + base},
		{"insert at end", base, wireDelta(wireEdit(13, 13, "\n")), base + "\n"},
		{"delete", base, wireDelta(wireEdit(6, 12, "")), `{"a":1}`},
		{"replace everything", base, wireDelta(wireEdit(0, 13, "{}")), `{}`},
		{"empty base insert", "", wireDelta(wireEdit(0, 0, "{}")), `{}`},
		{
			"unsorted edits are sorted by offset", base,
			wireDelta(wireEdit(11, 12, "3"), wireEdit(5, 6, "0")),
			`{"a":0,"b":3}`,
		},
		{
			"insertions at one offset keep request order", base,
			wireDelta(wireEdit(1, 1, "x"), wireEdit(1, 1, "y"), wireEdit(1, 1, "z")),
			`{xyz"a":1,"b":2}`,
		},
		{
			"insertion sorts before replacement at same start", base,
			wireDelta(wireEdit(5, 6, "9"), wireEdit(5, 5, "-")),
			`{"a":-9,"b":2}`,
		},
		{
			"adjacent edits", base,
			wireDelta(wireEdit(5, 6, "7"), wireEdit(6, 7, ";")),
			`{"a":7;"b":2}`,
		},
		{
			"multi-byte UTF-8 byte offsets", `{"n":"héllo"}`,
			wireDelta(wireEdit(6, 12, "wörld")), // "héllo" is 6 bytes
			`{"n":"wörld"}`,
		},
		{
			"lowercase field names decode too", base,
			json.RawMessage(`[{"span":{"start":{"offset":5},"end":{"offset":6}},"newText":"5"}]`),
			`{"a":5,"b":2}`,
		},
		{
			"only offsets matter", base,
			json.RawMessage(`[{"Span":{"uri":"file:///x","start":{"line":7,"column":9,"offset":5},` +
				`"end":{"line":0,"offset":6}},"NewText":"8"}]`),
			`{"a":8,"b":2}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := []byte(tt.base)
			got, err := ApplyDelta(b, tt.delta, sha([]byte(tt.want)))
			if err != nil {
				t.Fatalf("ApplyDelta: %v", err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if string(b) != tt.base {
				t.Fatalf("base modified: %q", b)
			}
			if len(got) > 0 && len(b) > 0 && &got[0] == &b[0] {
				t.Fatal("result aliases base")
			}
		})
	}
}

func TestApplyDeltaErrors(t *testing.T) {
	t.Parallel()
	const base = `{"a":1,"b":2}`
	okHash := sha([]byte(`{"a":42,"b":2}`))
	tests := []struct {
		name  string
		delta json.RawMessage
		hash  string
		msg   string
	}{
		{"empty", json.RawMessage(""), okHash, "empty delta"},
		{"whitespace", json.RawMessage("  \n"), okHash, "empty delta"},
		{"not JSON", json.RawMessage("[{"), okHash, "decoding edits"},
		{"object not array", json.RawMessage(`{"Span":{}}`), okHash, "decoding edits"},
		{"trailing garbage", json.RawMessage(`[] []`), okHash, "decoding edits"},
		{"string offset", json.RawMessage(`[{"Span":{"start":{"offset":"1"},"end":{"offset":2}}}]`), okHash, "decoding edits"},
		{"fractional offset", json.RawMessage(`[{"Span":{"start":{"offset":1.5},"end":{"offset":2}}}]`), okHash, "decoding edits"},
		{"huge offset", json.RawMessage(`[{"Span":{"start":{"offset":1e30},"end":{"offset":2}}}]`), okHash, "decoding edits"},
		{"missing span", json.RawMessage(`[{"NewText":"x"}]`), okHash, "missing Span"},
		{"null span", json.RawMessage(`[{"Span":null,"NewText":"x"}]`), okHash, "missing Span"},
		{"missing end", json.RawMessage(`[{"Span":{"start":{"offset":1}},"NewText":"x"}]`), okHash, "missing Span"},
		{"missing offset", json.RawMessage(`[{"Span":{"start":{"line":1},"end":{"offset":1}}}]`), okHash, "missing Span"},
		{"negative offset", wireDelta(wireEdit(-1, 2, "")), okHash, "negative offset"},
		{"start after end", wireDelta(wireEdit(6, 5, "")), okHash, "is after end offset"},
		{"end beyond base", wireDelta(wireEdit(5, 14, "")), okHash, "beyond the 13-byte base"},
		{"start beyond base", wireDelta(wireEdit(14, 14, "")), okHash, "beyond the 13-byte base"},
		{"overlap", wireDelta(wireEdit(2, 6, ""), wireEdit(5, 8, "")), okHash, "overlaps"},
		{"contained", wireDelta(wireEdit(1, 10, ""), wireEdit(3, 4, "")), okHash, "overlaps"},
		{"replacement then insertion inside it", wireDelta(wireEdit(5, 7, ""), wireEdit(6, 6, "")), okHash, "overlaps"},
		{"hash mismatch", wireDelta(wireEdit(5, 6, "43")), okHash, "hash mismatch"},
		{"uppercase hash", wireDelta(wireEdit(5, 6, "42")), strings.ToUpper(okHash), "hash mismatch"},
		{"empty hash", wireDelta(wireEdit(5, 6, "42")), "", "hash mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ApplyDelta([]byte(base), tt.delta, tt.hash)
			if err == nil {
				t.Fatalf("expected error, got %q", got)
			}
			if !errors.Is(err, ErrBadDelta) {
				t.Fatalf("error %v does not wrap ErrBadDelta", err)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %q does not mention %q", err, tt.msg)
			}
			if got != nil {
				t.Fatalf("non-nil result with error: %q", got)
			}
		})
	}
}

// checkpointPair renders a verbatim checkpoint of n resources the way the CLI
// does (one span per resource, see marshalSpannedDeployment in
// pkg/backend/httpstate/diffs.go) before and after changing resource k, plus
// the single edit the CLI's line diff produces for that change.
func checkpointPair(tb testing.TB, n, k int) (before, after []byte, delta json.RawMessage) {
	tb.Helper()
	enc := func(r apitype.ResourceV3) []byte {
		b, err := json.Marshal(r)
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	head := []byte(`{"version":3,"deployment":{"manifest":{"time":"2025-01-01T00:00:00Z","magic":"m","version":"v3.243.0"},"metadata":{},"resources":[`)
	tail := []byte(`]}}`)
	var b, a bytes.Buffer
	b.Write(head)
	a.Write(head)
	var start, end int
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
			a.WriteByte(',')
		}
		r := benchResource(i)
		old := enc(r)
		if i == k {
			r.Outputs["arn"] = "arn:aws:s3:::changed"
			r.Inputs["tags"] = map[string]any{"env": "prod", "rev": "2"}
			start = b.Len()
			end = start + len(old)
			a.Write(enc(r))
		} else {
			a.Write(old)
		}
		b.Write(old)
	}
	b.Write(tail)
	a.Write(tail)
	newText := a.Bytes()[start : start+a.Len()-b.Len()+(end-start)]
	return b.Bytes(), a.Bytes(), wireDelta(wireEdit(start, end, string(newText)))
}

func benchResource(i int) apitype.ResourceV3 {
	name := fmt.Sprintf("bucket-%05d", i)
	return apitype.ResourceV3{
		URN:      resource.URN("urn:pulumi:dev::proj::aws:s3/bucket:Bucket::" + name),
		Custom:   true,
		ID:       resource.ID(name + "-0a1b2c3d"),
		Type:     "aws:s3/bucket:Bucket",
		Provider: providerRef,
		Inputs: map[string]any{
			"bucket": name, "acl": "private", "forceDestroy": false,
			"tags": map[string]any{"env": "prod"},
		},
		Outputs: map[string]any{
			"bucket": name, "acl": "private", "arn": "arn:aws:s3:::" + name,
			"region": "eu-west-1", "hostedZoneId": "Z1BKCTXD74EZPE",
			"tags": map[string]any{"env": "prod"},
		},
		Parent:       stackURN,
		Dependencies: []resource.URN{stackURN},
	}
}

func TestApplyDeltaRealisticCheckpoint(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 50} {
		for _, k := range []int{0, n - 1} {
			before, after, delta := checkpointPair(t, n, k)
			got, err := ApplyDelta(before, delta, sha(after))
			if err != nil {
				t.Fatalf("n=%d k=%d: %v", n, k, err)
			}
			if !bytes.Equal(got, after) {
				t.Fatalf("n=%d k=%d: result differs from expected checkpoint", n, k)
			}
			if !json.Valid(got) {
				t.Fatalf("n=%d k=%d: result is not JSON", n, k)
			}
		}
	}
}

func BenchmarkApplyDelta(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		before, after, delta := checkpointPair(b, n, n/2)
		hash := sha(after)
		b.Run(fmt.Sprintf("resources=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(before)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ApplyDelta(before, delta, hash); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzApplyDelta checks that ApplyDelta never panics and that whatever it
// accepts is consistent: the result hashes to the requested hash and the
// base is untouched.
func FuzzApplyDelta(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":2}`), []byte(wireDelta(wireEdit(5, 6, "42"))), true)
	f.Add([]byte(`{"a":1,"b":2}`), []byte(wireDelta(wireEdit(11, 12, "3"), wireEdit(5, 6, "0"))), false)
	f.Add([]byte(`{"a":1,"b":2}`), []byte(wireDelta(wireEdit(1, 1, "x"), wireEdit(1, 1, "y"))), true)
	f.Add([]byte(""), []byte(`[]`), true)
	f.Add([]byte("abc"), []byte(`null`), true)
	f.Add([]byte("abc"), []byte(`[{"Span":{"start":{"offset":2},"end":{"offset":1}}}]`), true)
	f.Add([]byte("abc"), []byte(`[{"Span":{"start":{"offset":-1},"end":{"offset":9223372036854775807}}}]`), true)
	f.Add([]byte("héllo"), []byte(wireDelta(wireEdit(1, 3, "e"))), true)
	f.Fuzz(func(t *testing.T, base, delta []byte, useResultHash bool) {
		orig := bytes.Clone(base)
		// First pass with a hash that cannot match, to learn the result.
		got, err := ApplyDelta(base, delta, "-")
		if err == nil {
			t.Fatalf("accepted impossible hash")
		}
		if !errors.Is(err, ErrBadDelta) {
			t.Fatalf("error does not wrap ErrBadDelta: %v", err)
		}
		if got != nil {
			t.Fatal("result returned with error")
		}
		if !bytes.Equal(base, orig) {
			t.Fatal("base modified")
		}
		if !useResultHash || !strings.Contains(err.Error(), "hash mismatch") {
			return
		}
		// The edits were valid: the result must be reproducible with the right hash.
		msg := err.Error()
		i := strings.Index(msg, "delta produces ")
		hash := msg[i+len("delta produces ") : i+len("delta produces ")+64]
		got, err = ApplyDelta(base, delta, hash)
		if err != nil {
			t.Fatalf("valid delta rejected with its own hash: %v", err)
		}
		if sha(got) != hash {
			t.Fatal("result does not match hash")
		}
		if !bytes.Equal(base, orig) {
			t.Fatal("base modified")
		}
	})
}

// TestApplyDeltaTooDeep: a delta is text, so a small, shallow delta could turn the stored
// checkpoint into a document nested deep enough to crash the JSON decoder of whoever reads
// it next; such a result is refused, even with the right hash.
func TestApplyDeltaTooDeep(t *testing.T) {
	t.Parallel()
	base := []byte(`{"a":1,"b":2}`)
	deep := strings.Repeat("[", 1<<20)
	want := append(append([]byte(`{"a":`), deep...), `,"b":2}`...)
	_, err := ApplyDelta(base, wireDelta(wireEdit(5, 6, deep)), sha(want))
	if !errors.Is(err, ErrBadDelta) || !strings.Contains(err.Error(), "nested too deeply") {
		t.Fatalf("deep result: %v", err)
	}
	// At the limit it is fine.
	ok := strings.Repeat("[", 998) + strings.Repeat("]", 998)
	want = append(append([]byte(`{"a":`), ok...), `,"b":2}`...)
	if _, err := ApplyDelta(base, wireDelta(wireEdit(5, 6, ok)), sha(want)); err != nil {
		t.Fatal(err)
	}
}
