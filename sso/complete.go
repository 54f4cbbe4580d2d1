package sso

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Identity is a person as an identity provider asserted them, after the provider's proof
// (signature, nonce, audience, ...) was verified by the caller of Complete.
type Identity struct {
	// Provider is gatehouse.SignInOIDC, SignInGitHub or SignInSAML.
	Provider string
	// Issuer and Subject identify the person at the provider: the OIDC iss and sub, the
	// SAML IdP entity ID and persistent NameID, GitHub's API URL and numeric user ID.
	// Users are keyed by (Issuer, Subject), never by email alone.
	Issuer  string
	Subject string
	// Email is used (to find a member of the organization to link, to fill a new account)
	// only when EmailVerified.
	Email         string
	EmailVerified bool
	// Name is the display name; Login a preferred user name (a hint for new accounts).
	Name  string
	Login string
	// Groups are the provider's groups of the person (mapped to teams when the
	// organization opts in).
	Groups []string
	// SessionNotOnOrAfter is the provider's limit of the session (SAML
	// AuthnStatement@SessionNotOnOrAfter); zero: none.
	SessionNotOnOrAfter time.Time
}

// Audit actions the package records.
const (
	ActionLogin          = "auth:login"          // a sign-in (outcome success or failure, with the reason)
	ActionLogout         = "auth:logout"         // a sign-out
	ActionIdentityLinked = "auth:identity-link"  // an identity linked to an account
	ActionCLIToken       = "auth:cli-token"      // a personal token minted by the CLI's browser login
	ActionSSOConfig      = "org:sso"             // an organization's SSO configuration changed
	ActionJITMember      = "org:member:jit"      // a member added by just-in-time provisioning
	ActionGroupTeams     = "org:team:sso-groups" // team memberships changed by group mapping
)

// SignInError is a refused sign-in: Status is the HTTP status of the error page, Reason
// what the audit log records and the page shows.
type SignInError struct {
	Status int
	Reason string
}

func (e *SignInError) Error() string { return e.Reason }

func refuse(status int, format string, args ...any) error {
	return &SignInError{Status: status, Reason: sprintf(format, args...)}
}

