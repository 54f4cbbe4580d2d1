package httpapi

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"regexp"
	"strconv"
	"unicode/utf8"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	"github.com/pulumi/pulumi/sdk/v3/go/common/tokens"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/state"
)

var (
	// The CLI's own rules: stack names are Pulumi QName tokens, projects are cleaned to this set.
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,100}$`)
	tagKeyRE = regexp.MustCompile(`^[a-zA-Z0-9-_.:]{1,40}$`)
)

func validName(kind, s string) error {
	if !nameRE.MatchString(s) || s == "." || s == ".." {
		return gatehouse.Errorf(gatehouse.EINVALID, "invalid %s name %q: use 1-100 letters, digits, '-', '_' or '.'", kind, s)
	}
	return nil
}

func validTags(tags map[string]string) error {
	if len(tags) > 200 {
		return gatehouse.Errorf(gatehouse.EINVALID, "too many tags (%d, at most 200)", len(tags))
	}
	for k, v := range tags {
		if !tagKeyRE.MatchString(k) {
			return gatehouse.Errorf(gatehouse.EINVALID, "invalid tag name %q: 1-40 letters, digits, '-', '_', '.' or ':'", k)
		}
		if len(v) > 256 {
			return gatehouse.Errorf(gatehouse.EINVALID, "the value of tag %q is longer than 256 characters", k)
		}
		if err := plainText("tag "+k, v); err != nil {
			return err
		}
	}
	return nil
}

// plainText refuses control characters (NUL above all, which PostgreSQL text cannot hold)
// and invalid UTF-8 in a short text field.
func plainText(field, v string) error {
	if !utf8.ValidString(v) {
		return gatehouse.Errorf(gatehouse.EINVALID, "%s is not valid UTF-8", field)
	}
	for _, r := range v {
		if r < 0x20 && r != '\t' || r == 0x7f {
			return gatehouse.Errorf(gatehouse.EINVALID, "%s contains a control character", field)
		}
	}
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// emptyDeployment is what export returns for a stack that was never updated.
var emptyDeployment = []byte(`{"version":3,"deployment":{"manifest":{"time":"0001-01-01T00:00:00Z","magic":"","version":""}}}`)

func (s *Server) stackJSON(st *gatehouse.Stack, u *gatehouse.Update) apitype.Stack {
	out := apitype.Stack{
		ID: itoa(st.ID), OrgName: st.OrgName, ProjectName: st.Project, StackName: tokens.QName(st.Name),
		ActiveUpdate: st.ActiveUpdate, Version: st.Version, Tags: map[apitype.StackTagName]string{},
	}
	for k, v := range st.Tags {
		out.Tags[k] = v
	}
	if u != nil && u.Status == gatehouse.StatusRunning {
		out.CurrentOperation = &apitype.OperationStatus{Kind: apitype.UpdateKind(u.Kind), Author: u.Author, Started: u.Started.Unix()}
	}
	return out
}

func (s *Server) getStack(rq *Request) (any, error) {
	var active *gatehouse.Update
	var config *gatehouse.StackConfig
	if rq.Stack.ActiveUpdate == "" && !rq.Stack.RemoteConfig {
		return s.stackJSON(rq.Stack, nil), nil // no second read on the CLI's hot path
	}
	if err := rq.View(func(tx gatehouse.Tx) error {
		if rq.Stack.ActiveUpdate != "" {
			if u, err := tx.GetUpdate(rq.Stack.ActiveUpdate); err == nil {
				active = u
			}
		}
		if !rq.Stack.RemoteConfig {
			return nil
		}
		c, err := tx.GetStackConfig(rq.Stack.ID)
		if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		config = c
		return nil
	}); err != nil {
		return nil, err
	}
	out := s.stackJSON(rq.Stack, active)
	if config != nil {
		// Only a stack with remote configuration has "config": the CLI then loads its
		// configuration from that ESC environment instead of Pulumi.<stack>.yaml.
		out.Config = stackConfigJSON(config)
	}
	return out, nil
}

func (s *Server) projectExists(rq *Request) (any, error) {
	project := rq.PathValue("project")
	var ok bool
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ok, err = tx.ProjectExists(rq.Org.ID, project)
		return err
	}); err != nil {
		return nil, err
	}
	if !ok {
		return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "project not found")
	}
	return headOnly{}, nil
}

func (s *Server) createStack(rq *Request) (any, error) {
	project := rq.PathValue("project")
	// The body may carry a whole state (up to MaxBodyBytes): whoever may not create stacks
	// here whatever the name and tags is refused before it is read.
	rq.event.Target = rq.Org.Name + "/" + project
	if err := rq.authorize(authz.StackCreate, authz.Resource{Org: rq.Org, NewStack: &authz.NewStack{Project: project, AnyTags: true}}); err != nil {
		return nil, err
	}
	var req apitype.CreateStackRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if err := validName("project", project); err != nil {
		return nil, err
	}
	if err := validName("stack", req.StackName); err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	if err := validTags(tags); err != nil {
		return nil, err
	}
	var config *gatehouse.StackConfig
	if req.Config != nil { // pulumi stack init --remote-config
		var err error
		if config, err = stackConfigOf(req.Config); err != nil {
			return nil, err
		}
	}
	var initial []byte
	if req.State != nil {
		var err error
		if initial, err = untypedBytes(req.State.Version, req.State.Features, req.State.Deployment); err != nil {
			return nil, err
		}
		if err := checkDeploymentSecrets(req.State.Deployment, rq.Org.Name, project, req.StackName); err != nil {
			return nil, err
		}
	}
	rq.event.Target = rq.Org.Name + "/" + project + "/" + req.StackName
	if err := rq.authorize(authz.StackCreate, authz.Resource{Org: rq.Org, NewStack: &authz.NewStack{Project: project, Name: req.StackName, Tags: tags}}); err != nil {
		return nil, err
	}
	st := &gatehouse.Stack{OrgID: rq.Org.ID, OrgName: rq.Org.Name, Project: project, Name: req.StackName, Tags: tags, CreatedBy: rq.Subject.Name()}
	if rq.Subject.Kind == authz.UserKind {
		st.CreatorUserID = rq.Subject.User.ID
	}
	if initial != nil {
		// A stack created with a state is a state import into it: decided as stack:import on
		// the stack to be (found in review: a person seeded a stack that a protection rule
		// covers from birth with a state of their own, which only pipelines may import).
		if err := rq.authorizeAlso(authz.StackImport, authz.Resource{Org: rq.Org, Stack: st}); err != nil {
			return nil, err
		}
	}
	err := rq.Change(func(tx gatehouse.Tx) error {
		if err := tx.CreateStack(st); err != nil {
			return err
		}
		if err := rq.stackEvent(tx, st, "created"); err != nil {
			return err
		}
		if initial != nil {
			if err := tx.PutCheckpoint(st.ID, 0, initial); err != nil {
				return err
			}
		}
		if config != nil {
			if err := tx.PutStackConfig(st.ID, config); err != nil {
				return err
			}
		}
		// `pulumi stack init --teams a,b` asks for those teams to read and update the stack.
		for _, name := range req.Teams {
			team, err := tx.GetTeamByName(rq.Org.ID, name)
			if err != nil {
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					return gatehouse.Errorf(gatehouse.EINVALID, "team '%s' does not exist in organization %s", name, rq.Org.Name)
				}
				return err
			}
			if err := tx.PutGrant(&gatehouse.Grant{TeamID: team.ID, Scope: gatehouse.Scope{StackID: st.ID}, Permission: gatehouse.PermWrite, Decrypt: true}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	return apitype.CreateStackResponse{}, nil
}

func (s *Server) listUserStacks(rq *Request) (any, error) {
	q := rq.URL.Query()
	var resp apitype.ListStacksResponse
	err := rq.View(func(tx gatehouse.Tx) error {
		// The organizations the caller belongs to, each with the facts for per-stack decisions.
		orgs := map[int64]orgFacts{}
		var ids []int64
		add := func(o gatehouse.Org) error {
			if want := q.Get("organization"); want != "" && !equalFold(want, o.Name) || !rq.Subject.ActsIn(o.ID) {
				return nil
			}
			if ok, err := s.orgListable(rq, tx, &o); err != nil || !ok {
				return err // its allow-list or its SSO requirement refuses the caller: left out
			}
			f, err := loadFacts(tx, rq.Subject, &o)
			if err != nil {
				return err
			}
			oc := o
			orgs[o.ID] = orgFacts{org: &oc, facts: f}
			ids = append(ids, o.ID)
			return nil
		}
		switch rq.Subject.Kind {
		case authz.UserKind:
			oms, err := tx.ListUserOrgs(rq.Subject.User.ID)
			if err != nil {
				return err
			}
			for _, om := range oms {
				if err := add(om.Org); err != nil {
					return err
				}
			}
		case authz.TeamToken, authz.OrgToken:
			o, err := tx.GetOrg(rq.Subject.Token.OrgID)
			if err != nil {
				return err
			}
			if err := add(*o); err != nil {
				return err
			}
		}
		var err error
		resp, err = s.stackPage(tx, rq.Subject, orgs, ids, q)
		return err
	})
	return resp, err
}

func equalFold(a, b string) bool { return bytes.EqualFold([]byte(a), []byte(b)) }

func (s *Server) deleteStack(rq *Request) (any, error) {
	// The CLI sends force; the pulumiservice provider forceDestroy.
	force := rq.URL.Query().Get("force") == "true" || rq.URL.Query().Get("forceDestroy") == "true"
	rq.Detail("force", strconv.FormatBool(force))
	err := rq.Change(func(tx gatehouse.Tx) error {
		st, err := tx.GetStackByID(rq.Stack.ID)
		if err != nil {
			return err
		}
		if !force {
			if st.ActiveUpdate != "" {
				if u, err := tx.GetUpdate(st.ActiveUpdate); err == nil && !u.Status.Finished() && u.LeaseExpires.After(tx.Now()) {
					return gatehouse.Errorf(gatehouse.ECONFLICT, "the stack has an update in progress; wait for it or use --force")
				}
			}
			n, err := resourceCount(tx, st.ID)
			if err != nil {
				return err
			}
			if n > 0 {
				// The exact message the CLI turns into its "--force" advice.
				return gatehouse.Errorf(gatehouse.EINVALID, "Bad Request: Stack still contains resources.")
			}
		}
		if err := rq.stackEvent(tx, st, "deleted"); err != nil {
			return err
		}
		return tx.DeleteStack(st.ID)
	})
	if err != nil {
		return nil, err
	}
	s.wakeWebhooks()
	if s.secrets != nil {
		s.secrets.Forget(rq.Stack.ID)
	}
	return noContent{}, nil
}

// resourceCount counts the resources in the stack's newest checkpoint.
func resourceCount(tx gatehouse.Tx, stackID int64) (int, error) {
	data, _, err := tx.GetCheckpoint(stackID, -1)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return countResources(data)
}

// countResources counts deployment.resources in an UntypedDeployment document.
func countResources(data []byte) (int, error) {
	var doc struct {
		Deployment struct {
			Resources []json.RawMessage `json:"resources"`
		} `json:"deployment"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return 0, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
	}
	return len(doc.Deployment.Resources), nil
}

