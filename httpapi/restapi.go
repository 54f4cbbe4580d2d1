package httpapi

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/policy"
)

// Pulumi Cloud's REST API beyond the calls the CLI makes: the service's shapes of update
// history, the organization's stacks, remote stack configuration and the single-tag
// calls of the pulumiservice provider. The OpenAPI description in pulumi-pulumiservice
// (provider/pkg/cloud/spec.json) is the contract; testdata/pulumi-spec-extract.json holds
// the schemas the tests check these responses against.

// serviceUpdateInfo is the service's UpdateInfo: the CLI's UpdateInfo under "info", with
// the update's ID, its version, the stack's latest version and who ran it.
type serviceUpdateInfo struct {
	Info          apitype.UpdateInfo `json:"info"`
	UpdateID      string             `json:"updateID"`
	Version       int                `json:"version"`
	LatestVersion int                `json:"latestVersion"`
	RequestedBy   userJSON           `json:"requestedBy"`
	// Protocol is Gatehouse's addition: the state protocol chosen for the update and why
	// (absent for previews and for updates started before the choice was recorded).
	Protocol *gatehouse.UpdateProtocol `json:"gatehouseProtocol,omitempty"`
}

// withProtocols adds each update's recorded protocol choice.
func withProtocols(tx gatehouse.Tx, infos []serviceUpdateInfo) error {
	for i := range infos {
		p, err := tx.GetUpdateProtocol(infos[i].UpdateID)
		switch {
		case err == nil:
			infos[i].Protocol = p
		case !gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			return err
		}
	}
	return nil
}

func serviceUpdate(u *gatehouse.Update, latest int) serviceUpdateInfo {
	return serviceUpdateInfo{
		Info: updateInfo(u), UpdateID: u.ID, Version: u.Version, LatestVersion: latest,
		// Author is the user's name, or the name of the machine token that ran the update.
		RequestedBy: userJSON{Name: u.Author, GitHubLogin: u.Author},
	}
}

// getLatestUpdate is GET S/updates/latest: the newest non-preview update in the service's
// shape (the CLI reads its "info"); 404 when the stack was never updated.
func (s *Server) getLatestUpdate(rq *Request) (any, error) {
	var out []serviceUpdateInfo
	if err := rq.View(func(tx gatehouse.Tx) error {
		ups, err := tx.ListUpdates(rq.Stack.ID, gatehouse.UpdateFilter{PageSize: 1, Page: 1})
		if err != nil || len(ups) == 0 {
			return err
		}
		out = []serviceUpdateInfo{serviceUpdate(&ups[0], rq.Stack.Version)}
		return withProtocols(tx, out)
	}); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "no previous deployment")
	}
	return out[0], nil
}

