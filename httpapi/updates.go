package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"
	fastjson "github.com/segmentio/encoding/json"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/policy"
	"github.com/gatehouse-dev/gatehouse/protocol"
	"github.com/gatehouse-dev/gatehouse/state"
	"github.com/gatehouse-dev/gatehouse/token"
)

func newUpdateID() string { return uuid.NewString() }

// newLease returns a fresh lease token's digest and value.
func newLease() ([32]byte, string, error) {
	v, err := token.New(token.Lease)
	if err != nil {
		return [32]byte{}, "", gatehouse.Wrap(gatehouse.EINTERNAL, err, "cannot create a lease token")
	}
	return token.Digest(v), v, nil
}

// runAction is the action a real (not dry) run of an update kind performs.
func runAction(kind gatehouse.UpdateKind) authz.Action {
	if kind == gatehouse.KindImport {
		return authz.StackImport
	}
	return authz.StackUpdate
}

// createUpdate handles POST S/{update|preview|refresh|destroy}. The route admits anyone who
// may preview; a real run is then checked as a change (and against protection rules).
func (s *Server) createUpdate(kind gatehouse.UpdateKind) func(*Request) (any, error) {
	return func(rq *Request) (any, error) {
		body, err := rq.readJSON()
		if err != nil {
			return nil, err
		}
		var req apitype.UpdateProgramRequest
		if err := json.Unmarshal(body, &req); err != nil {
			return nil, bodyError(err)
		}
		rq.ciSystem = truncate(req.Metadata.Environment["ci.system"], 64) // posture: a CI environment
		dry := req.Options.DryRun || kind == gatehouse.KindPreview
		if !dry {
			if err := rq.authorize(runAction(kind), authz.Resource{Org: rq.Org, Stack: rq.Stack, UpdateKind: kind}); err != nil {
				return nil, err
			}
		}
		u := &gatehouse.Update{ID: newUpdateID(), StackID: rq.Stack.ID, Kind: kind, DryRun: dry, Program: body, Author: rq.Subject.Name(),
			StartedBy: rq.Subject.Principal()} // its creator, for the bound on never-started updates
		rq.Detail("update", u.ID)
		rq.Detail("kind", string(kind))
		rq.Detail("dry_run", strconv.FormatBool(dry))
		var required []apitype.RequiredPolicy
		err = rq.Change(func(tx gatehouse.Tx) error {
			if err := tx.CreateUpdate(u); err != nil {
				return err
			}
			if err := linkDeployment(rq, tx, u.ID, 0); err != nil {
				return err
			}
			if kind != gatehouse.KindUpdate && kind != gatehouse.KindPreview {
				return nil
			}
			// The policy packs the stack's policy groups require, with download URLs
			// that live as long as this update (policy.go).
			var err error
			required, err = s.requiredPolicies(rq, tx, u.ID)
			return err
		})
		if err != nil {
			return nil, err
		}
		return apitype.UpdateProgramResponse{UpdateID: u.ID, RequiredPolicies: required}, nil
	}
}

// cliTags are the tags the stock CLI derives itself and sends at every update start (from
// Pulumi.yaml and the repository's git remote; gitHub:* from older CLIs), besides the
// stack's tags and its pulumi:tags configuration.
var cliTags = map[string]bool{
	apitype.ProjectNameTag: true, apitype.ProjectRuntimeTag: true, apitype.ProjectDescriptionTag: true, apitype.ProjectTemplateTag: true,
	apitype.VCSOwnerNameTag: true, apitype.VCSRepositoryNameTag: true, apitype.VCSRepositoryKindTag: true, apitype.VCSRepositoryRootTag: true,
	"gitHub:owner": true, "gitHub:repo": true,
}

