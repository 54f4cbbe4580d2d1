// Command testreport reads `go test -json` on stdin and prints what a person (or CI) needs:
// each package's result line (ok / FAIL / no test files) as go test prints it, the whole
// output of every failed test, and every skipped test with its reason, so that the loud
// skip banners of tests that cannot run here are not hidden behind a package's "ok".
// It ends with the slowest tests (the suite must stay under 15 minutes on 2 cores: this
// is where to look first) and a list of the skips, and exits 1 if anything failed.
//
//	go test -json ./... | go run ./scripts/testreport
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

type event struct {
	Action     string
	Package    string
	ImportPath string
	Test       string
	Output     string
	Elapsed    float64 // seconds, on pass and fail
}

// slowest is how many of the slowest top-level tests the report lists.
const slowest = 10

type timing struct {
	pkg, test string
	secs      float64
}

type skip struct{ pkg, test, reason string }

func main() {
	os.Exit(report(os.Stdin, os.Stdout))
}

func report(in io.Reader, out io.Writer) int {
	buf := map[string]*strings.Builder{} // package + "\x00" + test -> its output so far
	var skips []skip
	var times []timing
	failed := false
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var ev event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &ev) != nil {
			fmt.Fprintf(out, "%s\n", line) // not an event (e.g. a vet or build message)
			continue
		}
		key := ev.Package + "\x00" + ev.Test
		switch ev.Action {
		case "build-output":
			fmt.Fprint(out, ev.Output)
		case "build-fail":
			failed = true
		case "output":
			if ev.Test == "" {
				// Package-level lines: keep go test's closing lines (ok, FAIL, ?) and
				// anything printed outside a test; drop the per-test framing.
				if !strings.HasPrefix(ev.Output, "=== ") && ev.Output != "PASS\n" {
					fmt.Fprint(out, ev.Output)
				}
				continue
			}
			b := buf[key]
			if b == nil {
				b = &strings.Builder{}
				buf[key] = b
			}
			b.WriteString(ev.Output)
		case "fail":
			if ev.Test == "" {
				failed = true
				continue
			}
			if !strings.Contains(ev.Test, "/") {
				times = append(times, timing{ev.Package, ev.Test, ev.Elapsed})
			}
			failed = true
			if b := buf[key]; b != nil {
				fmt.Fprint(out, b.String())
			}
			delete(buf, key)
		case "skip":
			if ev.Test == "" {
				continue
			}
			text := ""
			if b := buf[key]; b != nil {
				text = b.String()
			}
			delete(buf, key)
			fmt.Fprint(out, text)
			skips = append(skips, skip{ev.Package, ev.Test, skipReason(text)})
		case "pass":
			delete(buf, key)
			if ev.Test != "" && !strings.Contains(ev.Test, "/") {
				times = append(times, timing{ev.Package, ev.Test, ev.Elapsed})
			}
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(out, "testreport:", err)
		failed = true
	}
	if len(times) > 0 {
		sort.SliceStable(times, func(i, j int) bool { return times[i].secs > times[j].secs })
		fmt.Fprintf(out, "\n=== the %d slowest tests:\n", min(slowest, len(times)))
		for _, tm := range times[:min(slowest, len(times))] {
			fmt.Fprintf(out, "%8.1fs %s %s\n", tm.secs, tm.pkg, tm.test)
		}
	}
	if len(skips) > 0 {
		sort.Slice(skips, func(i, j int) bool {
			if skips[i].pkg != skips[j].pkg {
				return skips[i].pkg < skips[j].pkg
			}
			return skips[i].test < skips[j].test
		})
		fmt.Fprintf(out, "\n=== %d tests SKIPPED (they did not run here):\n", len(skips))
		for _, s := range skips {
			fmt.Fprintf(out, "SKIP %s %s: %s\n", s.pkg, s.test, s.reason)
		}
	}
	if failed {
		fmt.Fprintln(out, "\nFAIL")
		return 1
	}
	return 0
}

// skipReason is the message t.Skip printed: the indented lines after "=== RUN" and
// before "--- SKIP", file:line prefixes removed, joined.
func skipReason(out string) string {
	var logged, other []string // t.Skip's own lines (file.go:N: ...), anything else
	for _, l := range strings.Split(out, "\n") {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") || strings.Trim(t, "#") == "" {
			continue
		}
		if i := strings.Index(t, ".go:"); i > 0 && !strings.Contains(t[:i], " ") {
			if j := strings.Index(t[i:], ": "); j > 0 {
				logged = append(logged, t[i+j+2:])
				continue
			}
		}
		other = append(other, t)
	}
	if len(logged) == 0 {
		logged = other
	}
	if len(logged) == 0 {
		return "(no reason given)"
	}
	return strings.Join(logged, " / ")
}
