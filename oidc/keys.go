package oidc

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/netguard"
)

// CheckIssuerURL checks an issuer URL for registration: an absolute https URL without
// credentials, query or fragment (OIDC Discovery's issuer identifier). Plain http is
// accepted only for loopback hosts (tests, local development).
func CheckIssuerURL(s string) error {
	if err := checkFetchURL(s); err != nil {
		return err
	}
	u, _ := url.Parse(s)
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(s, "#") {
		return gatehouse.Errorf(gatehouse.EINVALID, "an issuer URL has no query or fragment")
	}
	return nil
}

// checkFetchURL is the rule for every URL Gatehouse fetches keys from.
func checkFetchURL(s string) error {
	if len(s) > 2048 {
		return gatehouse.Errorf(gatehouse.EINVALID, "URL too long")
	}
	u, err := url.Parse(s)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: want an absolute https:// URL", redactURL(s))
	}
	if u.User != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: credentials in URLs are not allowed", redactURL(s))
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !isLoopback(u.Hostname()) {
			return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: https is required (plain http only for loopback hosts)", redactURL(s))
		}
	default:
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid URL %q: want an https:// URL", redactURL(s))
	}
	return nil
}

// redactURL is s fit for an error message, a log or the audit log: a URL's password
// replaced by "xxxxx" (url.URL.Redacted); for what does not parse as a URL with a host,
// everything up to its last "@" (where a user and password would be) replaced by "…".
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err == nil && u.Opaque == "" && u.Host != "" {
		return u.Redacted()
	}
	if i := strings.LastIndex(s, "@"); i >= 0 {
		return "…" + s[i:]
	}
	return s
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// NewHTTPClient returns the client keys are fetched with: a netguard client (no loopback,
// private, link-local or metadata destinations unless o.AllowPrivate; a timeout; documents
// of at most 1 MiB) whose redirects, at most 3, must also pass the rules of an issuer's
// URLs (https, no credentials). Zero fields of o take netguard's defaults.
func NewHTTPClient(o netguard.Options) *http.Client {
	if o.MaxBodyBytes == 0 {
		o.MaxBodyBytes = maxDocBytes
	}
	c := netguard.NewClient(o)
	guard := c.CheckRedirect
	c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := guard(req, via); err != nil {
			return err
		}
		return checkFetchURL(req.URL.String())
	}
	return c
}

const maxDocBytes = 1 << 20

// ParseJWKS parses a JWK Set and returns its keys usable for verifying signatures: RSA
// (2048 bits or more), ECDSA on P-256/P-384/P-521 and Ed25519 public keys whose "use", if
// given, is "sig". strict (for sets an administrator pins) refuses sets that hold private
// or symmetric keys, so that a secret pasted by mistake is not stored.
func ParseJWKS(b []byte, strict bool) ([]jose.JSONWebKey, error) {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("invalid JWKS: %v", err)
	}
	var out []jose.JSONWebKey
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); err != nil {
			if strict {
				return nil, fmt.Errorf("invalid JWKS: keys[%d]: %v", i, err)
			}
			continue // an issuer's key of a kind we do not know does not spoil the others
		}
		if !k.IsPublic() {
			if strict {
				return nil, fmt.Errorf("invalid JWKS: keys[%d] is a private or symmetric key; give only public keys", i)
			}
			continue
		}
		if !k.Valid() || (k.Use != "" && k.Use != "sig") || !strongKey(k.Key) {
			if strict {
				return nil, fmt.Errorf("invalid JWKS: keys[%d] is not a usable signing key (RSA >= 2048 bits, ECDSA P-256/384/521 or Ed25519, use \"sig\")", i)
			}
			continue
		}
		out = append(out, k)
	}
	if len(out) == 0 {
		return nil, errors.New("the JWKS has no usable signing key")
	}
	return out, nil
}

func strongKey(k any) bool {
	switch key := k.(type) {
	case *rsa.PublicKey:
		return key.N.BitLen() >= 2048
	case *ecdsa.PublicKey:
		switch key.Curve.Params().Name {
		case "P-256", "P-384", "P-521":
			return true
		}
	case ed25519.PublicKey:
		return len(key) == ed25519.PublicKeySize
	}
	return false
}

