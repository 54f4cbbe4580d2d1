package esc

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestBoundCoversEvaluation: the bound is an upper bound of what a check evaluates to (as
// JSON, traces and expressions included), however the values are made: literals in lists
// and objects, references to them, fn::split and fn::fromJSON, which make a value of
// every byte or two. Found in review: the bound counted 16 bytes a value, and a list of
// 100,000 elements referenced eight times stayed under it while it evaluated to some
// 300 MB of JSON (2 GB allocated).
func TestBoundCoversEvaluation(t *testing.T) {
	var obj strings.Builder
	for i := 0; i < 2000; i++ {
		obj.WriteString("k" + strconv.Itoa(i) + ": 1,")
	}
	name := "a-rather-long-project-name/" + strings.Repeat("e", 60)
	for tc, def := range map[string]string{
		"list":           "values:\n  s: [" + strings.Repeat("a,", 2000) + "a]\n",
		"nested lists":   "values:\n  s: [" + strings.Repeat("[[a]],", 700) + "a]\n",
		"object":         "values:\n  s: {" + obj.String() + "}\n",
		"list refs":      "values:\n  s: [" + strings.Repeat("a,", 2000) + "a]\n  r: [" + strings.Repeat(`"${s}",`, 7) + `"${s}"]` + "\n",
		"object refs":    "values:\n  s: {" + obj.String() + "}\n  r: [" + strings.Repeat(`"${s}",`, 7) + `"${s}"]` + "\n",
		"split":          "values:\n  s: {fn::split: [\",\", \"" + strings.Repeat(",", 2000) + "\"]}\n",
		"fromJSON":       "values:\n  s: {fn::fromJSON: '[" + strings.Repeat("1,", 2000) + "1]'}\n",
		"fromJSON lists": "values:\n  s: {fn::fromJSON: '[" + strings.Repeat("[],", 2000) + "1]'}\n",
	} {
		decl, diags, err := eval.LoadYAMLBytes(name, []byte(def))
		if err != nil || diags.HasErrors() {
			t.Fatalf("%s: %v %v", tc, err, diags)
		}
		bound := total(boundOf(decl, nil, nil))
		ec, err := pesc.NewExecContext(nil)
		if err != nil {
			t.Fatal(err)
		}
		env, ediags := eval.CheckEnvironment(context.Background(), name, decl, nil, nil, nil, ec, false)
		if ediags.HasErrors() {
			t.Fatalf("%s: %v", tc, ediags)
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > bound {
			t.Errorf("%s: evaluated to %d bytes of JSON, more than its bound %d (definition %d bytes)", tc, len(b), bound, len(def))
		}
	}
}

// manyOutputs is a stack whose outputs are one list of n small numbers.
type manyOutputs struct{ n int }

func (m manyOutputs) StackDeployment(context.Context, string, string) ([]byte, error) {
	return []byte(`{"deployment":{"resources":[{"type":"pulumi:pulumi:Stack","outputs":{"v":[` + strings.Repeat("1,", m.n) + `1]}}]}}`), nil
}

func (manyOutputs) DecryptStackSecret(context.Context, string, string, []byte) ([]byte, error) {
	return nil, errors.New("no secrets here")
}

// TestBoundCoversStackOutputs: an fn::open::pulumi-stacks, which the bound counts as
// MaxStackOutputBytes, evaluates to no more (as JSON, every value with its trace), or is
// refused. Found in review: the open counted only the outputs' stored bytes, so a list of
// small numbers (2 bytes each, some 200 as JSON) referenced three times evaluated to
// several times its bound (100,000 of them ten times: 230 MB of JSON, 1.8 GB allocated,
// from a definition of 145 bytes).
func TestBoundCoversStackOutputs(t *testing.T) {
	name := "a-rather-long-project-name/" + strings.Repeat("e", 60)
	def := "values:\n  o: {fn::open::pulumi-stacks: {stacks: {a: {stack: p/s}}}}\n  r: [\"${o}\", \"${o}\", \"${o}\"]\n"
	decl, diags, err := eval.LoadYAMLBytes(name, []byte(def))
	if err != nil || diags.HasErrors() {
		t.Fatal(err, diags)
	}
	bound := total(boundOf(decl, nil, nil))
	for _, n := range []int{10, 500, 5000} {
		ec, err := pesc.NewExecContext(nil)
		if err != nil {
			t.Fatal(err)
		}
		env, ediags := eval.EvalEnvironment(withStacks(context.Background(), manyOutputs{n}), name, decl, nil, NewRegistry(), nil, ec)
		if ediags.HasErrors() {
			if n <= 500 || !strings.Contains(ediags.Error(), "one fn::open reads") {
				t.Errorf("%d outputs: %v", n, ediags)
			}
			continue
		}
		b, err := json.Marshal(env)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > bound {
			t.Errorf("%d outputs: evaluated to %d bytes of JSON, more than the bound %d", n, len(b), bound)
		}
	}
}

// TestBoundInlineReadsOnce: a definition that reads one large environment inline many
// times (${environments.app.base.k1}) sums that environment's bounds once, not once per
// reference. Found in review: 30,000 such references to an environment of 20,000 values
// took 5 s of CPU in a yaml/check, open to every member (a moment now).
func TestBoundInlineReadsOnce(t *testing.T) {
	big := make(map[string]int64, 50000)
	for i := 0; i < 50000; i++ {
		big["k"+strconv.Itoa(i)] = 1
	}
	l := &loader{bounds: map[string]map[string]int64{"app/base": big}}
	def := "values:\n  r:\n" + strings.Repeat("    - ${environments.app.base.k1}\n", 20000)
	decl, diags, err := eval.LoadYAMLBytes("x", []byte(def))
	if err != nil || diags.HasErrors() {
		t.Fatal(err, diags)
	}
	start := time.Now()
	n := total(l.estimate(context.Background(), decl))
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the bound of 20,000 inline reads of one environment took %v, want a moment", d)
	}
	if n < 20000*2*50000 {
		t.Errorf("bound %d: each inline read counts the whole environment twice", n)
	}
}
