// Package httpapi serves Gatehouse's HTTP API: the Pulumi service API the stock CLI speaks,
// plus Gatehouse's administration API. Every route is declared in one table with the action
// it performs; the request path authenticates the caller, resolves the organization, stack
// and update named in the path, asks authz.Decide, runs the handler and records the audit
// event, in that order, for every route.
package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	fastjson "github.com/segmentio/encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
	"github.com/gatehouse-dev/gatehouse/posture"
	"github.com/gatehouse-dev/gatehouse/protocol"
	"github.com/gatehouse-dev/gatehouse/secrets"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// Config is the server's configuration.
type Config struct {
	// MaxBodyBytes limits the body of a call that carries state (checkpoints, journal
	// entries, engine events, imports, secrets) after decompression (413 beyond it). Every
	// other call takes at most SmallBodyBytes.
	MaxBodyBytes int64
	// BodyBudgetBytes bounds the request bodies held in memory at once, across all
	// requests (compressed and inflated copies both count, until the request ends): past
	// it a request that needs more is answered 503 instead of the process running out of
	// memory under a few concurrent bodies near MaxBodyBytes (a reader may send those:
	// previews, encrypt and decrypt). Default 1 GiB; at least MaxBodyBytes (serve keeps it
	// at least twice that, so that one body at the limit fits with its compressed copy).
	BodyBudgetBytes int64
	// LeaseDuration is how long an update lease lasts without renewal (the CLI assumes 5 minutes).
	LeaseDuration time.Duration
	// Journal decides when the journaling protocol is offered to CLIs that ask for it:
	// JournalOff never, JournalOn always, JournalAuto (the default) per update, chosen by
	// package protocol from the client's round trip, the stack's learned parallelism and
	// the client's journaling batch period (httpapi/protocol.go).
	Journal JournalMode
	// DeltaCheckpoints advertises the delta checkpoint protocol with this cutoff in bytes (0 = off).
	DeltaCheckpointCutoff int
	// AuthFailureLimit is how many failed authentications a source address, or a token
	// prefix, may make per AuthFailureWindow; further failures get 429 (0: no limit). A
	// valid credential is never refused.
	AuthFailureLimit  int
	AuthFailureWindow time.Duration
	// StackPageSize is the page size of stack listings (default 500).
	StackPageSize int
	// TrustedProxies are the networks whose X-Forwarded-For header is believed (the
	// client is the right-most address that is not a trusted proxy); from any other peer
	// the header is ignored.
	TrustedProxies []*net.IPNet
	// SecretScanningKeys verify GitHub secret-scanning deliveries (leaks.go); none: 401.
	SecretScanningKeys []SecretScanningKey
	// AllowPrivateIssuers lets OIDC discovery (an issuer's configuration, its jwks_uri and
	// their redirects) reach loopback, private, link-local and metadata addresses
	// (--allow-private-issuers): tests, issuers on an internal network. Off, an organization
	// administrator cannot make the server fetch from its own network (netguard).
	AllowPrivateIssuers bool
	// AllowPrivateWebhooks lets webhooks be created for, and delivered to, loopback,
	// private, link-local and metadata addresses (--allow-private-webhooks).
	AllowPrivateWebhooks bool
	// Webhooks configures the delivery worker (AllowPrivate is set from
	// AllowPrivateWebhooks); tests use Permit, short backoffs and polls.
	Webhooks webhook.Options
	// IssuerClient, when set, is the HTTP client issuer keys are fetched with (tests);
	// otherwise oidc.NewHTTPClient with AllowPrivateIssuers.
	IssuerClient *http.Client
	// RequestLog logs one line per request at info (reqlog.go).
	RequestLog bool
	// EnvMaxOpenDuration bounds the lifetime of environment open sessions
	// (--esc-max-open-duration; 0: 24h).
	EnvMaxOpenDuration time.Duration
	// SAML configures SAML sign-in (saml.go; package sso): the server's public API URL
	// (default Sessions.PublicURL), the clock skew allowed. IdP metadata URLs are fetched through netguard, reaching
	// private addresses only with AllowPrivateIssuers.
	SAML sso.SAMLOptions
	// SAMLMetadataClient, when set, fetches IdP metadata URLs (tests).
	SAMLMetadataClient *http.Client
	// Sessions configures people's browser sessions and single sign-on (sso.go): idle
	// and absolute lifetimes, the console's public URL.
	Sessions SessionConfig
	// UsageWindow is how long the token usage inventory remembers a client or a target
	// (--usage-window; 0: 90 days). UsageMaxClients and UsageMaxTargets bound it per token
	// (0: 50 and 100); the overflow is counted. DisableUsageInventory turns recording off
	// (benchmarks).
	UsageWindow           time.Duration
	UsageMaxClients       int
	UsageMaxTargets       int
	DisableUsageInventory bool
	// AuditExportSinks names the continuous audit export sinks configured (the posture
	// report checks that there is one and that it keeps up).
	AuditExportSinks []string
	// Deploy configures Deployments (runner leases, VCS webhooks); Now is set from Now.
	Deploy deploy.Options
	// Now is the clock (tests).
	Now func() time.Time
}