// keyFits reports whether key k may verify a signature made with alg.
func keyFits(k *jose.JSONWebKey, alg string) bool {
	if k.Algorithm != "" && k.Algorithm != alg {
		return false
	}
	switch key := k.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		return want != "" && key.Curve.Params().Name == want
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	}
	return false
}

// FetchError is a failure to fetch or use an issuer's discovery document or JWKS. Its
// Error has the details (addresses, dial errors, HTTP statuses) for the server log and the
// audit record; Public is all a caller may learn, the same for every address that cannot be
// reached, so that registering an issuer cannot be used to probe the server's network.
type FetchError struct {
	Public string
	Err    error
}

func (e *FetchError) Error() string { return e.Err.Error() }
func (e *FetchError) Unwrap() error { return e.Err }

// Public messages of FetchError.
const (
	ErrTextDiscoveryFetch = "the issuer's discovery document could not be fetched"
	ErrTextDiscoveryIss   = "the issuer's discovery document names a different issuer than the registered URL"
	ErrTextJWKSURI        = "the issuer's discovery document has no usable jwks_uri (an https URL)"
	ErrTextJWKSFetch      = "the issuer's JWKS could not be fetched"
	ErrTextJWKSKeys       = "the issuer's JWKS has no usable signing key"
)

// Discover fetches an issuer's OpenID configuration and its JWKS, checking that the
// configuration names the same issuer, and returns the usable keys. Its errors other than
// an invalid issuerURL are *FetchError.
func Discover(ctx context.Context, client *http.Client, issuerURL string) ([]jose.JSONWebKey, error) {
	if err := CheckIssuerURL(issuerURL); err != nil {
		return nil, err
	}
	fail := func(public string, format string, args ...any) error {
		return &FetchError{Public: public, Err: fmt.Errorf(format, args...)}
	}
	var conf struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := getJSON(ctx, client, strings.TrimSuffix(issuerURL, "/")+"/.well-known/openid-configuration", &conf); err != nil {
		return nil, fail(ErrTextDiscoveryFetch, "OpenID configuration of %s: %w", redactURL(issuerURL), err)
	}
	if conf.Issuer != issuerURL {
		return nil, fail(ErrTextDiscoveryIss, "the OpenID configuration at %s names the issuer %q; it must be exactly the registered URL", redactURL(issuerURL), redactURL(conf.Issuer))
	}
	if err := checkFetchURL(conf.JWKSURI); err != nil {
		return nil, fail(ErrTextJWKSURI, "jwks_uri of %s: %s", redactURL(issuerURL), gatehouse.ErrorMessage(err))
	}
	var raw json.RawMessage
	if err := getJSON(ctx, client, conf.JWKSURI, &raw); err != nil {
		return nil, fail(ErrTextJWKSFetch, "JWKS of %s: %w", redactURL(issuerURL), err)
	}
	keys, err := ParseJWKS(raw, false)
	if err != nil {
		return nil, fail(ErrTextJWKSKeys, "JWKS of %s: %w", redactURL(issuerURL), err)
	}
	return keys, nil
}

func getJSON(ctx context.Context, client *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		// The client strips the password of the URL it was given, not of a redirect's
		// Location that it names when the redirect is refused.
		var ue *url.Error
		if errors.As(err, &ue) {
			ue.URL = redactURL(ue.URL)
		}
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: HTTP %d", redactURL(u), resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxDocBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxDocBytes {
		return fmt.Errorf("GET %s: document larger than %d bytes", redactURL(u), maxDocBytes)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("GET %s: invalid JSON: %v", redactURL(u), err)
	}
	return nil
}

// KeyCache holds the discovered keys of issuers, per issuer, and refreshes them when they
// are older than KeysTTL or when a token names a key ID they lack, never more often than
// MinRefresh. It is safe for concurrent use; one fetch per issuer runs at a time.
type KeyCache struct {
	client     *http.Client
	now        func() time.Time
	MinRefresh time.Duration
	TTL        time.Duration

	mu   sync.Mutex
	sets map[string]*remoteKeys
}