// getUpdateByVersion is GET S/updates/{version}: the update that produced that version of
// the stack; 404 for a version that does not exist.
func (s *Server) getUpdateByVersion(rq *Request) (any, error) {
	v := rq.PathValue("version")
	n, err := strconv.Atoi(v)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid update version %q: a positive number", v)
	}
	latest := rq.Stack.Version
	if n < 1 || n > latest {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "update version %d of stack %s not found", n, rq.Stack.Ref())
	}
	var found *gatehouse.Update
	var out []serviceUpdateInfo
	err = rq.View(func(tx gatehouse.Tx) error {
		// Every real run that started holds one version, newest first: version n is at
		// position latest-n. The full scan is a fallback that should not be needed.
		ups, err := tx.ListUpdates(rq.Stack.ID, gatehouse.UpdateFilter{PageSize: 1, Page: latest - n + 1})
		if err != nil {
			return err
		}
		if len(ups) == 0 || ups[0].Version != n {
			if ups, err = tx.ListUpdates(rq.Stack.ID, gatehouse.UpdateFilter{}); err != nil {
				return err
			}
		}
		for i := range ups {
			if ups[i].Version == n {
				found = &ups[i]
				out = []serviceUpdateInfo{serviceUpdate(found, latest)}
				return withProtocols(tx, out)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if found == nil {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "update version %d of stack %s not found", n, rq.Stack.Ref())
	}
	return out[0], nil
}

// listUpdates is GET S/updates: the CLI's history shape by default (and with
// output-type=cli), the service's paginated shape with output-type=service.
func (s *Server) listUpdates(rq *Request) (any, error) {
	switch ot := rq.URL.Query().Get("output-type"); ot {
	case "", "cli":
		return s.getHistory(rq)
	case "service":
		return s.serviceHistory(rq)
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "unknown output-type %q (service or cli)", ot)
	}
}

// serviceHistory is the service's GetStackUpdatesResponse. As the service documents it:
// page 0 (or none) returns every update, page N >= 1 the Nth page of pageSize (default 10).
func (s *Server) serviceHistory(rq *Request) (any, error) {
	q := rq.URL.Query()
	page, pageSize := 0, 10
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "Invalid 'page' value: a number >= 0")
		}
		page = n
	}
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 1000 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "Invalid 'pageSize' value: 0 to 1000")
		}
		if n > 0 {
			pageSize = n
		}
	}
	var ups []gatehouse.Update
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ups, err = tx.ListUpdates(rq.Stack.ID, gatehouse.UpdateFilter{})
		return err
	}); err != nil {
		return nil, err
	}
	out := struct {
		Updates      []serviceUpdateInfo `json:"updates"`
		ItemsPerPage int                 `json:"itemsPerPage"`
		Total        int                 `json:"total"`
	}{Updates: []serviceUpdateInfo{}, Total: len(ups), ItemsPerPage: len(ups)}
	if page > 0 {
		out.ItemsPerPage = pageSize
		lo := min((page-1)*pageSize, len(ups))
		ups = ups[lo:min(lo+pageSize, len(ups))]
	}
	for i := range ups {
		out.Updates = append(out.Updates, serviceUpdate(&ups[i], rq.Stack.Version))
	}
	if err := rq.View(func(tx gatehouse.Tx) error { return withProtocols(tx, out.Updates) }); err != nil {
		return nil, err
	}
	return out, nil
}

// orgFacts is an organization with the caller's decision facts in it.
type orgFacts struct {
	org   *gatehouse.Org
	facts authz.Facts
}

// stackPage lists one page of the stacks of the organizations ids that the caller may
// read, with the CLI's filters (project, tagName, tagValue) and continuation token.
// Pages are filtered by permission after the query, so it keeps reading until the page
// has something or the listing ends.
func (s *Server) stackPage(tx gatehouse.Tx, sub *authz.Subject, orgs map[int64]orgFacts, ids []int64, q url.Values) (apitype.ListStacksResponse, error) {
	resp := apitype.ListStacksResponse{Stacks: []apitype.StackSummary{}}
	cont := q.Get("continuationToken")
	for {
		stacks, next, err := tx.ListStacks(gatehouse.StackFilter{
			OrgIDs: ids, Project: q.Get("project"), TagName: q.Get("tagName"), TagValue: q.Get("tagValue"),
			Continuation: cont, Limit: s.cfg.StackPageSize,
		})
		if err != nil {
			return resp, err
		}
		for i := range stacks {
			st := &stacks[i]
			of := orgs[st.OrgID]
			if !mayReadStack(sub, of.org, of.facts, st) {
				continue
			}
			sum := apitype.StackSummary{ID: itoa(st.ID), OrgName: st.OrgName, ProjectName: st.Project, StackName: st.Name}
			if !st.LastUpdate.IsZero() {
				lu := st.LastUpdate.Unix()
				sum.LastUpdate = &lu
				rc := st.ResourceCount
				sum.ResourceCount = &rc
			}
			resp.Stacks = append(resp.Stacks, sum)
		}
		cont = next
		if next == "" || len(resp.Stacks) > 0 {
			break
		}
	}
	if cont != "" {
		resp.ContinuationToken = &cont
	}
	return resp, nil
}

