package esc

import (
	"context"

	"github.com/pulumi/esc/ast"
	"github.com/pulumi/esc/eval"
)

// MaxEvalBytes bounds how large an evaluation may become: an upper bound of the size of
// the evaluated values (as JSON), computed from the definitions before the evaluator runs.
// References copy values, so a small definition can ask for an enormous one (found in
// review: a 1.5 KB definition whose levels each interpolate the previous one ten times
// asked a yaml/check, open to every member, for gigabytes, and the server ran out of
// memory). A definition over the bound is refused with a diagnostic, unevaluated.
const MaxEvalBytes = 64 << 20

// Cost model of the bound (generous, so that a legitimate definition never comes near it):
// a literal may grow six times as JSON (escapes), every value costs nodeBytes besides (its
// trace and expression as a check's JSON shows them: up to some 400 bytes a value with a
// long environment name; a list's element 2·nodeBytes), a reference costs twice what it
// refers to (its value and its trace), a builtin six times its arguments (toJSON, toBase64
// escape or grow), fn::split and fn::fromJSON a value per byte of their arguments besides,
// fn::join its delimiter once per element, a provider's outputs providerBytes, and
// context.* contextBytes. Found in review: with 16 bytes a value, a list of 100,000
// elements referenced eight times stayed under the bound and evaluated to some 300 MB of
// JSON (2 GB allocated), and fn::split/fn::fromJSON made a value of every byte or two.
const (
	growth        = 6
	refCost       = 2
	nodeBytes     = 512
	providerBytes = 256 << 10
	contextBytes  = 4 << 10
	boundCap      = 1 << 50 // saturation: no overflow, whatever the definition
)

func addB(a, b int64) int64 { return min(a+b, boundCap) }

func mulB(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > boundCap/b {
		return boundCap
	}
	return min(a*b, boundCap)
}

// sizeBound computes the bound of one definition's values: imported are the bounds of the
// top-level values its imports bring, by name (the evaluator merges them under its own).
type sizeBound struct {
	values map[string][]ast.Expr
	// memo and visiting are by node of the definition: a reference names a path (a.b[2]),
	// and a value may refer to a sibling inside its own top-level value (a.l1: ${a.l0}).
	memo     map[ast.Expr]int64
	visiting map[ast.Expr]bool
	index    map[*ast.ObjectExpr]map[string][]ast.Expr
	imported map[string]int64
	// importedTotal is the bound of all the imports (${imports...} reads any of them);
	// inline the bound of an environment read inline (${environments.project.env...}),
	// which need not be imported (nil: 0).
	importedTotal int64
	inline        func(ref string) int64
}

// boundOf returns the bounds of the top-level values of evaluating decl, by name (its
// own merged with its imports').
func boundOf(decl *ast.EnvironmentDecl, imported map[string]int64, inline func(ref string) int64) map[string]int64 {
	b := &sizeBound{values: map[string][]ast.Expr{}, memo: map[ast.Expr]int64{}, visiting: map[ast.Expr]bool{}, imported: imported,
		importedTotal: total(imported), inline: inline}
	if decl.Values != nil {
		for _, e := range decl.Values.Entries {
			k := e.Key.GetValue()
			b.values[k] = append(b.values[k], e.Value)
		}
	}
	out := make(map[string]int64, len(imported)+len(b.values))
	for k, n := range imported {
		out[k] = n
	}
	for k := range b.values {
		out[k] = addB(out[k], addB(lit(k), b.key(k)))
	}
	return out
}

func total(bounds map[string]int64) int64 {
	var n int64
	for _, v := range bounds {
		n = addB(n, v)
	}
	return n
}

func (b *sizeBound) key(k string) int64 {
	var n int64
	for _, x := range b.values[k] {
		n = addB(n, b.node(x))
	}
	return n
}

// node is the bound of one node of the definition, computed once.
func (b *sizeBound) node(x ast.Expr) int64 {
	if n, ok := b.memo[x]; ok {
		return n
	}
	if b.visiting[x] {
		return 0 // a value that contains itself: a cycle, which the evaluator reports
	}
	b.visiting[x] = true
	n := b.expr(x)
	b.visiting[x] = false
	b.memo[x] = n
	return n
}

// at is the bound of the value at path acc inside x: the node the path names in the
// definition, or the deepest node of it the definition holds (whatever a reference or
// builtin there evaluates to lies within that node's bound).
func (b *sizeBound) at(x ast.Expr, acc []ast.PropertyAccessor) int64 {
	for len(acc) > 0 {
		switch v := x.(type) {
		case *ast.ObjectExpr:
			k, ok := accessorName(acc[0])
			if !ok {
				return b.node(x)
			}
			vals := b.entries(v)[k]
			if len(vals) == 0 {
				return b.node(x)
			}
			var n int64
			for _, e := range vals {
				n = addB(n, b.at(e, acc[1:]))
			}
			return n
		case *ast.ArrayExpr:
			s, ok := acc[0].(*ast.PropertySubscript)
			i, isInt := 0, false
			if ok {
				i, isInt = s.Index.(int)
			}
			if !isInt || i < 0 || i >= len(v.Elements) {
				return b.node(x)
			}
			x, acc = v.Elements[i], acc[1:]
		default:
			return b.node(x)
		}
	}
	return b.node(x)
}

// entries indexes an object's entries by key, once (a definition may hold many
// references into one large object).
func (b *sizeBound) entries(o *ast.ObjectExpr) map[string][]ast.Expr {
	if m, ok := b.index[o]; ok {
		return m
	}
	m := make(map[string][]ast.Expr, len(o.Entries))
	for _, e := range o.Entries {
		k := e.Key.GetValue()
		m[k] = append(m[k], e.Value)
	}
	if b.index == nil {
		b.index = map[*ast.ObjectExpr]map[string][]ast.Expr{}
	}
	b.index[o] = m
	return m
}

