// Package oidc is the trust side of Gatehouse's OIDC token exchange (RFC 8693): it checks
// an ID token from a registered issuer (GitHub Actions, GitLab CI, Kubernetes, ...) and
// decides, with the issuer's policies, which Gatehouse token the token's bearer may get.
//
// What it enforces:
//
//   - Signatures: only the asymmetric algorithms in [Algorithms] (RSA, RSA-PSS, ECDSA,
//     Ed25519), never "none" and never HMAC, so a public key can never be used as an HMAC
//     secret. Keys come from the issuer's JWKS, found by OIDC discovery over HTTPS (plain
//     HTTP only for loopback hosts, for tests) or pinned at registration. An unknown key ID
//     refreshes the JWKS, at most once per [MinRefreshInterval] per issuer.
//   - Fetches: discovery and JWKS are fetched with a netguard client ([NewHTTPClient]): no
//     loopback, private, link-local or cloud metadata destination (checked on the address
//     dialed, for every redirect), bounded in time and size. Failures reach a caller only as
//     [FetchError.Public], the same for every unreachable address.
//   - Claims: iss equal to the registered issuer URL, aud containing the requested audience
//     (urn:pulumi:org:ORG), exp, nbf and iat with [ClockSkew] of tolerance, and an age limit
//     ([MaxTokenAge]) so an old token cannot be exchanged even if the issuer made it
//     long-lived.
//   - Policies: rules of claim matchers (exact, or anchored globs with `*` and `?`, on
//     top-level or nested claims), deny wins, and without an allow there is no token.
//
// The package does no storage and no I/O besides fetching keys; the HTTP API (package
// httpapi) looks issuers and policies up and issues the token.
package oidc

import (
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Algorithms is the signature algorithm allow-list. HMAC algorithms are deliberately
// absent: an issuer's keys are public, and accepting HS256 would let anyone who knows the
// public key forge tokens.
var Algorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

const (
	// ClockSkew is the tolerance on exp, nbf and iat.
	ClockSkew = 60 * time.Second
	// MaxTokenAge is how old (since iat) an ID token may be when it is exchanged. CI
	// providers mint ID tokens for minutes (GitHub: 5); an hour leaves room for slow jobs
	// and Kubernetes' default projected tokens.
	MaxTokenAge = time.Hour
	// MinRefreshInterval is the shortest time between two JWKS fetches for one issuer:
	// tokens with unknown key IDs cannot make Gatehouse hammer an issuer.
	MinRefreshInterval = 30 * time.Second
	// KeysTTL is how long fetched keys are used before they are fetched again (keys an
	// issuer withdrew stop being accepted within this time).
	KeysTTL = time.Hour

	// DefaultLifetime is the lifetime of an issued token when the request names none.
	DefaultLifetime = 2 * time.Hour
	// DefaultMaxExpiration is an issuer's default cap on issued tokens (Pulumi Cloud's 25 h).
	DefaultMaxExpiration = 25 * time.Hour
	// MinExpiration and MaxExpiration bound the caps an administrator may configure.
	MinExpiration = time.Minute
	MaxExpiration = 25 * time.Hour

	// MaxPolicies is the most policies one issuer may have (Pulumi Cloud's limit).
	MaxPolicies = 40
	// MaxRules is the most rules one policy may have.
	MaxRules = 32
	// MaxPatternLen bounds a rule's pattern and claim path.
	MaxPatternLen = 1024
	// MaxTokenLen bounds the size of an ID token.
	MaxTokenLen = 16 << 10
)

// Reasons a token is refused. Validation errors wrap one of these (errors.Is); their
// messages never contain the token.
var (
	ErrMalformed    = errors.New("malformed token")
	ErrAlgorithm    = errors.New("signature algorithm not allowed")
	ErrUnknownKey   = errors.New("no key of the issuer verifies the token")
	ErrSignature    = errors.New("invalid signature")
	ErrIssuer       = errors.New("wrong issuer")
	ErrAudience     = errors.New("wrong audience")
	ErrExpired      = errors.New("token expired")
	ErrNotYetValid  = errors.New("token not yet valid")
	ErrTooOld       = errors.New("token too old")
	ErrMissingClaim = errors.New("required claim missing")
	ErrKeys         = errors.New("issuer keys unavailable")
)
