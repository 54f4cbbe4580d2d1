package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/oidc"
	"github.com/gatehouse-dev/gatehouse/oidc/oidctest"
	"github.com/gatehouse-dev/gatehouse/token"
)

const (
	oidcAud         = "urn:pulumi:org:acme"
	oidcGrant       = "urn:ietf:params:oauth:grant-type:token-exchange"
	oidcIDTokenType = "urn:ietf:params:oauth:token-type:id_token"
	oidcTypePrefix  = "urn:pulumi:token-type:access_token:"
	oidcAction      = "auth:oidc-exchange"
)

// oidcWorld is acme with two pipeline teams (write on env=dev, write on env=production),
// a user bob who belongs to acme only, and a GitHub-like issuer registered with policies:
// the dev workflow of acme/infra gets the dev team, the production environment of
// acme/infra gets the production team, acme/tools gets organization tokens (admin allowed),
// bob's repository gets personal tokens for bob.
type oidcWorld struct {
	e        *env
	iss      *oidctest.Issuer
	issuerID string
	policyID string
	orgID    int64
}

func newOIDCWorld(t *testing.T) *oidcWorld {
	t.Helper()
	e := newEnv(t, allowPrivateIssuers) // oidctest serves on loopback
	w := &oidcWorld{e: e, iss: oidctest.New(t)}
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		w.orgID = org.ID
		for name, env := range map[string]string{"dev-deployers": "dev", "production-deployers": "production"} {
			tm := &gatehouse.Team{OrgID: org.ID, Name: name}
			if err := tx.CreateTeam(tm); err != nil {
				return err
			}
			if err := tx.PutGrant(&gatehouse.Grant{TeamID: tm.ID, Scope: gatehouse.Scope{TagName: "env", TagValue: env}, Permission: gatehouse.PermWrite}); err != nil {
				return err
			}
		}
		bob := &gatehouse.User{Name: "bob"}
		if err := tx.CreateUser(bob); err != nil {
			return err
		}
		return tx.PutMember(org.ID, bob.ID, gatehouse.RoleMember)
	}))
	var reg struct {
		ID, Issuer    string
		MaxExpiration int64
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: map[string]any{"name": "github", "url": w.iss.URL}}, &reg))
	if reg.ID == "" || reg.Issuer != w.iss.URL || reg.MaxExpiration != 25*3600 {
		t.Fatalf("registration = %+v", reg)
	}
	w.issuerID = reg.ID
	var pol struct {
		ID       string
		Version  int
		Policies []any
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auth/policies/oidcissuers/" + reg.ID}, &pol))
	if pol.ID == "" || len(pol.Policies) != 0 {
		t.Fatalf("a new issuer's policy = %+v, want no policies", pol)
	}
	w.policyID = pol.ID
	w.setPolicies(t, defaultOIDCPolicies)
	return w
}

// allowPrivateIssuers is --allow-private-issuers: the test issuers serve on 127.0.0.1.
func allowPrivateIssuers(c *httpapi.Config) { c.AllowPrivateIssuers = true }

var defaultOIDCPolicies = []map[string]any{
	{"decision": "allow", "tokenType": "team", "teamName": "dev-deployers",
		"rules": map[string]string{"aud": oidcAud, "sub": "repo:acme/infra:ref:refs/heads/main"}},
	{"decision": "allow", "tokenType": "team", "teamName": "production-deployers",
		"rules": map[string]string{"aud": oidcAud, "sub": "repo:acme/infra:environment:production", "repository_id": "456789"}},
	{"decision": "allow", "tokenType": "organization", "authorizedPermissions": []string{"admin"},
		"rules": map[string]string{"repository": "acme/tools", "environment": "admin"}},
	{"decision": "allow", "tokenType": "organization",
		"rules": map[string]string{"repository": "acme/tools"}},
	{"decision": "allow", "tokenType": "personal", "userLogin": "bob",
		"rules": map[string]string{"sub": "repo:acme/bob-sandbox:*"}},
}

func (w *oidcWorld) setPolicies(t *testing.T, ps []map[string]any) {
	t.Helper()
	var out struct {
		ID       string
		Policies []map[string]any
	}
	w.e.must(w.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + w.policyID, Body: map[string]any{"policies": ps}}, &out))
	if out.ID != w.policyID || len(out.Policies) != len(ps) {
		t.Fatalf("PATCH policies = %+v", out)
	}
}

// token returns an ID token of the issuer for repo's job (env: a GitHub environment, or ""
// for a push to main), with changes applied to its claims.
func (w *oidcWorld) token(repo, env string, change func(map[string]any)) string {
	c := w.iss.Claims(oidcAud, repo, env, w.e.clock.Now())
	if change != nil {
		change(c)
	}
	return w.iss.Sign(c)
}

type exchangeResult struct {
	Status int
	Body   map[string]any
	Raw    string
	Header http.Header
}

func (r exchangeResult) str(k string) string { s, _ := r.Body[k].(string); return s }

