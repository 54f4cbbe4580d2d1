package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/google/uuid"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/oidc"
	"github.com/gatehouse-dev/gatehouse/token"
)

// OIDC token exchange and the administration of OIDC issuers and their authorization
// policies. Paths and shapes are Pulumi Cloud's (docs: reference/cloud-rest-api/oidc-issuers
// and oauth-token-exchange; pulumi/pulumi-pulumiservice provider/pkg/pulumiapi/oidc_issuer.go;
// the CLI's client.ExchangeOidcToken and pulumi/auth-actions src/oauth2.ts). Gatehouse adds
// one field: a policy's maxExpiration (seconds), a cap on the tokens that policy issues.

// RFC 8693 and Pulumi's token exchange profile.
const (
	grantTokenExchange    = "urn:ietf:params:oauth:grant-type:token-exchange"
	subjectTypeIDToken    = "urn:ietf:params:oauth:token-type:id_token"
	pulumiTokenTypePrefix = "urn:pulumi:token-type:access_token:"
	pulumiAudiencePrefix  = "urn:pulumi:org:"

	// oidcExchangeAction is the audit action of a token exchange. The "auth" prefix makes a
	// refused exchange an authentication failure in the Pulumi-compatible audit formats.
	oidcExchangeAction = "auth:oidc-exchange"
	// maxExchangeBody bounds the token endpoint's request body (an ID token is a few KiB).
	maxExchangeBody = 64 << 10
	// maxOIDCIssuers bounds the issuers of one organization.
	maxOIDCIssuers = 100
	// oidcRefusedDescription is the one description of every refused exchange: the caller
	// learns neither whether the organization exists, nor whether it trusts the issuer, nor
	// which check failed. The organization's audit log has the reason.
	oidcRefusedDescription = "the subject token was not accepted for this audience and requested token; the organization's audit log records why"
)

// oidcAPI holds what the OIDC routes share: the issuers' cached signing keys. It lives as
// long as its Server.
type oidcAPI struct {
	s         *Server
	keys      *oidc.KeyCache
	validator *oidc.Validator
	// lastPrune is when this process last pruned expired replay records (Unix ns).
	lastPrune atomic.Int64
}

// replayPruneEvery is how often a process prunes the records of exchanged ID tokens.
const replayPruneEvery = time.Minute

// pruneReplays deletes expired records of exchanged ID tokens, at most once per
// replayPruneEvery per process (best effort: a failure only delays it).
func (o *oidcAPI) pruneReplays(rq *Request) {
	now, last := o.s.cfg.Now().UnixNano(), o.lastPrune.Load()
	if now-last < int64(replayPruneEvery) || !o.lastPrune.CompareAndSwap(last, now) {
		return
	}
	err := o.s.store.Update(context.WithoutCancel(rq.Context()), func(tx gatehouse.Tx) error {
		_, err := tx.PruneConsumedOIDCTokens()
		return err
	})
	if err != nil {
		o.s.log.Warn("OIDC: cannot prune the records of exchanged ID tokens", "request_id", rq.ID, "err", err)
	}
}

// registerOIDCRoutes declares the token endpoint and the OIDC administration routes.
func (s *Server) registerOIDCRoutes() {
	client := s.cfg.IssuerClient
	if client == nil {
		client = oidc.NewHTTPClient(netguard.Options{AllowPrivate: s.cfg.AllowPrivateIssuers})
	}
	keys := oidc.NewKeyCache(client, s.cfg.Now)
	o := &oidcAPI{s: s, keys: keys, validator: &oidc.Validator{Keys: keys, Now: s.cfg.Now}}
	get, post, patch, del := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete

	// The subject token is the credential: the route is public to the request path, and the
	// handler authenticates and authorizes (oidc.Validator, oidc.Evaluate).
	s.handle(post, "/api/oauth/token", authz.Public, o.exchange)

	s.handle(get, "/api/orgs/{org}/oidc/issuers", authz.OrgOIDCRead, o.listIssuers)
	s.handle(post, "/api/orgs/{org}/oidc/issuers", authz.OrgOIDC, o.registerIssuer)
	s.handle(get, "/api/orgs/{org}/oidc/issuers/{issuerId}", authz.OrgOIDCRead, o.getIssuer)
	s.handle(patch, "/api/orgs/{org}/oidc/issuers/{issuerId}", authz.OrgOIDC, o.updateIssuer)
	s.handle(del, "/api/orgs/{org}/oidc/issuers/{issuerId}", authz.OrgOIDC, o.deleteIssuer)
	s.handle(get, "/api/orgs/{org}/auth/policies/oidcissuers/{issuerId}", authz.OrgOIDCRead, o.getAuthPolicy)
	s.handle(patch, "/api/orgs/{org}/auth/policies/{policyId}", authz.OrgOIDC, o.updateAuthPolicy)
}

