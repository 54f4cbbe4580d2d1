// Package sso signs people in to Gatehouse through identity providers and keeps their
// browser sessions: OpenID Connect and GitHub sign-in per organization (SAML lives in its
// own package and ends in Complete too), server-side sessions shared by every process,
// organization sign-in policy (allowed methods, "SSO required" with break-glass admins,
// just-in-time membership, group-to-team mapping) and the stock CLI's browser login.
//
// # API for the other identity engineers (keep stable)
//
//	m := sso.New(store, sso.Config{...})
//
//	// After verifying an identity provider's answer for organization org (SAML: the
//	// signed assertion), hand the identity over. Complete applies the org's policy,
//	// links (Issuer, Subject) to a user, starts the session (cookie on w), audits and
//	// redirects to returnTo when it is a same-origin path (RelayState; a pending CLI
//	// login is "/cli-login?..."), else "/". It always writes the response; on refusal an
//	// error page, and nothing is created.
//	err := m.Complete(ctx, w, r, org, sso.Identity{Provider: gatehouse.SignInSAML,
//		Issuer: idpEntityID, Subject: nameID, Email: email, EmailVerified: true,
//		Name: name, Groups: groups, SessionNotOnOrAfter: notAfter}, relayState)
//
//	// End sessions (SCIM deprovisioning: every session of user U started by org O's
//	// sign-in; orgID 0 = all of the user's sessions). In the caller's transaction.
//	n, err := sso.EndSessions(tx, userID, orgID)   // = tx.DeleteUserSessions
//
//	// The session of a request (console): Lookup in a read transaction; CheckCSRF on
//	// every state-changing request made with the cookie; Touch after the request.
//	s, u, err := m.Lookup(tx, r)
//	err = m.CheckCSRF(r, s)
//
//	sso.SafeReturn(raw)   // a validated same-origin return path, else "/"
//
//	// httpapi: (*httpapi.Server).SSO() returns the Manager; authz.Subject.Session is set
//	// (Token nil, Kind UserKind) on requests authenticated by the cookie.
//
// A session carries no organization power of its own: it acts as its user, whose
// membership decides (authz.Decide). Removing a member from an organization (SCIM
// deprovisioning) therefore ends their access there at once, whatever session they hold;
// EndSessions additionally signs them out.
//
// Sign-in pages and callbacks (httpapi/sso.go): GET /login, /login/{org} (the org's
// methods; SAML's button points at GET /login/{org}/sso?return=PATH, which the SAML
// handler owns and should pass on as RelayState), POST /login/token (break-glass),
// GET /login/{org}/sso/oidc[/callback], /login/{org}/sso/github[/callback],
// /welcome/{org}/sso (redirects to /login/{org}), GET/POST /cli-login, /welcome/cli,
// POST /logout, GET /api/user/session, GET/PUT /api/orgs/{org}/sso.
//
// # Sessions
//
// The cookie is __Host-gatehouse_session (Secure, HttpOnly, SameSite=Lax, Path=/) when
// Gatehouse is reached over HTTPS (directly, through a trusted proxy's X-Forwarded-Proto,
// or per Config.PublicURL), and gatehouse_session (not Secure) on plain http:// to a
// loopback host, for development; on plain HTTP to any other host no session is started.
// Its value is 32 random bytes; the database keeps only a digest. Every sign-in makes a
// new session (and ends the one the browser had): no fixation. A session ends at the
// first of: idle timeout (slid by use, recorded at most once a minute), absolute
// lifetime, the identity provider's SessionNotOnOrAfter, sign-out, or deletion (SCIM,
// user disabled). Sessions are read from the database on every request, so an ended
// session fails on the next request on every process.
//
// # CSRF
//
// Synchronizer token: each session has a random CSRF token (stored with it). Every
// state-changing request (not GET/HEAD/OPTIONS) authenticated by the cookie must carry it
// in the X-Gatehouse-CSRF header (API calls; the console reads it from GET
// /api/user/session) or the csrf form field (HTML forms), and its Origin (or Referer)
// must be this site. SameSite=Lax keeps the cookie off cross-site POSTs as a second line.
// Requests with an Authorization header are not cookie-authenticated and need neither.
//
// # Audit
//
// auth:login (success, or failure with the reason), auth:logout, auth:identity-link,
// auth:cli-token, org:sso (configuration changes), org:member:jit, org:team:sso-groups.
package sso
