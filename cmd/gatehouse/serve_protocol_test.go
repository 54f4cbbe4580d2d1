package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/delayproxy"
)

// TestServeMeasuresClientRTT: `gatehouse serve` measures each client's round trip (its
// http.Server carries the connection's timing) and logs the protocol it chose for an
// update, with the round trip seen through a 40 ms delay relay.
func TestServeMeasuresClientRTT(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	errb := startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text")
	var tok string
	waitFor(t, "the admin token", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return tok != ""
	})
	waitFor(t, "the server", func() bool {
		r, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	})
	p := &delayproxy.Proxy{Target: addr, Up: 20 * time.Millisecond, Down: 20 * time.Millisecond}
	if err := p.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := cliwire.New("http://"+p.Addr(), tok)
	c.HTTP = &http.Client{Transport: &http.Transport{}}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(c.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/default/proj", Body: apitype.CreateStackRequest{StackName: "dev"}}, nil))
	sp := "/api/stacks/default/proj/dev"
	var cr apitype.UpdateProgramResponse
	must(c.Do(cliwire.Call{Method: "POST", Path: sp + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, &cr))
	var sr apitype.StartUpdateResponse
	must(c.Do(cliwire.Call{Method: "POST", Path: sp + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &sr))
	var line string
	waitFor(t, "the protocol log line", func() bool {
		for _, l := range strings.Split(errb.String(), "\n") {
			if strings.Contains(l, `msg="update protocol"`) {
				line = l
				return true
			}
		}
		return false
	})
	for _, want := range []string{"protocol=checkpoint", "reason=new_stack", "rtt_source=request_timing", "update=" + cr.UpdateID, "stack=default/proj/dev"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	var rtt float64
	if i := strings.Index(line, "rtt_ms="); i >= 0 {
		_, _ = fmt.Sscanf(line[i+len("rtt_ms="):], "%g", &rtt)
	}
	if rtt < 40 || rtt > 400 {
		t.Errorf("round trip through a 40 ms relay measured as %g ms: %s", rtt, line)
	}
}
