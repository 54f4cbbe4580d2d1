package policy

import (
	"encoding/json"
	"fmt"
	"testing"
)

// BenchmarkInDeployment: the approved-provider check's read of a 1,000-resource state
// (each with a few inputs and outputs), done on every checkpoint while an allow-list is
// enforced.
func BenchmarkInDeployment(b *testing.B) {
	res := make([]map[string]any, 0, 1000)
	for i := 0; i < 1000; i++ {
		typ := "aws:s3/bucket:Bucket"
		if i%100 == 0 {
			typ = "pulumi:providers:aws"
		}
		res = append(res, map[string]any{"urn": fmt.Sprintf("urn:pulumi:s::p::%s::r%d", typ, i), "type": typ, "custom": true, "id": fmt.Sprint(i),
			"inputs":  map[string]any{"version": "6.0.0", "bucket": fmt.Sprintf("b-%d", i), "tags": map[string]any{"env": "prod", "owner": "team"}},
			"outputs": map[string]any{"arn": fmt.Sprintf("arn:aws:s3:::b-%d", i), "bucket": fmt.Sprintf("b-%d", i), "region": "eu-west-1"}})
	}
	dep, _ := json.Marshal(map[string]any{"resources": res})
	b.SetBytes(int64(len(dep)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if p, err := InDeployment(dep); err != nil || len(p) != 10 {
			b.Fatal(len(p), err)
		}
	}
}
