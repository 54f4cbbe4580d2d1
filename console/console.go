// Package console is Gatehouse's web console: server-rendered pages (html/template) and
// their embedded assets. It holds no access logic: every page is a route of httpapi's one
// route table, authenticated, resolved and authorized there with the same authz actions as
// the API, and its data comes from the same functions the API handlers use. This package
// only renders what the page handlers give it, escaping everything (html/template).
package console

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// CSRFField is the name of the form field that carries the CSRF token.
var CSRFField = "csrf"

// Page is what every page template gets.
type Page struct {
	Title string
	// Nav is the navigation entry to mark as current ("overview", "access", ...).
	Nav string
	// User is the signed-in person ("" on the sign-in page).
	User string
	// Org is the organization the page is about ("" for pages of no organization).
	Org string
	// Orgs are the organizations of the signed-in person (for the switcher).
	Orgs []string
	// May lists the navigation entries the caller may open (the same decisions as the API).
	May map[string]bool
	// CSRF is the token every state-changing form sends back (CSRFField).
	CSRF string
	// Flash is a message about the last change (from the redirect after a form).
	Flash string
	// Error is a message about a change that was refused.
	Error string
	// Data is the page's own data.
	Data any
}

var pages = map[string]*template.Template{}

var funcs = template.FuncMap{
	"csrfField": func() string { return CSRFField },
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04 UTC")
	},
	"whenSec": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
	"pathEsc": url.PathEscape,
	"query":   func(v url.Values) string { return v.Encode() },
	"join":    strings.Join,
	"add":     func(a, b int) int { return a + b },
	"permClass": func(p string) string {
		switch p {
		case "admin", "write", "read", "open", "none":
			return "perm-" + p
		}
		return "perm-none"
	},
}

func init() {
	layout := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html"))
	entries, err := fs.ReadDir(templateFS, "templates")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		name := e.Name()
		if name == "layout.html" {
			continue
		}
		t := template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+name))
		pages[strings.TrimSuffix(name, ".html")] = t
	}
}

// Render renders page name with p into a buffer (so that a template error never leaves a
// half-written page).
func Render(name string, p *Page) ([]byte, error) {
	t, ok := pages[name]
	if !ok {
		return nil, fmt.Errorf("console: no page %q", name)
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return nil, fmt.Errorf("console: rendering %s: %w", name, err)
	}
	return buf.Bytes(), nil
}

// ContentSecurityPolicy is the console's policy: nothing inline, nothing from elsewhere,
// no framing, forms post only to this origin.
const ContentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecureHeaders sets the headers of every console response.
func SecureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
}

// Static serves the embedded assets under name (style.css, console.js); false when there
// is no such asset.
func Static(w http.ResponseWriter, r *http.Request, name string) bool {
	name = path.Clean("/" + name)[1:]
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil || name == "" {
		return false
	}
	SecureHeaders(w.Header())
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		w.Header().Set("Content-Type", "application/octet-stream")
	}
	w.Header().Set("Cache-Control", "public, max-age=3600")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(b))
	return true
}
