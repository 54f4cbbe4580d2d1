package deploy

import (
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

func TestChangeSummary(t *testing.T) {
	got := ChangeSummary(map[string]int{"same": 5, "delete": 1, "create": 2, "create-replacement": 1, "update": 3,
		"x\n- secret: hunter2": 9, "UPPER": 1, "": 4})
	if want := "create 2, update 3, delete 1, same 5, create-replacement 1"; got != want {
		t.Errorf("ChangeSummary = %q, want %q", got, want)
	}
	if got := ChangeSummary(nil); got != "" {
		t.Errorf("ChangeSummary(nil) = %q", got)
	}
}

func TestCommentBody(t *testing.T) {
	st := &gatehouse.Stack{OrgName: "acme", Project: "proj", Name: "prod"}
	d := &gatehouse.Deployment{ID: "d1", Version: 4, Operation: "update", Status: gatehouse.DeployFailed, Cancel: true, UpdateID: "u1",
		Message: "RUNNER-MESSAGE"}
	got := CommentBody(st, d, Report{SHA: "0123456789abcdef0123"}, nil, "")
	want := "<!-- gatehouse-deployment acme/proj/prod -->\n### ❌ Gatehouse: `pulumi update` of `acme/proj/prod` failed (cancelled)\n\n" +
		"- Deployment: 4\n- Commit: 0123456789ab\n"
	if got != want {
		t.Errorf("CommentBody = %q, want %q", got, want)
	}
	// A commit that is not hex (never from a real provider) is left out.
	if got := CommentBody(st, d, Report{SHA: "abc`](x)"}, nil, ""); strings.Contains(got, "Commit") {
		t.Errorf("CommentBody with a bad SHA = %q", got)
	}
}