// mayReadStack is the per-stack decision of everything that shows an organization's
// stacks to a caller (GET /api/stacks/{org} and /api/user/stacks, the console, policy
// groups and results): whether sub, with facts f in org, may read st. A stack it does not
// allow is left out, as if it did not exist.
func mayReadStack(sub *authz.Subject, org *gatehouse.Org, f authz.Facts, st *gatehouse.Stack) bool {
	return authz.Decide(sub, authz.StackRead, authz.Resource{Org: org, Stack: st}, f).Allow
}

// readableStacks are those of stacks (the request organization's) the caller may read
// (mayReadStack); all reports whether that is every one of them.
func (rq *Request) readableStacks(stacks []gatehouse.Stack) (readable []gatehouse.Stack, all bool) {
	readable = make([]gatehouse.Stack, 0, len(stacks))
	for i := range stacks {
		if mayReadStack(rq.Subject, rq.Org, rq.facts, &stacks[i]) {
			readable = append(readable, stacks[i])
		}
	}
	return readable, len(readable) == len(stacks)
}

// listOrgStacks is GET /api/stacks/{org}: the organization's stacks the caller may read,
// paged like /api/user/stacks (continuationToken), with its project and tag filters.
func (s *Server) listOrgStacks(rq *Request) (any, error) {
	var resp apitype.ListStacksResponse
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		resp, err = s.stackPage(tx, rq.Subject, map[int64]orgFacts{rq.Org.ID: {org: rq.Org, facts: rq.facts}}, []int64{rq.Org.ID}, rq.URL.Query())
		return err
	})
	return resp, err
}

// stackConfigJSON is the service's StackConfig (the CLI's apitype.StackConfig).
func stackConfigJSON(c *gatehouse.StackConfig) *apitype.StackConfig {
	return &apitype.StackConfig{Environment: c.Environment, SecretsProvider: c.SecretsProvider, EncryptedKey: c.EncryptedKey, EncryptionSalt: c.EncryptionSalt}
}

// stackConfigOf validates a remote configuration sent by a client.
func stackConfigOf(req *apitype.StackConfig) (*gatehouse.StackConfig, error) {
	c := &gatehouse.StackConfig{Environment: req.Environment, SecretsProvider: req.SecretsProvider, EncryptedKey: req.EncryptedKey, EncryptionSalt: req.EncryptionSalt}
	if c.Environment == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "environment is required: the ESC environment (project/name) that holds the stack's configuration")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{{"environment", c.Environment, 256}, {"secretsProvider", c.SecretsProvider, 1024}, {"encryptedKey", c.EncryptedKey, 8192}, {"encryptionSalt", c.EncryptionSalt, 1024}} {
		if len(f.v) > f.max {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s is longer than %d characters", f.name, f.max)
		}
		if err := plainText(f.name, f.v); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// getStackConfig is GET S/config: the stack's remote configuration; 404 when it has none
// (its configuration is in Pulumi.<stack>.yaml).
func (s *Server) getStackConfig(rq *Request) (any, error) {
	var c *gatehouse.StackConfig
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		c, err = tx.GetStackConfig(rq.Stack.ID)
		return err
	}); err != nil {
		return nil, err
	}
	return stackConfigJSON(c), nil
}

// putStackConfig is PUT S/config (the CLI's UpdateStackConfig): sets the stack's remote
// configuration and answers it.
func (s *Server) putStackConfig(rq *Request) (any, error) {
	var req apitype.StackConfig
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	c, err := stackConfigOf(&req)
	if err != nil {
		return nil, err
	}
	rq.Detail("environment", c.Environment)
	if c.SecretsProvider != "" {
		rq.Detail("secrets_provider", truncate(c.SecretsProvider, 256))
	}
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.PutStackConfig(rq.Stack.ID, c) }); err != nil {
		return nil, err
	}
	return stackConfigJSON(c), nil
}