// exchange posts to the token endpoint form-encoded, exactly as `pulumi login --oidc-token`
// does (pkg/backend/httpstate/client.ExchangeOidcToken), or as JSON like pulumi/auth-actions.
func (w *oidcWorld) exchange(t *testing.T, params map[string]string, asJSON bool) exchangeResult {
	t.Helper()
	var body []byte
	ct := "application/x-www-form-urlencoded"
	if asJSON {
		m := map[string]any{}
		for k, v := range params {
			m[k] = v
			if k == "expiration" {
				n, _ := strconv.Atoi(v)
				m[k] = n
			}
		}
		body, _ = json.Marshal(m)
		ct = "application/json"
	} else {
		vals := url.Values{}
		for k, v := range params {
			vals.Set(k, v)
		}
		body = []byte(vals.Encode())
	}
	req, err := http.NewRequest("POST", w.e.url+"/api/oauth/token", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", ct)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := exchangeResult{Status: resp.StatusCode, Raw: string(raw), Header: resp.Header}
	if err := json.Unmarshal(raw, &r.Body); err != nil {
		t.Fatalf("token endpoint answered %d with a non-JSON body: %s", resp.StatusCode, raw)
	}
	return r
}

func exchangeParams(subjectToken, tokenType, scope string) map[string]string {
	return map[string]string{
		"audience": oidcAud, "grant_type": oidcGrant, "subject_token_type": oidcIDTokenType,
		"requested_token_type": oidcTypePrefix + tokenType, "scope": scope, "subject_token": subjectToken,
		"expiration": "0", // what the CLI sends without --oidc-expiration
	}
}

// granted asserts a successful exchange and returns the access token.
func granted(t *testing.T, r exchangeResult, tokenType, scope string, expiresIn int) string {
	t.Helper()
	if r.Status != 200 {
		t.Fatalf("exchange: HTTP %d %s", r.Status, r.Raw)
	}
	if r.str("issued_token_type") != oidcTypePrefix+tokenType || r.str("token_type") != "token" || r.str("scope") != scope {
		t.Fatalf("exchange answer = %s", r.Raw)
	}
	if got := int(r.Body["expires_in"].(float64)); got != expiresIn {
		t.Fatalf("expires_in = %d, want %d", got, expiresIn)
	}
	if r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("Cache-Control = %q", r.Header.Get("Cache-Control"))
	}
	tok := r.str("access_token")
	if !strings.HasPrefix(tok, "gatehouse_") {
		t.Fatalf("access_token = %q", tok)
	}
	return tok
}

// refusedWith asserts an OAuth error answer.
func refusedWith(t *testing.T, what string, r exchangeResult, status int, code string) {
	t.Helper()
	if r.Status != status || r.str("error") != code || r.str("error_description") == "" {
		t.Fatalf("%s: HTTP %d %s; want %d with error %q", what, r.Status, r.Raw, status, code)
	}
	if _, ok := r.Body["access_token"]; ok {
		t.Fatalf("%s: an access token in a refusal", what)
	}
}

type whoami struct {
	GitHubLogin   string `json:"githubLogin"`
	Organizations []struct {
		GitHubLogin string `json:"githubLogin"`
		Role        string `json:"role"`
	} `json:"organizations"`
	TokenInfo *struct {
		Name         string `json:"name"`
		Organization string `json:"organization"`
		Team         string `json:"team"`
	} `json:"tokenInfo"`
}

func (w *oidcWorld) whoami(t *testing.T, tok string) whoami {
	t.Helper()
	var u whoami
	w.e.must(cliwire.New(w.e.url, tok).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, &u))
	return u
}

// audits returns the org's exchange audit events, oldest first.
func (w *oidcWorld) audits(t *testing.T, orgID int64) []gatehouse.AuditEvent {
	t.Helper()
	var evs []gatehouse.AuditEvent
	w.e.must(w.e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{OrgID: orgID, Action: oidcAction, Ascending: true, Limit: 1000})
		return err
	}))
	return evs
}

func (w *oidcWorld) lastAudit(t *testing.T) gatehouse.AuditEvent {
	t.Helper()
	evs := w.audits(t, w.orgID)
	if len(evs) == 0 {
		t.Fatal("no exchange in the audit log")
	}
	return evs[len(evs)-1]
}

