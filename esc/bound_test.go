package esc

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"

	pesc "github.com/pulumi/esc"
	"github.com/pulumi/esc/eval"
)

// TestBoundOf: the size bound grows with every way a definition copies values
// (interpolation, references in lists, fn::join's delimiter, builtins), so that none of
// them makes a small definition evaluate to gigabytes; ordinary definitions stay far
// below MaxEvalBytes.
func TestBoundOf(t *testing.T) {
	// listLevels: a list whose element i interpolates element i-1 ten times.
	listLevels := func(rep func(string, int, string) string) string {
		var b strings.Builder
		for i := 1; i <= 6; i++ {
			b.WriteString("    - \"" + rep("${a["+strconv.Itoa(i-1)+"]}", 10, "") + "\"\n")
		}
		return b.String()
	}
	levels := func(mk func(prev string) string) string {
		var b strings.Builder
		b.WriteString("values:\n  l0: " + strings.Repeat("x", 1000) + "\n")
		for i := 1; i <= 6; i++ {
			b.WriteString("  l" + strconv.Itoa(i) + ": " + mk("l"+strconv.Itoa(i-1)) + "\n")
		}
		return b.String()
	}
	rep := func(s string, n int, sep string) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = s
		}
		return strings.Join(parts, sep)
	}
	nested := func(mk func(prev string) string) string {
		var b strings.Builder
		b.WriteString("values:\n  a:\n    l0: " + strings.Repeat("x", 1000) + "\n")
		for i := 1; i <= 6; i++ {
			b.WriteString("    l" + strconv.Itoa(i) + ": " + mk("l"+strconv.Itoa(i-1)) + "\n")
		}
		return b.String()
	}
	for name, tc := range map[string]struct {
		def string
		big bool
	}{
		"interpolation":      {levels(func(p string) string { return `"` + rep("${"+p+"}", 10, "") + `"` }), true},
		"list of references": {levels(func(p string) string { return "[" + rep(`"${`+p+`}"`, 10, ", ") + "]" }), true},
		"join delimiter":     {"values:\n  big: " + strings.Repeat("x", 100000) + "\n  j:\n    fn::join: [\"${big}\", [" + rep("a", 2000, ", ") + "]]\n", true},
		"toJSON levels":      {levels(func(p string) string { return "{fn::toJSON: [" + rep(`"${`+p+`}"`, 10, ", ") + "]}" }), true},
		// References to siblings inside one top-level value (a.l1: ${a.l0}): the bound
		// counted a reference into the value being bounded as nothing (found in review).
		"nested interpolation": {nested(func(p string) string { return `"` + rep("${a."+p+"}", 10, "") + `"` }), true},
		"nested subscripts":    {nested(func(p string) string { return "[" + rep(`"${a[\"`+p+`\"]}"`, 10, ", ") + "]" }), true},
		"nested in a list":     {"values:\n  a:\n    - " + strings.Repeat("x", 1000) + "\n" + listLevels(rep), true},
		"ordinary":             {"values:\n  region: eu-west-1\n  pw: {fn::secret: hunter2}\n  environmentVariables:\n    REGION: ${region}\n    PW: ${pw}\n    BOTH: \"${region}-${pw}\"\n  files: {CFG: {fn::toJSON: {a: \"${region}\", b: [\"${pw}\", \"${region}\"]}}}\n", false},
		"joined list":          {"values:\n  l: [a, b, c]\n  j: {fn::join: [\",\", \"${l}\"]}\n", false},
	} {
		decl, diags, err := eval.LoadYAMLBytes("x", []byte(tc.def))
		if err != nil || diags.HasErrors() {
			t.Fatalf("%s: %v %v", name, err, diags)
		}
		n := total(boundOf(decl, nil, nil))
		if big := n > MaxEvalBytes; big != tc.big {
			t.Errorf("%s: bound %d (definition %d bytes), refused %v, want %v", name, n, len(tc.def), big, tc.big)
		}
	}
}

type countingStacks struct{ reads int }

func (c *countingStacks) StackDeployment(context.Context, string, string) ([]byte, error) {
	c.reads++
	return []byte(`{"deployment":{"resources":[{"type":"pulumi:pulumi:Stack","outputs":{"v":"x"}}]}}`), nil
}

func (c *countingStacks) DecryptStackSecret(context.Context, string, string, []byte) ([]byte, error) {
	return nil, errors.New("no secrets here")
}

// TestStackReadOncePerEvaluation: opens of one stack in one evaluation read its state once
// (each read loads the stack's whole checkpoint).
func TestStackReadOncePerEvaluation(t *testing.T) {
	r := &countingStacks{}
	ctx := withStacks(context.Background(), r)
	in := map[string]pesc.Value{"stacks": pesc.NewValue(map[string]pesc.Value{
		"a": pesc.NewValue(map[string]pesc.Value{"stack": pesc.NewValue("p/s")}),
		"b": pesc.NewValue(map[string]pesc.Value{"stack": pesc.NewValue("p/s")}),
	})}
	for i := 0; i < 50; i++ {
		if _, err := (PulumiStacksProvider{}).Open(ctx, in, nil); err != nil {
			t.Fatal(err)
		}
	}
	if r.reads != 1 {
		t.Fatalf("the stack's state was read %d times, want once", r.reads)
	}
}
