package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/posture"
)

// Posture (issue 17): the token usage inventory is fed by every authenticated request
// (recordUsage, aggregated in memory, flushed by the toucher off the request path), address
// allow-lists are enforced right after authentication (checkAddress), and the routes below
// answer "who uses this token", administer allow-lists and thresholds, and run the report.

type postureMetrics struct {
	anomalies *prometheus.CounterVec
	dropped   prometheus.CounterFunc
	findings  *prometheus.GaugeVec
	denied    prometheus.Counter
}

func newPostureMetrics(reg prometheus.Registerer, rec func() float64) *postureMetrics {
	m := &postureMetrics{
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "gatehouse_posture_anomalies_total",
			Help: "Token anomalies flagged by kind: new-address, odd-hour, denial-burst, rate-spike, personal-token-in-ci (each once per token, kind and window).",
		}, []string{"kind"}),
		dropped: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "gatehouse_posture_usage_dropped_total",
			Help: "Token uses not recorded in the usage inventory because too many distinct clients were pending between flushes.",
		}, rec),
		findings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "gatehouse_posture_findings",
			Help: "Findings of the organization's last posture report, by severity (set by every report through the API and an hourly assessment).",
		}, []string{"org", "severity"}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "gatehouse_address_denied_total",
			Help: "Requests refused (403) because the source address is not on an applicable address allow-list.",
		}),
	}
	for _, k := range posture.AnomalyKinds {
		m.anomalies.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.anomalies, m.dropped, m.findings, m.denied)
	}
	return m
}

// newUsageRecorder builds the recorder of the server's usage inventory.
func (s *Server) newUsageRecorder(reg prometheus.Registerer) {
	if s.cfg.DisableUsageInventory {
		s.pmetrics = newPostureMetrics(reg, func() float64 { return 0 })
		return
	}
	var rec *posture.Recorder
	s.pmetrics = newPostureMetrics(reg, func() float64 { return float64(rec.Dropped()) })
	rec = posture.NewRecorder(s.store, posture.Options{
		Window: s.cfg.UsageWindow,
		Limits: gatehouse.UsageLimits{MaxClients: s.cfg.UsageMaxClients, MaxTargets: s.cfg.UsageMaxTargets},
		Now:    s.cfg.Now,
		Log:    s.log,
		OnAnomaly: func(a gatehouse.Anomaly) {
			s.pmetrics.anomalies.WithLabelValues(a.Kind).Inc()
			s.log.Warn("token anomaly", "kind", a.Kind, "token_id", a.TokenID, "window", a.Window, "detail", a.Detail)
		},
	})
	s.usage = rec
	s.touch.usage = rec
	s.touch.hourly = s.refreshPostureGauges
}

// refreshPostureGauges assesses every organization and sets gatehouse_posture_findings
// (hourly, from the toucher; a report made through the API sets them too).
func (s *Server) refreshPostureGauges(ctx context.Context) {
	if err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		orgs, err := tx.ListOrgs()
		if err != nil {
			return err
		}
		for i := range orgs {
			rep, err := posture.Assess(tx, &orgs[i], posture.AssessOptions{Now: tx.Now(), ExportSinks: s.cfg.AuditExportSinks})
			if err != nil {
				return err
			}
			s.setPostureGauges(orgs[i].Name, rep)
		}
		return nil
	}); err != nil {
		s.log.Warn("assessing the organizations' posture failed", "err", err)
	}
}

func (s *Server) setPostureGauges(org string, rep *posture.Report) {
	counts := rep.Counts()
	for _, sev := range posture.Severities {
		s.pmetrics.findings.WithLabelValues(org, string(sev)).Set(float64(counts[sev]))
	}
}

// FlushUsage writes the pending usage records now (tests, shutdown).
func (s *Server) FlushUsage(ctx context.Context) error {
	if s.usage == nil {
		return nil
	}
	return s.usage.Flush(ctx)
}