// startTags returns the tags of an update start (the CLI sends the stack's tags merged with
// its own) that change the stack's, nil when none. Tags select protection rules and grants,
// so a start that changes one is a tag edit: it is decided as stack:tags for the caller
// (403 naming the tag otherwise), as PATCH S/tags would be. Exempt are only the CLI's own
// tags (cliTags) that no protection rule or grant of the organization selects: they change
// no right, and a pipeline that may update but not edit tags (a deployment run's
// credential) keeps working when the CLI first sends them or a project is renamed.
// Whether the tags take the stack out of a policy group (stack:policy) is decided by
// startUpdate in its transaction, on the stack's tags as they are then.
func (s *Server) startTags(rq *Request, tags map[string]string) (map[string]string, error) {
	var changed []string
	out := map[string]string{}
	for k, v := range tags {
		if old, ok := rq.Stack.Tags[k]; !ok || old != v {
			out[k] = v
			changed = append(changed, k)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	sort.Strings(changed)
	var decided []string
	selected := map[string]bool{}
	loaded := false
	for _, k := range changed {
		if cliTags[k] && !loaded {
			if err := rq.View(func(tx gatehouse.Tx) error {
				ps, err := tx.ListProtections(rq.Org.ID)
				if err != nil {
					return err
				}
				for _, p := range ps {
					selected[p.Scope.TagName] = true
				}
				teams, err := tx.ListTeams(rq.Org.ID)
				if err != nil {
					return err
				}
				for _, tm := range teams {
					gs, err := tx.ListGrants(tm.ID)
					if err != nil {
						return err
					}
					for _, g := range gs {
						selected[g.Scope.TagName] = true
					}
				}
				return nil
			}); err != nil {
				return nil, err
			}
			loaded = true
		}
		if !cliTags[k] || selected[k] {
			decided = append(decided, k)
		}
	}
	rq.Detail("tags", truncate(strings.Join(changed, ","), 512))
	if len(decided) == 0 {
		return out, nil
	}
	if err := rq.authorizeAlso(authz.StackTags, authz.Resource{Org: rq.Org, Stack: rq.Stack, Update: rq.Update}); err != nil {
		if !gatehouse.IsCode(err, gatehouse.EFORBIDDEN) {
			return nil, err
		}
		var what []string
		for _, k := range decided {
			if old, ok := rq.Stack.Tags[k]; ok {
				what = append(what, fmt.Sprintf("%s (%q to %q)", k, old, tags[k]))
			} else {
				what = append(what, fmt.Sprintf("%s (new, %q)", k, tags[k]))
			}
		}
		return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "starting this update would change the stack's tag %s: tags select protection rules and grants, so that needs %s, as editing them does (pulumi stack tag set, by someone who may; or leave the tag as it is in pulumi:tags): %s",
			strings.Join(what, ", "), authz.StackTags, gatehouse.ErrorMessage(err))
	}
	merged := map[string]string{}
	maps.Copy(merged, rq.Stack.Tags)
	maps.Copy(merged, out)
	if raise, why := authz.StackTagsRaise(rq.Subject, authz.Resource{Org: rq.Org, Stack: rq.Stack}, rq.facts, merged); raise {
		return nil, gatehouse.Errorf(gatehouse.EFORBIDDEN, "starting this update would change the stack's tags (%s) so as to give you more rights on it (%s): ask an organization admin to tag it", strings.Join(decided, ", "), why)
	}
	return out, nil
}

// startUpdate handles POST S/update/{id}: takes the stack lock (real runs) and hands out
// the lease token.
func (s *Server) startUpdate(rq *Request) (any, error) {
	u := rq.Update
	if !u.DryRun {
		if err := rq.Authorize(runAction(u.Kind)); err != nil {
			return nil, err
		}
	}
	var req apitype.StartUpdateRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	tags := map[string]string{}
	for k, v := range req.Tags {
		tags[k] = v
	}
	if err := validTags(tags); err != nil {
		return nil, err
	}
	if req.Tags == nil {
		tags = nil
	}
	if tags != nil && !u.DryRun {
		// Only the tags the start changes are merged (a tag the CLI read earlier and sends
		// back unchanged does not undo a concurrent edit), each decided as a tag edit.
		var err error
		if tags, err = s.startTags(rq, tags); err != nil {
			return nil, err
		}
	}
	digest, lease, err := newLease()
	if err != nil {
		return nil, err
	}
	expires := s.cfg.Now().Add(s.cfg.LeaseDuration)
	var network protocol.Network
	if !u.DryRun {
		network = s.measureNetwork(rq)
	}
	var version, journal int
	var choice protocol.Decision
	var exit *policyExit
	err = rq.Change(func(tx gatehouse.Tx) error {
		if tags != nil && !u.DryRun {
			// Tags that take the stack out of a policy group need stack:policy, as the tag
			// routes do (changeTags); decided on the stack's tags as they are now.
			st, err := tx.GetStackByID(u.StackID)
			if err != nil {
				return err
			}
			merged := maps.Clone(st.Tags)
			if merged == nil {
				merged = map[string]string{}
			}
			maps.Copy(merged, tags)
			if exit, err = rq.leavesPolicyGroups(tx, st, merged); err != nil {
				return err
			}
			if exit != nil {
				return errPolicyExit
			}
		}
		if !u.DryRun {
			if err := rq.failExpiredHolder(tx, u); err != nil {
				return err
			}
		}
		var err error
		// The state protocol: chosen per update from the client's round trip and what the
		// stack's earlier updates showed of its program (protocol.go).
		if choice, err = s.chooseProtocol(tx, rq, u, req.JournalVersion >= 1, network); err != nil {
			return err
		}
		journal = 0
		if choice.Protocol == protocol.Journal {
			journal = 1
		}
		rq.Detail("journal", strconv.Itoa(journal))
		if !u.DryRun {
			s.announceProtocolDetails(rq, choice)
		}
		if version, err = tx.StartUpdate(u.ID, tags, digest, expires, journal); err != nil {
			return err
		}
		// The lease lives only as long as this credential may run the update (renewLease);
		// it replaces the creator recorded at creation (zero for a deployment run's).
		if err := tx.SetUpdateStarter(u.ID, rq.Subject.Principal()); err != nil {
			return err
		}
		if !u.DryRun {
			if err := tx.SetUpdateProtocol(u.ID, updateProtocol(choice)); err != nil {
				return err
			}
		}
		rq.Detail("version", strconv.Itoa(version)) // before the event is appended below
		if err := linkDeployment(rq, tx, u.ID, version); err != nil {
			return err
		}
		started := *u
		started.Version = version
		return rq.updateEvent(tx, &started, "started")
	})
	if exit != nil {
		return nil, rq.refusePolicyExit(exit, "starting this update with the tags it sends (pulumi:tags, or the stack's tags as the CLI read them)")
	}
	if err != nil {
		return nil, err
	}
	if !u.DryRun {
		s.announceProtocol(rq, u, choice)
	}
	s.wakeWebhooks()
	return apitype.StartUpdateResponse{Version: version, Token: lease, TokenExpiration: expires.Unix(), JournalVersion: int64(journal)}, nil
}

// failExpiredHolder ends, as failed, the update that holds the stack's lock with a lease
// that ran out (its CLI died), and queues its …_failed webhook event, in tx: the takeover
// that StartUpdate then makes. Of two processes taking over at once only one commits (the
// lock's compare-and-set fails the other's transaction, its event with it), so the event
// is sent once.
func (rq *Request) failExpiredHolder(tx gatehouse.Tx, u *gatehouse.Update) error {
	st, err := tx.GetStackByID(u.StackID)
	if err != nil {
		return err
	}
	held := st.ActiveUpdate
	if held == "" || held == u.ID {
		return nil
	}
	other, err := tx.GetUpdate(held)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return err
	}
	if other.Status != gatehouse.StatusRunning || other.LeaseExpires.After(tx.Now()) {
		return nil
	}
	status, err := tx.FinishUpdate(held, gatehouse.StatusFailed, nil, -1)
	if err != nil {
		return err
	}
	if status != gatehouse.StatusFailed {
		return nil
	}
	rq.Detail("expired_update", held)
	ended, err := tx.GetUpdate(held)
	if err != nil {
		return err
	}
	return rq.updateEvent(tx, ended, "failed")
}

