package httpapi

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"maps"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	pesc "github.com/pulumi/esc"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/esc"
	"github.com/gatehouse-dev/gatehouse/webhook"
)

// Environments (Pulumi ESC), as the stock CLI (`pulumi env`, `esc`) calls them: see
// ../shared/reference/esc-api.md. Handlers are thin: evaluation and secrets are package
// esc, decisions authz.Decide (imports are decided per import through envAccess).

const (
	envRoot = "/api/esc/environments"
	envPath = envRoot + "/{org}/{project}/{env}"

	revisionHeader = "Pulumi-ESC-Revision"

	// maxDefinitionBytes bounds an environment definition (the evaluator holds it, and
	// everything it imports, in memory).
	maxDefinitionBytes = 1 << 20
)

// readDefinition reads a YAML definition (sent with a JSON content type; JSON is YAML).
func (rq *Request) readDefinition() ([]byte, error) {
	b, err := rq.readBody()
	if err != nil {
		return nil, err
	}
	if len(b) > maxDefinitionBytes {
		return nil, gatehouse.Errorf(gatehouse.ETOOLARGE, "an environment definition is limited to %d bytes", maxDefinitionBytes)
	}
	return b, nil
}

func (s *Server) registerEnvRoutes() {
	get, post, patch, del := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
	s.handle(get, envRoot, authz.UserEnvironments, s.listEnvs)
	s.handle(get, envRoot+"/{org}", authz.OrgRead, s.listEnvs)
	s.handle(post, envRoot+"/{org}", authz.OrgRead, s.createEnv) // refined to env:create with the new environment's project
	s.handle(post, envRoot+"/{org}/yaml/check", authz.OrgRead, s.checkYAML)
	s.handle(post, envRoot+"/{org}/yaml/open", authz.OrgRead, s.openYAML) // imports need open, each
	s.handleAudited(get, envRoot+"/{org}/yaml/open/{session}", authz.OrgRead, s.readSession)
	s.handle(get, envPath, authz.EnvRead, s.getEnvDef)
	s.handle(patch, envPath, authz.EnvWrite, s.updateEnv)
	s.handle(del, envPath, authz.EnvAdmin, s.deleteEnv)
	// One pattern serves E/decrypt (refined to env:open), E/versions and E/settings: separate
	// patterns would be ambiguous with yaml/open/{session} for the mux.
	s.handleAudited(get, envPath+"/{what}", authz.EnvRead, s.getEnvSub)
	s.handle(post, envPath+"/check", authz.EnvRead, s.checkEnv) // refined to env:open with showSecrets
	s.handle(post, envPath+"/open", authz.EnvOpen, s.openEnv)
	s.handleAudited(get, envPath+"/open/{session}", authz.EnvOpen, s.readSession)
	s.handle(get, envPath+"/versions/{version}", authz.EnvRead, s.getEnvDef)
	// One pattern serves versions/{v}/decrypt (refined to env:open) and versions/tags/{tag}:
	// the two would be ambiguous patterns for the mux.
	s.handleAudited(get, envPath+"/versions/{version}/{sub}", authz.EnvRead, s.getVersionSub)
	s.handle(post, envPath+"/versions/{version}/open", authz.EnvOpen, s.openEnv)
	s.handle(post, envPath+"/versions/{version}/retract", authz.EnvWrite, s.retractRevision)
	s.handle(get, envPath+"/versions/tags", authz.EnvRead, s.listEnvTags)
	s.handle(post, envPath+"/versions/tags", authz.EnvWrite, s.createEnvTag)
	s.handle(patch, envPath+"/versions/tags/{tag}", authz.EnvWrite, s.updateEnvTag)
	s.handle(del, envPath+"/versions/tags/{tag}", authz.EnvWrite, s.deleteEnvTag)
	s.handle(patch, envPath+"/settings", authz.EnvAdmin, s.patchEnvSettings)
	// Environment tags (GET E/tags is served by getEnvSub). Tags select protection rules, so
	// editing them is a protected change (env:write).
	s.handle(post, envPath+"/tags", authz.EnvWrite, s.createEnvKVTag)
	s.handle(get, envPath+"/tags/{name}", authz.EnvRead, s.getEnvKVTag)
	s.handle(patch, envPath+"/tags/{name}", authz.EnvWrite, s.updateEnvKVTag)
	s.handle(del, envPath+"/tags/{name}", authz.EnvWrite, s.deleteEnvKVTag)
}

// handleAudited declares a GET route whose successful calls are audited (secret values
// in the clear).
func (s *Server) handleAudited(method, pattern string, action authz.Action, h func(*Request) (any, error)) {
	s.handle(method, pattern, action, h)
	s.routes[len(s.routes)-1].Audit = true
}

func (s *Server) envs() *esc.Service {
	s.escOnce.Do(func() {
		s.escSvc = esc.New(s.store, s.secrets, nil)
		s.escSvc.SetMaxOpenDuration(s.cfg.EnvMaxOpenDuration) // <= 0: the default, 24h
	})
	return s.escSvc
}

// resolveEnv loads the environment named in the path (called by resolve).
func resolveEnv(rq *Request, tx gatehouse.Tx, project, name string) error {
	rq.event.Target = rq.Org.Name + "/" + project + "/" + name
	env, err := tx.GetEnvironment(rq.Org.ID, project, name)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return notFound(rq, err)
		}
		return err
	}
	rq.Env = env
	return nil
}