// JournalMode is when the journaling protocol is offered.
type JournalMode string

// Journal modes.
const (
	JournalAuto JournalMode = "auto"
	JournalOn   JournalMode = "on"
	JournalOff  JournalMode = "off"
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		MaxBodyBytes:      512 << 20,
		BodyBudgetBytes:   1 << 30,
		Journal:           JournalAuto,
		LeaseDuration:     5 * time.Minute,
		AuthFailureLimit:  30,
		AuthFailureWindow: 5 * time.Minute,
		Now:               time.Now,
	}
}

// Server is the HTTP API.
type Server struct {
	// bodyHeld is the request body buffers held now (Config.BodyBudgetBytes).
	bodyHeld atomic.Int64
	store    gatehouse.Store
	secrets  *secrets.Manager
	log      *slog.Logger
	cfg      Config
	mux      *http.ServeMux
	routes   []*Route
	metrics  *metrics
	touch    *toucher
	limiter  *authLimiter
	cache    *authCache
	auditQ   *auditQueue
	auditAgg *auditAggregator
	// epochRead, when set (tests), is called by every request right after its read
	// transaction has read the security epoch, before authentication.
	epochRead func(*http.Request)
	escOnce   sync.Once    // environments.go
	escSvc    *esc.Service // environments.go

	// limiterEpoch is the newest security epoch a request saw (ratelimit_admin.go).
	limiterEpoch atomic.Int64
	hookKeys     *secrets.Manager
	hooks        *webhook.Dispatcher // webhooks.go
	sso          *sso.Manager        // sso.go

	usage    *posture.Recorder // posture.go: the token usage inventory (nil: off)
	pmetrics *postureMetrics
	allow    allowCache
	deploy   *deploy.Service // deploy.go
	// vcsDummySecret checks organization webhook deliveries that have no secret to check
	// (deploy.go vcsWebhook): random, never given out.
	vcsDummySecret string
	// tracker counts what each running update shows of its program's parallelism (protocol.go).
	tracker *protocol.Tracker
	// clients remembers each peer's shortest request gap across its connections (protocol.go).
	clients *protocol.Clients
}

// New builds the server. reg may be nil (no metrics registered).
func New(store gatehouse.Store, sm *secrets.Manager, log *slog.Logger, reg prometheus.Registerer, cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultConfig().MaxBodyBytes
	}
	if cfg.BodyBudgetBytes <= 0 {
		cfg.BodyBudgetBytes = DefaultConfig().BodyBudgetBytes
	}
	cfg.BodyBudgetBytes = max(cfg.BodyBudgetBytes, cfg.MaxBodyBytes)
	if cfg.StackPageSize <= 0 {
		cfg.StackPageSize = 500
	}
	if cfg.LeaseDuration <= 0 {
		cfg.LeaseDuration = DefaultConfig().LeaseDuration
	}
	s := &Server{store: store, secrets: sm, log: log, cfg: cfg, mux: http.NewServeMux(), metrics: newMetrics(reg, store), tracker: protocol.NewTracker(), clients: protocol.NewClients()}
	s.touch = newToucher(store, log)
	s.newUsageRecorder(reg)
	s.cache = newAuthCache()
	s.auditQ = newAuditQueue(store)
	s.auditAgg = newAuditAggregator(store, log, cfg.Now)
	s.auditQ.failures = s.metrics.auditFailures
	if cfg.AuthFailureWindow <= 0 {
		cfg.AuthFailureWindow = 5 * time.Minute
		s.cfg.AuthFailureWindow = cfg.AuthFailureWindow
	}
	s.limiter = newAuthLimiter(cfg.AuthFailureLimit, cfg.AuthFailureWindow, s.log)
	if sm != nil {
		s.hookKeys = webhook.Keys(sm, store)
		wo := cfg.Webhooks
		wo.AllowPrivate = wo.AllowPrivate || cfg.AllowPrivateWebhooks
		s.hooks = webhook.NewDispatcher(store, s.hookKeys, log, wo)
		do := cfg.Deploy
		if do.Now == nil {
			do.Now = cfg.Now
		}
		if do.Wake == nil {
			do.Wake = s.hooks.Wake
		}
		s.deploy = deploy.New(store, sm, log, do)
		s.vcsDummySecret, _ = deploy.GenerateVCSSecret()
	}
	s.sso = s.newSSO()
	s.registerRoutes()
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such route: %s %s", r.Method, r.URL.Path))
	})
	return s
}

