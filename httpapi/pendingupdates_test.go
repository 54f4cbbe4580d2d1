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
// creator holds at most MaxPendingUpdates of a stack never started (429 beyond), so a
// reader cannot fill the database with preview programs (found in review), nor block
// others' updates.
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
	// The bound is the creator's: another member still previews and updates the stack (one
	// reader's previews cannot block its pipelines).
	bob := newMember(t, e, "bob", "admin")
	e.must(bob.Do(cliwire.Call{Method: "POST", Path: p + "/preview", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil))
	e.must(bob.Do(cliwire.Call{Method: "POST", Path: p + "/update", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil))
	// Another stack is not affected.
	e.must(e.createStack(e.admin, "acme", "proj", "prod", nil))
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: stackPath("acme", "proj", "prod") + "/preview", Body: apitype.UpdateProgramRequest{Name: "proj"}}, nil))
}