func TestOIDCExchangeEachTokenType(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)

	// Team token, as the CLI sends it (form-encoded).
	tok := granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false),
		"team", "team:production-deployers", 7200)
	u := w.whoami(t, tok)
	if u.TokenInfo == nil || u.TokenInfo.Team != "production-deployers" || u.TokenInfo.Organization != "acme" || !strings.HasPrefix(u.TokenInfo.Name, "oidc:github:") {
		t.Fatalf("team token whoami = %+v", u)
	}
	ev := w.lastAudit(t)
	if ev.Outcome != gatehouse.OutcomeSuccess || ev.Details["issuer"] != "github" || ev.Details["policy"] != "policies[1]" ||
		ev.Details["claim.sub"] != "repo:acme/infra:environment:production" || ev.Details["claim.repository"] != "acme/infra" ||
		ev.Details["claim.environment"] != "production" || ev.Details["claim.aud"] != oidcAud || ev.Details["claim.ref"] != "refs/heads/main" ||
		ev.Details["claim.job_workflow_ref"] == "" || ev.Details["token_id"] == "" || ev.TokenID != ev.Details["token_id"] ||
		ev.ActorKind != "oidc" || ev.ActorName != "repo:acme/infra:environment:production" || ev.OrgName != "acme" {
		t.Fatalf("audit of a granted exchange = %+v", ev)
	}

	// Organization token (member role), as pulumi/auth-actions sends it (JSON, no scope).
	p := exchangeParams(w.token("acme/tools", "", nil), "organization", "")
	delete(p, "scope")
	delete(p, "expiration")
	tok = granted(t, w.exchange(t, p, true), "organization", "", 7200)
	u = w.whoami(t, tok)
	if u.TokenInfo == nil || u.TokenInfo.Organization != "acme" || u.TokenInfo.Team != "" || len(u.Organizations) != 1 || u.Organizations[0].Role != "member" {
		t.Fatalf("organization token whoami = %+v", u)
	}
	// Organization token with the admin role: only where a policy authorizes admin.
	refusedWith(t, "admin scope without authorization", w.exchange(t, exchangeParams(w.token("acme/tools", "", nil), "organization", "admin"), false), 401, "invalid_request")
	tok = granted(t, w.exchange(t, exchangeParams(w.token("acme/tools", "admin", nil), "organization", "admin"), false), "organization", "admin", 7200)
	if u := w.whoami(t, tok); u.Organizations[0].Role != "admin" {
		t.Fatalf("admin organization token whoami = %+v", u)
	}

	// Personal token for bob.
	tok = granted(t, w.exchange(t, exchangeParams(w.token("acme/bob-sandbox", "", nil), "personal", "user:bob"), false), "personal", "user:bob", 7200)
	u = w.whoami(t, tok)
	if u.GitHubLogin != "bob" || u.TokenInfo == nil || !strings.HasPrefix(u.TokenInfo.Name, "oidc:github:") {
		t.Fatalf("personal token whoami = %+v", u)
	}

	// Every issued token is a short-lived pipeline credential with a unique name.
	var toks []gatehouse.Token
	e := w.e
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		for _, f := range []gatehouse.TokenFilter{{Kind: gatehouse.TokenTeam}, {Kind: gatehouse.TokenOrg}, {Kind: gatehouse.TokenPersonal}} {
			ts, err := tx.ListTokens(f)
			if err != nil {
				return err
			}
			for _, tk := range ts {
				if tk.CreatedBy == "oidc:github" {
					toks = append(toks, tk)
				}
			}
		}
		return nil
	}))
	if len(toks) != 4 {
		t.Fatalf("%d issued tokens, want 4", len(toks))
	}
	names := map[string]bool{}
	for _, tk := range toks {
		if !tk.Pipeline || tk.Expires.Sub(tk.Created) != 2*time.Hour || names[tk.Name] {
			t.Fatalf("issued token %+v", tk)
		}
		names[tk.Name] = true
	}

	// The issuer's lastUsed is set.
	var reg struct{ LastUsed string }
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID}, &reg))
	if reg.LastUsed == "" {
		t.Fatal("lastUsed not recorded")
	}
}