func (s *Server) renameStack(rq *Request) (any, error) {
	var req apitype.StackRenameRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	project := req.NewProject
	if project == "" {
		project = rq.Stack.Project
	}
	name := req.NewName
	if name == "" {
		name = rq.Stack.Name
	}
	if err := validName("project", project); err != nil {
		return nil, err
	}
	if err := validName("stack", name); err != nil {
		return nil, err
	}
	rq.Detail("new_name", rq.Org.Name+"/"+project+"/"+name)
	if project != rq.Stack.Project {
		// A stack moved into another project is a stack made there: whoever may not create
		// stacks in that project may not move one into it either (found in review: a stack's
		// admin put it into any project of the organization).
		if err := rq.authorizeAlso(authz.StackCreate, authz.Resource{Org: rq.Org, NewStack: &authz.NewStack{Project: project, Name: name, Tags: rq.Stack.Tags}}); err != nil {
			return nil, err
		}
		// And its state is then imported there: a stack moved under a protection rule of
		// the new project takes its state only from a pipeline credential, as an import
		// into it would (createStack with a state).
		moved := *rq.Stack
		moved.Project, moved.Name = project, name
		if err := rq.authorizeAlso(authz.StackImport, authz.Resource{Org: rq.Org, Stack: &moved}); err != nil {
			return nil, err
		}
	}
	err := rq.Change(func(tx gatehouse.Tx) error {
		st, err := tx.GetStackByID(rq.Stack.ID)
		if err != nil {
			return err
		}
		if st.ActiveUpdate != "" {
			if u, err := tx.GetUpdate(st.ActiveUpdate); err == nil && !u.Status.Finished() && u.LeaseExpires.After(tx.Now()) {
				return gatehouse.Errorf(gatehouse.ECONFLICT, "the stack has an update in progress")
			}
		}
		if err := tx.RenameStack(st.ID, project, name); err != nil {
			return err
		}
		// The CLI decrypts a checkpoint's secrets through the stack named in its
		// secrets_providers state: point the newest checkpoint at the new name.
		data, v, err := tx.GetCheckpoint(st.ID, -1)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil
		}
		if err != nil {
			return err
		}
		out, err := renameCheckpoint(data, project, name)
		if err != nil {
			return err
		}
		return tx.PutCheckpoint(st.ID, v, out)
	})
	return noContent{}, err
}

