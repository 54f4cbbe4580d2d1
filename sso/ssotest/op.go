// Package ssotest runs real identity providers on loopback for tests: an OpenID Connect
// provider (zitadel/oidc's example OP with an in-memory storage: discovery, keys,
// authorization code with PKCE, login form) and a fake GitHub (OAuth app endpoints and the
// REST calls Gatehouse makes). Only tests import it.
package ssotest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
)

// User is a person at the test OP.
type User struct {
	ID, Username, Password string
	Email                  string
	EmailVerified          bool
	First, Last            string
}

type users struct {
	mu sync.Mutex
	m  map[string]*storage.User
}

func (u *users) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.m[id]
}

func (u *users) GetUserByUsername(name string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, x := range u.m {
		if x.Username == name {
			return x
		}
	}
	return nil
}

func (u *users) ExampleClientID() string { return "service" }

// OP is a running OpenID provider.
type OP struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	srv          *httptest.Server
	users        *users
}

var registerMu sync.Mutex

// StartOP starts an OpenID provider on loopback whose web client (ClientID/ClientSecret)
// may redirect to redirectURI. Stop it with Close (also at the test's end).
func StartOP(t testing.TB, redirectURI string, people ...User) *OP {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	op := &OP{Issuer: srv.URL, ClientID: "gatehouse-" + strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), ClientSecret: "s3cret-" + t.Name(), srv: srv,
		users: &users{m: map[string]*storage.User{}}}
	for _, p := range people {
		op.users.m[p.ID] = &storage.User{ID: p.ID, Username: p.Username, Password: p.Password, Email: p.Email, EmailVerified: p.EmailVerified, FirstName: p.First, LastName: p.Last}
	}
	client := storage.WebClient(op.ClientID, op.ClientSecret, redirectURI)
	st := storage.NewStorageWithClients(op.users, map[string]*storage.Client{op.ClientID: client})
	registerMu.Lock() // SetupServer sets the process's default slog logger
	prev := slog.Default()
	h := exampleop.SetupServer(op.Issuer, st, slog.New(slog.NewTextHandler(io.Discard, nil)), false)
	slog.SetDefault(prev)
	registerMu.Unlock()
	srv.Config.Handler = h
	t.Cleanup(srv.Close)
	return op
}

// Close stops the provider (an identity provider that is down).
func (op *OP) Close() { op.srv.Close() }

var authReqID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// Login follows a browser through the OP: from the authorization URL to the login form,
// submits username and password, and returns the redirect back to the relying party (the
// callback URL with code and state), without following it.
func (op *OP) Login(t testing.TB, authURL, username, password string) *url.URL {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if !strings.HasPrefix(req.URL.String(), op.Issuer) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	resp, err := c.Get(authURL)
	if err != nil {
		t.Fatalf("OP authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := authReqID.FindSubmatch(body)
	if m == nil {
		t.Fatalf("OP login page has no request id (status %d): %s", resp.StatusCode, body)
	}
	resp, err = c.PostForm(resp.Request.URL.String(), url.Values{"username": {username}, "password": {password}, "id": {string(m[1])}})
	if err != nil {
		t.Fatalf("OP login: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 3 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("OP login answered %d: %s", resp.StatusCode, b)
	}
	u, err := resp.Location()
	if err != nil {
		t.Fatalf("OP login redirect: %v", err)
	}
	return u
}