func TestOIDCExchangeRefusals(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	now := w.e.clock.Now()
	prod := func(change func(map[string]any)) string { return w.token("acme/infra", "production", change) }
	prodTeam := func(tok string) map[string]string { return exchangeParams(tok, "team", "team:production-deployers") }

	// Sanity: the unchanged request works.
	granted(t, w.exchange(t, prodTeam(prod(nil)), false), "team", "team:production-deployers", 7200)

	stranger := oidctest.NewKey(t, "stranger", jose.RS256)
	other := oidctest.New(t) // a second issuer acme does not trust
	refusals := []struct {
		name   string
		tok    string
		params func(map[string]string)
		reason string // in the audit record
	}{
		{"wrong audience", prod(func(c map[string]any) { c["aud"] = "urn:pulumi:org:globex" }), nil, "wrong audience"},
		{"GitHub's default audience", prod(func(c map[string]any) { c["aud"] = "https://github.com/acme" }), nil, "wrong audience"},
		{"expired", prod(func(c map[string]any) { c["exp"] = now.Add(-2 * time.Minute).Unix() }), nil, "token expired"},
		{"not yet valid", prod(func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), nil, "not yet valid"},
		{"issued in the future", prod(func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() }), nil, "not yet valid"},
		{"too old", prod(func(c map[string]any) {
			c["iat"], c["nbf"], c["exp"] = now.Add(-3*time.Hour).Unix(), now.Add(-3*time.Hour).Unix(), now.Add(time.Hour).Unix()
		}), nil, "too old"},
		{"wrong issuer", other.Sign(other.Claims(oidcAud, "acme/infra", "production", now)), nil, "trusts no OIDC issuer"},
		{"issuer claimed by another key", other.Sign(func() map[string]any {
			c := other.Claims(oidcAud, "acme/infra", "production", now)
			c["iss"] = w.iss.URL
			return c
		}()), nil, "invalid signature"},
		{"unknown key", w.iss.SignWith(stranger, w.iss.Claims(oidcAud, "acme/infra", "production", now)), nil, "no key of the issuer"},
		{"alg none", oidctest.Unsigned(w.iss.Claims(oidcAud, "acme/infra", "production", now)), nil, "algorithm not allowed"},
		{"HMAC with the public key", oidctest.HMACWithPublicKey(t, w.iss.SigningKey(), w.iss.Claims(oidcAud, "acme/infra", "production", now)), nil, "algorithm not allowed"},
		{"policy mismatch: another repository", w.token("acme/infra-fork", "production", nil), nil, "deny by default"},
		{"policy mismatch: same name, another repository_id", prod(func(c map[string]any) { c["repository_id"] = "999" }), nil, "deny by default"},
		{"policy mismatch: a branch instead of the environment", w.token("acme/infra", "", nil), nil, "deny by default"},
		{"policy mismatch: the dev job asks for production", w.token("acme/infra", "", nil), func(p map[string]string) {}, "deny by default"},
		{"no policy for an organization token", prod(nil), func(p map[string]string) {
			p["requested_token_type"], p["scope"] = oidcTypePrefix+"organization", ""
		}, "deny by default"},
		{"nonexistent team", prod(nil), func(p map[string]string) { p["scope"] = "team:ghosts" }, "deny by default"},
		{"unknown organization", prod(func(c map[string]any) { c["aud"] = "urn:pulumi:org:nosuch" }), func(p map[string]string) {
			p["audience"] = "urn:pulumi:org:nosuch"
		}, ""},
		{"garbage token", "not-a-jwt", nil, "malformed"},
	}
	for _, c := range refusals {
		p := prodTeam(c.tok)
		if c.params != nil {
			c.params(p)
		}
		before := len(w.audits(t, w.orgID))
		r := w.exchange(t, p, false)
		refusedWith(t, c.name, r, 401, "invalid_request")
		if c.reason == "" {
			continue // an unknown organization: recorded site-wide
		}
		evs := w.audits(t, w.orgID)
		if len(evs) != before+1 {
			t.Fatalf("%s: %d new audit events, want 1", c.name, len(evs)-before)
		}
		ev := evs[len(evs)-1]
		if ev.Outcome == gatehouse.OutcomeSuccess || !strings.Contains(ev.Reason, c.reason) {
			t.Errorf("%s: audit outcome %q reason %q, want %q", c.name, ev.Outcome, ev.Reason, c.reason)
		}
		if strings.Contains(ev.Reason, "deny by default") && (ev.Outcome != gatehouse.OutcomeDenied || ev.Details["claim.sub"] == "" || ev.Details["issuer"] != "github") {
			t.Errorf("%s: a policy refusal records the claims and the issuer: %+v", c.name, ev)
		}
		if strings.Contains(ev.Reason, "invalid ID token") && (ev.Details["claim.sub"] != "" || ev.Details["unverified.sub"] == "" || ev.Details["issuer"] != "github") {
			t.Errorf("%s: an unverifiable token's claims are recorded as unverified: %+v", c.name, ev)
		}
	}
	// Every refusal has the same description: nothing to tell an unknown organization from a
	// bad signature.
	a := w.exchange(t, prodTeam(prod(func(c map[string]any) { c["aud"] = "urn:pulumi:org:globex" })), false)
	b := w.exchange(t, func() map[string]string {
		p := prodTeam(prod(nil))
		p["audience"] = "urn:pulumi:org:nosuch"
		return p
	}(), false)
	if a.Raw != b.Raw {
		t.Fatalf("refusals differ: %s vs %s", a.Raw, b.Raw)
	}

	// Deny wins: a deny policy for pushes from forks' pull requests and a kill switch for
	// one team, anywhere in the list.
	w.setPolicies(t, append([]map[string]any{
		{"decision": "deny", "tokenType": "team", "teamName": "production-deployers", "rules": map[string]string{"environment": "production"}},
	}, defaultOIDCPolicies...))
	r := w.exchange(t, prodTeam(prod(nil)), false)
	refusedWith(t, "deny wins", r, 401, "invalid_request")
	if ev := w.lastAudit(t); ev.Outcome != gatehouse.OutcomeDenied || ev.Details["policy"] != "policies[0]" || !strings.Contains(ev.Reason, "denies") {
		t.Fatalf("deny audit = %+v", ev)
	}
	// The deny does not touch the dev team.
	granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "", nil), "team", "team:dev-deployers"), false), "team", "team:dev-deployers", 7200)
	w.setPolicies(t, defaultOIDCPolicies)

	// A team deleted after the policy was written: refused at exchange time.
	w.e.must(w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		tm, err := tx.GetTeamByName(w.orgID, "production-deployers")
		if err != nil {
			return err
		}
		return tx.DeleteTeam(tm.ID)
	}))
	refusedWith(t, "deleted team", w.exchange(t, prodTeam(prod(nil)), false), 401, "invalid_request")
	if ev := w.lastAudit(t); !strings.Contains(ev.Reason, "does not exist") || ev.Details["policy"] != "policies[1]" {
		t.Fatalf("deleted team audit = %+v", ev)
	}

	// Personal tokens: a user who also belongs to another organization, a site
	// administrator, a user who does not exist.
	bobTok := func() string { return w.token("acme/bob-sandbox", "", nil) }
	w.e.must(w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		bob, err := tx.GetUserByName("bob")
		if err != nil {
			return err
		}
		globex := &gatehouse.Org{Name: "globex", Settings: gatehouse.DefaultOrgSettings()}
		if err := tx.CreateOrg(globex); err != nil {
			return err
		}
		return tx.PutMember(globex.ID, bob.ID, gatehouse.RoleMember)
	}))
	// A user in two organizations gets a token bound to the issuing one (what it may do
	// elsewhere is TestOIDCPersonalTokenStaysInItsOrganization's); refusing them would only
	// tell acme's admins that bob is a member somewhere else.
	granted(t, w.exchange(t, exchangeParams(bobTok(), "personal", "user:bob"), false), "personal", "user:bob", 7200)
	// A policy for a site administrator is refused when it is written.
	err := w.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + w.policyID, Body: map[string]any{"policies": []any{
		map[string]any{"decision": "allow", "tokenType": "personal", "userLogin": "alice", "rules": map[string]string{"sub": "repo:acme/bob-sandbox:*"}},
	}}}, nil)
	if ce, ok := err.(*cliwire.Error); !ok || ce.Status != 400 || !strings.Contains(ce.Message, "site administrator") {
		t.Fatalf("policy for a site administrator: %v", err)
	}
	refusedWith(t, "nonexistent user", w.exchange(t, exchangeParams(bobTok(), "personal", "user:nobody"), false), 401, "invalid_request")

	// The raw ID tokens are nowhere in the audit log.
	all := w.audits(t, w.orgID)
	js, _ := json.Marshal(all)
	for _, c := range refusals {
		if len(c.tok) > 20 && strings.Contains(string(js), c.tok) {
			t.Fatalf("the audit log contains the ID token of %q", c.name)
		}
	}
}

