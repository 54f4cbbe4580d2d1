package httpapi

import (
	"net/url"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// The console's sign-in page: a person pastes a personal access token (the break-glass
// path, and the only one before an organization configures single sign-on) into a form
// that posts to sso's POST /login/token, which starts the session; the organization's SSO
// buttons start sso's sign-ins. Sign-out is sso's POST /logout.

// ssoStartPaths are where an organization's sign-in through each method starts.
var ssoStartPaths = map[string]string{
	gatehouse.SignInOIDC:   "/login/%s/sso/oidc",
	gatehouse.SignInGitHub: "/login/%s/sso/github",
}

// consoleNext is a same-origin console path to go to after signing in.
func consoleNext(raw string) string {
	next := sso.SafeReturn(raw)
	if next != "/console" && !strings.HasPrefix(next, "/console/") && !strings.HasPrefix(next, "/console?") {
		return "/console"
	}
	return next
}

// signInData is what the sign-in page shows: the token form and, for organization org
// (?org=), its single sign-on buttons.
func (s *Server) signInData(rq *Request, next string) any {
	type ssoButton struct{ Org, Name, URL string }
	data := struct {
		Next    string
		SSO     []ssoButton
		OrgSSO  bool
		OrgName string
	}{Next: consoleNext(next), OrgSSO: true}
	name := rq.URL.Query().Get("org")
	if name == "" || validOwner("organization", name) != nil {
		return data
	}
	data.OrgName = name
	_ = s.store.View(rq.Context(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName(name)
		if err != nil {
			return nil
		}
		c, err := tx.GetOrgSSO(org.ID)
		if err != nil {
			return nil
		}
		allowed := func(m string) bool {
			if len(c.Methods) == 0 {
				return true
			}
			for _, x := range c.Methods {
				if x == m {
					return true
				}
			}
			return false
		}
		add := func(method, label string) {
			if allowed(method) {
				data.SSO = append(data.SSO, ssoButton{Org: org.Name, Name: label,
					URL: strings.Replace(ssoStartPaths[method], "%s", url.PathEscape(org.Name), 1) + "?return=" + url.QueryEscape(data.Next)})
			}
		}
		if c.OIDC != nil {
			add(gatehouse.SignInOIDC, "single sign-on ("+c.OIDC.Issuer+")")
		}
		if c.GitHub != nil {
			add(gatehouse.SignInGitHub, "GitHub")
		}
		return nil
	})
	return data
}

// csrfToken is the CSRF token of the request's session ("" without one: a request with
// an access token needs none).
func (rq *Request) csrfToken() string {
	if rq.Subject != nil && rq.Subject.Session != nil {
		return rq.Subject.Session.CSRF
	}
	return ""
}

// consoleSignInPage is GET /console/sign-in.
func (s *Server) consoleSignInPage(rq *Request) (any, error) {
	p := rq.page("signin", "Sign in", "", s.signInData(rq, rq.URL.Query().Get("next")))
	if rq.URL.Query().Has("signed-out") {
		p.page.Flash = "You are signed out."
	}
	return p, nil
}
