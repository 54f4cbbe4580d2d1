package httpapi_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// FuzzDecoders sends arbitrary bodies to the calls that decode the CLI's largest
// documents (checkpoints, verbatim checkpoints, journal entries, engine events, imported
// deployments): whatever arrives, the answer is a 2xx or a 4xx with the JSON error body,
// never a 5xx or a panic. The corpus under testdata/fuzz/FuzzDecoders is kept.
func FuzzDecoders(f *testing.F) {
	for _, seed := range []string{
		`{"version":3,"deployment":{"manifest":{"time":"2026-01-01T00:00:00Z","magic":"","version":""},"resources":[]}}`,
		`{"isInvalid":false,"version":3,"features":["x"],"deployment":{"resources":[{"urn":"u","type":"t"}]}}`,
		`{"version":4,"sequenceNumber":1,"untypedDeployment":{"version":3,"deployment":{}}}`,
		`{"entries":[{"version":1,"kind":1,"sequenceID":1,"operationID":1,"state":{"urn":"urn:pulumi:s::p::t::n","type":"t"}}]}`,
		`{"events":[{"sequence":0,"timestamp":1,"stdoutEvent":{"message":"m","color":"never"}}]}`,
		`{"version":3,"checkpointHash":"00","sequenceNumber":2,"deploymentDelta":[{"Span":{"start":{"offset":0},"end":{"offset":1}},"NewText":"x"}]}`,
		`{"version":0}`, `null`, `[]`, `{"version":3,"deployment":"x"}`, `{"deployment":{"resources":{}}}`,
	} {
		for route := byte(0); route < 6; route++ {
			f.Add(route, false, []byte(seed))
		}
	}
	srv, err := app.Open(f.Context(), app.Config{DataDir: f.TempDir()}, httpapi.DefaultConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	tok, err := app.Bootstrap(f.Context(), srv.Store, "acme", "alice")
	if err != nil {
		f.Fatal(err)
	}
	h := srv.Handler
	auth := "token " + tok
	do := func(method, path, authz string, body []byte, gz bool) (int, string) {
		if gz {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			zw.Write(body)
			zw.Close()
			body = buf.Bytes()
		}
		req := httptest.NewRequest(method, path, bytes.NewReader(body))
		req.Header.Set("Authorization", authz)
		if gz {
			req.Header.Set("Content-Encoding", "gzip")
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code, rec.Body.String()
	}
	if c, body := do("POST", "/api/stacks/acme/proj", auth, mustMarshal(apitype.CreateStackRequest{StackName: "dev"}), false); c != 200 {
		f.Fatal(c, body)
	}
	p := "/api/stacks/acme/proj/dev"
	f.Fuzz(func(t *testing.T, route byte, gz bool, body []byte) {
		// A fresh update for every input, so that inputs cannot depend on each other.
		var cr apitype.UpdateProgramResponse
		c, out := do("POST", p+"/update", auth, []byte(`{"name":"proj","options":{"dryRun":false}}`), false)
		if c != 200 || jsonUnmarshal(out, &cr) != nil {
			t.Fatal(c, out)
		}
		var sr apitype.StartUpdateResponse
		c, out = do("POST", p+"/update/"+cr.UpdateID, auth, []byte(`{"tags":{}}`), false)
		if c != 200 || jsonUnmarshal(out, &sr) != nil {
			t.Fatal(c, out)
		}
		lease := "update-token " + sr.Token
		up := p + "/update/" + cr.UpdateID
		var method, path, a string
		switch route % 6 {
		case 0:
			method, path, a = "PATCH", up+"/checkpoint", lease
		case 1:
			method, path, a = "PATCH", up+"/checkpointverbatim", lease
		case 2:
			method, path, a = "PATCH", up+"/journalentries", lease
		case 3:
			method, path, a = "POST", up+"/events/batch", lease
		case 4:
			method, path, a = "PATCH", up+"/checkpointdelta", lease
		default:
			method, path, a = "POST", p+"/import", auth
		}
		code, resp := do(method, path, a, body, gz)
		if code >= 500 {
			t.Fatalf("%s %s answered %d: %s", method, path, code, resp)
		}
		if code >= 400 && !bytes.Contains([]byte(resp), []byte(`"code":`)) {
			t.Fatalf("%s %s answered %d without the JSON error body: %s", method, path, code, resp)
		}
		// The update must still end cleanly (its journal, if any, is replayed at the end).
		if c, out := do("POST", up+"/complete", lease, []byte(`{"status":"succeeded"}`), false); c >= 300 {
			t.Fatalf("complete after %s answered %d: %s", path, c, out)
		}
	})
}