func TestOIDCExchangeMalformedRequests(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	tok := w.token("acme/infra", "production", nil)
	for _, c := range []struct {
		name   string
		change func(map[string]string)
		code   string
	}{
		{"refresh grant", func(p map[string]string) { p["grant_type"] = "refresh_token" }, "unsupported_grant_type"},
		{"no grant", func(p map[string]string) { delete(p, "grant_type") }, "invalid_request"},
		{"access token subject", func(p map[string]string) {
			p["subject_token_type"] = "urn:ietf:params:oauth:token-type:access_token"
		}, "invalid_request"},
		{"no subject token", func(p map[string]string) { delete(p, "subject_token") }, "invalid_request"},
		{"actor token", func(p map[string]string) { p["actor_token"] = "x" }, "invalid_request"},
		{"no audience", func(p map[string]string) { delete(p, "audience") }, "invalid_request"},
		{"foreign audience", func(p map[string]string) { p["audience"] = "sts.amazonaws.com" }, "invalid_target"},
		{"team without scope", func(p map[string]string) { p["scope"] = "" }, "invalid_scope"},
		{"team with a user scope", func(p map[string]string) { p["scope"] = "user:bob" }, "invalid_scope"},
		{"organization with a team scope", func(p map[string]string) { p["requested_token_type"] = oidcTypePrefix + "organization" }, "invalid_scope"},
		{"runner", func(p map[string]string) { p["requested_token_type"] = oidcTypePrefix + "runner" }, "invalid_request"},
		{"unknown type", func(p map[string]string) { p["requested_token_type"] = "urn:ietf:params:oauth:token-type:jwt" }, "invalid_request"},
		{"negative expiration", func(p map[string]string) { p["expiration"] = "-1" }, "invalid_request"},
		{"bad expiration", func(p map[string]string) { p["expiration"] = "2h" }, "invalid_request"},
	} {
		p := exchangeParams(tok, "team", "team:production-deployers")
		c.change(p)
		refusedWith(t, c.name, w.exchange(t, p, false), 400, c.code)
	}
	// A parameter given twice.
	body := "grant_type=" + url.QueryEscape(oidcGrant) + "&grant_type=x"
	resp, err := http.Post(w.e.url+"/api/oauth/token", "application/x-www-form-urlencoded", strings.NewReader(body))
	w.e.must(err)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("duplicate parameter: HTTP %d", resp.StatusCode)
	}
	// An oversized body.
	resp, err = http.Post(w.e.url+"/api/oauth/token", "application/x-www-form-urlencoded", strings.NewReader("subject_token="+strings.Repeat("a", 1<<20)))
	w.e.must(err)
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("oversized body: HTTP %d", resp.StatusCode)
	}
	// The requested token type may be left out: the scope decides, as in the CLI.
	p := exchangeParams(tok, "team", "team:production-deployers")
	delete(p, "requested_token_type")
	granted(t, w.exchange(t, p, true), "team", "team:production-deployers", 7200)
}

