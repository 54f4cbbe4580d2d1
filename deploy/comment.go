package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Pull/merge request comments. When a run triggered by a pull request (GitHub) or merge
// request (GitLab) ends, one comment on it says the stack, the operation, the final
// status, the resource changes of the run's update (when it got as far as one) and the
// link to the deployment. Later runs of the same stack for the same pull request edit
// that comment in place; its id is kept in the store (deploy_comments), so any process
// edits it. The comment is made only of those facts: never a log line, a message from the
// runner or a settings value.
//
// A post or edit is tried Options.CommentAttempts times (transport errors, 429 and 5xx;
// waiting Options.CommentBackoff, doubling); then the failure is logged. It never changes
// the run. An edit of a comment that is gone (404) posts a new one.

// errPermanent marks an answer not worth retrying.
type errPermanent struct{ error }

// prKey names a pull request in the store: "github:owner/repo#7".
func prKey(r Report) string {
	return r.Provider + ":" + strings.ToLower(r.Repo) + "#" + strconv.Itoa(r.PR)
}

// lockComment takes the pull request's comment lock; the returned func releases it. An
// entry lives only while someone holds or waits for it, so the map stays as small as the
// comments in flight.
func (s *Service) lockComment(key string) (unlock func()) {
	s.mu.Lock()
	l := s.commentLocks[key]
	if l == nil {
		l = &commentLock{}
		s.commentLocks[key] = l
	}
	l.users++
	s.mu.Unlock()
	l.Lock()
	return func() {
		l.Unlock()
		s.mu.Lock()
		if l.users--; l.users == 0 {
			delete(s.commentLocks, key)
		}
		s.mu.Unlock()
	}
}

// commentLock is a pull request's comment lock and how many hold or wait for it.
type commentLock struct {
	sync.Mutex
	users int
}

// comment posts or edits the run's comment on its pull request.
func (s *Service) comment(ctx context.Context, r Report, d *gatehouse.Deployment) error {
	if r.Provider != "github" && r.Provider != "gitlab" {
		return nil
	}
	key := prKey(r)
	unlock := s.lockComment(key)
	defer unlock()

	var st *gatehouse.Stack
	var changes map[string]int
	var prev string
	err := s.store.View(ctx, func(tx gatehouse.Tx) error {
		var err error
		if st, err = tx.GetStackByID(d.StackID); err != nil {
			return err
		}
		if d.UpdateID != "" {
			if u, err := tx.GetUpdate(d.UpdateID); err == nil {
				changes = u.ResourceChanges
			}
		}
		prev, err = tx.GetDeployComment(d.StackID, key)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			prev, err = "", nil
		}
		return err
	})
	if err != nil {
		return err
	}
	body := CommentBody(st, d, r, changes, s.ConsoleURL("", st, d))
	if prev != "" {
		err := s.retry(ctx, func() error { _, err := s.sendComment(ctx, r, prev, body); return err })
		if err == nil {
			return nil
		}
		var nf errNotFound
		if !errors.As(err, &nf) {
			return err
		}
		// The comment was deleted: post a new one.
	}
	var id string
	if err := s.retry(ctx, func() (err error) { id, err = s.sendComment(ctx, r, "", body); return err }); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("%s answered without the comment's id", r.Provider)
	}
	return s.store.Update(ctx, func(tx gatehouse.Tx) error { return tx.PutDeployComment(d.StackID, d.OrgID, key, id) })
}

// retry runs fn up to Options.CommentAttempts times while it fails with a retryable error.
func (s *Service) retry(ctx context.Context, fn func() error) error {
	wait := s.opts.CommentBackoff
	var err error
	for i := range s.opts.CommentAttempts {
		if i > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(wait):
			}
			wait *= 2
		}
		if err = fn(); err == nil {
			return nil
		}
		var p errPermanent
		var nf errNotFound
		if errors.As(err, &p) || errors.As(err, &nf) {
			return err
		}
	}
	return err
}

type errNotFound struct{ error }

