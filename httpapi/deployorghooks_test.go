package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// orgHooks is a deployEnv with a second organization, globex, whose stack proj/prod
// follows the same repository as acme's (github.com/acme/infra), and whose stack
// proj/solo follows github.com/globex/solo.
type orgHooks struct {
	*deployEnv
}

const (
	orgHooksServerSecret = "server-wide-github-secret"
	orgHooksServerToken  = "server-wide-gitlab-token"
)

func newOrgHooks(t *testing.T) *orgHooks {
	gh := newFakeVCS(t)
	d := newDeployEnv(t, func(c *httpapi.Config) {
		c.Deploy.GitHub = deploy_VCS(orgHooksServerSecret, gh.srv.URL, "")
		c.Deploy.GitLab = deploy_VCS(orgHooksServerToken, gh.srv.URL, "")
		c.Deploy.ConsoleURL = "https://gatehouse.example.com"
	})
	a := d.admin
	follow := func(url string) map[string]any {
		return map[string]any{"sourceContext": map[string]any{"git": map[string]any{"repoUrl": url, "branch": "main"}}}
	}
	d.must(d.settings(follow("https://github.com/acme/infra.git")))
	d.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "globex"}}, nil))
	for _, s := range []struct{ stack, repo string }{{"prod", "https://github.com/acme/infra.git"}, {"solo", "https://github.com/globex/solo.git"}} {
		d.must(d.createStack(a, "globex", "proj", s.stack, nil))
		d.must(a.Do(cliwire.Call{Method: "POST", Path: stackPath("globex", "proj", s.stack) + "/deployments/settings", Body: follow(s.repo)}, nil))
	}
	return &orgHooks{d}
}

func ghPush(repo string) []byte {
	return []byte(`{"ref":"refs/heads/main","after":"abc123","repository":{"full_name":"` + repo + `"},"sender":{"login":"octo"},"commits":[]}`)
}

func glPush(url string) []byte {
	return []byte(`{"object_kind":"push","ref":"refs/heads/main","checkout_sha":"c0ffee","user_username":"gl-user",
		"project":{"path_with_namespace":"x/y","git_http_url":"` + url + `"},"commits":[]}`)
}

// deliver posts a GitHub (signed with secret) or GitLab (token secret) push to path and
// returns the status and the stacks ("org/project/stack", sorted) of the runs it queued.
func (o *orgHooks) deliver(path string, body []byte, secret string) (int, []string) {
	o.t.Helper()
	req, err := http.NewRequest("POST", o.url+path, bytes.NewReader(body))
	o.must(err)
	req.Header.Set("Content-Type", "application/json")
	if strings.Contains(path, "/gitlab") {
		req.Header.Set("X-Gitlab-Event", "Push Hook")
		if secret != "" {
			req.Header.Set("X-Gitlab-Token", secret)
		}
	} else {
		req.Header.Set("X-GitHub-Event", "push")
		req.Header.Set("X-GitHub-Delivery", "d-1")
		if secret != "" {
			req.Header.Set("X-Hub-Signature-256", sign(secret, body))
		}
	}
	resp, err := http.DefaultClient.Do(req)
	o.must(err)
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out struct {
		Deployments []string `json:"deployments"`
	}
	if resp.StatusCode == http.StatusAccepted {
		o.must(json.Unmarshal(raw, &out))
	}
	var stacks []string
	o.must(o.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		for _, id := range out.Deployments {
			dep, err := tx.GetDeployment(id)
			if err != nil {
				return err
			}
			st, err := tx.GetStackByID(dep.StackID)
			if err != nil {
				return err
			}
			stacks = append(stacks, st.Ref().String())
		}
		return nil
	}))
	sort.Strings(stacks)
	return resp.StatusCode, stacks
}

func (o *orgHooks) wantRuns(path string, body []byte, secret string, status int, stacks ...string) {
	o.t.Helper()
	got, runs := o.deliver(path, body, secret)
	if got != status || strings.Join(runs, ",") != strings.Join(stacks, ",") {
		o.t.Errorf("POST %s: %d %v, want %d %v", path, got, runs, status, stacks)
	}
}

type vcsView struct {
	Provider    string `json:"provider"`
	Configured  bool   `json:"configured"`
	Created     int64  `json:"created"`
	CreatedBy   string `json:"createdBy"`
	DeliveryURL string `json:"deliveryUrl"`
	Secret      string `json:"secret"`
}