// Close flushes pending bookkeeping (token last-used facts, audit summaries).
func (s *Server) Close() {
	if s.deploy != nil {
		s.deploy.Close()
	}
	if s.hooks != nil {
		s.hooks.Close()
	}
	s.sso.Close()
	s.touch.close()
	s.auditAgg.close()
	s.auditQ.close()
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Routes returns the route table (for the authorization matrix test and docs).
func (s *Server) Routes() []*Route { return s.routes }

// AuthKind is the credential a route accepts.
type AuthKind int

// Credential kinds.
const (
	AuthNone  AuthKind = iota // public
	AuthToken                 // Authorization: token <access token>
	AuthLease                 // Authorization: update-token <lease token>
	AuthSCIM                  // Authorization: Bearer <the organization's SCIM token> (scim.go)
)

// Route is one entry of the route table.
type Route struct {
	Method  string
	Pattern string
	Action  authz.Action
	Auth    AuthKind
	// Audit records successful calls in the audit log, in the same transaction as the
	// change where the handler makes one. Denials and failed authentications are always
	// recorded.
	Audit bool
	// MaxBody is the largest body the route reads, after decompression (413 beyond it):
	// SmallBodyBytes, or Config.MaxBodyBytes for the routes that carry state.
	MaxBody int64
	// NoStore marks a route whose successful response carries a credential value (a new
	// access token, a lease token): it is answered with Cache-Control: no-store.
	NoStore bool
	// HTML marks a web console route (console.go): its answers and errors are pages.
	HTML    bool
	handler func(*Request) (any, error)
	s       *Server
}

// SmallBodyBytes bounds the body of calls that never carry state: a body is read whole
// into memory before it is decoded, so the 512 MiB that a checkpoint may need has no
// business on, say, an administration call.
const SmallBodyBytes = 1 << 20

// ProgramBodyBytes bounds an update's create request (its program: configuration and
// metadata, stored with the update), after decompression.
const ProgramBodyBytes = 32 << 20

// selfAudited marks a route whose handler records its own audit events (the sign-in and
// sign-out pages of package sso, whose actor is only known inside the handler): the request
// path records denials and failed authentications, not a success event of its own.
func (rt *Route) selfAudited() *Route {
	rt.Audit = false
	return rt
}

// carriesState gives the route the large body limit (Config.MaxBodyBytes).
func (rt *Route) carriesState() *Route {
	rt.MaxBody = rt.s.cfg.MaxBodyBytes
	return rt
}

func (s *Server) handle(method, pattern string, action authz.Action, h func(*Request) (any, error)) *Route {
	rt := &Route{Method: method, Pattern: pattern, Action: action, handler: h, s: s, MaxBody: min(SmallBodyBytes, s.cfg.MaxBodyBytes)}
	switch {
	case action == authz.Public:
		rt.Auth = AuthNone
	case action == authz.UpdateLease || action == authz.UpdateComplete:
		rt.Auth = AuthLease
	case authz.IsSCIMAction(action):
		rt.Auth = AuthSCIM
	default:
		rt.Auth = AuthToken
	}
	rt.Audit = method != http.MethodGet && method != http.MethodHead || action == authz.StackExport
	s.routes = append(s.routes, rt)
	s.mux.HandleFunc(method+" "+pattern, func(w http.ResponseWriter, r *http.Request) { s.serve(rt, w, r) })
	return rt
}

// Request is one API call on its way through the request path.
type Request struct {
	*http.Request
	s       *Server
	w       http.ResponseWriter
	route   *Route
	ID      string
	Subject *authz.Subject
	Org     *gatehouse.Org
	Stack   *gatehouse.Stack
	Update  *gatehouse.Update
	Team    *gatehouse.Team
	// Invitation is the invitation named in the path ({invitationID}).
	Invitation *gatehouse.Invitation
	facts      authz.Facts
	// epoch is the security epoch the request's authentication transaction saw.
	epoch int64
	Env   *gatehouse.Environment // environment routes (environments.go)
	// envOpenFor is the lifetime asked for by an open (environments.go): each environment
	// opened, imports included, must allow it (maxOpenDuration of team grants).
	envOpenFor time.Duration
	// LeaseToken is the plaintext lease token of a lease call (to hand it back on renewal).
	LeaseToken string
	// ciSystem is the CI system the request says it runs in (an update's ci.system metadata).
	ciSystem string
	event    gatehouse.AuditEvent
	audited  bool
	// failRecorded: the call's failure (a denial, mostly) is in the audit log already.
	failRecorded bool
	// bodyHeld is what the request's body buffers count against Config.BodyBudgetBytes.
	bodyHeld int64
	status   int
	// authorized is set once the route's action was allowed (run): only then does the
	// usage inventory learn the request's organization and target (recordUsage).
	authorized bool
}

// rawJSON is a handler result written as-is.
type rawJSON []byte

// noContent is a handler result with an empty 200 body ("{}").
type noContent struct{}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) serve(rt *Route, w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	conn := connOf(r)
	if r.ProtoMajor == 1 {
		// The gap since the connection's last response; a shorter one is remembered for
		// the peer too (protocol.go).
		if g := conn.Begin(start); g > 0 {
			s.clients.Observe(peerHost(r), g, start)
		}
	}
	rq := &Request{Request: r, s: s, w: w, route: rt, ID: newRequestID(), status: http.StatusOK}
	defer rq.releaseBody()
	w.Header().Set("X-Pulumi-Request-ID", rq.ID)
	rq.event = gatehouse.AuditEvent{
		Action: string(rt.Action), SourceIP: s.clientIP(r), UserAgent: truncate(r.UserAgent(), 256),
		RequestID: rq.ID, ActorKind: string(authz.Anonymous),
	}
	res, err := s.run(rq)
	if err != nil {
		rq.status = statusOf(err)
		if rq.status >= 500 {
			s.log.Error("request failed", "route", rt.Pattern, "method", r.Method, "request_id", rq.ID, "err", err)
		}
		switch {
		case rt.Auth == AuthSCIM:
			writeSCIMError(w, err)
		case rt.HTML:
			s.consoleError(rq, err)
		default:
			writeError(w, err)
		}
	} else {
		rq.write(res)
	}
	end := time.Now()
	conn.End(end)
	s.recordUsage(rq)
	s.metrics.observe(rt, rq.status, end.Sub(start))
	s.logRequest(rq, end.Sub(start))
}