// Complete finishes a sign-in after the caller verified the identity provider's answer
// for organization org (SAML: a signed assertion; OIDC: the ID token; GitHub: the user
// API). In one transaction it applies the organization's policy (the sign-in method must
// be allowed; unknown people are refused, or added with the org's just-in-time role;
// group claims are mapped to teams when the org opts in), links the identity to a user by
// (Issuer, Subject) (a new identity is linked to the person signed in already, or to a
// member of this organization only, with a verified email, who belongs to no other
// organization and is no site administrator, or to a new account), starts a session
// (cookie set on w) and records the audit events. Then it redirects the browser to
// returnTo when that is a same-origin path (a pending CLI login is such a path:
// /cli-login?...), else to "/".
//
// On refusal it records a failed sign-in with the reason, writes an error page to w and
// returns the *SignInError; nothing is created. Complete always writes the response.
func (m *Manager) Complete(ctx context.Context, w http.ResponseWriter, r *http.Request, org string, id Identity, returnTo string) error {
	var cookie *http.Cookie
	var events []*gatehouse.AuditEvent
	err := m.store.Update(ctx, func(tx gatehouse.Tx) error {
		var err error
		cookie, events, err = m.complete(tx, w, r, org, id)
		if err != nil {
			return err
		}
		for _, ev := range events {
			if err := tx.AppendAudit(ev); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.signInFailed(ctx, w, r, org, id, err)
		return err
	}
	for _, ev := range events {
		m.notify(ev)
	}
	http.SetCookie(w, cookie)
	http.Redirect(w, r, SafeReturn(returnTo), http.StatusSeeOther)
	return nil
}

func (m *Manager) complete(tx gatehouse.Tx, w http.ResponseWriter, r *http.Request, orgName string, id Identity) (*http.Cookie, []*gatehouse.AuditEvent, error) {
	if id.Issuer == "" || id.Subject == "" || id.Provider == "" {
		return nil, nil, refuse(http.StatusBadRequest, "the identity provider's answer names no issuer or subject")
	}
	org, err := tx.GetOrgByName(orgName)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil, refuse(http.StatusNotFound, "organization %q not found", orgName)
		}
		return nil, nil, err
	}
	pol, err := m.policy(tx, org.ID)
	if err != nil {
		return nil, nil, err
	}
	if !pol.allows(id.Provider) {
		return nil, nil, refuse(http.StatusForbidden, "organization %s does not accept %s sign-in", org.Name, id.Provider)
	}
	var events []*gatehouse.AuditEvent
	now := tx.Now()
	email := ""
	if id.EmailVerified {
		email = strings.TrimSpace(id.Email)
	}
	var user *gatehouse.User
	linked := false
	key := identityIssuer(org.ID, id)
	link, err := tx.GetIdentity(key, id.Subject)
	switch {
	case err == nil:
		if user, err = tx.GetUser(link.UserID); err != nil {
			return nil, nil, err
		}
	case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
		return nil, nil, err
	default:
		linked = true
		// Someone signed in already links a new identity to their account, if this
		// organization's own sign-in started their session and they are no site
		// administrator: anyone who can get a signed-in person to open an organization's
		// sign-in URL (its admin, who chooses its identity provider) must not link an
		// identity of their own to that person's account (found in review: another
		// organization's admin took over accounts, a site administrator's included, this
		// way). A session this organization's identity provider started adds nothing that
		// provider could not already do.
		if sess, u, lerr := m.Lookup(tx, r); lerr == nil {
			if sess.OrgID == org.ID && sess.Method != gatehouse.SignInToken && !u.SiteAdmin {
				user = u
			}
		} else if !gatehouse.IsCode(lerr, gatehouse.ENOTFOUND) && !gatehouse.IsCode(lerr, gatehouse.EUNAUTHORIZED) {
			return nil, nil, lerr
		}
		if user == nil && email != "" {
			if user, err = linkableMember(tx, org.ID, email); err != nil {
				var se *SignInError
				// SAML answers arrive as a cross-site POST, without the session cookie, so
				// "sign in first, then link" cannot work there: with just-in-time membership
				// the person gets an account of this organization's own instead.
				if id.Provider != gatehouse.SignInSAML || pol.JITRole == "" || !errors.As(err, &se) {
					return nil, nil, err
				}
				user = nil
			}
		}
		if user == nil {
			if pol.JITRole == "" {
				return nil, nil, refuse(http.StatusForbidden, "you have no account in organization %s: ask an administrator to add you (just-in-time membership is off)", org.Name)
			}
			if user, err = createUser(tx, org.ID, id, email); err != nil {
				return nil, nil, err
			}
		}
	}
	if !user.Disabled.IsZero() {
		return nil, nil, refuse(http.StatusForbidden, "this user account is disabled")
	}
	if _, err := tx.GetMember(org.ID, user.ID); err != nil {
		if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, nil, err
		}
		if pol.JITRole == "" {
			return nil, nil, refuse(http.StatusForbidden, "you are not a member of organization %s: ask an administrator to add you (just-in-time membership is off)", org.Name)
		}
		if err := tx.PutMember(org.ID, user.ID, pol.JITRole); err != nil {
			return nil, nil, err
		}
		ev := m.event(r, w, ActionJITMember, org, user, gatehouse.OutcomeSuccess, "")
		ev.Target = org.Name + "/members/" + user.Name
		ev.Details["role"] = string(pol.JITRole)
		events = append(events, ev)
	}
	if len(pol.GroupTeams) > 0 {
		changed, err := syncTeams(tx, org.ID, user.ID, pol.GroupTeams, id.Groups)
		if err != nil {
			return nil, nil, err
		}
		if len(changed) > 0 {
			ev := m.event(r, w, ActionGroupTeams, org, user, gatehouse.OutcomeSuccess, "")
			ev.Details["teams"] = strings.Join(changed, ",")
			events = append(events, ev)
		}
	}
	if err := tx.PutIdentity(&gatehouse.UserIdentity{Issuer: key, Subject: id.Subject, UserID: user.ID, OrgID: org.ID,
		Provider: id.Provider, Email: email, LastLogin: now}); err != nil {
		return nil, nil, err
	}
	if linked {
		ev := m.event(r, w, ActionIdentityLinked, org, user, gatehouse.OutcomeSuccess, "")
		ev.Details["method"], ev.Details["issuer"], ev.Details["subject"] = id.Provider, id.Issuer, id.Subject
		events = append(events, ev)
	}
	sess, cookie, err := m.startSession(tx, r, user.ID, org.ID, id.Provider, id.SessionNotOnOrAfter, "")
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.EINVALID) {
			return nil, nil, refuse(http.StatusBadRequest, "%s", gatehouse.ErrorMessage(err))
		}
		return nil, nil, err
	}
	ev := m.event(r, w, ActionLogin, org, user, gatehouse.OutcomeSuccess, "")
	ev.Details["method"], ev.Details["issuer"], ev.Details["session"] = id.Provider, id.Issuer, sess.ID
	events = append(events, ev)
	return cookie, events, nil
}

