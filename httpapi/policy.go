package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/policy"
)

// Policy as code (package policy): the calls `pulumi policy ...` makes, the archive URLs it
// uploads to and downloads from, Gatehouse's own group selectors, approved providers and
// policy results.

// maxPackBytes bounds a policy pack archive (npm pack leaves node_modules out: packs are
// kilobytes). The upload route is public (its token is checked after the body is read).
const maxPackBytes = 32 << 20

const (
	packPath    = "/api/orgs/{org}/policypacks/{pack}"
	versionPath = packPath + "/versions/{version}"
	groupPath   = "/api/orgs/{org}/policygroups/{group}"
	archivePath = "/api/policypacks/archives/{token}"
)

func (s *Server) registerPolicyRoutes() {
	get, post, patch, del, put := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodPut
	s.handle(get, "/api/orgs/{org}/policypacks", authz.OrgPolicyRead, s.listPolicyPacks)
	s.handle(post, "/api/orgs/{org}/policypacks", authz.OrgPolicyWrite, s.publishPolicyPack)
	s.handle(get, versionPath, authz.OrgPolicyRead, s.getPolicyPack)
	s.handle(post, versionPath+"/complete", authz.OrgPolicyWrite, s.completePolicyPack)
	s.handle(get, versionPath+"/schema", authz.OrgPolicyRead, s.policyPackSchema)
	s.handle(del, packPath, authz.OrgPolicyWrite, s.removePolicyPack)
	s.handle(del, versionPath, authz.OrgPolicyWrite, s.removePolicyPack)
	s.handle(get, "/api/orgs/{org}/policygroups", authz.OrgPolicyRead, s.listPolicyGroups)
	s.handle(post, "/api/orgs/{org}/policygroups", authz.OrgPolicyWrite, s.createPolicyGroup)
	s.handle(get, groupPath, authz.OrgPolicyRead, s.getPolicyGroup)
	s.handle(patch, groupPath, authz.OrgPolicyRead, s.updatePolicyGroup) // refined per change in the handler
	s.handle(del, groupPath, authz.OrgPolicyWrite, s.deletePolicyGroup)
	s.handle(get, "/api/orgs/{org}/policy/providers", authz.OrgPolicyRead, s.getApprovedProviders)
	s.handle(put, "/api/orgs/{org}/policy/providers", authz.OrgPolicyWrite, s.putApprovedProviders)
	s.handle(get, "/api/orgs/{org}/policyresults", authz.OrgPolicyRead, s.listPolicyResults)
	s.handle(post, "/api/orgs/{org}/policyresults/issues", authz.OrgPolicyRead, s.listPolicyIssues).Audit = false // a query
	s.handle(get, "/api/orgs/{org}/policyresults/issues/{issueID}", authz.OrgPolicyRead, s.getPolicyIssue)
	s.handle(get, stackPath+"/policypacks", authz.StackPreview, s.stackPolicyPacks)
	s.handle(get, stackPath+"/policyresults", authz.StackRead, s.listPolicyResults)
	// The archive URLs: the CLI sends no credentials to them (it PUTs to and GETs from
	// the URL as from presigned object storage); the unguessable token in the path is the
	// capability (policy.NewURLToken), minted for an authorized caller by the calls above.
	s.handle(put, archivePath, authz.Public, s.uploadPolicyArchive).MaxBody = min(maxPackBytes, s.cfg.MaxBodyBytes)
	s.handle(get, archivePath, authz.Public, s.downloadPolicyArchive)
	s.noStore("POST /api/orgs/{org}/policypacks", "GET "+stackPath+"/policypacks")
}

// baseURL is the scheme and host the caller reached the server at.
func (rq *Request) baseURL() string {
	scheme := "http"
	if rq.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + rq.Host
}

func (s *Server) listPolicyPacks(rq *Request) (any, error) {
	var packs []gatehouse.PolicyPack
	err := rq.View(func(tx gatehouse.Tx) (err error) { packs, err = tx.ListPolicyPacks(rq.Org.ID); return })
	return policy.List(packs), err
}

// publishPolicyPack is the first call of `pulumi policy publish`: the version is created
// pending and the answer carries a single-use upload URL.
func (s *Server) publishPolicyPack(rq *Request) (any, error) {
	var req apitype.CreatePolicyPackRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	value, digest, err := policy.NewURLToken()
	if err != nil {
		return nil, err
	}
	var p *gatehouse.PolicyPack
	rq.Detail("pack", req.Name)
	rq.Detail("version", req.VersionTag)
	err = rq.Change(func(tx gatehouse.Tx) error {
		// Abandoned publishes are cleaned up here: never usable, gone after an hour.
		if _, err := tx.DeletePendingPolicyPacks(tx.Now().Add(-policy.PendingLifetime)); err != nil {
			return err
		}
		var err error
		if p, err = policy.Publish(tx, rq.Org.ID, &req, rq.Subject.Name()); err != nil {
			return err
		}
		return tx.CreatePolicyURL(&gatehouse.PolicyURL{Digest: digest, Purpose: "upload", PackID: p.ID, Expires: tx.Now().Add(policy.UploadURLLifetime)})
	})
	if err != nil {
		return nil, err
	}
	return apitype.CreatePolicyPackResponse{Version: p.Version, UploadURI: rq.baseURL() + "/api/policypacks/archives/" + value}, nil
}

