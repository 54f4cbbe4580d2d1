package oidc

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
)

// ReplayKey identifies a validated ID token for replay protection: a digest of its issuer
// and jti, or, for a token without jti, of its signed part (header and payload as sent).
// The signature is left out on purpose: some signatures can be rewritten into other valid
// ones (ECDSA's s and n-s, non-canonical base64), the signed bytes cannot be changed.
func ReplayKey(c Claims, raw string) string {
	h := sha256.New()
	if jti := c.String("jti"); jti != "" {
		h.Write([]byte("jti\x00" + c.String("iss") + "\x00" + jti))
	} else {
		signed := raw
		if i := strings.LastIndexByte(raw, '.'); i >= 0 {
			signed = raw[:i]
		}
		h.Write([]byte("jws\x00" + signed))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ReplayUntil is how long the record of an exchanged token must be kept: until Validate
// would refuse the token anyway (its exp, or MaxTokenAge after its iat when that comes
// first, plus ClockSkew), and a minute more.
func ReplayUntil(c Claims) time.Time {
	exp, ok := numericDate(c["exp"])
	if !ok {
		exp = time.Now().Add(MaxTokenAge)
	}
	if iat, ok := numericDate(c["iat"]); ok && iat.Add(MaxTokenAge).Before(exp) {
		exp = iat.Add(MaxTokenAge)
	}
	return exp.Add(ClockSkew + time.Minute)
}