type remoteKeys struct {
	mu        sync.Mutex
	keys      []jose.JSONWebKey
	fetched   time.Time // last successful fetch
	attempted time.Time // last fetch attempt
	lastErr   error
	fetches   int
}

// NewKeyCache returns a cache that fetches with client (NewHTTPClient with the guard on
// when nil) and reads the time from now (time.Now when nil).
func NewKeyCache(client *http.Client, now func() time.Time) *KeyCache {
	if client == nil {
		client = NewHTTPClient(netguard.Options{})
	}
	if now == nil {
		now = time.Now
	}
	return &KeyCache{client: client, now: now, MinRefresh: MinRefreshInterval, TTL: KeysTTL, sets: map[string]*remoteKeys{}}
}

// Client returns the HTTP client keys are fetched with.
func (c *KeyCache) Client() *http.Client { return c.client }

func cacheKey(is *gatehouse.OIDCIssuer) string { return is.ID + "\x00" + is.URL }

func (c *KeyCache) set(is *gatehouse.OIDCIssuer) *remoteKeys {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey(is)
	rs := c.sets[k]
	if rs == nil {
		rs = &remoteKeys{}
		c.sets[k] = rs
	}
	return rs
}

// Forget drops the cached keys of an issuer (after it was changed or deleted).
func (c *KeyCache) Forget(is *gatehouse.OIDCIssuer) {
	c.mu.Lock()
	delete(c.sets, cacheKey(is))
	c.mu.Unlock()
}

// Fetches returns how many times the issuer's keys were fetched (tests, metrics).
func (c *KeyCache) Fetches(is *gatehouse.OIDCIssuer) int {
	rs := c.set(is)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.fetches
}

// candidates returns the keys of the issuer that may verify a signature with alg and key
// ID kid (every fitting key when kid is empty).
func (c *KeyCache) candidates(ctx context.Context, is *gatehouse.OIDCIssuer, kid, alg string) ([]jose.JSONWebKey, error) {
	if len(is.JWKS) > 0 {
		keys, err := ParseJWKS(is.JWKS, false)
		if err != nil {
			return nil, fmt.Errorf("%w: the pinned JWKS: %v", ErrKeys, err)
		}
		if out := pick(keys, kid, alg); len(out) > 0 {
			return out, nil
		}
		return nil, fmt.Errorf("%w (key ID %q, pinned JWKS)", ErrUnknownKey, kid)
	}
	rs := c.set(is)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := c.now()
	mayFetch := rs.attempted.IsZero() || now.Sub(rs.attempted) >= c.MinRefresh
	if (rs.fetched.IsZero() || now.Sub(rs.fetched) >= c.TTL) && mayFetch {
		// Stale keys stay in use if the issuer cannot be reached: an outage of the issuer
		// should not stop pipelines holding tokens signed with keys we already know.
		_ = c.refresh(ctx, rs, is.URL, now)
		mayFetch = false
	}
	if rs.fetched.IsZero() {
		return nil, fmt.Errorf("%w: %w", ErrKeys, rs.lastErr)
	}
	out := pick(rs.keys, kid, alg)
	if len(out) == 0 && kid != "" && mayFetch {
		// An unknown key ID: the issuer may have rotated its keys.
		if err := c.refresh(ctx, rs, is.URL, now); err == nil {
			out = pick(rs.keys, kid, alg)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w (key ID %q)", ErrUnknownKey, kid)
	}
	return out, nil
}

func (c *KeyCache) refresh(ctx context.Context, rs *remoteKeys, issuerURL string, now time.Time) error {
	rs.attempted = now
	rs.fetches++
	// The fetch outlives the request that triggered it: a caller that hangs up must not make
	// the fetch fail and so keep everyone else from the issuer's keys until the next refresh.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	keys, err := Discover(ctx, c.client, issuerURL)
	if err != nil {
		rs.lastErr = err
		return err
	}
	rs.keys, rs.fetched, rs.lastErr = keys, now, nil
	return nil
}

func pick(keys []jose.JSONWebKey, kid, alg string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for i := range keys {
		k := &keys[i]
		if kid != "" && k.KeyID != kid {
			continue
		}
		if keyFits(k, alg) {
			out = append(out, *k)
		}
	}
	return out
}