// run is the request path.
func (s *Server) run(rq *Request) (res any, err error) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("panic serving request", "route", rq.route.Pattern, "request_id", rq.ID, "panic", p, "stack", string(debug.Stack()))
			res, err = nil, gatehouse.Errorf(gatehouse.EINTERNAL, "internal error")
		}
	}()
	rt := rq.route
	// Authentication and resolution share one read transaction; identities and decision
	// facts come from a cache that is valid for one security epoch, used only when it is
	// the epoch this transaction saw (see authCache).
	var authErr, resolveErr, addrErr, ssoErr error
	if err := s.store.View(rq.Context(), func(tx gatehouse.Tx) error {
		epoch, err := tx.SecurityEpoch()
		if err != nil {
			return err
		}
		rq.epoch = epoch
		s.syncLimiter(epoch)
		if s.epochRead != nil {
			s.epochRead(rq.Request)
		}
		if authErr = s.authenticate(rq, tx); authErr != nil {
			return nil
		}
		// Address allow-lists (posture.go): the token's and its organization's before
		// anything is resolved, the path's organization's once it is known.
		if addrErr = s.checkAddress(rq, tx, false); addrErr != nil {
			return nil
		}
		resolveErr = s.resolve(rq, tx)
		// The path organization's allow-list, and its single sign-on requirement (a browser
		// session acts in an organization that requires it only if that organization's SSO
		// started it: sso.MaySessionActIn), refuse with a 403 that names the organization.
		// They apply only to callers the decision lets see the organization (its members,
		// its tokens; a lease token only on its own update's stack): anyone else gets
		// exactly the decision's answer (404, as for a missing organization). To those
		// callers they apply whether or not the stack, environment, team or update of the
		// path exists, so that the refusal does not tell an existing resource from a
		// missing one either.
		if rq.Org == nil || resolveErr != nil && !gatehouse.IsCode(resolveErr, gatehouse.ENOTFOUND) ||
			!authz.SeesOrg(rq.Subject, authz.Resource{Org: rq.Org, Stack: rq.Stack}, rq.facts) {
			return nil
		}
		if addrErr = s.checkAddress(rq, tx, true); addrErr == nil && rq.Subject.Session != nil {
			ssoErr = s.sso.MaySessionActIn(tx, rq.Org, rq.Subject.Session.UserID, rq.Subject.Session)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if authErr == nil && rq.Subject.Session != nil {
		s.sso.Touch(rq.Context(), rq.Subject.Session)
	}
	if err := authErr; err != nil {
		if gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
			// Failed authentications are limited per address and per credential prefix,
			// after authenticating, so that a valid credential is never refused. A
			// blocked failure is answered from memory: no count, no database write.
			src, prefix, now := rq.event.SourceIP, credentialPrefix(rq.Header.Get("Authorization")), s.cfg.Now()
			if lerr := s.limiter.check(src, prefix, now); lerr != nil {
				s.rateLimited(src, prefix, now)
				rq.event.Action = "auth:rate-limited"
				rq.failAggregated(gatehouse.OutcomeDenied, lerr)
				return nil, lerr
			}
			if lerr := s.limiterFailed(rq, src, prefix, now); lerr != nil {
				s.rateLimited(src, prefix, now)
				err = lerr
			}
		}
		if rq.event.TokenID == "" {
			// No credential, or one that names no token: floods of these from outside
			// are summarized. A failure with a real token (expired, revoked) has its own.
			rq.failAggregated(gatehouse.OutcomeFailure, err)
		} else {
			rq.fail(gatehouse.OutcomeFailure, err)
		}
		return nil, err
	}
	if err := addrErr; err != nil {
		if gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			rq.event.Action = "auth:address-denied"
			s.pmetrics.denied.Inc()
			rq.fail(gatehouse.OutcomeDenied, err)
		}
		return nil, err
	}
	if err := ssoErr; err != nil {
		if gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			rq.event.Action = "auth:sso-required"
			rq.fail(gatehouse.OutcomeDenied, err)
		}
		return nil, err
	}
	if err := resolveErr; err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
			rq.fail(gatehouse.OutcomeFailure, err) // probing for names is worth a record too
		}
		return nil, err
	}
	if err := rq.Authorize(rt.Action); err != nil {
		return nil, err
	}
	rq.authorized = true
	res, err = rt.handler(rq)
	if err != nil {
		switch {
		case !rt.Audit:
		case gatehouse.IsCode(err, gatehouse.EFORBIDDEN):
			// A refusal the handler decided itself (a tag that would raise the caller's own
			// rights, a source override) is recorded as denied, unless already recorded.
			if !rq.failRecorded {
				rq.fail(gatehouse.OutcomeDenied, err)
			}
		case gatehouse.IsCode(err, gatehouse.ERATELIMITED) && rq.event.ActorKind == string(authz.Anonymous):
			// A public call refused by the failed-authentication limit (secret-scanning
			// deliveries): summarized like the request path's own 429s.
			rq.failAggregated(gatehouse.OutcomeDenied, err)
		default:
			rq.fail(gatehouse.OutcomeFailure, err)
		}
		return nil, err
	}
	if rt.Audit && !rq.audited {
		// The handler made no transactional change: record the call on its own. Audit fails
		// closed: without the record there is no response.
		ev := rq.event
		ev.Outcome, ev.Reason = gatehouse.OutcomeSuccess, ""
		if err := s.auditQ.append(rq.Context(), &ev); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EUNAVAILABLE, err, "the audit log cannot be written; the request was refused")
		}
	}
	return res, nil
}

