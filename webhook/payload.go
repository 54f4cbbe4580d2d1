package webhook

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Event is something that happened, to deliver to the webhooks that select it.
type Event struct {
	Name    string // the filter event, e.g. update_succeeded
	OrgID   int64
	OrgName string
	// StackID is the stack the event is about (0: none); its webhooks receive it besides
	// the organization's.
	StackID int64
	Project string
	Stack   string
	// User is who caused it.
	User string
	// Updates and previews.
	UpdateKind      string // update, preview, refresh, destroy
	Result          string // succeeded, failed, started
	ResourceChanges map[string]int
	UpdateURL       string
	Version         int
	// Stack events: created, deleted.
	Action string
	// Deployments: the run's ID, operation (update, preview, refresh, destroy), status
	// (not-started, running, succeeded, failed, skipped) and console link; Version is its
	// number in the stack.
	DeploymentID  string
	Operation     string
	Status        string
	DeploymentURL string
	// Message is a ping's text.
	Message string
	// Environments (ESC): EnvID is the environment the event is about (0: none); its
	// webhooks receive it besides the organization's. Project is its project.
	EnvID    int64
	Env      string
	Revision int    // environment_revision*, environment_revision_tag*
	TagName  string // environment_revision_tag*
	// imported_environment_changed: the revisions of the importing environment (EnvID)
	// affected, and the imported environment's new revision.
	AffectedRevisions []int
	Imported          *EnvReference
}

// EnvReference is Pulumi's importedEnvironmentReference.
type EnvReference struct {
	ProjectName     string `json:"projectName"`
	EnvironmentName string `json:"environmentName"`
	Revision        int    `json:"revision"`
}

// EnvScope is the Webhook.StackID of an environment's webhooks: the negated environment
// ID (stack IDs are positive, 0 is the organization).
func EnvScope(envID int64) int64 { return -envID }

type identity struct {
	Name        string `json:"name"`
	GitHubLogin string `json:"githubLogin"`
	AvatarURL   string `json:"avatarUrl"`
}

// rawPayload is Pulumi Cloud's JSON payload (the fields of each kind; empty ones left out).
type rawPayload struct {
	User            identity       `json:"user"`
	Organization    identity       `json:"organization"`
	ProjectName     string         `json:"projectName,omitempty"`
	StackName       string         `json:"stackName,omitempty"`
	Action          string         `json:"action,omitempty"`
	UpdateURL       string         `json:"updateUrl,omitempty"`
	Kind            string         `json:"kind,omitempty"`
	Result          string         `json:"result,omitempty"`
	ResourceChanges map[string]int `json:"resourceChanges,omitempty"`
	IsPreview       *bool          `json:"isPreview,omitempty"`
	Version         int            `json:"version,omitempty"`
	EnvironmentName string         `json:"environmentName,omitempty"`
	TagName         string         `json:"tagName,omitempty"`
	Revision        int            `json:"revision,omitempty"`
	Message         string         `json:"message,omitempty"`
	// deployment.
	DeploymentID  string `json:"deploymentId,omitempty"`
	DeploymentURL string `json:"deploymentUrl,omitempty"`
	Operation     string `json:"operation,omitempty"`
	Status        string `json:"status,omitempty"`
	// imported_environment_changed.
	AffectedRevisions            []int         `json:"affectedRevisions,omitempty"`
	ImportedEnvironmentReference *EnvReference `json:"importedEnvironmentReference,omitempty"`
}

// Payload builds the body of ev in format.
func Payload(format string, ev *Event) ([]byte, error) {
	switch format {
	case FormatSlack:
		return json.Marshal(map[string]any{"text": summary(ev, true)})
	case FormatMSTeams:
		return json.Marshal(map[string]any{
			"@type": "MessageCard", "@context": "https://schema.org/extensions",
			"summary": summary(ev, false), "themeColor": color(ev),
			"title": title(ev), "text": summary(ev, false),
		})
	}
	p := rawPayload{
		User:         identity{Name: ev.User, GitHubLogin: ev.User},
		Organization: identity{Name: ev.OrgName, GitHubLogin: ev.OrgName},
		ProjectName:  ev.Project, StackName: ev.Stack, Message: ev.Message, EnvironmentName: ev.Env,
	}
	switch KindOf(ev.Name) {
	case KindStack, KindEnvironment:
		p.Action = ev.Action
	case KindEnvironmentRevision:
		p.Action, p.Revision = ev.Action, ev.Revision
	case KindEnvironmentRevisionTag:
		p.Action, p.Revision, p.TagName = ev.Action, ev.Revision, ev.TagName
	case KindEnvironmentTag:
		p.Action, p.TagName = ev.Action, ev.TagName
	case KindImportedEnvironmentChanged:
		p.AffectedRevisions, p.ImportedEnvironmentReference = ev.AffectedRevisions, ev.Imported
		if p.AffectedRevisions == nil {
			p.AffectedRevisions = []int{}
		}
	case KindDeployment:
		p.DeploymentID, p.DeploymentURL, p.Version, p.Operation, p.Status = ev.DeploymentID, ev.DeploymentURL, ev.Version, ev.Operation, ev.Status
	case KindStackUpdate, KindStackPreview:
		preview := ev.UpdateKind == string(gatehouse.KindPreview)
		p.UpdateURL, p.Kind, p.Result, p.ResourceChanges, p.IsPreview, p.Version = ev.UpdateURL, ev.UpdateKind, ev.Result, ev.ResourceChanges, &preview, ev.Version
		if p.ResourceChanges == nil && ev.Result != "started" {
			p.ResourceChanges = map[string]int{}
		}
	}
	return json.Marshal(p)
}

