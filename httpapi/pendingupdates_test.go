package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestPendingUpdatesBounded: updates are created with their program (the CLI's
// configuration, kept with the update), and anyone who may preview creates them: a
// program is bounded (413 past ProgramBodyBytes, not the state routes' 512 MiB), and a
// stack holds at most MaxPendingUpdates never started (429 beyond), so a reader cannot
// fill the database with preview programs (found in review).
func TestPendingUpdatesBounded(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	big := apitype.UpdateProgramRequest{Name: "proj", Config: map[string]apitype.ConfigValue{"blob": {String: strings.Repeat("x", 33<<20)}}}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/preview", Body: big}, nil), http.StatusRequestEntityTooLarge)
	for i := range gatehouse.MaxPendingUpdates {
		if err := e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/preview", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil); err != nil {
			t.Fatalf("preview %d: %v", i, err)
		}
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "POST", Path: p + "/preview", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil), http.StatusTooManyRequests)
	// Another stack is not affected.
	e.must(e.createStack(e.admin, "acme", "proj", "prod", nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "prod") + "/preview", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil))
}