func (s *Server) renewLease(rq *Request) (any, error) {
	var req apitype.RenewUpdateLeaseRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	d := s.cfg.LeaseDuration
	if req.Duration > 0 {
		if asked := secondsDuration(req.Duration); asked < d {
			d = asked
		}
	}
	expires := s.cfg.Now().Add(d)
	err := rq.Change(func(tx gatehouse.Tx) error {
		if err := refuseDeprovisionedAuthor(tx, rq.Stack.OrgID, rq.Update.Author); err != nil {
			return err
		}
		if err := refuseEndedRun(tx, rq.Update); err != nil {
			return err
		}
		if err := refuseStarterGone(tx, rq); err != nil {
			return err
		}
		return tx.RenewLease(rq.Update.ID, token.Digest(rq.LeaseToken), expires)
	})
	if err != nil {
		return nil, err
	}
	return apitype.RenewUpdateLeaseResponse{Token: rq.LeaseToken, TokenExpiration: expires.Unix()}, nil
}

// refuseEndedRun refuses renewing the lease of an update a deployment run's credential
// started (its author is the run) once the run has ended or was cancelled: the update
// lives no longer than the credential that started it. When the runner finishes the run,
// the update the run recorded is ended with it (deploy.Service.endUpdate); when the run's
// lease ran out (its runner stopped reporting, perhaps only for a while), its updates are
// left running and end through this: their lease lapses, at most one lease after its last
// renewal, and until then their checkpoints are still taken.
func refuseEndedRun(tx gatehouse.Tx, u *gatehouse.Update) error {
	id, ok := strings.CutPrefix(u.Author, "deployment ")
	if !ok {
		return nil
	}
	d, err := tx.GetDeployment(id)
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil
	}
	if err != nil {
		return err
	}
	if d.StackID == u.StackID && (d.Status != gatehouse.DeployRunning || d.Cancel || !tx.Now().Before(d.CredUntil)) {
		return gatehouse.Errorf(gatehouse.EGONE, "the deployment run that started this update (%s) has ended: its lease is not renewed", d.ID)
	}
	return nil
}

