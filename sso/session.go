package sso

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/periodic"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

// Cookie names. The __Host- prefix makes browsers accept the cookie only when it is Secure,
// has Path=/ and no Domain: it cannot be set by a sibling subdomain or over plain HTTP.
// DevCookieName is used instead on http:// to a loopback address (development).
const (
	CookieName    = "__Host-gatehouse_session"
	DevCookieName = "gatehouse_session"
	// CSRFHeader carries the session's CSRF token on state-changing API calls made with the
	// session cookie; CSRFField carries it in HTML forms.
	CSRFHeader = "X-Gatehouse-CSRF"
	CSRFField  = "csrf"
)

// Default lifetimes.
const (
	DefaultIdleTimeout     = 2 * time.Hour
	DefaultAbsoluteTimeout = 12 * time.Hour
	// touchEvery is how stale a session's last use may get before a request records it
	// (the precision of the idle timeout).
	touchEvery = time.Minute
)

// Config configures the Manager.
type Config struct {
	// IdleTimeout ends a session not used for this long; AbsoluteTimeout ends it this long
	// after sign-in regardless (--session-idle-timeout, --session-max-lifetime).
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration
	// PublicURL is the console's external URL (https://app.example.com), used for the
	// redirect URIs registered at identity providers and the Origin check; empty: derived
	// from each request (TLS, Host).
	PublicURL string
	// ClientIP is the caller's address as the API computes it (trusted proxies).
	ClientIP func(*http.Request) string
	// TrustedProto reports whether the request came through a trusted proxy, whose
	// X-Forwarded-Proto is then believed.
	TrustedProto func(*http.Request) bool
	// HTTPClient fetches from identity providers (discovery, keys, code exchange); it must
	// be guarded against internal addresses (netguard) unless the operator allows them.
	HTTPClient *http.Client
	// Secrets seals client secrets (the keyring's envelope); nil: secrets cannot be stored.
	Secrets *secrets.Manager
	Log     *slog.Logger
	Now     func() time.Time
	// SweepInterval is how often StartSweeper deletes ended sessions and expired sign-in
	// states (--session-sweep-interval); 0: DefaultSweepInterval.
	SweepInterval time.Duration
}

// Manager signs people in and keeps their sessions. It is safe for concurrent use.
type Manager struct {
	store gatehouse.Store
	cfg   Config
	keys  *secrets.Manager // client secrets (keys.go)
	// OnAudit, when set, is called after an audit event the manager recorded committed
	// (webhooks, metrics). Optional.
	OnAudit func(*gatehouse.AuditEvent)

	sweep periodic.Loop // the session sweep (sweep.go)
}

