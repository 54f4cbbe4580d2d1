package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/posture"
	"github.com/gatehouse-dev/gatehouse/token"
)

// authenticate turns the request's credential into a subject. Routes that take a lease
// token accept only lease tokens; all others only access tokens.
func (s *Server) authenticate(rq *Request, tx gatehouse.Tx) error {
	rt := rq.route
	if rt.Auth == AuthNone {
		rq.Subject = &authz.Subject{Kind: authz.Anonymous}
		return nil
	}
	if rt.Auth == AuthToken && rq.Header.Get("Authorization") == "" && s.sso.HasCookie(rq.Request) {
		return s.authenticateSession(rq, tx)
	}
	scheme, cred, _ := strings.Cut(rq.Header.Get("Authorization"), " ")
	cred = strings.TrimSpace(cred)
	if rt.Auth == AuthSCIM {
		return s.authenticateSCIM(rq, tx, scheme, cred)
	}
	if cred == "" {
		return s.authFailed(rq, "missing", "No credentials provided: send Authorization: token <access token>.")
	}
	now := s.cfg.Now()
	switch rt.Auth {
	case AuthLease:
		if !strings.EqualFold(scheme, "update-token") {
			return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "this call needs the update's lease token (Authorization: update-token ...)")
		}
		return s.authenticateLease(rq, tx, cred, now)
	default:
		if !strings.EqualFold(scheme, "token") && !strings.EqualFold(scheme, "bearer") {
			return s.authFailed(rq, "scheme", fmt.Sprintf("unsupported authorization scheme %q; use: token <access token>", scheme))
		}
		return s.authenticateToken(rq, tx, cred, now)
	}
}

func (s *Server) authenticateToken(rq *Request, tx gatehouse.Tx, cred string, now time.Time) error {
	kind, err := token.Parse(cred)
	if err == nil && (kind == token.Runner || kind == token.Deploy) {
		return s.authenticateDeployCred(rq, tx, cred, kind, now)
	}
	if err != nil || kind == token.Lease {
		rq.event.Reason = "malformed token"
		return s.authFailed(rq, "malformed", "Invalid credentials: the token is malformed (not a Gatehouse access token).")
	}
	digest := token.Digest(cred)
	sub, err := s.cache.subject(rq.epoch, digest, func() (*authz.Subject, error) {
		tk, err := tx.GetTokenByDigest(digest)
		if err != nil {
			return nil, err
		}
		// The lookup is by digest; compare again in constant time so that no code path
		// depends on a variable-time comparison of secret material.
		if !token.Equal(tk.Digest, digest) {
			return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "token not found")
		}
		sub := &authz.Subject{Token: tk, Pipeline: tk.Pipeline}
		switch tk.Kind {
		case gatehouse.TokenPersonal:
			u, err := tx.GetUser(tk.UserID)
			if err != nil {
				return nil, err
			}
			sub.Kind, sub.User = authz.UserKind, u
		case gatehouse.TokenTeam:
			sub.Kind = authz.TeamToken
		case gatehouse.TokenOrg:
			sub.Kind = authz.OrgToken
		default:
			return nil, gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "unknown token kind")
		}
		return sub, nil
	})
	if err == nil && sub.User != nil && !sub.User.Disabled.IsZero() {
		rq.event.TokenID, rq.event.Reason = sub.Token.ID, "the user is disabled"
		return s.authFailed(rq, "disabled", "Invalid credentials: this user account is disabled.")
	}
	if err == nil && !sub.Token.Live(now) {
		// Only the token's holder can send it: saying why it stopped working tells them
		// nothing they should not know.
		rq.event.TokenID = sub.Token.ID
		if t := sub.Token.Revoked; !t.IsZero() && !now.Before(t) {
			rq.event.Reason = "the token was revoked"
			return s.authFailed(rq, "revoked", "Invalid credentials: the token was revoked.")
		}
		rq.event.Reason = "the token has expired"
		return s.authFailed(rq, "expired", "Invalid credentials: the token expired at "+sub.Token.Expires.UTC().Format(time.RFC3339)+".")
	}
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) || gatehouse.IsCode(err, gatehouse.EUNAUTHORIZED) {
			if rq.event.Reason == "" {
				rq.event.Reason = gatehouse.ErrorMessage(err)
			}
			return s.authFailed(rq, "unknown", "Invalid credentials: unknown token (deleted, or never issued by this server).")
		}
		return err
	}
	rq.Subject = sub
	rq.setActor()
	s.touch.record(gatehouse.TokenUse{TokenID: sub.Token.ID, At: now, IP: rq.event.SourceIP, Agent: rq.event.UserAgent})
	return nil
}

