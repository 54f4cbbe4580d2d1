package sso

import (
	"html/template"
	"net/http"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}} · Gatehouse</title>
<style>body{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}
.err{color:#a00}input,button{font:inherit;padding:.3rem .6rem;margin:.2rem 0}form{margin:1rem 0}</style></head>
<body><h1>{{.Title}}</h1>
{{if .Error}}<p class="err" role="alert">{{.Error}}</p>{{end}}
{{range .Paragraphs}}<p>{{.}}</p>{{end}}
{{range .Links}}<p><a href="{{.Href}}">{{.Text}}</a></p>{{end}}
{{range .Forms}}<form method="{{.Method}}" action="{{.Action}}">{{range .Hidden}}<input type="hidden" name="{{.Name}}" value="{{.Value}}">{{end}}
{{range .Fields}}<label>{{.Label}} <input name="{{.Name}}" type="{{.Type}}" autocomplete="off" required></label><br>{{end}}
<button type="submit">{{.Submit}}</button></form>{{end}}
</body></html>
`))

// Page is a simple HTML page (sign-in, confirmation, error).
type Page struct {
	Title      string
	Error      string
	Paragraphs []string
	Forms      []Form
	// Links are navigation choices (the SSO sign-ins: links, not forms, because CSP
	// form-action would also govern their redirect to the identity provider).
	Links []Link
	// FormTargets are origins besides this site's that the page's forms may end up at
	// (CSP form-action also governs the redirects that answer a form: the CLI login's
	// hand-over to the CLI's loopback listener).
	FormTargets []string
}

// Form is a form of a Page.
type Form struct {
	Method, Action string
	Hidden         []Field
	Fields         []Field
	Submit         string
}

// Link is a link of a Page.
type Link struct{ Href, Text string }

// Field is a form field (Hidden: Name and Value; input: Name, Label, Type).
type Field struct {
	Name, Value, Label, Type string
}

// Render writes the page with status. Pages are never cached or framed.
func (p *Page) Render(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	formAction := "'self'"
	for _, o := range p.FormTargets {
		formAction += " " + o
	}
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action "+formAction+"; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = pageTmpl.Execute(w, p)
}

// ErrorPage writes an error page.
func (m *Manager) ErrorPage(w http.ResponseWriter, _ *http.Request, status int, title, msg string) {
	(&Page{Title: title, Error: msg, Paragraphs: []string{`Nothing was changed. Try again, or ask your organization's administrator.`}}).Render(w, status)
}
