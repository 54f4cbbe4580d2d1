package audit

import (
	"strconv"
	"strings"
	"unicode/utf8"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Details keys with a meaning in the Pulumi-compatible formats. Emitters set them to "true"
// on events whose action required the role (the authorization layer knows).
const (
	DetailRequireOrgAdmin   = "requireOrgAdmin"
	DetailRequireStackAdmin = "requireStackAdmin"
)

// Describe returns a one-line human description of e, used as the Description (CSV, Pulumi
// JSON), the Name (CEF) and the message (OCSF). For example:
//
//	user "alice" performed stack:create on "acme/web/prod"
//	team-token "ci" was denied stack:update on "acme/web/prod": stack is protected
//
// Actor and target are quoted (Go syntax); control characters in the reason become spaces,
// so the description never spans lines.
func Describe(e *gatehouse.AuditEvent) string { return string(appendDescribe(nil, e)) }

func appendDescribe(b []byte, e *gatehouse.AuditEvent) []byte {
	kind := e.ActorKind
	if kind == "" {
		kind = "actor"
	}
	b = append(b, kind...)
	if e.ActorName != "" {
		b = append(b, ' ')
		b = strconv.AppendQuote(b, e.ActorName)
	}
	action := e.Action
	if action == "" {
		action = "an unnamed action"
	}
	switch e.Outcome {
	case gatehouse.OutcomeSuccess:
		b = append(b, " performed "...)
	case gatehouse.OutcomeDenied:
		b = append(b, " was denied "...)
	case gatehouse.OutcomeFailure:
		b = append(b, " failed "...)
	default:
		b = append(b, " attempted "...)
	}
	b = append(b, action...)
	if e.Outcome != gatehouse.OutcomeSuccess && e.Outcome != gatehouse.OutcomeDenied && e.Outcome != gatehouse.OutcomeFailure && e.Outcome != "" {
		b = append(b, " ("...)
		b = strconv.AppendQuote(b, e.Outcome)
		b = append(b, ')')
	}
	if e.Target != "" {
		b = append(b, " on "...)
		b = strconv.AppendQuote(b, e.Target)
	}
	if e.Reason != "" {
		b = append(b, ": "...)
		for _, r := range e.Reason {
			if isControl(r) {
				r = ' '
			}
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// requireOrgAdmin and requireStackAdmin report Pulumi's RequireOrgAdmin and
// RequireStackAdmin flags, which come from the event's Details.
func requireOrgAdmin(e *gatehouse.AuditEvent) bool { return e.Details[DetailRequireOrgAdmin] == "true" }
func requireStackAdmin(e *gatehouse.AuditEvent) bool {
	return e.Details[DetailRequireStackAdmin] == "true"
}

// authFailure reports Pulumi's AuthenticationFailure flag: the event records a denied
// attempt, or a failed authentication (an "auth:" action that failed).
func authFailure(e *gatehouse.AuditEvent) bool {
	return e.Outcome == gatehouse.OutcomeDenied ||
		(e.Outcome == gatehouse.OutcomeFailure && strings.HasPrefix(e.Action, "auth"))
}

// isTokenActor reports whether the actor is a machine token (its name is a token name).
func isTokenActor(e *gatehouse.AuditEvent) bool { return strings.HasSuffix(e.ActorKind, "-token") }

// login returns the user login of e's actor, empty when the actor is not a user.
func login(e *gatehouse.AuditEvent) string {
	if e.ActorKind == "user" || (e.ActorKind == "" && e.UserID != 0) {
		return e.ActorName
	}
	return ""
}

// PulumiEvent is an audit event in the shape of Pulumi Cloud's audit log API
// (GET /api/orgs/{org}/auditlogs returns {"auditLogEvents": [...], "continuationToken": ...}).
type PulumiEvent struct {
	Timestamp     int64      `json:"timestamp"` // Unix seconds
	SourceIP      string     `json:"sourceIP"`
	Event         string     `json:"event"`
	Description   string     `json:"description"`
	User          PulumiUser `json:"user"`
	TokenID       string     `json:"tokenID,omitempty"`
	TokenName     string     `json:"tokenName,omitempty"`
	ReqOrgAdmin   bool       `json:"reqOrgAdmin,omitempty"`
	ReqStackAdmin bool       `json:"reqStackAdmin,omitempty"`
	AuthFailure   bool       `json:"authFailure,omitempty"`
	ActorName     string     `json:"actorName,omitempty"` // non-human actors (tokens)
}

// PulumiUser is the user object of a PulumiEvent.
type PulumiUser struct {
	Name        string `json:"name"`
	GithubLogin string `json:"githubLogin"`
	AvatarURL   string `json:"avatarUrl"`
}

// ToPulumi maps e to Pulumi Cloud's audit event shape: event is the Action, description
// is Describe(e); for token actors the token name is tokenName and actorName.
func ToPulumi(e *gatehouse.AuditEvent) PulumiEvent {
	p := PulumiEvent{
		Timestamp:     e.Time.Unix(),
		SourceIP:      e.SourceIP,
		Event:         e.Action,
		Description:   Describe(e),
		TokenID:       e.TokenID,
		ReqOrgAdmin:   requireOrgAdmin(e),
		ReqStackAdmin: requireStackAdmin(e),
		AuthFailure:   authFailure(e),
	}
	if isTokenActor(e) {
		p.TokenName = e.ActorName
		p.ActorName = e.ActorName
	} else {
		p.User = PulumiUser{Name: e.ActorName, GithubLogin: login(e)}
	}
	return p
}
