package jsondepth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	fastjson "github.com/segmentio/encoding/json"
)

func nest(n int, open, close string) string {
	return strings.Repeat(open, n) + strings.Repeat(close, n)
}

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		doc  string
		deep bool
	}{
		{``, false},
		{`{}`, false},
		{nest(Max, "[", "]"), false},
		{nest(Max+1, "[", "]"), true},
		{nest(Max, `{"a":`, "}"), false},
		{nest(Max+1, `{"a":`, "}"), true},
		{`{"a":[1,2,{"b":"c"}]}`, false},
		{strings.Repeat("[", 5<<20), true},
		{strings.Repeat("[]", 5<<20), false},
		// Brackets in strings do not count, escaped quotes do not end them.
		{`"` + strings.Repeat("[", 2*Max) + `"`, false},
		{`["\"` + strings.Repeat("[", 2*Max) + `"]`, false},
		{`["\\\"` + strings.Repeat("{", 2*Max) + `"]`, false},
		{`["\\"` + strings.Repeat("[", 2*Max), true},
		{`["\\\\"` + strings.Repeat("[", 2*Max), true},
		{`"` + strings.Repeat(`\`, 3000), false}, // unterminated
		{strings.Repeat(" ", 3000) + "[1]", false},
	} {
		err := Check([]byte(c.doc), 0)
		if c.deep != (err != nil) || err != nil && !errors.Is(err, ErrTooDeep) {
			t.Errorf("Check(%.40q... len %d) = %v, want deep=%v", c.doc, len(c.doc), err, c.deep)
		}
		// Agrees with encoding/json on documents it can judge (its limit is 10,000).
		if c.deep && len(c.doc) < 2*Max+100 && json.Valid([]byte(c.doc)) {
			if err := Check([]byte(c.doc), 10000); err != nil {
				t.Errorf("at encoding/json's limit: %v", err)
			}
		}
	}
	if err := Check([]byte(nest(11, "[", "]")), 10); err == nil {
		t.Error("max 10 accepted 11 levels")
	}
	if err := Check([]byte(nest(10, "[", "]")), 10); err != nil {
		t.Error(err)
	}
}

// FuzzCheck: Check's depth agrees with encoding/json's (which counts the same way) on valid
// documents, and Check never panics.
func FuzzCheck(f *testing.F) {
	f.Add([]byte(`{"a":[1,"]]",{"b":"\"{"}]}`), uint8(2))
	f.Add([]byte(nest(40, "[", "]")), uint8(20))
	f.Fuzz(func(t *testing.T, b []byte, max uint8) {
		m := int(max) + 1
		err := Check(b, m)
		if !json.Valid(b) {
			return
		}
		if want := depth(t, b); (want > m) != (err != nil) {
			t.Fatalf("depth %d, max %d: Check = %v", want, m, err)
		}
	})
}

// depth is the nesting depth of a valid document, by encoding/json's tokenizer.
func depth(t *testing.T, b []byte) int {
	d, max := 0, 0
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return max
		}
		switch tok {
		case json.Delim('['), json.Delim('{'):
			d++
			max = maxInt(max, d)
		case json.Delim(']'), json.Delim('}'):
			d--
		}
	}
}

func maxInt(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// checkpoint is a 1,000-resource checkpoint request shaped like the CLI's (the same as
// httpapi's BenchmarkCheckpoint).
func checkpoint(n int) []byte {
	res := make([]map[string]any, 0, n)
	stackURN := "urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev"
	res = append(res, map[string]any{"urn": stackURN, "custom": false, "type": "pulumi:pulumi:Stack", "outputs": map[string]any{}, "created": "2026-11-21T00:00:00Z", "modified": "2026-11-21T00:00:00Z"})
	for i := 1; i < n; i++ {
		res = append(res, map[string]any{
			"urn": fmt.Sprintf("urn:pulumi:dev::proj::bench:index:Comp::comp-%d", i), "custom": false, "type": "bench:index:Comp",
			"parent": stackURN, "inputs": map[string]any{}, "outputs": map[string]any{"index": i, "name": fmt.Sprintf("comp-%d", i)},
			"propertyDependencies": map[string]any{}, "created": "2026-11-21T00:00:00Z", "modified": "2026-11-21T00:00:00Z",
			"sourcePosition": "project:///index.js#12,5",
		})
	}
	dep, _ := json.Marshal(map[string]any{
		"manifest":          map[string]any{"time": "2026-11-21T00:00:00Z", "magic": "x", "version": "v3.260.0"},
		"secrets_providers": map[string]any{"type": "service", "state": map[string]any{"url": "http://127.0.0.1:8080", "owner": "acme", "project": "proj", "stack": "dev"}},
		"resources":         res,
	})
	b, _ := json.Marshal(map[string]any{"version": 3, "deployment": json.RawMessage(dep)})
	return b
}

// BenchmarkCheck compares Check with the decode it guards (a checkpoint request decoded the
// way the checkpoint call decodes it).
func BenchmarkCheck(b *testing.B) {
	doc := checkpoint(1000)
	b.Run("check", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			if err := Check(doc, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.SetBytes(int64(len(doc)))
		for b.Loop() {
			var req struct {
				Version    int             `json:"version"`
				Deployment json.RawMessage `json:"deployment"`
			}
			if _, err := fastjson.Parse(doc, &req, fastjson.ZeroCopy); err != nil {
				b.Fatal(err)
			}
		}
	})
}
