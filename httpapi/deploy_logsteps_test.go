package httpapi_test

import (
	"testing"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestDeployLogsStepMode: the logs in step mode (job/step/offset/count) page by line
// offsets, and an empty page is a list, not null.
func TestDeployLogsStepMode(t *testing.T) {
	d := newDeployEnv(t)
	d.must(d.settings([]byte(gitSettings)))
	created, err := d.trigger(d.dev, "update")
	d.must(err)
	id, _ := created["id"].(string)
	job := d.lease()
	if job == nil || job.ID != id {
		t.Fatalf("lease = %+v", job)
	}
	body := []byte(`{"lease":"` + job.Lease + `","lines":[{"header":"pulumi update"},{"line":"one\n"},{"line":"two\n"}]}`)
	d.must(d.runner.Do(cliwire.Call{Method: "POST", Path: "/api/deployments/runner/" + job.ID + "/heartbeat", Body: body}, nil))

	var page struct {
		Lines      []deploy.LogLine `json:"lines"`
		NextOffset int              `json:"nextOffset"`
	}
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id + "/logs?job=0&step=0&offset=1&count=1"}, &page))
	if len(page.Lines) != 1 || page.Lines[0].Line != "one\n" || page.NextOffset != 2 {
		t.Fatalf("step page = %+v", page)
	}
	var raw map[string]any
	d.must(d.admin.Do(cliwire.Call{Method: "GET", Path: d.prod + "/deployments/" + id + "/logs?job=0&step=0&offset=3"}, &raw))
	if l, ok := raw["lines"].([]any); !ok || len(l) != 0 || raw["nextOffset"] != float64(3) {
		t.Fatalf("past the end = %v", raw)
	}
}