// Authorize asks the decision point whether the request's subject may perform action on
// the request's resources. A denial is recorded and returned as a 403 (or 404 when the
// caller must not learn that the resource exists).
func (rq *Request) Authorize(action authz.Action) error {
	return rq.authorize(action, authz.Resource{Org: rq.Org, Stack: rq.Stack, Update: rq.Update, Invitation: rq.Invitation, Env: rq.Env})
}

// authorizeAlso decides a further action the call needs besides its own (a stack created
// with a state is also an import): refused, it is recorded as authorize records it; allowed,
// the call's audit event keeps the call's own action.
func (rq *Request) authorizeAlso(action authz.Action, res authz.Resource) error {
	own := rq.event.Action
	if err := rq.authorize(action, res); err != nil {
		return err
	}
	rq.event.Action = own
	return nil
}

func (rq *Request) authorize(action authz.Action, res authz.Resource) error {
	d := authz.Decide(rq.Subject, action, res, rq.facts)
	if d.Allow {
		rq.event.Action = string(action)
		return nil
	}
	rq.event.Action = string(action)
	var err error
	if d.Hide {
		err = gatehouse.Errorf(gatehouse.ENOTFOUND, "%s", rq.notFoundMessage())
	} else {
		err = gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s", d.Reason)
	}
	rq.event.Reason = d.Reason
	rq.fail(gatehouse.OutcomeDenied, nil)
	return err
}

// notFoundMessage is the 404 message of a request. It depends only on the path, never on
// what exists, so that a caller cannot tell a hidden resource from a missing one.
func (rq *Request) notFoundMessage() string {
	switch {
	case rq.PathValue("invitationID") != "":
		return "Invitation '" + rq.PathValue("invitationID") + "' not found"
	case rq.PathValue("updateID") != "":
		return "Update '" + rq.PathValue("updateID") + "' not found"
	case rq.PathValue("stack") != "":
		return "Stack '" + rq.PathValue("org") + "/" + rq.PathValue("project") + "/" + rq.PathValue("stack") + "' not found"
	case rq.PathValue("env") != "":
		msg := "Environment '" + rq.PathValue("org") + "/" + rq.PathValue("project") + "/" + rq.PathValue("env") + "' not found"
		if sub := rq.Subject; sub != nil && sub.Kind == authz.Deployment && sub.Deployment != nil {
			// The same for a missing and a hidden environment: it names who asked.
			who := sub.ActsForName
			if who == "" {
				who = "nobody"
			}
			if sub.Deployment.Editor != sub.Deployment.ActsFor {
				ed := sub.EditorName
				if ed == "" {
					ed = "nobody"
				}
				who += " (trigger) and " + ed + " (settings editor)"
			}
			msg += " (deployment " + sub.Deployment.ID + " acting for " + who + ")"
		}
		return msg
	case rq.PathValue("team") != "":
		return "Team '" + rq.PathValue("team") + "' not found"
	case rq.PathValue("user") != "":
		return "User '" + rq.PathValue("user") + "' not found"
	case rq.PathValue("org") != "":
		return "Organization '" + rq.PathValue("org") + "' not found"
	}
	return "Not found"
}

