package sqlite_test

import (
	"os"
	"strings"
	"testing"
)

// migrationStatements reads a migration file as SQLite runs it: placeholders expanded,
// comment lines dropped, one string a statement.
func migrationStatements(t *testing.T, name string) []string {
	t.Helper()
	body, err := os.ReadFile("../sqlstore/migrations/" + name)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer("@BIGINT@", "INTEGER", "@TEXT@", "TEXT").Replace(string(body))
	var stmts []string
	for _, st := range strings.Split(text, ";") {
		var lines []string
		for _, l := range strings.Split(st, "\n") {
			if !strings.HasPrefix(strings.TrimSpace(l), "--") {
				lines = append(lines, l)
			}
		}
		if st := strings.TrimSpace(strings.Join(lines, "\n")); st != "" {
			stmts = append(stmts, st)
		}
	}
	return stmts
}
