package httpapi

// Leak response. A leaked token is named by its value, and holding the value is the proof
// of the right to ask about it and to kill it (as with GitHub's credential revocation API):
//
//	POST /api/tokens/status          is each token live? (any authenticated caller)
//	POST /api/tokens/revoke          revoke each live token (any authenticated caller)
//	POST /api/secret-scanning/github GitHub's secret scanning partner program: verify the
//	                                 delivery's signature, revoke and record each reported
//	                                 token, answer true/false-positive labels
//
// Token values never reach a log or an audit record: records name tokens by ID, and the
// answers repeat a value only in redacted form (the partner endpoint answers token_raw, as
// GitHub's format asks, to GitHub, which sent it).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
	"github.com/gatehouse-dev/gatehouse/token"
)

const (
	// maxLeakTokens is how many token values one status or revoke call may name.
	maxLeakTokens = 100
	// maxLeakBody bounds the (raw) body of a status or revoke call.
	maxLeakBody = 64 << 10
	// maxScanningBody bounds a secret-scanning delivery.
	maxScanningBody = 1 << 20

	// Audit actions of the partner endpoint: one event per delivery, one per reported token
	// that Gatehouse issued.
	actionScanDelivery = "secret-scanning:delivery"
	actionLeakReported = "token:leak-reported"

	labelTruePositive  = "true_positive"
	labelFalsePositive = "false_positive"
)

// SecretScanningKey is a public key that GitHub signs secret-scanning deliveries with
// (ECDSA P-256 with SHA-256; see ParseSecretScanningKeys).
type SecretScanningKey struct {
	KeyID string
	Key   *ecdsa.PublicKey
}

// ParseSecretScanningKeys parses GitHub's secret-scanning public keys document, as served
// by https://api.github.com/meta/public_keys/secret_scanning:
//
//	{"public_keys":[{"key_identifier":"...","key":"-----BEGIN PUBLIC KEY-----\n...","is_current":true}]}
//
// Every listed key is accepted, current or not: GitHub may still sign redeliveries with a
// key it is rotating away from. Keys must be ECDSA P-256.
func ParseSecretScanningKeys(doc []byte) ([]SecretScanningKey, error) {
	var d struct {
		PublicKeys []struct {
			KeyIdentifier string `json:"key_identifier"`
			Key           string `json:"key"`
			IsCurrent     bool   `json:"is_current"`
		} `json:"public_keys"`
	}
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, fmt.Errorf("secret-scanning keys: %w", err)
	}
	if len(d.PublicKeys) == 0 {
		return nil, errors.New("secret-scanning keys: the document lists no public_keys")
	}
	var keys []SecretScanningKey
	seen := map[string]bool{}
	for i, k := range d.PublicKeys {
		if k.KeyIdentifier == "" {
			return nil, fmt.Errorf("secret-scanning keys: key %d has no key_identifier", i)
		}
		if seen[k.KeyIdentifier] {
			return nil, fmt.Errorf("secret-scanning keys: key_identifier %s is listed twice", k.KeyIdentifier)
		}
		seen[k.KeyIdentifier] = true
		block, _ := pem.Decode([]byte(k.Key))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("secret-scanning keys: key %s is not a PEM \"PUBLIC KEY\"", k.KeyIdentifier)
		}
		pub, err := x509.ParsePKIXPublicKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("secret-scanning keys: key %s: %w", k.KeyIdentifier, err)
		}
		ec, ok := pub.(*ecdsa.PublicKey)
		if !ok || ec.Curve != elliptic.P256() {
			return nil, fmt.Errorf("secret-scanning keys: key %s is not an ECDSA P-256 key", k.KeyIdentifier)
		}
		keys = append(keys, SecretScanningKey{KeyID: k.KeyIdentifier, Key: ec})
	}
	return keys, nil
}

func (s *Server) registerLeakRoutes() {
	s.handle(http.MethodPost, "/api/tokens/status", authz.TokenCheck, s.tokenStatus)
	s.handle(http.MethodPost, "/api/tokens/revoke", authz.TokenRevokeLeaked, s.revokeLeaked)
	// Public: GitHub authenticates with a signature over the body, checked by the handler.
	s.handle(http.MethodPost, "/api/secret-scanning/github", authz.Public, s.githubSecretScanning)
}