// uploadPolicyArchive receives the archive at the upload URL (once). The route is public
// (the URL is the capability): the URL is checked before the body is read, so that a
// request to an unknown, spent or expired URL costs no 32 MiB read.
func (s *Server) uploadPolicyArchive(rq *Request) (any, error) {
	d := policy.URLDigest(rq.PathValue("token"))
	rq.event.Action = "policy:pack:upload"
	if err := rq.View(func(tx gatehouse.Tx) error {
		_, err := tx.CheckPolicyURL(d, "upload")
		return err
	}); err != nil {
		return nil, err
	}
	body, err := rq.readBody()
	if err != nil {
		return nil, err
	}
	if len(body) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "empty policy pack archive")
	}
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		u, err := tx.UsePolicyURL(d, "upload")
		if err != nil {
			return err
		}
		p, err := tx.GetPolicyPackByID(u.PackID)
		if err != nil {
			return err
		}
		s.packEvent(rq, tx, p)
		rq.Detail("size", strconv.Itoa(len(body)))
		return tx.PutPolicyPackArchive(p.ID, body)
	})
}

// packEvent names the pack in the call's audit event (archive calls have no org in the path).
func (s *Server) packEvent(rq *Request, tx gatehouse.Tx, p *gatehouse.PolicyPack) {
	rq.event.OrgID = p.OrgID
	if o, err := tx.GetOrg(p.OrgID); err == nil {
		rq.event.OrgName = o.Name
		rq.event.Target = o.Name + "/policypacks/" + p.Name + "/" + p.VersionTag
	}
}

// binaryBody is a handler result written as-is with its content type.
type binaryBody struct {
	contentType string
	data        []byte
}

// downloadPolicyArchive serves the archive at a download URL minted for an update (or for
// `pulumi policy install`), checked against its digest.
func (s *Server) downloadPolicyArchive(rq *Request) (any, error) {
	d := policy.URLDigest(rq.PathValue("token"))
	var data []byte
	err := rq.View(func(tx gatehouse.Tx) error {
		u, err := tx.UsePolicyURL(d, "download")
		if err != nil {
			return err
		}
		if u.UpdateID != "" {
			up, err := tx.GetUpdate(u.UpdateID)
			if err != nil {
				return err
			}
			if up.Status.Finished() {
				return gatehouse.Errorf(gatehouse.EGONE, "the update this policy pack URL was issued for has ended")
			}
		}
		p, err := tx.GetPolicyPackByID(u.PackID)
		if err != nil {
			return err
		}
		if p.Status != gatehouse.PolicyPackReady {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack not found")
		}
		s.packEvent(rq, tx, p)
		data, err = tx.GetPolicyPackArchive(p.ID)
		return err
	})
	if err != nil {
		return nil, err
	}
	return binaryBody{contentType: "application/gzip", data: data}, nil
}

// packFromPath loads the version named in the path.
func packFromPath(rq *Request, tx gatehouse.Tx) (*gatehouse.PolicyPack, error) {
	name, tag := rq.PathValue("pack"), rq.PathValue("version")
	rq.Detail("pack", name)
	rq.Detail("version", tag)
	return tx.GetPolicyPack(rq.Org.ID, name, tag)
}

// completePolicyPack is the last call of `pulumi policy publish`.
func (s *Server) completePolicyPack(rq *Request) (any, error) {
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		p, err := packFromPath(rq, tx)
		if err != nil {
			return err
		}
		if p.Status == gatehouse.PolicyPackReady {
			return nil // a retried complete
		}
		return tx.CompletePolicyPack(p.ID)
	})
}

func (s *Server) getPolicyPack(rq *Request) (any, error) {
	var out apitype.GetPolicyPackResponse
	err := rq.View(func(tx gatehouse.Tx) error {
		p, err := packFromPath(rq, tx)
		if err != nil {
			return err
		}
		groups, err := policy.Groups(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		m := policy.Metadata(p)
		out = apitype.GetPolicyPackResponse{Name: p.Name, DisplayName: p.DisplayName, Version: p.Version, VersionTag: p.VersionTag,
			Policies: m.Policies, Applied: len(policy.EnabledIn(groups, p.Name, p.VersionTag)) > 0}
		if out.Policies == nil {
			out.Policies = []apitype.Policy{}
		}
		return nil
	})
	return out, err
}

// policyPackSchema answers `pulumi policy validate-config` (and `enable --config`).
func (s *Server) policyPackSchema(rq *Request) (any, error) {
	var out apitype.GetPolicyPackConfigSchemaResponse
	err := rq.View(func(tx gatehouse.Tx) error {
		p, err := packFromPath(rq, tx)
		if err != nil {
			return err
		}
		if p.Status != gatehouse.PolicyPackReady {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack %s version %s was never completely published", p.Name, p.VersionTag)
		}
		out = policy.Schema(p)
		return nil
	})
	return out, err
}

// removePolicyPack is `pulumi policy rm ORG/PACK VERSION|all`: refused while a group
// enables it.
func (s *Server) removePolicyPack(rq *Request) (any, error) {
	name, tag := rq.PathValue("pack"), rq.PathValue("version")
	rq.Detail("pack", name)
	if tag != "" {
		rq.Detail("version", tag)
	}
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		packs, err := tx.ListPolicyPacks(rq.Org.ID)
		if err != nil {
			return err
		}
		groups, err := policy.Groups(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		var victims []gatehouse.PolicyPack
		readyLeft := 0
		for _, p := range packs {
			if p.Name != name {
				continue
			}
			if tag == "" || p.VersionTag == tag {
				victims = append(victims, p)
			} else if p.Status == gatehouse.PolicyPackReady {
				readyLeft++
			}
		}
		if len(victims) == 0 {
			if tag == "" {
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack %s not found", name)
			}
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy pack %s version %s not found", name, tag)
		}
		if in := policy.EnabledIn(groups, name, tag); len(in) > 0 {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "policy pack %s is enabled in policy group(s) %s: disable it first", name, strings.Join(in, ", "))
		}
		if tag != "" && readyLeft == 0 {
			// A group enabling "the newest version" would be left with none.
			if in := policy.EnabledIn(groups, name, ""); len(in) > 0 {
				return gatehouse.Errorf(gatehouse.ECONFLICT, "policy pack %s is enabled in policy group(s) %s and this is its last version: disable it first", name, strings.Join(in, ", "))
			}
		}
		for _, p := range victims {
			if err := tx.DeletePolicyPack(p.ID); err != nil {
				return err
			}
		}
		return nil
	})
}