// envAccess decides, per imported environment, whether the caller may use it.
func (rq *Request) envAccess() esc.Access {
	return func(env *gatehouse.Environment, open bool) error {
		a := authz.EnvRead
		if open {
			a = authz.EnvOpen
		}
		d := authz.Decide(rq.Subject, a, authz.Resource{Org: rq.Org, Env: env}, rq.facts)
		if d.Hide && rq.event.Reason == "" {
			// A hidden import reads as a missing one to the caller; the audit event says
			// why (a refused one is named in the error message, the event's reason).
			rq.event.Reason = "import " + env.Ref().String() + " hidden: " + d.Reason
		}
		switch {
		case d.Allow && open:
			return rq.checkOpenLimit(env)
		case d.Allow:
			return nil
		case d.Hide:
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "not found")
		}
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s", d.Reason)
	}
}

// checkOpenLimit refuses an open longer than the caller's grants on env allow
// (maxOpenDuration).
func (rq *Request) checkOpenLimit(env *gatehouse.Environment) error {
	if rq.envOpenFor <= 0 {
		return nil
	}
	if limit := authz.EnvOpenLimit(rq.Subject, env, rq.Org, rq.facts); limit > 0 && rq.envOpenFor > limit {
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "environment %s may be opened for at most %s by you (the maxOpenDuration of your team's grant); you asked for %s", env.Ref(), limit, rq.envOpenFor)
	}
	return nil
}

func (rq *Request) evalRequest(env *gatehouse.Environment, def []byte) esc.EvalRequest {
	login := rq.Subject.Name()
	return esc.EvalRequest{Org: rq.Org, Env: env, Definition: def, Access: rq.envAccess(), UserLogin: login, Stacks: &stackReader{rq: rq}}
}

func envETag(env *gatehouse.Environment, rev int) string {
	return strconv.FormatInt(env.ID, 10) + "-" + strconv.Itoa(rev)
}

// revisionOf parses an ETag made by envETag for env: the revision it was read at.
func revisionOf(env *gatehouse.Environment, tag string) (int, bool) {
	id, rev, ok := strings.Cut(strings.Trim(tag, `"`), "-")
	n, err := strconv.Atoi(rev)
	if !ok || err != nil || id != strconv.FormatInt(env.ID, 10) {
		return 0, false
	}
	return n, true
}

func (rq *Request) setRevision(env *gatehouse.Environment, rev int) {
	h := rq.ResponseHeader()
	h.Set("ETag", envETag(env, rev))
	h.Set(revisionHeader, strconv.Itoa(rev))
	rq.Detail("revision", strconv.Itoa(rev))
}

// --- listing and creation ---

type envSummary struct {
	ID           string `json:"id"`
	Organization string `json:"organization"`
	Project      string `json:"project"`
	Name         string `json:"name"`
	Created      string `json:"created"`
	Modified     string `json:"modified"`
}

func (s *Server) listEnvs(rq *Request) (any, error) {
	resp := struct {
		Environments []envSummary `json:"environments"`
		NextToken    string       `json:"nextToken"`
	}{Environments: []envSummary{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		type orgFacts struct {
			org   *gatehouse.Org
			facts authz.Facts
		}
		orgs := map[int64]orgFacts{}
		var ids []int64
		add := func(o gatehouse.Org, f authz.Facts) {
			oc := o
			orgs[o.ID] = orgFacts{org: &oc, facts: f}
			ids = append(ids, o.ID)
		}
		switch {
		case rq.Org != nil:
			add(*rq.Org, rq.facts)
		case rq.Subject.Kind == authz.UserKind:
			oms, err := tx.ListUserOrgs(rq.Subject.User.ID)
			if err != nil {
				return err
			}
			for _, om := range oms {
				if !rq.Subject.ActsIn(om.Org.ID) {
					continue // an OIDC-issued personal token: its organization only
				}
				if ok, err := s.orgListable(rq, tx, &om.Org); err != nil {
					return err
				} else if !ok {
					continue // its allow-list or its SSO requirement refuses the caller
				}
				f, err := loadFacts(tx, rq.Subject, &om.Org)
				if err != nil {
					return err
				}
				add(om.Org, f)
			}
		case rq.Subject.Token != nil:
			o, err := tx.GetOrg(rq.Subject.Token.OrgID)
			if err != nil {
				return err
			}
			f, err := loadFacts(tx, rq.Subject, o)
			if err != nil {
				return err
			}
			add(*o, f)
		}
		cont := rq.URL.Query().Get("continuationToken")
		for {
			envs, next, err := tx.ListEnvironments(gatehouse.EnvFilter{OrgIDs: ids, Continuation: cont, Limit: s.cfg.StackPageSize})
			if err != nil {
				return err
			}
			for i := range envs {
				en := &envs[i]
				of := orgs[en.OrgID]
				if !authz.Decide(rq.Subject, authz.EnvRead, authz.Resource{Org: of.org, Env: en}, of.facts).Allow {
					continue
				}
				resp.Environments = append(resp.Environments, envSummary{ID: strconv.FormatInt(en.ID, 10), Organization: en.OrgName,
					Project: en.Project, Name: en.Name, Created: en.Created.Format(time.RFC3339), Modified: en.Modified.Format(time.RFC3339)})
			}
			cont = next
			if next == "" || len(resp.Environments) > 0 {
				break
			}
		}
		resp.NextToken = cont
		return nil
	})
	return resp, err
}