// --- issuers ---

// OIDCIssuer is an OIDC issuer on the wire: Pulumi Cloud's OidcIssuerRegistrationResponse
// (also what the admin CLI decodes).
type OIDCIssuer struct {
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	URL           string          `json:"url"`
	Issuer        string          `json:"issuer"`
	Thumbprints   []string        `json:"thumbprints"`
	JWKS          json.RawMessage `json:"jwks,omitempty"`
	MaxExpiration int64           `json:"maxExpiration"`
	Created       string          `json:"created"`
	Modified      string          `json:"modified"`
	LastUsed      string          `json:"lastUsed,omitempty"`
}

func isoTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func oidcIssuerOf(is *gatehouse.OIDCIssuer) OIDCIssuer {
	th := is.Thumbprints
	if th == nil {
		th = []string{}
	}
	return OIDCIssuer{
		ID: is.ID, Name: is.Name, URL: is.URL, Issuer: is.URL, Thumbprints: th, JWKS: json.RawMessage(is.JWKS),
		MaxExpiration: int64(is.MaxExpiration / time.Second),
		Created:       isoTime(is.Created), Modified: isoTime(is.Modified), LastUsed: isoTime(is.LastUsed),
	}
}

// oidcIssuerReq is the body of POST (OidcIssuerRegistrationRequest) and PATCH
// (OidcIssuerUpdateRequest). jwks: absent keeps, null removes (back to discovery).
type oidcIssuerReq struct {
	Name          *string         `json:"name"`
	URL           *string         `json:"url"`
	Thumbprints   *[]string       `json:"thumbprints"`
	MaxExpiration *int64          `json:"maxExpiration"`
	JWKS          json.RawMessage `json:"jwks"`
}

func checkIssuerName(name string) (string, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "an issuer needs a name of 1 to 100 characters")
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return "", gatehouse.Errorf(gatehouse.EINVALID, "the issuer name contains a control character")
		}
	}
	return name, nil
}

func checkThumbprints(th []string) ([]string, error) {
	if len(th) > 20 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "too many thumbprints")
	}
	out := make([]string, 0, len(th))
	for _, t := range th {
		t = strings.TrimSpace(t)
		ok := t != "" && len(t) <= 128
		for _, r := range t {
			if !strings.ContainsRune("0123456789abcdefABCDEF:", r) {
				ok = false
			}
		}
		if !ok {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid thumbprint %q: want a hexadecimal certificate hash", t)
		}
		out = append(out, t)
	}
	return out, nil
}

func checkMaxExpiration(secs int64) (time.Duration, error) {
	if secs < int64(oidc.MinExpiration/time.Second) || secs > int64(oidc.MaxExpiration/time.Second) {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "maxExpiration must be between %d and %d seconds", int64(oidc.MinExpiration/time.Second), int64(oidc.MaxExpiration/time.Second))
	}
	return time.Duration(secs) * time.Second, nil
}

// pinnedJWKS checks a JWKS an administrator pins and returns it compacted.
func pinnedJWKS(raw json.RawMessage) ([]byte, error) {
	if _, err := oidc.ParseJWKS(raw, true); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%v", err)
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid JWKS: %v", err)
	}
	return buf.Bytes(), nil
}

// checkDiscovery fetches the issuer's configuration and keys now, so that an issuer that
// cannot work is refused at registration rather than at its first exchange. The caller
// learns only which step failed, in words that are the same for every address that cannot
// be reached or may not be fetched (an open port, a closed one, a refused private address):
// the details go to the server log and the audit record.
func (o *oidcAPI) checkDiscovery(rq *Request, issuerURL string) error {
	if _, err := oidc.Discover(rq.Context(), o.keys.Client(), issuerURL); err != nil {
		var fe *oidc.FetchError
		if !errors.As(err, &fe) {
			return err // an invalid URL: the caller's own input
		}
		rq.Detail("discovery_error", clipN(err.Error(), 1024))
		o.s.log.Warn("OIDC issuer discovery failed", "org", rq.Org.Name, "issuer_url", clip(issuerURL), "request_id", rq.ID, "err", err)
		return gatehouse.Errorf(gatehouse.EINVALID, "cannot use the issuer's signing keys: %s (pin a JWKS with \"jwks\" where the issuer cannot be reached)", fe.Public)
	}
	return nil
}

func (o *oidcAPI) listIssuers(rq *Request) (any, error) {
	var list []gatehouse.OIDCIssuer
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		list, err = tx.ListOIDCIssuers(rq.Org.ID)
		return err
	}); err != nil {
		return nil, err
	}
	out := make([]OIDCIssuer, 0, len(list))
	for i := range list {
		out = append(out, oidcIssuerOf(&list[i]))
	}
	return struct {
		OIDCIssuers []OIDCIssuer `json:"oidcIssuers"`
	}{out}, nil
}

