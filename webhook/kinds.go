// Package webhook is Gatehouse's webhooks as Pulumi Cloud defines them: organization, stack
// and environment webhooks that receive events (stack updates, previews, stack creation and
// deletion; Deployments runs queued, started and ended; environment creation, deletion,
// revisions and revision tags) as JSON POSTs in Pulumi's shapes, or as Slack and Microsoft Teams messages, signed with
// the webhook's secret (Pulumi-Webhook-Signature: hex HMAC-SHA256 of the body) and named by
// Pulumi-Webhook-ID and Pulumi-Webhook-Kind headers.
//
// Events are queued in the store in the transaction of the change that caused them
// (Enqueue), one delivery per matching webhook; a Dispatcher claims due deliveries under a
// lease, posts them with a netguard client (no private destinations) and retries failures
// with exponential backoff, so that every event is delivered at least once, by one process
// at a time, also across restarts.
package webhook

import (
	"fmt"
	"slices"
	"sort"
)

// Kinds: the Pulumi-Webhook-Kind header.
const (
	KindStack        = "stack"
	KindStackPreview = "stack_preview"
	KindStackUpdate  = "stack_update"
	KindPing         = "ping"
	KindDeployment   = "deployment"

	KindEnvironment            = "environment"
	KindEnvironmentRevision    = "environment_revision"
	KindEnvironmentRevisionTag = "environment_revision_tag"
	KindEnvironmentTag         = "environment_tag"
)

// Events (filters).
const (
	StackCreated     = "stack_created"
	StackDeleted     = "stack_deleted"
	PreviewSucceeded = "preview_succeeded"
	PreviewFailed    = "preview_failed"
	UpdateSucceeded  = "update_succeeded"
	UpdateFailed     = "update_failed"
	DestroySucceeded = "destroy_succeeded"
	DestroyFailed    = "destroy_failed"
	RefreshSucceeded = "refresh_succeeded"
	RefreshFailed    = "refresh_failed"
	// Gatehouse's own: runs that start (Pulumi Cloud sends only the end).
	PreviewStarted = "preview_started"
	UpdateStarted  = "update_started"
	DestroyStarted = "destroy_started"
	RefreshStarted = "refresh_started"
	Ping           = "ping"

	// Deployments (package deploy): a run queued, leased by a runner, ended.
	DeploymentQueued    = "deployment_queued"
	DeploymentStarted   = "deployment_started"
	DeploymentSucceeded = "deployment_succeeded"
	DeploymentFailed    = "deployment_failed"

	// Environments (ESC).
	EnvironmentCreated            = "environment_created"
	EnvironmentDeleted            = "environment_deleted"
	EnvironmentRevisionCreated    = "environment_revision_created"
	EnvironmentRevisionRetracted  = "environment_revision_retracted"
	EnvironmentTagCreated         = "environment_tag_created"
	EnvironmentTagUpdated         = "environment_tag_updated"
	EnvironmentTagDeleted         = "environment_tag_deleted"
	EnvironmentRevisionTagCreated = "environment_revision_tag_created"
	EnvironmentRevisionTagUpdated = "environment_revision_tag_updated"
	EnvironmentRevisionTagDeleted = "environment_revision_tag_deleted"
)