func (s *Server) createEnv(rq *Request) (any, error) {
	var req struct {
		Project string `json:"project"`
		Name    string `json:"name"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.Project == "" {
		req.Project = esc.DefaultProject
	}
	if err := esc.ValidateName("project", req.Project); err != nil {
		return nil, err
	}
	if err := esc.ValidateName("environment", req.Name); err != nil {
		return nil, err
	}
	rq.event.Target = rq.Org.Name + "/" + req.Project + "/" + req.Name
	if err := rq.authorize(authz.EnvCreate, authz.Resource{Org: rq.Org, NewEnv: &authz.NewEnv{Project: req.Project, Name: req.Name}}); err != nil {
		return nil, err
	}
	env := &gatehouse.Environment{OrgID: rq.Org.ID, OrgName: rq.Org.Name, Project: req.Project, Name: req.Name, CreatedBy: rq.Subject.Name()}
	if rq.Subject.Kind == authz.UserKind && !rq.Subject.Pipeline {
		env.CreatorUserID = rq.Subject.User.ID // people only: a machine's creation gives no one admin
	}
	if err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.CreateEnvironment(env, nil); err != nil {
			return err
		}
		return rq.envEvent(tx, env, webhook.EnvironmentCreated, "created", 0, "")
	}); err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return noContent{}, nil
}

// --- definitions ---

// getEnvDef serves GET E and GET E/versions/{version} (env:read): the definition as stored,
// secrets as ciphertext. It never decrypts, whatever the path ends with (an environment or a
// revision tag may be named "decrypt"): decrypting is getEnvSub's and getVersionSub's, after
// env:open.
func (s *Server) getEnvDef(rq *Request) (any, error) {
	return s.envDefinition(rq, rq.PathValue("version"), false)
}

// getEnvSub serves GET E/decrypt, E/versions, E/settings, E/tags and E/hooks.
func (s *Server) getEnvSub(rq *Request) (any, error) {
	switch rq.PathValue("what") {
	case "decrypt":
		if err := rq.Authorize(authz.EnvOpen); err != nil {
			return nil, err
		}
		return s.envDefinition(rq, "", true)
	case "versions":
		return s.listRevisions(rq)
	case "settings":
		return s.getEnvSettings(rq)
	case "tags":
		return s.listEnvKVTags(rq)
	case "hooks":
		if err := rq.Authorize(authz.EnvWebhooks); err != nil {
			return nil, err
		}
		return s.listWebhooks(rq)
	}
	return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such route: %s %s", rq.Method, rq.URL.Path)
}

// getVersionSub serves GET E/versions/{version}/decrypt and GET E/versions/tags/{tag}.
func (s *Server) getVersionSub(rq *Request) (any, error) {
	version, sub := rq.PathValue("version"), rq.PathValue("sub")
	if version == "tags" {
		return s.getEnvTag(rq, sub)
	}
	if sub != "decrypt" {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no such route: %s %s", rq.Method, rq.URL.Path)
	}
	if err := rq.Authorize(authz.EnvOpen); err != nil {
		return nil, err
	}
	return s.envDefinition(rq, version, true)
}

func (s *Server) envDefinition(rq *Request, version string, decrypt bool) (any, error) {
	var rev *gatehouse.EnvRevision
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		rev, err = esc.LoadRevision(tx, rq.Env, version)
		return err
	}); err != nil {
		return nil, err
	}
	body := rev.YAML
	if decrypt {
		var err error
		if body, err = s.envs().DecryptSecrets(rq.Context(), rq.Env, body); err != nil {
			return nil, err
		}
	}
	rq.setRevision(rq.Env, rev.Number)
	return rawJSON(body), nil // raw YAML: the CLI reads the body verbatim
}

func (s *Server) updateEnv(rq *Request) (any, error) {
	def, err := rq.readDefinition()
	if err != nil {
		return nil, err
	}
	expect := -1
	if tag := rq.Header.Get("ETag"); tag != "" {
		n, ok := revisionOf(rq.Env, tag)
		if !ok || n != rq.Env.Revision {
			return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "the environment has changed since you read it (ETag %q is not the current one): read it again", tag)
		}
		expect = n
	}
	// Check the definition as written (plaintext secrets included), then encrypt them.
	diags, err := s.envs().Check(rq.Context(), rq.evalRequest(rq.Env, def))
	if err != nil {
		return nil, err
	}
	stored, err := s.envs().EncryptSecrets(rq.Context(), rq.Env, def)
	if err != nil {
		return nil, err
	}
	var rev int
	if err := rq.Change(func(tx gatehouse.Tx) error {
		var err error
		rev, err = tx.PutEnvRevision(rq.Env.ID, expect, stored, rq.Subject.Name())
		if err != nil {
			return err
		}
		rq.Detail("revision", strconv.Itoa(rev))
		if err := rq.envEvent(tx, rq.Env, webhook.EnvironmentRevisionCreated, "created", rev, ""); err != nil {
			return err
		}
		return rq.importedEnvEvents(tx, rq.Env, rev)
	}); err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	rq.setRevision(rq.Env, rev)
	return map[string]any{"diagnostics": nonNil(diags)}, nil
}

func nonNil(d esc.Diagnostics) esc.Diagnostics {
	if d == nil {
		return esc.Diagnostics{}
	}
	return d
}

func (s *Server) deleteEnv(rq *Request) (any, error) {
	rq.Detail("revision", strconv.Itoa(rq.Env.Revision))
	if err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.DeleteEnvironment(rq.Env.ID); err != nil { // with its webhooks
			return err
		}
		return rq.envEvent(tx, rq.Env, webhook.EnvironmentDeleted, "deleted", 0, "")
	}); err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	s.envs().Keys().Forget(rq.Env.ID)
	return noContent{}, nil
}

// --- check and open ---

type checkResponse struct {
	*pesc.Environment
	Diagnostics esc.Diagnostics `json:"diagnostics,omitempty"`
}

func showSecrets(rq *Request) (bool, error) {
	v := rq.URL.Query().Get("showSecrets")
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, gatehouse.Errorf(gatehouse.EINVALID, "showSecrets must be true or false")
	}
	return b, nil
}

// checkYAML checks an anonymous definition (env get, env edit, pulumi config). Its imports
// need read, or open with showSecrets.
func (s *Server) checkYAML(rq *Request) (any, error) {
	show, err := showSecrets(rq)
	if err != nil {
		return nil, err
	}
	def, err := rq.readDefinition()
	if err != nil {
		return nil, err
	}
	rq.Detail("showSecrets", strconv.FormatBool(show))
	er := rq.evalRequest(nil, def)
	er.Check, er.ShowSecrets = true, show
	out, diags, err := s.envs().Evaluate(rq.Context(), er)
	if err != nil {
		return nil, err
	}
	return checkResponse{Environment: out, Diagnostics: diags}, nil
}

// checkEnv checks a definition (the body, or the stored one when the body is empty) as
// the environment: its ciphertext decrypts with showSecrets, which needs open.
func (s *Server) checkEnv(rq *Request) (any, error) {
	show, err := showSecrets(rq)
	if err != nil {
		return nil, err
	}
	if show {
		if err := rq.Authorize(authz.EnvOpen); err != nil {
			return nil, err
		}
	}
	def, err := rq.readDefinition()
	if err != nil {
		return nil, err
	}
	rev := rq.Env.Revision
	if len(strings.TrimSpace(string(def))) == 0 {
		if err := rq.View(func(tx gatehouse.Tx) error {
			r, err := tx.GetEnvRevision(rq.Env.ID, rev)
			if err == nil {
				def = r.YAML
			}
			return err
		}); err != nil {
			return nil, err
		}
	}
	rq.Detail("revision", strconv.Itoa(rev))
	rq.Detail("showSecrets", strconv.FormatBool(show))
	er := rq.evalRequest(rq.Env, def)
	er.Check, er.ShowSecrets = true, show
	out, diags, err := s.envs().Evaluate(rq.Context(), er)
	if err != nil {
		return nil, err
	}
	return checkResponse{Environment: out, Diagnostics: diags}, nil
}

// sessionOwner binds an open session to the credential that opened it.
func sessionOwner(sub *authz.Subject) string {
	if sub.Token != nil {
		return "token:" + sub.Token.ID
	}
	if sub.User != nil {
		return "user:" + strconv.FormatInt(sub.User.ID, 10)
	}
	if sub.Deployment != nil {
		return "deployment:" + sub.Deployment.ID
	}
	return ""
}

func parseOpenDuration(v string, limit time.Duration) (time.Duration, error) {
	if v == "" {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "duration is required (a Go duration such as 2h0m0s)")
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "invalid duration %q: want a Go duration such as 2h0m0s", v)
	}
	if d <= 0 {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "duration must be positive")
	}
	if d > limit {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "duration %s is longer than this server allows (%s)", d, limit)
	}
	return d, nil
}

func (s *Server) openEnv(rq *Request) (any, error) {
	d, err := parseOpenDuration(rq.URL.Query().Get("duration"), s.envs().MaxOpenDuration())
	if err != nil {
		return nil, err
	}
	rq.Detail("duration", d.String())
	rq.envOpenFor = d
	if err := rq.checkOpenLimit(rq.Env); err != nil {
		return nil, err
	}
	var rev *gatehouse.EnvRevision
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		rev, err = esc.LoadRevision(tx, rq.Env, rq.PathValue("version"))
		return err
	}); err != nil {
		return nil, err
	}
	rq.Detail("revision", strconv.Itoa(rev.Number))
	er := rq.evalRequest(rq.Env, rev.YAML)
	er.ShowSecrets = true
	return s.openSession(rq, er, rq.Env.ID, &gatehouse.EnvSession{EnvID: rq.Env.ID, Revision: rev.Number}, d)
}

// openSession evaluates er, seals its values (they hold secrets in the clear) with the key
// of keyID (the environment's, or the organization's session key -orgID for an anonymous
// definition) and stores them as the caller's session sess, open for d.
func (s *Server) openSession(rq *Request, er esc.EvalRequest, keyID int64, sess *gatehouse.EnvSession, d time.Duration) (any, error) {
	out, diags, err := s.envs().Evaluate(rq.Context(), er)
	if err != nil {
		return nil, err
	}
	plain, err := json.Marshal(out)
	if err != nil {
		return nil, err
	}
	// The evaluated values hold secrets in the clear: they are stored sealed.
	sealed, err := s.envs().Keys().Encrypt(rq.Context(), keyID, plain)
	clear(plain)
	if err != nil {
		return nil, err
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	sess.ID, sess.OrgID, sess.Owner, sess.Data = hex.EncodeToString(id[:]), rq.Org.ID, sessionOwner(rq.Subject), sealed
	if err := rq.Change(func(tx gatehouse.Tx) error {
		sess.Expires = tx.Now().Add(d)
		return tx.CreateEnvSession(sess)
	}); err != nil {
		return nil, err
	}
	return map[string]any{"id": sess.ID, "diagnostics": nonNil(diags)}, nil
}

// openYAML opens an anonymous definition: what `pulumi up` sends for a stack's
// `environment:` (JSON {"imports": [...]} or an inline definition), with the CLI's
// environmentOverrides (base64url JSON map of import renames). Each import needs open.
func (s *Server) openYAML(rq *Request) (any, error) {
	q := rq.URL.Query()
	d, err := parseOpenDuration(q.Get("duration"), s.envs().MaxOpenDuration())
	if err != nil {
		return nil, err
	}
	rq.Detail("duration", d.String())
	rq.envOpenFor = d
	rq.Detail("environment", esc.AnonymousName)
	var overrides map[string]string
	if v := q.Get("environmentOverrides"); v != "" {
		b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(v, "="))
		if err != nil || json.Unmarshal(b, &overrides) != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "environmentOverrides must be a base64url-encoded JSON object of names")
		}
	}
	def, err := rq.readDefinition()
	if err != nil {
		return nil, err
	}
	er := rq.evalRequest(nil, def)
	er.ShowSecrets, er.Overrides = true, overrides
	return s.openSession(rq, er, -rq.Org.ID, &gatehouse.EnvSession{}, d)
}

// readSession returns an open session's values (whole, or ?property=path). Unknown,
// expired and other callers' sessions are all 404.
func (s *Server) readSession(rq *Request) (any, error) {
	id := rq.PathValue("session")
	var sess *gatehouse.EnvSession
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		sess, err = tx.GetEnvSession(id)
		return err
	})
	gone := gatehouse.Errorf(gatehouse.ENOTFOUND, "open session '%s' not found or expired", id)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, gone
		}
		return nil, err
	}
	keyID := -rq.Org.ID // anonymous sessions: the organization's session key
	if rq.Env != nil {
		keyID = rq.Env.ID
		rq.Detail("revision", strconv.Itoa(sess.Revision))
	} else {
		rq.Detail("environment", esc.AnonymousName)
	}
	if sess.OrgID != rq.Org.ID || sess.EnvID != max(keyID, 0) || sess.Owner != sessionOwner(rq.Subject) {
		return nil, gone
	}
	rq.Detail("session", id)
	plain, err := s.envs().Keys().Decrypt(rq.Context(), keyID, sess.Data)
	if err != nil {
		return nil, err
	}
	prop := rq.URL.Query().Get("property")
	if prop == "" {
		return rawJSON(plain), nil
	}
	rq.Detail("property", truncate(prop, 256))
	var env pesc.Environment
	if err := json.Unmarshal(plain, &env); err != nil {
		return nil, err
	}
	path, err := resource.ParsePropertyPath(prop)
	if err != nil || len(path) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid property path %q", prop)
	}
	v, ok := lookupProperty(env.Properties, path)
	if !ok {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "property %q not found", prop)
	}
	return v, nil
}

func lookupProperty(props map[string]pesc.Value, path resource.PropertyPath) (pesc.Value, bool) {
	v := pesc.NewValue(props)
	for _, k := range path {
		switch k := k.(type) {
		case string:
			m, ok := v.Value.(map[string]pesc.Value)
			if !ok {
				return pesc.Value{}, false
			}
			if v, ok = m[k]; !ok {
				return pesc.Value{}, false
			}
		case int:
			l, ok := v.Value.([]pesc.Value)
			if !ok || k < 0 || k >= len(l) {
				return pesc.Value{}, false
			}
			v = l[k]
		default:
			return pesc.Value{}, false
		}
	}
	return v, true
}

// --- revisions and tags ---

type revisionJSON struct {
	Number       int            `json:"number"`
	Created      string         `json:"created"`
	CreatorLogin string         `json:"creatorLogin"`
	CreatorName  string         `json:"creatorName"`
	Tags         []string       `json:"tags,omitempty"`
	Retracted    *retractedJSON `json:"retracted,omitempty"`
}

type retractedJSON struct {
	Replacement int    `json:"replacement"`
	At          string `json:"at"`
	ByLogin     string `json:"byLogin,omitempty"`
	ByName      string `json:"byName,omitempty"`
	Reason      string `json:"reason,omitempty"`
}

// retractRevision serves POST E/versions/{version}/retract {"replacement": n?, "reason": ""}.
func (s *Server) retractRevision(rq *Request) (any, error) {
	var req struct {
		Replacement *int   `json:"replacement"`
		Reason      string `json:"reason"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if len(req.Reason) > 1024 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "reason is longer than 1024 bytes")
	}
	replacement := 0
	if req.Replacement != nil {
		if *req.Replacement < 1 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "replacement must be a revision number")
		}
		replacement = *req.Replacement
	}
	if err := rq.Change(func(tx gatehouse.Tx) error {
		n, err := esc.ResolveVersion(tx, rq.Env, rq.PathValue("version"))
		if err != nil {
			return err
		}
		rq.Detail("revision", strconv.Itoa(n))
		if req.Reason != "" {
			rq.Detail("reason", truncate(req.Reason, 256))
		}
		used, err := tx.RetractEnvRevision(rq.Env.ID, n, replacement, rq.Subject.Name(), req.Reason)
		if err != nil {
			return err
		}
		rq.Detail("replacement", strconv.Itoa(used))
		return rq.envEvent(tx, rq.Env, webhook.EnvironmentRevisionRetracted, "retracted", n, "")
	}); err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return noContent{}, nil
}

