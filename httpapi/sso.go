package httpapi

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/oidc"
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
	// SweepInterval is how often ended sessions and expired sign-in states (OIDC, GitHub
	// and SAML) are deleted in the background (--session-sweep-interval); 0: sso's default
	// (5m).
	SweepInterval time.Duration
}

func (s *Server) newSSO() *sso.Manager {
	// Identity providers are fetched through the same guard as OIDC token-exchange
	// issuers: no loopback, private or metadata addresses unless --allow-private-issuers.
	client := s.cfg.IssuerClient
	if client == nil {
		client = oidc.NewHTTPClient(netguard.Options{AllowPrivate: s.cfg.AllowPrivateIssuers})
	}
	m := sso.New(s.store, sso.Config{HTTPClient: client,
		IdleTimeout: s.cfg.Sessions.IdleTimeout, AbsoluteTimeout: s.cfg.Sessions.MaxLifetime,
		PublicURL: s.cfg.Sessions.PublicURL, ClientIP: s.clientIP, TrustedProto: s.fromTrustedProxy,
		Secrets: s.secrets, Log: s.log, Now: s.cfg.Now, SweepInterval: s.cfg.Sessions.SweepInterval,
	})
	return m
}

// StartSessionSweeper starts the periodic deletion of ended browser sessions and expired
// sign-in states (SessionConfig.SweepInterval); Close stops it.
func (s *Server) StartSessionSweeper() { s.sso.StartSweeper() }

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
	put := http.MethodPut
	// The session is the credential: the handler checks it (and its CSRF token) itself.
	s.handle(post, "/logout", authz.Public, s.logout).selfAudited()
	s.handle(get, "/api/user/session", authz.UserRead, s.getSession)

	// Sign-in pages and identity-provider callbacks: public (the handlers verify the
	// provider's answer and audit sign-ins themselves). {orgName}, not {org}: these pages
	// answer for unknown organizations with a page of their own.
	s.handle(get, "/login", authz.Public, s.browser(s.signInPage))
	s.handle(get, "/login/{orgName}", authz.Public, s.browser(s.signInPage))
	s.handle(post, "/login/token", authz.Public, s.tokenSignIn).selfAudited()
	s.handle(get, "/login/{orgName}/sso/oidc", authz.Public, s.browser(func(w http.ResponseWriter, r *http.Request) {
		s.sso.StartOIDC(w, r, r.PathValue("orgName"), r.URL.Query().Get("return"))
	}))
	s.handle(get, "/login/{orgName}/sso/oidc/callback", authz.Public, s.browser(func(w http.ResponseWriter, r *http.Request) {
		s.sso.FinishOIDC(w, r, r.PathValue("orgName"))
	}))
	s.handle(get, "/login/{orgName}/sso/github", authz.Public, s.browser(func(w http.ResponseWriter, r *http.Request) {
		s.sso.StartGitHub(w, r, r.PathValue("orgName"), r.URL.Query().Get("return"))
	}))
	s.handle(get, "/login/{orgName}/sso/github/callback", authz.Public, s.browser(func(w http.ResponseWriter, r *http.Request) {
		s.sso.FinishGitHub(w, r, r.PathValue("orgName"))
	}))
	s.handle(get, "/welcome/{orgName}/sso", authz.Public, s.browser(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login/"+url.PathEscape(r.PathValue("orgName")), http.StatusFound)
	}))

	// The stock CLI's browser login (`pulumi login` without a token).
	s.handle(get, "/cli-login", authz.Public, s.browser(s.sso.CLILoginPage))
	s.handle(post, "/cli-login", authz.UserTokens, s.cliLogin) // the session (cookie + CSRF) mints a personal token
	s.handle(get, "/welcome/cli", authz.Public, s.browser(s.sso.WelcomeCLI))
	// The CLI's unauthenticated agent sign-up (AI coding agents without credentials).
	s.handle(get, "/api/agents/signup", authz.Public, s.agentSignup)
	s.handle(post, "/api/agents/signup", authz.Public, s.agentSignup)

	// An organization's SSO configuration and sign-in policy.
	s.handle(get, "/api/orgs/{org}/sso", authz.OrgSSO, s.getOrgSSO)
	s.handle(put, "/api/orgs/{org}/sso", authz.OrgSSO, s.putOrgSSO)
	s.noStore("POST /cli-login")
}