// fail records a failed or denied call (best effort: the call fails anyway).
func (rq *Request) fail(outcome string, err error) {
	rq.failRecorded = true
	ev := rq.event
	ev.Outcome = outcome
	if err != nil && ev.Reason == "" {
		ev.Reason = auditReason(err) // a specific reason set earlier is kept
	}
	rq.s.appendFailure(rq, &ev)
}

// maxAuditReason bounds the reason a failed call's audit event keeps: an error message may
// quote what the caller sent (a name, a tag), and a body of up to Config.MaxBodyBytes must
// not become an audit record (and a SIEM event) of that size (found in review).
const maxAuditReason = 1024

// auditReason is the reason a failed call's audit event records: the error's message,
// bounded.
func auditReason(err error) string {
	return truncate(gatehouse.ErrorMessage(err), maxAuditReason)
}

// appendFailure records the event of a failed call (best effort: the call fails anyway).
func (s *Server) appendFailure(rq *Request, ev *gatehouse.AuditEvent) {
	if aerr := s.auditQ.append(context.WithoutCancel(rq.Context()), ev); aerr != nil {
		s.log.Error("audit: cannot record a failed call", "request_id", rq.ID, "err", aerr)
	}
}

func (rq *Request) appendSuccess(tx gatehouse.Tx) error {
	ev := rq.event
	ev.Outcome = gatehouse.OutcomeSuccess
	ev.Reason = ""
	return tx.AppendAudit(&ev)
}

// Change runs fn in a read-write transaction that also records the call's audit event, so
// that a change and its record commit together or not at all.
func (rq *Request) Change(fn func(gatehouse.Tx) error) error {
	err := rq.s.store.Update(rq.Context(), func(tx gatehouse.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if rq.route.Audit && !rq.audited {
			return rq.appendSuccess(tx)
		}
		return nil
	})
	if err == nil && rq.route.Audit {
		rq.audited = true
	}
	if errors.Is(err, gatehouse.ErrAuditWrite) {
		rq.s.metrics.auditFailures.Inc()
	}
	return err
}

// View runs fn in a read-only transaction.
func (rq *Request) View(fn func(gatehouse.Tx) error) error {
	return rq.s.store.View(rq.Context(), fn)
}

// Detail adds a fact to the call's audit event. A value is bounded (maxAuditDetail): many
// are what the caller sent (a tag or pack name, before it is validated), and a request body
// must not become an audit record of its size (found in review).
func (rq *Request) Detail(k, v string) {
	if rq.event.Details == nil {
		rq.event.Details = map[string]string{}
	}
	rq.event.Details[k] = truncate(v, maxAuditDetail)
}

// maxAuditDetail bounds one detail of an audit event (a list of 100 token IDs fits).
const maxAuditDetail = 4096

// ResponseHeader returns the response header (for handlers that add headers).
func (rq *Request) ResponseHeader() http.Header { return rq.w.Header() }

func (rq *Request) write(res any) {
	w := rq.w
	secureHeaders(w.Header())
	if rq.route.NoStore {
		w.Header().Set("Cache-Control", "no-store")
	}
	switch v := res.(type) {
	case http.Handler: // browser pages and redirects (sso.go)
		v.ServeHTTP(w, rq.Request)
	case nil, noContent:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rq.status)
		_, _ = w.Write([]byte("{}"))
	case headOnly:
		w.WriteHeader(rq.status)
	case *consolePage:
		rq.writePage(v)
	case consoleRedirect:
		consoleHeaders(w.Header())
		http.Redirect(w, rq.Request, string(v), http.StatusSeeOther)
	case rawJSON:
		writeBody(w, rq.Request, rq.status, v)
	case scimResult:
		writeSCIM(w, rq.status, v.body)
	case binaryBody: // policy.go: a policy pack archive
		w.Header().Set("Content-Type", v.contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(v.data)))
		w.WriteHeader(rq.status)
		_, _ = w.Write(v.data)
	default:
		b, err := json.Marshal(v)
		if err != nil {
			rq.status = http.StatusInternalServerError
			writeError(w, err)
			return
		}
		writeBody(w, rq.Request, rq.status, b)
	}
}

// headOnly is a handler result with no body (HEAD).
type headOnly struct{}

const gzipMin = 8 << 10

var gzipPool = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed); return w }}

// secureHeaders sets the headers every API response carries: the body is JSON (or what
// its Content-Type says) and must never be sniffed into something a browser would run.
func secureHeaders(h http.Header) {
	h.Set("X-Content-Type-Options", "nosniff")
}

func writeBody(w http.ResponseWriter, r *http.Request, status int, b []byte) {
	secureHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	if len(b) >= gzipMin && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		w.WriteHeader(status)
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		_, _ = gz.Write(b)
		_ = gz.Close()
		gzipPool.Put(gz)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if strings.TrimSpace(strings.SplitN(part, ";", 2)[0]) == "gzip" {
			return true
		}
	}
	return false
}