func queryInt(rq *Request, name string) (int, error) {
	v := rq.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, gatehouse.Errorf(gatehouse.EINVALID, "%s must be a non-negative integer", name)
	}
	return n, nil
}

func (s *Server) listRevisions(rq *Request) (any, error) {
	before, err := queryInt(rq, "before")
	if err != nil {
		return nil, err
	}
	count, err := queryInt(rq, "count")
	if err != nil {
		return nil, err
	}
	out := []revisionJSON{}
	err = rq.View(func(tx gatehouse.Tx) error {
		revs, err := tx.ListEnvRevisions(rq.Env.ID, before, count)
		for _, r := range revs {
			tags := r.Tags
			if r.Number == rq.Env.Revision {
				tags = append([]string{"latest"}, tags...)
			}
			rj := revisionJSON{Number: r.Number, Created: r.Created.Format(time.RFC3339), CreatorLogin: r.CreatorLogin, CreatorName: r.CreatorLogin, Tags: tags}
			if rt := r.Retracted; rt != nil {
				rj.Retracted = &retractedJSON{Replacement: rt.Replacement, At: rt.At.Format(time.RFC3339), ByLogin: rt.ByLogin, ByName: rt.ByLogin, Reason: rt.Reason}
			}
			out = append(out, rj)
		}
		return err
	})
	return out, err
}