// tokenSignIn is POST /login/token (sso.TokenSignIn): a person signs in with one of their
// personal access tokens. Its failures count in the failed-authentication limiter the API
// uses (per client address, as computed behind trusted proxies, and per token prefix), so
// one address is throttled across the API and the form. An address over the limit is
// refused (429, Retry-After) before the token is looked at, even a valid one, until its
// window ends; the refusal is audited as the API's are (auth:rate-limited, summarized per
// source). A failure that reaches a block is audited by sso (auth:login) and answered 429.
// Successful sign-ins count nothing.
func (s *Server) tokenSignIn(rq *Request) (any, error) {
	src, now := rq.event.SourceIP, s.cfg.Now()
	if err := s.limiter.checkSource(rq.Context(), s.store, src, now); err != nil {
		s.rateLimited(src, "", now)
		rq.event.Action = "auth:rate-limited"
		rq.Detail("method", gatehouse.SignInToken)
		rq.failAggregated(gatehouse.OutcomeDenied, err)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			var ge *gatehouse.Error
			if errors.As(err, &ge) && ge.RetryAfter > 0 {
				w.Header().Set("Retry-After", strconv.Itoa(ge.RetryAfter))
			}
			s.sso.ErrorPage(w, r, http.StatusTooManyRequests, "Sign-in refused", gatehouse.ErrorMessage(err))
		}), nil
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.sso.TokenSignIn(w, r, func(value string) error {
			prefix, now := credentialPrefix("token "+value), s.cfg.Now()
			if err := s.limiter.check(src, prefix, now); err != nil {
				s.rateLimited(src, prefix, now)
				return err
			}
			if err := s.limiterFailed(rq, src, prefix, now); err != nil {
				s.rateLimited(src, prefix, now)
				return err
			}
			return nil
		})
	}), nil
}

// browser wraps a page handler of package sso as a route handler.
func (s *Server) browser(h http.HandlerFunc) func(*Request) (any, error) {
	return func(rq *Request) (any, error) { return h, nil }
}

func (s *Server) signInPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if org := q.Get("org"); org != "" && r.PathValue("orgName") == "" {
		http.Redirect(w, r, "/login/"+url.PathEscape(org)+"?return="+url.QueryEscape(sso.SafeReturn(q.Get("return"))), http.StatusFound)
		return
	}
	s.sso.SignInPage(w, r, r.PathValue("orgName"), q.Get("return"), "")
}

// cliLogin is POST /cli-login: the signed-in person (session cookie, CSRF token in the
// form) confirms a browser login; a personal token with the CLI's description is minted
// (SSO-required policy, maximum lifetime) and the browser is sent to the CLI's listener on
// 127.0.0.1 only. Audited as auth:cli-token with the token's ID, in the same transaction.
func (s *Server) cliLogin(rq *Request) (any, error) {
	sess := rq.Subject.Session
	if sess == nil {
		return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "the CLI's browser login needs a browser session: open /cli-login in a browser")
	}
	if err := rq.ParseForm(); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "bad form")
	}
	req, err := sso.ParseCLIRequest(rq.PostForm)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", err.Error())
	}
	rq.event.Action = sso.ActionCLIToken
	rq.Detail("description", req.Description)
	var value string
	err = rq.Change(func(tx gatehouse.Tx) error {
		v, tk, err := s.sso.MintCLIToken(tx, rq.Subject.User, sess, req)
		if err != nil {
			return err
		}
		value = v
		rq.event.TokenID = tk.ID
		rq.Detail("token_id", tk.ID)
		rq.Detail("token_name", tk.Name)
		return nil
	})
	if err != nil {
		return nil, err
	}
	target := req.RedirectURL(value)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.Redirect(w, r, target, http.StatusFound)
	}), nil
}

func (s *Server) agentSignup(rq *Request) (any, error) {
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "Gatehouse does not sign up AI agents: set PULUMI_ACCESS_TOKEN to a token an administrator issued (or run pulumi login in a browser)")
}

func (s *Server) getOrgSSO(rq *Request) (any, error) {
	var out *sso.ConfigJSON
	err := rq.View(func(tx gatehouse.Tx) (err error) { out, err = s.sso.ShowConfig(tx, rq.Request, rq.Org); return err })
	return out, err
}

// putOrgSSO is PUT /api/orgs/{org}/sso: replaces the organization's SSO configuration
// (client secrets write-only, sealed by the keyring; omitted: kept). Audited with a
// summary of the new configuration (never a secret).
func (s *Server) putOrgSSO(rq *Request) (any, error) {
	var in sso.ConfigJSON
	if err := rq.decode(&in); err != nil {
		return nil, err
	}
	oidcSecret, ghSecret, err := s.sso.SealSecrets(rq.Context(), rq.Org.ID, &in)
	if err != nil {
		return nil, err
	}
	var out *sso.ConfigJSON
	err = rq.Change(func(tx gatehouse.Tx) error {
		sum, err := s.sso.ApplyConfig(tx, rq.Org, &in, oidcSecret, ghSecret)
		if err != nil {
			return err
		}
		for k, v := range sum {
			rq.Detail(k, v)
		}
		out, err = s.sso.ShowConfig(tx, rq.Request, rq.Org)
		return err
	})
	return out, err
}

// ssoRequired applies the "SSO required" policy of the user's organizations to a new
// personal token (created or rotated): only a session that such an organization's SSO
// started may mint one (or its break-glass admin). Other tokens pass.
func (s *Server) ssoRequired(tx gatehouse.Tx, rq *Request, tk *gatehouse.Token) error {
	if tk.Kind != gatehouse.TokenPersonal {
		return nil
	}
	return s.sso.MayMintPersonalToken(tx, tk.UserID, rq.Subject.Session)
}
