package scim

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, c := range []struct {
		in, attr, value string
	}{
		{`userName eq "dana@example.com"`, "userName", "dana@example.com"},
		{`USERNAME EQ "x"`, "userName", "x"},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a\"b"`, "userName", `a"b`},
		{`  userName   eq   "8d4b0c1e-7b7f-4c41"  `, "userName", "8d4b0c1e-7b7f-4c41"},
	} {
		f, err := ParseFilter(c.in, SchemaUser, "userName")
		if err != nil || f.Attr != c.attr || f.Value != c.value {
			t.Errorf("ParseFilter(%q) = %+v, %v", c.in, f, err)
		}
	}
	for _, in := range []string{
		`userName co "x"`, `userName sw "x"`, `emails eq "x"`, `userName eq x`, `userName eq "x" and displayName eq "y"`,
		`userName eq "x" or userName eq "y"`, `userName pr`, `userName`, ``, `userName eq "unterminated`, `(userName eq "x")`,
		`userName eq "x"]`, strings.Repeat("a", 2000),
	} {
		if _, err := ParseFilter(in, SchemaUser, "userName"); err == nil || TypeOf(err) != InvalidFilter {
			t.Errorf("ParseFilter(%q) = %v, want invalidFilter", in, err)
		}
	}
}

func TestParsePath(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"displayName", "displayName"},
		{"name.givenName", "name.givenName"},
		{`emails[type eq "work"].value`, `emails[type eq "work"].value`},
		{`members[value eq "42"]`, `members[value eq "42"]`},
		{"urn:ietf:params:scim:schemas:core:2.0:User:name.familyName", "urn:ietf:params:scim:schemas:core:2.0:User:name.familyName"},
		{"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department"},
	} {
		p, err := ParsePath(c.in)
		if err != nil || p.String() != c.want {
			t.Errorf("ParsePath(%q) = %q, %v", c.in, p.String(), err)
		}
	}
	for _, in := range []string{"", "9abc", "name.", ".x", "a b", `emails[type eq "work"`, `emails]type[`, `emails[type co "w"]`,
		`emails[type eq "w"]x`, "urn:", "urn:x:", `members[value eq "1"].`, strings.Repeat("x", 600)} {
		if _, err := ParsePath(in); err == nil || TypeOf(err) != InvalidPath {
			t.Errorf("ParsePath(%q) = %v, want invalidPath", in, err)
		}
	}
	p, _ := ParsePath("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department")
	if p.Is(SchemaUser, "department", "") {
		t.Error("an enterprise attribute matched the core schema")
	}
}

func TestFlexBool(t *testing.T) {
	for in, want := range map[string]bool{`true`: true, `false`: false, `"True"`: true, `"False"`: false, `"FALSE"`: false} {
		var b flexBool
		if err := json.Unmarshal([]byte(in), &b); err != nil || bool(b) != want {
			t.Errorf("%s: %v %v", in, b, err)
		}
	}
	for _, in := range []string{`"yes"`, `1`, `null`, `{}`} {
		var b flexBool
		if err := json.Unmarshal([]byte(in), &b); err == nil && in != "null" {
			t.Errorf("%s accepted", in)
		}
	}
}

func TestLogin(t *testing.T) {
	for in, want := range map[string]string{
		"dana@example.com": "dana", "Dana.Scully@x": "dana-scully", "a@b": "a00", "__x__": "x00",
		strings.Repeat("x", 60) + "@y": strings.Repeat("x", 40), "émile@x": "mile",
	} {
		if got := Login(in); got != want {
			t.Errorf("Login(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseFilter: the filter parser never panics, and what it accepts is exactly one
// allowed attribute with eq and a string value that round-trips.
func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{`userName eq "a"`, `userName eq "a\u0000b"`, `displayName eq ""`, `userName co "x"`,
		`urn:ietf:params:scim:schemas:core:2.0:User:userName eq "x"`, `userName eq "x" and a eq "b"`, "userName\teq\t\"x\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		flt, err := ParseFilter(s, SchemaUser, "userName")
		if err != nil {
			if TypeOf(err) != InvalidFilter {
				t.Fatalf("error without invalidFilter: %v", err)
			}
			return
		}
		if flt.Attr != "userName" {
			t.Fatalf("accepted attribute %q", flt.Attr)
		}
		q, _ := json.Marshal(flt.Value)
		again, err := ParseFilter("userName eq "+string(q), SchemaUser, "userName")
		if err != nil || again.Value != flt.Value {
			t.Fatalf("value %q does not round-trip: %v", flt.Value, err)
		}
	})
}

// FuzzParsePath: the PATCH-path parser never panics; an accepted path is made of valid
// attribute names and prints to something that parses to the same path.
func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"displayName", "name.givenName", `emails[type eq "work"].value`, `members[value eq "1"]`,
		"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", `a[b eq "]"].c`, "urn:a:b[c eq \"d:e\"]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePath(s)
		if err != nil {
			if TypeOf(err) != InvalidPath {
				t.Fatalf("error without invalidPath: %v", err)
			}
			return
		}
		if !validAttr(p.Attr) || p.Sub != "" && !validAttr(p.Sub) {
			t.Fatalf("accepted %q as %+v", s, p)
		}
		if p.Filter == nil || !strings.ContainsAny(p.Filter.Value, "\"\\]") {
			q, err := ParsePath(p.String())
			if err != nil || q.String() != p.String() {
				t.Fatalf("%q -> %q -> %q, %v", s, p.String(), q.String(), err)
			}
		}
	})
}

// FuzzPatchUser: applying any operation to a person never panics and fails only with a
// SCIM type.
func FuzzPatchUser(f *testing.F) {
	for _, s := range []string{`{"Operations":[{"op":"replace","value":{"active":false}}]}`,
		`{"Operations":[{"op":"Replace","path":"active","value":"False"}]}`,
		`{"Operations":[{"op":"add","path":"emails[type eq \"work\"].value","value":"a@b"}]}`,
		`{"Operations":[{"op":"remove","path":"name"}]}`, `{"Operations":[]}`, `[]`, `{"Operations":[{"op":"x"}]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ops, err := parsePatch(body)
		if err != nil {
			if TypeOf(err) == "" {
				t.Fatalf("error without scimType: %v", err)
			}
			return
		}
		st := userState{UserName: "u@example.com", Active: true}
		for _, op := range ops {
			if op.Path == "" {
				continue
			}
			p, err := ParsePath(op.Path)
			if err != nil {
				continue
			}
			if err := applyUser(&st, op.Op, p, op.Value); err != nil && TypeOf(err) == "" {
				t.Fatalf("error without scimType: %v", err)
			}
		}
		if st.UserName != "u@example.com" {
			t.Fatal("userName changed")
		}
	})
}
