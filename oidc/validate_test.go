package oidc_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/oidc"
	"github.com/gatehouse-dev/gatehouse/oidc/oidctest"
)

const aud = "urn:pulumi:org:acme"

type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	iss   *oidctest.Issuer
	reg   *gatehouse.OIDCIssuer
	clock *testClock
	keys  *oidc.KeyCache
	v     *oidc.Validator
}

func newFixture(t *testing.T) *fixture {
	iss := oidctest.New(t)
	clk := &testClock{t: time.Now()}
	keys := oidc.NewKeyCache(oidc.NewHTTPClient(netguard.Options{AllowPrivate: true}), clk.Now) // oidctest serves on loopback
	return &fixture{
		iss: iss, clock: clk, keys: keys, v: &oidc.Validator{Keys: keys, Now: clk.Now},
		reg: &gatehouse.OIDCIssuer{ID: "issuer-1", Name: "test", URL: iss.URL},
	}
}

func (f *fixture) claims() map[string]any {
	return f.iss.Claims(aud, "acme/infra", "production", f.clock.Now())
}

func (f *fixture) validate(tok string) (oidc.Claims, error) {
	return f.v.Validate(context.Background(), tok, f.reg, aud)
}

func (f *fixture) mustFail(t *testing.T, name, tok string, want error) {
	t.Helper()
	c, err := f.validate(tok)
	if !errors.Is(err, want) {
		t.Errorf("%s: got claims %v, error %v; want %v", name, c != nil, err, want)
	}
	if err != nil && strings.Contains(err.Error(), tok) {
		t.Errorf("%s: the error contains the token", name)
	}
}

func TestValidateAccepts(t *testing.T) {
	f := newFixture(t)
	c, err := f.validate(f.iss.Sign(f.claims()))
	if err != nil {
		t.Fatal(err)
	}
	if c.String("sub") != "repo:acme/infra:environment:production" || c.String("repository_id") != "456789" {
		t.Fatalf("claims = %v", c)
	}
	// Every allowed algorithm family, and an aud list containing the audience.
	for _, alg := range []jose.SignatureAlgorithm{jose.RS512, jose.PS256, jose.ES256, jose.ES384, jose.ES512, jose.EdDSA} {
		k := oidctest.NewKey(t, "key-"+string(alg), alg)
		f.iss.Publish(f.iss.SigningKey(), k)
		f.keys.Forget(f.reg)
		cl := f.claims()
		cl["aud"] = []string{"https://github.com/acme", aud}
		if _, err := f.validate(f.iss.SignWith(k, cl)); err != nil {
			t.Errorf("%s: %v", alg, err)
		}
	}
	// Clock skew: expired 30 s ago, nbf and iat 30 s ahead are still fine.
	cl := f.claims()
	cl["exp"] = f.clock.Now().Add(-30 * time.Second).Unix()
	if _, err := f.validate(f.iss.Sign(cl)); err != nil {
		t.Errorf("within skew after exp: %v", err)
	}
	cl = f.claims()
	cl["nbf"], cl["iat"] = f.clock.Now().Add(30*time.Second).Unix(), f.clock.Now().Add(30*time.Second).Unix()
	if _, err := f.validate(f.iss.Sign(cl)); err != nil {
		t.Errorf("within skew before nbf: %v", err)
	}
}