// leaked is what the server knows about a token named by value.
type leaked struct {
	kind   token.Kind // "" when the value is not a well-formed Gatehouse token
	digest [32]byte   // set for well-formed values only
	tk     *gatehouse.Token
	lease  *gatehouse.Update // a lease token of an unfinished update
	pool   *gatehouse.DeployPool
	run    *gatehouse.Deployment // a deployment run's credential
}

// lookupLeaked finds the token with this value. Only well-formed values (checksum verified)
// are hashed and looked up, so garbage costs no database read.
func lookupLeaked(tx gatehouse.Tx, value string) (leaked, error) {
	var lt leaked
	k, err := token.Parse(value)
	if err != nil {
		return lt, nil
	}
	lt.kind, lt.digest = k, token.Digest(value)
	if k == token.Lease {
		u, err := tx.GetUpdateByLease(lt.digest)
		switch {
		case err == nil && token.Equal(u.LeaseDigest, lt.digest):
			lt.lease = u
		case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return lt, err
		}
		return lt, nil
	}
	if k == token.Runner {
		p, err := tx.GetDeployPoolByDigest(lt.digest)
		switch {
		case err == nil && token.Equal(p.Digest, lt.digest):
			lt.pool = p
		case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return lt, err
		}
		return lt, nil
	}
	if k == token.Deploy {
		d, err := tx.GetDeploymentByCred(lt.digest)
		switch {
		case err == nil && token.Equal(d.CredDigest, lt.digest):
			lt.run = d
		case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return lt, err
		}
		return lt, nil
	}
	if k == token.SCIM {
		st, err := tx.GetSCIMTokenByDigest(lt.digest)
		switch {
		case err == nil && token.Equal(st.Digest, lt.digest):
			lt.tk = scimTokenAsToken(st)
		case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return lt, err
		}
		return lt, nil
	}
	tk, err := tx.GetTokenByDigest(lt.digest)
	switch {
	case err == nil && token.Equal(tk.Digest, lt.digest):
		lt.tk = tk
	case err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
		return lt, err
	}
	return lt, nil
}

// isLive reports whether the token authenticates at now.
func (lt *leaked) isLive(tx gatehouse.Tx) bool {
	now := tx.Now()
	switch {
	case lt.tk != nil:
		return lt.tk.Live(now)
	case lt.lease != nil:
		return lt.lease.Status == gatehouse.StatusRunning && lt.lease.LeaseExpires.After(now)
	case lt.pool != nil:
		return lt.pool.Revoked.IsZero()
	case lt.run != nil:
		return lt.run.Status == gatehouse.DeployRunning && !lt.run.Cancel && now.Before(lt.run.CredUntil)
	}
	return false
}

// deployCred is a leaked runner pool token or deployment credential: the audit target
// and organization, and how it is revoked (the pool is deleted, as DELETE agent-pools
// does; the run is cancelled, which ends its credential at once).
func (lt *leaked) deployCred() (target string, orgID int64, revoke func(gatehouse.Tx) error) {
	switch {
	case lt.pool != nil:
		p := lt.pool
		return "pool/" + p.ID, p.OrgID, func(tx gatehouse.Tx) error { return tx.RevokeDeployPool(p.OrgID, p.ID) }
	case lt.run != nil:
		d := lt.run
		return "deployment/" + d.ID, d.OrgID, func(tx gatehouse.Tx) error { _, err := tx.RequestDeploymentCancel(d.ID); return err }
	}
	return "", 0, nil
}

// tokenOrgs loads, once per request and organization, the organizations of the tokens a
// request names and whether the caller manages their tokens.
type tokenOrgs struct {
	rq      *Request
	tx      gatehouse.Tx
	orgs    map[int64]*gatehouse.Org
	manages map[int64]bool
}

func (rq *Request) tokenOrgs(tx gatehouse.Tx) *tokenOrgs {
	return &tokenOrgs{rq: rq, tx: tx, orgs: map[int64]*gatehouse.Org{}, manages: map[int64]bool{}}
}

