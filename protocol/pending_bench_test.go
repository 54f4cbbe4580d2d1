package protocol

import (
	"bytes"
	"fmt"
	"testing"
)

// A 1,000-resource deployment (about 450 KB) without pending operations: the worst case of
// the scan, which must stay small beside the checkpoint's own handling (~2 ms).
func BenchmarkPendingOperations(b *testing.B) {
	var buf bytes.Buffer
	buf.WriteString(`{"manifest":{"time":"2026-01-01T00:00:00Z"},"resources":[`)
	for i := 0; i < 1000; i++ {
		if i > 0 {
			buf.WriteByte(',')
		}
		fmt.Fprintf(&buf, `{"urn":"urn:pulumi:dev::proj::bench:index:Comp::comp-%d","custom":false,"type":"bench:index:Comp","inputs":{},"outputs":{},"parent":"urn:pulumi:dev::proj::pulumi:pulumi:Stack::proj-dev","dependencies":["urn:pulumi:dev::proj::bench:index:Comp::comp-%d"],"created":"2026-01-01T00:00:00Z","modified":"2026-01-01T00:00:00Z","propertyDependencies":{},"sourcePosition":"project:///index.js#12,19","stackTrace":[{"sourcePosition":"project:///index.js#12,19"}]}`, i, i)
	}
	buf.WriteString(`],"metadata":{}}`)
	doc := buf.Bytes()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		PendingOperations(doc)
	}
}