// identityIssuer is the issuer part of the key an identity is linked by. A SAML identity
// belongs to the organization whose SAML configuration linked it ("saml:<org id>:<entity
// ID>"): an IdP entity ID and its signing keys are only what an organization admin's
// metadata claims, so another organization's configuration (a key of its own, the same
// entity ID) must never find this organization's people, nor pre-claim them before their
// first sign-in here (found in review). OIDC and GitHub identities are keyed by the
// issuer that really answered (discovery and signatures of the configured URL, the API
// that was asked): one person, one link, across organizations.
func identityIssuer(orgID int64, id Identity) string {
	if id.Provider == gatehouse.SignInSAML {
		return "saml:" + strconv.FormatInt(orgID, 10) + ":" + id.Issuer
	}
	return id.Issuer
}

// linkableMember finds the user a new identity with a verified email may be linked to: a
// member of this organization with that email who belongs to no other organization and
// is no site administrator (an organization's identity provider must not take over an
// account that other organizations, or the site, trust).
func linkableMember(tx gatehouse.Tx, orgID int64, email string) (*gatehouse.User, error) {
	ms, err := tx.ListMembers(orgID)
	if err != nil {
		return nil, err
	}
	for _, mb := range ms {
		if !strings.EqualFold(mb.User.Email, email) {
			continue
		}
		u, err := tx.GetUser(mb.User.ID)
		if err != nil {
			return nil, err
		}
		if u.SiteAdmin {
			return nil, refuse(http.StatusForbidden, "an account with this email exists but is a site administrator: sign in to it first, then sign in with your identity provider to link it")
		}
		orgs, err := tx.ListUserOrgs(u.ID)
		if err != nil {
			return nil, err
		}
		if len(orgs) > 1 {
			return nil, refuse(http.StatusForbidden, "an account with this email exists in several organizations: sign in to it first, then sign in with your identity provider to link it")
		}
		return u, nil
	}
	return nil, nil
}

var nameClean = regexp.MustCompile(`[^A-Za-z0-9_-]+`)

// userNameFor derives an account name (3-40 letters, digits, '-' or '_', starting and
// ending with a letter or digit) from the identity.
func userNameFor(id Identity, email string) string {
	login := id.Login
	if at := strings.IndexByte(login, '@'); at > 0 {
		login = login[:at]
	}
	cands := []string{login}
	if at := strings.IndexByte(email, '@'); at > 0 {
		cands = append(cands, email[:at])
	}
	cands = append(cands, id.Name, "user")
	for _, c := range cands {
		c = strings.Trim(nameClean.ReplaceAllString(c, "-"), "-_")
		if len(c) > 36 {
			c = strings.Trim(c[:36], "-_")
		}
		if len(c) >= 3 {
			return c
		}
	}
	return "user"
}

func createUser(tx gatehouse.Tx, orgID int64, id Identity, email string) (*gatehouse.User, error) {
	base := userNameFor(id, email)
	for i := 1; i < 20; i++ {
		name := base
		if i > 1 {
			name = base + "-" + strconv.Itoa(i)
		}
		if i > 10 {
			name = base + "-" + strings.ToLower(randomString(3))
		}
		if _, err := tx.GetUserByName(name); err == nil {
			continue
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, err
		}
		u := &gatehouse.User{Name: name, Email: email, CreatedByOrg: orgID}
		if err := tx.CreateUser(u); err != nil {
			return nil, err
		}
		return u, nil
	}
	return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "no free account name for %s", base)
}

