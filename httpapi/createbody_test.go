package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// stateBody is a valid stack-create body of about size bytes (a state with padding),
// produced as it is read, counting what was read.
type stateBody struct {
	r    io.Reader
	read atomic.Int64
}

func newStateBody(size int) *stateBody {
	head := `{"stackName":"s1","state":{"version":3,"deployment":{"pad":"`
	tail := `"}}}`
	pad := io.LimitReader(repeatReader('A'), int64(size-len(head)-len(tail)))
	return &stateBody{r: io.MultiReader(strings.NewReader(head), pad, strings.NewReader(tail))}
}

func (b *stateBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	b.read.Add(int64(n))
	return n, err
}

type repeatReader byte

func (c repeatReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// TestCreateStackBigBodyRefusedBeforeRead: stack creation takes bodies up to MaxBodyBytes
// (a whole initial state); a caller who may not create stacks in the organization whatever
// the name and tags (here a team token without grants) gets 403 before the server reads
// the body, not after reading and decoding 512 MiB. Whoever may create still creates with
// such a body.
func TestCreateStackBigBodyRefusedBeforeRead(t *testing.T) {
	e := newEnv(t, func(c *httpapi.Config) { c.AuthFailureLimit = 0 })
	a := e.admin
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "readers"}}, nil))
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/teams/readers/tokens", Body: map[string]any{"name": "ro"}}, &tok))

	const size = 64 << 20
	post := func(token string, body *stateBody) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.url+"/api/stacks/acme/proj", body)
		req.ContentLength = size
		req.Header.Set("Authorization", "token "+token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("after %d bytes sent: %v", body.read.Load(), err)
		}
		defer resp.Body.Close()
		var out struct {
			Message string `json:"message"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Message
	}
	body := newStateBody(size)
	code, msg := post(tok.TokenValue, body)
	if code != http.StatusForbidden {
		t.Errorf("team token without stack:create: HTTP %d %q, want 403", code, msg)
	}
	// The server reads a little past the headers at most (it discards up to 256 KiB of an
	// unread body before closing); kernel socket buffers take a few MiB more.
	if n := body.read.Load(); n > 16<<20 {
		t.Errorf("the refused caller's body was read: %d of %d bytes sent", n, size)
	}
	evs, err := listAudit(e)
	e.must(err)
	var denied int
	for _, ev := range evs {
		if ev.Action == "stack:create" && ev.Outcome == gatehouse.OutcomeDenied && ev.Target == "acme/proj" {
			denied++
		}
	}
	if denied != 1 {
		t.Errorf("%d stack:create denials recorded for acme/proj, want 1", denied)
	}

	body = newStateBody(8 << 20)
	req, _ := http.NewRequest("POST", e.url+"/api/stacks/acme/proj", body)
	req.Header.Set("Authorization", "token "+a.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	e.must(err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the admin creating a stack with an 8 MiB state: HTTP %d", resp.StatusCode)
	}
}
