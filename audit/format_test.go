package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// nastyValues are values that break naive CEF, CSV and JSON writers.
var nastyValues = []string{
	"plain",
	"a=b",
	"key=value other=thing",
	"=leading equals",
	"trailing equals=",
	`back\slash`,
	`trailing backslash\`,
	`\\double`,
	`\=`,
	`\n literal backslash-n`,
	"pipe|pipe||",
	"line\nbreak",
	"cr\rlf\r\n",
	"\n",
	" spaces  around ",
	"tab\there",
	"unicode ✓ 日本語 🎉 ñ",
	`"quoted", with comma`,
	"-2+3",
	"@SUM(A1)",
	"CEF:0|fake|header|",
	"x\\=y\\\\=z",
	"",
}

// nastyChain builds a chain whose events carry the nasty values in every string field.
func nastyChain() []gatehouse.AuditEvent {
	var chain []gatehouse.AuditEvent
	for i, v := range nastyValues {
		e := sampleEvent(i)
		w := nastyValues[(i+5)%len(nastyValues)]
		e.ActorName = v
		e.Action = "stack:" + w
		e.Target = v + "/t"
		e.Reason = w
		e.UserAgent = v
		e.SourceIP = w
		e.RequestID = v
		e.OrgName = w
		e.TokenID = v
		e.Details = map[string]string{"k=" + v: w, "plain": v}
		chain = chainAppend(chain, e)
	}
	return chain
}

// wantHeaderText is what a CEF header field should read back as: control characters
// replaced by spaces (the header cannot hold line breaks).
func wantHeaderText(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func TestCEFRoundTrip(t *testing.T) {
	chain := nastyChain()
	var buf bytes.Buffer
	host := "gatehouse-1.example.com"
	if err := WriteCEF(&buf, host, Events(chain)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(chain) {
		t.Fatalf("%d lines for %d events: a line break escaped the escaping", len(lines), len(chain))
	}
	for i, line := range lines {
		e := &chain[i]
		prefix := e.Time.UTC().Format("Jan _2 15:04:05") + " " + host + " CEF:0|"
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("line %d: %q does not start with %q", i, line, prefix)
		}
		header, ext, err := ParseCEF(line)
		if err != nil {
			t.Fatalf("line %d: ParseCEF(%q): %v", i, line, err)
		}
		wantHeader := []string{"0", "Gatehouse", "Gatehouse", gatehouse.Version, wantHeaderText(e.Action), wantHeaderText(Describe(e)), strconv.Itoa(cefSeverity(e.Outcome))}
		if !equalStrings(header, wantHeader) {
			t.Errorf("line %d header\n got %q\nwant %q", i, header, wantHeader)
		}
		want := map[string]string{
			"rt":                       strconv.FormatInt(e.Time.UnixMilli(), 10),
			"dvchost":                  host,
			"src":                      e.SourceIP,
			"suser":                    e.ActorName,
			"act":                      e.Action,
			"outcome":                  e.Outcome,
			"reason":                   e.Reason,
			"requestClientApplication": e.UserAgent,
			"externalId":               e.ID,
			"cs1Label":                 "target", "cs1": e.Target,
			"cs2Label": "requestId", "cs2": e.RequestID,
			"cs3Label": "actorKind", "cs3": e.ActorKind,
			"cs4Label": "orgName", "cs4": e.OrgName,
			"cs5Label": "details",
			"cs6Label": "eventHash", "cs6": hex.EncodeToString(e.Hash),
			"cn1Label": "seq", "cn1": strconv.FormatInt(e.Seq, 10),
			"orgID":                 strconv.FormatInt(e.OrgID, 10),
			"tokenID":               e.TokenID,
			"requireOrgAdmin":       "false",
			"requireStackAdmin":     "false",
			"authenticationFailure": strconv.FormatBool(wantAuthFailure(e)),
		}
		if e.UserID != 0 {
			want["userID"] = strconv.FormatInt(e.UserID, 10)
		}
		if isTokenActor(e) {
			want["tokenName"] = e.ActorName
		}
		for k, v := range want {
			if v == "" {
				delete(want, k) // empty values are left out, and then their labels
				if strings.HasPrefix(k, "cs") {
					delete(want, k+"Label")
				}
			}
		}
		var details map[string]string
		if err := json.Unmarshal([]byte(ext["cs5"]), &details); err != nil || !maps.Equal(details, e.Details) {
			t.Errorf("line %d: cs5 %q does not hold the details %v (%v)", i, ext["cs5"], e.Details, err)
		}
		delete(ext, "cs5")
		if !maps.Equal(ext, want) {
			for k := range mergeKeys(ext, want) {
				if ext[k] != want[k] {
					t.Errorf("line %d: %s = %q, want %q", i, k, ext[k], want[k])
				}
			}
		}
	}
}

// wantAuthFailure is Pulumi's AuthenticationFailure: denied, or a failed auth action.
func wantAuthFailure(e *gatehouse.AuditEvent) bool {
	return e.Outcome == gatehouse.OutcomeDenied || (e.Outcome == gatehouse.OutcomeFailure && strings.HasPrefix(e.Action, "auth"))
}

func mergeKeys(a, b map[string]string) map[string]bool {
	m := map[string]bool{}
	for k := range a {
		m[k] = true
	}
	for k := range b {
		m[k] = true
	}
	return m
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestCEFEscapingExact(t *testing.T) {
	e := gatehouse.AuditEvent{
		Seq: 1, Time: time.Unix(1700000000, 0), Action: `a|b\c`, Outcome: "success",
		ActorName: "x=y\\z\nw\r|", Reason: "line1\nline2",
	}
	line := string(appendCEF(nil, "h", &e))
	for _, want := range []string{
		`|a\|b\\c|`,                      // header: | and \ escaped
		`suser=x\=y\\z\nw\r| `,           // extension: = \ LF CR escaped, | not
		`reason=line1\nline2 `,           // newline escaped
		`performed a\|b\\c: line1 line2`, // header Name: line break becomes a space
	} {
		if !strings.Contains(line, want) {
			t.Errorf("CEF %q lacks %q", line, want)
		}
	}
	if strings.ContainsAny(line, "\r\n") {
		t.Errorf("CEF record contains a raw line break: %q", line)
	}
}

func TestParseCEFPulumiExample(t *testing.T) {
	// Pulumi Cloud's CEF export line (as quoted by Pulumi users' parsers).
	line := `Feb 14 14:53:01 api.pulumi.com CEF:0|Pulumi|Pulumi Service|1.0|User Login|User "tushar-pulumi-corp" logged into the Pulumi Console.|0|authenticationFailure=false dvchost=api.pulumi.com orgID=bbdf1c46-4a7b-497c-8b3d-0acf8a55e505 requireOrgAdmin=false requireStackAdmin=false rt=1676386381000 src=99.159.29.103 suser=tushar-pulumi-corp tokenID= tokenName= userID=b557a719-8291-4cd3-93e4-fa5405c0ce49`
	h, ext, err := ParseCEF(line)
	if err != nil {
		t.Fatal(err)
	}
	if h[1] != "Pulumi" || h[4] != "User Login" || h[6] != "0" {
		t.Errorf("header %q", h)
	}
	if ext["suser"] != "tushar-pulumi-corp" || ext["tokenID"] != "" || ext["tokenName"] != "" || ext["rt"] != "1676386381000" || len(ext) != 11 {
		t.Errorf("ext %q", ext)
	}
}

func TestParseCEFStrict(t *testing.T) {
	for _, bad := range []string{
		"",
		"no marker",
		"hostCEF:0|a|b|c|d|e|1|",          // prefix must end with a space
		"CEF:0|a|b|c|d|e|",                // six fields
		"CEF:0|a|b|c|d|e|1",               // severity not terminated
		`CEF:0|a\x|b|c|d|e|1|`,            // bad header escape
		`CEF:0|a|b|c|d|e|1\`,              // lone backslash in header
		"CEF:x|a|b|c|d|e|1|",              // version
		"CEF:0|a|b|c|d|e|11|",             // severity range
		"CEF:0|a|b|c|d|e|01|",             // severity form
		"CEF:0|a|b|c|d|e|1|novalue",       // extension without =
		"CEF:0|a|b|c|d|e|1|a=b=c",         // unescaped = in a value
		"CEF:0|a|b|c|d|e|1|a=1 b c=2 a=3", // repeated key
		"CEF:0|a|b|c|d|e|1|a=x\\t",        // bad value escape
		"CEF:0|a|b|c|d|e|1|a=x\\",         // lone trailing backslash
		"CEF:0|a|b|c|d|e|1|a=x\ny",        // raw line break
		"CEF:0|a|b|c|d|e|1|a b=1",         // key with a space
		"CEF:0|a|b|c|d|e|1|k-y=1",         // key with a dash
		"CEF:0|a|b|c|d|e|1| a=1",          // leading space
		"CEF:0|a|b|c|d|e|1|=1",            // empty key
		"CEF:0|a|b\nc|d|e|f|1|",           // line break in header
	} {
		if h, ext, err := ParseCEF(bad); err == nil {
			t.Errorf("ParseCEF(%q) = %q, %q; want an error", bad, h, ext)
		}
	}
	// Valid edge cases.
	for line, want := range map[string]map[string]string{
		"CEF:1|a|b|c|d|e|Very-High|":              {},
		"CEF:0|a|b|c|d|e|10|a=":                   {"a": ""},
		"CEF:0|a|b|c|d|e|1|a=  b=x y ":            {"a": " ", "b": "x y "},
		`CEF:0|a|b|c|d|e|1|a=x\=y\\ b=\n\r|pipe|`: {"a": `x=y\`, "b": "\n\r|pipe|"},
	} {
		_, ext, err := ParseCEF(line)
		if err != nil || !maps.Equal(ext, want) {
			t.Errorf("ParseCEF(%q) = %q, %v; want %q", line, ext, err, want)
		}
	}
}

// FuzzCEFRoundTrip checks that any extension value survives WriteCEF and ParseCEF. Plain
// `go test` runs the seeds; `go test -fuzz=FuzzCEFRoundTrip` explores.
func FuzzCEFRoundTrip(f *testing.F) {
	for _, v := range nastyValues {
		f.Add(v, "stack:create")
	}
	f.Fuzz(func(t *testing.T, v, action string) {
		e := gatehouse.AuditEvent{Seq: 7, Time: baseTime, Action: action, Outcome: "denied", ActorName: v, Reason: v, UserAgent: v, Target: v}
		var buf bytes.Buffer
		if err := WriteCEF(&buf, "h", Events([]gatehouse.AuditEvent{e})); err != nil {
			t.Fatal(err)
		}
		line := strings.TrimSuffix(buf.String(), "\n")
		if strings.ContainsAny(line, "\r\n") {
			t.Fatalf("raw line break in %q", line)
		}
		_, ext, err := ParseCEF(line)
		if err != nil {
			t.Fatalf("ParseCEF(%q): %v", line, err)
		}
		for _, k := range []string{"suser", "reason", "requestClientApplication", "cs1"} {
			if ext[k] != v {
				t.Fatalf("%s = %q, want %q", k, ext[k], v)
			}
		}
	})
}

func TestCSV(t *testing.T) {
	chain := nastyChain()
	chain[0].Details[DetailRequireOrgAdmin] = "true"
	chain[1].Details[DetailRequireStackAdmin] = "true"
	var buf bytes.Buffer
	if err := WriteCSV(&buf, Events(chain)); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "Timestamp,Name,Login,Event,Description,SourceIP,RequireOrgAdmin,RequireStackAdmin,AuthenticationFailure,Outcome,Target,Seq,ID\n") {
		t.Fatalf("header: %q", strings.SplitN(buf.String(), "\n", 2)[0])
	}
	r := csv.NewReader(&buf)
	r.FieldsPerRecord = len(CSVHeader)
	recs, err := r.ReadAll()
	if err != nil {
		t.Fatalf("encoding/csv cannot read WriteCSV: %v", err)
	}
	if len(recs) != len(chain)+1 {
		t.Fatalf("%d records, want %d", len(recs), len(chain)+1)
	}
	for i, rec := range recs[1:] {
		e := &chain[i]
		want := []string{
			strconv.FormatInt(e.Time.Unix(), 10), e.ActorName, login(e), e.Action, Describe(e), e.SourceIP,
			strconv.FormatBool(i == 0), strconv.FormatBool(i == 1), strconv.FormatBool(wantAuthFailure(e)),
			e.Outcome, e.Target, strconv.FormatInt(e.Seq, 10), e.ID,
		}
		for j := range want {
			w := want[j]
			if w != "" && strings.ContainsRune("=+-@\t\r", rune(w[0])) {
				w = "'" + w // formula defused
			}
			// encoding/csv's Reader turns \r\n inside a quoted field into \n.
			w = strings.ReplaceAll(w, "\r\n", "\n")
			if rec[j] != w {
				t.Errorf("row %d %s = %q, want %q", i+1, CSVHeader[j], rec[j], w)
			}
		}
		for j, cell := range rec {
			if cell != "" && strings.ContainsRune("=+-@", rune(cell[0])) {
				t.Errorf("row %d %s = %q starts a formula", i+1, CSVHeader[j], cell)
			}
		}
	}
}

func TestJSONLRoundTrip(t *testing.T) {
	chain := nastyChain()
	var buf bytes.Buffer
	if err := WriteJSONL(&buf, Events(chain)); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(buf.String(), "\n"); n != len(chain) {
		t.Fatalf("%d lines for %d events", n, len(chain))
	}
	var got []gatehouse.AuditEvent
	for e, err := range ReadJSONL(bytes.NewReader(buf.Bytes())) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if len(got) != len(chain) {
		t.Fatalf("read %d events, wrote %d", len(got), len(chain))
	}
	for i := range chain {
		a, b := chain[i], got[i]
		if !a.Time.Equal(b.Time) {
			t.Errorf("event %d time %v != %v", i, a.Time, b.Time)
		}
		a.Time, b.Time = time.Time{}, time.Time{}
		if !maps.Equal(a.Details, b.Details) {
			t.Errorf("event %d details differ", i)
		}
		a.Details, b.Details = nil, nil
		if a.ID != b.ID || a.Seq != b.Seq || a.Reason != b.Reason || a.ActorName != b.ActorName || !bytes.Equal(a.Hash, b.Hash) || !bytes.Equal(a.PrevHash, b.PrevHash) {
			t.Errorf("event %d differs:\n%+v\n%+v", i, a, b)
		}
	}
	rep, err := Verify(context.Background(), ReadJSONL(bytes.NewReader(buf.Bytes())), nil, nil)
	if err != nil || !rep.OK || rep.Checked != int64(len(chain)) {
		t.Fatalf("Verify(ReadJSONL): %v, %v", rep, err)
	}
	// Malformed input ends the iteration with an error.
	for _, bad := range []string{"{", `{"seq":1,"unknown":2}`, `{"seq":1,"time":"yesterday"}`, `{"seq":1,"time":"2026-01-01T00:00:00Z","hash":"zz"}`} {
		var gotErr error
		for _, err := range ReadJSONL(strings.NewReader(bad + "\n")) {
			gotErr = err
		}
		if gotErr == nil {
			t.Errorf("ReadJSONL(%q): no error", bad)
		}
	}
}

func TestOCSF(t *testing.T) {
	chain := nastyChain()
	chain[0].Action = "stack:create"
	chain[1].Action = "stack:read"
	chain[2].Action = "team:update"
	chain[3].Action = "token:revoke"
	chain[4].Action = "auth:login"
	chain[4].Target = ""
	chain[4].SourceIP = ""
	var buf bytes.Buffer
	if err := WriteOCSF(&buf, Events(chain)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(chain) {
		t.Fatalf("%d lines for %d events", len(lines), len(chain))
	}
	wantActivity := []int{1, 2, 3, 4, 99}
	for i, line := range lines {
		var o map[string]any
		if err := json.Unmarshal([]byte(line), &o); err != nil {
			t.Fatal(err)
		}
		e := &chain[i]
		// OCSF base event and API Activity required attributes.
		for _, k := range []string{"activity_id", "category_uid", "class_uid", "time", "severity_id", "type_uid", "metadata", "actor", "api", "src_endpoint"} {
			if _, ok := o[k]; !ok {
				t.Errorf("event %d lacks %s", i, k)
			}
		}
		if o["class_uid"] != 6003.0 || o["category_uid"] != 6.0 {
			t.Errorf("event %d class %v category %v", i, o["class_uid"], o["category_uid"])
		}
		act := o["activity_id"].(float64)
		if o["type_uid"] != 600300+act {
			t.Errorf("event %d type_uid %v for activity %v", i, o["type_uid"], act)
		}
		if i < len(wantActivity) && int(act) != wantActivity[i] {
			t.Errorf("event %d (%s) activity %v, want %d", i, e.Action, act, wantActivity[i])
		}
		if o["time"] != float64(e.Time.UnixMilli()) {
			t.Errorf("event %d time %v", i, o["time"])
		}
		md := o["metadata"].(map[string]any)
		if md["version"] != OCSFVersion || md["uid"] != e.ID || md["sequence"] != float64(e.Seq) {
			t.Errorf("event %d metadata %v", i, md)
		}
		if md["product"].(map[string]any)["name"] != "Gatehouse" {
			t.Errorf("event %d product %v", i, md["product"])
		}
		api := o["api"].(map[string]any)
		if api["operation"] != e.Action {
			t.Errorf("event %d api %v", i, api)
		}
		src := o["src_endpoint"].(map[string]any)
		if (e.SourceIP != "" && src["ip"] != e.SourceIP) || len(src) == 0 {
			t.Errorf("event %d src_endpoint %v", i, src)
		}
		wantStatus := map[string]float64{"success": 1, "denied": 2, "failure": 2}[e.Outcome]
		if o["status_id"] != wantStatus {
			t.Errorf("event %d status_id %v for %s", i, o["status_id"], e.Outcome)
		}
	}
}

func TestToPulumi(t *testing.T) {
	e := sampleEvent(0) // user, success
	e.Details[DetailRequireOrgAdmin] = "true"
	p := ToPulumi(&e)
	b, _ := json.Marshal(p)
	s := string(b)
	for _, want := range []string{`"timestamp":` + strconv.FormatInt(e.Time.Unix(), 10), `"event":"stack:update"`, `"reqOrgAdmin":true`, `"user":{"name":"actor-0","githubLogin":"actor-0"`} {
		if !strings.Contains(s, want) {
			t.Errorf("%s lacks %s", s, want)
		}
	}
	tok := sampleEvent(1) // team-token, denied
	p = ToPulumi(&tok)
	if p.TokenName != tok.ActorName || p.User.Name != "" || !p.AuthFailure {
		t.Errorf("token event: %+v", p)
	}
}

func TestDescribe(t *testing.T) {
	e := gatehouse.AuditEvent{ActorKind: "team-token", ActorName: "ci", Action: "stack:update", Target: "acme/web/prod", Outcome: "denied", Reason: "protected\nstack"}
	if got, want := Describe(&e), `team-token "ci" was denied stack:update on "acme/web/prod": protected stack`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
	e = gatehouse.AuditEvent{ActorKind: "user", ActorName: "al\nice", Action: "auth:login", Outcome: "success"}
	if got, want := Describe(&e), `user "al\nice" performed auth:login`; got != want {
		t.Errorf("Describe = %q, want %q", got, want)
	}
}

// FuzzParseCEF checks that ParseCEF never panics and that what it accepts has seven header
// fields.
func FuzzParseCEF(f *testing.F) {
	f.Add("CEF:0|a|b|c|d|e|1|k=v")
	f.Add(`Feb 14 14:53:01 h CEF:0|a\|b|c\\|d|e|f|10|a=1 b=x\=y c=\n`)
	f.Add("CEF:0|a|b|c|d|e|1|a=b=c")
	f.Fuzz(func(t *testing.T, line string) {
		h, ext, err := ParseCEF(line)
		if err == nil && (len(h) != 7 || ext == nil) {
			t.Fatalf("ParseCEF(%q) = %q, %v", line, h, ext)
		}
	})
}