// renameCheckpoint rewrites the newest checkpoint for the stack's new name: every URN (as
// the CLI's file backend does on rename, see state.RenameStack) and, for service-managed
// secrets, the secrets provider's stack name, through which the CLI decrypts.
func renameCheckpoint(data []byte, project, stack string) ([]byte, error) {
	var doc apitype.UntypedDeployment
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
	}
	if len(bytes.TrimSpace(doc.Deployment)) == 0 {
		return data, nil
	}
	dep, err := state.RenameStack(doc.Deployment, stack, project)
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINVALID, err, "cannot rename the stack's state")
	}
	dep = renameSecretsProvider(dep, project, stack)
	return untypedBytes(doc.Version, doc.Features, dep)
}

// renameSecretsProvider points deployment.secrets_providers.state at the new name when the
// stack uses the service secrets manager; any other deployment is returned as it is.
func renameSecretsProvider(dep []byte, project, stack string) []byte {
	var d map[string]json.RawMessage
	if json.Unmarshal(dep, &d) != nil {
		return dep
	}
	var sp struct {
		Type  string                     `json:"type"`
		State map[string]json.RawMessage `json:"state"`
	}
	if json.Unmarshal(d["secrets_providers"], &sp) != nil || sp.Type != "service" || sp.State == nil {
		return dep
	}
	sp.State["project"] = mustJSON(project)
	sp.State["stack"] = mustJSON(stack)
	d["secrets_providers"] = mustJSON(sp)
	return mustJSON(d)
}