func writeError(w http.ResponseWriter, err error) {
	status := statusOf(err)
	msg := gatehouse.ErrorMessage(err)
	var ge *gatehouse.Error
	if errors.As(err, &ge) && ge.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(ge.RetryAfter))
	}
	b, _ := json.Marshal(errorBody{Code: status, Message: msg, Diagnostics: diagnosticsOf(err)})
	secureHeaders(w.Header())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// decode reads the JSON body into v: gzip-decoded when the CLI compressed it, bounded by
// the route's MaxBody (413) and in nesting (400, readJSON), strict about syntax (400 with the decoder's reason). It decodes with
// segmentio/encoding/json (the encoder the CLI itself uses for checkpoints): the same
// semantics as encoding/json, and several times faster on checkpoint-sized documents,
// where decoding was two thirds of the server's time.
func (rq *Request) decode(v any) error {
	return rq.decodeFlags(v, 0)
}

// decodeInPlace is decode for handlers that only hand v's json.RawMessage fields on to
// storage within the request: they alias the body instead of copying it (a checkpoint is
// hundreds of kilobytes; the copy was a tenth of the request's time, and garbage).
func (rq *Request) decodeInPlace(v any) error {
	return rq.decodeFlags(v, fastjson.ZeroCopy)
}

func (rq *Request) decodeFlags(v any, flags fastjson.ParseFlags) error {
	b, err := rq.readJSON()
	if err != nil {
		return err
	}
	return parseJSON(b, v, flags)
}

// parseJSON decodes the body b (read by readJSON) into v: one JSON value, nothing after it.
func parseJSON(b []byte, v any, flags fastjson.ParseFlags) error {
	if len(bytes.TrimSpace(b)) == 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: empty")
	}
	rest, err := fastjson.Parse(b, v, flags)
	if err != nil {
		return bodyError(err)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: data after the top-level value")
	}
	return nil
}

// readJSON is readBody for a JSON body, refused (400) when it nests deeper than
// jsondepth.Max: the decoder recurses once per level, and a few megabytes of '[' used to
// take it to Go's stack limit, a fatal error that brought the whole process down. Every
// handler that decodes a body reads it with readJSON (or decode, which does).
func (rq *Request) readJSON() ([]byte, error) {
	b, err := rq.readBody()
	if err != nil {
		return nil, err
	}
	if err := jsondepth.Check(b, 0); err != nil {
		return nil, bodyError(err)
	}
	return b, nil
}

// readBody returns the whole (decompressed, bounded) body. A gzip body (every state write
// of the CLI) is read compressed first, which is small, and inflated into a buffer sized
// by the size its gzip trailer declares, so that a large checkpoint is written once, not
// copied at every growth of the buffer. Sizes a client declares (Content-Length, the gzip
// trailer) are only hints, and bounded so that a lie cannot make the server allocate
// memory the body does not fill: Content-Length by preallocMax, the trailer by deflate's
// largest possible ratio to the compressed bytes actually received.
func (rq *Request) readBody() ([]byte, error) {
	limit := rq.route.MaxBody
	raw := http.MaxBytesReader(rq.w, rq.Body, limit)
	defer raw.Close()
	var zr io.Reader
	hint := min(rq.ContentLength, preallocMax)
	switch strings.ToLower(rq.Header.Get("Content-Encoding")) {
	case "", "identity":
		zr = raw
	case "gzip", "x-gzip":
		comp, err := readAll(raw, hint, limit, rq.holdBody)
		if err != nil {
			return nil, bodyError(err)
		}
		if len(comp) >= 4 {
			isize := int64(binary.LittleEndian.Uint32(comp[len(comp)-4:]))
			hint = min(isize, maxDeflateRatio*int64(len(comp)))
		}
		gz, err := gzip.NewReader(bytes.NewReader(comp))
		if err != nil {
			return nil, bodyError(err)
		}
		defer gz.Close()
		// Bound the decompressed size too: a small gzip bomb must not exhaust memory.
		zr = &limitedReader{r: gz, n: limit + 1}
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "unsupported Content-Encoding %q", rq.Header.Get("Content-Encoding"))
	}
	b, err := readAll(zr, hint, limit, rq.holdBody)
	if err != nil {
		return nil, bodyError(err)
	}
	return b, nil
}

// errBodyBudget: the server holds Config.BodyBudgetBytes of request bodies already.
var errBodyBudget = gatehouse.Errorf(gatehouse.EUNAVAILABLE,
	"the server is holding as many request bodies in memory as it may (--body-budget-bytes): try again shortly")

// holdBody counts n more bytes of body buffer against the server's budget for the rest
// of the request (released by releaseBody when it ends); errBodyBudget when over it.
func (rq *Request) holdBody(n int64) error {
	if rq.s.bodyHeld.Add(n) > rq.s.cfg.BodyBudgetBytes {
		rq.s.bodyHeld.Add(-n)
		return errBodyBudget
	}
	rq.bodyHeld += n
	return nil
}

