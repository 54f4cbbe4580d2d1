package console

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRenderEscapes(t *testing.T) {
	evil := `<script>alert(1)</script>`
	b, err := Render("error", &Page{Title: evil, User: evil, Org: evil, CSRF: `"><x`, Data: struct{ Message string }{evil}})
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if strings.Contains(s, "<script>alert") || strings.Contains(s, `"><x`) {
		t.Fatalf("unescaped:\n%s", s)
	}
	if !strings.Contains(s, "&lt;script&gt;alert(1)&lt;/script&gt;") {
		t.Fatalf("the text is not shown escaped:\n%s", s)
	}
	// The organization name goes into paths escaped as a path segment.
	b, _ = Render("error", &Page{Title: "x", Org: "a/b?c", Data: struct{ Message string }{""}})
	if !strings.Contains(string(b), `/console/orgs/a%2Fb%3Fc/stacks`) {
		t.Fatalf("organization path not escaped:\n%s", b)
	}
}

func TestRenderUnknownPage(t *testing.T) {
	if _, err := Render("nope", &Page{}); err == nil {
		t.Fatal("no error for an unknown page")
	}
}

func TestHourChart(t *testing.T) {
	h0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := HourChart([]HourCount{{h0, 4, 1}, {h0.Add(time.Hour), 0, 0}, {h0.Add(2 * time.Hour), 2, 2}})
	if c.Total != 6 || c.Deny != 3 || c.Max != 4 || len(c.Bars) != 6 || c.Empty {
		t.Fatalf("chart %+v", c)
	}
	if c.Bars[0].H <= c.Bars[4].H || c.Bars[2].H != 0 {
		t.Fatalf("bar heights: %+v", c.Bars)
	}
	if e := HourChart(nil); !e.Empty || len(e.Bars) != 0 {
		t.Fatalf("empty chart %+v", e)
	}
}

func TestStaticAndHeaders(t *testing.T) {
	for name, ct := range map[string]string{"style.css": "text/css", "console.js": "text/javascript"} {
		w := httptest.NewRecorder()
		if !Static(w, httptest.NewRequest("GET", "/console/static/"+name, nil), name) {
			t.Fatalf("%s not served", name)
		}
		if !strings.HasPrefix(w.Header().Get("Content-Type"), ct) || w.Header().Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: headers %v", name, w.Header())
		}
	}
	for _, name := range []string{"../console.go", "", "nope.css", "../templates/layout.html"} {
		if Static(httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil), name) {
			t.Errorf("%q served", name)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe") || !strings.Contains(ContentSecurityPolicy, "frame-ancestors 'none'") {
		t.Errorf("CSP %q", ContentSecurityPolicy)
	}
}
