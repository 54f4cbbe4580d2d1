package httpapi

import (
	"strings"
)

// signInData is what the sign-in page shows: the token form (break-glass) and, for the
// organizations with single sign-on configured, their buttons.
func (s *Server) signInData(rq *Request, next string) any {
	type ssoButton struct{ Org, Name, URL string }
	if !strings.HasPrefix(next, "/console") {
		next = "/console"
	}
	return struct {
		Next    string
		SSO     []ssoButton
		OrgSSO  bool
		OrgName string
	}{Next: next}
}

// csrfToken is the CSRF token of the request's session ("" without one).
func (rq *Request) csrfToken() string { return "" }
