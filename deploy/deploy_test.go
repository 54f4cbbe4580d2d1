package deploy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestVerifyGitHub(t *testing.T) {
	body := []byte(`{"ref":"refs/heads/main"}`)
	m := hmac.New(sha256.New, []byte("s"))
	m.Write(body)
	good := "sha256=" + hex.EncodeToString(m.Sum(nil))
	for _, tc := range []struct {
		secret, sig string
		body        []byte
		want        bool
	}{
		{"s", good, body, true},
		{"s", good, append([]byte(" "), body...), false}, // another body
		{"t", good, body, false},                         // another secret
		{"", good, body, false},                          // no secret configured: refuse all
		{"s", "", body, false},
		{"s", strings.TrimPrefix(good, "sha256="), body, false}, // no scheme
		{"s", "sha1=" + good[7:], body, false},
		{"s", "sha256=zz", body, false},
		{"s", good[:len(good)-2], body, false}, // truncated
	} {
		if got := VerifyGitHub(tc.secret, tc.sig, tc.body); got != tc.want {
			t.Errorf("VerifyGitHub(%q, %q) = %v, want %v", tc.secret, tc.sig, got, tc.want)
		}
	}
	if VerifyGitLab("", "") || VerifyGitLab("x", "") || VerifyGitLab("x", "y") || !VerifyGitLab("x", "x") {
		t.Error("VerifyGitLab")
	}
}

func TestMergePatch(t *testing.T) {
	var doc, patch, want map[string]any
	_ = json.Unmarshal([]byte(`{"a":{"b":1,"c":2},"env":{"K":{"ciphertext":"old"}},"l":[1,2],"x":1}`), &doc)
	_ = json.Unmarshal([]byte(`{"a":{"b":null,"d":3},"env":{"K":{"secret":"new"}},"l":[3],"x":null}`), &patch)
	_ = json.Unmarshal([]byte(`{"a":{"c":2,"d":3},"env":{"K":{"secret":"new"}},"l":[3]}`), &want)
	if got := MergePatch(doc, patch); !reflect.DeepEqual(got, want) {
		t.Errorf("MergePatch = %v, want %v", got, want)
	}
}

func TestNormalizeRepoURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://gitlab.example.com/g/p.git":    "gitlab.example.com/g/p",
		"git@gitlab.example.com:g/p.git":        "gitlab.example.com/g/p",
		"ssh://git@gitlab.example.com:2222/g/p": "gitlab.example.com/g/p",
		"https://user:pw@GitHub.com/Acme/Infra": "github.com/acme/infra",
	} {
		if got := normalizeRepoURL(in); got != want {
			t.Errorf("normalizeRepoURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPathMatches(t *testing.T) {
	for _, tc := range []struct {
		filters []string
		file    string
		want    bool
	}{
		{[]string{"infra/**"}, "infra/a/b.go", true},
		{[]string{"infra/**"}, "infrastructure/a", false},
		{[]string{"infra"}, "infra/x", true},
		{[]string{"infra/"}, "infra/x", true},
		{[]string{"*.yaml"}, "Pulumi.yaml", true},
		{[]string{"docs/**"}, "infra/x", false},
	} {
		if got := PathMatches(tc.filters, tc.file); got != tc.want {
			t.Errorf("PathMatches(%v, %q) = %v", tc.filters, tc.file, got)
		}
	}
}

func TestSanitizeAndReadLines(t *testing.T) {
	if s := Sanitize("a\xffb\x00c"); !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		t.Errorf("Sanitize = %q", s)
	}
	long := strings.Repeat("é", MaxLineBytes) // 2 bytes each
	if s := Sanitize(long); len(s) > MaxLineBytes+64 || !utf8.ValidString(s) || !strings.Contains(s, "truncated") {
		t.Errorf("Sanitize(long) is %d bytes", len(s))
	}
	in := "one\n" + strings.Repeat("x", 3<<20) + "\ntwo\nlast"
	var got []string
	readLines(strings.NewReader(in), func(l string) { got = append(got, l) })
	if len(got) != 4 || got[0] != "one\n" || got[2] != "two\n" || got[3] != "last\n" || len(got[1]) > MaxLineBytes+64 ||
		!strings.Contains(got[1], "truncated: 3145728 bytes") {
		t.Errorf("readLines: %d lines, %q, %q", len(got), got[0], got[1][len(got[1])-60:])
	}
}

func TestPruneEmpty(t *testing.T) {
	var v map[string]any
	_ = json.Unmarshal([]byte(`{"preRunCommands":null,"environmentVariables":{},"options":{"shell":""},"x":"y","s":{"secret":""}}`), &v)
	got := pruneEmpty(v)
	want := map[string]any{"x": "y", "s": map[string]any{"secret": ""}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pruneEmpty = %v", got)
	}
}

// TestOverridesSource (found in review): a trigger's source other than the settings' own
// (branch, commit, repository, directory, credentials) is an override; the settings' own
// values, as the CLI sends them back, are not.
func TestOverridesSource(t *testing.T) {
	settings := []byte(`{"sourceContext":{"git":{"repoUrl":"https://git.example.com/acme/infra.git","branch":"main","repoDir":"infra"}}}`)
	for body, want := range map[string]string{
		`{"operation":"update"}`: "",
		`{"operation":"update","sourceContext":{"git":{"branch":"main"}}}`:                                    "",
		`{"operation":"update","sourceContext":{"git":{"branch":"refs/heads/main","repoDir":"infra"}}}`:       "",
		`{"operation":"update","sourceContext":{"git":{"repoUrl":"https://git.example.com/acme/infra.git"}}}`: "",
		`{"operation":"update","sourceContext":{"git":{"branch":"","commit":"","repoUrl":null}}}`:             "",
		`{"operation":"update","sourceContext":{"git":{"branch":"attacker"}}}`:                                "sourceContext.git.branch",
		`{"operation":"update","sourceContext":{"git":{"branch":"refs/heads/main2"}}}`:                        "sourceContext.git.branch",
		`{"operation":"update","sourceContext":{"git":{"commit":"abc123"}}}`:                                  "sourceContext.git.commit",
		`{"operation":"update","sourceContext":{"git":{"repoUrl":"https://git.example.com/evil/infra.git"}}}`: "sourceContext.git.repoUrl",
		`{"operation":"update","sourceContext":{"git":{"repoDir":"other"}}}`:                                  "sourceContext.git.repoDir",
		`{"operation":"update","sourceContext":{"git":{"gitAuth":{"accessToken":{"secret":"x"}}}}}`:           "sourceContext.git.gitAuth",
		`{"operation":"update","sourceContext":{"git":{"branch":{"x":1}}}}`:                                   "sourceContext.git.branch",
		`{"operation":"update","inheritSettings":false,"sourceContext":{"git":{"branch":"main"}}}`:            "inheritSettings: false",
	} {
		got, err := Overrides([]byte(body), settings)
		if err != nil || got != want {
			t.Errorf("Overrides(%s) = %q, %v; want %q", body, got, err, want)
		}
	}
	// Without settings every source is the trigger's choice.
	if got, _ := Overrides([]byte(`{"operation":"update","sourceContext":{"git":{"branch":"main"}}}`), nil); got != "sourceContext.git.branch" {
		t.Errorf("Overrides without settings = %q", got)
	}
}