// TestDeployOrgWebhookSecrets: an organization's own webhook secret reaches only its own
// stacks through its own URL, and takes the organization out of the server-wide URL's
// reach (the server-wide secret's holders are every organization's repository admins).
func TestDeployOrgWebhookSecrets(t *testing.T) {
	o := newOrgHooks(t)
	a := o.admin
	const acmeGH, acmeGL = "/api/deployments/webhooks/github/acme", "/api/deployments/webhooks/gitlab/acme"
	const globexGH = "/api/deployments/webhooks/github/globex"
	const wideGH, wideGL = "/api/deployments/webhooks/github", "/api/deployments/webhooks/gitlab"
	push := ghPush("acme/infra")

	// No organization has its own secret: the server-wide URL reaches both (a single-tenant
	// install's setup); the organizations' URLs answer 401.
	o.wantRuns(wideGH, push, orgHooksServerSecret, 202, "acme/proj/prod", "globex/proj/prod")
	o.wantRuns(acmeGH, push, orgHooksServerSecret, 401)
	o.wantRuns(acmeGH, push, "", 401)

	// acme's admin has a GitHub secret generated: shown once, never again.
	var gen vcsView
	o.must(a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/deployments/webhooks/github", Body: map[string]any{"generate": true}}, &gen))
	if len(gen.Secret) != 64 || !gen.Configured || gen.CreatedBy == "" || gen.Created == 0 ||
		gen.DeliveryURL != "https://gatehouse.example.com/api/deployments/webhooks/github/acme" {
		t.Fatalf("PUT generate = %+v", gen)
	}
	acmeSecret := gen.Secret
	for _, p := range []string{"/api/orgs/acme/deployments/webhooks/github", "/api/orgs/acme/deployments/webhooks"} {
		var raw []byte
		o.must(a.Do(cliwire.Call{Method: "GET", Path: p}, &raw))
		if bytes.Contains(raw, []byte(acmeSecret)) || bytes.Contains(raw, []byte(`"secret"`)) || !bytes.Contains(raw, []byte(`"configured":true`)) {
			t.Errorf("GET %s = %s", p, raw)
		}
	}
	var gl vcsView
	o.must(a.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/deployments/webhooks/gitlab"}, &gl))
	if gl.Configured || gl.DeliveryURL != "https://gatehouse.example.com/api/deployments/webhooks/gitlab/acme" {
		t.Errorf("GET gitlab = %+v", gl)
	}

	// acme's URL with acme's secret: acme's stack only, although globex's follows the
	// same repository; a repository only globex follows: nothing.
	o.wantRuns(acmeGH, push, acmeSecret, 202, "acme/proj/prod")
	o.wantRuns(acmeGH, ghPush("globex/solo"), acmeSecret, 204)
	// The server-wide URL no longer reaches acme, by either provider (a GitLab delivery
	// can name a GitHub clone URL).
	o.wantRuns(wideGH, push, orgHooksServerSecret, 202, "globex/proj/prod")
	o.wantRuns(wideGL, glPush("https://github.com/acme/infra.git"), orgHooksServerToken, 202, "globex/proj/prod")
	// acme's secret is no key to globex's URL, nor to acme's GitLab URL (no token set).
	o.wantRuns(globexGH, push, acmeSecret, 401)
	o.wantRuns(acmeGL, glPush("https://github.com/acme/infra.git"), acmeSecret, 401)

	// globex sets its own secret: the server-wide URL reaches nobody now.
	const globexSecret = "globex-own-secret-0123456789"
	var set vcsView
	o.must(a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/globex/deployments/webhooks/github", Body: map[string]any{"secret": globexSecret}}, &set))
	if set.Secret != "" || !set.Configured {
		t.Errorf("PUT secret = %+v (a given secret is not echoed)", set)
	}
	o.wantRuns(wideGH, push, orgHooksServerSecret, 204)
	o.wantRuns(wideGL, glPush("https://github.com/acme/infra.git"), orgHooksServerToken, 204)
	o.wantRuns(globexGH, push, globexSecret, 202, "globex/proj/prod")
	o.wantRuns(globexGH, ghPush("globex/solo"), globexSecret, 202, "globex/proj/solo")
	o.wantRuns(acmeGH, push, globexSecret, 401)

	// Wrong, missing, unknown organization: 401 alike, each audited as a failure.
	evs, err := listAudit(o.env)
	o.must(err)
	before := 0
	for _, ev := range evs {
		if ev.Action == "deployment:webhook:github" && ev.Outcome == gatehouse.OutcomeFailure {
			before++
		}
	}
	o.wantRuns(acmeGH, push, "wrong-secret-0123456789", 401)
	o.wantRuns(acmeGH, push, "", 401)
	o.wantRuns("/api/deployments/webhooks/github/nosuchorg", push, acmeSecret, 401)
	evs, err = listAudit(o.env)
	o.must(err)
	after, inAcme := 0, 0
	for _, ev := range evs {
		if ev.Action == "deployment:webhook:github" && ev.Outcome == gatehouse.OutcomeFailure {
			after++
			if ev.OrgName == "acme" {
				inAcme++
			}
		}
	}
	if after-before != 3 || inAcme < 2 {
		t.Errorf("%d failed deliveries audited (%d in acme), want 3 (2 in acme)", after-before, inAcme)
	}
	// The two changes are audited, in their organizations; no secret value in any event.
	changes := map[string]string{}
	for _, ev := range evs {
		b, _ := json.Marshal(ev)
		if bytes.Contains(b, []byte(acmeSecret)) || bytes.Contains(b, []byte(globexSecret)) {
			t.Errorf("an audit event carries a secret: %s", b)
		}
		if ev.Action == "org:deploy:webhooks" && ev.Outcome == gatehouse.OutcomeSuccess {
			changes[ev.OrgName] = ev.Details["provider"] + "/" + ev.Details["generated"]
		}
	}
	if changes["acme"] != "github/true" || changes["globex"] != "github/false" || len(changes) != 2 {
		t.Errorf("audited secret changes: %v", changes)
	}

	// A GitLab token of acme's own: its GitLab URL works with it.
	const acmeToken = "acme-gitlab-token-0123456789"
	o.must(a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/deployments/webhooks/gitlab", Body: map[string]any{"secret": acmeToken}}, nil))
	o.wantRuns(acmeGL, glPush("https://github.com/acme/infra.git"), acmeToken, 202, "acme/proj/prod")
	o.wantRuns(acmeGL, glPush("https://github.com/acme/infra.git"), acmeSecret, 401)

	// Deleting acme's secrets: its URL answers 401, the server-wide one reaches it again.
	o.must(a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/deployments/webhooks/github"}, nil))
	o.wantRuns(acmeGH, push, acmeSecret, 401)
	o.wantRuns(wideGH, push, orgHooksServerSecret, 204) // acme still has its GitLab token
	o.must(a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/deployments/webhooks/gitlab"}, nil))
	o.wantRuns(wideGH, push, orgHooksServerSecret, 202, "acme/proj/prod")
	wantStatus(t, a.Do(cliwire.Call{Method: "DELETE", Path: "/api/orgs/acme/deployments/webhooks/gitlab"}, nil), 404)
}

// TestDeployOrgWebhookSecretsRefused: only an organization admin, a person, sets or reads
// them; bad values and providers are refused.
func TestDeployOrgWebhookSecretsRefused(t *testing.T) {
	o := newOrgHooks(t)
	a := o.admin
	p := "/api/orgs/acme/deployments/webhooks/github"
	wantStatus(t, o.dev.Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{"generate": true}}, nil), 403)
	wantStatus(t, o.dev.Do(cliwire.Call{Method: "GET", Path: p}, nil), 403)
	wantStatus(t, o.dev.Do(cliwire.Call{Method: "DELETE", Path: p}, nil), 403)
	// An organization token with the admin role: not a person.
	var tok struct {
		TokenValue string `json:"tokenValue"`
	}
	o.must(a.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/tokens", Body: map[string]any{"name": "ci-admin", "admin": true}}, &tok))
	wantStatus(t, cliwire.New(o.url, tok.TokenValue).Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{"generate": true}}, nil), 403)
	// Bad bodies and providers.
	wantStatus(t, a.Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{}}, nil), 400)
	wantStatus(t, a.Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{"secret": "short"}}, nil), 400)
	wantStatus(t, a.Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{"secret": "has a space 0123456789"}}, nil), 400)
	wantStatus(t, a.Do(cliwire.Call{Method: "PUT", Path: p, Body: map[string]any{"secret": "0123456789abcdef0123", "generate": true}}, nil), 400)
	wantStatus(t, a.Do(cliwire.Call{Method: "PUT", Path: "/api/orgs/acme/deployments/webhooks/bitbucket", Body: map[string]any{"generate": true}}, nil), 404)
	var v vcsView
	o.must(a.Do(cliwire.Call{Method: "GET", Path: p}, &v))
	if v.Configured {
		t.Errorf("a refused PUT set a secret: %+v", v)
	}
}