func (s *Server) setTags(rq *Request) (any, error) {
	var tags map[string]string
	if err := rq.decode(&tags); err != nil {
		return nil, err
	}
	if err := validTags(tags); err != nil {
		return nil, err
	}
	err := rq.changeTags(func(cur map[string]string) error {
		clear(cur)
		maps.Copy(cur, tags)
		return nil
	})
	return noContent{}, err
}

func (s *Server) exportStack(rq *Request) (any, error) {
	version := -1
	if v := rq.PathValue("version"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > rq.Stack.Version {
			return nil, gatehouse.Errorf(gatehouse.ENOTFOUND, "stack version %s not found", v)
		}
		version = n
		rq.Detail("version", v)
	}
	var data []byte
	err := rq.View(func(tx gatehouse.Tx) error {
		d, _, err := tx.GetCheckpoint(rq.Stack.ID, version)
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			data = emptyDeployment
			return nil
		}
		data = d
		return err
	})
	if err != nil {
		return nil, err
	}
	return rawJSON(data), nil
}

func (s *Server) importStack(rq *Request) (any, error) {
	var req apitype.UntypedDeployment
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	data, err := untypedBytes(req.Version, req.Features, req.Deployment)
	if err != nil {
		return nil, err
	}
	count, err := countResources(data)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid deployment: resources must be a list")
	}
	if err := checkDeploymentSecrets(req.Deployment, rq.Org.Name, rq.Stack.Project, rq.Stack.Name); err != nil {
		return nil, err
	}
	id := newUpdateID()
	err = rq.Change(func(tx gatehouse.Tx) error {
		u := &gatehouse.Update{ID: id, StackID: rq.Stack.ID, Kind: gatehouse.KindImport, Author: rq.Subject.Name()}
		if err := tx.CreateUpdate(u); err != nil {
			return err
		}
		lease, _, err := newLease()
		if err != nil {
			return err
		}
		version, err := tx.StartUpdate(id, nil, lease, tx.Now().Add(s.cfg.LeaseDuration), 0)
		if err != nil {
			return err
		}
		if err := tx.PutCheckpoint(rq.Stack.ID, version, data); err != nil {
			return err
		}
		_, err = tx.FinishUpdate(id, gatehouse.StatusSucceeded, nil, count)
		return err
	})
	if err != nil {
		return nil, err
	}
	rq.Detail("update", id)
	return apitype.ImportStackResponse{UpdateID: id}, nil
}

// untypedBytes validates a deployment document and serializes it in the CLI's
// UntypedDeployment form without re-encoding the deployment itself.
func untypedBytes(version int, features []string, deployment json.RawMessage) ([]byte, error) {
	if version < 1 || version > 4 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "unsupported deployment version %d (want 1 to 4)", version)
	}
	dep := bytes.TrimSpace(deployment)
	if len(dep) == 0 || dep[0] != '{' {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "deployment must be a JSON object")
	}
	var buf bytes.Buffer
	buf.Grow(len(dep) + 64)
	buf.WriteString(`{"version":`)
	buf.WriteString(strconv.Itoa(version))
	if len(features) > 0 {
		buf.WriteString(`,"features":`)
		buf.Write(mustJSON(features))
	}
	buf.WriteString(`,"deployment":`)
	buf.Write(dep)
	buf.WriteString(`}`)
	return buf.Bytes(), nil
}

var _ = http.MethodGet