// recordUsage adds a finished request made with an access token to the inventory. The
// request's organization and target are recorded only when the route's action was
// authorized: a refused request (a 404 for a stack the caller may not see) must not teach
// the caller, through its token's usage, which stacks exist, nor land in the inventory,
// anomalies or report of an organization it has no business in.
func (s *Server) recordUsage(rq *Request) {
	if s.usage == nil || rq.Subject == nil || rq.Subject.Token == nil {
		return
	}
	u := posture.Use{Token: rq.Subject.Token, IP: rq.event.SourceIP, Agent: rq.event.UserAgent, CISystem: rq.ciSystem,
		At: s.cfg.Now(), Denied: rq.status == http.StatusForbidden}
	if !rq.authorized {
		s.usage.Record(u)
		return
	}
	if rq.Org != nil {
		u.OrgID = rq.Org.ID
	}
	switch {
	case rq.Stack != nil:
		u.Target = "stack:" + rq.Stack.Ref().String()
	case rq.Env != nil:
		u.Target = "env:" + rq.Env.Ref().String()
	}
	s.usage.Record(u)
}

// allowCache holds compiled allow-lists for one security epoch (every change of a list or
// range bumps it).
type allowCache struct {
	mu    sync.Mutex
	epoch int64
	lists map[string]*posture.Compiled // "o:ID" or "t:ID"; nil value: no list
}

func (c *allowCache) get(epoch int64, key string, load func() (*posture.Compiled, error)) (*posture.Compiled, error) {
	c.mu.Lock()
	if c.epoch != epoch {
		if epoch < c.epoch {
			c.mu.Unlock()
			return load() // an older snapshot than the cache: do not pollute it
		}
		c.epoch, c.lists = epoch, map[string]*posture.Compiled{}
	}
	if l, ok := c.lists[key]; ok {
		c.mu.Unlock()
		return l, nil
	}
	c.mu.Unlock()
	l, err := load()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.epoch == epoch {
		if len(c.lists) > 100_000 {
			c.lists = map[string]*posture.Compiled{}
		}
		c.lists[key] = l
	}
	c.mu.Unlock()
	return l, nil
}

func (s *Server) orgAllowList(rq *Request, tx gatehouse.Tx, orgID int64) (*posture.Compiled, error) {
	return s.allow.get(rq.epoch, "o:"+strconv.FormatInt(orgID, 10), func() (*posture.Compiled, error) {
		l, err := tx.GetAllowList(orgID, "")
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		org, err := tx.GetOrg(orgID)
		if err != nil {
			return nil, err
		}
		rs, err := tx.ListAddressRanges(orgID)
		if err != nil {
			return nil, err
		}
		return posture.Compile("organization "+org.Name, l.Entries, rs), nil
	})
}

func (s *Server) tokenAllowList(rq *Request, tx gatehouse.Tx, tk *gatehouse.Token) (*posture.Compiled, error) {
	if tk.OrgID == 0 {
		return nil, nil
	}
	return s.allow.get(rq.epoch, "t:"+tk.ID, func() (*posture.Compiled, error) {
		l, err := tx.GetAllowList(tk.OrgID, tk.ID)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		rs, err := tx.ListAddressRanges(tk.OrgID)
		if err != nil {
			return nil, err
		}
		return posture.Compile("token "+tk.Name, l.Entries, rs), nil
	})
}

// checkAddress enforces the allow-lists that apply to an authenticated request: the
// token's own, the token's organization's (team and organization tokens, and tokens
// bound to an organization), and, once the organization in the path is known (afterResolve),
// that organization's for people acting in it: personal tokens and browser sessions alike,
// and update lease tokens (a lease is a credential of the person or pipeline that started
// the update, used in the stack's organization). The SCIM token is not subject to the
// organization's list: the identity provider calls from its own egress addresses, and a
// list made for people must not silently stop deprovisioning. A refusal is a 403 that says
// which list refused which address.
func (s *Server) checkAddress(rq *Request, tx gatehouse.Tx, afterResolve bool) error {
	sub := rq.Subject
	if sub == nil || sub.Kind == authz.Anonymous || sub.Kind == authz.SCIMToken {
		return nil
	}
	addr := rq.event.SourceIP
	var lists []func() (*posture.Compiled, error)
	switch tk := sub.Token; {
	case tk == nil: // a session (as its user) or a lease token: the path's organization
		if afterResolve && rq.Org != nil {
			lists = append(lists, func() (*posture.Compiled, error) { return s.orgAllowList(rq, tx, rq.Org.ID) })
		}
	case !afterResolve:
		lists = append(lists, func() (*posture.Compiled, error) { return s.tokenAllowList(rq, tx, tk) })
		if tk.OrgID != 0 {
			lists = append(lists, func() (*posture.Compiled, error) { return s.orgAllowList(rq, tx, tk.OrgID) })
		}
	case rq.Org != nil && tk.OrgID == 0:
		lists = append(lists, func() (*posture.Compiled, error) { return s.orgAllowList(rq, tx, rq.Org.ID) })
	}
	for _, load := range lists {
		l, err := load()
		if err != nil {
			return err
		}
		if l != nil && !l.Permits(addr) {
			rq.event.Reason = "address " + addr + " is not in the allow-list of " + l.Name
			return gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s", l.Refusal(addr))
		}
	}
	return nil
}