// refuseStarterGone refuses renewing the lease of an update whose starting credential
// (Update.StartedBy) may no longer run it: the token was revoked (expiring is not enough),
// its user was disabled or left the organization, or the grant that allowed the update is gone (found in
// review: a lease outlived the revocation of the token that started it, and kept writing
// the stack's state for as long as it was renewed). The update then ends when its lease
// runs out, at most one lease after the revocation; meanwhile its checkpoints are taken.
// It is decided by authz.Decide, for the action that started the update, as if the
// credential asked now.
func refuseStarterGone(tx gatehouse.Tx, rq *Request) error {
	u := rq.Update
	if u.StartedBy.IsZero() {
		return nil
	}
	// A token's revocation ends the lease; its planned expiry does not: an update started
	// with a short-lived token (one issued by OIDC exchange lives an hour) may run longer,
	// as it may with Pulumi's service. So the token is judged live as of the start, after
	// its revocation is checked as of now.
	if u.StartedBy.Kind == gatehouse.PrincipalToken {
		tk, err := tx.GetToken(u.StartedBy.ID)
		if err != nil && !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return err
		}
		if err != nil || !tk.Revoked.IsZero() && !tx.Now().Before(tk.Revoked) {
			return gatehouse.Errorf(gatehouse.EGONE, "the token that started this update (%s) was revoked: its lease is not renewed", u.StartedBy)
		}
	}
	sub, name, gone, err := resolveActsFor(tx, u.StartedBy, u.Started)
	if err != nil {
		return err
	}
	if sub == nil {
		return gatehouse.Errorf(gatehouse.EGONE, "the credential that started this update (%s) can no longer act: %s; its lease is not renewed", name, gone)
	}
	f, err := loadFacts(tx, sub, rq.Org)
	if err != nil {
		return err
	}
	action := authz.StackPreview
	if !u.DryRun {
		action = runAction(u.Kind)
	}
	st, err := tx.GetStackByID(u.StackID)
	if err != nil {
		return err
	}
	if d := authz.Decide(sub, action, authz.Resource{Org: rq.Org, Stack: st, Update: u, UpdateKind: u.Kind}, f); !d.Allow {
		return gatehouse.Errorf(gatehouse.EGONE, "the credential that started this update (%s) may no longer run it (%s): its lease is not renewed", name, d.Reason)
	}
	return nil
}

// patchCheckpoint handles the full-checkpoint protocol: each call replaces the state.
func (s *Server) patchCheckpoint(rq *Request) (any, error) {
	var req apitype.PatchUpdateCheckpointRequest
	if err := rq.decodeInPlace(&req); err != nil {
		return nil, err
	}
	if rq.Update.DryRun {
		return noContent{}, nil // previews have no state to keep
	}
	data, err := untypedBytes(req.Version, req.Features, req.Deployment)
	if err != nil {
		return nil, err
	}
	if err := checkDeploymentSecrets(req.Deployment, rq.Org.Name, rq.Stack.Project, rq.Stack.Name); err != nil {
		return nil, err
	}
	err = s.changeGuarded(rq, func(tx gatehouse.Tx) error {
		u, err := liveUpdate(tx, rq.Update.ID)
		if err != nil {
			return err
		}
		if err := guardProviders(tx, u, rq.Stack.OrgID, func() ([]policy.Provider, error) { return policy.InDeployment(req.Deployment) }); err != nil {
			return err
		}
		return tx.PutCheckpoint(rq.Stack.ID, u.Version, data)
	})
	if err == nil {
		s.tracker.Checkpoint(rq.Update.ID, protocol.PendingOperations(req.Deployment))
	}
	return noContent{}, err
}

// liveUpdate re-reads the update inside a write transaction and refuses one that ended
// meanwhile (a checkpoint racing a cancel must not overwrite the final state).
func liveUpdate(tx gatehouse.Tx, id string) (*gatehouse.Update, error) {
	u, err := tx.GetUpdate(id)
	if err != nil {
		return nil, err
	}
	if u.Status != gatehouse.StatusRunning {
		return nil, gatehouse.Errorf(gatehouse.EGONE, "the update has ended (%s)", u.Status)
	}
	return u, nil
}

func secondsDuration(n int) time.Duration { return time.Duration(n) * time.Second }