func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t) // registration fetched the keys once (a check, not the cache)
	p := func() map[string]string {
		return exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers")
	}
	granted(t, w.exchange(t, p(), false), "team", "team:production-deployers", 7200)
	hits := w.iss.JWKSHits()
	// The issuer rotates to a new key. Inside the refresh interval, an unknown kid does not
	// make Gatehouse fetch the JWKS again, however many tokens name it.
	w.iss.Rotate("k2", jose.ES256)
	w.e.clock.Advance(5 * time.Second)
	for range 3 {
		refusedWith(t, "rotated key inside the refresh interval", w.exchange(t, p(), false), 401, "invalid_request")
	}
	if got := w.iss.JWKSHits(); got != hits {
		t.Fatalf("JWKS fetched %d more times inside the refresh interval", got-hits)
	}
	// After it, the unknown kid refreshes the keys once and the exchange succeeds.
	w.e.clock.Advance(oidc.MinRefreshInterval)
	granted(t, w.exchange(t, p(), false), "team", "team:production-deployers", 7200)
	granted(t, w.exchange(t, p(), false), "team", "team:production-deployers", 7200)
	if got := w.iss.JWKSHits(); got != hits+1 {
		t.Fatalf("JWKS fetched %d times after rotation, want 1", got-hits)
	}
}

func TestOIDCLifetimeCapping(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	p := func(exp string) map[string]string {
		m := exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers")
		m["expiration"] = exp
		return m
	}
	granted(t, w.exchange(t, p("900"), false), "team", "team:production-deployers", 900)
	granted(t, w.exchange(t, p("86400"), false), "team", "team:production-deployers", 86400)
	granted(t, w.exchange(t, p("999999"), false), "team", "team:production-deployers", 25*3600) // the issuer's default cap
	// The issuer's maximum caps every token.
	w.e.must(w.e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID, Body: map[string]any{"maxExpiration": 3 * 3600}}, nil))
	granted(t, w.exchange(t, p("36000"), false), "team", "team:production-deployers", 3*3600)
	granted(t, w.exchange(t, p("0"), false), "team", "team:production-deployers", 7200)
	// A policy's maxExpiration caps its tokens further.
	ps := append([]map[string]any{}, defaultOIDCPolicies...)
	capped := map[string]any{}
	for k, v := range ps[1] {
		capped[k] = v
	}
	capped["maxExpiration"] = 1800
	ps[1] = capped
	w.setPolicies(t, ps)
	tok := granted(t, w.exchange(t, p("0"), false), "team", "team:production-deployers", 1800)
	// The token stops working when it expires.
	w.whoami(t, tok)
	w.e.clock.Advance(1801 * time.Second)
	if err := cliwire.New(w.e.url, tok).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil); cliwire.Status(err) != 401 {
		t.Fatalf("expired issued token: %v", err)
	}
}

func TestOIDCIssuedTokenRevocation(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	r := w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false)
	tok := granted(t, r, "team", "team:production-deployers", 7200)
	w.whoami(t, tok)
	id := w.lastAudit(t).Details["token_id"]
	w.e.must(w.e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error { return tx.RevokeToken(id, tx.Now()) }))
	if err := cliwire.New(w.e.url, tok).Do(cliwire.Call{Method: "GET", Path: "/api/user"}, nil); cliwire.Status(err) != 401 {
		t.Fatalf("revoked issued token: %v", err)
	}
}

