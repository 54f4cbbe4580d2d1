package sso

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// stateTTL is how long a sign-in may take at the identity provider.
const stateTTL = 10 * time.Minute

// State cookie: binds a sign-in in progress to the browser that started it, so that
// nobody can make someone else's browser finish a sign-in they started (login CSRF).
const (
	stateCookie    = "__Host-gatehouse_signin"
	devStateCookie = "gatehouse_signin"
)

// flowData is what a sign-in in progress remembers server-side (sso_states).
type flowData struct {
	Nonce    string `json:"nonce,omitempty"`
	Verifier string `json:"verifier,omitempty"` // PKCE
	Return   string `json:"return,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"clientId,omitempty"`
}

func stateDigest(state string) [32]byte { return sha256.Sum256([]byte("gatehouse-sso-state:" + state)) }

// beginFlow stores the state of a new sign-in and sets the state cookie; it returns the
// state value to send to the identity provider.
func (m *Manager) beginFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, orgID int64, kind string, d flowData) (string, error) {
	name := stateCookie
	if !m.secure(r) {
		if !loopbackHost(r) {
			return "", refuse(http.StatusBadRequest, "sign-in needs HTTPS: serve Gatehouse over TLS (or behind a trusted proxy that sets X-Forwarded-Proto), or use a loopback address for development")
		}
		name = devStateCookie
	}
	state := randomString(32)
	data, err := json.Marshal(d)
	if err != nil {
		return "", err
	}
	now := m.cfg.Now()
	err = m.store.Update(ctx, func(tx gatehouse.Tx) error {
		return tx.PutSSOState(&gatehouse.SSOState{Digest: stateDigest(state), OrgID: orgID, Kind: kind, Data: data, Expires: now.Add(stateTTL)})
	})
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{Name: name, Value: state, Path: "/", HttpOnly: true, Secure: name == stateCookie,
		SameSite: http.SameSiteLaxMode, MaxAge: int(stateTTL.Seconds())})
	return state, nil
}

// finishFlow takes the sign-in state named by the callback's state parameter: it must be
// the one this browser started (state cookie), of this organization and kind, unused and
// not expired.
func (m *Manager) finishFlow(ctx context.Context, w http.ResponseWriter, r *http.Request, orgID int64, kind, state string) (*flowData, error) {
	if state == "" {
		return nil, refuse(http.StatusBadRequest, "the identity provider's answer has no state parameter")
	}
	var cookie string
	for _, name := range []string{stateCookie, devStateCookie} {
		if c, err := r.Cookie(name); err == nil && c.Value != "" && (name == stateCookie || !m.secure(r)) {
			cookie = c.Value
		}
	}
	// The state cookie is spent either way.
	for _, name := range []string{stateCookie, devStateCookie} {
		http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: name == stateCookie, SameSite: http.SameSiteLaxMode, MaxAge: -1})
	}
	if cookie == "" || subtle.ConstantTimeCompare([]byte(cookie), []byte(state)) != 1 {
		return nil, refuse(http.StatusBadRequest, "bad state: this sign-in was not started by this browser (or the sign-in cookie expired); start again")
	}
	var st *gatehouse.SSOState
	err := m.store.Update(ctx, func(tx gatehouse.Tx) (err error) { st, err = tx.TakeSSOState(stateDigest(state)); return err })
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, refuse(http.StatusBadRequest, "bad state: unknown, used or expired sign-in; start again")
		}
		return nil, err
	}
	if st.OrgID != orgID || st.Kind != kind {
		return nil, refuse(http.StatusBadRequest, "bad state: the sign-in was started for another organization or method")
	}
	var d flowData
	if err := json.Unmarshal(st.Data, &d); err != nil {
		return nil, err
	}
	return &d, nil
}