// patchCheckpointVerbatim stores the document's exact bytes (later deltas edit them).
func (s *Server) patchCheckpointVerbatim(rq *Request) (any, error) {
	var req apitype.PatchUpdateVerbatimCheckpointRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if rq.Update.DryRun {
		return noContent{}, nil
	}
	var probe apitype.UntypedDeployment
	if err := json.Unmarshal(req.UntypedDeployment, &probe); err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "untypedDeployment: %v", err)
	}
	if _, err := untypedBytes(probe.Version, probe.Features, probe.Deployment); err != nil {
		return nil, err
	}
	if err := checkDeploymentSecrets(probe.Deployment, rq.Org.Name, rq.Stack.Project, rq.Stack.Name); err != nil {
		return nil, err
	}
	err := s.changeGuarded(rq, func(tx gatehouse.Tx) error {
		u, err := liveUpdate(tx, rq.Update.ID)
		if err != nil {
			return err
		}
		if req.SequenceNumber < u.Sequence {
			return nil // a stale retry: a newer state is already stored
		}
		if err := guardProviders(tx, u, rq.Stack.OrgID, func() ([]policy.Provider, error) { return policy.InDeployment(probe.Deployment) }); err != nil {
			return err
		}
		if err := tx.PutCheckpoint(rq.Stack.ID, u.Version, req.UntypedDeployment); err != nil {
			return err
		}
		return tx.SetUpdateSequence(u.ID, req.SequenceNumber)
	})
	if err == nil {
		s.tracker.Checkpoint(rq.Update.ID, protocol.PendingOperations(req.UntypedDeployment))
	}
	return noContent{}, err
}

// patchCheckpointDelta applies text edits to the stored verbatim document and checks the hash.
func (s *Server) patchCheckpointDelta(rq *Request) (any, error) {
	var req apitype.PatchUpdateCheckpointDeltaRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if rq.Update.DryRun {
		return noContent{}, nil
	}
	err := s.changeGuarded(rq, func(tx gatehouse.Tx) error {
		u, err := liveUpdate(tx, rq.Update.ID)
		if err != nil {
			return err
		}
		if req.SequenceNumber <= u.Sequence {
			return nil // already applied: the CLI retried
		}
		base, v, err := tx.GetCheckpoint(rq.Stack.ID, u.Version)
		if err != nil || v != u.Version || u.Sequence == 0 {
			return gatehouse.Errorf(gatehouse.EINVALID, "no verbatim checkpoint of this update to apply a delta to")
		}
		out, err := state.ApplyDelta(base, req.DeploymentDelta, req.CheckpointHash)
		if err != nil {
			return gatehouse.Errorf(gatehouse.EINVALID, "checkpoint delta rejected: %v", err)
		}
		if err := checkUntypedSecrets(out, rq.Org.Name, rq.Stack.Project, rq.Stack.Name); err != nil {
			return err
		}
		if err := guardProviders(tx, u, rq.Stack.OrgID, func() ([]policy.Provider, error) { return policy.InUntyped(out) }); err != nil {
			return err
		}
		if err := tx.PutCheckpoint(rq.Stack.ID, u.Version, out); err != nil {
			return err
		}
		return tx.SetUpdateSequence(u.ID, req.SequenceNumber)
	})
	return noContent{}, err
}

// patchJournal stores journal entries durably; the state is rebuilt from them when the update ends.
func (s *Server) patchJournal(rq *Request) (any, error) {
	arrived := time.Now()
	if rq.Update.JournalVersion < 1 {
		// The update keeps its state in checkpoints: entries stored here would never become
		// state, and a client that believes its state was saved must hear otherwise.
		return nil, gatehouse.Errorf(gatehouse.EINVALID,
			"update %s was not granted journaling (its start answered journalVersion 0): send its state as checkpoints; these journal entries were not stored", rq.Update.ID)
	}
	var req struct {
		Entries []json.RawMessage `json:"entries"`
	}
	if err := rq.decodeBatch(&req, maxJournalPerBatch, "journal entries"); err != nil {
		return nil, err
	}
	recs := make([]gatehouse.JournalRecord, 0, len(req.Entries))
	typed := make([]apitype.JournalEntry, 0, len(req.Entries))
	for i, raw := range req.Entries {
		// Every entry must decode as a journal entry now: one stored that does not would
		// make the update's complete (and cancel) fail when the journal is replayed.
		var e struct {
			apitype.JournalEntry
			SequenceID *int64 `json:"sequenceID"`
		}
		if err := fastjson.Unmarshal(raw, &e); err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "journal entry %d: %s", i, jsonErrorText(err))
		}
		if e.SequenceID == nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "journal entry %d has no sequenceID", i)
		}
		recs = append(recs, gatehouse.JournalRecord{Seq: *e.SequenceID, Data: raw})
		typed = append(typed, e.JournalEntry)
	}
	if err := checkJournalSecrets(typed, rq.Org.Name, rq.Stack.Project, rq.Stack.Name); err != nil {
		return nil, err
	}
	err := s.changeGuarded(rq, func(tx gatehouse.Tx) error {
		if err := guardProviders(tx, rq.Update, rq.Stack.OrgID, func() ([]policy.Provider, error) { return policy.InJournal(typed), nil }); err != nil {
			return err
		}
		return tx.AppendJournal(rq.Update.ID, recs)
	})
	if err == nil && len(recs) > 0 {
		s.tracker.JournalBatch(rq.Update.ID, len(recs), arrived, time.Now())
	}
	return noContent{}, err
}