// listPolicyGroups lists the organization's groups; each counts the stacks it selects
// that the caller may read (as GET /api/stacks/{org} shows them).
func (s *Server) listPolicyGroups(rq *Request) (any, error) {
	out := apitype.ListPolicyGroupsResponse{PolicyGroups: []apitype.PolicyGroupSummary{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		groups, err := policy.Groups(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		all, err := orgStacks(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		stacks, _ := rq.readableStacks(all)
		for i := range groups {
			out.PolicyGroups = append(out.PolicyGroups, policy.Summary(&groups[i], stacks))
		}
		return nil
	})
	return out, err
}

// policyGroupJSON is a group as Gatehouse shows it: the service's shape plus the
// selectors.
type policyGroupJSON struct {
	apitype.GetPolicyGroupResponse
	Selectors []selectorJSON `json:"selectors"`
}

type selectorJSON struct {
	Stack   string `json:"stack,omitempty"` // project/stack
	Project string `json:"project,omitempty"`
	Tag     string `json:"tag,omitempty"` // name=value
}

// groupJSON is group g of the request's organization as the caller may see it: the stacks
// it selects, and its selectors naming a stack, only where the caller may read the stack
// (mayReadStack); project and tag selectors, and the packs, as they are.
func groupJSON(rq *Request, tx gatehouse.Tx, g *gatehouse.PolicyGroup) (policyGroupJSON, error) {
	org := rq.Org
	out := policyGroupJSON{GetPolicyGroupResponse: apitype.GetPolicyGroupResponse{Name: g.Name, IsOrgDefault: g.IsDefault, EntityType: apitype.Stacks,
		Mode: apitype.PolicyGroupModePreventative, Stacks: []apitype.PulumiStackReference{}, AppliedPolicyPacks: []apitype.PolicyPackMetadata{}, Accounts: []string{}},
		Selectors: []selectorJSON{}}
	all, err := orgStacks(tx, org.ID)
	if err != nil {
		return out, err
	}
	stacks, _ := rq.readableStacks(all)
	for i := range stacks {
		if policy.Selects(g, &stacks[i]) {
			out.Stacks = append(out.Stacks, apitype.PulumiStackReference{Name: stacks[i].Name, RoutingProject: stacks[i].Project})
		}
	}
	for _, gp := range g.Packs {
		m := apitype.PolicyPackMetadata{Name: gp.Name, VersionTag: gp.VersionTag, Config: gp.Config}
		if p, err := policy.Resolve(tx, org.ID, gp.Name, gp.VersionTag); err == nil {
			m.DisplayName, m.Version = p.DisplayName, p.Version
		}
		out.AppliedPolicyPacks = append(out.AppliedPolicyPacks, m)
	}
	for _, sc := range g.Selectors {
		switch {
		case sc.StackID != 0:
			st, err := tx.GetStackByID(sc.StackID)
			if err != nil || !mayReadStack(rq.Subject, org, rq.facts, st) {
				continue // deleted since (selects nothing), or not for the caller to see
			}
			out.Selectors = append(out.Selectors, selectorJSON{Stack: st.Project + "/" + st.Name})
		case sc.Project != "":
			out.Selectors = append(out.Selectors, selectorJSON{Project: sc.Project})
		case sc.TagName != "":
			out.Selectors = append(out.Selectors, selectorJSON{Tag: sc.TagName + "=" + sc.TagValue})
		}
	}
	return out, nil
}

func (s *Server) getPolicyGroup(rq *Request) (any, error) {
	var out policyGroupJSON
	err := rq.View(func(tx gatehouse.Tx) error {
		g, err := policy.Group(tx, rq.Org.ID, rq.PathValue("group"))
		if err != nil {
			return err
		}
		out, err = groupJSON(rq, tx, g)
		return err
	})
	return out, err
}

// createPolicyGroup is `pulumi policy group create` (stacks only, preventative).
func (s *Server) createPolicyGroup(rq *Request) (any, error) {
	var req apitype.CreatePolicyGroupRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := policy.ValidGroupName(req.Name); err != nil {
		return nil, err
	}
	if req.EntityType != "" && req.EntityType != string(apitype.Stacks) {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "only policy groups of stacks are supported")
	}
	if req.Mode != "" && req.Mode != string(apitype.PolicyGroupModePreventative) {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "only preventative policy groups are supported (policies run in the CLI on every update and preview)")
	}
	rq.Detail("group", req.Name)
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		if req.Name == policy.DefaultGroup {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "the default policy group exists in every organization")
		}
		if _, err := tx.GetPolicyGroup(rq.Org.ID, req.Name); err == nil {
			return gatehouse.Errorf(gatehouse.ECONFLICT, "policy group %s already exists", req.Name)
		}
		return tx.PutPolicyGroup(&gatehouse.PolicyGroup{OrgID: rq.Org.ID, Name: req.Name})
	})
}

