package posture

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
)

// SARIF 2.1.0 output (code scanning dashboards): one run of the tool "gatehouse-posture",
// one rule per check, one result per finding. Findings are about the organization's
// configuration, not files: each result has a logical location (the finding's subject) and,
// for viewers that need a physical one, the pseudo-artifact "gatehouse/ORG".

// SARIF is the SARIF log of a report.
func SARIF(r *Report) map[string]any {
	var ruleIDs []string
	used := map[string]bool{}
	for _, f := range r.Findings {
		if !used[f.Rule] {
			used[f.Rule] = true
			ruleIDs = append(ruleIDs, f.Rule)
		}
	}
	sort.Strings(ruleIDs)
	index := map[string]int{}
	rules := []map[string]any{}
	for i, id := range ruleIDs {
		index[id] = i
		ru := Rules[id]
		sev := SevMedium
		for _, f := range r.Findings {
			if f.Rule == id && f.Severity.Rank() > sev.Rank() {
				sev = f.Severity
			}
		}
		rules = append(rules, map[string]any{
			"id":                   id,
			"name":                 id,
			"shortDescription":     map[string]string{"text": ru.Title},
			"fullDescription":      map[string]string{"text": ru.Title},
			"help":                 map[string]string{"text": ru.Fix},
			"defaultConfiguration": map[string]string{"level": level(sev)},
			"properties": map[string]any{
				"tags":              []string{"security", "gatehouse-posture"},
				"security-severity": securitySeverity(sev),
			},
		})
	}
	results := []map[string]any{}
	for _, f := range r.Findings {
		fp := sha256.Sum256([]byte(r.Org + "\x00" + f.Rule + "\x00" + f.Subject))
		results = append(results, map[string]any{
			"ruleId":    f.Rule,
			"ruleIndex": index[f.Rule],
			"level":     level(f.Severity),
			"message":   map[string]string{"text": f.Detail + ". Fix: " + f.Fix},
			"locations": []map[string]any{{
				"physicalLocation": map[string]any{
					"artifactLocation": map[string]string{"uri": "gatehouse/" + r.Org},
					"region":           map[string]int{"startLine": 1},
				},
				"logicalLocations": []map[string]string{{"name": f.Subject, "fullyQualifiedName": r.Org + "/" + f.Area + "/" + f.Subject, "kind": f.Area}},
			}},
			"partialFingerprints": map[string]string{"gatehousePosture/v1": hex.EncodeToString(fp[:16])},
			"properties":          map[string]any{"severity": string(f.Severity), "area": f.Area},
		})
	}
	return map[string]any{
		"$schema": "https://json.schemastore.org/sarif-2.1.0.json",
		"version": "2.1.0",
		"runs": []map[string]any{{
			"tool": map[string]any{"driver": map[string]any{
				"name":           "gatehouse-posture",
				"informationUri": "https://github.com/gatehouse-dev/gatehouse",
				"rules":          rules,
			}},
			"results": results,
			"properties": map[string]any{
				"org": r.Org, "generatedAt": r.GeneratedAt, "periodDays": r.PeriodDays,
			},
		}},
	}
}

func level(s Severity) string {
	switch s {
	case SevHigh:
		return "error"
	case SevMedium:
		return "warning"
	}
	return "note"
}

// securitySeverity is GitHub code scanning's numeric severity (high >= 7, medium >= 4).
func securitySeverity(s Severity) string {
	switch s {
	case SevHigh:
		return "8.0"
	case SevMedium:
		return "5.0"
	}
	return "2.0"
}

// WriteTable writes the report for people: a summary, then every finding with its fix.
func WriteTable(w io.Writer, r *Report) error {
	c := r.Counts()
	fmt.Fprintf(w, "Posture of %s at %s (period: %d days): %d high, %d medium, %d low\n\n",
		r.Org, r.GeneratedAt.Format("2006-01-02 15:04 MST"), r.PeriodDays, c[SevHigh], c[SevMedium], c[SevLow])
	if len(r.Findings) == 0 {
		_, err := fmt.Fprintln(w, "No findings.")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEVERITY\tRULE\tSUBJECT\tDETAIL")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", f.Severity, f.Rule, oneLine(f.Subject), oneLine(f.Detail))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nFixes:")
	seen := map[string]bool{}
	for _, f := range r.Findings {
		if !seen[f.Rule] {
			seen[f.Rule] = true
			fmt.Fprintf(w, "  %s: %s\n", f.Rule, f.Fix)
		}
	}
	return nil
}

func oneLine(s string) string {
	out := []rune{}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			r = ' '
		}
		out = append(out, r)
	}
	return string(out)
}