func (o *oidcAPI) registerIssuer(rq *Request) (any, error) {
	var req oidcIssuerReq
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	is := &gatehouse.OIDCIssuer{OrgID: rq.Org.ID, MaxExpiration: oidc.DefaultMaxExpiration}
	var err error
	if req.Name == nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "an issuer needs a name")
	}
	if is.Name, err = checkIssuerName(*req.Name); err != nil {
		return nil, err
	}
	if req.URL == nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "an issuer needs its url (the iss of its tokens)")
	}
	is.URL = strings.TrimSpace(*req.URL)
	if err := oidc.CheckIssuerURL(is.URL); err != nil {
		return nil, err
	}
	if req.Thumbprints != nil {
		if is.Thumbprints, err = checkThumbprints(*req.Thumbprints); err != nil {
			return nil, err
		}
	}
	if req.MaxExpiration != nil {
		if is.MaxExpiration, err = checkMaxExpiration(*req.MaxExpiration); err != nil {
			return nil, err
		}
	}
	if len(req.JWKS) > 0 && string(req.JWKS) != "null" {
		if is.JWKS, err = pinnedJWKS(req.JWKS); err != nil {
			return nil, err
		}
	} else if err := o.checkDiscovery(rq, is.URL); err != nil {
		return nil, err
	}
	rq.event.Target = rq.Org.Name + "/oidc/issuers/" + is.Name
	rq.Detail("issuer_url", is.URL)
	rq.Detail("keys", keySource(is))
	err = rq.Change(func(tx gatehouse.Tx) error {
		n, err := tx.ListOIDCIssuers(rq.Org.ID)
		if err != nil {
			return err
		}
		if len(n) >= maxOIDCIssuers {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "the organization has %d OIDC issuers, the most it may have", len(n))
		}
		is.ID = uuid.NewString()
		rq.Detail("issuer_id", is.ID)
		return tx.CreateOIDCIssuer(is)
	})
	if err != nil {
		return nil, err
	}
	return oidcIssuerOf(is), nil
}

func keySource(is *gatehouse.OIDCIssuer) string {
	if len(is.JWKS) > 0 {
		return "pinned JWKS"
	}
	return "discovery"
}

// issuerOf loads the issuer named in the path (404 when the organization has no such issuer).
func issuerOf(rq *Request, tx gatehouse.Tx) (*gatehouse.OIDCIssuer, error) {
	is, err := tx.GetOIDCIssuer(rq.Org.ID, rq.PathValue("issuerId"))
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "OIDC issuer '%s' not found", rq.PathValue("issuerId"))
		}
		return nil, err
	}
	return is, nil
}

func (o *oidcAPI) getIssuer(rq *Request) (any, error) {
	var is *gatehouse.OIDCIssuer
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		is, err = issuerOf(rq, tx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return oidcIssuerOf(is), nil
}

func (o *oidcAPI) updateIssuer(rq *Request) (any, error) {
	var req oidcIssuerReq
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	var cur *gatehouse.OIDCIssuer
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		cur, err = issuerOf(rq, tx)
		return err
	}); err != nil {
		return nil, err
	}
	if req.URL != nil && strings.TrimSpace(*req.URL) != cur.URL {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "the url of an issuer cannot change; register a new issuer")
	}
	next := *cur
	var err error
	if req.Name != nil {
		if next.Name, err = checkIssuerName(*req.Name); err != nil {
			return nil, err
		}
	}
	if req.Thumbprints != nil {
		if next.Thumbprints, err = checkThumbprints(*req.Thumbprints); err != nil {
			return nil, err
		}
	}
	if req.MaxExpiration != nil {
		if next.MaxExpiration, err = checkMaxExpiration(*req.MaxExpiration); err != nil {
			return nil, err
		}
	}
	switch {
	case len(req.JWKS) == 0:
	case string(req.JWKS) == "null":
		if err := o.checkDiscovery(rq, next.URL); err != nil {
			return nil, err
		}
		next.JWKS = nil
	default:
		if next.JWKS, err = pinnedJWKS(req.JWKS); err != nil {
			return nil, err
		}
	}
	rq.event.Target = rq.Org.Name + "/oidc/issuers/" + cur.Name
	rq.Detail("issuer_id", cur.ID)
	if next.Name != cur.Name {
		rq.Detail("name", next.Name)
	}
	if next.MaxExpiration != cur.MaxExpiration {
		rq.Detail("max_expiration", strconv.FormatInt(int64(next.MaxExpiration/time.Second), 10))
	}
	if !bytes.Equal(next.JWKS, cur.JWKS) {
		rq.Detail("keys", keySource(&next))
	}
	err = rq.Change(func(tx gatehouse.Tx) error {
		n := next
		if err := tx.UpdateOIDCIssuer(&n); err != nil {
			return err
		}
		next = n
		return nil
	})
	if err != nil {
		return nil, err
	}
	o.keys.Forget(cur)
	return oidcIssuerOf(&next), nil
}

