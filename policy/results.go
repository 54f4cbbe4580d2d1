package policy

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/apitype"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Result kinds.
const (
	KindViolation   = "violation"
	KindRemediation = "remediation"
	KindSummary     = "summary"
	KindProvider    = "provider" // Gatehouse's own: an unapproved provider
)

// FromEvents extracts the policy results of a batch of engine events as the CLI sends
// them: every violation (policyEvent) and remediation, the stack summaries, and the
// per-resource summaries that name failed policies (those that only list passes are
// counted in the stack summary and not kept one by one).
func FromEvents(events []json.RawMessage) []gatehouse.PolicyResult {
	var out []gatehouse.PolicyResult
	for _, raw := range events {
		if !strings.Contains(string(raw), `"policy`) {
			continue // cheap filter: most events are not policy events
		}
		var e struct {
			PolicyEvent                    *apitype.PolicyEvent                    `json:"policyEvent"`
			PolicyRemediationEvent         *apitype.PolicyRemediationEvent         `json:"policyRemediationEvent"`
			PolicyAnalyzeSummaryEvent      *apitype.PolicyAnalyzeSummaryEvent      `json:"policyAnalyzeSummaryEvent"`
			PolicyRemediateSummaryEvent    *apitype.PolicyRemediateSummaryEvent    `json:"policyRemediateSummaryEvent"`
			PolicyAnalyzeStackSummaryEvent *apitype.PolicyAnalyzeStackSummaryEvent `json:"policyAnalyzeStackSummaryEvent"`
		}
		if json.Unmarshal(raw, &e) != nil {
			continue
		}
		switch {
		case e.PolicyEvent != nil:
			p := e.PolicyEvent
			out = append(out, gatehouse.PolicyResult{Kind: KindViolation, PackName: p.PolicyPackName, PackVersion: tagOr(p.PolicyPackVersionTag, p.PolicyPackVersion),
				PolicyName: p.PolicyName, Level: p.EnforcementLevel, Severity: p.Severity, URN: p.ResourceURN, Message: clip(p.Message)})
		case e.PolicyRemediationEvent != nil:
			p := e.PolicyRemediationEvent
			out = append(out, gatehouse.PolicyResult{Kind: KindRemediation, PackName: p.PolicyPackName, PackVersion: tagOr(p.PolicyPackVersionTag, p.PolicyPackVersion),
				PolicyName: p.PolicyName, Level: string(apitype.Remediate), URN: p.ResourceURN, Message: "remediated"})
		case e.PolicyAnalyzeStackSummaryEvent != nil:
			p := e.PolicyAnalyzeStackSummaryEvent
			out = append(out, summary(p.PolicyPackName, tagOr(p.PolicyPackVersionTag, p.PolicyPackVersion), "", p.Passed, p.Failed))
		case e.PolicyAnalyzeSummaryEvent != nil && len(e.PolicyAnalyzeSummaryEvent.Failed) > 0:
			p := e.PolicyAnalyzeSummaryEvent
			out = append(out, summary(p.PolicyPackName, tagOr(p.PolicyPackVersionTag, p.PolicyPackVersion), p.ResourceURN, p.Passed, p.Failed))
		case e.PolicyRemediateSummaryEvent != nil && len(e.PolicyRemediateSummaryEvent.Failed) > 0:
			p := e.PolicyRemediateSummaryEvent
			out = append(out, summary(p.PolicyPackName, tagOr(p.PolicyPackVersionTag, p.PolicyPackVersion), p.ResourceURN, p.Passed, p.Failed))
		}
	}
	return out
}

func summary(pack, version, urn string, passed, failed []string) gatehouse.PolicyResult {
	return gatehouse.PolicyResult{Kind: KindSummary, PackName: pack, PackVersion: version, URN: urn,
		Message: clip("passed: " + strings.Join(passed, ", ") + "; failed: " + strings.Join(failed, ", "))}
}

func tagOr(tag, v string) string {
	if tag != "" {
		return tag
	}
	return v
}

func clip(s string) string {
	if len(s) > 4096 {
		return s[:4096]
	}
	return s
}

// Mandatory reports whether a result is a mandatory violation (an audit event).
func Mandatory(r *gatehouse.PolicyResult) bool {
	return (r.Kind == KindViolation && r.Level == string(apitype.Mandatory)) || r.Kind == KindProvider
}

// Issue is a result in the shape `pulumi` reads policy issues in.
func Issue(r *gatehouse.PolicyResult) apitype.PolicyIssue {
	iss := apitype.PolicyIssue{
		ID: strconv.FormatInt(r.ID, 10), EntityType: "stack", PolicyPack: r.PackName, PolicyPackTag: r.PackVersion,
		PolicyName: r.PolicyName, Level: r.Level, Severity: apitype.PolicySeverity(r.Severity), ResourceURN: r.URN,
		Message: r.Message, ObservedAt: r.Created.UTC().Format(time.RFC3339), LastModified: r.Created.UTC().Format(time.RFC3339),
		Status: "open", Kind: r.Kind,
	}
	if r.StackRef != nil {
		iss.EntityProject, iss.EntityID = r.StackRef.Project, r.StackRef.Stack
	}
	if parts := strings.Split(r.URN, "::"); len(parts) >= 4 {
		iss.ResourceType, iss.ResourceName = parts[len(parts)-2], parts[len(parts)-1]
		if i := strings.LastIndex(iss.ResourceType, "$"); i >= 0 {
			iss.ResourceType = iss.ResourceType[i+1:]
		}
		if pkg, _, ok := strings.Cut(iss.ResourceType, ":"); ok {
			iss.ResourceProvider = pkg
		}
	}
	return iss
}
