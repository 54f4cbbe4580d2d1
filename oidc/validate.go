package oidc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/internal/jsondepth"
)

// Peek returns the iss and sub claims of a token without verifying anything: iss to find
// the registered issuer whose keys will verify it, sub for the record of a token that fails
// verification. Nothing may be trusted before Validate.
func Peek(raw string) (iss, sub string, err error) {
	if len(raw) > MaxTokenLen {
		return "", "", fmt.Errorf("%w: token larger than %d bytes", ErrMalformed, MaxTokenLen)
	}
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", "", fmt.Errorf("%w: not a compact JWS", ErrMalformed)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", "", fmt.Errorf("%w: payload is not base64url", ErrMalformed)
	}
	var c struct {
		Iss any `json:"iss"`
		Sub any `json:"sub"`
	}
	if err := jsondepth.Check(payload, 0); err != nil {
		return "", "", fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", "", fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	iss, _ = c.Iss.(string)
	sub, _ = c.Sub.(string)
	if iss == "" {
		return "", "", fmt.Errorf("%w: no iss claim", ErrMalformed)
	}
	return iss, sub, nil
}

// Validator checks ID tokens.
type Validator struct {
	Keys *KeyCache
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Validate verifies raw, an ID token, as issued by is for audience: the signature with an
// allowed algorithm and a key of the issuer, iss, aud, exp, nbf and iat. It returns the
// token's claims, or an error wrapping one of the Err* reasons.
func (v *Validator) Validate(ctx context.Context, raw string, is *gatehouse.OIDCIssuer, audience string) (Claims, error) {
	if len(raw) > MaxTokenLen {
		return nil, fmt.Errorf("%w: token larger than %d bytes", ErrMalformed, MaxTokenLen)
	}
	jws, err := jose.ParseSignedCompact(raw, Algorithms)
	if err != nil {
		if alg := headerAlg(raw); alg != "" && !allowedAlg(alg) {
			return nil, fmt.Errorf("%w: %q", ErrAlgorithm, alg)
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrMalformed)
	}
	hdr := jws.Signatures[0].Header
	if !allowedAlg(hdr.Algorithm) { // ParseSignedCompact checked it; keep the guard local
		return nil, fmt.Errorf("%w: %q", ErrAlgorithm, hdr.Algorithm)
	}
	keys, err := v.Keys.candidates(ctx, is, hdr.KeyID, hdr.Algorithm)
	if err != nil {
		return nil, err
	}
	var payload []byte
	for i := range keys {
		if payload, err = jws.Verify(keys[i].Key); err == nil {
			break
		}
	}
	if payload == nil {
		return nil, ErrSignature
	}
	c, err := ParseClaims(payload)
	if err != nil {
		return nil, err
	}
	if err := v.checkClaims(c, is, audience); err != nil {
		return nil, err
	}
	return c, nil
}

func (v *Validator) checkClaims(c Claims, is *gatehouse.OIDCIssuer, audience string) error {
	if iss, _ := c["iss"].(string); iss != is.URL {
		return fmt.Errorf("%w: %q, want %q", ErrIssuer, iss, is.URL)
	}
	if !audContains(c["aud"], audience) {
		return fmt.Errorf("%w: the token's aud (%s) does not contain %q", ErrAudience, c.String("aud"), audience)
	}
	if sub, _ := c["sub"].(string); sub == "" {
		return fmt.Errorf("%w: sub", ErrMissingClaim)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	exp, ok := numericDate(c["exp"])
	if !ok {
		return fmt.Errorf("%w: exp", ErrMissingClaim)
	}
	if !now.Before(exp.Add(ClockSkew)) {
		return fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
	}
	if nbf, ok := numericDate(c["nbf"]); ok && now.Add(ClockSkew).Before(nbf) {
		return fmt.Errorf("%w before %s", ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
	} else if !ok && c["nbf"] != nil {
		return fmt.Errorf("%w: nbf is not a number", ErrMalformed)
	}
	iat, ok := numericDate(c["iat"])
	if !ok {
		return fmt.Errorf("%w: iat", ErrMissingClaim)
	}
	if now.Add(ClockSkew).Before(iat) {
		return fmt.Errorf("%w: issued in the future (%s)", ErrNotYetValid, iat.UTC().Format(time.RFC3339))
	}
	if now.Sub(iat) > MaxTokenAge+ClockSkew {
		return fmt.Errorf("%w: issued at %s, more than %s ago", ErrTooOld, iat.UTC().Format(time.RFC3339), MaxTokenAge)
	}
	return nil
}

func audContains(aud any, want string) bool {
	switch a := aud.(type) {
	case string:
		return a == want
	case []any:
		for _, e := range a {
			if s, ok := e.(string); ok && s == want {
				return true
			}
		}
	}
	return false
}

func numericDate(v any) (time.Time, bool) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func allowedAlg(alg string) bool {
	for _, a := range Algorithms {
		if string(a) == alg {
			return true
		}
	}
	return false
}

// headerAlg reads the alg of a compact JWS header without trusting it (for the refusal's
// reason only).
func headerAlg(raw string) string {
	h, _, ok := strings.Cut(raw, ".")
	if !ok {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return ""
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(b, &hdr) != nil || len(hdr.Alg) > 32 {
		return ""
	}
	return hdr.Alg
}