// authFailed answers a failed authentication with a 401 saying why (the reason is also
// counted: gatehouse_auth_failures_total{reason}).
func (s *Server) authFailed(_ *Request, reason, msg string) error {
	s.metrics.authFailure(reason)
	return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "%s", msg)
}

func (s *Server) authenticateLease(rq *Request, tx gatehouse.Tx, cred string, now time.Time) error {
	kind, err := token.Parse(cred)
	if err != nil || kind != token.Lease {
		return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "invalid update token")
	}
	digest := token.Digest(cred)
	u, err := tx.GetUpdateByLease(digest)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "invalid update token")
		}
		return err
	}
	if !token.Equal(u.LeaseDigest, digest) {
		return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "invalid update token")
	}
	rq.Subject = &authz.Subject{Kind: authz.Lease, Update: u}
	rq.setActor()
	if u.Status == gatehouse.StatusRunning && !u.LeaseExpires.After(now) {
		// The CLI reads a 403 on lease calls as "lease expired".
		s.metrics.leaseExpired.Inc()
		return gatehouse.Errorf(gatehouse.EGONE, "the update's lease has expired")
	}
	rq.LeaseToken = cred
	return nil
}

func (rq *Request) setActor() {
	sub := rq.Subject
	rq.event.ActorKind = string(sub.Kind)
	rq.event.ActorName = sub.Name()
	if sub.User != nil {
		rq.event.UserID = sub.User.ID
	}
	if sub.Token != nil {
		rq.event.TokenID = sub.Token.ID
		if sub.User == nil {
			rq.event.ActorName = sub.Token.Name
		}
	}
	if sub.Update != nil {
		rq.event.ActorName = "update " + sub.Update.ID
	}
	if sub.Session != nil {
		rq.Detail("method", "session")
		rq.Detail("session", sub.Session.ID)
	}
	if sub.Deployment != nil {
		rq.Detail("deployment", sub.Deployment.ID)
		if sub.ActsForName != "" {
			rq.Detail("actsFor", sub.ActsForName)
		}
		if sub.EditorName != "" {
			rq.Detail("editor", sub.EditorName)
		}
	}
}

// resolve loads the organization, stack and update named in the path and the facts the
// decision needs, checking that they belong together (an update of another stack, a stack
// of another organization are "not found").
func (s *Server) resolve(rq *Request, tx gatehouse.Tx) error {
	orgName := rq.PathValue("org")
	project, stackName := rq.PathValue("project"), rq.PathValue("stack")
	updateID := rq.PathValue("updateID")
	if orgName == "" && rq.Subject.Kind != authz.Lease {
		return s.resolveInvitation(rq, tx)
	}
	{
		if orgName != "" {
			org, f, err := s.cache.orgFacts(rq.epoch, orgName, rq.Subject, func() (*gatehouse.Org, authz.Facts, error) {
				org, err := tx.GetOrgByName(orgName)
				if err != nil {
					return nil, authz.Facts{}, err
				}
				f, err := loadFacts(tx, rq.Subject, org)
				return org, f, err
			})
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					return notFound(rq, err)
				}
				return err
			}
			f.Now = tx.Now()
			if f.ActsFor != nil { // a copy: cached facts are shared
				af := *f.ActsFor
				af.Now = f.Now
				f.ActsFor = &af
			}
			if f.Editor != nil {
				ef := *f.Editor
				ef.Now = f.Now
				f.Editor = &ef
			}
			rq.Org, rq.facts = org, f
			rq.event.OrgID, rq.event.OrgName = org.ID, org.Name
			rq.event.Target = org.Name
		}
		if rq.Org != nil && stackName != "" {
			st, err := tx.GetStack(rq.Org.ID, project, stackName)
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					rq.event.Target = orgName + "/" + project + "/" + stackName
					return notFound(rq, err)
				}
				return err
			}
			rq.Stack = st
			rq.event.Target = st.Ref().String()
		}
		if name := rq.PathValue("env"); name != "" && rq.Org != nil {
			if project == "" { // Pulumi's legacy /api/preview/environments/{org}/{env} paths
				project = esc.DefaultProject
			}
			if err := resolveEnv(rq, tx, project, name); err != nil {
				return err
			}
		}
		if name := rq.PathValue("team"); name != "" && rq.Org != nil {
			team, err := tx.GetTeamByName(rq.Org.ID, name)
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					return notFound(rq, err)
				}
				return err
			}
			rq.Team = team
			rq.event.Target = rq.Org.Name + "/teams/" + team.Name
		}
		if updateID != "" {
			u, err := tx.GetUpdate(updateID)
			if err != nil || rq.Stack == nil || u.StackID != rq.Stack.ID {
				if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					return err
				}
				return notFound(rq, gatehouse.Errorf(gatehouse.ENOTFOUND, "update '%s' not found", updateID))
			}
			rq.Update = u
			rq.event.Target += "/update/" + u.ID
			rq.Detail("update", u.ID)
		}
		return s.resolveInvitation(rq, tx)
	}
}