// TestOIDCPipelinesReachOnlyTheirStacks is the README's example: the dev workflow's team
// token reaches env=dev stacks only, the production workflow's reaches env=production ones,
// and may change them although production is protected (an OIDC-issued token is a pipeline
// credential).
func TestOIDCPipelinesReachOnlyTheirStacks(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	e := w.e
	e.must(e.createStack(e.admin, "acme", "proj", "dev", map[string]string{"env": "dev"}))
	e.must(e.createStack(e.admin, "acme", "proj", "production", map[string]string{"env": "production"}))
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		return tx.PutProtection(&gatehouse.Protection{OrgID: w.orgID, Scope: gatehouse.Scope{TagName: "env", TagValue: "production"}, CreatedBy: "alice"})
	}))
	devTok := granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "", nil), "team", "team:dev-deployers"), false), "team", "team:dev-deployers", 7200)
	prodTok := granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)
	dev, prod := cliwire.New(e.url, devTok), cliwire.New(e.url, prodTok)

	wantStatus(t, dev.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "production")}, nil), 404)
	wantStatus(t, prod.Do(cliwire.Call{Method: "GET", Path: stackPath("acme", "proj", "dev")}, nil), 404)
	// A person, even an organization admin, may not change protected production.
	if _, err := e.startRun(e.admin, stackPath("acme", "proj", "production"), "update", false); cliwire.Status(err) != 403 {
		t.Fatalf("a person updating protected production: %v", err)
	}
	if _, err := e.startRun(dev, stackPath("acme", "proj", "dev"), "update", false); err != nil {
		t.Fatalf("dev pipeline on dev: %v", err)
	}
	r, err := e.startRun(prod, stackPath("acme", "proj", "production"), "update", false)
	if err != nil {
		t.Fatalf("production pipeline on protected production: %v", err)
	}
	e.must(r.complete("succeeded"))
}

func TestOIDCIssuerAdministration(t *testing.T) {
	t.Parallel()
	w := newOIDCWorld(t)
	e := w.e
	var list struct {
		OIDCIssuers []struct {
			ID, Name, URL string
			Thumbprints   []string
		} `json:"oidcIssuers"`
	}
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers"}, &list))
	if len(list.OIDCIssuers) != 1 || list.OIDCIssuers[0].Name != "github" || list.OIDCIssuers[0].Thumbprints == nil {
		t.Fatalf("list = %+v", list)
	}

	// Registration refusals.
	for name, body := range map[string]map[string]any{
		"duplicate URL":        {"name": "again", "url": w.iss.URL},
		"duplicate name":       {"name": "GitHub", "url": oidctest.New(t).URL},
		"plain http":           {"name": "x", "url": "http://token.actions.githubusercontent.com"},
		"query":                {"name": "x", "url": w.iss.URL + "?a=b"},
		"no name":              {"url": w.iss.URL},
		"unreachable":          {"name": "x", "url": "http://127.0.0.1:1"},
		"too long max":         {"name": "x", "url": oidctest.New(t).URL, "maxExpiration": 26 * 3600},
		"private key in jwks":  {"name": "x", "url": "https://closed.example.com", "jwks": privateJWKS(t)},
		"discovery mismatch":   {"name": "x", "url": mismatchedIssuer(t).URL},
		"bad thumbprint":       {"name": "x", "url": oidctest.New(t).URL, "thumbprints": []string{"not hex"}},
		"symmetric key (HMAC)": {"name": "x", "url": "https://closed.example.com", "jwks": map[string]any{"keys": []any{map[string]any{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0", "alg": "HS256"}}}},
	} {
		err := e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: body}, nil)
		if s := cliwire.Status(err); s != 400 && s != 409 {
			t.Errorf("%s: %v", name, err)
		}
	}

	// A pinned JWKS: no discovery at all (closed networks).
	closed := oidctest.New(t)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{closed.SigningKey().Public()}}
	closed.Server.Close()
	var pinned struct {
		ID   string
		JWKS json.RawMessage
	}
	e.must(e.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: map[string]any{"name": "closed", "url": closed.URL, "jwks": set, "maxExpiration": 3600}}, &pinned))
	if len(pinned.JWKS) == 0 {
		t.Fatal("the pinned JWKS is not shown")
	}
	var pol struct{ ID string }
	e.must(e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auth/policies/oidcissuers/" + pinned.ID}, &pol))
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + pol.ID, Body: map[string]any{"policies": []any{
		map[string]any{"decision": "allow", "tokenType": "team", "teamName": "dev-deployers", "rules": map[string]string{"sub": "repo:acme/infra:*"}},
	}}}, nil))
	r := w.exchange(t, exchangeParams(closed.Sign(closed.Claims(oidcAud, "acme/infra", "", e.clock.Now())), "team", "team:dev-deployers"), false)
	granted(t, r, "team", "team:dev-deployers", 3600)

	// Policy validation.
	for name, ps := range map[string][]any{
		"aud only":      {map[string]any{"decision": "allow", "tokenType": "team", "teamName": "dev-deployers", "rules": map[string]string{"aud": oidcAud}}},
		"no rules":      {map[string]any{"decision": "allow", "tokenType": "organization"}},
		"no such team":  {map[string]any{"decision": "allow", "tokenType": "team", "teamName": "ghosts", "rules": map[string]string{"sub": "x"}}},
		"no such user":  {map[string]any{"decision": "allow", "tokenType": "personal", "userLogin": "nobody", "rules": map[string]string{"sub": "x"}}},
		"custom role":   {map[string]any{"decision": "allow", "tokenType": "organization", "roleID": "r1", "rules": map[string]string{"sub": "x"}}},
		"runner":        {map[string]any{"decision": "allow", "tokenType": "runner", "runnerID": "r", "rules": map[string]string{"sub": "x"}}},
		"bad decision":  {map[string]any{"decision": "perhaps", "tokenType": "organization", "rules": map[string]string{"sub": "x"}}},
		"bad claim key": {map[string]any{"decision": "deny", "rules": map[string]string{`"open`: "x"}}},
	} {
		err := e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + w.policyID, Body: map[string]any{"policies": ps}}, nil)
		if ce, ok := err.(*cliwire.Error); !ok || ce.Status != 400 {
			t.Errorf("%s: %v", name, err)
		}
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/nope", Body: map[string]any{"policies": []any{}}}, nil), 404)

	// Rename, then an immutable URL.
	var renamed struct{ Name string }
	e.must(e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID, Body: map[string]any{"name": "GitHub Actions"}}, &renamed))
	if renamed.Name != "GitHub Actions" {
		t.Fatalf("rename = %+v", renamed)
	}
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID, Body: map[string]any{"url": "https://elsewhere.example.com"}}, nil), 400)

	// Only organization admins administer issuers.
	var bobTok string
	e.must(e.srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		bob, err := tx.GetUserByName("bob")
		if err != nil {
			return err
		}
		v, tk := mintTestToken(t, gatehouse.TokenPersonal)
		tk.Name, tk.UserID = "bob", bob.ID
		bobTok = v
		return tx.CreateToken(tk)
	}))
	bob := cliwire.New(e.url, bobTok)
	wantStatus(t, bob.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers"}, nil), 403)
	wantStatus(t, bob.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/oidc/issuers", Body: map[string]any{"name": "mine", "url": oidctest.New(t).URL}}, nil), 403)
	wantStatus(t, bob.Do(cliwire.Call{Method: "PATCH", Path: "/api/orgs/acme/auth/policies/" + w.policyID, Body: map[string]any{"policies": []any{}}}, nil), 403)
	// Nor does an OIDC-issued team token.
	teamTok := granted(t, w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false), "team", "team:production-deployers", 7200)
	wantStatus(t, cliwire.New(e.url, teamTok).Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID}, nil), 403)

	// Deleting the issuer stops its exchanges (and its policy goes with it).
	e.must(e.admin.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID}, nil))
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/oidc/issuers/" + w.issuerID}, nil), 404)
	wantStatus(t, e.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auth/policies/oidcissuers/" + w.issuerID}, nil), 404)
	refusedWith(t, "deleted issuer", w.exchange(t, exchangeParams(w.token("acme/infra", "production", nil), "team", "team:production-deployers"), false), 401, "invalid_request")

	// Issuer administration is audited.
	var evs []gatehouse.AuditEvent
	e.must(e.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		var err error
		evs, err = tx.ListAudit(gatehouse.AuditFilter{OrgID: w.orgID, Action: "org:oidc", Ascending: true, Limit: 1000})
		return err
	}))
	kinds := map[string]int{}
	for _, ev := range evs {
		kinds[ev.Outcome]++
	}
	if kinds[gatehouse.OutcomeSuccess] < 5 || kinds[gatehouse.OutcomeDenied] < 3 {
		t.Fatalf("org:oidc audit outcomes = %v", kinds)
	}
}

