package esc

import "github.com/pulumi/esc/eval"

// Imports returns the environments a definition imports (its `imports:` list; an entry is
// a string or a map with a single key, the reference), as written: read each with
// ParseImport. A definition that does not parse imports nothing.
func Imports(def []byte) []string {
	decl, diags, err := eval.LoadYAMLBytes(AnonymousName, def)
	if err != nil || diags.HasErrors() || decl == nil || decl.Imports == nil {
		return nil
	}
	var out []string
	for _, imp := range decl.Imports.Elements {
		if imp != nil && imp.Environment != nil && imp.Environment.Value != "" {
			out = append(out, imp.Environment.Value)
		}
	}
	return out
}
