package sso

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// OpenID Connect sign-in of an organization: authorization code flow with PKCE (S256),
// state (server-side, bound to the browser by a cookie) and nonce checked, ID token
// verified by go-oidc against the issuer's discovered keys; users keyed by (iss, sub);
// the email used only when email_verified is true.

// CallbackPath is the redirect URI path of an organization's OIDC sign-in (register
// BaseURL + this at the identity provider).
func OIDCCallbackPath(org string) string {
	return "/login/" + url.PathEscape(org) + "/sso/oidc/callback"
}

// GitHubCallbackPath is the callback path of an organization's GitHub sign-in.
func GitHubCallbackPath(org string) string {
	return "/login/" + url.PathEscape(org) + "/sso/github/callback"
}

// orgConfig loads org's SSO configuration; ENOTFOUND-like refusals for unknown orgs.
func (m *Manager) orgConfig(ctx context.Context, orgName string) (*gatehouse.Org, *policy, error) {
	var org *gatehouse.Org
	var pol *policy
	err := m.store.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(orgName)
		if err != nil {
			return err
		}
		org = o
		pol, err = m.policy(tx, o.ID)
		return err
	})
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, nil, refuse(http.StatusNotFound, "organization %q not found", orgName)
	}
	return org, pol, err
}

func (m *Manager) clientContext(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, m.cfg.HTTPClient)
}

// idpDown is the refusal of an identity provider that cannot be reached or answers badly.
func idpDown(what string, err error) error {
	return refuse(http.StatusBadGateway, "the identity provider is unavailable (%s: %s); nothing was changed, try again later", what, oneLine(err))
}

func oneLine(err error) string {
	s := err.Error()
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return truncate(s, 300)
}

func (m *Manager) oidcSetup(ctx context.Context, r *http.Request, org *gatehouse.Org, c *gatehouse.OIDCSSO) (*oidc.Provider, *oauth2.Config, error) {
	secret, err := m.open(ctx, org.ID, c.ClientSecret)
	if err != nil {
		return nil, nil, err
	}
	prov, err := oidc.NewProvider(m.clientContext(ctx), c.Issuer)
	if err != nil {
		return nil, nil, idpDown("discovery of "+c.Issuer, err)
	}
	scopes := []string{oidc.ScopeOpenID}
	extra := c.Scopes
	if len(extra) == 0 {
		extra = []string{"email", "profile"}
	}
	for _, s := range extra {
		if !slices.Contains(scopes, s) {
			scopes = append(scopes, s)
		}
	}
	oc := &oauth2.Config{ClientID: c.ClientID, ClientSecret: secret, Endpoint: prov.Endpoint(),
		RedirectURL: m.BaseURL(r) + OIDCCallbackPath(org.Name), Scopes: scopes}
	return prov, oc, nil
}

// StartOIDC begins organization orgName's OIDC sign-in (GET /login/{org}/sso/oidc):
// redirects the browser to the identity provider. returnTo is where to go afterwards
// (validated by SafeReturn). It always writes the response.
func (m *Manager) StartOIDC(w http.ResponseWriter, r *http.Request, orgName, returnTo string) {
	ctx := r.Context()
	err := func() error {
		org, pol, err := m.orgConfig(ctx, orgName)
		if err != nil {
			return err
		}
		if pol.OIDC == nil || !pol.allows(gatehouse.SignInOIDC) {
			return refuse(http.StatusNotFound, "organization %s has no OpenID Connect sign-in", org.Name)
		}
		if m.ConfirmCrossSiteStart(w, r, org.Name) {
			return nil
		}
		_, oc, err := m.oidcSetup(ctx, r, org, pol.OIDC)
		if err != nil {
			return err
		}
		d := flowData{Nonce: randomString(24), Verifier: oauth2.GenerateVerifier(), Return: SafeReturn(returnTo), Issuer: pol.OIDC.Issuer, ClientID: pol.OIDC.ClientID}
		state, err := m.beginFlow(ctx, w, r, org.ID, gatehouse.SignInOIDC, d)
		if err != nil {
			return err
		}
		http.Redirect(w, r, oc.AuthCodeURL(state, oidc.Nonce(d.Nonce), oauth2.S256ChallengeOption(d.Verifier)), http.StatusFound)
		return nil
	}()
	if err != nil {
		m.flowFailed(w, r, orgName, gatehouse.SignInOIDC, "", err)
	}
}

// oidcClaims are the ID token claims Gatehouse reads.
type oidcClaims struct {
	Email             string `json:"email"`
	EmailVerified     any    `json:"email_verified"` // bool; some providers send "true"
	Name              string `json:"name"`
	PreferredUsername string `json:"preferred_username"`
}

func truthy(v any) bool {
	switch v := v.(type) {
	case bool:
		return v
	case string:
		return strings.EqualFold(v, "true")
	}
	return false
}

