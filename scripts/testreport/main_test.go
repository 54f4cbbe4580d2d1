package main

import (
	"bytes"
	"strings"
	"testing"
)

// A package whose only test skips prints "ok" in go test's package-list mode and hides
// the banner; the report shows it, with the reason, and keeps the closing lines.
const stream = `{"Action":"start","Package":"ex/e2e"}
{"Action":"run","Package":"ex/e2e","Test":"TestCLI"}
{"Action":"output","Package":"ex/e2e","Test":"TestCLI","Output":"=== RUN   TestCLI\n"}
{"Action":"output","Package":"ex/e2e","Test":"TestCLI","Output":"\n#####\n### E2E SKIPPED: TestCLI: pulumi not found\n#####\n"}
{"Action":"output","Package":"ex/e2e","Test":"TestCLI","Output":"    main_test.go:42: E2E SKIPPED: pulumi not found\n"}
{"Action":"output","Package":"ex/e2e","Test":"TestCLI","Output":"--- SKIP: TestCLI (0.00s)\n"}
{"Action":"skip","Package":"ex/e2e","Test":"TestCLI"}
{"Action":"output","Package":"ex/e2e","Output":"PASS\n"}
{"Action":"output","Package":"ex/e2e","Output":"ok  \tex/e2e\t0.01s\n"}
{"Action":"pass","Package":"ex/e2e"}
{"Action":"run","Package":"ex/a","Test":"TestGood"}
{"Action":"output","Package":"ex/a","Test":"TestGood","Output":"=== RUN   TestGood\nnoise\n--- PASS: TestGood (0.00s)\n"}
{"Action":"pass","Package":"ex/a","Test":"TestGood","Elapsed":0.5}
{"Action":"run","Package":"ex/a","Test":"TestBad"}
{"Action":"output","Package":"ex/a","Test":"TestBad","Output":"=== RUN   TestBad\n    a_test.go:9: boom\n--- FAIL: TestBad (0.00s)\n"}
{"Action":"fail","Package":"ex/a","Test":"TestBad","Elapsed":42.25}
{"Action":"output","Package":"ex/a","Output":"FAIL\n"}
{"Action":"output","Package":"ex/a","Output":"FAIL\tex/a\t0.02s\n"}
{"Action":"fail","Package":"ex/a"}
`

func TestReportShowsSkipsAndFailures(t *testing.T) {
	var out bytes.Buffer
	code := report(strings.NewReader(stream), &out)
	s := out.String()
	if code != 1 {
		t.Errorf("exit %d, want 1 (a test failed)", code)
	}
	for _, want := range []string{
		"### E2E SKIPPED: TestCLI: pulumi not found",
		"SKIP ex/e2e TestCLI: E2E SKIPPED: pulumi not found",
		"ok  \tex/e2e\t0.01s",
		"a_test.go:9: boom", "--- FAIL: TestBad",
		"FAIL\tex/a\t0.02s",
		"=== the 2 slowest tests:\n    42.2s ex/a TestBad\n     0.5s ex/a TestGood\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("report lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "noise") {
		t.Errorf("a passing test's output is shown:\n%s", s)
	}
	if c := report(strings.NewReader(strings.Split(stream, `{"Action":"run","Package":"ex/a"`)[0]), &bytes.Buffer{}); c != 0 {
		t.Errorf("exit %d for passes and skips only", c)
	}
}
