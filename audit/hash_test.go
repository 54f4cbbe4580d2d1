package audit

import (
	"bytes"
	"context"
	"reflect"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func TestGenesis(t *testing.T) {
	g := Genesis()
	if len(g) != 32 || !bytes.Equal(g, make([]byte, 32)) {
		t.Fatalf("Genesis() = %x, want 32 zero bytes", g)
	}
	g[0] = 1 // callers get a fresh slice
	if Genesis()[0] != 0 {
		t.Fatal("Genesis returned shared memory")
	}
}

// TestHashEveryField mutates every field of AuditEvent (found by reflection, so a field
// added later is covered or fails this test) and checks that the hash changes.
func TestHashEveryField(t *testing.T) {
	base := sampleEvent(3)
	base.Seq = 42
	prev := bytes.Repeat([]byte{7}, 32)
	h0 := Hash(prev, &base)
	if len(h0) != 32 {
		t.Fatalf("hash has %d bytes", len(h0))
	}
	if !bytes.Equal(h0, Hash(prev, &base)) {
		t.Fatal("Hash is not deterministic")
	}
	typ := reflect.TypeOf(base)
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		if f.Name == "PrevHash" || f.Name == "Hash" {
			continue // not hashed: prev is the argument, Hash the result
		}
		e := cloneChain([]gatehouse.AuditEvent{base})[0]
		v := reflect.ValueOf(&e).Elem().Field(i)
		switch v.Interface().(type) {
		case string:
			v.SetString(v.String() + "x")
		case int64:
			v.SetInt(v.Int() + 1)
		case time.Time:
			v.Set(reflect.ValueOf(e.Time.Add(time.Nanosecond)))
		case map[string]string:
			e.Details["update"] += "x"
		default:
			t.Fatalf("field %s has type %s: teach this test (and Hash) about it", f.Name, f.Type)
		}
		if bytes.Equal(Hash(prev, &e), h0) {
			t.Errorf("changing %s does not change the hash", f.Name)
		}
	}
	// Details: adding, removing, renaming a key.
	for name, mut := range map[string]func(d map[string]string){
		"add key":    func(d map[string]string) { d["new"] = "" },
		"remove key": func(d map[string]string) { delete(d, "kind") },
		"rename key": func(d map[string]string) { d["kind2"] = d["kind"]; delete(d, "kind") },
	} {
		e := cloneChain([]gatehouse.AuditEvent{base})[0]
		mut(e.Details)
		if bytes.Equal(Hash(prev, &e), h0) {
			t.Errorf("Details %s does not change the hash", name)
		}
	}
	// prev.
	other := bytes.Clone(prev)
	other[31] ^= 1
	if bytes.Equal(Hash(other, &base), h0) {
		t.Error("changing prev does not change the hash")
	}
	// PrevHash and Hash fields are not inputs.
	e := base
	e.PrevHash, e.Hash = []byte("x"), []byte("y")
	if !bytes.Equal(Hash(prev, &e), h0) {
		t.Error("Hash depends on e.PrevHash or e.Hash")
	}
}

// TestHashUnambiguous checks that moving bytes between adjacent fields changes the hash
// (length prefixes), including between Details keys and values.
func TestHashUnambiguous(t *testing.T) {
	a := gatehouse.AuditEvent{Seq: 1, OrgName: "ab", ActorKind: "c"}
	b := gatehouse.AuditEvent{Seq: 1, OrgName: "a", ActorKind: "bc"}
	if bytes.Equal(Hash(nil, &a), Hash(nil, &b)) {
		t.Error("field boundary is ambiguous")
	}
	c := gatehouse.AuditEvent{Seq: 1, Details: map[string]string{"a": "bc"}}
	d := gatehouse.AuditEvent{Seq: 1, Details: map[string]string{"ab": "c"}}
	if bytes.Equal(Hash(nil, &c), Hash(nil, &d)) {
		t.Error("Details key/value boundary is ambiguous")
	}
	e := gatehouse.AuditEvent{Seq: 1, Details: map[string]string{"a": "", "b": ""}}
	f := gatehouse.AuditEvent{Seq: 1, Details: map[string]string{"a": "\x00\x00\x00\x00\x00\x00\x00\x01b"}}
	if bytes.Equal(Hash(nil, &e), Hash(nil, &f)) {
		t.Error("Details count is ambiguous")
	}
}

func TestHashCanonicalTimeAndDetails(t *testing.T) {
	e := sampleEvent(1)
	h := Hash(nil, &e)
	// The same instant in another zone, with a monotonic reading stripped or not.
	e2 := e
	e2.Time = e.Time.In(time.FixedZone("X", 5*3600+1800))
	if !bytes.Equal(Hash(nil, &e2), h) {
		t.Error("hash depends on the time zone")
	}
	// Details map iteration order is random: hash many times.
	e.Details = map[string]string{}
	for _, k := range []string{"q", "w", "e", "r", "t", "y", "u", "i", "o", "p", "a", "s", "d", "f", "g", "h", "j", "k", "l", "z"} {
		e.Details[k] = k + k
	}
	h = Hash(nil, &e)
	for i := 0; i < 50; i++ {
		if !bytes.Equal(Hash(nil, &e), h) {
			t.Fatal("hash depends on map iteration order")
		}
	}
	// nil and empty Details are the same.
	e.Details = nil
	h = Hash(nil, &e)
	e.Details = map[string]string{}
	if !bytes.Equal(Hash(nil, &e), h) {
		t.Error("nil and empty Details hash differently")
	}
}

// TestHashSurvivesJSON checks that events with invalid UTF-8 keep their hash through a
// JSONL round trip (encoding/json writes U+FFFD for each invalid byte).
func TestHashSurvivesJSON(t *testing.T) {
	var chain []gatehouse.AuditEvent
	e := sampleEvent(1)
	e.Target = "bad\xffbytes\xfe\xfd"
	e.Details = map[string]string{"k\xc3": "v\xe2\x82"}
	chain = chainAppend(chain, e)
	chain = chainAppend(chain, sampleEvent(2))
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, Events(chain)); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(context.Background(), ReadJSONL(&buf), nil, nil)
	if err != nil || !rep.OK || rep.Checked != 2 {
		t.Fatalf("Verify after JSON round trip: %v, %v", rep, err)
	}
}