// org returns the organization (nil if it no longer exists).
func (o *tokenOrgs) org(id int64) (*gatehouse.Org, error) {
	if org, ok := o.orgs[id]; ok {
		return org, nil
	}
	org, err := o.tx.GetOrg(id)
	if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, err
	}
	o.orgs[id] = org
	return org, nil
}

// mayManage reports whether the caller may learn a token's ID and name: its own personal
// token, or a token of an organization whose tokens the caller may list. The decision is
// authz.Decide's, for the action the token listing routes declare.
func (o *tokenOrgs) mayManage(tk *gatehouse.Token) (bool, error) {
	sub := o.rq.Subject
	if tk.Kind == gatehouse.TokenPersonal {
		own := sub.User != nil && sub.User.ID == tk.UserID
		return own && authz.Decide(sub, authz.UserTokens, authz.Resource{}, authz.Facts{}).Allow, nil
	}
	if m, ok := o.manages[tk.OrgID]; ok {
		return m, nil
	}
	org, err := o.org(tk.OrgID)
	if err != nil || org == nil {
		return false, err
	}
	f, err := loadFacts(o.tx, sub, org)
	if err != nil {
		return false, err
	}
	m := authz.Decide(sub, authz.OrgTokenRead, authz.Resource{Org: org}, f).Allow
	o.manages[tk.OrgID] = m
	return m, nil
}

// event appends an audit event about one token (or lease), in the organization the token
// belongs to, so that the organization's own audit log shows it.
func (o *tokenOrgs) event(action, target string, orgID int64, details map[string]string) error {
	ev := o.rq.event
	ev.Action, ev.Target, ev.Outcome, ev.Reason = action, target, gatehouse.OutcomeSuccess, ""
	ev.OrgID, ev.OrgName = 0, ""
	if orgID != 0 {
		org, err := o.org(orgID)
		if err != nil {
			return err
		}
		if org != nil {
			ev.OrgID, ev.OrgName = org.ID, org.Name
		}
	}
	ev.Details = details
	return o.tx.AppendAudit(&ev)
}

// leakedTokensRequest is the body of the status and revoke calls.
type leakedTokensRequest struct {
	Tokens []string `json:"tokens"`
}

func (rq *Request) leakedTokens() ([]string, error) {
	rq.Body = http.MaxBytesReader(rq.w, rq.Body, maxLeakBody)
	var req leakedTokensRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if len(req.Tokens) > maxLeakTokens {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "at most %d tokens per call", maxLeakTokens)
	}
	rq.event.Target = "tokens"
	return req.Tokens, nil
}

// leakedTokenJSON is one answer of the status and revoke calls, in request order. ID, Name
// and State are only given for tokens the caller manages.
type leakedTokenJSON struct {
	Token  string `json:"token"`            // the value, redacted
	SHA256 string `json:"sha256,omitempty"` // hex SHA-256 of the value (well-formed values)
	Kind   string `json:"kind,omitempty"`   // pat, team, org, scim, lease, runner or deploy (well-formed values)
	// Status (status call): live, dead (never issued, revoked or expired) or malformed (not
	// a Gatehouse token: wrong shape or checksum).
	Status string `json:"status,omitempty"`
	// Result (revoke call): revoked, already-dead, unknown (never issued, or malformed) or
	// not-revocable (the lease token of a running update: it dies with its update).
	Result string `json:"result,omitempty"`
	ID     string `json:"id,omitempty"`
	Name   string `json:"name,omitempty"`
	State  string `json:"state,omitempty"` // active, expired or revoked
}

func (o *tokenOrgs) describe(value string, lt *leaked) (leakedTokenJSON, error) {
	out := leakedTokenJSON{Token: token.Redact(value)}
	if lt.kind == "" {
		return out, nil
	}
	out.Kind, out.SHA256 = string(lt.kind), hex.EncodeToString(lt.digest[:])
	if lt.tk != nil {
		ok, err := o.mayManage(lt.tk)
		if err != nil {
			return out, err
		}
		if ok {
			out.ID, out.Name, out.State = lt.tk.ID, lt.tk.Name, tokenOf(lt.tk, o.tx.Now()).Status
		}
	}
	return out, nil
}