// notFound answers a missing organization, stack or update. The answer does not depend on
// whether the caller may see the organization: both are 404 with the same message.
func notFound(rq *Request, _ error) error {
	if rq.Subject.Kind == authz.Anonymous {
		return gatehouse.Errorf(gatehouse.EUNAUTHORIZED, "No credentials provided or are invalid.")
	}
	return gatehouse.Errorf(gatehouse.ENOTFOUND, "%s", rq.notFoundMessage())
}

// loadFacts loads what Decide needs about the subject in org.
func loadFacts(tx gatehouse.Tx, sub *authz.Subject, org *gatehouse.Org) (authz.Facts, error) {
	f := authz.Facts{Now: tx.Now()}
	if sub.Kind == authz.Deployment && sub.ActsFor != nil && sub.ActsFor.Kind != authz.Deployment {
		// The facts of the principal the run acts for (authz.decideDeploymentEnv).
		af, err := loadFacts(tx, sub.ActsFor, org)
		if err != nil {
			return f, err
		}
		f.ActsFor = &af
	}
	if sub.Kind == authz.Deployment && sub.Editor != nil && sub.Editor.Kind != authz.Deployment {
		// And those of the run's settings editor.
		ef, err := loadFacts(tx, sub.Editor, org)
		if err != nil {
			return f, err
		}
		f.Editor = &ef
	}
	switch sub.Kind {
	case authz.UserKind:
		m, err := tx.GetMember(org.ID, sub.User.ID)
		if err == nil {
			f.Role = m.Role
		} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return f, err
		}
	case authz.OrgToken:
		f.Role = sub.Token.Role
	}
	var err error
	switch sub.Kind {
	case authz.UserKind:
		if f.Role != "" {
			f.Grants, err = tx.ListUserGrants(org.ID, sub.User.ID)
		}
	case authz.TeamToken:
		f.Grants, err = tx.ListGrants(sub.Token.TeamID)
	}
	if err != nil {
		return f, err
	}
	ps, err := tx.ListProtections(org.ID)
	if err != nil {
		return f, err
	}
	for _, p := range ps {
		f.Protections = append(f.Protections, p.Scope)
	}
	return f, nil
}

// toucher batches token last-used facts and writes them off the request path, at most once
// a second, so that authentication does not write to the database per request.
type toucher struct {
	store gatehouse.Store
	// usage, when set, is the token usage inventory's recorder: flushed on the same tick
	// (posture.go), pruned hourly.
	usage *posture.Recorder
	// hourly, when set, runs with the hourly prune (the posture gauges, posture.go).
	hourly func(context.Context)
	log    *slog.Logger
	mu     sync.Mutex
	uses   map[string]gatehouse.TokenUse
	stop   chan struct{}
	done   chan struct{}
}

func newToucher(store gatehouse.Store, log *slog.Logger) *toucher {
	t := &toucher{store: store, log: log, uses: map[string]gatehouse.TokenUse{}, stop: make(chan struct{}), done: make(chan struct{})}
	go t.loop()
	return t
}

func (t *toucher) record(u gatehouse.TokenUse) {
	t.mu.Lock()
	t.uses[u.TokenID] = u
	t.mu.Unlock()
}

func (t *toucher) flush() {
	if t.usage != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if err := t.usage.Flush(ctx); err != nil {
			t.log.Warn("recording token usage failed", "err", err)
		}
		cancel()
	}
	t.mu.Lock()
	if len(t.uses) == 0 {
		t.mu.Unlock()
		return
	}
	batch := make([]gatehouse.TokenUse, 0, len(t.uses))
	for _, u := range t.uses {
		batch = append(batch, u)
	}
	t.uses = map[string]gatehouse.TokenUse{}
	t.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := t.store.TouchTokens(ctx, batch); err != nil {
		t.log.Warn("recording token use failed", "err", err)
	}
}

func (t *toucher) loop() {
	defer close(t.done)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrune := time.Now().Add(-time.Hour + time.Minute) // the first run a minute after start
	for {
		select {
		case <-tick.C:
			t.flush()
			if t.usage != nil && time.Since(lastPrune) > time.Hour {
				lastPrune = time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				if _, err := t.usage.Prune(ctx); err != nil {
					t.log.Warn("pruning the token usage inventory failed", "err", err)
				}
				if t.hourly != nil {
					t.hourly(ctx)
				}
				cancel()
			}
		case <-t.stop:
			t.flush()
			return
		}
	}
}

func (t *toucher) close() {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
}

var _ = http.StatusOK