// materialize rebuilds a journaling update's final state and stores it as its checkpoint.
// It returns the state's resource count, or -1 when the update journaled nothing.
func materialize(tx gatehouse.Tx, u *gatehouse.Update) (int, error) {
	r, err := replayJournal(tx, u)
	if err != nil || r == nil {
		return -1, err
	}
	if err := tx.PutCheckpoint(u.StackID, u.Version, r.data); err != nil {
		return -1, err
	}
	return r.count, nil
}

// replayed is a journaling update's final state: the document to store and its resource
// count, and which journal it was rebuilt from (its number of entries and highest sequence,
// as Tx.JournalHead tells them).
type replayed struct {
	entries int
	lastSeq int64
	data    []byte
	count   int
}

// replayOutside rebuilds a journaling update's final state in a read transaction, so that
// the write transaction finishing the update does not hold the (single) writer for the
// whole replay: about a second for the 20,000 entries of a 10,000-resource create. finish
// uses the result only if the journal is still the same then (JournalHead); otherwise, or
// when this fails, it replays inside its own transaction as before.
func (s *Server) replayOutside(ctx context.Context, u *gatehouse.Update) *replayed {
	if u.JournalVersion < 1 || u.DryRun || u.Status.Finished() {
		return nil // nothing to replay, or finish will not use it (a repeated complete)
	}
	var r *replayed
	_ = s.store.View(ctx, func(tx gatehouse.Tx) (err error) {
		r, err = replayJournal(tx, u) // on an error finish replays again and reports it
		return err
	})
	return r
}

// replayJournal rebuilds a journaling update's final state; nil when the update journaled
// nothing.
func replayJournal(tx gatehouse.Tx, u *gatehouse.Update) (*replayed, error) {
	recs, err := tx.ListJournal(u.ID)
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	out := &replayed{entries: len(recs), lastSeq: recs[len(recs)-1].Seq}
	base := &apitype.DeploymentV3{}
	if data, _, err := tx.GetCheckpoint(u.StackID, u.Version-1); err == nil {
		var doc apitype.UntypedDeployment
		if err := json.Unmarshal(data, &doc); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
		}
		if err := json.Unmarshal(doc.Deployment, base); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored checkpoint is unreadable")
		}
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, err
	}
	// Entries are decoded one at a time as the replay consumes them (the store returns them
	// in sequence order, one per sequenceID), and each one's bytes are dropped once
	// decoded: the replay of a 10,000-resource journal holds the resources, not the journal
	// twice over.
	i := 0
	typed, err := state.ReplayStream(base, func() (*apitype.JournalEntry, error) {
		if i == len(recs) {
			return nil, nil
		}
		r := &recs[i]
		i++
		var e apitype.JournalEntry
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return nil, gatehouse.Wrap(gatehouse.EINTERNAL, err, "stored journal entry %d is unreadable", r.Seq)
		}
		r.Data = nil
		return &e, nil
	})
	if gatehouse.IsCode(err, gatehouse.EINTERNAL) {
		return nil, err
	}
	if err != nil {
		return nil, gatehouse.Wrap(gatehouse.EINVALID, err, "the journal cannot be replayed")
	}
	if out.data, err = json.Marshal(typed); err != nil {
		return nil, err
	}
	out.count = len(typed.Deployment.Resources)
	return out, nil
}