func (s *Server) deletePolicyGroup(rq *Request) (any, error) {
	name := rq.PathValue("group")
	rq.Detail("group", name)
	if name == policy.DefaultGroup {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "the default policy group cannot be deleted")
	}
	return noContent{}, rq.Change(func(tx gatehouse.Tx) error {
		g, err := tx.GetPolicyGroup(rq.Org.ID, name)
		if err != nil {
			return err
		}
		if err := s.guardProtectedStacks(rq, tx, g, &gatehouse.PolicyGroup{OrgID: g.OrgID, Name: g.Name}); err != nil {
			return err
		}
		return tx.DeletePolicyGroup(rq.Org.ID, name)
	})
}

// policyGroupPatch is the CLI's UpdatePolicyGroupRequest plus Gatehouse's selectors.
type policyGroupPatch struct {
	apitype.UpdatePolicyGroupRequest
	AddSelector    *selectorJSON `json:"addSelector,omitempty"`
	RemoveSelector *selectorJSON `json:"removeSelector,omitempty"`
}

// updatePolicyGroup is `pulumi policy enable|disable` (add/removePolicyPack) and the
// group edits (add/removeStack, rename, Gatehouse's add/removeSelector). Pack and
// selector changes need org:policy:write; adding or removing one stack is also open to
// that stack's admins (stack:policy). Removing the last required pack of a protected stack
// needs org:policy:write.
func (s *Server) updatePolicyGroup(rq *Request) (any, error) {
	var req policyGroupPatch
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	name := rq.PathValue("group")
	rq.Detail("group", name)
	r := &req.UpdatePolicyGroupRequest
	stackOnly := (r.AddStack != nil || r.RemoveStack != nil) && r.NewName == nil && r.AddPolicyPack == nil && r.RemovePolicyPack == nil &&
		r.Stacks == nil && r.PolicyPacks == nil && req.AddSelector == nil && req.RemoveSelector == nil
	if r.AddInsightsAccount != nil || r.RemoveInsightsAccount != nil || r.InsightsAccounts != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "Insights accounts are not supported")
	}
	if !stackOnly {
		if err := rq.Authorize(authz.OrgPolicyWrite); err != nil {
			return nil, err
		}
	}
	orgAdmin := authz.Decide(rq.Subject, authz.OrgPolicyWrite, authz.Resource{Org: rq.Org}, rq.facts).Allow
	// denied is the stack whose stack:policy the caller lacks: the refusal is recorded (and
	// answered) by rq.authorize once the transaction is over, since its audit record is
	// written by another one (inside, it waited for the write lock it held).
	var denied *gatehouse.Stack
	errDenied := errors.New("stack:policy denied")
	err := rq.Change(func(tx gatehouse.Tx) error {
		g, err := policy.Group(tx, rq.Org.ID, name)
		if err != nil {
			return err
		}
		before := *g
		before.Selectors = append([]gatehouse.Scope(nil), g.Selectors...)
		before.Packs = append([]gatehouse.PolicyGroupPack(nil), g.Packs...)
		if r.NewName != nil {
			if g.IsDefault {
				return gatehouse.Errorf(gatehouse.EINVALID, "the default policy group cannot be renamed")
			}
			if err := policy.ValidGroupName(*r.NewName); err != nil {
				return err
			}
			if err := tx.DeletePolicyGroup(rq.Org.ID, g.Name); err != nil {
				return err
			}
			g.Name = *r.NewName
			rq.Detail("new_name", g.Name)
			if _, err := tx.GetPolicyGroup(rq.Org.ID, g.Name); err == nil || g.Name == policy.DefaultGroup {
				return gatehouse.Errorf(gatehouse.ECONFLICT, "policy group %s already exists", g.Name)
			}
		}
		for _, ref := range []*apitype.PulumiStackReference{r.AddStack, r.RemoveStack} {
			if ref == nil {
				continue
			}
			if g.IsDefault {
				return gatehouse.Errorf(gatehouse.EINVALID, "the default policy group selects every stack of the organization")
			}
			sc, st, err := policy.StackSelector(tx, rq.Org, ref)
			if err != nil {
				return err
			}
			if !orgAdmin && !mayReadStack(rq.Subject, rq.Org, rq.facts, st) {
				// Before the group is looked at: a stack the caller may not read is
				// answered as a missing one (policy.StackSelector), whatever the group.
				return gatehouse.Errorf(gatehouse.EINVALID, "stack %s/%s/%s does not exist", rq.Org.Name, sc.StackRef.Project, sc.StackRef.Stack)
			}
			if stackOnly && !orgAdmin && !authz.Decide(rq.Subject, authz.StackPolicy, authz.Resource{Org: rq.Org, Stack: st}, rq.facts).Allow {
				denied = st
				return errDenied
			}
			if ref == r.AddStack {
				err = policy.AddSelector(g, sc)
				rq.Detail("add_stack", st.Project+"/"+st.Name)
			} else {
				err = policy.RemoveSelector(g, sc)
				rq.Detail("remove_stack", st.Project+"/"+st.Name)
			}
			if err != nil {
				return err
			}
		}
		if r.Stacks != nil {
			if g.IsDefault {
				return gatehouse.Errorf(gatehouse.EINVALID, "the default policy group selects every stack of the organization")
			}
			// `pulumi policy group edit --add-stack` sends the whole list it read (every
			// stack the group selects) plus its change: project and tag selectors stay,
			// and only the stacks they do not already select become named ones.
			kept := &gatehouse.PolicyGroup{OrgID: g.OrgID, Name: g.Name}
			for _, sc := range g.Selectors {
				if sc.StackID == 0 {
					kept.Selectors = append(kept.Selectors, sc)
				}
			}
			named := []gatehouse.Scope{}
			listed := map[int64]bool{}
			for i := range *r.Stacks {
				sc, st, err := policy.StackSelector(tx, rq.Org, &(*r.Stacks)[i])
				if err != nil {
					return err
				}
				listed[st.ID] = true
				if !policy.Selects(kept, st) {
					named = append(named, sc)
				}
			}
			if len(kept.Selectors) > 0 {
				stacks, err := orgStacks(tx, rq.Org.ID)
				if err != nil {
					return err
				}
				for i := range stacks {
					if policy.Selects(kept, &stacks[i]) && !listed[stacks[i].ID] {
						return gatehouse.Errorf(gatehouse.EINVALID, "stack %s is selected by a project or tag selector of policy group %s: remove the selector (gatehouse policy group unselect)", stacks[i].Ref(), g.Name)
					}
				}
			}
			g.Selectors = append(kept.Selectors, named...)
		}
		for _, sj := range []*selectorJSON{req.AddSelector, req.RemoveSelector} {
			if sj == nil {
				continue
			}
			if g.IsDefault {
				return gatehouse.Errorf(gatehouse.EINVALID, "the default policy group selects every stack of the organization")
			}
			if strings.Count(sj.Stack, "/") > 1 {
				return gatehouse.Errorf(gatehouse.EINVALID, "stack %s: a policy group selects only stacks of its own organization (name them project/stack)", sj.Stack)
			}
			sc, err := scopeOf(rq, tx, sj.Stack, sj.Project, sj.Tag)
			if err != nil {
				return err
			}
			if sj == req.AddSelector {
				err = policy.AddSelector(g, sc)
				rq.Detail("add_selector", sc.String())
			} else {
				err = policy.RemoveSelector(g, sc)
				rq.Detail("remove_selector", sc.String())
			}
			if err != nil {
				return err
			}
		}
		if r.AddPolicyPack != nil {
			rq.Detail("enable", r.AddPolicyPack.Name+"@"+r.AddPolicyPack.VersionTag)
			if err := policy.EnablePack(tx, g, r.AddPolicyPack); err != nil {
				return err
			}
		}
		if r.RemovePolicyPack != nil {
			rq.Detail("disable", r.RemovePolicyPack.Name+"@"+r.RemovePolicyPack.VersionTag)
			if err := policy.DisablePack(tx, g, r.RemovePolicyPack); err != nil {
				return err
			}
		}
		if r.PolicyPacks != nil {
			g.Packs = nil
			for i := range *r.PolicyPacks {
				if err := policy.EnablePack(tx, g, &(*r.PolicyPacks)[i]); err != nil {
					return err
				}
			}
		}
		if !orgAdmin {
			if err := s.guardProtectedStacks(rq, tx, &before, g); err != nil {
				return err
			}
		}
		return tx.PutPolicyGroup(g)
	})
	if denied != nil {
		return nil, rq.authorize(authz.StackPolicy, authz.Resource{Org: rq.Org, Stack: denied})
	}
	return noContent{}, err
}

