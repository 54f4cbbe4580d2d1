package webhook

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
)

func TestSelects(t *testing.T) {
	for _, c := range []struct {
		filters, groups []string
		event           string
		want            bool
	}{
		{nil, nil, UpdateSucceeded, true},
		{nil, nil, StackCreated, true},
		{[]string{UpdateFailed}, nil, UpdateSucceeded, false},
		{[]string{UpdateFailed}, nil, UpdateFailed, true},
		{nil, []string{"stacks"}, PreviewSucceeded, true},
		{nil, []string{"deployments"}, PreviewSucceeded, false},
		{[]string{"deployment_started"}, nil, Ping, true},
		{nil, []string{"environments"}, EnvironmentRevisionCreated, true},
		{nil, []string{"stacks"}, EnvironmentCreated, false},
		{[]string{EnvironmentCreated}, nil, EnvironmentDeleted, false},
	} {
		if got := Selects(c.filters, c.groups, c.event); got != c.want {
			t.Errorf("Selects(%v, %v, %s) = %v, want %v", c.filters, c.groups, c.event, got, c.want)
		}
	}
}

func TestCheckFilters(t *testing.T) {
	if f, err := CheckFilters("", []string{UpdateSucceeded}, []string{"stacks"}, true); err != nil || f != FormatRaw {
		t.Errorf("valid filters: %q, %v", f, err)
	}
	for _, c := range []struct {
		format  string
		filters []string
		groups  []string
		stack   bool
	}{
		{"xml", nil, nil, false},
		{"pulumi_deployments", nil, nil, false},
		{"", []string{"update_exploded"}, nil, false},
		{"", nil, []string{"everything"}, false},
		{"", []string{StackCreated}, nil, true}, // organization webhooks only
	} {
		if _, err := CheckFilters(c.format, c.filters, c.groups, c.stack); err == nil {
			t.Errorf("CheckFilters(%+v) accepted", c)
		}
	}
}

func TestCheckURL(t *testing.T) {
	for _, u := range []string{"https://hooks.slack.com/services/x", "http://203.0.114.1:8080/h", "https://[2606:4700::1]/"} {
		if err := CheckURL(u, false, nil); err != nil {
			t.Errorf("CheckURL(%s): %v", u, err)
		}
	}
	for _, u := range []string{"http://127.0.0.1/", "http://localhost:80/", "http://[::1]/", "http://10.0.0.1/", "http://192.168.1.1/", "http://169.254.169.254/",
		"http://metadata.google.internal/", "http://[::ffff:127.0.0.1]/", "http://0.0.0.0/", "file:///etc/passwd", "gopher://x/", "https://a:b@example.com/", "/relative"} {
		if err := CheckURL(u, false, nil); err == nil {
			t.Errorf("CheckURL(%s) accepted", u)
		}
	}
	if err := CheckURL("http://127.0.0.1/", true, nil); err != nil {
		t.Errorf("allowPrivate: %v", err)
	}
	permit := func(ap netip.AddrPort) bool { return ap == netip.MustParseAddrPort("127.0.0.1:9000") }
	if err := CheckURL("http://127.0.0.1:9000/", false, permit); err != nil {
		t.Errorf("permitted address: %v", err)
	}
	if err := CheckURL("http://127.0.0.1:9001/", false, permit); err == nil {
		t.Error("another port of a permitted address accepted")
	}
}

func TestSign(t *testing.T) {
	// HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog"), the well-known vector.
	if got := Sign([]byte("key"), []byte("The quick brown fox jumps over the lazy dog")); got != "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8" {
		t.Errorf("Sign = %s", got)
	}
}

func TestPayloads(t *testing.T) {
	ev := &Event{Name: UpdateFailed, OrgName: "acme", Project: "web", Stack: "prod", User: "alice", UpdateKind: "update", Result: "failed",
		ResourceChanges: map[string]int{"create": 2, "update": 1}, UpdateURL: "https://g/x", Version: 7}
	b, err := Payload(FormatRaw, ev)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p["kind"] != "update" || p["result"] != "failed" || p["isPreview"] != false || p["projectName"] != "web" || p["stackName"] != "prod" ||
		p["updateUrl"] != "https://g/x" || p["organization"].(map[string]any)["name"] != "acme" || p["user"].(map[string]any)["name"] != "alice" ||
		p["resourceChanges"].(map[string]any)["create"] != float64(2) {
		t.Errorf("raw payload %s", b)
	}
	if _, ok := p["action"]; ok {
		t.Errorf("an update payload has an action: %s", b)
	}
	b, _ = Payload(FormatRaw, &Event{Name: StackDeleted, OrgName: "acme", Project: "web", Stack: "prod", Action: "deleted"})
	if !strings.Contains(string(b), `"action":"deleted"`) || strings.Contains(string(b), "isPreview") {
		t.Errorf("stack payload %s", b)
	}
	b, _ = Payload(FormatSlack, ev)
	var slack struct{ Text string }
	if err := json.Unmarshal(b, &slack); err != nil || !strings.Contains(slack.Text, "<https://g/x|Update of acme/web/prod failed>") || !strings.Contains(slack.Text, "create 2, update 1") {
		t.Errorf("slack payload %s", b)
	}
	b, _ = Payload(FormatMSTeams, ev)
	var teams map[string]any
	if err := json.Unmarshal(b, &teams); err != nil || teams["@type"] != "MessageCard" || teams["themeColor"] != "D62728" || teams["title"] != "Update of acme/web/prod failed" {
		t.Errorf("teams payload %s", b)
	}
}