// finish ends an update: rebuilds journaled state (or stores pre, replayed beforehand, if the
// journal has not changed since), counts resources and releases the lock.
func finish(tx gatehouse.Tx, id string, status gatehouse.UpdateStatus, pre *replayed) (gatehouse.UpdateStatus, error) {
	u, err := tx.GetUpdate(id)
	if err != nil {
		return "", err
	}
	if u.Status.Finished() {
		return u.Status, nil
	}
	count := -1
	if !u.DryRun {
		if u.JournalVersion >= 1 && pre != nil {
			n, last, err := tx.JournalHead(u.ID)
			if err != nil {
				return "", err
			}
			if n != pre.entries || last != pre.lastSeq {
				pre = nil // entries arrived meanwhile: replay them all here
			} else if err := tx.PutCheckpoint(u.StackID, u.Version, pre.data); err != nil {
				return "", err
			} else {
				count = pre.count
			}
		}
		if u.JournalVersion >= 1 && pre == nil {
			if count, err = materialize(tx, u); err != nil {
				return "", err
			}
		}
		if count < 0 {
			if data, v, err := tx.GetCheckpoint(u.StackID, u.Version); err == nil && v == u.Version {
				if count, err = countResources(data); err != nil {
					return "", err
				}
			}
		}
	}
	return tx.FinishUpdate(id, status, nil, count)
}

func (s *Server) completeUpdate(rq *Request) (any, error) {
	var req apitype.CompleteUpdateRequest
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	status := gatehouse.UpdateStatus(req.Status)
	switch status {
	case gatehouse.StatusSucceeded, gatehouse.StatusFailed, gatehouse.StatusCancelled:
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid update status %q", req.Status)
	}
	rq.Detail("status", string(status))
	pre := s.replayOutside(rq.Context(), rq.Update)
	var refusal error
	obs := s.tracker.Take(rq.Update.ID)
	err := rq.Change(func(tx gatehouse.Tx) error {
		if refusal = previewRefusal(tx, rq.Update, rq.Stack.OrgID); refusal != nil && status == gatehouse.StatusSucceeded {
			status = gatehouse.StatusFailed // a preview that would register unapproved providers fails
			rq.Detail("status", string(status))
		}
		if err := finishAndEmit(rq, tx, status, pre); err != nil {
			return err
		}
		return learnProtocol(tx, rq.Update, status, obs)
	})
	s.wakeWebhooks()
	if err == nil && refusal != nil {
		return nil, refusal
	}
	return noContent{}, err
}

// finishAndEmit ends the request's update (finish) and queues its webhook event.
func finishAndEmit(rq *Request, tx gatehouse.Tx, status gatehouse.UpdateStatus, pre *replayed) error {
	before, err := tx.GetUpdate(rq.Update.ID)
	if err != nil {
		return err
	}
	if _, err := finish(tx, rq.Update.ID, status, pre); err != nil {
		return err
	}
	return rq.finishEvent(tx, rq.Update.ID, before.Status.Finished(), status)
}

func (s *Server) cancelUpdate(rq *Request) (any, error) {
	s.tracker.Take(rq.Update.ID) // a cancelled update teaches nothing
	err := rq.Change(func(tx gatehouse.Tx) error { return finishAndEmit(rq, tx, gatehouse.StatusCancelled, nil) })
	s.wakeWebhooks()
	return noContent{}, err
}

// postEvents stores a batch of engine events (idempotent per sequence; batches may arrive
// out of order and twice) and keeps the summary's resource changes for the history.
func (s *Server) postEvents(rq *Request) (any, error) {
	var req struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := rq.decodeBatch(&req, maxEventsPerBatch, "engine events"); err != nil {
		return nil, err
	}
	events := make([]gatehouse.EngineEvent, 0, len(req.Events))
	seqs := make([]int, 0, len(req.Events))
	var changes map[string]int
	var steps []protocol.StepMark
	for i, raw := range req.Events {
		var head struct {
			Sequence     *int `json:"sequence"`
			SummaryEvent *struct {
				ResourceChanges map[string]int `json:"resourceChanges"`
			} `json:"summaryEvent"`
			// A step starts with resourcePreEvent and ends with resOutputsEvent or
			// resOpFailedEvent: steps in flight, for the protocol choice (protocol.go).
			Pre     *stepEventJSON `json:"resourcePreEvent"`
			Outputs *stepEventJSON `json:"resOutputsEvent"`
			Failed  *stepEventJSON `json:"resOpFailedEvent"`
		}
		if err := json.Unmarshal(raw, &head); err != nil || head.Sequence == nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "engine event %d has no sequence", i)
		}
		if head.SummaryEvent != nil {
			changes = head.SummaryEvent.ResourceChanges
			if changes == nil {
				changes = map[string]int{}
			}
		}
		events = append(events, gatehouse.EngineEvent{Seq: *head.Sequence, Data: raw})
		seqs = append(seqs, *head.Sequence)
		if !rq.Update.DryRun {
			switch {
			case head.Pre != nil:
				steps = append(steps, protocol.StepMark{Seq: *head.Sequence, URN: head.Pre.Metadata.URN, Begin: true})
			case head.Outputs != nil:
				steps = append(steps, protocol.StepMark{Seq: *head.Sequence, URN: head.Outputs.Metadata.URN, Begin: false})
			case head.Failed != nil:
				steps = append(steps, protocol.StepMark{Seq: *head.Sequence, URN: head.Failed.Metadata.URN, Begin: false})
			}
		}
	}
	err := rq.Change(func(tx gatehouse.Tx) error {
		fresh, err := freshEvents(tx, rq.Update.ID, events)
		if err != nil {
			return err
		}
		if err := tx.AppendEngineEvents(rq.Update.ID, events); err != nil {
			return err
		}
		if err := s.recordPolicyEvents(rq, tx, req.Events, seqs, fresh); err != nil {
			return err
		}
		if changes != nil {
			return tx.SetUpdateChanges(rq.Update.ID, changes)
		}
		return nil
	})
	if err == nil && len(steps) > 0 {
		s.tracker.StepEvents(rq.Update.ID, steps)
	}
	return noContent{}, err
}