// guardProtectedStacks refuses a group change (before -> after) that leaves a protected
// stack which required policies before without any, unless the caller may manage the
// organization's policies.
func (s *Server) guardProtectedStacks(rq *Request, tx gatehouse.Tx, before, after *gatehouse.PolicyGroup) error {
	if authz.Decide(rq.Subject, authz.OrgPolicyWrite, authz.Resource{Org: rq.Org}, rq.facts).Allow {
		return nil
	}
	prots, err := tx.ListProtections(rq.Org.ID)
	if err != nil || len(prots) == 0 {
		return err
	}
	stacks, err := orgStacks(tx, rq.Org.ID)
	if err != nil {
		return err
	}
	groups, err := policy.Groups(tx, rq.Org.ID)
	if err != nil {
		return err
	}
	for i := range stacks {
		st := &stacks[i]
		protected := false
		for _, p := range prots {
			if p.Scope.Matches(st.ID, st.Project, st.Tags) {
				protected = true
				break
			}
		}
		if !protected || !policy.Selects(before, st) || len(before.Packs) == 0 {
			continue
		}
		n := 0
		for j := range groups {
			g := &groups[j]
			if g.Name == before.Name {
				g = after
			}
			if policy.Selects(g, st) {
				n += len(g.Packs)
			}
		}
		if n == 0 {
			return gatehouse.Errorf(gatehouse.EFORBIDDEN, "stack %s is protected and this change would leave it without any required policy pack: only an organization admin may do that", st.Ref())
		}
	}
	return nil
}

// stackPolicyPacks is `pulumi policy install` (GetStackPolicyPacks): the required packs
// with download URLs bound to the stack.
func (s *Server) stackPolicyPacks(rq *Request) (any, error) {
	var out apitype.GetStackPolicyPacksResponse
	err := rq.Change(func(tx gatehouse.Tx) (err error) {
		out.RequiredPolicies, err = s.requiredPolicies(rq, tx, "")
		return err
	})
	return out, err
}