// TestEnvironmentPayloads: the ESC events' kinds and raw payload fields.
func TestEnvironmentPayloads(t *testing.T) {
	for _, c := range []struct {
		ev   Event
		kind string
		want map[string]any
	}{
		{Event{Name: EnvironmentCreated, OrgName: "acme", Project: "app", Env: "dev", User: "alice", Action: "created"}, KindEnvironment,
			map[string]any{"projectName": "app", "environmentName": "dev", "action": "created"}},
		{Event{Name: EnvironmentRevisionCreated, OrgName: "acme", Project: "app", Env: "dev", User: "alice", Action: "created", Revision: 3}, KindEnvironmentRevision,
			map[string]any{"environmentName": "dev", "action": "created", "revision": float64(3)}},
		{Event{Name: EnvironmentRevisionTagUpdated, OrgName: "acme", Project: "app", Env: "dev", User: "alice", Action: "updated", Revision: 2, TagName: "stable"}, KindEnvironmentRevisionTag,
			map[string]any{"environmentName": "dev", "action": "updated", "revision": float64(2), "tagName": "stable"}},
	} {
		if k := KindOf(c.ev.Name); k != c.kind {
			t.Errorf("KindOf(%s) = %q, want %q", c.ev.Name, k, c.kind)
		}
		b, err := Payload(FormatRaw, &c.ev)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if got[k] != v {
				t.Errorf("%s: %s = %v, want %v (%s)", c.ev.Name, k, got[k], v, b)
			}
		}
		if _, ok := got["stackName"]; ok {
			t.Errorf("%s: a stackName in %s", c.ev.Name, b)
		}
		slack, err := Payload(FormatSlack, &c.ev)
		if err != nil || !strings.Contains(string(slack), "acme/app/dev") {
			t.Errorf("%s: slack %s (%v)", c.ev.Name, slack, err)
		}
	}
}

func TestDeploymentPayloads(t *testing.T) {
	ev := &Event{Name: DeploymentFailed, OrgName: "acme", Project: "web", Stack: "prod", User: "alice", DeploymentID: "d-1",
		DeploymentURL: "https://gh.example/api/stacks/acme/web/prod/deployments/d-1", Version: 3, Operation: "update", Status: "failed"}
	if KindOf(ev.Name) != KindDeployment || !Selects(nil, []string{"deployments"}, DeploymentQueued) || Selects(nil, []string{"stacks"}, DeploymentStarted) {
		t.Fatal("deployment events: wrong kind or group")
	}
	b, err := Payload(FormatRaw, ev)
	if err != nil {
		t.Fatal(err)
	}
	var p map[string]any
	if err := json.Unmarshal(b, &p); err != nil {
		t.Fatal(err)
	}
	if p["deploymentId"] != "d-1" || p["deploymentUrl"] != ev.DeploymentURL || p["version"] != 3.0 || p["operation"] != "update" ||
		p["status"] != "failed" || p["stackName"] != "prod" || p["projectName"] != "web" || p["kind"] != nil || p["result"] != nil {
		t.Errorf("raw payload %s", b)
	}
	b, _ = Payload(FormatSlack, ev)
	var slack struct{ Text string }
	_ = json.Unmarshal(b, &slack)
	if want := "<" + ev.DeploymentURL + "|Deployment 3 (update) of acme/web/prod failed> by alice"; slack.Text != want {
		t.Errorf("slack %s, want %s", b, want)
	}
	b, _ = Payload(FormatMSTeams, ev)
	if !strings.Contains(string(b), `"themeColor":"D62728"`) || !strings.Contains(string(b), "Deployment 3 (update) of acme/web/prod failed") {
		t.Errorf("teams %s", b)
	}
}
