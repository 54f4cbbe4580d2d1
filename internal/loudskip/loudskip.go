// Package loudskip skips a test that cannot run on this machine (no pulumi, no browser, no
// container engine) so that nobody misses it: a banner on stderr, shown by `go test` even
// without -v, and the reason as the skip message, which scripts/testreport lists at the end
// of the test command's output.
package loudskip

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// Skip skips t with a banner; label names the kind of test ("E2E", "BROWSER TEST"), "" for
// none.
func Skip(t testing.TB, label, format string, args ...any) {
	t.Helper()
	what := "SKIPPED"
	if label != "" {
		what = label + " SKIPPED"
	}
	msg := fmt.Sprintf(format, args...)
	bar := strings.Repeat("#", 78)
	fmt.Fprintf(os.Stderr, "\n%s\n### %s: %s: %s\n%s\n\n", bar, what, t.Name(), msg, bar)
	t.Skip(what + ": " + msg)
}