// syncTeams makes the user a member of exactly the mapped teams whose group they are in;
// teams not in the mapping are left alone. It returns the teams changed (+name, -name).
func syncTeams(tx gatehouse.Tx, orgID, userID int64, mapping map[string]string, groups []string) ([]string, error) {
	want := map[string]bool{}
	for g, team := range mapping {
		if slices.Contains(groups, g) {
			want[team] = true
		} else if _, ok := want[team]; !ok {
			want[team] = false
		}
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	slices.Sort(names)
	var changed []string
	for _, name := range names {
		team, err := tx.GetTeamByName(orgID, name)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			continue
		} else if err != nil {
			return nil, err
		}
		// A team the identity provider manages through SCIM changes only through SCIM:
		// sign-ins do not add or remove its members.
		if managed, err := tx.IsSCIMTeam(team.ID); err != nil {
			return nil, err
		} else if managed {
			continue
		}
		members, err := tx.ListTeamMembers(team.ID)
		if err != nil {
			return nil, err
		}
		in := slices.ContainsFunc(members, func(tm gatehouse.TeamMember) bool { return tm.User.ID == userID })
		switch {
		case want[name] && !in:
			if err := tx.PutTeamMember(team.ID, userID, "member"); err != nil {
				return nil, err
			}
			changed = append(changed, "+"+name)
		case !want[name] && in:
			if err := tx.RemoveTeamMember(team.ID, userID); err != nil {
				return nil, err
			}
			changed = append(changed, "-"+name)
		}
	}
	return changed, nil
}

// signInFailed records a refused or failed sign-in and writes the error page.
func (m *Manager) signInFailed(ctx context.Context, w http.ResponseWriter, r *http.Request, orgName string, id Identity, err error) {
	status, reason := http.StatusInternalServerError, "the sign-in failed (internal error); nothing was changed"
	var se *SignInError
	if errors.As(err, &se) {
		status, reason = se.Status, se.Reason
	} else if gatehouse.IsCode(err, gatehouse.EUNAVAILABLE) {
		status, reason = http.StatusServiceUnavailable, "the sign-in failed: "+gatehouse.ErrorMessage(err)
	} else {
		m.cfg.Log.Error("sign-in failed", "org", orgName, "err", err)
	}
	m.RecordFailure(ctx, w, r, orgName, id.Provider, id.Issuer, id.Subject, reason)
	m.ErrorPage(w, r, status, "Sign-in failed", reason)
}

// RecordFailure records a failed sign-in of organization orgName (may be unknown) with
// the reason (never a secret value). Best effort: the sign-in fails anyway.
func (m *Manager) RecordFailure(ctx context.Context, w http.ResponseWriter, r *http.Request, orgName, method, issuer, subject, reason string) {
	var org *gatehouse.Org
	_ = m.store.View(ctx, func(tx gatehouse.Tx) error {
		o, err := tx.GetOrgByName(orgName)
		if err == nil {
			org = o
		}
		return nil
	})
	ev := m.event(r, w, ActionLogin, org, nil, gatehouse.OutcomeFailure, reason)
	if org == nil && orgName != "" {
		ev.Target = orgName
	}
	if method != "" {
		ev.Details["method"] = method
	}
	if issuer != "" {
		ev.Details["issuer"] = issuer
	}
	if subject != "" {
		ev.Details["subject"] = truncate(subject, 256)
	}
	if err := m.store.Update(context.WithoutCancel(ctx), func(tx gatehouse.Tx) error { return tx.AppendAudit(ev) }); err != nil {
		m.cfg.Log.Error("audit: cannot record a failed sign-in", "err", err)
		return
	}
	m.notify(ev)
}

// event builds an audit event of the request (the user is the actor when known).
func (m *Manager) event(r *http.Request, w http.ResponseWriter, action string, org *gatehouse.Org, user *gatehouse.User, outcome, reason string) *gatehouse.AuditEvent {
	ev := &gatehouse.AuditEvent{Action: action, Outcome: outcome, Reason: reason, SourceIP: m.cfg.ClientIP(r),
		UserAgent: truncate(r.UserAgent(), 256), ActorKind: "anonymous", ActorName: "anonymous", Details: map[string]string{}}
	if w != nil {
		ev.RequestID = w.Header().Get("X-Pulumi-Request-ID")
	}
	if org != nil {
		ev.OrgID, ev.OrgName, ev.Target = org.ID, org.Name, org.Name
	}
	if user != nil {
		ev.ActorKind, ev.ActorName, ev.UserID = "user", user.Name, user.ID
	}
	return ev
}

func (m *Manager) notify(ev *gatehouse.AuditEvent) {
	if m.OnAudit != nil {
		m.OnAudit(ev)
	}
}

// EndSessions ends every session of user userID (orgID 0), or those started by orgID's
// sign-in, in tx (SCIM deprovisioning, disabling a user); it returns how many ended. The
// next request of each fails on every process (sessions are read per request).
func EndSessions(tx gatehouse.Tx, userID, orgID int64) (int, error) {
	return tx.DeleteUserSessions(userID, orgID)
}