func (o *oidcAPI) deleteIssuer(rq *Request) (any, error) {
	var gone *gatehouse.OIDCIssuer
	err := rq.Change(func(tx gatehouse.Tx) error {
		is, err := issuerOf(rq, tx)
		if err != nil {
			return err
		}
		rq.event.Target = rq.Org.Name + "/oidc/issuers/" + is.Name
		rq.Detail("issuer_id", is.ID)
		rq.Detail("issuer_url", is.URL)
		gone = is
		return tx.DeleteOIDCIssuer(rq.Org.ID, is.ID)
	})
	if err != nil {
		return nil, err
	}
	o.keys.Forget(gone)
	return noContent{}, nil
}

// --- authorization policies ---

// oidcPolicyJSON is Pulumi Cloud's AuthPolicyDefinition, plus maxExpiration (Gatehouse).
type oidcPolicyJSON struct {
	Decision              string            `json:"decision"`
	TokenType             string            `json:"tokenType"`
	TeamName              string            `json:"teamName,omitempty"`
	UserLogin             string            `json:"userLogin,omitempty"`
	RunnerID              string            `json:"runnerID,omitempty"`
	AuthorizedPermissions []string          `json:"authorizedPermissions"`
	RoleID                string            `json:"roleID,omitempty"`
	Rules                 map[string]string `json:"rules"`
	MaxExpiration         int64             `json:"maxExpiration,omitempty"`
}

// oidcAuthPolicyJSON is Pulumi Cloud's AuthPolicy.
type oidcAuthPolicyJSON struct {
	ID       string           `json:"id"`
	Version  int              `json:"version"`
	Created  string           `json:"created,omitempty"`
	Modified string           `json:"modified,omitempty"`
	Policies []oidcPolicyJSON `json:"policies"`
}

func oidcAuthPolicyOf(p *gatehouse.OIDCAuthPolicy) oidcAuthPolicyJSON {
	out := oidcAuthPolicyJSON{ID: p.ID, Version: p.Version, Created: isoTime(p.Created), Modified: isoTime(p.Modified), Policies: []oidcPolicyJSON{}}
	for _, pol := range p.Policies {
		perms, rules := pol.AuthorizedPermissions, pol.Rules
		if perms == nil {
			perms = []string{}
		}
		if rules == nil {
			rules = map[string]string{}
		}
		out.Policies = append(out.Policies, oidcPolicyJSON{
			Decision: pol.Decision, TokenType: pol.TokenType, TeamName: pol.TeamName, UserLogin: pol.UserLogin,
			AuthorizedPermissions: perms, Rules: rules, MaxExpiration: int64(pol.MaxExpiration / time.Second),
		})
	}
	return out
}

