// Package oidctest runs a real OIDC issuer for tests: keys generated in the test, OpenID
// discovery and the JWKS served over HTTP on 127.0.0.1 (httptest), ID tokens shaped like
// GitHub Actions'. Gatehouse's OIDC tests and end-to-end runs (pulumi login --oidc-token)
// exchange its tokens.
package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is a signing key of the issuer.
type Key struct {
	ID      string
	Alg     jose.SignatureAlgorithm
	Private crypto.Signer
}

// Public returns the key's public JWK.
func (k *Key) Public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.Private.Public(), KeyID: k.ID, Algorithm: string(k.Alg), Use: "sig"}
}

// NewKey generates a key for alg (RS*/PS*: RSA 2048; ES256/384/512; EdDSA).
func NewKey(t testing.TB, id string, alg jose.SignatureAlgorithm) *Key {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.ES384:
		priv, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	case jose.ES512:
		priv, err = ecdsa.GenerateKey(elliptic.P521(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		t.Fatalf("oidctest: no key generator for %s", alg)
	}
	if err != nil {
		t.Fatal(err)
	}
	return &Key{ID: id, Alg: alg, Private: priv}
}

// Issuer is a running OIDC issuer.
type Issuer struct {
	t      testing.TB
	Server *httptest.Server
	URL    string // the issuer identifier (iss)

	mu            sync.Mutex
	published     []*Key
	signing       *Key
	jwksHits      int
	discoveryHits int
	issuerClaim   string // what discovery claims the issuer is ("" = URL)
}

// New starts an issuer with one RS256 key ("k1") on 127.0.0.1; it stops with the test.
func New(t testing.TB) *Issuer {
	t.Helper()
	is := &Issuer{t: t}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.discoveryHits++
		iss := is.issuerClaim
		is.mu.Unlock()
		if iss == "" {
			iss = is.URL
		}
		writeJSON(w, map[string]any{
			"issuer":                                iss,
			"jwks_uri":                              is.URL + "/.well-known/jwks",
			"subject_types_supported":               []string{"public"},
			"response_types_supported":              []string{"id_token"},
			"id_token_signing_alg_values_supported": []string{"RS256", "ES256", "EdDSA"},
			"claims_supported":                      []string{"sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository", "repository_id", "environment", "job_workflow_ref"},
		})
	})
	mux.HandleFunc("GET /.well-known/jwks", func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		is.jwksHits++
		set := jose.JSONWebKeySet{}
		for _, k := range is.published {
			set.Keys = append(set.Keys, k.Public())
		}
		is.mu.Unlock()
		writeJSON(w, set)
	})
	is.Server = httptest.NewServer(mux)
	is.URL = is.Server.URL
	t.Cleanup(is.Server.Close)
	k := NewKey(t, "k1", jose.RS256)
	is.published, is.signing = []*Key{k}, k
	return is
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// Publish replaces the published key set.
func (is *Issuer) Publish(keys ...*Key) {
	is.mu.Lock()
	is.published = keys
	is.mu.Unlock()
}

// SigningKey returns the key Sign uses.
func (is *Issuer) SigningKey() *Key {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.signing
}

// Rotate generates a new key (ID id, algorithm alg), publishes it next to the current ones
// and signs with it from now on.
func (is *Issuer) Rotate(id string, alg jose.SignatureAlgorithm) *Key {
	k := NewKey(is.t, id, alg)
	is.mu.Lock()
	is.published = append(is.published, k)
	is.signing = k
	is.mu.Unlock()
	return k
}

// ClaimIssuer makes discovery name a different issuer than the URL (a misconfigured or
// impersonating issuer).
func (is *Issuer) ClaimIssuer(iss string) {
	is.mu.Lock()
	is.issuerClaim = iss
	is.mu.Unlock()
}

// DiscoveryHits returns how often the OpenID configuration was fetched.
func (is *Issuer) DiscoveryHits() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.discoveryHits
}

// JWKSHits returns how often the JWKS was fetched.
func (is *Issuer) JWKSHits() int {
	is.mu.Lock()
	defer is.mu.Unlock()
	return is.jwksHits
}

// Claims returns the claims of a GitHub Actions job of repository repo (e.g.
// "octo-org/app") running for environment env (empty: a push to main), addressed to aud,
// issued at now and valid five minutes, as GitHub shapes them.
func (is *Issuer) Claims(aud, repo, env string, now time.Time) map[string]any {
	sub := "repo:" + repo + ":ref:refs/heads/main"
	if env != "" {
		sub = "repo:" + repo + ":environment:" + env
	}
	c := map[string]any{
		"iss": is.URL, "aud": aud, "sub": sub,
		"jti":                newJTI(), // unique per token, like GitHub's (a UUID)
		"ref":                "refs/heads/main",
		"sha":                "0123456789abcdef0123456789abcdef01234567",
		"repository":         repo,
		"repository_id":      "456789",
		"repository_owner":   repo[:max(0, indexByte(repo, '/'))],
		"job_workflow_ref":   repo + "/.github/workflows/deploy.yml@refs/heads/main",
		"event_name":         "push",
		"ref_type":           "branch",
		"runner_environment": "github-hosted",
		"iat":                now.Unix(), "nbf": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
	}
	if env != "" {
		c["environment"] = env
	}
	return c
}

func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func indexByte(s string, b byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == b {
			return i
		}
	}
	return len(s)
}

// Sign signs claims with the current signing key.
func (is *Issuer) Sign(claims map[string]any) string { return is.SignWith(is.SigningKey(), claims) }

// SignWith signs claims with k (its ID in the kid header).
func (is *Issuer) SignWith(k *Key, claims map[string]any) string {
	is.t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.Alg, Key: k.Private}, opts)
	if err != nil {
		is.t.Fatal(err)
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		is.t.Fatal(err)
	}
	obj, err := signer.Sign(payload)
	if err != nil {
		is.t.Fatal(err)
	}
	s, err := obj.CompactSerialize()
	if err != nil {
		is.t.Fatal(err)
	}
	return s
}

// Unsigned returns claims as an `alg: none` token (which no verifier may accept).
func Unsigned(claims map[string]any) string {
	h, _ := json.Marshal(map[string]string{"alg": "none", "typ": "JWT"})
	p, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p) + "."
}

// HMACWithPublicKey returns claims signed with HS256 using k's public key (PEM, as
// published) as the secret: the algorithm-confusion attack on verifiers that let the token
// pick the algorithm.
func HMACWithPublicKey(t testing.TB, k *Key, claims map[string]any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k.Private.Public())
	if err != nil {
		t.Fatal(err)
	}
	secret := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", k.ID)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: secret}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := obj.CompactSerialize()
	return s
}