// getUpdate answers the CLI's poll of an update (used after `pulumi stack import`).
func (s *Server) getUpdate(rq *Request) (any, error) {
	u := rq.Update
	res := apitype.UpdateResults{Status: apitype.UpdateStatus(u.Status), Events: []apitype.UpdateEvent{}}
	if !u.Status.Finished() {
		tok := "running"
		res.ContinuationToken = &tok
	}
	return res, nil
}

func (s *Server) getUpdateEvents(rq *Request) (any, error) {
	after := -1
	if c := rq.URL.Query().Get("continuationToken"); c != "" {
		n, err := strconv.Atoi(c)
		if err != nil {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "invalid continuation token")
		}
		after = n
	}
	const page = 1000
	var events []gatehouse.EngineEvent
	var u *gatehouse.Update
	err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		if u, err = tx.GetUpdate(rq.Update.ID); err != nil {
			return err
		}
		events, err = tx.ListEngineEvents(u.ID, after, page)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := struct {
		Events            []json.RawMessage `json:"events"`
		ContinuationToken *string           `json:"continuationToken"`
	}{Events: make([]json.RawMessage, 0, len(events))}
	for _, e := range events {
		out.Events = append(out.Events, e.Data)
		after = e.Seq
	}
	if len(events) == page || !u.Status.Finished() {
		c := strconv.Itoa(after)
		out.ContinuationToken = &c
	}
	return out, nil
}

func updateInfo(u *gatehouse.Update) apitype.UpdateInfo {
	var prog apitype.UpdateProgramRequest
	_ = json.Unmarshal(u.Program, &prog)
	info := apitype.UpdateInfo{
		Kind: apitype.UpdateKind(u.Kind), StartTime: u.Started.Unix(), Message: prog.Metadata.Message,
		Environment: prog.Metadata.Environment, Config: prog.Config, Version: u.Version, ResourceCount: u.ResourceCount,
	}
	if info.Environment == nil {
		info.Environment = map[string]string{}
	}
	if info.Config == nil {
		info.Config = map[string]apitype.ConfigValue{}
	}
	if !u.Ended.IsZero() {
		info.EndTime = u.Ended.Unix()
	}
	switch u.Status {
	case gatehouse.StatusSucceeded:
		info.Result = apitype.SucceededResult
	case gatehouse.StatusFailed, gatehouse.StatusCancelled:
		info.Result = apitype.FailedResult
	case gatehouse.StatusRunning:
		info.Result = apitype.InProgressResult
	default:
		info.Result = apitype.NotStartedResult
	}
	if len(u.ResourceChanges) > 0 {
		info.ResourceChanges = map[apitype.OpType]int{}
		for k, v := range u.ResourceChanges {
			info.ResourceChanges[apitype.OpType(k)] = v
		}
	}
	return info
}

func (s *Server) getHistory(rq *Request) (any, error) {
	q := rq.URL.Query()
	f := gatehouse.UpdateFilter{}
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "pageSize must be 1 to 1000")
		}
		f.PageSize = n
	}
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "page must be a positive number")
		}
		f.Page = n
	}
	var ups []gatehouse.Update
	if err := rq.View(func(tx gatehouse.Tx) error {
		var err error
		ups, err = tx.ListUpdates(rq.Stack.ID, f)
		return err
	}); err != nil {
		return nil, err
	}
	resp := apitype.GetHistoryResponse{Updates: make([]apitype.UpdateInfo, 0, len(ups))}
	for i := range ups {
		resp.Updates = append(resp.Updates, updateInfo(&ups[i]))
	}
	return resp, nil
}