// sendComment posts a new comment (id "") or edits comment id; it returns the comment's id.
func (s *Service) sendComment(ctx context.Context, r Report, id, body string) (string, error) {
	var method, u string
	payload, _ := json.Marshal(map[string]string{"body": body})
	switch r.Provider {
	case "github":
		base := s.vcsAPI(r.Provider) + "/repos/" + r.Repo + "/issues/"
		method, u = http.MethodPost, base+strconv.Itoa(r.PR)+"/comments"
		if id != "" {
			method, u = http.MethodPatch, base+"comments/"+url.PathEscape(id)
		}
	case "gitlab":
		u = s.vcsAPI(r.Provider) + "/projects/" + url.PathEscape(r.Repo) + "/merge_requests/" + strconv.Itoa(r.PR) + "/notes"
		method = http.MethodPost
		if id != "" {
			method, u = http.MethodPut, u+"/"+url.PathEscape(id)
		}
	}
	req, err := s.vcsRequest(ctx, r.Provider, method, u, payload)
	if err != nil {
		return "", errPermanent{err}
	}
	resp, err := s.opts.HTTPClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound && id != "":
		return "", errNotFound{fmt.Errorf("%s answered 404 to the edit of comment %s", r.Provider, id)}
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500:
		return "", fmt.Errorf("%s answered %d", r.Provider, resp.StatusCode)
	case resp.StatusCode/100 != 2:
		return "", errPermanent{fmt.Errorf("%s answered %d", r.Provider, resp.StatusCode)}
	}
	var out struct {
		ID json.Number `json:"id"`
	}
	dec := json.NewDecoder(io.LimitReader(resp.Body, 1<<20))
	dec.UseNumber()
	if err := dec.Decode(&out); err != nil && id == "" {
		return "", errPermanent{fmt.Errorf("%s's answer has no comment id: %v", r.Provider, err)}
	}
	if id != "" {
		return id, nil
	}
	return out.ID.String(), nil
}

var changeOp = regexp.MustCompile(`^[a-z][a-z-]{0,31}$`)

// changeOrder is the order of the usual resource operations in a summary.
var changeOrder = map[string]int{"create": 1, "update": 2, "replace": 3, "delete": 4, "same": 5}

// ChangeSummary renders an update's resource changes: "create 2, update 1, same 5"
// (operations the engine names, counts; nothing else). "" when there are none.
func ChangeSummary(changes map[string]int) string {
	ops := make([]string, 0, len(changes))
	for op := range changes {
		if changeOp.MatchString(op) {
			ops = append(ops, op)
		}
	}
	sort.Slice(ops, func(i, j int) bool {
		oi, oj := changeOrder[ops[i]], changeOrder[ops[j]]
		if oi == 0 {
			oi = 100
		}
		if oj == 0 {
			oj = 100
		}
		if oi != oj {
			return oi < oj
		}
		return ops[i] < ops[j]
	})
	parts := make([]string, 0, len(ops))
	for _, op := range ops {
		parts = append(parts, op+" "+strconv.Itoa(changes[op]))
	}
	return strings.Join(parts, ", ")
}

// CommentBody is the markdown of a run's pull request comment.
func CommentBody(st *gatehouse.Stack, d *gatehouse.Deployment, r Report, changes map[string]int, link string) string {
	icon, status := "❌", d.Status
	switch {
	case d.Status == gatehouse.DeploySucceeded:
		icon = "✅"
	case d.Status == gatehouse.DeploySkipped:
		icon = "⏭️"
	case d.Cancel:
		status = "failed (cancelled)"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- gatehouse-deployment %s -->\n", st.Ref())
	fmt.Fprintf(&b, "### %s Gatehouse: `pulumi %s` of `%s` %s\n\n", icon, d.Operation, st.Ref(), status)
	fmt.Fprintf(&b, "- Deployment: %d", d.Version)
	if link != "" {
		fmt.Fprintf(&b, " ([details](%s))", link)
	}
	b.WriteString("\n")
	if sha := r.SHA; isHex(sha) {
		fmt.Fprintf(&b, "- Commit: %s\n", truncate(sha, 12))
	}
	if sum := ChangeSummary(changes); sum != "" {
		fmt.Fprintf(&b, "- Resources: %s\n", sum)
	} else if d.UpdateID == "" {
		b.WriteString("- Resources: no update ran\n")
	}
	return b.String()
}

func isHex(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}