// eventKinds maps every filter Gatehouse knows to its kind. Deployment events are sent
// (by package deploy); Pulumi's drift and rotation filters are accepted (a webhook may name
// them) but Gatehouse sends no such events yet.
var eventKinds = map[string]string{
	StackCreated: KindStack, StackDeleted: KindStack,
	PreviewSucceeded: KindStackPreview, PreviewFailed: KindStackPreview, PreviewStarted: KindStackPreview,
	UpdateSucceeded: KindStackUpdate, UpdateFailed: KindStackUpdate, UpdateStarted: KindStackUpdate,
	DestroySucceeded: KindStackUpdate, DestroyFailed: KindStackUpdate, DestroyStarted: KindStackUpdate,
	RefreshSucceeded: KindStackUpdate, RefreshFailed: KindStackUpdate, RefreshStarted: KindStackUpdate,

	DeploymentQueued: KindDeployment, DeploymentStarted: KindDeployment, DeploymentSucceeded: KindDeployment, DeploymentFailed: KindDeployment,
	"drift_detected": "drift_detection", "drift_detection_succeeded": "drift_detection", "drift_detection_failed": "drift_detection",
	"drift_remediation_succeeded": "drift_remediation", "drift_remediation_failed": "drift_remediation",
	"environment_created": "environment", "environment_deleted": "environment",
	"environment_revision_created": "environment_revision", "environment_revision_retracted": "environment_revision",
	"environment_revision_tag_created": "environment_revision_tag", "environment_revision_tag_deleted": "environment_revision_tag", "environment_revision_tag_updated": "environment_revision_tag",
	"environment_tag_created": "environment_tag", "environment_tag_deleted": "environment_tag", "environment_tag_updated": "environment_tag",
	"imported_environment_changed":   "imported_environment_changed",
	"environment_rotation_succeeded": "environment_rotation", "environment_rotation_failed": "environment_rotation",
}

// orgOnly are the events only organization webhooks may select.
var orgOnly = map[string]bool{StackCreated: true, StackDeleted: true, "environment_created": true, "environment_deleted": true}

// groupKinds maps each group to its kinds.
var groupKinds = map[string][]string{
	"stacks":       {KindStack, KindStackPreview, KindStackUpdate},
	"deployments":  {KindDeployment, "drift_detection", "drift_remediation"},
	"environments": {"environment", "environment_revision", "environment_revision_tag", "environment_tag", "imported_environment_changed", "environment_rotation"},
}

// Formats.
const (
	FormatRaw     = "raw"
	FormatSlack   = "slack"
	FormatMSTeams = "ms_teams"
)

// KindOf returns the kind of an event ("" for an unknown one).
func KindOf(event string) string {
	if event == Ping {
		return KindPing
	}
	return eventKinds[event]
}

// CheckFilters validates a webhook's format, filters and groups (stack: a stack or
// environment webhook, which may not select organization-only events).
// It returns the format, defaulted to raw.
func CheckFilters(format string, filters, groups []string, stack bool) (string, error) {
	switch format {
	case "":
		format = FormatRaw
	case FormatRaw, FormatSlack, FormatMSTeams:
	case "pulumi_deployments":
		return "", fmt.Errorf("format pulumi_deployments (a webhook that triggers a deployment) is not supported yet: trigger deployments through the Deployments API or a GitHub or GitLab push webhook")
	default:
		return "", fmt.Errorf("unknown format %q (raw, slack or ms_teams)", format)
	}
	for _, f := range filters {
		if _, ok := eventKinds[f]; !ok {
			return "", fmt.Errorf("unknown filter %q (known: %v)", f, Filters())
		}
		if stack && orgOnly[f] {
			return "", fmt.Errorf("filter %q is only for organization webhooks", f)
		}
	}
	for _, g := range groups {
		if _, ok := groupKinds[g]; !ok {
			return "", fmt.Errorf("unknown group %q (stacks, deployments or environments)", g)
		}
	}
	return format, nil
}

// Filters lists the known filters.
func Filters() []string {
	out := make([]string, 0, len(eventKinds))
	for f := range eventKinds {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// Selects reports whether a webhook with these filters and groups receives event: no
// filters and no groups select every event; otherwise the event must be among the filters
// or its kind in one of the groups. Pings always go.
func Selects(filters, groups []string, event string) bool {
	if event == Ping {
		return true
	}
	if len(filters) == 0 && len(groups) == 0 {
		return true
	}
	if slices.Contains(filters, event) {
		return true
	}
	kind := eventKinds[event]
	for _, g := range groups {
		if slices.Contains(groupKinds[g], kind) {
			return true
		}
	}
	return false
}