// New returns a Manager.
func New(store gatehouse.Store, cfg Config) *Manager {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.AbsoluteTimeout <= 0 {
		cfg.AbsoluteTimeout = DefaultAbsoluteTimeout
	}
	if cfg.IdleTimeout > cfg.AbsoluteTimeout {
		cfg.IdleTimeout = cfg.AbsoluteTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ClientIP == nil {
		cfg.ClientIP = func(r *http.Request) string {
			h, _, err := net.SplitHostPort(r.RemoteAddr)
			if err != nil {
				return r.RemoteAddr
			}
			return h
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	return &Manager{store: store, cfg: cfg, keys: secretKeys(cfg.Secrets, store)}
}

// Config returns the manager's configuration (with defaults applied).
func (m *Manager) Config() Config { return m.cfg }

// SessionDigest is the stored digest of a session cookie's value.
func SessionDigest(value string) [32]byte { return sha256.Sum256([]byte("gatehouse-session:" + value)) }

func randomString(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("sso: no randomness: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// secure reports whether the request reached Gatehouse over HTTPS (directly, through a
// trusted proxy, or per PublicURL).
func (m *Manager) secure(r *http.Request) bool {
	if r.TLS != nil {
		return true
	}
	if m.cfg.TrustedProto != nil && m.cfg.TrustedProto(r) && strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https") {
		return true
	}
	return strings.HasPrefix(m.cfg.PublicURL, "https://")
}

// loopbackHost reports whether the request's Host is a loopback address or localhost.
func loopbackHost(r *http.Request) bool {
	h := r.Host
	if hh, _, err := net.SplitHostPort(h); err == nil {
		h = hh
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// cookieName is the session cookie's name for the request, "" when no session cookie may
// be set (plain HTTP to a host other than loopback).
func (m *Manager) cookieName(r *http.Request) string {
	switch {
	case m.secure(r):
		return CookieName
	case loopbackHost(r):
		return DevCookieName
	}
	return ""
}

// cookieValue returns the session cookie of the request ("" when none). The plain-name
// variant is read only on plain HTTP.
func (m *Manager) cookieValue(r *http.Request) string {
	if c, err := r.Cookie(CookieName); err == nil && c.Value != "" {
		return c.Value
	}
	if !m.secure(r) {
		if c, err := r.Cookie(DevCookieName); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// HasCookie reports whether the request carries a session cookie.
func (m *Manager) HasCookie(r *http.Request) bool { return m.cookieValue(r) != "" }

// Lookup finds the live session of the request's cookie in tx and its user. It returns
// ENOTFOUND when the request has no cookie, EUNAUTHORIZED (with the reason) when the
// cookie names no live session or the user is disabled. Sessions are read from the
// database on every request, so that a deleted session fails at once on every process.
func (m *Manager) Lookup(tx gatehouse.Tx, r *http.Request) (*gatehouse.Session, *gatehouse.User, error) {
	v := m.cookieValue(r)
	if v == "" {
		return nil, nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no session")
	}
	s, err := tx.GetSessionByDigest(SessionDigest(v))
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "Your session has ended (signed out, or unknown): sign in again.")
		}
		return nil, nil, err
	}
	if !s.Live(m.cfg.Now()) {
		return nil, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "Your session has expired: sign in again.")
	}
	u, err := tx.GetUser(s.UserID)
	if err != nil {
		return nil, nil, err
	}
	if !u.Disabled.IsZero() {
		return nil, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "This user account is disabled.")
	}
	return s, u, nil
}

// Touch records a use of the session and slides its idle expiry, at most once a minute
// per session (call it after Lookup, outside the read transaction).
func (m *Manager) Touch(ctx context.Context, s *gatehouse.Session) {
	now := m.cfg.Now()
	if now.Sub(s.LastSeen) < touchEvery {
		return
	}
	err := m.store.Update(ctx, func(tx gatehouse.Tx) error { return tx.TouchSession(s.ID, now, now.Add(m.cfg.IdleTimeout)) })
	if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		m.cfg.Log.Warn("recording session use failed", "err", err)
	}
}

// CheckCSRF checks a state-changing request made with session s's cookie: the Origin (or,
// without one, the Referer) must be this site, and the request must carry the session's
// CSRF token in the X-Gatehouse-CSRF header or the csrf form field (synchronizer token).
// Safe methods (GET, HEAD, OPTIONS) pass. It returns EFORBIDDEN with the reason.
func (m *Manager) CheckCSRF(r *http.Request, s *gatehouse.Session) error {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return nil
	}
	if err := m.CheckOrigin(r); err != nil {
		return err
	}
	tok := r.Header.Get(CSRFHeader)
	if tok == "" && strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		r.Body = http.MaxBytesReader(nil, r.Body, 64<<10)
		tok = r.PostFormValue(CSRFField)
	}
	if tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(s.CSRF)) != 1 {
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "missing or wrong CSRF token: a request made with a session cookie that changes something must carry the session's token (header %s or form field %s)", CSRFHeader, CSRFField)
	}
	return nil
}

// CheckOrigin refuses a cross-site request: the Origin header (or, when it is absent, the
// Referer's origin) must be this site's; a request with neither is accepted (non-browser
// clients send neither; browsers always send Origin on cross-site POSTs).
func (m *Manager) CheckOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		if ref := r.Header.Get("Referer"); ref != "" {
			if u, err := url.Parse(ref); err == nil {
				origin = u.Scheme + "://" + u.Host
			}
		}
	}
	if origin == "" {
		return nil
	}
	if origin == "null" || !sameOrigin(origin, m.siteOrigins(r)) {
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "cross-site request refused (Origin %s)", origin)
	}
	return nil
}

func subtleEq(a, b string) int { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) }

