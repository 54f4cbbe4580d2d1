package httpapi

import (
	"net"
	"net/http"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// SessionConfig configures people's browser sessions (package sso).
type SessionConfig struct {
	// IdleTimeout and MaxLifetime bound a session (--session-idle-timeout,
	// --session-max-lifetime); 0: sso's defaults (2h, 12h).
	IdleTimeout time.Duration
	MaxLifetime time.Duration
	// PublicURL is the console's external URL (https://app.example.com): the base of the
	// redirect URIs registered at identity providers, and an accepted Origin
	// (--public-url). Empty: taken from each request.
	PublicURL string
}

func (s *Server) newSSO() *sso.Manager {
	m := sso.New(s.store, sso.Config{
		IdleTimeout: s.cfg.Sessions.IdleTimeout, AbsoluteTimeout: s.cfg.Sessions.MaxLifetime,
		PublicURL: s.cfg.Sessions.PublicURL, ClientIP: s.clientIP, TrustedProto: s.fromTrustedProxy,
		Secrets: s.secrets, Log: s.log, Now: s.cfg.Now,
	})
	return m
}

// SSO returns the server's sign-in manager (for the SAML, SCIM and console handlers).
func (s *Server) SSO() *sso.Manager { return s.sso }

// fromTrustedProxy reports whether the request's peer is a trusted proxy (whose
// X-Forwarded-Proto is believed).
func (s *Server) fromTrustedProxy(r *http.Request) bool {
	if len(s.cfg.TrustedProxies) == 0 {
		return false
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	return ip != nil && trusted(s.cfg.TrustedProxies, ip)
}

// authenticateSession authenticates a request by its session cookie (no Authorization
// header): the subject is the session's user, marked with the session (audit shows
// method=session). A state-changing request must pass the session's CSRF check.
func (s *Server) authenticateSession(rq *Request, tx gatehouse.Tx) error {
	sess, u, err := s.sso.Lookup(tx, rq.Request)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
			rq.event.Reason = gatehouse.ErrorMessage(err)
			rq.Detail("method", "session")
			return s.authFailed(rq, "session", gatehouse.ErrorMessage(err))
		}
		return err
	}
	rq.Subject = &authz.Subject{Kind: authz.UserKind, User: u, Session: sess}
	rq.setActor()
	if err := s.sso.CheckCSRF(rq.Request, sess); err != nil {
		rq.event.Reason = gatehouse.ErrorMessage(err)
		return err
	}
	return nil
}

// logout is POST /logout: ends the caller's session (CSRF-checked; audited by sso).
func (s *Server) logout(rq *Request) (any, error) {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.sso.Logout(r.Context(), w, r) }), nil
}

// getSession is GET /api/user/session: the caller's session (console): who, until when,
// and the CSRF token its state-changing calls must send. 404 for a caller without one.
func (s *Server) getSession(rq *Request) (any, error) {
	sess := rq.Subject.Session
	if sess == nil {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "this request was not made with a session cookie")
	}
	var org string
	if sess.OrgID != 0 {
		_ = rq.View(func(tx gatehouse.Tx) error {
			if o, err := tx.GetOrg(sess.OrgID); err == nil {
				org = o.Name
			}
			return nil
		})
	}
	return map[string]any{
		"id": sess.ID, "user": rq.Subject.User.Name, "organization": org, "method": sess.Method,
		"created": sess.Created.Unix(), "idleExpires": sess.IdleExpires.Unix(), "expires": sess.Expires.Unix(),
		"csrfToken": sess.CSRF, "csrfHeader": sso.CSRFHeader,
	}, nil
}

// registerSSORoutes declares the sign-in, session and SSO routes (package sso does the work).
func (s *Server) registerSSORoutes() {
	get, post := http.MethodGet, http.MethodPost
	// The session is the credential: the handler checks it (and its CSRF token) itself.
	s.handle(post, "/logout", authz.Public, s.logout).selfAudited()
	s.handle(get, "/api/user/session", authz.UserRead, s.getSession)
}