// tokenStatus answers whether each token is live.
func (s *Server) tokenStatus(rq *Request) (any, error) {
	values, err := rq.leakedTokens()
	if err != nil {
		return nil, err
	}
	out := make([]leakedTokenJSON, len(values))
	var ids []string
	live := 0
	err = rq.View(func(tx gatehouse.Tx) error {
		orgs := rq.tokenOrgs(tx)
		ids, live = nil, 0
		for i, v := range values {
			lt, err := lookupLeaked(tx, v)
			if err != nil {
				return err
			}
			if out[i], err = orgs.describe(v, &lt); err != nil {
				return err
			}
			switch {
			case lt.kind == "":
				out[i].Status = "malformed"
			case lt.isLive(tx):
				out[i].Status = "live"
				live++
			default:
				out[i].Status = "dead"
			}
			if lt.tk != nil {
				ids = append(ids, lt.tk.ID)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	rq.Detail("checked", strconv.Itoa(len(values)))
	rq.Detail("live", strconv.Itoa(live))
	if len(ids) > 0 {
		rq.Detail("token_ids", strings.Join(ids, ","))
	}
	return struct {
		Tokens []leakedTokenJSON `json:"tokens"`
	}{out}, nil
}

// revokeLeaked revokes each live token named by value.
func (s *Server) revokeLeaked(rq *Request) (any, error) {
	values, err := rq.leakedTokens()
	if err != nil {
		return nil, err
	}
	out := make([]leakedTokenJSON, len(values))
	err = rq.Change(func(tx gatehouse.Tx) error {
		orgs := rq.tokenOrgs(tx)
		var revoked, dead []string
		unknown := 0
		for i, v := range values {
			lt, err := lookupLeaked(tx, v)
			if err != nil {
				return err
			}
			switch {
			case lt.tk != nil && lt.isLive(tx):
				if err := revokeLeakedToken(tx, lt.tk); err != nil {
					return err
				}
				if err := orgs.event(string(authz.TokenRevokeLeaked), lt.tk.ID, lt.tk.OrgID, map[string]string{
					"token_kind": string(lt.tk.Kind), "token_name": lt.tk.Name,
				}); err != nil {
					return err
				}
				lt.tk.Revoked = tx.Now()
				out[i].Result = "revoked"
				revoked = append(revoked, lt.tk.ID)
			case lt.tk != nil:
				out[i].Result = "already-dead"
				dead = append(dead, lt.tk.ID)
			case lt.pool != nil || lt.run != nil:
				target, orgID, revoke := lt.deployCred()
				if !lt.isLive(tx) {
					out[i].Result = "already-dead"
					dead = append(dead, target)
					break
				}
				if err := revoke(tx); err != nil {
					return err
				}
				if err := orgs.event(string(authz.TokenRevokeLeaked), target, orgID, map[string]string{"token_kind": string(lt.kind)}); err != nil {
					return err
				}
				out[i].Result = "revoked"
				revoked = append(revoked, target)
			case lt.lease != nil && lt.isLive(tx):
				out[i].Result = "not-revocable"
			case lt.lease != nil:
				out[i].Result = "already-dead"
			default:
				out[i].Result = "unknown"
				unknown++
			}
			d, err := orgs.describe(v, &lt)
			if err != nil {
				return err
			}
			d.Result = out[i].Result
			out[i] = d
		}
		rq.Detail("revoked", strings.Join(revoked, ","))
		rq.Detail("already_dead", strings.Join(dead, ","))
		rq.Detail("unknown", strconv.Itoa(unknown))
		return nil
	})
	if err != nil {
		return nil, err
	}
	return struct {
		Tokens []leakedTokenJSON `json:"tokens"`
	}{out}, nil
}

// secretScanningMatch is one match of a GitHub secret-scanning delivery.
type secretScanningMatch struct {
	Token  string `json:"token"`
	Type   string `json:"type"`
	URL    string `json:"url"`
	Source string `json:"source"`
}

// secretScanningLabel is the answer for one match (GitHub's false-positive feedback format).
type secretScanningLabel struct {
	TokenRaw  string `json:"token_raw"`
	TokenType string `json:"token_type"`
	Label     string `json:"label"`
}

var errRedelivery = errors.New("secret-scanning delivery already processed")

// githubSecretScanning is the GitHub secret scanning partner endpoint. A delivery is a JSON
// array of matches, signed with ECDSA P-256 / SHA-256 over the raw body; the signature
// (base64 of ASN.1 DER) is in Github-Public-Key-Signature and the key's identifier in
// Github-Public-Key-Identifier. Each reported token that Gatehouse issued is revoked if it
// is live and recorded; the answer labels each match true_positive (a token Gatehouse
// issued, live or not) or false_positive.
//
// A redelivery (the same body; GitHub retries) is answered with the labels of the first
// delivery and revokes and records nothing. Deliveries are recognized by the digest of the
// body, not by the signature: ECDSA signatures are randomized, so a re-signed retry has a
// new one, and malleable, so anyone who saw a delivery could make a second valid signature
// for it.
func (s *Server) githubSecretScanning(rq *Request) (any, error) {
	rq.event.Action = actionScanDelivery
	rq.event.Target = "secret-scanning/github"
	// The route is public, so the request path does not rate-limit it: failed signatures
	// count against the source like failed logins (scanningAuthFailed).
	key, sig, err := s.scanningCredentials(rq)
	if err != nil {
		return nil, s.scanningAuthFailed(rq, err)
	}
	switch strings.ToLower(rq.Header.Get("Content-Encoding")) {
	case "", "identity":
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "compressed deliveries are not supported")
	}
	body, err := io.ReadAll(http.MaxBytesReader(rq.w, rq.Body, maxScanningBody))
	if err != nil {
		return nil, bodyError(err)
	}
	digest := sha256.Sum256(body)
	if !ecdsa.VerifyASN1(key.Key, digest[:], sig) {
		return nil, s.scanningAuthFailed(rq, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "invalid secret-scanning signature"))
	}
	rq.event.ActorKind, rq.event.ActorName = "partner", "github-secret-scanning"
	rq.Detail("body_sha256", hex.EncodeToString(digest[:]))

	var matches []secretScanningMatch
	if err := jsondepth.Check(body, 0); err != nil {
		return nil, bodyError(err)
	}
	if err := json.Unmarshal(body, &matches); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid delivery: want a JSON array of matches: %v", err)
	}
	labels := make([]string, len(matches))
	var first *gatehouse.ScanDelivery
	err = rq.Change(func(tx gatehouse.Tx) error {
		prev, err := tx.GetScanDelivery(digest)
		if err == nil {
			first = prev
			return errRedelivery // nothing is written, not even the audit event
		}
		if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		orgs := rq.tokenOrgs(tx)
		var leakedIDs []string
		tp, revoked := 0, 0
		for i, m := range matches {
			lt, err := lookupLeaked(tx, m.Token)
			if err != nil {
				return err
			}
			isDeployCred := lt.pool != nil || lt.run != nil
			if lt.tk == nil && lt.lease == nil && !isDeployCred {
				labels[i] = labelFalsePositive
				continue
			}
			labels[i] = labelTruePositive
			tp++
			details := map[string]string{
				"url":    truncate(strings.ReplaceAll(m.URL, m.Token, token.Redact(m.Token)), 1024),
				"source": truncate(m.Source, 64),
				"type":   truncate(m.Type, 64),
			}
			var target string
			var orgID int64
			switch {
			case lt.tk != nil:
				target, orgID = lt.tk.ID, lt.tk.OrgID
				details["token_kind"], details["token_name"] = string(lt.tk.Kind), lt.tk.Name
				if lt.isLive(tx) {
					if err := revokeLeakedToken(tx, lt.tk); err != nil {
						return err
					}
					details["revoked"] = "true"
					revoked++
				} else {
					details["revoked"] = "false: already revoked or expired"
				}
				leakedIDs = append(leakedIDs, lt.tk.ID)
			case isDeployCred:
				var revoke func(gatehouse.Tx) error
				target, orgID, revoke = lt.deployCred()
				details["token_kind"] = string(lt.kind)
				if lt.isLive(tx) {
					if err := revoke(tx); err != nil {
						return err
					}
					details["revoked"] = "true"
					revoked++
				} else {
					details["revoked"] = "false: already revoked or ended"
				}
			default: // an update's lease token: it cannot be revoked, it ends with its update
				target = "update/" + lt.lease.ID
				if st, err := tx.GetStackByID(lt.lease.StackID); err == nil {
					orgID = st.OrgID
				}
				details["token_kind"] = string(token.Lease)
				details["revoked"] = "false: a lease token ends with its update"
			}
			if err := orgs.event(actionLeakReported, target, orgID, details); err != nil {
				return err
			}
		}
		rq.Detail("matches", strconv.Itoa(len(matches)))
		rq.Detail("true_positives", strconv.Itoa(tp))
		rq.Detail("revoked", strconv.Itoa(revoked))
		if len(leakedIDs) > 0 {
			rq.Detail("token_ids", strings.Join(leakedIDs, ","))
		}
		return tx.PutScanDelivery(&gatehouse.ScanDelivery{Digest: digest, KeyID: key.KeyID, Labels: labels})
	})
	if errors.Is(err, errRedelivery) || gatehouse.IsCode(err, gatehouse.ECONFLICT) {
		if first == nil { // a concurrent redelivery committed first
			if err := rq.View(func(tx gatehouse.Tx) error {
				var err error
				first, err = tx.GetScanDelivery(digest)
				return err
			}); err != nil {
				return nil, err
			}
		}
		if len(first.Labels) != len(matches) {
			return nil, gatehouse.Errorf(gatehouse.EINTERNAL, "stored labels do not match the delivery")
		}
		labels = first.Labels
		rq.audited = true // a redelivery changes nothing and is not recorded again
		s.log.Info("secret-scanning redelivery answered from the first delivery", "request_id", rq.ID,
			"body_sha256", hex.EncodeToString(digest[:]), "first_received", first.Received)
	} else if err != nil {
		return nil, err
	}
	out := make([]secretScanningLabel, len(matches))
	for i, m := range matches {
		out[i] = secretScanningLabel{TokenRaw: m.Token, TokenType: m.Type, Label: labels[i]}
	}
	return out, nil
}

// scanningCredentials returns the key named by Github-Public-Key-Identifier and the decoded
// Github-Public-Key-Signature.
func (s *Server) scanningCredentials(rq *Request) (SecretScanningKey, []byte, error) {
	if len(s.cfg.SecretScanningKeys) == 0 {
		return SecretScanningKey{}, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "secret scanning is not configured on this server")
	}
	id := rq.Header.Get("Github-Public-Key-Identifier")
	sig64 := rq.Header.Get("Github-Public-Key-Signature")
	if id == "" || sig64 == "" {
		return SecretScanningKey{}, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "missing Github-Public-Key-Identifier or Github-Public-Key-Signature")
	}
	rq.Detail("key_id", truncate(id, 128))
	var key SecretScanningKey
	for _, k := range s.cfg.SecretScanningKeys {
		if k.KeyID == id {
			key = k
			break
		}
	}
	if key.Key == nil {
		return key, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "unknown secret-scanning key identifier")
	}
	sig, err := base64.StdEncoding.DecodeString(strings.TrimSpace(sig64))
	if err != nil || len(sig) == 0 {
		return key, nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "invalid secret-scanning signature")
	}
	return key, sig, nil
}

// scanningAuthFailed counts a failed delivery against its source (the request path records
// it): the answer is 401, or 429 once the source is over the limit.
func (s *Server) scanningAuthFailed(rq *Request, err error) error {
	now := s.cfg.Now()
	if lerr := s.limiter.check(rq.event.SourceIP, "", now); lerr != nil {
		s.rateLimited(rq.event.SourceIP, "", now)
		return lerr
	}
	if lerr := s.limiterFailed(rq, rq.event.SourceIP, "", now); lerr != nil {
		s.rateLimited(rq.event.SourceIP, "", now)
		return lerr
	}
	return err
}
