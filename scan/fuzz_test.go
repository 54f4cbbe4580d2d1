package scan

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/gatehouse-dev/gatehouse/token"
)

// FuzzScanText checks that ScanText never panics, that every finding parses as a token and
// sits at the reported line and column, and that the streaming scanner finds exactly what
// token.Pattern plus token.Parse find over the whole input, whatever the read sizes.
//
// The committed corpus in testdata/fuzz/FuzzScanText holds only look-alikes; inputs with
// checksum-valid tokens are generated here at run time so that none is committed.
func FuzzScanText(f *testing.F) {
	for _, k := range []token.Kind{token.Personal, token.Team, token.Org, token.Lease} {
		tok := newToken(f, k)
		f.Add([]byte(tok), false)
		f.Add([]byte("x\r\nTOKEN="+tok+"\n\""+tok+"\"é"+tok), true)
		f.Add([]byte(strings.Join(lookAlikes(tok), "\n")), false)
		f.Add([]byte("g"+tok+" "+tok+"_ _"+tok), true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte("gatehouse_pat_\n"), true)

	f.Fuzz(func(t *testing.T, data []byte, oneByte bool) {
		r := bytes.NewReader(data)
		var got []Finding
		var err error
		if oneByte {
			err = ScanText("f", iotest.OneByteReader(r), func(f Finding) { got = append(got, f) })
		} else {
			err = ScanText("f", r, func(f Finding) { got = append(got, f) })
		}
		if err != nil {
			t.Fatalf("ScanText: %v", err)
		}
		lines := bytes.Split(data, []byte{'\n'})
		for _, f := range got {
			k, err := token.Parse(f.Token)
			if err != nil || k != f.Kind {
				t.Fatalf("finding %+v does not parse: %q, %v", f, k, err)
			}
			if f.Line < 1 || f.Line > len(lines) || f.Column < 1 {
				t.Fatalf("finding %+v out of range", f)
			}
			if line := lines[f.Line-1]; !bytes.HasPrefix(line[min(f.Column-1, len(line)):], []byte(f.Token)) {
				t.Fatalf("finding %+v is not at its line and column", f)
			}
		}
		if want := reference("f", data); !reflect.DeepEqual(got, want) {
			t.Fatalf("ScanText disagrees with token.Pattern:\n got %+v\nwant %+v", got, want)
		}
	})
}
