package oidc

import (
	"fmt"
	"strings"
	"time"
	"unicode"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// ownerClaims are the claims whose value names whose workload a token belongs to (the
// owner: a GitHub user or organization, a GitLab group, a Kubernetes namespace, a CircleCI
// project, an Azure tenant or object), set by the issuer, never chosen by the workload. An
// allow policy must constrain one of them (or sub, see subNamesOwner) with a pattern that
// writes the owner out. Every other claim (aud, ref, environment, event_name, workflow,
// job_workflow_ref, actor, repository_visibility, ...) says what ran or how, and anyone can
// make a token whose value matches: any repository can ask for the organization's audience,
// from a branch called main, in an environment called production, calling a public
// reusable workflow of the organization, in a public repository.
var ownerClaims = map[string]bool{
	// GitHub Actions.
	"repository": true, "repository_id": true, "repository_owner": true, "repository_owner_id": true,
	// GitLab CI.
	"project_path": true, "project_id": true, "namespace_path": true, "namespace_id": true,
	// Kubernetes service-account tokens.
	`"kubernetes.io".namespace`: true,
	// CircleCI.
	`"oidc.circleci.com/project-id"`: true,
	// Azure (Entra ID): tenant and object IDs.
	"tid": true, "oid": true,
}

// subOwnerPrefixes are the starts of sub values after which the issuer writes the owner:
// GitHub `repo:OWNER/REPO:...` and the custom sub templates GitHub lets any repository set
// that begin with an owner claim (`repository_owner:OWNER:...`, `repository_owner_id:ID:...`,
// `repository:OWNER/REPO:...`, `repository_id:ID:...`), GitLab `project_path:GROUP/PROJECT:...`,
// Kubernetes `system:serviceaccount:NAMESPACE:NAME`, CircleCI `org/ORG-ID/...` and Azure
// DevOps `sc://ORG/PROJECT/CONNECTION`. Any other start is the workload's choice: GitHub's
// custom templates may begin with `environment:`, `ref:`, `context:`, `job_workflow_ref:`,
// `workflow:`, ... for any repository, and `system:` alone covers every service account.
var subOwnerPrefixes = []string{
	"repo:", "repository:", "repository_owner:", "repository_owner_id:", "repository_id:",
	"project_path:", "system:serviceaccount:", "org/", "sc://",
}

// subWithoutOwner are the whole sub values without a `:` that a GitHub custom template can
// produce for any repository (the template ["context"] on a pull request).
var subWithoutOwner = map[string]bool{"pull_request": true}

// ownerSegmentLiteral reports whether items begin with a written-out owner: the characters up
// to the first `:` or `/` (or the end) have no `*` or `?` and hold a letter or digit.
func ownerSegmentLiteral(items []patItem) bool {
	alnum := false
	for _, it := range items {
		if it.kind != patLit {
			return false
		}
		if it.r == ':' || it.r == '/' {
			break
		}
		if unicode.IsLetter(it.r) || unicode.IsDigit(it.r) {
			alnum = true
		}
	}
	return alnum
}

// subNamesOwner reports whether a sub pattern names whose workload it is: it begins with one
// of subOwnerPrefixes followed by a written-out owner (`repo:acme/*`,
// `repository_owner:acme:*`, `system:serviceaccount:ci:*`), or it is one exact value without
// `:` (an object ID as Azure and Google write it). `*`, `repo:*`, `repo:*/infra:*`,
// `repo:acme*/x`, `system:*`, `repository_owner:*`, `environment:production` and
// `ref:refs/heads/main` do not: anyone can make a token they match.
func subNamesOwner(pat Pattern) bool {
	for _, pre := range subOwnerPrefixes {
		if pat.hasLiteralPrefix(pre) {
			return ownerSegmentLiteral(pat.items[len([]rune(pre)):])
		}
	}
	if pat.wild() {
		return false
	}
	var b strings.Builder
	for _, it := range pat.items {
		if it.r == ':' {
			return false
		}
		b.WriteRune(it.r)
	}
	return !subWithoutOwner[b.String()]
}

// namesOwner reports whether a rule on the claim at path, with pattern pat, names whose
// workload it admits: sub as subNamesOwner says; a claim of ownerClaims when its value up to
// the first `:` or `/` is written out (`acme/*`, `456789`); any other claim never.
func namesOwner(path ClaimPath, pat Pattern) bool {
	if len(path) == 1 && path[0] == "sub" {
		return subNamesOwner(pat)
	}
	return ownerClaims[path.String()] && ownerSegmentLiteral(pat.items)
}

// identifies reports whether an allow policy's rules name a specific workload (some rule
// on an owner claim, or sub, with a pattern that names an owner). Without one it returns the
// rule to blame ("" when no rule is on sub or an owner claim).
func identifies(p *gatehouse.OIDCPolicy) (ok bool, blame string) {
	for k, v := range p.Rules {
		path, err := ParseClaimPath(k)
		if err != nil {
			continue
		}
		pat, err := ParsePattern(v)
		if err != nil {
			continue
		}
		if namesOwner(path, pat) {
			return true, ""
		}
		if !(len(path) == 1 && path[0] == "sub") && !ownerClaims[path.String()] {
			continue
		}
		if blame == "" || k < blame {
			blame = k
		}
	}
	return false, blame
}

const identifyHint = "add a rule on sub, repository, repository_id, repository_owner_id or another claim that names the owner (organization, group, namespace) in full, like \"repo:acme/infra:*\" or \"repo:acme/*\": a wildcard may not stand for the owner (\"*\", \"repo:*\", \"*:*\" or \"repo:*/infra\" admit workloads of anyone), a sub must begin with repo:, repository_owner:, repository_owner_id:, project_path:, system:serviceaccount: or another prefix that the owner follows (\"environment:production\" or \"system:*\" can be anyone's), and aud, ref, environment, event_name, job_workflow_ref, repository_visibility and the like say what ran, not whose it is"

// NormalizePolicies checks an issuer's policy list and normalizes it in place (lower-case
// decisions and token types, "org" spelled "organization"). Errors are EINVALID with a
// message that names the offending policy.
func NormalizePolicies(ps []gatehouse.OIDCPolicy) error {
	if len(ps) > MaxPolicies {
		return gatehouse.Errorf(gatehouse.EINVALID, "too many policies (%d); an issuer may have at most %d", len(ps), MaxPolicies)
	}
	for i := range ps {
		if err := NormalizePolicy(&ps[i]); err != nil {
			return gatehouse.Errorf(gatehouse.EINVALID, "policies[%d]: %s", i, gatehouse.ErrorMessage(err))
		}
	}
	return nil
}

// NormalizePolicy checks one policy and normalizes it in place.
func NormalizePolicy(p *gatehouse.OIDCPolicy) error {
	bad := func(format string, args ...any) error { return gatehouse.Errorf(gatehouse.EINVALID, format, args...) }
	p.Decision = strings.ToLower(strings.TrimSpace(p.Decision))
	if p.Decision != gatehouse.OIDCAllow && p.Decision != gatehouse.OIDCDeny {
		return bad("decision must be %q or %q", gatehouse.OIDCAllow, gatehouse.OIDCDeny)
	}
	p.TokenType = strings.ToLower(strings.TrimSpace(p.TokenType))
	if p.TokenType == "org" {
		p.TokenType = gatehouse.OIDCTokenOrganization
	}
	p.TeamName, p.UserLogin = strings.TrimSpace(p.TeamName), strings.TrimSpace(p.UserLogin)
	switch p.TokenType {
	case gatehouse.OIDCTokenOrganization, gatehouse.OIDCTokenTeam, gatehouse.OIDCTokenPersonal:
	case "":
		if p.Decision == gatehouse.OIDCAllow {
			return bad("an allow policy must name a tokenType (organization, team or personal)")
		}
	case "runner":
		return bad("runner tokens are not supported by Gatehouse")
	default:
		return bad("unknown tokenType %q (want organization, team or personal)", p.TokenType)
	}
	if p.TeamName != "" && p.TokenType != gatehouse.OIDCTokenTeam {
		return bad("teamName is only for tokenType team")
	}
	if p.UserLogin != "" && p.TokenType != gatehouse.OIDCTokenPersonal {
		return bad("userLogin is only for tokenType personal")
	}
	if p.Decision == gatehouse.OIDCAllow {
		if p.TokenType == gatehouse.OIDCTokenTeam && p.TeamName == "" {
			return bad("an allow policy for team tokens must name the team (teamName)")
		}
		if p.TokenType == gatehouse.OIDCTokenPersonal && p.UserLogin == "" {
			return bad("an allow policy for personal tokens must name the user (userLogin)")
		}
	}
	for i, perm := range p.AuthorizedPermissions {
		perm = strings.ToLower(strings.TrimSpace(perm))
		if perm != "admin" {
			return bad("unknown authorized permission %q (only \"admin\")", perm)
		}
		if p.TokenType != gatehouse.OIDCTokenOrganization {
			return bad("authorizedPermissions apply to organization tokens only")
		}
		p.AuthorizedPermissions[i] = perm
	}
	if len(p.Rules) > MaxRules {
		return bad("too many rules (%d, at most %d)", len(p.Rules), MaxRules)
	}
	for k, v := range p.Rules {
		if _, err := ParseClaimPath(k); err != nil {
			return bad("%v", err)
		}
		if _, err := ParsePattern(v); err != nil {
			return bad("rule %s: %v", k, err)
		}
	}
	if p.Decision == gatehouse.OIDCAllow {
		if ok, blame := identifies(p); !ok {
			if blame != "" {
				return bad("an allow policy must name whose workload it admits, and rule %s %q does not: %s", blame, p.Rules[blame], identifyHint)
			}
			return bad("an allow policy must name whose workload it admits: %s", identifyHint)
		}
	}
	if p.MaxExpiration != 0 && (p.MaxExpiration < MinExpiration || p.MaxExpiration > MaxExpiration) {
		return bad("maxExpiration must be between %d and %d seconds", int(MinExpiration.Seconds()), int(MaxExpiration.Seconds()))
	}
	return nil
}

// Target is what an exchange asks for.
type Target struct {
	TokenType string // gatehouse.OIDCToken*
	Team      string // team tokens
	User      string // personal tokens
	Admin     bool   // organization tokens: the admin role (scope "admin")
}

func (t Target) String() string {
	switch t.TokenType {
	case gatehouse.OIDCTokenTeam:
		return "team token for " + t.Team
	case gatehouse.OIDCTokenPersonal:
		return "personal token for " + t.User
	case gatehouse.OIDCTokenOrganization:
		if t.Admin {
			return "organization token (admin)"
		}
		return "organization token"
	}
	return t.TokenType + " token"
}

// Decision is the outcome of Evaluate.
type Decision struct {
	Allow bool
	// Index is the position of the deciding policy; -1 when none matched (deny by default).
	Index int
	// Policy is the deciding policy (nil when none matched).
	Policy *gatehouse.OIDCPolicy
	Reason string
}

// Evaluate decides an exchange: a matching deny policy refuses it whatever else matches;
// otherwise the first matching allow policy grants it; otherwise it is refused. A policy
// matches when it covers the target and every one of its rules matches the claims.
func Evaluate(ps []gatehouse.OIDCPolicy, c Claims, t Target) Decision {
	allowAt, vague := -1, -1
	for i := range ps {
		p := &ps[i]
		switch p.Decision {
		case gatehouse.OIDCDeny:
			if coversDeny(p, t) && rulesMatch(p, c, true) {
				return Decision{Index: i, Policy: p, Reason: fmt.Sprintf("policies[%d] denies %s", i, t)}
			}
		case gatehouse.OIDCAllow:
			if allowAt < 0 && coversAllow(p, t) && rulesMatch(p, c, false) {
				// A policy stored before NormalizePolicy refused it (a rule such as
				// sub "repo:*") fails closed: it admits no one.
				if ok, _ := identifies(p); !ok {
					if vague < 0 {
						vague = i
					}
					continue
				}
				allowAt = i
			}
		}
	}
	if allowAt >= 0 {
		return Decision{Allow: true, Index: allowAt, Policy: &ps[allowAt], Reason: fmt.Sprintf("policies[%d] allows %s", allowAt, t)}
	}
	if vague >= 0 {
		return Decision{Index: -1, Reason: fmt.Sprintf("policies[%d] would allow %s but names no owner (it was stored before such policies were refused; fix it); no other policy allows it (deny by default)", vague, t)}
	}
	return Decision{Index: -1, Reason: "no policy allows " + t.String() + " for these claims (deny by default)"}
}

func coversAllow(p *gatehouse.OIDCPolicy, t Target) bool {
	if p.TokenType != t.TokenType {
		return false
	}
	switch t.TokenType {
	case gatehouse.OIDCTokenTeam:
		return t.Team != "" && strings.EqualFold(p.TeamName, t.Team)
	case gatehouse.OIDCTokenPersonal:
		return t.User != "" && strings.EqualFold(p.UserLogin, t.User)
	case gatehouse.OIDCTokenOrganization:
		return !t.Admin || hasAdmin(p.AuthorizedPermissions)
	}
	return false
}

// coversDeny: a deny policy covers every request its (possibly empty) token type, team and
// user fields do not exclude.
func coversDeny(p *gatehouse.OIDCPolicy, t Target) bool {
	if p.TokenType != "" && p.TokenType != t.TokenType {
		return false
	}
	if p.TeamName != "" && !strings.EqualFold(p.TeamName, t.Team) {
		return false
	}
	if p.UserLogin != "" && !strings.EqualFold(p.UserLogin, t.User) {
		return false
	}
	return true
}

func hasAdmin(perms []string) bool {
	for _, p := range perms {
		if strings.EqualFold(p, "admin") {
			return true
		}
	}
	return false
}

// rulesMatch reports whether every rule matches. A rule that cannot be compiled (stored
// policies are checked when written, so this should not happen) fails closed: it matches
// for a deny policy and does not for an allow policy.
func rulesMatch(p *gatehouse.OIDCPolicy, c Claims, deny bool) bool {
	for k, v := range p.Rules {
		path, err := ParseClaimPath(k)
		if err != nil {
			return deny
		}
		pat, err := ParsePattern(v)
		if err != nil {
			return deny
		}
		matched := false
		for _, val := range c.Values(path) {
			if pat.Match(val) {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	return true
}

// Lifetime is the lifetime of an issued token: the requested one (DefaultLifetime when 0),
// never longer than the issuer's cap (DefaultMaxExpiration when 0) or the policy's.
func Lifetime(requested, issuerMax, policyMax time.Duration) time.Duration {
	d := requested
	if d <= 0 {
		d = DefaultLifetime
	}
	if issuerMax <= 0 {
		issuerMax = DefaultMaxExpiration
	}
	d = min(d, issuerMax)
	if policyMax > 0 {
		d = min(d, policyMax)
	}
	return d
}