// requiredPolicies returns the packs the request's stack requires, each with a fresh
// download URL (bound to updateID when set: it dies when the update ends).
func (s *Server) requiredPolicies(rq *Request, tx gatehouse.Tx, updateID string) ([]apitype.RequiredPolicy, error) {
	reqs, err := policy.Required(tx, rq.Stack)
	if err != nil || len(reqs) == 0 {
		return nil, err
	}
	// Expired URLs (and abandoned publishes) go as new ones are minted.
	if _, err := tx.DeletePendingPolicyPacks(tx.Now().Add(-policy.PendingLifetime)); err != nil {
		return nil, err
	}
	out := make([]apitype.RequiredPolicy, 0, len(reqs))
	names := make([]string, 0, len(reqs))
	for _, r := range reqs {
		value, digest, err := policy.NewURLToken()
		if err != nil {
			return nil, err
		}
		if err := tx.CreatePolicyURL(&gatehouse.PolicyURL{Digest: digest, Purpose: "download", PackID: r.Pack.ID, UpdateID: updateID, Expires: tx.Now().Add(policy.DownloadURLLifetime)}); err != nil {
			return nil, err
		}
		out = append(out, apitype.RequiredPolicy{Name: r.Pack.Name, Version: r.Pack.Version, VersionTag: r.Pack.VersionTag, DisplayName: r.Pack.DisplayName,
			PackLocation: rq.baseURL() + "/api/policypacks/archives/" + value, Config: r.Config})
		names = append(names, r.Pack.Name+"@"+r.Pack.VersionTag)
	}
	rq.Detail("required_policies", strings.Join(names, ","))
	return out, nil
}

// approvedProvidersJSON is the allow-list as the API shows and takes it.
type approvedProvidersJSON struct {
	Enforced  bool                         `json:"enforced"`
	Providers []gatehouse.ApprovedProvider `json:"providers"`
}

func (s *Server) getApprovedProviders(rq *Request) (any, error) {
	var set *gatehouse.PolicySettings
	err := rq.View(func(tx gatehouse.Tx) (err error) { set, err = tx.GetPolicySettings(rq.Org.ID); return })
	if err != nil {
		return nil, err
	}
	return approvedProvidersJSON{Enforced: set.Enforced, Providers: set.ApprovedProviders}, nil
}

// putApprovedProviders replaces the allow-list ({"enforced": false} lifts it).
func (s *Server) putApprovedProviders(rq *Request) (any, error) {
	var req approvedProvidersJSON
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if len(req.Providers) > 500 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "at most 500 approved providers")
	}
	set := &gatehouse.PolicySettings{OrgID: rq.Org.ID, Enforced: req.Enforced, ApprovedProviders: req.Providers}
	if set.ApprovedProviders == nil {
		set.ApprovedProviders = []gatehouse.ApprovedProvider{}
	}
	if _, err := policy.ParseAllowList(set); err != nil {
		return nil, err
	}
	list := make([]string, 0, len(req.Providers))
	for _, p := range req.Providers {
		list = append(list, strings.TrimSpace(p.Name+" "+p.Versions))
	}
	rq.Detail("enforced", strconv.FormatBool(req.Enforced))
	rq.Detail("providers", truncate(strings.Join(list, ","), 1024))
	if err := rq.Change(func(tx gatehouse.Tx) error { return tx.PutPolicySettings(set) }); err != nil {
		return nil, err
	}
	return approvedProvidersJSON{Enforced: set.Enforced, Providers: set.ApprovedProviders}, nil
}

// policyResultJSON is a stored result as Gatehouse lists it.
type policyResultJSON struct {
	apitype.PolicyIssue
	UpdateID string `json:"updateID,omitempty"`
	DryRun   bool   `json:"dryRun"`
}

func resultFilter(rq *Request) (gatehouse.PolicyResultFilter, error) {
	q := rq.URL.Query()
	f := gatehouse.PolicyResultFilter{OrgID: rq.Org.ID, PackName: q.Get("pack"), Kind: q.Get("kind"), UpdateID: q.Get("update"), Limit: 500}
	if rq.Stack != nil {
		f.StackID = rq.Stack.ID
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			return f, gatehouse.Errorf(gatehouse.EINVALID, "limit must be 1 to 5000")
		}
		f.Limit = n
	}
	return f, nil
}

// readableStackIDs are the IDs of the request organization's stacks the caller may read
// (mayReadStack, as GET /api/stacks/{org} lists them); nil when that is every stack.
// Policy results and issues of the other stacks are left out of the organization's
// listings, as the stacks are.
func (rq *Request) readableStackIDs(tx gatehouse.Tx) (map[int64]bool, error) {
	all, err := orgStacks(tx, rq.Org.ID)
	if err != nil {
		return nil, err
	}
	readable, every := rq.readableStacks(all)
	if every {
		return nil, nil
	}
	ids := make(map[int64]bool, len(readable))
	for i := range readable {
		ids[readable[i].ID] = true
	}
	return ids, nil
}