// orgListable reports whether a listing that spans organizations (GET /api/user,
// /api/user/stacks, /api/esc/environments, the console's home) shows organization o to the
// caller. It leaves o out where a route naming o would refuse the caller before deciding:
// when o's address allow-list refuses the request's source address, and when o requires
// single sign-on and the caller's browser session was not started by o's SSO
// (sso.MaySessionActIn).
func (s *Server) orgListable(rq *Request, tx gatehouse.Tx, o *gatehouse.Org) (bool, error) {
	if rq.Subject != nil && rq.Subject.Kind == authz.SCIMToken {
		return true, nil
	}
	l, err := s.orgAllowList(rq, tx, o.ID)
	if err != nil || l != nil && !l.Permits(rq.event.SourceIP) {
		return false, err
	}
	if rq.Subject != nil && rq.Subject.Session != nil {
		err := s.sso.MaySessionActIn(tx, o, rq.Subject.Session.UserID, rq.Subject.Session)
		if gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			return false, nil
		}
		return err == nil, err
	}
	return true, nil
}

func (s *Server) registerPostureRoutes() {
	get, put, del := http.MethodGet, http.MethodPut, http.MethodDelete
	s.handle(get, "/api/orgs/{org}/tokens/{tokenID}/usage", authz.OrgTokenUsage, s.getTokenUsage)
	s.handle(get, "/api/user/tokens/{tokenID}/usage", authz.UserTokens, s.getTokenUsage)
	s.handle(get, "/api/orgs/{org}/posture", authz.OrgPostureRead, s.getPostureReport)
	s.handle(get, "/api/orgs/{org}/posture/settings", authz.OrgPostureRead, s.getPostureSettings)
	s.handle(put, "/api/orgs/{org}/posture/settings", authz.OrgPostureWrite, s.putPostureSettings)
	s.handle(get, "/api/orgs/{org}/anomalies", authz.OrgPostureRead, s.listAnomalies)
	s.handle(get, "/api/orgs/{org}/allowlists", authz.OrgAllowListRead, s.listAllowLists)
	s.handle(put, "/api/orgs/{org}/allowlist", authz.OrgAllowListWrite, s.putAllowList)
	s.handle(put, "/api/orgs/{org}/tokens/{tokenID}/allowlist", authz.OrgAllowListWrite, s.putAllowList)
	s.handle(put, "/api/orgs/{org}/ranges/{name}", authz.OrgAllowListWrite, s.putAddressRange)
	s.handle(del, "/api/orgs/{org}/ranges/{name}", authz.OrgAllowListWrite, s.deleteAddressRange)
}