type envTagJSON struct {
	Name        string `json:"name"`
	Revision    int    `json:"revision"`
	Created     string `json:"created"`
	Modified    string `json:"modified"`
	EditorLogin string `json:"editorLogin"`
	EditorName  string `json:"editorName"`
}

func tagJSON(t gatehouse.EnvTag) envTagJSON {
	return envTagJSON{Name: t.Name, Revision: t.Revision, Created: t.Created.Format(time.RFC3339), Modified: t.Modified.Format(time.RFC3339), EditorLogin: t.EditorLogin, EditorName: t.EditorLogin}
}

func latestTag(env *gatehouse.Environment) envTagJSON {
	return tagJSON(gatehouse.EnvTag{Name: "latest", Revision: env.Revision, Created: env.Created, Modified: env.Modified})
}

// listEnvTags lists revision tags by name, after the name ?after= (the CLI pages until it
// gets an empty page), at most ?count= (default all).
func (s *Server) listEnvTags(rq *Request) (any, error) {
	count, err := queryInt(rq, "count")
	if err != nil {
		return nil, err
	}
	after := rq.URL.Query().Get("after")
	all := []envTagJSON{latestTag(rq.Env)}
	if err := rq.View(func(tx gatehouse.Tx) error {
		tags, err := tx.ListEnvTags(rq.Env.ID)
		for _, t := range tags {
			all = append(all, tagJSON(t))
		}
		return err
	}); err != nil {
		return nil, err
	}
	sort.Slice(all, func(i, j int) bool { return all[i].Name < all[j].Name })
	out := []envTagJSON{}
	for _, t := range all {
		if t.Name > after && (count == 0 || len(out) < count) {
			out = append(out, t)
		}
	}
	return map[string]any{"tags": out, "nextToken": ""}, nil
}