// listPolicyResults lists results of the organization (?stack=project/stack, ?pack=,
// ?kind=, ?update=) or of the stack in the path. The organization's list has only the
// results of stacks the caller may read; ?stack= naming one they may not answers as a
// missing stack.
func (s *Server) listPolicyResults(rq *Request) (any, error) {
	f, err := resultFilter(rq)
	if err != nil {
		return nil, err
	}
	out := struct {
		Results []policyResultJSON `json:"results"`
	}{Results: []policyResultJSON{}}
	err = rq.View(func(tx gatehouse.Tx) error {
		var readable map[int64]bool // nil: every result (the stack route was decided by stack:read)
		if rq.Stack == nil {
			var err error
			if readable, err = rq.readableStackIDs(tx); err != nil {
				return err
			}
		}
		if ref := rq.URL.Query().Get("stack"); ref != "" && rq.Stack == nil {
			p, n, ok := strings.Cut(ref, "/")
			if !ok {
				return gatehouse.Errorf(gatehouse.EINVALID, "stack must be project/stack")
			}
			st, err := tx.GetStack(rq.Org.ID, p, n)
			if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				return err
			}
			if err != nil || readable != nil && !readable[st.ID] {
				return gatehouse.Errorf(gatehouse.ENOTFOUND, "Stack '%s/%s/%s' not found", rq.Org.Name, p, n)
			}
			f.StackID = st.ID
		}
		limit := f.Limit
		if readable != nil && f.StackID == 0 {
			// The limit counts the results the caller may see: the store keeps only those
			// (up to maxStackIDsInQuery readable stacks; beyond, every result is read and
			// filtered here).
			if len(readable) <= maxStackIDsInQuery {
				f.StackIDs = make([]int64, 0, len(readable))
				for id, ok := range readable {
					if ok {
						f.StackIDs = append(f.StackIDs, id)
					}
				}
			} else {
				f.Limit = 0
			}
		}
		rs, err := tx.ListPolicyResults(f)
		if err != nil {
			return err
		}
		for i := range rs {
			if readable != nil && !readable[rs[i].StackID] {
				continue
			}
			if len(out.Results) == limit {
				break
			}
			out.Results = append(out.Results, policyResultJSON{PolicyIssue: policy.Issue(&rs[i]), UpdateID: rs[i].UpdateID, DryRun: rs[i].DryRun})
		}
		return nil
	})
	return out, err
}

// maxStackIDsInQuery bounds the stack IDs a policy results query names (a query's bound
// parameters are limited: SQLite's to 32,766).
const maxStackIDsInQuery = 1000

// listPolicyIssues is the CLI's ListPolicyIssues: violations, newest first, in rows
// [startRow, endRow), of the stacks the caller may read.
func (s *Server) listPolicyIssues(rq *Request) (any, error) {
	var req apitype.ListPolicyIssuesRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.StartRow < 0 || req.EndRow < req.StartRow {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid row range")
	}
	if req.EndRow == 0 {
		req.EndRow = req.StartRow + 100
	}
	out := apitype.ListPolicyIssuesResponse{Issues: []apitype.PolicyIssue{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		readable, err := rq.readableStackIDs(tx)
		if err != nil {
			return err
		}
		rs, err := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: rq.Org.ID})
		if err != nil {
			return err
		}
		var issues []gatehouse.PolicyResult
		for _, r := range rs {
			if readable != nil && !readable[r.StackID] {
				continue
			}
			if r.Kind == policy.KindViolation || r.Kind == policy.KindProvider {
				issues = append(issues, r)
			}
		}
		out.Total = int64(len(issues))
		for i := req.StartRow; i < req.EndRow && i < len(issues); i++ {
			out.Issues = append(out.Issues, policy.Issue(&issues[i]))
		}
		return nil
	})
	return out, err
}

// getPolicyIssue is one issue; one of a stack the caller may not read is not found.
func (s *Server) getPolicyIssue(rq *Request) (any, error) {
	id, err := strconv.ParseInt(rq.PathValue("issueID"), 10, 64)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "policy issue not found")
	}
	var out apitype.GetPolicyIssueResponse
	err = rq.View(func(tx gatehouse.Tx) error {
		rs, err := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: rq.Org.ID, ID: id, Limit: 1})
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy issue not found")
		}
		st, err := tx.GetStackByID(rs[0].StackID)
		if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		if err != nil || st.OrgID != rq.Org.ID || !mayReadStack(rq.Subject, rq.Org, rq.facts, st) {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "policy issue not found")
		}
		out.PolicyIssue = policy.Issue(&rs[0])
		return nil
	})
	return out, err
}

// --- updates: results, audit of mandatory violations, approved providers ---