// deleteStackConfig is DELETE S/config: the stack goes back to local configuration. It is
// idempotent: deleting a configuration that is not there succeeds.
func (s *Server) deleteStackConfig(rq *Request) (any, error) {
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.DeleteStackConfig(rq.Stack.ID); err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		return nil
	})
}

// stackTag is the service's StackTag: one tag of a stack.
type stackTag struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// changeTags applies change to the stack's current tags (read in the transaction) and
// stores the result, unless the new tags would raise the caller's own permission on the
// stack (authz.StackTagsRaise) or take it out of a policy group without stack:policy
// (leavesPolicyGroups).
func (rq *Request) changeTags(change func(tags map[string]string) error) error {
	var exit *policyExit
	err := rq.Change(func(tx gatehouse.Tx) error {
		st, err := tx.GetStackByID(rq.Stack.ID)
		if err != nil {
			return err
		}
		tags := map[string]string{}
		for k, v := range st.Tags {
			tags[k] = v
		}
		if err := change(tags); err != nil {
			return err
		}
		if err := validTags(tags); err != nil {
			return err
		}
		if raise, why := authz.StackTagsRaise(rq.Subject, authz.Resource{Org: rq.Org, Stack: st}, rq.facts, tags); raise {
			return gatehouse.Errorf(gatehouse.EFORBIDDEN, "these tags would give you more rights on stack %s (%s): ask an organization admin to tag it", st.Ref(), why)
		}
		if exit, err = rq.leavesPolicyGroups(tx, st, tags); err != nil {
			return err
		}
		if exit != nil {
			return errPolicyExit
		}
		return tx.SetStackTags(st.ID, tags)
	})
	if exit != nil {
		return rq.refusePolicyExit(exit, "these tags")
	}
	return err
}

// policyExit is a tag change that would take a stack out of policy groups, by a caller who
// lacks stack:policy on it.
type policyExit struct {
	stack  *gatehouse.Stack
	groups []string
}

// errPolicyExit ends the transaction of a refused policyExit; the refusal itself is
// answered by refusePolicyExit once the transaction is over.
var errPolicyExit = errors.New("stack:policy denied")

// leavesPolicyGroups returns, when the tags tags would take the stack st out of a policy
// group that selects it now (policy.Left) and the caller lacks stack:policy on st, what
// refusePolicyExit refuses; nil when the change may be made. A group selecting stacks by
// tag is left by retagging as by removeStack, so it needs what removeStack needs (a writer
// would otherwise lift the group's required policy packs by editing a tag). Joining a group
// needs nothing more. It only decides (authz.Decide): it runs inside a transaction, and
// the refusal's audit record is written by another one (see updatePolicyGroup).
func (rq *Request) leavesPolicyGroups(tx gatehouse.Tx, st *gatehouse.Stack, tags map[string]string) (*policyExit, error) {
	left, err := policy.Left(tx, st, tags)
	if err != nil || len(left) == 0 {
		return nil, err
	}
	if authz.Decide(rq.Subject, authz.StackPolicy, authz.Resource{Org: rq.Org, Stack: st}, rq.facts).Allow {
		rq.Detail("policy_groups_left", truncate(strings.Join(left, ","), 512))
		return nil, nil
	}
	return &policyExit{stack: st, groups: left}, nil
}

// refusePolicyExit records the refusal of x (as rq.authorize does, outside any transaction)
// and answers it with a 403 naming the groups; what is what would have changed the tags.
func (rq *Request) refusePolicyExit(x *policyExit, what string) error {
	names := "policy group " + x.groups[0]
	if len(x.groups) > 1 {
		names = "policy groups " + strings.Join(x.groups, ", ")
	}
	rq.Detail("policy_groups_left", truncate(strings.Join(x.groups, ","), 512))
	err := rq.authorize(authz.StackPolicy, authz.Resource{Org: rq.Org, Stack: x.stack})
	reason := "you may not"
	if err != nil {
		if !gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			return err
		}
		reason = gatehouse.ErrorMessage(err)
	}
	return gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s would take stack %s out of %s, whose policy packs it would then no longer be required to run: that needs %s, as removing the stack from the group does (ask a stack or organization admin): %s",
		what, x.stack.Ref(), names, authz.StackPolicy, reason)
}