func (s *Server) getEnvTag(rq *Request, name string) (any, error) {
	if name == "latest" {
		return latestTag(rq.Env), nil
	}
	var t *gatehouse.EnvTag
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		t, err = tx.GetEnvTag(rq.Env.ID, name)
		return err
	})
	if err != nil {
		return nil, err
	}
	return tagJSON(*t), nil
}

func validTagName(name string) error {
	if name == "latest" {
		return gatehouse.Errorf(gatehouse.EINVALID, "tag latest is implicit: it always names the newest revision")
	}
	if err := esc.ValidateName("tag", name); err != nil {
		return err
	}
	if name[0] >= '0' && name[0] <= '9' {
		return gatehouse.Errorf(gatehouse.EINVALID, "tag %q must not start with a digit (that names a revision)", name)
	}
	return nil
}

func (s *Server) createEnvTag(rq *Request) (any, error) {
	var req struct {
		Name     string `json:"name"`
		Revision *int   `json:"revision"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validTagName(req.Name); err != nil {
		return nil, err
	}
	t := gatehouse.EnvTag{EnvID: rq.Env.ID, Name: req.Name, Revision: rq.Env.Revision, EditorLogin: rq.Subject.Name()}
	if req.Revision != nil {
		t.Revision = *req.Revision
	}
	rq.Detail("tag", t.Name)
	rq.Detail("revision", strconv.Itoa(t.Revision))
	if err := s.changeEnvTag(rq, webhook.EnvironmentRevisionTagCreated, "created", t.Revision, t.Name, func(tx gatehouse.Tx) error {
		return tx.CreateEnvTag(&t)
	}); err != nil {
		return nil, err
	}
	return tagJSON(t), nil
}

// changeEnvTag runs op, a change of the environment's tag name, with its webhook event
// (action, revision) in one audited change, then wakes the webhook deliveries.
func (s *Server) changeEnvTag(rq *Request, event, action string, revision int, name string, op func(gatehouse.Tx) error) error {
	if err := rq.Change(func(tx gatehouse.Tx) error {
		if err := op(tx); err != nil {
			return err
		}
		return rq.envEvent(tx, rq.Env, event, action, revision, name)
	}); err != nil {
		return err
	}
	s.wakeWebhooks()
	return nil
}

func (s *Server) updateEnvTag(rq *Request) (any, error) {
	name := rq.PathValue("tag")
	if err := validTagName(name); err != nil {
		return nil, err
	}
	var req struct {
		Revision *int `json:"revision"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	rev := rq.Env.Revision
	if req.Revision != nil {
		rev = *req.Revision
	}
	rq.Detail("tag", name)
	rq.Detail("revision", strconv.Itoa(rev))
	if err := s.changeEnvTag(rq, webhook.EnvironmentRevisionTagUpdated, "updated", rev, name, func(tx gatehouse.Tx) error {
		return tx.UpdateEnvTag(rq.Env.ID, name, rev, rq.Subject.Name())
	}); err != nil {
		return nil, err
	}
	return noContent{}, nil
}

func (s *Server) deleteEnvTag(rq *Request) (any, error) {
	name := rq.PathValue("tag")
	if err := validTagName(name); err != nil {
		return nil, err
	}
	rq.Detail("tag", name)
	if err := s.changeEnvTag(rq, webhook.EnvironmentRevisionTagDeleted, "deleted", 0, name, func(tx gatehouse.Tx) error {
		return tx.DeleteEnvTag(rq.Env.ID, name)
	}); err != nil {
		return nil, err
	}
	return noContent{}, nil
}

// --- settings ---

func (s *Server) getEnvSettings(rq *Request) (any, error) {
	return map[string]bool{"deletionProtected": rq.Env.DeletionProtected}, nil
}

func (s *Server) patchEnvSettings(rq *Request) (any, error) {
	var req struct {
		DeletionProtected *bool `json:"deletionProtected"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	p := rq.Env.DeletionProtected
	if req.DeletionProtected != nil {
		p = *req.DeletionProtected
	}
	rq.Detail("deletionProtected", strconv.FormatBool(p))
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.SetEnvironmentProtected(rq.Env.ID, p) }); err != nil {
		return nil, err
	}
	return map[string]bool{"deletionProtected": p}, nil
}

// --- team environment permissions (the team PATCH and GET in admin.go) ---

// envPermJSON is Pulumi's team environment permission. envName "" (a Gatehouse extension)
// names every environment of the ESC project.
type envPermJSON struct {
	ProjectName string `json:"projectName,omitempty"`
	// Tag (name=value, a Gatehouse extension) selects every environment with that tag.
	Tag        string `json:"tag,omitempty"`
	EnvName    string `json:"envName,omitempty"`
	Permission string `json:"permission,omitempty"`
	// MaxOpenDuration caps how long members open through this grant (a Go duration).
	MaxOpenDuration string `json:"maxOpenDuration,omitempty"`
}

// describe names the grant's scope for audit details: project/name, project/ or tag=v.
func (p *envPermJSON) describe() string {
	if p.Tag != "" {
		return "tag " + p.Tag
	}
	return p.ProjectName + "/" + p.EnvName
}

func envScope(rq *Request, tx gatehouse.Tx, p *envPermJSON) (gatehouse.Scope, error) {
	if p.Tag != "" {
		name, value, ok := strings.Cut(p.Tag, "=")
		if !ok || p.ProjectName != "" || p.EnvName != "" {
			return gatehouse.Scope{}, gatehouse.Errorf(gatehouse.EINVALID, "an environment tag grant names tag as name=value and no projectName or envName")
		}
		if err := validKVTag(name, value); err != nil {
			return gatehouse.Scope{}, err
		}
		return gatehouse.Scope{EnvTagName: name, EnvTagValue: value}, nil
	}
	if err := esc.ValidateName("project", p.ProjectName); err != nil {
		return gatehouse.Scope{}, err
	}
	if p.EnvName == "" {
		return gatehouse.Scope{EnvProject: p.ProjectName}, nil
	}
	env, err := tx.GetEnvironment(rq.Org.ID, p.ProjectName, p.EnvName)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return gatehouse.Scope{}, gatehouse.Errorf(gatehouse.EINVALID, "environment %s/%s/%s does not exist", rq.Org.Name, p.ProjectName, p.EnvName)
		}
		return gatehouse.Scope{}, err
	}
	return gatehouse.Scope{EnvID: env.ID}, nil
}

// teamEnvGrant applies addEnvironmentPermission / removeEnvironment of a team PATCH.
func teamEnvGrant(rq *Request, tx gatehouse.Tx, t *gatehouse.Team, add, remove *envPermJSON) error {
	if add != nil {
		sc, err := envScope(rq, tx, add)
		if err != nil {
			return err
		}
		perm, err := gatehouse.ParseEnvPermission(add.Permission)
		if err != nil {
			return err
		}
		if perm == gatehouse.EnvNone {
			return gatehouse.Errorf(gatehouse.EINVALID, "an environment permission needs read, open, write or admin")
		}
		var maxOpen time.Duration
		if v := add.MaxOpenDuration; v != "" {
			if maxOpen, err = time.ParseDuration(v); err != nil || maxOpen < time.Second {
				return gatehouse.Errorf(gatehouse.EINVALID, "maxOpenDuration %q must be a Go duration of at least 1s, such as 2h0m0s", v)
			}
			maxOpen = maxOpen.Truncate(time.Second)
		}
		p, dec := gatehouse.EnvGrantPermission(perm)
		detail := add.describe() + ":" + perm.String()
		if maxOpen > 0 {
			detail += " maxOpenDuration=" + maxOpen.String()
		}
		rq.Detail("environmentGrant", detail)
		if err := tx.PutGrant(&gatehouse.Grant{TeamID: t.ID, Scope: sc, Permission: p, Decrypt: dec, MaxOpen: maxOpen}); err != nil {
			return err
		}
	}
	if remove != nil {
		sc, err := envScope(rq, tx, remove)
		if err != nil {
			return err
		}
		rq.Detail("removedEnvironmentGrant", remove.describe())
		return tx.DeleteGrant(t.ID, sc)
	}
	return nil
}

// teamEnvironments lists a team's environment grants in Pulumi's shape.
func teamEnvironments(tx gatehouse.Tx, gs []gatehouse.Grant) ([]envPermJSON, error) {
	var out []envPermJSON
	for _, g := range gs {
		perm := gatehouse.EnvPermissionOf(g.Permission, g.Decrypt).String()
		var maxOpen string
		if g.MaxOpen > 0 {
			maxOpen = g.MaxOpen.String()
		}
		switch {
		case g.Scope.EnvTagName != "":
			out = append(out, envPermJSON{Tag: g.Scope.EnvTagName + "=" + g.Scope.EnvTagValue, Permission: perm, MaxOpenDuration: maxOpen})
		case g.Scope.EnvProject != "":
			out = append(out, envPermJSON{ProjectName: g.Scope.EnvProject, Permission: perm, MaxOpenDuration: maxOpen})
		case g.Scope.EnvID != 0:
			env, err := tx.GetEnvironmentByID(g.Scope.EnvID)
			if err != nil {
				return nil, err
			}
			out = append(out, envPermJSON{ProjectName: env.Project, EnvName: env.Name, Permission: perm, MaxOpenDuration: maxOpen})
		}
	}
	return out, nil
}

// --- environment tags (name/value metadata) ---

type envKVTagJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Value       string `json:"value"`
	Created     string `json:"created"`
	Modified    string `json:"modified"`
	EditorLogin string `json:"editorLogin"`
	EditorName  string `json:"editorName"`
}

func kvTagJSON(t gatehouse.EnvKVTag) envKVTagJSON {
	return envKVTagJSON{ID: t.Name, Name: t.Name, Value: t.Value, Created: t.Created.Format(time.RFC3339), Modified: t.Modified.Format(time.RFC3339), EditorLogin: t.EditorLogin, EditorName: t.EditorLogin}
}

func validKVTag(name, value string) error {
	if name == "" || len(name) > 256 || !tagKeyRE.MatchString(name) {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid environment tag name %q", name)
	}
	if len(value) > 256 {
		return gatehouse.Errorf(gatehouse.EINVALID, "environment tag values are at most 256 characters")
	}
	return nil
}

// listEnvKVTags answers GET E/tags?after=&count= (a map by name, as the CLI reads it).
func (s *Server) listEnvKVTags(rq *Request) (any, error) {
	count, err := queryInt(rq, "count")
	if err != nil {
		return nil, err
	}
	after := rq.URL.Query().Get("after")
	out := map[string]envKVTagJSON{}
	// The CLI's env tag ls pages until nextToken is "0" (not ""): the last page says "0".
	next := "0"
	err = rq.View(func(tx gatehouse.Tx) error {
		tags, err := tx.ListEnvKVTags(rq.Env.ID)
		// Byte order, whatever the database's collation: pages are cut by name.
		sort.Slice(tags, func(i, j int) bool { return tags[i].Name < tags[j].Name })
		for _, t := range tags {
			if t.Name <= after {
				continue
			}
			if count > 0 && len(out) == count {
				next = latestName(out)
				break
			}
			out[t.Name] = kvTagJSON(t)
		}
		return err
	})
	return map[string]any{"tags": out, "nextToken": next}, err
}

func latestName(m map[string]envKVTagJSON) string {
	last := ""
	for k := range m {
		last = max(last, k)
	}
	return last
}

func (s *Server) getEnvKVTag(rq *Request) (any, error) {
	name := rq.PathValue("name")
	tag, ok := rq.Env.Tags[name]
	if !ok {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "environment tag '%s' not found", name)
	}
	var out envKVTagJSON
	err := rq.View(func(tx gatehouse.Tx) error {
		tags, err := tx.ListEnvKVTags(rq.Env.ID)
		for _, t := range tags {
			if t.Name == name {
				out = kvTagJSON(t)
			}
		}
		return err
	})
	out.Value = tag
	return out, err
}

func (s *Server) createEnvKVTag(rq *Request) (any, error) {
	var req struct {
		Name  string `json:"name"`
		Value string `json:"value"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validKVTag(req.Name, req.Value); err != nil {
		return nil, err
	}
	if _, ok := rq.Env.Tags[req.Name]; ok {
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "environment tag '%s' already exists", req.Name)
	}
	t := gatehouse.EnvKVTag{EnvID: rq.Env.ID, Name: req.Name, Value: req.Value, EditorLogin: rq.Subject.Name()}
	rq.Detail("tag", req.Name+"="+req.Value)
	if err := rq.mayRetagEnv("", t.Name, t.Value); err != nil {
		return nil, err
	}
	if err := s.changeEnvTag(rq, webhook.EnvironmentTagCreated, "created", 0, t.Name, func(tx gatehouse.Tx) error {
		return tx.SetEnvKVTag(&t)
	}); err != nil {
		return nil, err
	}
	return kvTagJSON(t), nil
}

// updateEnvKVTag is PATCH E/tags/{name} {"currentTag":{"value"},"newTag":{"name","value"}}.
func (s *Server) updateEnvKVTag(rq *Request) (any, error) {
	name := rq.PathValue("name")
	var req struct {
		CurrentTag struct {
			Value string `json:"value"`
		} `json:"currentTag"`
		NewTag struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"newTag"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	cur, ok := rq.Env.Tags[name]
	if !ok {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "environment tag '%s' not found", name)
	}
	if req.CurrentTag.Value != cur {
		return nil, gatehouse.Errorf(gatehouse.ECONFLICT, "environment tag '%s' has changed: read it again", name)
	}
	newName := req.NewTag.Name
	if newName == "" {
		newName = name
	}
	if err := validKVTag(newName, req.NewTag.Value); err != nil {
		return nil, err
	}
	t := gatehouse.EnvKVTag{EnvID: rq.Env.ID, Name: newName, Value: req.NewTag.Value, EditorLogin: rq.Subject.Name()}
	rq.Detail("tag", name+"="+cur+" -> "+newName+"="+t.Value)
	if err := rq.mayRetagEnv(name, t.Name, t.Value); err != nil {
		return nil, err
	}
	if err := s.changeEnvTag(rq, webhook.EnvironmentTagUpdated, "updated", 0, t.Name, func(tx gatehouse.Tx) error {
		if newName != name {
			if err := tx.DeleteEnvKVTag(rq.Env.ID, name); err != nil {
				return err
			}
		}
		return tx.SetEnvKVTag(&t)
	}); err != nil {
		return nil, err
	}
	return kvTagJSON(t), nil
}

// mayRetagEnv refuses a tag change (tag old, if any, becomes name=value) that would raise
// the caller's own permission on the environment (authz.EnvTagsRaise).
func (rq *Request) mayRetagEnv(old, name, value string) error {
	tags := maps.Clone(rq.Env.Tags)
	if tags == nil {
		tags = map[string]string{}
	}
	delete(tags, old)
	tags[name] = value
	if raise, why := authz.EnvTagsRaise(rq.Subject, rq.Env, rq.Org, rq.facts, tags); raise {
		return gatehouse.Errorf(gatehouse.EFORBIDDEN, "this tag would give you more rights on environment %s/%s (%s): ask an organization admin to tag it", rq.Env.Project, rq.Env.Name, why)
	}
	return nil
}

func (s *Server) deleteEnvKVTag(rq *Request) (any, error) {
	name := rq.PathValue("name")
	rq.Detail("tag", name)
	if err := s.changeEnvTag(rq, webhook.EnvironmentTagDeleted, "deleted", 0, name, func(tx gatehouse.Tx) error {
		return tx.DeleteEnvKVTag(rq.Env.ID, name)
	}); err != nil {
		return nil, err
	}
	return noContent{}, nil
}