// releaseBody gives the request's body buffers back to the budget.
func (rq *Request) releaseBody() {
	if rq.bodyHeld != 0 {
		rq.s.bodyHeld.Add(-rq.bodyHeld)
		rq.bodyHeld = 0
	}
}

const (
	// preallocMax bounds the buffer allocated on a declared Content-Length before the
	// bytes arrive; a larger body grows the buffer as it comes.
	preallocMax = 8 << 20
	// maxDeflateRatio is the most deflate can inflate (1032:1): no gzip body inflates to
	// more than this times its compressed size.
	maxDeflateRatio = 1032
)

// readAll reads r to its end into a buffer of hint bytes, doubling it when it is too
// small, and fails with errTooLarge past limit bytes. hold is told of every buffer before
// it is allocated (its error ends the read).
func readAll(r io.Reader, hint, limit int64, hold func(int64) error) ([]byte, error) {
	size := min(max(hint, 512), limit) + 1
	if err := hold(size); err != nil {
		return nil, err
	}
	b := make([]byte, 0, size)
	for {
		if len(b) == cap(b) {
			size := min(2*int64(cap(b)), limit+1)
			if err := hold(size); err != nil {
				return nil, err
			}
			nb := make([]byte, len(b), size)
			copy(nb, b)
			b = nb
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if int64(len(b)) > limit {
			return nil, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func bodyError(err error) error {
	if errors.Is(err, errBodyBudget) {
		return err
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) || errors.Is(err, errTooLarge) {
		return gatehouse.Errorf(gatehouse.ETOOLARGE, "request body too large")
	}
	if errors.Is(err, io.EOF) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: empty")
	}
	if errors.Is(err, gzip.ErrHeader) || errors.Is(err, gzip.ErrChecksum) || errors.Is(err, io.ErrUnexpectedEOF) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid request body: %v", err)
	}
	return gatehouse.Errorf(gatehouse.EINVALID, "invalid JSON body: %s", jsonErrorText(err))
}

// jsonErrorText is a JSON decoding error without the input it quotes: the decoder
// (segmentio/encoding/json) quotes up to 32 bytes of the body from where it failed, and a
// body may carry secrets (a plaintext to encrypt, state, configuration) that must reach
// neither the failure's audit event nor a log through its message (found in review).
func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		msg := strings.TrimPrefix(se.Error(), "json: ")
		if i := strings.Index(msg, ": "); i >= 0 {
			msg = msg[:i]
		}
		return msg
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("a value of field %s is not of type %s", te.Field, te.Type)
		}
		return fmt.Sprintf("a value is not of type %s", te.Type)
	}
	return err.Error()
}

var errTooLarge = errors.New("request body too large")

type limitedReader struct {
	r io.Reader
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

func (s *Server) clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if len(s.cfg.TrustedProxies) > 0 {
		if ip := net.ParseIP(host); ip != nil && trusted(s.cfg.TrustedProxies, ip) {
			// All header lines, in order: a proxy may append its own line (HAProxy
			// "option forwardfor") after the one the client sent rather than extend it.
			xff := strings.Join(r.Header.Values("X-Forwarded-For"), ",")
			parts := strings.Split(xff, ",")
			// The right-most address not itself a trusted proxy is the client.
			for i := len(parts) - 1; i >= 0; i-- {
				p := strings.TrimSpace(parts[i])
				if p == "" {
					continue
				}
				pip := forwardedIP(p)
				if pip == nil {
					break
				}
				if !trusted(s.cfg.TrustedProxies, pip) {
					return pip.String()
				}
			}
		}
	}
	return host
}

// forwardedIP parses one X-Forwarded-For entry: an address ("192.0.2.1", "2001:db8::1"),
// with a port ("192.0.2.1:443", "[2001:db8::1]:443") or in brackets ("[2001:db8::1]").
// An IPv4-mapped IPv6 address is returned as IPv4. It returns nil for anything else.
func forwardedIP(p string) net.IP {
	ip := net.ParseIP(p)
	if ip == nil {
		if h, _, err := net.SplitHostPort(p); err == nil {
			ip = net.ParseIP(h)
		} else if len(p) > 2 && p[0] == '[' && p[len(p)-1] == ']' {
			ip = net.ParseIP(p[1 : len(p)-1])
		}
	}
	if ip4 := ip.To4(); ip4 != nil {
		return ip4
	}
	return ip
}

// ParseTrustedProxies parses a comma-separated list of networks (CIDR, or a single
// address) for Config.TrustedProxies. Empty is none.
func ParseTrustedProxies(list string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		if ip := net.ParseIP(part); ip != nil {
			bits := 8 * net.IPv6len
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 8*net.IPv4len
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("%q is neither a network in CIDR notation (like 10.0.0.0/8) nor an address", part)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func trusted(nets []*net.IPNet, ip net.IP) bool {
	for _, n := range nets {
		if n.Contains(ip) {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