func title(ev *Event) string {
	switch KindOf(ev.Name) {
	case KindPing:
		return "Gatehouse webhook test"
	case KindStack:
		return fmt.Sprintf("Stack %s %s", ev.ref(), ev.Action)
	case KindEnvironment:
		return fmt.Sprintf("Environment %s %s", ev.ref(), ev.Action)
	case KindEnvironmentRevision:
		return fmt.Sprintf("Environment %s revision %d %s", ev.ref(), ev.Revision, ev.Action)
	case KindEnvironmentRevisionTag:
		return fmt.Sprintf("Environment %s tag %s %s (revision %d)", ev.ref(), ev.TagName, ev.Action, ev.Revision)
	case KindEnvironmentTag:
		return fmt.Sprintf("Environment %s tag %s %s", ev.ref(), ev.TagName, ev.Action)
	case KindDeployment:
		return fmt.Sprintf("Deployment %d (%s) of %s %s", ev.Version, ev.Operation, ev.ref(), strings.TrimPrefix(ev.Name, "deployment_"))
	case KindImportedEnvironmentChanged:
		if ev.Imported != nil {
			return fmt.Sprintf("Environment %s: its import %s/%s changed (revision %d)", ev.ref(), ev.Imported.ProjectName, ev.Imported.EnvironmentName, ev.Imported.Revision)
		}
	}
	return fmt.Sprintf("%s of %s %s", capitalize(ev.UpdateKind), ev.ref(), ev.Result)
}

func (ev *Event) ref() string {
	if ev.Env != "" {
		return ev.OrgName + "/" + ev.Project + "/" + ev.Env
	}
	return ev.OrgName + "/" + ev.Project + "/" + ev.Stack
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func color(ev *Event) string {
	result := ev.Result
	if KindOf(ev.Name) == KindDeployment {
		result = strings.TrimPrefix(ev.Name, "deployment_")
	}
	switch result {
	case "failed":
		return "D62728"
	case "succeeded":
		return "2CA02C"
	}
	return "5B6CFF"
}

// summary is the chat message: the title, who did it, and the resource changes.
func summary(ev *Event, slack bool) string {
	if KindOf(ev.Name) == KindPing {
		if ev.Message != "" {
			return ev.Message
		}
		return "This is a test message from Gatehouse."
	}
	var b strings.Builder
	t := title(ev)
	link := ev.UpdateURL
	if link == "" {
		link = ev.DeploymentURL
	}
	if slack && link != "" {
		t = "<" + link + "|" + t + ">"
	}
	b.WriteString(t)
	if ev.User != "" {
		b.WriteString(" by " + ev.User)
	}
	if len(ev.ResourceChanges) > 0 {
		ops := make([]string, 0, len(ev.ResourceChanges))
		for op := range ev.ResourceChanges {
			ops = append(ops, op)
		}
		sort.Strings(ops)
		var parts []string
		for _, op := range ops {
			parts = append(parts, fmt.Sprintf("%s %d", op, ev.ResourceChanges[op]))
		}
		b.WriteString(" (" + strings.Join(parts, ", ") + ")")
	}
	return b.String()
}

// Enqueue queues ev for every active webhook that selects it (the organization's, and the
// stack's when ev names one), in tx: the event commits with the change that caused it or not
// at all. It returns how many deliveries it queued.
func Enqueue(tx gatehouse.Tx, ev *Event) (int, error) {
	hooks, err := tx.ListWebhooks(ev.OrgID, 0)
	if err != nil {
		return 0, err
	}
	if ev.StackID != 0 {
		sh, err := tx.ListWebhooks(ev.OrgID, ev.StackID)
		if err != nil {
			return 0, err
		}
		hooks = append(hooks, sh...)
	}
	if ev.EnvID != 0 {
		eh, err := tx.ListWebhooks(ev.OrgID, EnvScope(ev.EnvID))
		if err != nil {
			return 0, err
		}
		hooks = append(hooks, eh...)
	}
	n := 0
	for i := range hooks {
		h := &hooks[i]
		if !h.Active || !Selects(h.Filters, h.Groups, ev.Name) {
			continue
		}
		if _, err := EnqueueFor(tx, h, ev); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// EnqueueFor queues ev for the webhook h alone (pings).
func EnqueueFor(tx gatehouse.Tx, h *gatehouse.Webhook, ev *Event) (*gatehouse.WebhookDelivery, error) {
	body, err := Payload(h.Format, ev)
	if err != nil {
		return nil, err
	}
	d := &gatehouse.WebhookDelivery{WebhookID: h.ID, Kind: KindOf(ev.Name), Event: ev.Name, Payload: body}
	return d, tx.EnqueueWebhookDelivery(d)
}
