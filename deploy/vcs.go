package deploy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// VerifyGitHub checks X-Hub-Signature-256 ("sha256=<hex HMAC-SHA256 of the body>").
func VerifyGitHub(secret, header string, body []byte) bool {
	if secret == "" {
		return false
	}
	hexSig, ok := strings.CutPrefix(header, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// VerifyGitLab checks X-Gitlab-Token.
func VerifyGitLab(secret, header string) bool {
	if secret == "" || header == "" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(secret), []byte(header)) == 1
}

// Event is a VCS event reduced to what triggers runs.
type Event struct {
	Provider string   // github, gitlab
	Repos    []string // repository keys the event's repository is known by
	Repo     string   // owner/repo (GitHub) or the project's path (GitLab)
	Push     bool     // a push (else a pull/merge request)
	Branch   string   // the pushed branch, or the request's source branch
	Base     string   // the request's target branch
	SHA      string
	Files    []string // changed files, when the payload says (nil: unknown)
	PR       int
	Sender   string
}

// Report is where a run's result goes: a commit status, and, for a run of a pull request
// (GitHub) or merge request (GitLab), a comment on it.
type Report struct {
	Provider string `json:"provider"`
	Repo     string `json:"repo"`
	SHA      string `json:"sha"`
	Context  string `json:"context"`
	PR       int    `json:"pr,omitempty"` // the pull/merge request's number (iid); 0: a push
}

type ghRepo struct {
	FullName string `json:"full_name"`
}

type ghCommit struct {
	Added    []string `json:"added"`
	Removed  []string `json:"removed"`
	Modified []string `json:"modified"`
}

// ParseGitHub decodes a push or pull_request delivery; nil for other events and actions.
func ParseGitHub(event string, body []byte) (*Event, error) {
	switch event {
	case "push":
		var p struct {
			Ref        string     `json:"ref"`
			After      string     `json:"after"`
			Deleted    bool       `json:"deleted"`
			Repository ghRepo     `json:"repository"`
			Commits    []ghCommit `json:"commits"`
			Sender     struct {
				Login string `json:"login"`
			} `json:"sender"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid push payload: %v", err)
		}
		branch, ok := strings.CutPrefix(p.Ref, "refs/heads/")
		if !ok || p.Deleted {
			return nil, nil
		}
		e := &Event{Provider: "github", Repo: p.Repository.FullName, Push: true, Branch: branch, SHA: p.After, Sender: p.Sender.Login, Files: []string{}}
		for _, c := range p.Commits {
			e.Files = append(append(append(e.Files, c.Added...), c.Removed...), c.Modified...)
		}
		e.Repos = []string{"github:" + strings.ToLower(p.Repository.FullName), "git:github.com/" + strings.ToLower(p.Repository.FullName)}
		return e, nil
	case "pull_request":
		var p struct {
			Action      string `json:"action"`
			Number      int    `json:"number"`
			PullRequest struct {
				Head struct {
					Ref  string  `json:"ref"`
					SHA  string  `json:"sha"`
					Repo *ghRepo `json:"repo"`
				} `json:"head"`
				Base struct {
					Ref string `json:"ref"`
				} `json:"base"`
			} `json:"pull_request"`
			Repository ghRepo `json:"repository"`
			Sender     struct {
				Login string `json:"login"`
			} `json:"sender"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid pull_request payload: %v", err)
		}
		switch p.Action {
		case "opened", "synchronize", "reopened":
		default:
			return nil, nil
		}
		if h := p.PullRequest.Head.Repo; h == nil || !strings.EqualFold(h.FullName, p.Repository.FullName) {
			// A pull request from a fork (or whose head is gone): its code is anyone's, and
			// a run acts for the settings' editor. Not run.
			return nil, nil
		}
		return &Event{Provider: "github", Repo: p.Repository.FullName, Branch: p.PullRequest.Head.Ref, Base: p.PullRequest.Base.Ref,
			SHA: p.PullRequest.Head.SHA, PR: p.Number, Sender: p.Sender.Login,
			Repos: []string{"github:" + strings.ToLower(p.Repository.FullName), "git:github.com/" + strings.ToLower(p.Repository.FullName)}}, nil
	}
	return nil, nil
}

// ParseGitLab decodes a Push Hook or Merge Request Hook; nil for others.
func ParseGitLab(event string, body []byte) (*Event, error) {
	type project struct {
		PathWithNamespace string `json:"path_with_namespace"`
		GitHTTPURL        string `json:"git_http_url"`
		GitSSHURL         string `json:"git_ssh_url"`
		WebURL            string `json:"web_url"`
	}
	keys := func(p project) []string {
		var ks []string
		for _, u := range []string{p.GitHTTPURL, p.GitSSHURL, p.WebURL} {
			if u != "" {
				ks = append(ks, "git:"+normalizeRepoURL(u))
			}
		}
		return ks
	}
	switch event {
	case "Push Hook":
		var p struct {
			Ref         string     `json:"ref"`
			After       string     `json:"after"`
			CheckoutSHA string     `json:"checkout_sha"`
			UserName    string     `json:"user_username"`
			Project     project    `json:"project"`
			Commits     []ghCommit `json:"commits"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid push payload: %v", err)
		}
		branch, ok := strings.CutPrefix(p.Ref, "refs/heads/")
		if !ok || p.CheckoutSHA == "" {
			return nil, nil
		}
		e := &Event{Provider: "gitlab", Repo: p.Project.PathWithNamespace, Push: true, Branch: branch, SHA: p.CheckoutSHA, Sender: p.UserName,
			Repos: keys(p.Project), Files: []string{}}
		for _, c := range p.Commits {
			e.Files = append(append(append(e.Files, c.Added...), c.Removed...), c.Modified...)
		}
		return e, nil
	case "Merge Request Hook":
		var p struct {
			User struct {
				Username string `json:"username"`
			} `json:"user"`
			Project          project `json:"project"`
			ObjectAttributes struct {
				IID             int    `json:"iid"`
				SourceProjectID int64  `json:"source_project_id"`
				TargetProjectID int64  `json:"target_project_id"`
				Action          string `json:"action"`
				SourceBranch    string `json:"source_branch"`
				TargetBranch    string `json:"target_branch"`
				LastCommit      struct {
					ID string `json:"id"`
				} `json:"last_commit"`
			} `json:"object_attributes"`
		}
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid merge request payload: %v", err)
		}
		switch p.ObjectAttributes.Action {
		case "open", "update", "reopen":
		default:
			return nil, nil
		}
		oa := p.ObjectAttributes
		if oa.SourceProjectID != oa.TargetProjectID {
			// A merge request from a fork: its code is anyone's, and a run acts for the
			// settings' editor. Not run.
			return nil, nil
		}
		return &Event{Provider: "gitlab", Repo: p.Project.PathWithNamespace, Branch: oa.SourceBranch, Base: oa.TargetBranch, SHA: oa.LastCommit.ID,
			PR: oa.IID, Sender: p.User.Username, Repos: keys(p.Project)}, nil
	}
	return nil, nil
}

// Match is a stack an event triggers a run of.
type Match struct {
	Stack   *gatehouse.Stack
	Trigger Trigger
}

// ServerWide is the scope of a delivery to the server-wide webhook URL (Matches).
const ServerWide int64 = 0

// Matches finds the stacks whose settings follow the event's repository and want it:
// updates on pushes to the settings' branch (gitHub.deployCommits, default on), previews
// on pull requests into it (gitHub.previewPullRequests, default on), in both cases only
// when a changed file is under one of gitHub.paths (when set).
//
// orgID is whose secret authenticated the delivery: an organization's own (only its
// stacks match), or ServerWide (the server's secret: only stacks of organizations that set
// no secret of their own, of either provider; an organization with one is reachable only
// through its own URL, since a GitLab delivery can name a GitHub repository's URL and the
// other way round).
func (s *Service) Matches(ctx context.Context, e *Event, orgID int64) ([]Match, error) {
	// The stacks that follow the repository, read in one transaction; whether each wants
	// the event is decided after it, since that may ask GitHub for a pull request's files
	// (once per event), and no transaction waits on another server.
	type candidate struct {
		stack *gatehouse.Stack
		doc   map[string]any
	}
	var cands []candidate
	err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		seen := map[int64]bool{}
		ownSecret := map[int64]bool{}
		for _, key := range e.Repos {
			list, err := tx.ListDeploySettingsByRepo(key)
			if err != nil {
				return err
			}
			for _, ds := range list {
				if seen[ds.StackID] {
					continue
				}
				seen[ds.StackID] = true
				if orgID != ServerWide && ds.OrgID != orgID {
					continue
				}
				if orgID == ServerWide {
					own, ok := ownSecret[ds.OrgID]
					if !ok {
						secrets, err := tx.ListDeployVCSSecrets(ds.OrgID)
						if err != nil {
							return err
						}
						own = len(secrets) > 0
						ownSecret[ds.OrgID] = own
					}
					if own {
						continue
					}
				}
				doc, err := parseDoc(ds.Settings)
				if err != nil {
					continue
				}
				st, err := tx.GetStackByID(ds.StackID)
				if err != nil {
					return err
				}
				cands = append(cands, candidate{st, doc})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []Match
	files := e.Files
	fetched := files != nil
	for _, c := range cands {
		op, ok := wants(c.doc, e, func() []string {
			if !fetched && e.Provider == "github" && e.PR > 0 {
				files, fetched = s.githubPRFiles(ctx, e), true
			}
			return files
		})
		if !ok {
			continue
		}
		body, _ := json.Marshal(map[string]any{"operation": op, "inheritSettings": true,
			"sourceContext": map[string]any{"git": map[string]any{"branch": e.Branch, "commit": e.SHA}}})
		rep, _ := json.Marshal(Report{Provider: e.Provider, Repo: e.Repo, SHA: e.SHA, Context: "gatehouse/" + c.stack.Ref().String(), PR: e.PR})
		out = append(out, Match{Stack: c.stack, Trigger: Trigger{Body: body, Initiator: e.Provider, RequestedBy: e.Sender, Report: string(rep), ForSettingsEditor: true, PullRequest: !e.Push, MayOverride: true}})
	}
	return out, nil
}

func boolOr(m map[string]any, k string, def bool) bool {
	if v, ok := m[k].(bool); ok {
		return v
	}
	return def
}

// wants decides whether settings doc want event e, and the operation: changedFiles gives
// the files the event changed (asked only when the settings filter paths).
func wants(doc map[string]any, e *Event, changedFiles func() []string) (string, bool) {
	gh, _ := doc["gitHub"].(map[string]any)
	if gh == nil {
		gh = map[string]any{}
	}
	branch := ""
	if sc, ok := doc["sourceContext"].(map[string]any); ok {
		if g, ok := sc["git"].(map[string]any); ok {
			branch, _ = g["branch"].(string)
		}
	}
	branch = strings.TrimPrefix(branch, "refs/heads/")
	op := "update"
	if e.Push {
		if !boolOr(gh, "deployCommits", true) || branch == "" || e.Branch != branch {
			return "", false
		}
	} else {
		if !boolOr(gh, "previewPullRequests", true) || (branch != "" && e.Base != branch) {
			return "", false
		}
		op = "preview"
	}
	var paths []string
	if ps, ok := gh["paths"].([]any); ok {
		for _, p := range ps {
			if s, ok := p.(string); ok && s != "" {
				paths = append(paths, s)
			}
		}
	}
	if len(paths) == 0 {
		return op, true
	}
	for _, f := range changedFiles() {
		if PathMatches(paths, f) {
			return op, true
		}
	}
	return "", false
}

// PathMatches reports whether file is under one of the path filters: a directory prefix
// ("infra/" or "infra"), or a glob (path.Match; "**" at the end matches everything below).
func PathMatches(filters []string, file string) bool {
	for _, f := range filters {
		neg := strings.HasPrefix(f, "!")
		if neg {
			continue
		}
		f = strings.TrimPrefix(f, "/")
		if pre, ok := strings.CutSuffix(f, "/**"); ok {
			if file == pre || strings.HasPrefix(file, pre+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(f, file); ok {
			return true
		}
		if dir := strings.TrimSuffix(f, "/"); file == dir || strings.HasPrefix(file, dir+"/") {
			return true
		}
	}
	return false
}

func (s *Service) githubPRFiles(ctx context.Context, e *Event) []string {
	u := s.vcsAPI("github") + "/repos/" + e.Repo + "/pulls/" + strconv.Itoa(e.PR) + "/files?per_page=100"
	req, err := s.vcsRequest(ctx, "github", http.MethodGet, u, nil)
	if err != nil {
		return nil
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		s.log.Warn("deploy: listing a pull request's files failed", "repo", e.Repo, "pr", e.PR, "err", err)
		return nil
	}
	defer resp.Body.Close()
	var files []struct {
		Filename string `json:"filename"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&files) != nil {
		return nil
	}
	var out []string
	for _, f := range files {
		out = append(out, f.Filename)
	}
	return out
}

// report posts the run's state as a commit status and, when a run of a pull request
// ends, its comment on the pull request; off the request path. Failures are logged and
// change nothing about the run.
func (s *Service) report(d *gatehouse.Deployment) {
	if d == nil || d.Report == "" {
		return
	}
	var r Report
	if json.Unmarshal([]byte(d.Report), &r) != nil || r.SHA == "" {
		return
	}
	d2 := *d
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.reports.Add(1)
	go func() {
		defer s.reports.Done()
		ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
		if err := s.postStatus(ctx, r, &d2); err != nil {
			s.log.Warn("deploy: reporting a commit status failed", "provider", r.Provider, "repo", r.Repo, "deployment", d2.ID, "err", err)
		}
		cancel()
		if r.PR > 0 && gatehouse.DeployFinished(d2.Status) && (s.opts.PRComments == nil || *s.opts.PRComments) {
			ctx, cancel := context.WithTimeout(s.ctx, 5*time.Minute)
			defer cancel()
			if err := s.comment(ctx, r, &d2); err != nil {
				s.log.Warn("deploy: commenting on a pull request failed", "provider", r.Provider, "repo", r.Repo, "pr", r.PR, "deployment", d2.ID, "err", err)
			}
		}
	}()
}

func (s *Service) postStatus(ctx context.Context, r Report, d *gatehouse.Deployment) error {
	desc := fmt.Sprintf("pulumi %s: %s", d.Operation, d.Status)
	var req *http.Request
	var err error
	switch r.Provider {
	case "github":
		state := map[string]string{gatehouse.DeployNotStarted: "pending", gatehouse.DeployRunning: "pending",
			gatehouse.DeploySucceeded: "success", gatehouse.DeploySkipped: "success", gatehouse.DeployFailed: "failure"}[d.Status]
		body, _ := json.Marshal(map[string]string{"state": state, "context": r.Context, "description": truncate(desc, 140)})
		req, err = s.vcsRequest(ctx, r.Provider, http.MethodPost, s.vcsAPI(r.Provider)+"/repos/"+r.Repo+"/statuses/"+url.PathEscape(r.SHA), body)
		if err != nil {
			return err
		}
	case "gitlab":
		state := map[string]string{gatehouse.DeployNotStarted: "pending", gatehouse.DeployRunning: "running",
			gatehouse.DeploySucceeded: "success", gatehouse.DeploySkipped: "success", gatehouse.DeployFailed: "failed"}[d.Status]
		q := url.Values{"state": {state}, "name": {r.Context}, "description": {truncate(desc, 140)}}
		req, err = s.vcsRequest(ctx, r.Provider, http.MethodPost, s.vcsAPI(r.Provider)+"/projects/"+url.PathEscape(r.Repo)+"/statuses/"+url.PathEscape(r.SHA)+"?"+q.Encode(), nil)
		if err != nil {
			return err
		}
	default:
		return nil
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %d", r.Provider, resp.StatusCode)
	}
	return nil
}

// vcsAPI is the base URL of the provider's API, without a trailing slash.
func (s *Service) vcsAPI(provider string) string {
	return strings.TrimRight(s.VCSConfig(provider).APIURL, "/")
}

// vcsRequest builds a request to the provider's API (github or gitlab) with its
// authentication: GitHub's Accept and bearer token, GitLab's PRIVATE-TOKEN. A body is sent
// as JSON.
func (s *Service) vcsRequest(ctx context.Context, provider, method, u string, body []byte) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch provider {
	case "github":
		req.Header.Set("Accept", "application/vnd.github+json")
		if s.opts.GitHub.Token != "" {
			req.Header.Set("Authorization", "Bearer "+s.opts.GitHub.Token)
		}
	case "gitlab":
		if s.opts.GitLab.Token != "" {
			req.Header.Set("PRIVATE-TOKEN", s.opts.GitLab.Token)
		}
	}
	return req, nil
}

// VCSConfig returns the provider's configuration.
func (s *Service) VCSConfig(provider string) VCS {
	if provider == "gitlab" {
		return s.opts.GitLab
	}
	return s.opts.GitHub
}
