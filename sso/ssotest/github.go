package ssotest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// GitHubUser is a person at the fake GitHub.
type GitHubUser struct {
	ID            int64
	Login, Name   string
	Email         string
	EmailVerified bool
	Orgs          []string // GitHub organizations with an active membership
}

// GitHub is a fake GitHub on loopback: the OAuth app endpoints (authorize, which signs in
// the user named by the test at once; access_token) and the REST calls Gatehouse makes
// (/api/v3/user, /user/emails, /user/memberships/orgs/{org}), as GitHub Enterprise
// Server lays them out (web at the root, API under /api/v3).
type GitHub struct {
	URL          string
	APIURL       string
	ClientID     string
	ClientSecret string
	srv          *httptest.Server
	mu           sync.Mutex
	next         *GitHubUser            // who the next authorize signs in
	codes        map[string]*GitHubUser // code -> user
	tokens       map[string]*GitHubUser
	challenge    map[string]string // code -> PKCE challenge
}

// StartGitHub starts the fake GitHub.
func StartGitHub(t testing.TB) *GitHub {
	g := &GitHub{ClientID: "gh-client", ClientSecret: "gh-secret", codes: map[string]*GitHubUser{}, tokens: map[string]*GitHubUser{}, challenge: map[string]string{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", g.authorize)
	mux.HandleFunc("POST /login/oauth/access_token", g.accessToken)
	mux.HandleFunc("GET /api/v3/user", g.api(func(u *GitHubUser, w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"id": u.ID, "login": u.Login, "name": u.Name})
	}))
	mux.HandleFunc("GET /api/v3/user/emails", g.api(func(u *GitHubUser, w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode([]map[string]any{{"email": "other@example.com", "primary": false, "verified": true}, {"email": u.Email, "primary": true, "verified": u.EmailVerified}})
	}))
	mux.HandleFunc("GET /api/v3/user/memberships/orgs/{org}", g.api(func(u *GitHubUser, w http.ResponseWriter, r *http.Request) {
		for _, o := range u.Orgs {
			if strings.EqualFold(o, r.PathValue("org")) {
				_ = json.NewEncoder(w).Encode(map[string]any{"state": "active", "role": "member"})
				return
			}
		}
		http.Error(w, `{"message":"Not Found"}`, http.StatusNotFound)
	}))
	g.srv = httptest.NewServer(mux)
	g.URL, g.APIURL = g.srv.URL, g.srv.URL+"/api/v3"
	t.Cleanup(g.srv.Close)
	return g
}

// SignInAs makes the next authorization sign in u.
func (g *GitHub) SignInAs(u GitHubUser) {
	g.mu.Lock()
	g.next = &u
	g.mu.Unlock()
}

func (g *GitHub) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != g.ClientID {
		http.Error(w, "unknown client", http.StatusBadRequest)
		return
	}
	g.mu.Lock()
	code := "code-" + q.Get("state")[:8]
	g.codes[code] = g.next
	g.challenge[code] = q.Get("code_challenge")
	g.mu.Unlock()
	to, _ := url.Parse(q.Get("redirect_uri"))
	v := to.Query()
	v.Set("code", code)
	v.Set("state", q.Get("state"))
	to.RawQuery = v.Encode()
	http.Redirect(w, r, to.String(), http.StatusFound)
}

func (g *GitHub) accessToken(w http.ResponseWriter, r *http.Request) {
	_ = r.ParseForm()
	if r.PostForm.Get("client_id") != g.ClientID || r.PostForm.Get("client_secret") != g.ClientSecret {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "incorrect_client_credentials"})
		return
	}
	code := r.PostForm.Get("code")
	g.mu.Lock()
	u := g.codes[code]
	delete(g.codes, code)
	tok := "gho_" + code
	if u != nil {
		g.tokens[tok] = u
	}
	g.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	if u == nil || r.PostForm.Get("code_verifier") == "" {
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "bad_verification_code"})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"access_token": tok, "token_type": "bearer", "scope": "read:user,user:email"})
}

func (g *GitHub) api(h func(*GitHubUser, http.ResponseWriter, *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		g.mu.Lock()
		u := g.tokens[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
		g.mu.Unlock()
		if u == nil {
			http.Error(w, `{"message":"Bad credentials"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		h(u, w, r)
	}
}
