package httpapi

import (
	"net/url"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// The console's sign-in: a person pastes a personal access token (the break-glass path,
// and the only one before an organization configures single sign-on) and gets a browser
// session of package sso; the organizations' SSO buttons are shown when asked for one.
// Sign-out is sso's POST /logout.

// ssoStartPaths are where an organization's sign-in through each method starts.
var ssoStartPaths = map[string]string{
	gatehouse.SignInOIDC:   "/login/%s/sso",
	gatehouse.SignInGitHub: "/login/%s/github",
	gatehouse.SignInSAML:   "/login/%s/saml",
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
		if len(c.Methods) > 0 && allowed(gatehouse.SignInSAML) {
			add(gatehouse.SignInSAML, "SAML")
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

// consoleSignIn is POST /console/sign-in: the token form. The token is authenticated as
// an API call's would be (rate-limited on failure, refused when revoked, expired or its user
// disabled); only a person's own personal token (not a team, organization or OIDC-issued
// one) starts a session, and only when the person's organizations allow token sign-in
// (sso.MayUseTokenSignIn). The sign-in is recorded as auth:login, success or failure.
func (s *Server) consoleSignIn(rq *Request) (any, error) {
	rq.event.Action = sso.ActionLogin
	rq.Detail("method", gatehouse.SignInToken)
	// Login CSRF: a form on another site must not sign the browser in as someone else.
	if err := s.sso.CheckOrigin(rq.Request); err != nil {
		rq.fail(gatehouse.OutcomeDenied, err)
		return nil, err
	}
	if err := rq.form(); err != nil {
		return nil, err
	}
	cred := strings.TrimSpace(rq.PostForm.Get("token"))
	next := consoleNext(rq.PostForm.Get("next"))
	now := s.cfg.Now()
	var authErr error
	if err := s.store.View(rq.Context(), func(tx gatehouse.Tx) error {
		epoch, err := tx.SecurityEpoch()
		if err != nil {
			return err
		}
		rq.epoch = epoch
		s.syncLimiter(epoch)
		authErr = s.authenticateToken(rq, tx, cred, now)
		return nil
	}); err != nil {
		return nil, err
	}
	if authErr != nil {
		if gatehouse.IsCode(authErr, gatehouse.EUNAUTHORIZED) {
			src, prefix := rq.event.SourceIP, credentialPrefix("token "+cred)
			if lerr := s.limiter.check(src, prefix, now); lerr != nil {
				s.rateLimited(src, prefix, now)
				rq.failAggregated(gatehouse.OutcomeDenied, lerr)
				return nil, lerr
			}
			if lerr := s.limiterFailed(rq, src, prefix, now); lerr != nil {
				s.rateLimited(src, prefix, now)
				authErr = lerr
			}
		}
		if rq.event.TokenID == "" {
			rq.failAggregated(gatehouse.OutcomeFailure, authErr)
		} else {
			rq.fail(gatehouse.OutcomeFailure, authErr)
		}
		return nil, signInRefused(authErr)
	}
	sub := rq.Subject
	if sub.Kind != authz.UserKind || sub.User == nil || sub.Pipeline || sub.Token == nil || sub.Token.Issuer != "" {
		err := gatehouse.Errorf(gatehouse.EFORBIDDEN, "sign in with a personal access token of your own: team, organization and OIDC-issued tokens are machine credentials")
		rq.fail(gatehouse.OutcomeDenied, err)
		return nil, err
	}
	rq.event.Target = sub.User.Name
	err := s.store.Update(rq.Context(), func(tx gatehouse.Tx) error {
		if err := s.sso.MayUseTokenSignIn(tx, sub.User.ID); err != nil {
			return err
		}
		sess, err := s.sso.StartSession(tx, rq.w, rq.Request, sub.User.ID, 0, gatehouse.SignInToken, time.Time{})
		if err != nil {
			return err
		}
		rq.Detail("session", sess.ID)
		ev := rq.event
		ev.Outcome, ev.Reason = gatehouse.OutcomeSuccess, ""
		return tx.AppendAudit(&ev)
	})
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			rq.fail(gatehouse.OutcomeDenied, err)
		} else {
			rq.fail(gatehouse.OutcomeFailure, err)
		}
		return nil, err
	}
	rq.audited = true
	return consoleRedirect(next), nil
}

// signInRefused is the sign-in form's answer to a token that does not authenticate: a 401
// shows the form again with the reason.
func signInRefused(err error) error {
	if gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
		return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "%s", gatehouse.ErrorMessage(err))
	}
	return err
}
