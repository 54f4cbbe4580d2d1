package httpapi_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// BenchmarkStorageGrowth runs 100 updates of a 1,000-resource stack in which one resource
// changes each time (each update writing its final checkpoint, as the CLI does at the end)
// and reports the bytes the database stores per update for checkpoints.
func BenchmarkStorageGrowth(b *testing.B) {
	for i := 0; i < b.N; i++ {
		srv, tok := benchEnv(b)
		h := srv.Handler
		auth := "token " + tok
		var dep map[string]any
		json.Unmarshal(realisticDeployment(1000), &dep)
		res := dep["resources"].([]any)
		serveOnce(b, h, "POST", "/api/stacks/acme/proj", auth, mustMarshal(apitype.CreateStackRequest{StackName: "dev"}), false)
		p := "/api/stacks/acme/proj/dev"
		size := func() int64 {
			var n int64
			db := srv.Store.(*sqlstore.DB)
			if err := db.Writer().QueryRow(`SELECT COALESCE(SUM(LENGTH(data)), 0) FROM checkpoints`).Scan(&n); err != nil {
				b.Fatal(err)
			}
			return n
		}
		run := func(k int) {
			var cr apitype.UpdateProgramResponse
			json.Unmarshal(serveOnce(b, h, "POST", p+"/update", auth, mustMarshal(apitype.UpdateProgramRequest{Name: "proj"}), false).Body.Bytes(), &cr)
			var sr apitype.StartUpdateResponse
			json.Unmarshal(serveOnce(b, h, "POST", p+"/update/"+cr.UpdateID, auth, []byte(`{"tags":{}}`), false).Body.Bytes(), &sr)
			r := res[1+k%(len(res)-1)].(map[string]any)
			r["outputs"].(map[string]any)["name"] = fmt.Sprintf("changed-%d", k)
			body := gzipped(mustMarshal(apitype.PatchUpdateCheckpointRequest{Version: 3, Deployment: mustMarshal(dep)}))
			up := p + "/update/" + cr.UpdateID
			serveOnce(b, h, "PATCH", up+"/checkpoint", "update-token "+sr.Token, body, true)
			serveOnce(b, h, "POST", up+"/complete", "update-token "+sr.Token, []byte(`{"status":"succeeded"}`), false)
		}
		run(0)
		before := size()
		for k := 1; k <= 100; k++ {
			run(k)
		}
		after := size()
		b.ReportMetric(float64(after-before)/100, "bytes/update")
		b.ReportMetric(float64(len(mustMarshal(dep))), "state-bytes")
	}
}

// TestPackedVersionsExportExactly: finished versions are stored packed (keyframes and
// differences); every version still exports byte for byte what the CLI sent.
func TestPackedVersionsExportExactly(t *testing.T) {
	e := newEnv(t)
	p := stackPath("acme", "proj", "dev")
	e.must(e.createStack(e.admin, "acme", "proj", "dev", nil))
	var dep map[string]any
	json.Unmarshal(realisticDeployment(50), &dep)
	res := dep["resources"].([]any)
	sent := map[int][]byte{}
	for k := 1; k <= 40; k++ {
		r, err := e.startRun(e.admin, p, "update", false)
		e.must(err)
		res[1+k%(len(res)-1)].(map[string]any)["outputs"].(map[string]any)["name"] = fmt.Sprintf("v%d", k)
		if k%7 == 0 {
			res = append(res, map[string]any{"urn": fmt.Sprintf("urn:pulumi:dev::proj::x:y:Z::added-%d", k), "type": "x:y:Z"})
			dep["resources"] = res
		}
		d := mustMarshal(dep)
		e.must(r.checkpoint(d))
		e.must(r.complete("succeeded"))
		sent[r.Version] = d
	}
	for v, want := range sent {
		var got apitype.UntypedDeployment
		e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: p + "/export/" + fmt.Sprint(v)}, &got))
		if !bytes.Equal(got.Deployment, want) {
			t.Fatalf("version %d exports different bytes", v)
		}
	}
	var formats map[string]int = map[string]int{}
	rows, err := e.srv.Store.(*sqlstore.DB).Writer().Query(`SELECT format FROM checkpoints`)
	e.must(err)
	for rows.Next() {
		var f string
		rows.Scan(&f)
		formats[f]++
	}
	rows.Close()
	if formats["zdelta"] < 30 || formats["zfull"] < 2 {
		t.Fatalf("versions are not packed: %v", formats)
	}
}