func (o *oidcAPI) getAuthPolicy(rq *Request) (any, error) {
	var p *gatehouse.OIDCAuthPolicy
	err := rq.View(func(tx gatehouse.Tx) error {
		is, err := issuerOf(rq, tx)
		if err != nil {
			return err
		}
		p, err = tx.GetOIDCAuthPolicy(rq.Org.ID, is.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return oidcAuthPolicyOf(p), nil
}

func (o *oidcAPI) updateAuthPolicy(rq *Request) (any, error) {
	var req struct {
		Policies []oidcPolicyJSON `json:"policies"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.Policies == nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "the body needs \"policies\" (an empty list denies every exchange)")
	}
	pols := make([]gatehouse.OIDCPolicy, len(req.Policies))
	for i, p := range req.Policies {
		if p.RunnerID != "" {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: runner tokens are not supported by Gatehouse", i)
		}
		if p.RoleID != "" {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: custom roles (roleID) are not supported; organization tokens get the member role, or admin with authorizedPermissions [\"admin\"]", i)
		}
		if p.MaxExpiration < 0 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: maxExpiration must not be negative", i)
		}
		pols[i] = gatehouse.OIDCPolicy{
			Decision: p.Decision, TokenType: p.TokenType, TeamName: p.TeamName, UserLogin: p.UserLogin,
			AuthorizedPermissions: p.AuthorizedPermissions, Rules: p.Rules,
			MaxExpiration: time.Duration(min(p.MaxExpiration, 1<<31)) * time.Second,
		}
	}
	if err := oidc.NormalizePolicies(pols); err != nil {
		return nil, err
	}
	var p *gatehouse.OIDCAuthPolicy
	err := rq.Change(func(tx gatehouse.Tx) error {
		cur, err := tx.GetOIDCAuthPolicyByID(rq.Org.ID, rq.PathValue("policyId"))
		if err != nil {
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "authorization policy '%s' not found", rq.PathValue("policyId"))
			}
			return err
		}
		// The teams and users the policies name must exist (they are checked again at every
		// exchange: a team deleted later stops the policy from issuing anything).
		for i, pol := range pols {
			if pol.TeamName != "" {
				if _, err := tx.GetTeamByName(rq.Org.ID, pol.TeamName); err != nil {
					if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
						return gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: team '%s' does not exist in %s", i, pol.TeamName, rq.Org.Name)
					}
					return err
				}
			}
			if pol.UserLogin != "" {
				if _, err := oidcPersonalTarget(tx, rq.Org, pol.UserLogin); err != nil {
					var r *oidcRefusal
					if errors.As(err, &r) {
						return gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: %s", i, r.reason)
					}
					return err
				}
			}
		}
		is, err := tx.GetOIDCIssuer(rq.Org.ID, cur.IssuerID)
		if err != nil {
			return err
		}
		rq.event.Target = rq.Org.Name + "/oidc/issuers/" + is.Name
		rq.Detail("issuer_id", is.ID)
		rq.Detail("policy_id", cur.ID)
		rq.Detail("policies", strconv.Itoa(len(pols)))
		cur.Policies = pols
		if err := tx.PutOIDCAuthPolicy(cur); err != nil {
			return err
		}
		rq.Detail("version", strconv.Itoa(cur.Version))
		p = cur
		return nil
	})
	if err != nil {
		return nil, err
	}
	return oidcAuthPolicyOf(p), nil
}

// --- token exchange ---

// exchangeRequest is an RFC 8693 token exchange request as the CLI (form) and
// pulumi/auth-actions (JSON) send it.
type exchangeRequest struct {
	GrantType          string
	Audience           string
	Scope              string
	RequestedTokenType string
	SubjectToken       string
	SubjectTokenType   string
	ActorToken         string
	Expiration         int64 // seconds; 0: the default
}

// oidcRefusal is an exchange that is answered with an OAuth error body (RFC 6749 §5.2).
type oidcRefusal struct {
	status  int
	code    string // error
	desc    string // error_description: what the caller may learn
	reason  string // what the audit log records
	outcome string
}

func (e *oidcRefusal) Error() string { return e.reason }

// badRequest is a malformed request: the caller may learn exactly what is wrong.
func badRequest(code, desc string) *oidcRefusal {
	return &oidcRefusal{status: http.StatusBadRequest, code: code, desc: desc, reason: desc, outcome: gatehouse.OutcomeFailure}
}

// refused is a well-formed request that is not granted: the caller learns nothing more
// than that (see oidcRefusedDescription); the reason goes to the audit log.
func refused(outcome, format string, args ...any) *oidcRefusal {
	return &oidcRefusal{status: http.StatusUnauthorized, code: "invalid_request", desc: oidcRefusedDescription,
		reason: fmt.Sprintf(format, args...), outcome: outcome}
}

// refuse records a refused exchange in the audit log (with the details gathered so far)
// and answers it with an OAuth error body, which the server writes as is.
func (o *oidcAPI) refuse(rq *Request, r *oidcRefusal) (any, error) {
	rq.fail(r.outcome, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "%s", r.reason))
	rq.audited = true // recorded: the request path must not record a success
	rq.status = r.status
	h := rq.ResponseHeader()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	b, _ := json.Marshal(struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}{r.code, r.desc})
	return rawJSON(b), nil
}

// parseExchange reads the request: form-encoded (the CLI) or JSON (pulumi/auth-actions).
func parseExchange(rq *Request) (*exchangeRequest, *oidcRefusal) {
	if enc := strings.ToLower(rq.Header.Get("Content-Encoding")); enc != "" && enc != "identity" {
		return nil, badRequest("invalid_request", "compressed request bodies are not accepted")
	}
	body, err := io.ReadAll(http.MaxBytesReader(rq.w, rq.Body, maxExchangeBody))
	if err != nil {
		return nil, badRequest("invalid_request", "the request body is too large or unreadable")
	}
	ct, _, _ := mime.ParseMediaType(rq.Header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	isJSON := ct == "application/json" || (ct == "" && len(trimmed) > 0 && trimmed[0] == '{')
	if !isJSON && ct != "" && ct != "application/x-www-form-urlencoded" {
		return nil, badRequest("invalid_request", "send the request as application/x-www-form-urlencoded or application/json")
	}
	var req exchangeRequest
	fields := map[string]*string{
		"grant_type": &req.GrantType, "audience": &req.Audience, "scope": &req.Scope,
		"requested_token_type": &req.RequestedTokenType, "subject_token": &req.SubjectToken,
		"subject_token_type": &req.SubjectTokenType, "actor_token": &req.ActorToken,
	}
	var expiration string
	if isJSON {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(trimmed, &m); err != nil || m == nil {
			return nil, badRequest("invalid_request", "the body is not a JSON object")
		}
		for name, dst := range fields {
			raw, ok := m[name]
			if !ok || string(raw) == "null" {
				continue
			}
			if err := json.Unmarshal(raw, dst); err != nil {
				return nil, badRequest("invalid_request", name+" must be a string")
			}
		}
		if raw, ok := m["expiration"]; ok && string(raw) != "null" {
			var n json.Number
			if json.Unmarshal(raw, &n) == nil {
				expiration = n.String()
			} else if json.Unmarshal(raw, &expiration) != nil {
				return nil, badRequest("invalid_request", "expiration must be a number of seconds")
			}
		}
	} else {
		vals, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, badRequest("invalid_request", "the body is not valid form encoding")
		}
		for name, vs := range vals {
			if len(vs) > 1 {
				return nil, badRequest("invalid_request", "parameter "+name+" is given more than once")
			}
		}
		for name, dst := range fields {
			*dst = vals.Get(name)
		}
		expiration = vals.Get("expiration")
	}
	if expiration = strings.TrimSpace(expiration); expiration != "" {
		n, err := strconv.ParseInt(expiration, 10, 64)
		if err != nil || n < 0 {
			return nil, badRequest("invalid_request", "expiration must be a whole, non-negative number of seconds")
		}
		req.Expiration = min(n, int64(oidc.MaxExpiration/time.Second)*100) // bounded before it becomes a duration
	}
	return &req, nil
}

// exchangeTarget checks the request's parameters and returns the organization name and what
// is asked for.
func exchangeTarget(req *exchangeRequest) (string, oidc.Target, *oidcRefusal) {
	var t oidc.Target
	switch req.GrantType {
	case grantTokenExchange:
	case "":
		return "", t, badRequest("invalid_request", "grant_type is required")
	default:
		return "", t, badRequest("unsupported_grant_type", "only grant_type "+grantTokenExchange+" is supported")
	}
	if req.SubjectToken == "" {
		return "", t, badRequest("invalid_request", "subject_token is required")
	}
	if len(req.SubjectToken) > oidc.MaxTokenLen {
		return "", t, badRequest("invalid_request", "subject_token is too large")
	}
	if req.SubjectTokenType != subjectTypeIDToken {
		return "", t, badRequest("invalid_request", "subject_token_type must be "+subjectTypeIDToken)
	}
	if req.ActorToken != "" {
		return "", t, badRequest("invalid_request", "actor tokens are not supported")
	}
	if req.Audience == "" {
		return "", t, badRequest("invalid_request", "audience is required: "+pulumiAudiencePrefix+"<organization>")
	}
	org, ok := strings.CutPrefix(req.Audience, pulumiAudiencePrefix)
	if !ok || org == "" || len(org) > 100 {
		return "", t, badRequest("invalid_target", "the audience must be "+pulumiAudiencePrefix+"<organization>")
	}
	typ := req.RequestedTokenType
	if typ == "" { // the server's choice (RFC 8693): the CLI's own inference from the scope
		switch {
		case strings.HasPrefix(req.Scope, "team:"):
			typ = pulumiTokenTypePrefix + gatehouse.OIDCTokenTeam
		case strings.HasPrefix(req.Scope, "user:"):
			typ = pulumiTokenTypePrefix + gatehouse.OIDCTokenPersonal
		default:
			typ = pulumiTokenTypePrefix + gatehouse.OIDCTokenOrganization
		}
	}
	kind, ok := strings.CutPrefix(typ, pulumiTokenTypePrefix)
	if !ok {
		return "", t, badRequest("invalid_request", "requested_token_type must be "+pulumiTokenTypePrefix+"organization, team or personal")
	}
	t.TokenType = kind
	switch kind {
	case gatehouse.OIDCTokenOrganization:
		switch req.Scope {
		case "":
		case "admin":
			t.Admin = true
		default:
			return "", t, badRequest("invalid_scope", "an organization token's scope is empty or \"admin\"")
		}
	case gatehouse.OIDCTokenTeam:
		name, ok := strings.CutPrefix(req.Scope, "team:")
		if !ok || name == "" {
			return "", t, badRequest("invalid_scope", "a team token needs the scope team:<team>")
		}
		t.Team = name
	case gatehouse.OIDCTokenPersonal:
		name, ok := strings.CutPrefix(req.Scope, "user:")
		if !ok || name == "" {
			return "", t, badRequest("invalid_scope", "a personal token needs the scope user:<login>")
		}
		t.User = name
	case "runner":
		return "", t, badRequest("invalid_request", "runner tokens are not supported")
	default:
		return "", t, badRequest("invalid_request", "requested_token_type must be "+pulumiTokenTypePrefix+"organization, team or personal")
	}
	return org, t, nil
}

// exchangeClaims are the claims an exchange records in the audit log: who the workload is
// and what it ran. The ID token itself is never recorded.
var exchangeClaims = []string{"sub", "aud", "repository", "repository_id", "ref", "environment", "job_workflow_ref", "jti"}

func clip(s string) string { return clipN(s, 256) }

func clipN(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// exchange is POST /api/oauth/token: an OIDC ID token for a short-lived Gatehouse token.
func (o *oidcAPI) exchange(rq *Request) (any, error) {
	rq.event.Action = oidcExchangeAction
	req, bad := parseExchange(rq)
	if bad != nil {
		return o.refuse(rq, bad)
	}
	orgName, target, bad := exchangeTarget(req)
	if bad != nil {
		return o.refuse(rq, bad)
	}
	rq.event.Target = orgName
	rq.Detail("requested_token_type", pulumiTokenTypePrefix+target.TokenType)
	rq.Detail("scope", clip(req.Scope))
	if req.Expiration > 0 {
		rq.Detail("expiration", strconv.FormatInt(req.Expiration, 10))
	}

	var org *gatehouse.Org
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		org, err = tx.GetOrgByName(orgName)
		return err
	})
	if err != nil {
		if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, err
		}
		return o.refuse(rq, refused(gatehouse.OutcomeFailure, "organization %q does not exist", orgName))
	}
	rq.event.OrgID, rq.event.OrgName, rq.event.Target = org.ID, org.Name, org.Name
	iss, unverifiedSub, err := oidc.Peek(req.SubjectToken)
	if err != nil {
		return o.refuse(rq, refused(gatehouse.OutcomeFailure, "%v", err))
	}
	// Until the signature is verified these are claims anyone could have written: they are
	// recorded under names that say so, and replaced by the verified claims below.
	rq.Detail("unverified.iss", clip(iss))
	if unverifiedSub != "" {
		rq.Detail("unverified.sub", clip(unverifiedSub))
	}
	var issuer *gatehouse.OIDCIssuer
	err = rq.View(func(tx gatehouse.Tx) error {
		var err error
		issuer, err = tx.GetOIDCIssuerByURL(org.ID, iss)
		return err
	})
	if err != nil {
		if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, err
		}
		return o.refuse(rq, refused(gatehouse.OutcomeFailure, "organization %s trusts no OIDC issuer %q", org.Name, iss))
	}
	rq.Detail("issuer", issuer.Name)
	rq.Detail("issuer_id", issuer.ID)

	claims, err := o.validator.Validate(rq.Context(), req.SubjectToken, issuer, req.Audience)
	if err != nil {
		if cerr := rq.Context().Err(); cerr != nil {
			return nil, cerr // the caller went away: not a bad token
		}
		return o.refuse(rq, refused(gatehouse.OutcomeFailure, "invalid ID token from issuer %s: %v", issuer.Name, err))
	}
	delete(rq.event.Details, "unverified.iss")
	delete(rq.event.Details, "unverified.sub")
	for _, name := range exchangeClaims {
		if v := claims.String(name); v != "" {
			rq.Detail("claim."+name, clip(v))
		}
	}
	rq.event.ActorKind, rq.event.ActorName = "oidc", clip(claims.String("sub"))

	value, tk, err := newOIDCToken(target.TokenType)
	if err != nil {
		return nil, err
	}
	var lifetime time.Duration
	var scope string
	var refusal *oidcRefusal
	replayKey, replayUntil := oidc.ReplayKey(claims, req.SubjectToken), oidc.ReplayUntil(claims)
	err = rq.Change(func(tx gatehouse.Tx) error {
		refusal = nil
		// An ID token is exchanged once: the record commits with the issued token (and goes
		// with it if anything below refuses), and the table's key decides between
		// concurrent exchanges of one token, in any number of processes.
		fresh, err := tx.ConsumeOIDCToken(org.ID, replayKey, replayUntil)
		if err != nil {
			return err
		}
		if !fresh {
			what := "jti " + strconv.Quote(clip(claims.String("jti")))
			if claims.String("jti") == "" {
				what = "no jti; the same signed token"
			}
			refusal = refused(gatehouse.OutcomeFailure, "replay: this ID token (%s) was already exchanged; an ID token is exchanged once", what)
			return refusal
		}
		ap, err := tx.GetOIDCAuthPolicy(org.ID, issuer.ID)
		if err != nil {
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				refusal = refused(gatehouse.OutcomeDenied, "issuer %s was removed", issuer.Name)
				return refusal
			}
			return err
		}
		d := oidc.Evaluate(ap.Policies, claims, target)
		rq.Detail("decision", d.Reason)
		rq.Detail("policy_version", strconv.Itoa(ap.Version))
		if d.Index >= 0 {
			rq.Detail("policy", "policies["+strconv.Itoa(d.Index)+"]")
		} else {
			delete(rq.event.Details, "policy")
		}
		if !d.Allow {
			refusal = refused(gatehouse.OutcomeDenied, "%s", d.Reason)
			return refusal
		}
		lifetime = oidc.Lifetime(time.Duration(req.Expiration)*time.Second, issuer.MaxExpiration, d.Policy.MaxExpiration)
		now := tx.Now()
		tk.Name = "oidc:" + issuer.Name + ":" + randomSuffix()
		tk.Description = clip("issued by OIDC token exchange for " + claims.String("sub"))
		tk.CreatedBy = "oidc:" + issuer.Name
		tk.Issuer = issuer.Name // never rotated (see rotateToken)
		tk.Pipeline = true
		tk.Created = now
		tk.Expires = now.Add(lifetime)
		switch target.TokenType {
		case gatehouse.OIDCTokenOrganization:
			tk.OrgID, tk.Role = org.ID, gatehouse.RoleMember
			if target.Admin {
				tk.Role = gatehouse.RoleAdmin
				scope = "admin"
			}
		case gatehouse.OIDCTokenTeam:
			team, err := tx.GetTeamByName(org.ID, target.Team)
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					refusal = refused(gatehouse.OutcomeDenied, "team %q does not exist in %s", target.Team, org.Name)
					return refusal
				}
				return err
			}
			tk.OrgID, tk.TeamID = org.ID, team.ID
			scope = "team:" + team.Name
		case gatehouse.OIDCTokenPersonal:
			u, err := oidcPersonalTarget(tx, org, target.User)
			if err != nil {
				errors.As(err, &refusal)
				return err
			}
			// OrgID binds the token to the organization that issued it: it acts as its user
			// in this organization only, whatever others the user belongs to (authz BoundOrg).
			tk.UserID, tk.OrgID = u.ID, org.ID
			scope = "user:" + u.Name
		}
		if err := tx.CreateToken(tk); err != nil {
			return err
		}
		if err := tx.TouchOIDCIssuer(issuer.ID, now); err != nil {
			return err
		}
		rq.event.TokenID = tk.ID
		rq.Detail("token_id", tk.ID)
		rq.Detail("token_name", tk.Name)
		rq.Detail("expires", tk.Expires.UTC().Format(time.RFC3339))
		return nil
	})
	if refusal != nil {
		return o.refuse(rq, refusal)
	}
	if err != nil {
		return nil, err
	}
	o.pruneReplays(rq)
	h := rq.ResponseHeader()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	return struct {
		AccessToken     string `json:"access_token"`
		IssuedTokenType string `json:"issued_token_type"`
		TokenType       string `json:"token_type"`
		ExpiresIn       int64  `json:"expires_in"`
		Scope           string `json:"scope"`
	}{value, pulumiTokenTypePrefix + target.TokenType, "token", int64(lifetime / time.Second), scope}, nil
}

// oidcPersonalTarget finds the user a personal token may be issued for. Personal tokens act
// as their user in every organization the user belongs to, so an organization's issuer may
// only mint them for users who belong to that organization alone and are not site
// administrators: otherwise an administrator of one organization could, through its own
// issuer and policy, act as a user in another organization.
func oidcPersonalTarget(tx gatehouse.Tx, org *gatehouse.Org, login string) (*gatehouse.User, error) {
	u, _, err := memberByName(tx, org, login)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, refused(gatehouse.OutcomeDenied, "%s", gatehouse.ErrorMessage(err))
		}
		return nil, err
	}
	if u.SiteAdmin {
		return nil, refused(gatehouse.OutcomeDenied, "user %s is a site administrator; personal tokens for site administrators are never issued by OIDC exchange", u.Name)
	}
	return u, nil
}

// newOIDCToken makes the value and metadata of an access token for an exchange.
func newOIDCToken(tokenType string) (string, *gatehouse.Token, error) {
	kind := map[string]gatehouse.TokenKind{
		gatehouse.OIDCTokenOrganization: gatehouse.TokenOrg,
		gatehouse.OIDCTokenTeam:         gatehouse.TokenTeam,
		gatehouse.OIDCTokenPersonal:     gatehouse.TokenPersonal,
	}[tokenType]
	v, err := token.New(token.Kind(kind))
	if err != nil {
		return "", nil, err
	}
	return v, &gatehouse.Token{ID: uuid.NewString(), Kind: kind, Digest: token.Digest(v)}, nil
}

// randomSuffix makes issued token names unique (names are never reused in their scope).
func randomSuffix() string { return strings.ReplaceAll(uuid.NewString(), "-", "")[:12] }
