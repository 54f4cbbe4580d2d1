package httpapi_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// TestTokenSignInSessionEndsWithToken: a session started with a personal token (POST
// /login/token) ends when that token does, at its expiry or at the end of its rotation's
// grace period; it lasted the full session lifetime (12h) before, so an hour's token (or
// one being rotated away) gave a browser half a day (found in review).
func TestTokenSignInSessionEndsWithToken(t *testing.T) {
	e, bob := consoleWorld(t)
	bc := cliwire.New(e.url, bob)
	signIn := func(tok string) *http.Cookie {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, e.url+"/login/token", strings.NewReader(url.Values{"token": {tok}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.Do(req)
		e.must(err)
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == sso.DevCookieName && ck.Value != "" {
				return ck
			}
		}
		t.Fatalf("token sign-in: %d, no session cookie", resp.StatusCode)
		return nil
	}
	live := func(c *http.Cookie) bool {
		t.Helper()
		code, _ := sessionDo(t, e, c, "GET", "/api/user", "", "", "")
		return code == http.StatusOK
	}
	// A token that expires in an hour.
	var short struct {
		TokenValue string `json:"tokenValue"`
	}
	e.must(bc.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "short", "expires": e.clock.Now().Add(time.Hour).Unix()}}, &short))
	c := signIn(short.TokenValue)
	if !live(c) {
		t.Fatalf("the session does not work")
	}
	e.clock.Advance(61 * time.Minute)
	if live(c) {
		t.Errorf("the session of a token that expired is still live")
	}
	// A token rotated with a 30-minute grace period.
	var long struct {
		ID         string `json:"id"`
		TokenValue string `json:"tokenValue"`
	}
	e.must(bc.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "long"}}, &long))
	e.must(bc.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + long.ID + "/rotate", Body: map[string]any{"graceSeconds": 1800}}, nil))
	c = signIn(long.TokenValue)
	if !live(c) {
		t.Fatalf("the session of the rotating token does not work")
	}
	e.clock.Advance(31 * time.Minute)
	if live(c) {
		t.Errorf("the session of a token rotated away is still live")
	}

	// Revoked or rotated away after the sign-in: the session ends with it (a leaked token's
	// browser session outlived its revocation by up to 12 hours).
	for _, end := range []struct {
		name string
		call func(id string) cliwire.Call
	}{
		{"revoked", func(id string) cliwire.Call { return cliwire.Call{Method: "DELETE", Path: "/api/user/tokens/" + id} }},
		{"rotated without grace", func(id string) cliwire.Call {
			return cliwire.Call{Method: "POST", Path: "/api/user/tokens/" + id + "/rotate", Body: map[string]any{"graceSeconds": 0}}
		}},
	} {
		e.must(bc.Do(cliwire.Call{Method: "POST", Path: "/api/user/tokens", Body: map[string]any{"name": "leaked-" + strings.ReplaceAll(end.name, " ", "-")}}, &long))
		c = signIn(long.TokenValue)
		if !live(c) {
			t.Fatalf("%s: the session does not work", end.name)
		}
		e.must(bc.Do(end.call(long.ID), nil))
		if live(c) {
			t.Errorf("the session of a token %s after the sign-in is still live", end.name)
		}
	}
}