// TokenUsageJSON answers GET .../tokens/{tokenID}/usage: "which services stop working if I
// revoke this?".
type TokenUsageJSON struct {
	TokenID   string `json:"tokenId"`
	Name      string `json:"name"`
	Kind      string `json:"kind"`
	Revoked   string `json:"revoked,omitempty"` // RFC 3339; in the future: rotation grace period
	InGrace   bool   `json:"inGracePeriod,omitempty"`
	FirstSeen string `json:"firstSeen,omitempty"`
	LastSeen  string `json:"lastSeen,omitempty"`
	Requests  int64  `json:"requests"`
	Denied    int64  `json:"denied"`
	// WindowDays is how far back the inventory remembers clients and targets.
	WindowDays       int                `json:"windowDays"`
	Clients          []TokenClientJSON  `json:"clients"`
	Targets          []TokenTargetJSON  `json:"targets"`
	OverflowClients  int64              `json:"overflowClients,omitempty"`
	OverflowRequests int64              `json:"overflowRequests,omitempty"`
	OverflowTargets  int64              `json:"overflowTargets,omitempty"`
	Successor        *TokenSuccessorUse `json:"successor,omitempty"`
	// RemainingUsers: during a rotation's grace period, the clients that used the old token
	// since the rotation began (they still have to switch).
	RemainingUsers []TokenClientJSON `json:"remainingUsers,omitempty"`
	Anomalies      []AnomalyJSON     `json:"anomalies"`
}

// TokenSuccessorUse says whether a rotated token's successor is in use.
type TokenSuccessorUse struct {
	TokenID  string `json:"tokenId"`
	Name     string `json:"name"`
	LastSeen string `json:"lastSeen,omitempty"`
}

// TokenClientJSON is one client of a token.
type TokenClientJSON struct {
	Address   string `json:"address"`
	UserAgent string `json:"userAgent"`
	CI        string `json:"ciIdentity,omitempty"`
	FirstSeen string `json:"firstSeen"`
	LastSeen  string `json:"lastSeen"`
	Requests  int64  `json:"requests"`
	Denied    int64  `json:"denied"`
}

// TokenTargetJSON is a stack or environment a token touched.
type TokenTargetJSON struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	FirstSeen string `json:"firstSeen"`
	LastSeen  string `json:"lastSeen"`
	Requests  int64  `json:"requests"`
}

// AnomalyJSON is a flagged anomaly.
type AnomalyJSON struct {
	Kind    string `json:"kind"`
	TokenID string `json:"tokenId"`
	Window  string `json:"window"`
	At      string `json:"at"`
	Detail  string `json:"detail"`
	Address string `json:"address,omitempty"`
}