// mintTestToken makes a token the way the server does (for setting up subjects).
func mintTestToken(t *testing.T, kind gatehouse.TokenKind) (string, *gatehouse.Token) {
	t.Helper()
	v, err := token.New(token.Kind(kind))
	if err != nil {
		t.Fatal(err)
	}
	return v, &gatehouse.Token{ID: "test-" + string(kind) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36), Kind: kind, Digest: token.Digest(v)}
}

func privateJWKS(t *testing.T) any {
	k := oidctest.NewKey(t, "p", jose.ES256)
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k.Private, KeyID: "p", Algorithm: "ES256"}}}
}

func mismatchedIssuer(t *testing.T) *oidctest.Issuer {
	is := oidctest.New(t)
	is.ClaimIssuer("https://token.actions.githubusercontent.com")
	return is
}

// TestOIDCPulumiLogin runs `pulumi login --oidc-token` against the loopback issuer where a
// pulumi binary is on PATH.
func TestOIDCPulumiLogin(t *testing.T) {
	t.Parallel()
	bin, err := exec.LookPath("pulumi")
	if err != nil {
		t.Skip("no pulumi binary on PATH")
	}
	w := newOIDCWorld(t)
	home := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), "PULUMI_HOME="+home, "PULUMI_SKIP_UPDATE_CHECK=true", "PULUMI_ACCESS_TOKEN=", "PULUMI_BACKEND_URL=", "PULUMI_CONFIG_PASSPHRASE=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("pulumi %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	tok := w.token("acme/infra", "production", nil)
	run("login", w.e.url, "--oidc-token", tok, "--oidc-org", "acme", "--oidc-team", "production-deployers")
	if out := run("whoami", "-v"); !strings.Contains(out, "production-deployers") {
		t.Fatalf("pulumi whoami -v:\n%s", out)
	}
}