func TestValidateRefuses(t *testing.T) {
	f := newFixture(t)
	now := f.clock.Now()
	with := func(k string, v any) string {
		cl := f.claims()
		if v == nil {
			delete(cl, k)
		} else {
			cl[k] = v
		}
		return f.iss.Sign(cl)
	}
	f.mustFail(t, "wrong audience", with("aud", "urn:pulumi:org:other"), oidc.ErrAudience)
	f.mustFail(t, "GitHub's default audience", with("aud", "https://github.com/acme"), oidc.ErrAudience)
	f.mustFail(t, "audience prefix", with("aud", aud+"x"), oidc.ErrAudience)
	f.mustFail(t, "no audience", with("aud", nil), oidc.ErrAudience)
	f.mustFail(t, "expired", with("exp", now.Add(-2*time.Minute).Unix()), oidc.ErrExpired)
	f.mustFail(t, "no exp", with("exp", nil), oidc.ErrMissingClaim)
	f.mustFail(t, "exp not a number", with("exp", "tomorrow"), oidc.ErrMissingClaim)
	f.mustFail(t, "not yet valid", with("nbf", now.Add(2*time.Minute).Unix()), oidc.ErrNotYetValid)
	f.mustFail(t, "issued in the future", with("iat", now.Add(2*time.Minute).Unix()), oidc.ErrNotYetValid)
	f.mustFail(t, "no iat", with("iat", nil), oidc.ErrMissingClaim)
	f.mustFail(t, "no sub", with("sub", nil), oidc.ErrMissingClaim)
	old := f.claims()
	old["iat"], old["nbf"], old["exp"] = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(time.Hour).Unix()
	f.mustFail(t, "too old", f.iss.Sign(old), oidc.ErrTooOld)
	f.mustFail(t, "wrong issuer", with("iss", "https://token.actions.githubusercontent.com"), oidc.ErrIssuer)
	f.mustFail(t, "issuer with trailing slash", with("iss", f.iss.URL+"/"), oidc.ErrIssuer)

	// Signatures.
	f.mustFail(t, "alg none", oidctest.Unsigned(f.claims()), oidc.ErrAlgorithm)
	f.mustFail(t, "HMAC with the public key", oidctest.HMACWithPublicKey(t, f.iss.SigningKey(), f.claims()), oidc.ErrAlgorithm)
	good := f.iss.Sign(f.claims())
	parts := strings.Split(good, ".")
	forged := f.claims()
	forged["sub"] = "repo:acme/infra:environment:production-evil"
	fb, _ := json.Marshal(forged)
	tampered := parts[0] + "." + b64(fb) + "." + parts[2]
	f.mustFail(t, "tampered payload", tampered, oidc.ErrSignature)
	f.mustFail(t, "garbage", "not.a.jwt", oidc.ErrMalformed)
	f.mustFail(t, "two parts", "abc.def", oidc.ErrMalformed)
	f.mustFail(t, "huge", strings.Repeat("a", oidc.MaxTokenLen+1), oidc.ErrMalformed)

	// A key the issuer never published, with the published key's ID or its own.
	stranger := oidctest.NewKey(t, "k1", jose.RS256)
	f.mustFail(t, "unknown key with a known kid", f.iss.SignWith(stranger, f.claims()), oidc.ErrSignature)
	stranger.ID = "stranger"
	f.mustFail(t, "unknown key", f.iss.SignWith(stranger, f.claims()), oidc.ErrUnknownKey)
	// An ES256 header with an RSA key's kid does not get verified with the RSA key.
	es := oidctest.NewKey(t, "k1", jose.ES256)
	f.mustFail(t, "algorithm/key mismatch", f.iss.SignWith(es, f.claims()), oidc.ErrUnknownKey)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestKeyRotation(t *testing.T) {
	f := newFixture(t)
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	if n := f.iss.JWKSHits(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
	// The issuer rotates: its next token names a key we have not seen. Within the refresh
	// interval of the last fetch the JWKS is not fetched again, however many such tokens come.
	f.iss.Rotate("k2", jose.ES256)
	f.clock.Advance(5 * time.Second)
	for range 5 {
		f.mustFail(t, "rotated key inside the refresh interval", f.iss.Sign(f.claims()), oidc.ErrUnknownKey)
	}
	if n := f.iss.JWKSHits(); n != 1 {
		t.Fatalf("JWKS fetched %d times inside the refresh interval, want 1", n)
	}
	// After the interval, an unknown kid refreshes the keys once and the token verifies.
	f.clock.Advance(oidc.MinRefreshInterval)
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatalf("after rotation: %v", err)
	}
	if n := f.iss.JWKSHits(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// Known keys need no fetch; an unknown kid right after a refresh does not fetch again.
	for range 3 {
		if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
			t.Fatal(err)
		}
	}
	bogus := oidctest.NewKey(t, "k3", jose.ES256)
	f.mustFail(t, "unknown kid right after a refresh", f.iss.SignWith(bogus, f.claims()), oidc.ErrUnknownKey)
	if n := f.iss.JWKSHits(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestKeysWithdrawn(t *testing.T) {
	f := newFixture(t)
	k1 := f.iss.SigningKey()
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	k2 := f.iss.Rotate("k2", jose.ES256)
	f.iss.Publish(k2) // k1 withdrawn
	if _, err := f.validate(f.iss.SignWith(k1, f.claims())); err != nil {
		t.Fatalf("k1 is still cached: %v", err)
	}
	f.clock.Advance(oidc.KeysTTL)
	f.mustFail(t, "withdrawn key after the TTL", f.iss.SignWith(k1, f.claims()), oidc.ErrUnknownKey)
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
}

func TestDiscoveryChecks(t *testing.T) {
	f := newFixture(t)
	// Discovery that names another issuer is refused.
	f.iss.ClaimIssuer("https://token.actions.githubusercontent.com")
	f.mustFail(t, "discovery names another issuer", f.iss.Sign(f.claims()), oidc.ErrKeys)
	// While the issuer is broken, the fetch is not retried inside the refresh interval.
	f.mustFail(t, "still broken", f.iss.Sign(f.claims()), oidc.ErrKeys)
	if n := f.keys.Fetches(f.reg); n != 1 {
		t.Fatalf("fetched %d times, want 1", n)
	}
	f.iss.ClaimIssuer("")
	f.clock.Advance(oidc.MinRefreshInterval)
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	// Discovery failures through Discover directly.
	if _, err := oidc.Discover(context.Background(), oidc.NewHTTPClient(netguard.Options{AllowPrivate: true}), f.iss.URL+"/nowhere"); err == nil {
		t.Fatal("discovery of a missing configuration succeeded")
	}
}

func TestPinnedJWKS(t *testing.T) {
	f := newFixture(t)
	k := f.iss.SigningKey()
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{k.Public()}})
	if _, err := oidc.ParseJWKS(set, true); err != nil {
		t.Fatal(err)
	}
	f.reg.JWKS = set
	f.iss.Server.Close() // no network needed
	if _, err := f.validate(f.iss.Sign(f.claims())); err != nil {
		t.Fatal(err)
	}
	other := oidctest.NewKey(t, "other", jose.ES256)
	f.mustFail(t, "key outside the pinned set", f.iss.SignWith(other, f.claims()), oidc.ErrUnknownKey)
}

func TestParseJWKSStrict(t *testing.T) {
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	enc := func(keys ...jose.JSONWebKey) []byte {
		b, err := json.Marshal(jose.JSONWebKeySet{Keys: keys})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for name, b := range map[string][]byte{
		"private key":    enc(jose.JSONWebKey{Key: rsaKey, KeyID: "p", Algorithm: "RS256"}),
		"symmetric key":  enc(jose.JSONWebKey{Key: []byte("0123456789abcdef0123456789abcdef"), KeyID: "h", Algorithm: "HS256"}),
		"small RSA key":  enc(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "s"}),
		"encryption key": enc(jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "e", Use: "enc"}),
		"empty":          []byte(`{"keys":[]}`),
		"not JSON":       []byte(`keys`),
	} {
		if _, err := oidc.ParseJWKS(b, true); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	// Lenient parsing (a fetched JWKS) skips what it cannot use.
	mixed := enc(jose.JSONWebKey{Key: &small.PublicKey, KeyID: "s"}, jose.JSONWebKey{Key: &rsaKey.PublicKey, KeyID: "ok", Use: "sig"})
	keys, err := oidc.ParseJWKS(mixed, false)
	if err != nil || len(keys) != 1 || keys[0].KeyID != "ok" {
		t.Fatalf("lenient: %v, %v", keys, err)
	}
}

func TestCheckIssuerURL(t *testing.T) {
	for _, u := range []string{"https://token.actions.githubusercontent.com", "https://gitlab.example.com", "http://127.0.0.1:8080", "http://localhost:1234/x", "http://[::1]:99"} {
		if err := oidc.CheckIssuerURL(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, u := range []string{"http://token.actions.githubusercontent.com", "ftp://x", "https://", "/relative", "https://u:p@host", "https://host?x=1", "https://host#f", "http://10.0.0.1", "token.actions.githubusercontent.com", "https://host?"} {
		if err := oidc.CheckIssuerURL(u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
}

// TestCheckIssuerURLRedactsCredentials: a refused URL is named in the error (which reaches
// the caller, the server log and the audit log) without its password.
func TestCheckIssuerURLRedactsCredentials(t *testing.T) {
	for _, u := range []string{
		"https://ci-bot:S3cretPassw0rd@idp.example.com/",
		"http://ci-bot:S3cretPassw0rd@idp.example.com/",
		"ftp://ci-bot:S3cretPassw0rd@idp.example.com/",
		"https//ci-bot:S3cretPassw0rd@idp.example.com/",
		"ci-bot:S3cretPassw0rd@idp.example.com",
		"https:ci-bot:S3cretPassw0rd@idp.example.com",
		"https://ci-bot:S3cretPassw0rd@idp.example.com/%zz",
		"https://ci-bot:S3cret%zzPassw0rd@idp.example.com/",
	} {
		err := oidc.CheckIssuerURL(u)
		if err == nil {
			t.Errorf("%s: accepted", u)
			continue
		}
		if strings.Contains(err.Error(), "S3cret") {
			t.Errorf("%s: the error shows the password: %v", u, err)
		}
	}
	err := oidc.CheckIssuerURL("https://ci-bot:S3cretPassw0rd@idp.example.com/")
	if !strings.Contains(err.Error(), "https://ci-bot:xxxxx@idp.example.com/") {
		t.Errorf("the error does not name the URL (redacted): %v", err)
	}

	// An issuer whose configuration names a jwks_uri with credentials, or redirects to one.
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	mux.HandleFunc("/a/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer": %q, "jwks_uri": "https://ci-bot:S3cretPassw0rd@idp.example.com/jwks"}`, srv.URL+"/a")
	})
	mux.HandleFunc("/b/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://ci-bot:S3cretPassw0rd@idp.example.com/conf", http.StatusFound)
	})
	mux.HandleFunc("/c/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"issuer": "https://ci-bot:S3cretPassw0rd@idp.example.com/"}`)
	})
	client := oidc.NewHTTPClient(netguard.Options{AllowPrivate: true})
	for _, p := range []string{"/a", "/b", "/c"} {
		_, err := oidc.Discover(context.Background(), client, srv.URL+p)
		if err == nil || strings.Contains(err.Error(), "S3cret") || !strings.Contains(err.Error(), "ci-bot:xxxxx@") {
			t.Errorf("discovery of %s: %v", p, err)
		}
	}
}

func TestPeek(t *testing.T) {
	f := newFixture(t)
	iss, sub, err := oidc.Peek(f.iss.Sign(f.claims()))
	if err != nil || iss != f.iss.URL || sub != "repo:acme/infra:environment:production" {
		t.Fatalf("Peek = %q, %q, %v", iss, sub, err)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + b64([]byte(`{"sub":"x"}`)) + ".c", "a." + b64([]byte(`{"iss":7}`)) + ".c", "a." + b64([]byte(`[1]`)) + ".c"} {
		if _, _, err := oidc.Peek(bad); err == nil {
			t.Errorf("Peek(%q) succeeded", bad)
		}
	}
}

// TestKeysGuardedByDefault: without a client of its own, the key cache fetches through
// netguard, so a loopback issuer's keys are never fetched, and the failure a caller may see
// is the generic one.
func TestKeysGuardedByDefault(t *testing.T) {
	iss := oidctest.New(t)
	v := &oidc.Validator{Keys: oidc.NewKeyCache(nil, nil)}
	reg := &gatehouse.OIDCIssuer{ID: "i", Name: "loop", URL: iss.URL}
	_, err := v.Validate(context.Background(), iss.Sign(iss.Claims(aud, "acme/infra", "", time.Now())), reg, aud)
	if !errors.Is(err, oidc.ErrKeys) || !errors.Is(err, netguard.ErrBlocked) {
		t.Fatalf("Validate with a loopback issuer: %v, want ErrKeys from a netguard refusal", err)
	}
	if iss.DiscoveryHits() != 0 {
		t.Fatal("the loopback issuer was fetched")
	}
	_, err = oidc.Discover(context.Background(), oidc.NewHTTPClient(netguard.Options{}), iss.URL)
	var fe *oidc.FetchError
	if !errors.As(err, &fe) || fe.Public != oidc.ErrTextDiscoveryFetch || strings.Contains(fe.Public, "127.0.0.1") {
		t.Fatalf("Discover: %v", err)
	}
}