// addStackTag is POST S/tags {name, value} (the pulumiservice provider's StackTag): adds
// one tag; 400 when the stack already has a tag of that name.
func (s *Server) addStackTag(rq *Request) (any, error) {
	var req stackTag
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	rq.Detail("tag", req.Name)
	return noContent{}, rq.changeTags(func(tags map[string]string) error {
		if _, ok := tags[req.Name]; ok {
			return gatehouse.Errorf(gatehouse.EINVALID, "stack %s already has a tag %q: change it with PATCH .../tags/%s", rq.Stack.Ref(), req.Name, req.Name)
		}
		tags[req.Name] = req.Value
		return nil
	})
}

// updateStackTag is PATCH S/tags/{tagName} {name, value}: changes one tag's value (and
// name); 404 when the stack has no such tag.
func (s *Server) updateStackTag(rq *Request) (any, error) {
	var req stackTag
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	name := rq.PathValue("tagName")
	if req.Name == "" {
		req.Name = name
	}
	rq.Detail("tag", name)
	if req.Name != name {
		rq.Detail("new_name", req.Name)
	}
	return noContent{}, rq.changeTags(func(tags map[string]string) error {
		if _, ok := tags[name]; !ok {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack %s has no tag %q", rq.Stack.Ref(), name)
		}
		if _, taken := tags[req.Name]; taken && req.Name != name {
			return gatehouse.Errorf(gatehouse.EINVALID, "stack %s already has a tag %q", rq.Stack.Ref(), req.Name)
		}
		delete(tags, name)
		tags[req.Name] = req.Value
		return nil
	})
}

// deleteStackTag is DELETE S/tags/{tagName}; 404 when the stack has no such tag.
func (s *Server) deleteStackTag(rq *Request) (any, error) {
	name := rq.PathValue("tagName")
	rq.Detail("tag", name)
	return noContent{}, rq.changeTags(func(tags map[string]string) error {
		if _, ok := tags[name]; !ok {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "stack %s has no tag %q", rq.Stack.Ref(), name)
		}
		delete(tags, name)
		return nil
	})
}

// createGitHubTeam is POST /api/orgs/{org}/teams/github: Gatehouse has no GitHub
// integration to take a team's membership from, so it says so instead of "no such route".
func (s *Server) createGitHubTeam(rq *Request) (any, error) {
	return nil, gatehouse.Errorf(gatehouse.EINVALID, "GitHub-backed teams are not supported by Gatehouse: create a team with POST /api/orgs/%s/teams/pulumi (teamType \"pulumi\") and manage its members", rq.Org.Name)
}

// updateTeamStackPermissions is PATCH /api/console/stacks/{org}/{project}/{stack}/teams/{team}
// {permissions}: the stack-centric form of a team's stack grant (the service's
// UpdateTeamStackPermissions). 101 read, 102 write, 103 admin replace the team's grant on
// the stack; 0 or no permissions remove it.
func (s *Server) updateTeamStackPermissions(rq *Request) (any, error) {
	if err := rq.Authorize(authz.OrgTeamWrite); err != nil {
		return nil, err
	}
	var req struct {
		Permissions *permission `json:"permissions"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	ref := rq.Stack.Ref()
	sc := gatehouse.Scope{StackID: rq.Stack.ID, StackRef: &ref}
	rq.event.Target = rq.Org.Name + "/teams/" + rq.Team.Name
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		if req.Permissions == nil || req.Permissions.Permission == gatehouse.PermNone {
			rq.Detail("removed_grant", sc.String())
			if err := tx.DeleteGrant(rq.Team.ID, sc); err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			return nil
		}
		rq.Detail("grant", sc.String()+":"+req.Permissions.String())
		return tx.PutGrant(&gatehouse.Grant{TeamID: rq.Team.ID, Scope: sc, Permission: req.Permissions.Permission})
	})
}