// FinishOIDC handles the identity provider's redirect back (GET
// /login/{org}/sso/oidc/callback): checks state (this browser's, unused, this org's),
// exchanges the code with the PKCE verifier, verifies the ID token (signature, issuer,
// audience, expiry) and its nonce, and completes the sign-in (Complete). It always writes
// the response.
func (m *Manager) FinishOIDC(w http.ResponseWriter, r *http.Request, orgName string) {
	ctx := r.Context()
	var issuer, subject string
	err := func() error {
		org, pol, d, err := m.callbackFlow(ctx, w, r, orgName, gatehouse.SignInOIDC, "the identity provider")
		if d != nil {
			issuer = d.Issuer
		}
		if err != nil {
			return err
		}
		q := r.URL.Query()
		if pol.OIDC == nil || !pol.allows(gatehouse.SignInOIDC) {
			return refuse(http.StatusNotFound, "organization %s has no OpenID Connect sign-in", org.Name)
		}
		if pol.OIDC.Issuer != d.Issuer || pol.OIDC.ClientID != d.ClientID {
			return refuse(http.StatusConflict, "the organization's OpenID Connect configuration changed during the sign-in; start again")
		}
		code := q.Get("code")
		if code == "" {
			return refuse(http.StatusBadRequest, "the identity provider's answer has no code")
		}
		prov, oc, err := m.oidcSetup(ctx, r, org, pol.OIDC)
		if err != nil {
			return err
		}
		tok, err := m.exchangeCode(ctx, oc, code, d, "the identity provider", "code exchange")
		if err != nil {
			return err
		}
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			return refuse(http.StatusBadGateway, "the identity provider answered without an ID token")
		}
		idt, err := prov.Verifier(&oidc.Config{ClientID: pol.OIDC.ClientID, Now: m.cfg.Now}).Verify(ctx, raw)
		if err != nil {
			return refuse(http.StatusForbidden, "the ID token is not valid: %s", oneLine(err))
		}
		subject = idt.Subject
		if idt.Issuer != pol.OIDC.Issuer {
			return refuse(http.StatusForbidden, "the ID token's issuer %q is not the configured issuer", idt.Issuer)
		}
		if subtleEq(idt.Nonce, d.Nonce) != 1 {
			return refuse(http.StatusForbidden, "bad nonce: the ID token was not issued for this sign-in")
		}
		var cl oidcClaims
		if err := idt.Claims(&cl); err != nil {
			return refuse(http.StatusForbidden, "the ID token's claims cannot be read: %s", oneLine(err))
		}
		groups, err := groupsOf(idt, pol.OIDC.GroupsClaim)
		if err != nil {
			return err
		}
		if cl.Email == "" || cl.PreferredUsername == "" && cl.Name == "" {
			// Providers that keep the ID token small (code flow) give the profile at the
			// UserInfo endpoint; its sub must be the ID token's.
			if ui, uerr := prov.UserInfo(m.clientContext(ctx), oauth2.StaticTokenSource(tok)); uerr == nil {
				if ui.Subject != idt.Subject {
					return refuse(http.StatusForbidden, "the UserInfo answer is about another subject")
				}
				var uc oidcClaims
				var all map[string]any
				if ui.Claims(&uc) == nil && ui.Claims(&all) == nil {
					if cl.Email == "" {
						cl.Email, cl.EmailVerified = uc.Email, uc.EmailVerified
					}
					cl.Name, cl.PreferredUsername = orDefault(cl.Name, uc.Name), orDefault(cl.PreferredUsername, uc.PreferredUsername)
					if len(groups) == 0 {
						groups = claimStrings(all, orDefault(pol.OIDC.GroupsClaim, "groups"))
					}
				}
			} else if !errors.Is(uerr, context.Canceled) {
				m.cfg.Log.Debug("OIDC UserInfo unavailable", "issuer", idt.Issuer, "err", uerr)
			}
		}
		id := Identity{Provider: gatehouse.SignInOIDC, Issuer: idt.Issuer, Subject: idt.Subject, Email: cl.Email,
			EmailVerified: truthy(cl.EmailVerified), Name: cl.Name, Login: cl.PreferredUsername, Groups: groups}
		_ = m.Complete(ctx, w, r, org.Name, id, d.Return) // writes the response and audits
		return nil
	}()
	if err != nil {
		m.flowFailed(w, r, orgName, gatehouse.SignInOIDC, issuer, err, subject)
	}
}

func groupsOf(idt *oidc.IDToken, claim string) ([]string, error) {
	if claim == "" {
		claim = "groups"
	}
	var all map[string]any
	if err := idt.Claims(&all); err != nil {
		return nil, refuse(http.StatusForbidden, "the ID token's claims cannot be read")
	}
	return claimStrings(all, claim), nil
}

// claimStrings reads a claim that is a list of strings (or one string).
func claimStrings(all map[string]any, claim string) []string {
	var out []string
	switch v := all[claim].(type) {
	case []any:
		for _, g := range v {
			if s, ok := g.(string); ok {
				out = append(out, s)
			}
		}
	case string:
		out = append(out, v)
	}
	return out
}

// flowFailed records a failed sign-in flow and writes the error page.
func (m *Manager) flowFailed(w http.ResponseWriter, r *http.Request, orgName, method, issuer string, err error, subject ...string) {
	sub := ""
	if len(subject) > 0 {
		sub = subject[0]
	}
	m.signInFailed(r.Context(), w, r, orgName, Identity{Provider: method, Issuer: issuer, Subject: sub}, err)
}

var _ = fmt.Sprintf