func sameOrigin(origin string, allowed []string) bool {
	for _, a := range allowed {
		if strings.EqualFold(origin, a) {
			return true
		}
	}
	return false
}

// siteOrigins are the origins this site answers as: PublicURL's, and the request's own.
func (m *Manager) siteOrigins(r *http.Request) []string {
	var out []string
	if m.cfg.PublicURL != "" {
		if u, err := url.Parse(m.cfg.PublicURL); err == nil {
			out = append(out, u.Scheme+"://"+u.Host)
		}
	}
	return append(out, m.origin(r))
}

// origin is the request's own origin (scheme://host).
func (m *Manager) origin(r *http.Request) string {
	scheme := "http"
	if m.secure(r) {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// BaseURL is the external base URL of the site for r: PublicURL when set, else the
// request's own origin.
func (m *Manager) BaseURL(r *http.Request) string {
	if m.cfg.PublicURL != "" {
		return strings.TrimRight(m.cfg.PublicURL, "/")
	}
	return m.origin(r)
}

// StartSession creates a new session for user userID (a new random ID at every sign-in:
// no session fixation), ends the session the request carried (if any), and sets the
// cookie on w. notAfter is the identity provider's SessionNotOnOrAfter (zero: none). It
// runs in tx so that the caller's audit record commits with it.
func (m *Manager) StartSession(tx gatehouse.Tx, w http.ResponseWriter, r *http.Request, userID, orgID int64, method string, notAfter time.Time) (*gatehouse.Session, error) {
	s, c, err := m.startSession(tx, r, userID, orgID, method, notAfter, "")
	if err != nil {
		return nil, err
	}
	http.SetCookie(w, c)
	return s, nil
}

// startSession is StartSession that returns the cookie to set once tx commits; tokenID is
// the access token of a token sign-in (its revocation ends the session).
func (m *Manager) startSession(tx gatehouse.Tx, r *http.Request, userID, orgID int64, method string, notAfter time.Time, tokenID string) (*gatehouse.Session, *http.Cookie, error) {
	name := m.cookieName(r)
	if name == "" {
		return nil, nil, gatehouse.Errorf(gatehouse.EINVALID, "sign-in needs HTTPS: serve Gatehouse over TLS (or behind a trusted proxy that sets X-Forwarded-Proto), or use a loopback address for development")
	}
	if old := m.cookieValue(r); old != "" {
		if s, err := tx.GetSessionByDigest(SessionDigest(old)); err == nil {
			if err := tx.DeleteSession(s.ID); err != nil {
				return nil, nil, err
			}
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil, err
		}
	}
	now := tx.Now()
	// Ended sessions and stale sign-in states are swept at sign-ins and by the periodic
	// sweep (sweep.go; they are refused anyway).
	if _, err := tx.PruneSessions(now); err != nil {
		return nil, nil, err
	}
	value := randomString(32)
	s := &gatehouse.Session{
		Digest: SessionDigest(value), UserID: userID, OrgID: orgID, Method: method,
		Created: now, LastSeen: now, IdleExpires: now.Add(m.cfg.IdleTimeout), Expires: now.Add(m.cfg.AbsoluteTimeout),
		IdPNotAfter: notAfter, CSRF: randomString(24), IP: m.cfg.ClientIP(r), Agent: truncate(r.UserAgent(), 256),
		TokenID: tokenID,
	}
	if !notAfter.IsZero() && notAfter.Before(s.Expires) {
		s.Expires = notAfter
	}
	if !s.Expires.After(now) {
		return nil, nil, gatehouse.Errorf(gatehouse.EINVALID, "the identity provider's session has already ended (SessionNotOnOrAfter %s)", notAfter.UTC().Format(time.RFC3339))
	}
	if err := tx.CreateSession(s); err != nil {
		return nil, nil, err
	}
	return s, &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: name == CookieName,
		SameSite: http.SameSiteLaxMode, Expires: s.Expires, MaxAge: int(s.Expires.Sub(now).Seconds()),
	}, nil
}

// clearCookie removes the session cookie from the browser.
func (m *Manager) clearCookie(w http.ResponseWriter, r *http.Request) {
	for _, name := range []string{CookieName, DevCookieName} {
		if name == DevCookieName && m.secure(r) {
			continue
		}
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: name == CookieName, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