// recordPolicyEvents stores the policy results in a batch of engine events (in the
// events' transaction) and records each mandatory violation as an audit event; for a
// preview under an allow-list it also records the unapproved providers the preview would
// register (its complete then fails).
func (s *Server) recordPolicyEvents(rq *Request, tx gatehouse.Tx, raw []json.RawMessage, seqs []int, fresh map[int]bool) error {
	var rs []gatehouse.PolicyResult
	var news []json.RawMessage
	for i := range raw {
		if !fresh[seqs[i]] {
			continue // a retried batch: its results are stored
		}
		news = append(news, raw[i])
		rs = append(rs, policy.FromEvents(raw[i:i+1])...)
	}
	raw = news
	u := rq.Update
	if u.DryRun {
		set, err := tx.GetPolicySettings(rq.Stack.OrgID)
		if err != nil {
			return err
		}
		if set.Enforced {
			al, err := policy.ParseAllowList(set)
			if err != nil {
				return err
			}
			found := policy.InEvents(raw)
			var base []policy.Provider
			if len(al.Violations(found, nil)) > 0 {
				// Providers of the stack's state pass, as they do for real updates.
				if data, _, err := tx.GetCheckpoint(u.StackID, -1); err == nil {
					base, _ = policy.InUntyped(data)
				}
			}
			for _, verr := range al.Violations(found, base) {
				rs = append(rs, gatehouse.PolicyResult{Kind: policy.KindProvider, PackName: "approved-providers", PolicyName: "approved-providers",
					Level: string(apitype.Mandatory), Message: gatehouse.ErrorMessage(verr)})
			}
		}
	}
	if len(rs) == 0 {
		return nil
	}
	for i := range rs {
		rs[i].OrgID, rs[i].StackID, rs[i].UpdateID, rs[i].DryRun = rq.Stack.OrgID, rq.Stack.ID, u.ID, u.DryRun
	}
	if err := tx.AppendPolicyResults(rs); err != nil {
		return err
	}
	for i := range rs {
		if policy.Mandatory(&rs[i]) {
			if err := s.auditViolation(rq, tx, &rs[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// auditViolation appends a mandatory violation as its own audit event.
func (s *Server) auditViolation(rq *Request, tx gatehouse.Tx, r *gatehouse.PolicyResult) error {
	ev := rq.event
	ev.Action, ev.Outcome = "policy:violation", gatehouse.OutcomeDenied
	ev.Reason = truncate(r.Message, 1024)
	ev.Details = map[string]string{"update": r.UpdateID, "kind": r.Kind, "pack": r.PackName, "pack_version": r.PackVersion,
		"policy": r.PolicyName, "level": r.Level, "dry_run": strconv.FormatBool(r.DryRun)}
	if r.URN != "" {
		ev.Details["urn"] = truncate(r.URN, 1024)
	}
	return tx.AppendAudit(&ev)
}

// providerRefusal is an update state refused for unapproved providers.
type providerRefusal struct{ errs []error }

func (p *providerRefusal) Error() string {
	msgs := make([]string, 0, len(p.errs))
	for _, e := range p.errs {
		msgs = append(msgs, gatehouse.ErrorMessage(e))
	}
	return strings.Join(msgs, "; ")
}

// guardProviders checks the providers a state sent by a real update would hold against
// the organization's allow-list; found is called only when one is enforced. Providers in
// the stack's previous state with the same version pass.
func guardProviders(tx gatehouse.Tx, u *gatehouse.Update, orgID int64, found func() ([]policy.Provider, error)) error {
	if u.DryRun {
		return nil
	}
	set, err := tx.GetPolicySettings(orgID)
	if err != nil || !set.Enforced {
		return err
	}
	al, err := policy.ParseAllowList(set)
	if err != nil {
		return err
	}
	provs, err := found()
	if err != nil {
		return gatehouse.Errorf(gatehouse.EINVALID, "the state cannot be read: %v", err)
	}
	if len(al.Violations(provs, nil)) == 0 {
		return nil
	}
	var base []policy.Provider
	if data, _, err := tx.GetCheckpoint(u.StackID, u.Version-1); err == nil {
		if base, err = policy.InUntyped(data); err != nil {
			return gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
		}
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return err
	}
	if v := al.Violations(provs, base); len(v) > 0 {
		return &providerRefusal{errs: v}
	}
	return nil
}

// changeGuarded runs a state-writing change; when guardProviders refused it, the refusal
// is recorded (a denied audit event, and results with the update) and answered 403.
func (s *Server) changeGuarded(rq *Request, fn func(gatehouse.Tx) error) error {
	err := rq.Change(fn)
	var pr *providerRefusal
	if !errors.As(err, &pr) {
		return err
	}
	msg := "update stopped by the organization's approved providers: " + pr.Error()
	refusal := gatehouse.Errorf(gatehouse.EFORBIDDEN, "%s", msg)
	rq.Detail("policy", "approved-providers")
	rq.event.Reason = truncate(msg, 1024)
	rq.fail(gatehouse.OutcomeDenied, refusal)
	rs := make([]gatehouse.PolicyResult, 0, len(pr.errs))
	for _, e := range pr.errs {
		rs = append(rs, gatehouse.PolicyResult{OrgID: rq.Stack.OrgID, StackID: rq.Stack.ID, UpdateID: rq.Update.ID, Kind: policy.KindProvider,
			PackName: "approved-providers", PolicyName: "approved-providers", Level: string(apitype.Mandatory), Message: gatehouse.ErrorMessage(e)})
	}
	if werr := s.store.Update(rq.Context(), func(tx gatehouse.Tx) error { return tx.AppendPolicyResults(rs) }); werr != nil {
		s.log.Error("policy: cannot record refused providers", "request_id", rq.ID, "err", werr)
	}
	return refusal
}

// previewRefusal is the error a preview's complete answers when the preview would
// register unapproved providers (nil when not).
func previewRefusal(tx gatehouse.Tx, u *gatehouse.Update, orgID int64) error {
	if !u.DryRun {
		return nil
	}
	rs, err := tx.ListPolicyResults(gatehouse.PolicyResultFilter{OrgID: orgID, UpdateID: u.ID, Kind: policy.KindProvider, Limit: 20})
	if err != nil || len(rs) == 0 {
		return err
	}
	msgs := make([]string, 0, len(rs))
	for _, r := range rs {
		msgs = append(msgs, r.Message)
	}
	return gatehouse.Errorf(gatehouse.EFORBIDDEN, "this update would be stopped by the organization's approved providers: %s", strings.Join(msgs, "; "))
}

// freshEvents tells which events of a batch the update does not have yet (a retried or
// duplicated batch must not record its policy results twice). It reads only when the batch
// carries policy events.
func freshEvents(tx gatehouse.Tx, updateID string, events []gatehouse.EngineEvent) (map[int]bool, error) {
	fresh := make(map[int]bool, len(events))
	lo, hi, any := 0, 0, false
	for _, e := range events {
		fresh[e.Seq] = true
		if strings.Contains(string(e.Data), `"policy`) {
			if !any || e.Seq < lo {
				lo = e.Seq
			}
			if !any || e.Seq > hi {
				hi = e.Seq
			}
			any = true
		}
	}
	if !any {
		return fresh, nil
	}
	have, err := tx.ListEngineEvents(updateID, lo-1, hi-lo+1)
	if err != nil {
		return nil, err
	}
	for _, e := range have {
		delete(fresh, e.Seq)
	}
	return fresh, nil
}