func rfc(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func clientJSON(c gatehouse.TokenClient) TokenClientJSON {
	return TokenClientJSON{Address: c.IP, UserAgent: c.Agent, CI: c.CI, FirstSeen: rfc(c.FirstSeen), LastSeen: rfc(c.LastSeen), Requests: c.Requests, Denied: c.Denied}
}

func anomalyJSON(a gatehouse.Anomaly) AnomalyJSON {
	return AnomalyJSON{Kind: a.Kind, TokenID: a.TokenID, Window: a.Window, At: rfc(a.At), Detail: a.Detail, Address: a.IP}
}

// getTokenUsage is GET /api/orgs/{org}/tokens/{tokenID}/usage (organization and team
// tokens of the organization) and GET /api/user/tokens/{tokenID}/usage (the caller's own
// personal tokens).
func (s *Server) getTokenUsage(rq *Request) (any, error) {
	id := rq.PathValue("tokenID")
	var out TokenUsageJSON
	err := rq.View(func(tx gatehouse.Tx) error {
		tk, err := tx.GetToken(id)
		if err == nil {
			switch {
			case rq.Org != nil && (tk.OrgID != rq.Org.ID || tk.Kind == gatehouse.TokenPersonal):
				err = gatehouse.Errorf(gatehouse.ENOTFOUND, "token '%s' not found", id)
			case rq.Org == nil && (tk.Kind != gatehouse.TokenPersonal || rq.Subject.User == nil || tk.UserID != rq.Subject.User.ID):
				err = gatehouse.Errorf(gatehouse.ENOTFOUND, "token '%s' not found", id)
			}
		}
		if err != nil {
			return err
		}
		u, err := tx.GetTokenUsage(id)
		if err != nil {
			return err
		}
		now := tx.Now()
		out = TokenUsageJSON{TokenID: tk.ID, Name: tk.Name, Kind: string(tk.Kind), Revoked: rfc(tk.Revoked),
			InGrace: !tk.Revoked.IsZero() && now.Before(tk.Revoked), FirstSeen: rfc(u.FirstSeen), LastSeen: rfc(u.LastSeen),
			Requests: u.Requests, Denied: u.Denied, OverflowClients: u.OverflowClients, OverflowRequests: u.OverflowRequests,
			OverflowTargets: u.OverflowTargets, Clients: []TokenClientJSON{}, Targets: []TokenTargetJSON{}, Anomalies: []AnomalyJSON{}}
		if s.usage != nil {
			out.WindowDays = int(s.usage.Options().Window / (24 * time.Hour))
		}
		cutoff := now.Add(-time.Duration(max(out.WindowDays, 1)) * 24 * time.Hour)
		for _, c := range u.Clients {
			if c.LastSeen.Before(cutoff) {
				continue
			}
			out.Clients = append(out.Clients, clientJSON(c))
		}
		for _, g := range u.Targets {
			if g.LastSeen.Before(cutoff) {
				continue
			}
			out.Targets = append(out.Targets, TokenTargetJSON{Kind: g.Kind, Name: g.Name, FirstSeen: rfc(g.FirstSeen), LastSeen: rfc(g.LastSeen), Requests: g.Requests})
		}
		if out.InGrace {
			// The rotation began when the successor was made: whoever used the old token
			// since then has not switched yet.
			succ, err := successorOf(tx, tk)
			if err != nil {
				return err
			}
			began := time.Time{}
			if succ != nil {
				began = succ.Created
				su, err := tx.GetTokenUsage(succ.ID)
				if err != nil {
					return err
				}
				out.Successor = &TokenSuccessorUse{TokenID: succ.ID, Name: succ.Name, LastSeen: rfc(su.LastSeen)}
			}
			out.RemainingUsers = []TokenClientJSON{}
			for i, c := range u.Clients {
				if c.LastSeen.After(began) && !c.LastSeen.Before(cutoff) {
					out.RemainingUsers = append(out.RemainingUsers, clientJSON(u.Clients[i]))
				}
			}
		}
		if tk.OrgID != 0 {
			as, err := tx.ListAnomalies(tk.OrgID, now.Add(-time.Duration(max(out.WindowDays, 1))*24*time.Hour), 1000)
			if err != nil {
				return err
			}
			for _, a := range as {
				if a.TokenID == tk.ID {
					out.Anomalies = append(out.Anomalies, anomalyJSON(a))
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// inheritAllowList gives a rotation's successor the address allow-list of the token it
// replaces (a rotation must not widen where the credential works).
func inheritAllowList(tx gatehouse.Tx, old, next *gatehouse.Token) error {
	if old.OrgID == 0 {
		return nil
	}
	l, err := tx.GetAllowList(old.OrgID, old.ID)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return err
	}
	return tx.PutAllowList(&gatehouse.AllowList{OrgID: next.OrgID, TokenID: next.ID, Entries: l.Entries, ModifiedBy: "rotation of " + old.ID})
}

// successorOf finds the token a rotation made for tk: of the same scope, still live,
// created after it, with the same name before the "~" rotation suffix (see rotateToken);
// the newest. nil when none is found.
func successorOf(tx gatehouse.Tx, tk *gatehouse.Token) (*gatehouse.Token, error) {
	ts, err := tx.ListTokens(gatehouse.TokenFilter{Kind: tk.Kind, UserID: tk.UserID, OrgID: tk.OrgID, TeamID: tk.TeamID})
	if err != nil {
		return nil, err
	}
	base := rotationBase(tk.Name)
	var best *gatehouse.Token
	for i := range ts {
		t := &ts[i]
		if t.ID == tk.ID || t.Created.Before(tk.Created) || rotationBase(t.Name) != base || !strings.Contains(t.Name, "~") {
			continue
		}
		if best == nil || t.Created.After(best.Created) {
			best = t
		}
	}
	return best, nil
}

func rotationBase(name string) string {
	if i := strings.LastIndex(name, "~"); i > 0 {
		return name[:i]
	}
	return name
}

// getPostureReport is GET /api/orgs/{org}/posture.
func (s *Server) getPostureReport(rq *Request) (any, error) {
	var rep *posture.Report
	// The checks of the site's audit log (export sinks, lag, verification) are for site
	// administrators: an organization admin's report leaves them out.
	site := rq.Subject.User != nil && rq.Subject.User.SiteAdmin
	if err := rq.View(func(tx gatehouse.Tx) (err error) {
		rep, err = posture.Assess(tx, rq.Org, posture.AssessOptions{Now: tx.Now(), ExportSinks: s.cfg.AuditExportSinks, SkipSiteChecks: !site})
		return err
	}); err != nil {
		return nil, err
	}
	if site {
		s.setPostureGauges(rq.Org.Name, rep) // the hourly assessment's full set of checks
	}
	return rep, nil
}

func (s *Server) getPostureSettings(rq *Request) (any, error) {
	var st posture.Settings
	err := rq.View(func(tx gatehouse.Tx) (err error) { st, err = posture.LoadSettings(tx, rq.Org.ID); return err })
	return st, err
}

func (s *Server) putPostureSettings(rq *Request) (any, error) {
	var st posture.Settings
	if err := rq.decode(&st); err != nil {
		return nil, err
	}
	if err := st.Validate(); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(st)
	rq.event.Target = rq.Org.Name + "/posture/settings"
	rq.Detail("settings", string(b))
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.PutPostureSettings(rq.Org.ID, b) }); err != nil {
		return nil, err
	}
	return s.getPostureSettings(rq)
}

func (s *Server) listAnomalies(rq *Request) (any, error) {
	days := 30
	if v := rq.URL.Query().Get("days"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 366 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "days must be 1 to 366")
		}
		days = n
	}
	out := struct {
		Anomalies []AnomalyJSON `json:"anomalies"`
	}{Anomalies: []AnomalyJSON{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		as, err := tx.ListAnomalies(rq.Org.ID, tx.Now().Add(-time.Duration(days)*24*time.Hour), 1000)
		for _, a := range as {
			out.Anomalies = append(out.Anomalies, anomalyJSON(a))
		}
		return err
	})
	return out, err
}

// AllowListsJSON answers GET /api/orgs/{org}/allowlists.
type AllowListsJSON struct {
	Organization []string            `json:"organization"`
	Tokens       map[string][]string `json:"tokens"`
	Ranges       map[string][]string `json:"ranges"`
}

func (s *Server) listAllowLists(rq *Request) (any, error) {
	out := AllowListsJSON{Organization: []string{}, Tokens: map[string][]string{}, Ranges: map[string][]string{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		ls, err := tx.ListAllowLists(rq.Org.ID)
		if err != nil {
			return err
		}
		for _, l := range ls {
			if l.TokenID == "" {
				out.Organization = l.Entries
			} else {
				out.Tokens[l.TokenID] = l.Entries
			}
		}
		rs, err := tx.ListAddressRanges(rq.Org.ID)
		for _, r := range rs {
			out.Ranges[r.Name] = r.CIDRs
		}
		return err
	})
	return out, err
}

// putAllowList is PUT /api/orgs/{org}/allowlist and PUT .../tokens/{tokenID}/allowlist with
// {"entries": [...]} (an empty list removes the allow-list).
func (s *Server) putAllowList(rq *Request) (any, error) {
	var body struct {
		Entries []string `json:"entries"`
		// Force sets an organization list that does not permit the caller's own address
		// (which locks the caller out of the organization).
		Force bool `json:"force"`
	}
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	tokenID := rq.PathValue("tokenID")
	rq.event.Target = rq.Org.Name + "/allowlist"
	if tokenID != "" {
		rq.event.Target = rq.Org.Name + "/tokens/" + tokenID + "/allowlist"
	}
	var entries []string
	err := rq.Change(func(tx gatehouse.Tx) error {
		if tokenID != "" {
			tk, err := tx.GetToken(tokenID)
			if err != nil || tk.OrgID != rq.Org.ID {
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "token '%s' not found in this organization (allow-lists of personal tokens: use the organization's)", tokenID)
			}
		}
		rs, err := tx.ListAddressRanges(rq.Org.ID)
		if err != nil {
			return err
		}
		names := map[string]bool{}
		for _, r := range rs {
			names[r.Name] = true
		}
		if entries, err = posture.NormalizeEntries(body.Entries, names); err != nil {
			return err
		}
		if tokenID == "" && len(entries) > 0 && !body.Force {
			if c := posture.Compile("", entries, rs); !c.Permits(rq.event.SourceIP) {
				return gatehouse.Errorf(gatehouse.EINVALID, "this allow-list does not permit your own address %s: it would lock you out of the organization; add it, or send \"force\": true", rq.event.SourceIP)
			}
		}
		rq.Detail("entries", joinComma(entries))
		return tx.PutAllowList(&gatehouse.AllowList{OrgID: rq.Org.ID, TokenID: tokenID, Entries: entries, ModifiedBy: rq.Subject.Name()})
	})
	if err != nil {
		return nil, err
	}
	return map[string]any{"entries": entries}, nil
}

func (s *Server) putAddressRange(rq *Request) (any, error) {
	name := rq.PathValue("name")
	if err := posture.ValidRangeName(name); err != nil {
		return nil, err
	}
	var body struct {
		CIDRs []string `json:"cidrs"`
		// Force changes a range the organization's allow-list uses so that the list no
		// longer permits the caller's own address (as putAllowList's force).
		Force bool `json:"force"`
	}
	if err := rq.decode(&body); err != nil {
		return nil, err
	}
	cidrs, err := posture.NormalizeCIDRs(body.CIDRs)
	if err != nil {
		return nil, err
	}
	if len(cidrs) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "a range needs at least one network (delete it instead)")
	}
	rq.event.Target = rq.Org.Name + "/ranges/" + name
	rq.Detail("cidrs", joinComma(cidrs))
	if err := rq.Change(func(tx gatehouse.Tx) error {
		if !body.Force {
			// The organization's list refers to this range: the change must not lock the
			// caller out (the same check as setting the list itself).
			l, err := tx.GetAllowList(rq.Org.ID, "")
			if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			if err == nil && slices.Contains(l.Entries, "@"+name) {
				rs, err := tx.ListAddressRanges(rq.Org.ID)
				if err != nil {
					return err
				}
				next := []gatehouse.AddressRange{{OrgID: rq.Org.ID, Name: name, CIDRs: cidrs}}
				for _, r := range rs {
					if r.Name != name {
						next = append(next, r)
					}
				}
				if c := posture.Compile("", l.Entries, next); !c.Permits(rq.event.SourceIP) {
					return gatehouse.Errorf(gatehouse.EINVALID, "the organization's allow-list uses range '%s': with these networks it would no longer permit your own address %s and lock you out of the organization; add it, or send \"force\": true", name, rq.event.SourceIP)
				}
			}
		}
		return tx.PutAddressRange(&gatehouse.AddressRange{OrgID: rq.Org.ID, Name: name, CIDRs: cidrs, ModifiedBy: rq.Subject.Name()})
	}); err != nil {
		return nil, err
	}
	return map[string]any{"name": name, "cidrs": cidrs}, nil
}

func (s *Server) deleteAddressRange(rq *Request) (any, error) {
	name := rq.PathValue("name")
	rq.event.Target = rq.Org.Name + "/ranges/" + name
	err := rq.Change(func(tx gatehouse.Tx) error {
		ls, err := tx.ListAllowLists(rq.Org.ID)
		if err != nil {
			return err
		}
		var users []string
		for _, l := range ls {
			for _, e := range l.Entries {
				if e == "@"+name {
					users = append(users, map[bool]string{true: "the organization's allow-list", false: "token " + l.TokenID}[l.TokenID == ""])
				}
			}
		}
		if len(users) > 0 {
			sort.Strings(users)
			return gatehouse.Errorf(gatehouse.ECONFLICT, "range '%s' is used by %s; remove it there first", name, joinComma(users))
		}
		return tx.DeleteAddressRange(rq.Org.ID, name)
	})
	return nil, err
}

func joinComma(xs []string) string {
	out := ""
	for i, x := range xs {
		if i > 0 {
			out += ","
		}
		out += x
	}
	return out
}