func accessorName(a ast.PropertyAccessor) (string, bool) {
	switch a := a.(type) {
	case *ast.PropertyName:
		return a.Name, true
	case *ast.PropertySubscript:
		s, ok := a.Index.(string)
		return s, ok
	}
	return "", false
}

func (b *sizeBound) ref(p *ast.PropertyAccess) int64 {
	if p == nil || len(p.Accessors) == 0 {
		return nodeBytes
	}
	var n int64
	switch root := p.RootName(); root {
	case "context": // the evaluator's reserved names: never a value's
		n = contextBytes
	case "imports":
		n = b.importedTotal
	case "environments":
		n = b.inlineRef(p)
	default:
		n = b.imported[root] // an imported value, or the base a local one is merged with
		for _, x := range b.values[root] {
			n = addB(n, b.at(x, p.Accessors[1:]))
		}
	}
	return addB(mulB(refCost, n), nodeBytes)
}

// inlineRef is the bound of ${environments.project.env...}: that environment's.
func (b *sizeBound) inlineRef(p *ast.PropertyAccess) int64 {
	if len(p.Accessors) < 3 || b.inline == nil {
		return 0 // the evaluator refuses it
	}
	name := func(a ast.PropertyAccessor) string {
		switch a := a.(type) {
		case *ast.PropertyName:
			return a.Name
		case *ast.PropertySubscript:
			s, _ := a.Index.(string)
			return s
		}
		return ""
	}
	return b.inline(name(p.Accessors[1]) + "/" + name(p.Accessors[2]))
}

func lit(s string) int64 { return mulB(growth, int64(len(s))) + nodeBytes }

func (b *sizeBound) expr(x ast.Expr) int64 {
	switch x := x.(type) {
	case nil:
		return 0
	case *ast.NullExpr, *ast.BooleanExpr:
		return nodeBytes
	case *ast.NumberExpr:
		return lit(string(x.Value))
	case *ast.StringExpr:
		return lit(x.GetValue())
	case *ast.InterpolateExpr:
		n := int64(nodeBytes)
		for _, p := range x.Parts {
			n = addB(n, lit(p.Text))
			if p.Value != nil {
				n = addB(n, b.ref(p.Value))
			}
		}
		return n
	case *ast.SymbolExpr:
		return b.ref(x.Property)
	case *ast.ArrayExpr:
		n := int64(nodeBytes)
		for _, e := range x.Elements {
			n = addB(n, addB(nodeBytes, b.expr(e)))
		}
		return n
	case *ast.ObjectExpr:
		n := int64(nodeBytes)
		for _, e := range x.Entries {
			n = addB(n, addB(lit(e.Key.GetValue()), b.expr(e.Value)))
		}
		return n
	case *ast.SecretExpr:
		return addB(lit(x.Plaintext.GetValue()), lit(x.Ciphertext.GetValue()))
	case *ast.JoinExpr:
		// The delimiter goes between every two elements, and there are no more elements
		// than the bound of the list.
		vals := b.expr(x.Values)
		return mulB(growth, addB(vals, mulB(b.expr(x.Delimiter), vals)))
	case *ast.OpenExpr:
		return addB(providerBytes, b.expr(x.Inputs))
	case *ast.RotateExpr:
		return addB(providerBytes, addB(b.expr(x.Inputs), b.expr(x.State)))
	case *ast.SplitExpr, *ast.FromJSONExpr:
		// A value per byte of the string at most (a list element as JSON: some 230 bytes,
		// less than nodeBytes); the arguments' bound is at least growth per byte.
		args := b.expr(x.(ast.BuiltinExpr).Args())
		return addB(mulB(args, growth+nodeBytes/growth), nodeBytes)
	case ast.BuiltinExpr:
		return addB(mulB(growth, b.expr(x.Args())), nodeBytes)
	}
	return nodeBytes
}

// estimate returns the bounds of the top-level values of evaluating decl with its imports,
// by name, loading each import through the loader (which decides access and remembers what
// it loaded, so that the evaluator does not load or decide twice).
func (l *loader) estimate(ctx context.Context, decl *ast.EnvironmentDecl) map[string]int64 {
	imported := map[string]int64{}
	if decl.Imports != nil {
		seen := map[string]bool{} // an environment imported twice brings its values once
		for _, imp := range decl.Imports.Elements {
			if imp == nil || imp.Environment == nil || seen[imp.Environment.Value] {
				continue
			}
			seen[imp.Environment.Value] = true
			for k, n := range l.importBounds(ctx, imp.Environment.Value) {
				imported[k] = addB(imported[k], n)
			}
		}
	}
	totals := map[string]int64{} // by environment: a definition may read one inline many times
	return boundOf(decl, imported, func(ref string) int64 {
		n, ok := totals[ref]
		if !ok {
			n = total(l.importBounds(ctx, ref))
			totals[ref] = n
		}
		return n
	})
}

func (l *loader) importBounds(ctx context.Context, ref string) map[string]int64 {
	if n, ok := l.bounds[ref]; ok {
		return n
	}
	if l.bounds == nil {
		l.bounds = map[string]map[string]int64{}
	}
	l.bounds[ref] = nil // a cycle counts nothing: the evaluator refuses it
	def, _, err := l.LoadEnvironment(ctx, ref)
	if err != nil {
		return nil // the evaluator reports it
	}
	decl, diags, err := eval.LoadYAMLBytes(ref, def)
	if err != nil || diags.HasErrors() || decl == nil {
		return nil
	}
	n := l.estimate(ctx, decl)
	l.bounds[ref] = n
	return n
}
