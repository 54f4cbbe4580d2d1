package httpapi_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// bracketBomb is a JSON document that is nothing but n opening brackets after prefix: a few
// kilobytes once gzipped, and nesting far beyond any real document.
func bracketBomb(prefix string, n int) []byte {
	return append([]byte(prefix), bytes.Repeat([]byte("["), n)...)
}

// TestNestingBomb: a small gzip body of millions of '[' used to make the JSON decoder
// recurse until Go's stack limit ("fatal error: stack overflow", which no recover catches:
// every tenant's server went down). Now such bodies are refused with 400 on the calls that
// decode JSON (an identity call, the checkpoint and the journal calls, events) and the
// server keeps serving.
func TestNestingBomb(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	r, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	// Journal entries are accepted only by an update granted journaling (a destroy, by
	// default): one on a second stack.
	pj := stackPath("acme", "proj", "journaled")
	e.must(e.createStack(e.admin, "acme", "proj", "journaled", nil))
	var cr apitype.UpdateProgramResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pj + "/destroy", Body: apitype.UpdateProgramRequest{Name: "proj", Runtime: "nodejs"}}, &cr))
	var jr apitype.StartUpdateResponse
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: pj + "/update/" + cr.UpdateID, Body: apitype.StartUpdateRequest{JournalVersion: 1}}, &jr))
	if jr.JournalVersion != 1 {
		t.Fatalf("destroy got journalVersion %d, want 1", jr.JournalVersion)
	}
	const deep = 4 << 20
	for _, c := range []struct {
		name, method, path string
		lease              string
		body               []byte
	}{
		// The route's body limit is 1 MiB: a bomb just under it.
		{"token status", "POST", "/api/tokens/status", "", bracketBomb(`{"tokens":`, 1<<20-100)},
		{"token status, top level", "POST", "/api/tokens/status", "", bracketBomb(``, 1<<20-100)},
		{"checkpoint", "PATCH", p + "/update/" + r.ID + "/checkpoint", r.Lease, bracketBomb(`{"version":3,"deployment":`, deep)},
		{"verbatim checkpoint", "PATCH", p + "/update/" + r.ID + "/checkpointverbatim", r.Lease, bracketBomb(`{"version":4,"sequenceNumber":1,"untypedDeployment":`, deep)},
		{"journal", "PATCH", pj + "/update/" + cr.UpdateID + "/journalentries", jr.Token, bracketBomb(`{"entries":`, deep)},
		{"journal entry", "PATCH", pj + "/update/" + cr.UpdateID + "/journalentries", jr.Token, bracketBomb(`{"entries":[{"sequenceID":1,"state":{"outputs":{"x":`, deep)},
		{"events", "POST", p + "/update/" + r.ID + "/events/batch", r.Lease, bracketBomb(`{"events":[{"sequence":1,"x":`, deep)},
		{"import", "POST", p + "/import", "", bracketBomb(`{"version":3,"deployment":`, deep)},
	} {
		call := cliwire.Call{Method: c.method, Path: c.path, Body: c.body, Gzip: true}
		call.LeaseToken = c.lease
		ce := wantStatus(t, e.admin.Do(call, nil), http.StatusBadRequest)
		if !strings.Contains(ce.Message, "nested") {
			t.Errorf("%s: the message does not say what is wrong: %q", c.name, ce.Message)
		}
	}
	// Still serving, and the update still works.
	e.must(r.checkpoint(deployment(3, "")))
	e.must(r.complete("succeeded"))
}

// TestSmallBodyLimit: calls that never carry state take at most 1 MiB of body (413 beyond);
// state calls keep the large limit.
func TestSmallBodyLimit(t *testing.T) {
	e := newEnv(t)
	big := `{"name":"t","description":"` + strings.Repeat("x", 2<<20) + `"}`
	err := e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: []byte(big)}, nil)
	wantStatus(t, err, http.StatusRequestEntityTooLarge)
	// Compressed, the body is tiny, but its inflated size counts.
	err = e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: []byte(big), Gzip: true}, nil)
	wantStatus(t, err, http.StatusRequestEntityTooLarge)

	// A 2 MiB checkpoint is fine.
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	r, err := e.startRun(e.admin, p, "update", false)
	e.must(err)
	e.must(r.checkpoint(deployment(20000, "")))
	e.must(r.complete("succeeded"))
}
