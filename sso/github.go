package sso

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/oauth2"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// GitHub sign-in of an organization through a GitHub OAuth app (GitHub is not an OpenID
// provider for people): authorization code (with PKCE and a browser-bound state), then the
// user from the REST API (numeric ID as subject, the API URL as issuer), the primary
// verified email, and, when required, active membership of a GitHub organization.

const (
	defaultGitHubWeb = "https://github.com"
	defaultGitHubAPI = "https://api.github.com"
)

func githubURLs(c *gatehouse.GitHubSSO) (web, api string) {
	web, api = strings.TrimRight(c.WebURL, "/"), strings.TrimRight(c.APIURL, "/")
	if web == "" {
		web = defaultGitHubWeb
	}
	if api == "" {
		if web == defaultGitHubWeb {
			api = defaultGitHubAPI
		} else {
			api = web + "/api/v3" // GitHub Enterprise Server
		}
	}
	return web, api
}

func (m *Manager) githubConfig(ctx context.Context, r *http.Request, org *gatehouse.Org, c *gatehouse.GitHubSSO) (*oauth2.Config, string, error) {
	secret, err := m.open(ctx, org.ID, c.ClientSecret)
	if err != nil {
		return nil, "", err
	}
	web, api := githubURLs(c)
	scopes := []string{"read:user", "user:email"}
	if c.RequiredOrg != "" {
		scopes = append(scopes, "read:org")
	}
	return &oauth2.Config{ClientID: c.ClientID, ClientSecret: secret, Scopes: scopes,
		RedirectURL: m.BaseURL(r) + GitHubCallbackPath(org.Name),
		Endpoint:    oauth2.Endpoint{AuthURL: web + "/login/oauth/authorize", TokenURL: web + "/login/oauth/access_token", AuthStyle: oauth2.AuthStyleInParams}}, api, nil
}

// StartGitHub begins organization orgName's GitHub sign-in (GET /login/{org}/sso/github).
func (m *Manager) StartGitHub(w http.ResponseWriter, r *http.Request, orgName, returnTo string) {
	ctx := r.Context()
	err := func() error {
		org, pol, err := m.orgConfig(ctx, orgName)
		if err != nil {
			return err
		}
		if pol.GitHub == nil || !pol.allows(gatehouse.SignInGitHub) {
			return refuse(http.StatusNotFound, "organization %s has no GitHub sign-in", org.Name)
		}
		if m.ConfirmCrossSiteStart(w, r, org.Name) {
			return nil
		}
		oc, api, err := m.githubConfig(ctx, r, org, pol.GitHub)
		if err != nil {
			return err
		}
		d := flowData{Verifier: oauth2.GenerateVerifier(), Return: SafeReturn(returnTo), Issuer: api, ClientID: pol.GitHub.ClientID}
		state, err := m.beginFlow(ctx, w, r, org.ID, gatehouse.SignInGitHub, d)
		if err != nil {
			return err
		}
		http.Redirect(w, r, oc.AuthCodeURL(state, oauth2.S256ChallengeOption(d.Verifier)), http.StatusFound)
		return nil
	}()
	if err != nil {
		m.flowFailed(w, r, orgName, gatehouse.SignInGitHub, "", err)
	}
}

// FinishGitHub handles GitHub's redirect back (GET /login/{org}/sso/github/callback).
func (m *Manager) FinishGitHub(w http.ResponseWriter, r *http.Request, orgName string) {
	ctx := r.Context()
	var issuer, subject string
	err := func() error {
		org, pol, d, err := m.callbackFlow(ctx, w, r, orgName, gatehouse.SignInGitHub, "GitHub")
		if d != nil {
			issuer = d.Issuer
		}
		if err != nil {
			return err
		}
		q := r.URL.Query()
		if pol.GitHub == nil || !pol.allows(gatehouse.SignInGitHub) {
			return refuse(http.StatusNotFound, "organization %s has no GitHub sign-in", org.Name)
		}
		// No ConfirmCrossSiteStart here: GitHub's redirect back is always cross-site, and
		// the state cookie (callbackFlow) already binds the callback to this browser.
		oc, api, err := m.githubConfig(ctx, r, org, pol.GitHub)
		if err != nil {
			return err
		}
		if api != d.Issuer || pol.GitHub.ClientID != d.ClientID {
			return refuse(http.StatusConflict, "the organization's GitHub configuration changed during the sign-in; start again")
		}
		tok, err := m.exchangeCode(ctx, oc, q.Get("code"), d, "GitHub", "GitHub code exchange")
		if err != nil {
			return err
		}
		var user struct {
			ID    int64  `json:"id"`
			Login string `json:"login"`
			Name  string `json:"name"`
		}
		if err := m.githubGet(ctx, tok.AccessToken, api+"/user", &user); err != nil {
			return err
		}
		if user.ID == 0 {
			return refuse(http.StatusBadGateway, "GitHub's user API answered without a user ID")
		}
		subject = strconv.FormatInt(user.ID, 10)
		var emails []struct {
			Email    string `json:"email"`
			Primary  bool   `json:"primary"`
			Verified bool   `json:"verified"`
		}
		if err := m.githubGet(ctx, tok.AccessToken, api+"/user/emails", &emails); err != nil {
			return err
		}
		id := Identity{Provider: gatehouse.SignInGitHub, Issuer: api, Subject: subject, Name: user.Name, Login: user.Login}
		for _, e := range emails {
			if e.Primary {
				id.Email, id.EmailVerified = e.Email, e.Verified
			}
		}
		if req := pol.GitHub.RequiredOrg; req != "" {
			var ms struct {
				State string `json:"state"`
			}
			err := m.githubGet(ctx, tok.AccessToken, api+"/user/memberships/orgs/"+url.PathEscape(req), &ms)
			var se *SignInError
			if errors.As(err, &se) && se.Status == http.StatusNotFound || err == nil && ms.State != "active" {
				return refuse(http.StatusForbidden, "GitHub user %s is not an active member of the GitHub organization %s", user.Login, req)
			}
			if err != nil {
				return err
			}
			id.Groups = []string{req}
		}
		_ = m.Complete(ctx, w, r, org.Name, id, d.Return)
		return nil
	}()
	if err != nil {
		m.flowFailed(w, r, orgName, gatehouse.SignInGitHub, issuer, err, subject)
	}
}

// githubGet reads a GitHub REST resource with the user's token.
func (m *Manager) githubGet(ctx context.Context, token, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/vnd.github+json")
	req.Header.Set("X-GitHub-Api-Version", "2022-11-28")
	resp, err := m.cfg.HTTPClient.Do(req)
	if err != nil {
		return idpDown("GitHub API", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return idpDown("GitHub API", err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return refuse(http.StatusNotFound, "GitHub answered 404 for %s", u)
	case resp.StatusCode >= 500:
		return idpDown("GitHub API", fmt.Errorf("%s answered %d", u, resp.StatusCode))
	case resp.StatusCode != http.StatusOK:
		return refuse(http.StatusForbidden, "GitHub refused %s (%d)", u, resp.StatusCode)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return idpDown("GitHub API", fmt.Errorf("%s: %v", u, err))
	}
	return nil
}
