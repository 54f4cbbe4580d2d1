package posture

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Severity of a finding.
type Severity string

// Severities, most severe first.
const (
	SevHigh   Severity = "high"
	SevMedium Severity = "medium"
	SevLow    Severity = "low"
)

// Severities lists the severities, most severe first.
var Severities = []Severity{SevHigh, SevMedium, SevLow}

// Rank orders severities: high 3, medium 2, low 1, anything else 0.
func (s Severity) Rank() int {
	switch s {
	case SevHigh:
		return 3
	case SevMedium:
		return 2
	case SevLow:
		return 1
	}
	return 0
}

// ParseSeverity parses high, medium or low.
func ParseSeverity(s string) (Severity, error) {
	v := Severity(strings.ToLower(s))
	if v.Rank() == 0 {
		return "", gatehouse.Errorf(gatehouse.EINVALID, "unknown severity %q (want high, medium or low)", s)
	}
	return v, nil
}

// Finding is one problem of the report.
type Finding struct {
	// Rule identifies the check (stable: SARIF rule IDs, suppressions).
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	Area     string   `json:"area"`    // members, teams, tokens, stacks, environments, oidc, audit, anomalies
	Subject  string   `json:"subject"` // what it is about: a person, a token, a stack, ...
	Title    string   `json:"title"`
	Detail   string   `json:"detail"`
	Fix      string   `json:"fix"`
}

// Report is the assess loop's result for one organization.
type Report struct {
	Org         string    `json:"org"`
	GeneratedAt time.Time `json:"generatedAt"`
	PeriodDays  int       `json:"periodDays"`
	Settings    Settings  `json:"settings"`
	Findings    []Finding `json:"findings"`
	// Summary counts findings per severity.
	Summary map[Severity]int `json:"summary"`
}

// Counts returns the findings per severity (every severity present).
func (r *Report) Counts() map[Severity]int {
	c := map[Severity]int{}
	for _, s := range Severities {
		c[s] = 0
	}
	for _, f := range r.Findings {
		c[f.Severity]++
	}
	return c
}

// Fails reports whether the report has a finding at least as severe as s.
func (r *Report) Fails(s Severity) bool {
	for _, f := range r.Findings {
		if f.Severity.Rank() >= s.Rank() {
			return true
		}
	}
	return false
}

// AssessOptions are the inputs of Assess besides the store.
type AssessOptions struct {
	Now time.Time
	// ExportSinks names the continuous audit export sinks the server is configured with.
	ExportSinks []string
	// SkipSiteChecks leaves out the checks of the site's audit log (export sinks, their lag,
	// verification of the chain): facts of the whole server, for site administrators only.
	SkipSiteChecks bool
}

// Rules: the checks of the report, with their fix (also the SARIF rule descriptions).
var Rules = map[string]struct {
	Title string
	Fix   string
}{
	"members/too-many-admins":         {"More organization admins than the policy allows", "Demote admins who do not need to administer the organization: gatehouse member set-role USER member --org ORG."},
	"members/admin-on-production":     {"A person has admin on production stacks", "Give people read (and preview) on production; let changes come from pipeline tokens: remove the admin grant (gatehouse grant rm) or the team membership."},
	"members/default-above-read":      {"Members' default stack permission is above read", "Set the default to none or read: gatehouse org set ORG --default-stack-permission read; grant write through teams."},
	"teams/write-on-protected":        {"A team has write or admin on protected stacks", "Grant people's teams read on protected stacks; changes come from pipeline credentials only. Keep write for pipeline teams whose only members are machines."},
	"tokens/never-expires":            {"A token never expires", "Rotate it into a token with an expiry (gatehouse token rotate ID), and cap lifetimes: gatehouse org set ORG --max-token-days 90."},
	"tokens/unused":                   {"A token was not used recently", "Revoke it (gatehouse token revoke ID); check its inventory first: gatehouse token usage ID."},
	"tokens/older-than-rotation":      {"A token is older than the rotation period", "Rotate it: gatehouse token rotate ID --grace 24h, then watch gatehouse token usage ID until no client uses the old one."},
	"tokens/personal-in-pipeline":     {"A personal token is used from a pipeline", "Give the pipeline a team token or, better, OIDC token exchange; then revoke the personal token."},
	"tokens/org-admin-token":          {"An organization token has the admin role", "Use a member-role organization token or a team token with only the grants the tool needs."},
	"stacks/production-unprotected":   {"A production stack is not protected", "Protect it so that only pipeline credentials change it: gatehouse protect add --org ORG --tag env=production."},
	"stacks/untagged":                 {"Stacks have no environment tag", "Tag every stack (pulumi stack tag set env production|staging|dev) so that grants and protections by tag cover it."},
	"environments/readable-default":   {"Environments are readable by every member by default", "Set the default environment permission to none and grant read/open through teams."},
	"environments/opened-by-people":   {"People opened an environment (decrypted its secrets)", "Let pipelines open production environments; protect the environment and grant people read only."},
	"oidc/policy-too-broad":           {"An OIDC policy admits too many subjects", "Constrain the policy's rules to one repository, branch or environment (sub = repo:ORG/REPO:environment:production)."},
	"audit/no-export":                 {"The audit log is not exported", "Configure a continuous export sink (gatehouse serve --audit-export ...) to your SIEM."},
	"audit/export-lagging":            {"An audit export sink is behind", "Check the sink's destination and the server's logs; the exporter resumes from its cursor."},
	"audit/not-verified":              {"The audit chain was not verified recently", "Verify the chain regularly: gatehouse audit verify (or GET /api/admin/auditlogs/verify)."},
	"anomalies/" + AnomalyNewAddress:  {"A token was used from an unfamiliar address", "Check the inventory (gatehouse token usage ID); if the use is not yours, revoke the token and look for the leak."},
	"anomalies/" + AnomalyOddHour:     {"A token was active at an hour it never was", "Check who used it (gatehouse token usage ID, audit log); revoke it if the use is not expected."},
	"anomalies/" + AnomalyDenialBurst: {"A token was denied many times in a short time", "Someone may be probing with it: check the audit log's denials, then revoke or narrow it."},
	"anomalies/" + AnomalySpike:       {"A token's request rate spiked", "Check what made the requests (gatehouse token usage ID); revoke the token if it is not a known job."},
	"anomalies/" + AnomalyPersonalCI:  {"A personal token was used from CI", "Replace it in the pipeline by a team token or OIDC token exchange, then revoke it."},
}

func (r *Report) add(rule string, sev Severity, area, subject, detail string) {
	ru := Rules[rule]
	r.Findings = append(r.Findings, Finding{Rule: rule, Severity: sev, Area: area, Subject: subject, Title: ru.Title, Detail: detail, Fix: ru.Fix})
}

// MetaAuditVerified is the meta key holding the last verification of the audit chain.
const MetaAuditVerified = "posture:audit-verified"

// AuditVerification is the last verification of the audit chain.
type AuditVerification struct {
	At      time.Time `json:"at"`
	OK      bool      `json:"ok"`
	LastSeq int64     `json:"lastSeq"`
}

// NoteAuditVerified records a verification of the audit chain.
func NoteAuditVerified(tx gatehouse.Tx, v AuditVerification) error {
	b, _ := json.Marshal(v)
	return tx.SetMeta(MetaAuditVerified, b)
}

// Assess runs every check against the organization and returns the report. It reads
// only; a token, stack or member deleted while it runs is simply not reported.
func Assess(tx gatehouse.Tx, org *gatehouse.Org, o AssessOptions) (*Report, error) {
	now := o.Now
	if now.IsZero() {
		now = tx.Now()
	}
	if o, err := tx.GetOrg(org.ID); err == nil {
		org = o // the settings as this transaction sees them
	} else {
		return nil, err
	}
	s, err := LoadSettings(tx, org.ID)
	if err != nil {
		return nil, err
	}
	rep := &Report{Org: org.Name, GeneratedAt: now.UTC(), PeriodDays: s.PeriodDays, Settings: s, Findings: []Finding{}}
	since := now.Add(-days(s.PeriodDays))
	a := &assessor{tx: tx, org: org, s: s, now: now, since: since, rep: rep}
	for _, step := range []func() error{a.members, a.stacksAndTeams, a.tokens, a.environments, a.oidc, func() error {
		if o.SkipSiteChecks {
			return nil
		}
		return a.audit(o.ExportSinks)
	}, a.anomalies} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(rep.Findings, func(i, j int) bool {
		fi, fj := rep.Findings[i], rep.Findings[j]
		if fi.Severity.Rank() != fj.Severity.Rank() {
			return fi.Severity.Rank() > fj.Severity.Rank()
		}
		if fi.Rule != fj.Rule {
			return fi.Rule < fj.Rule
		}
		return fi.Subject < fj.Subject
	})
	rep.Summary = rep.Counts()
	return rep, nil
}

type assessor struct {
	tx         gatehouse.Tx
	org        *gatehouse.Org
	s          Settings
	now, since time.Time
	rep        *Report
	mems       []gatehouse.Member
	admins     map[int64]bool
	stacks     []gatehouse.Stack
	prot       []gatehouse.Protection
}

func (a *assessor) members() error {
	ms, err := a.tx.ListMembers(a.org.ID)
	if err != nil {
		return err
	}
	a.mems, a.admins = ms, map[int64]bool{}
	var names []string
	for _, m := range ms {
		if m.Role == gatehouse.RoleAdmin {
			a.admins[m.User.ID] = true
			names = append(names, m.User.Name)
		}
	}
	if len(names) > a.s.MaxAdmins {
		sort.Strings(names)
		a.rep.add("members/too-many-admins", SevMedium, "members", a.org.Name,
			fmt.Sprintf("%d admins (policy: at most %d): %s", len(names), a.s.MaxAdmins, strings.Join(names, ", ")))
	}
	if p := a.org.Settings.DefaultStackPermission; p > gatehouse.PermRead {
		a.rep.add("members/default-above-read", SevHigh, "members", a.org.Name,
			fmt.Sprintf("every member has %s on every stack by default", p))
	}
	return nil
}

func (a *assessor) protected(st *gatehouse.Stack) bool {
	for _, p := range a.prot {
		if p.Scope.Matches(st.ID, st.Project, st.Tags) {
			return true
		}
	}
	return false
}

func (a *assessor) stacksAndTeams() error {
	cont := ""
	for {
		page, next, err := a.tx.ListStacks(gatehouse.StackFilter{OrgIDs: []int64{a.org.ID}, Continuation: cont, Limit: 500})
		if err != nil {
			return err
		}
		a.stacks = append(a.stacks, page...)
		if next == "" || len(page) == 0 {
			break
		}
		cont = next
	}
	var err error
	if a.prot, err = a.tx.ListProtections(a.org.ID); err != nil {
		return err
	}
	tk, tv := a.s.prodTag()
	var prod []*gatehouse.Stack
	var untagged []string
	for i := range a.stacks {
		st := &a.stacks[i]
		ref := st.Project + "/" + st.Name
		v, ok := st.Tags[tk]
		switch {
		case ok && v == tv:
			prod = append(prod, st)
			if !a.protected(st) {
				a.rep.add("stacks/production-unprotected", SevHigh, "stacks", ref,
					fmt.Sprintf("stack %s is tagged %s=%s but no protection rule covers it: people can change it directly", ref, tk, tv))
			}
		case !ok:
			untagged = append(untagged, ref)
		}
	}
	if len(untagged) > 0 {
		sort.Strings(untagged)
		shown := untagged
		if len(shown) > 20 {
			shown = shown[:20]
		}
		a.rep.add("stacks/untagged", SevLow, "stacks", fmt.Sprintf("%d stacks", len(untagged)),
			fmt.Sprintf("%d stack(s) have no %q tag: %s", len(untagged), tk, strings.Join(shown, ", ")+map[bool]string{true: ", ...", false: ""}[len(untagged) > len(shown)]))
	}
	teams, err := a.tx.ListTeams(a.org.ID)
	if err != nil {
		return err
	}
	// People with admin on production stacks (org admins are counted above).
	prodAdmin := map[string][]string{} // person -> "stack (via ...)"
	for _, st := range prod {
		if st.CreatorUserID != 0 && !a.admins[st.CreatorUserID] {
			if u, err := a.tx.GetUser(st.CreatorUserID); err == nil {
				prodAdmin[u.Name] = append(prodAdmin[u.Name], st.Project+"/"+st.Name+" (creator)")
			}
		}
	}
	for _, tm := range teams {
		grants, err := a.tx.ListGrants(tm.ID)
		if err != nil {
			return err
		}
		var members []gatehouse.TeamMember
		loaded := false
		for _, g := range grants {
			if g.Scope.IsEnv() || g.Permission < gatehouse.PermWrite {
				continue
			}
			var onProt []string
			for i := range a.stacks {
				st := &a.stacks[i]
				if g.Scope.Matches(st.ID, st.Project, st.Tags) && a.protected(st) {
					onProt = append(onProt, st.Project+"/"+st.Name)
				}
			}
			if len(onProt) > 0 {
				sort.Strings(onProt)
				a.rep.add("teams/write-on-protected", SevMedium, "teams", tm.Name,
					fmt.Sprintf("team %s has %s on %s, which covers protected stack(s) %s", tm.Name, g.Permission, scopeString(a, g.Scope), strings.Join(onProt, ", ")))
			}
			if g.Permission < gatehouse.PermAdmin {
				continue
			}
			for _, st := range prod {
				if !g.Scope.Matches(st.ID, st.Project, st.Tags) {
					continue
				}
				if !loaded {
					if members, err = a.tx.ListTeamMembers(tm.ID); err != nil {
						return err
					}
					loaded = true
				}
				for _, m := range members {
					if !a.admins[m.User.ID] {
						prodAdmin[m.User.Name] = append(prodAdmin[m.User.Name], st.Project+"/"+st.Name+" (team "+tm.Name+")")
					}
				}
			}
		}
	}
	for name, via := range prodAdmin {
		sort.Strings(via)
		a.rep.add("members/admin-on-production", SevMedium, "members", name,
			fmt.Sprintf("%s has admin on production stack(s): %s", name, strings.Join(via, ", ")))
	}
	return nil
}

func scopeString(a *assessor, sc gatehouse.Scope) string {
	if sc.StackID != 0 {
		for _, st := range a.stacks {
			if st.ID == sc.StackID {
				return "stack " + st.Project + "/" + st.Name
			}
		}
	}
	return sc.String()
}

func (a *assessor) tokens() error {
	ts, err := a.tx.ListTokens(gatehouse.TokenFilter{OrgID: a.org.ID})
	if err != nil {
		return err
	}
	for _, m := range a.mems {
		ps, err := a.tx.ListTokens(gatehouse.TokenFilter{Kind: gatehouse.TokenPersonal, UserID: m.User.ID})
		if err != nil {
			return err
		}
		for _, p := range ps {
			if p.OrgID == 0 || p.OrgID == a.org.ID {
				ts = append(ts, p)
			}
		}
	}
	seen := map[string]bool{}
	for i := range ts {
		t := &ts[i]
		if seen[t.ID] || !t.Live(a.now) || !t.Revoked.IsZero() || t.Issuer != "" {
			// Exchanged tokens are short-lived by design; tokens in a rotation's grace
			// period are on their way out.
			continue
		}
		seen[t.ID] = true
		subj := tokenSubject(t)
		if t.Expires.IsZero() {
			a.rep.add("tokens/never-expires", SevMedium, "tokens", subj, subj+" has no expiry")
		}
		last := t.LastUsed
		if last.IsZero() && a.now.Sub(t.Created) >= days(a.s.UnusedDays) {
			a.rep.add("tokens/unused", SevLow, "tokens", subj, fmt.Sprintf("%s was never used (created %s)", subj, t.Created.UTC().Format("2006-01-02")))
		} else if !last.IsZero() && a.now.Sub(last) >= days(a.s.UnusedDays) {
			a.rep.add("tokens/unused", SevLow, "tokens", subj, fmt.Sprintf("%s was last used %s (%d days ago)", subj, last.UTC().Format("2006-01-02"), int(a.now.Sub(last).Hours()/24)))
		}
		if a.now.Sub(t.Created) > days(a.s.RotationDays) {
			a.rep.add("tokens/older-than-rotation", SevMedium, "tokens", subj, fmt.Sprintf("%s was created %s, more than %d days ago", subj, t.Created.UTC().Format("2006-01-02"), a.s.RotationDays))
		}
		if t.Kind == gatehouse.TokenOrg && t.Role == gatehouse.RoleAdmin {
			a.rep.add("tokens/org-admin-token", SevHigh, "tokens", subj, subj+" acts as an organization admin")
		}
		if t.Kind == gatehouse.TokenPersonal {
			u, err := a.tx.GetTokenUsage(t.ID)
			if err != nil {
				return err
			}
			var from []string
			for _, c := range u.Clients {
				if c.LastSeen.Before(a.since) || c.OrgID != a.org.ID {
					// Uses in other organizations (or in none) are not this one's business:
					// the report must not show where a member works for others.
					continue
				}
				if c.CI != "" || IsCIAgent(c.Agent) {
					w := c.CI
					if w == "" {
						w = c.Agent
					}
					from = append(from, c.IP+" ("+w+")")
				}
			}
			if len(from) > 0 {
				sort.Strings(from)
				a.rep.add("tokens/personal-in-pipeline", SevHigh, "tokens", subj, subj+" was used from CI: "+strings.Join(from, ", "))
			}
		}
	}
	return nil
}

func tokenSubject(t *gatehouse.Token) string {
	kind := map[gatehouse.TokenKind]string{gatehouse.TokenPersonal: "personal", gatehouse.TokenTeam: "team", gatehouse.TokenOrg: "organization"}[t.Kind]
	return fmt.Sprintf("%s token %s (%s)", kind, t.Name, t.ID)
}

func (a *assessor) environments() error {
	if p := a.org.Settings.DefaultEnvironmentPermission; p >= gatehouse.EnvRead {
		sev := SevMedium
		if p >= gatehouse.EnvOpen {
			sev = SevHigh
		}
		a.rep.add("environments/readable-default", sev, "environments", a.org.Name,
			fmt.Sprintf("every member has %s on every environment by default", p))
	}
	// Opens by people in the period, from the audit log.
	opened := map[string]map[string]bool{} // env -> people
	for _, action := range []string{"env:open"} {
		var after int64
		for {
			evs, err := a.tx.ListAudit(gatehouse.AuditFilter{OrgID: a.org.ID, Since: a.since, Action: action, Outcome: gatehouse.OutcomeSuccess, AfterSeq: after, Ascending: true, Limit: 1000})
			if err != nil {
				return err
			}
			for _, e := range evs {
				after = e.Seq
				if e.ActorKind != "user" {
					continue
				}
				if e.TokenID != "" {
					if t, err := a.tx.GetToken(e.TokenID); err == nil && (t.Pipeline || t.Issuer != "") {
						continue
					}
				}
				if opened[e.Target] == nil {
					opened[e.Target] = map[string]bool{}
				}
				opened[e.Target][e.ActorName] = true
			}
			if len(evs) < 1000 {
				break
			}
		}
	}
	for env, people := range opened {
		var names []string
		for n := range people {
			names = append(names, n)
		}
		sort.Strings(names)
		a.rep.add("environments/opened-by-people", SevMedium, "environments", env,
			fmt.Sprintf("environment %s was opened by %s in the last %d days", env, strings.Join(names, ", "), a.s.PeriodDays))
	}
	return nil
}

// broadPattern reports whether a rule pattern admits (nearly) anything.
func broadPattern(p string) bool {
	p = strings.TrimSpace(p)
	return p == "" || strings.Trim(p, "*?") == "" || p == "repo:*" || strings.HasPrefix(p, "repo:*")
}

func (a *assessor) oidc() error {
	iss, err := a.tx.ListOIDCIssuers(a.org.ID)
	if err != nil {
		return err
	}
	for _, is := range iss {
		pol, err := a.tx.GetOIDCAuthPolicy(a.org.ID, is.ID)
		if err != nil {
			if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
				continue
			}
			return err
		}
		for i, p := range pol.Policies {
			if p.Decision != gatehouse.OIDCAllow {
				continue
			}
			subj := fmt.Sprintf("issuer %s policy %d", is.Name, i+1)
			narrow := false
			for k, v := range p.Rules {
				if k == "aud" || k == "iss" {
					continue // every ID token of the issuer for this organization has them
				}
				if !broadPattern(v) {
					narrow = true
				}
			}
			admin := false
			for _, perm := range p.AuthorizedPermissions {
				admin = admin || perm == "admin"
			}
			switch {
			case !narrow:
				a.rep.add("oidc/policy-too-broad", SevHigh, "oidc", subj,
					fmt.Sprintf("%s allows a %s token to every subject of %s (no rule narrows sub, repository or environment)", subj, p.TokenType, is.URL))
			case admin && strings.Contains(p.Rules["sub"], "*"):
				a.rep.add("oidc/policy-too-broad", SevMedium, "oidc", subj,
					fmt.Sprintf("%s may issue admin tokens to any subject matching %q", subj, p.Rules["sub"]))
			}
		}
	}
	return nil
}

func (a *assessor) audit(sinks []string) error {
	cursors, err := a.tx.ListExportCursors()
	if err != nil {
		return err
	}
	if len(sinks) == 0 && len(cursors) == 0 {
		a.rep.add("audit/no-export", SevMedium, "audit", "audit log", "no continuous export sink is configured: the log lives only in Gatehouse's database")
	}
	head, _, err := a.tx.AuditHead()
	if err != nil {
		return err
	}
	for _, c := range cursors {
		if lag := head - c.Seq; lag > a.s.ExportLagEvents {
			a.rep.add("audit/export-lagging", SevMedium, "audit", "sink "+c.Sink, fmt.Sprintf("sink %s is %d events behind the log (threshold %d)", c.Sink, lag, a.s.ExportLagEvents))
		}
	}
	var v AuditVerification
	if b, err := a.tx.GetMeta(MetaAuditVerified); err == nil {
		_ = json.Unmarshal(b, &v)
	} else if !gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return err
	}
	switch {
	case v.At.IsZero():
		a.rep.add("audit/not-verified", SevMedium, "audit", "audit log", "the audit chain was never verified through the server")
	case !v.OK:
		a.rep.add("audit/not-verified", SevHigh, "audit", "audit log", "the last verification of the audit chain ("+v.At.UTC().Format(time.RFC3339)+") FAILED")
	case a.now.Sub(v.At) > days(a.s.VerifyDays):
		a.rep.add("audit/not-verified", SevMedium, "audit", "audit log", fmt.Sprintf("the audit chain was last verified %s, more than %d days ago", v.At.UTC().Format("2006-01-02"), a.s.VerifyDays))
	}
	return nil
}

var anomalySeverity = map[string]Severity{
	AnomalyNewAddress: SevHigh, AnomalyDenialBurst: SevHigh, AnomalyPersonalCI: SevHigh,
	AnomalyOddHour: SevMedium, AnomalySpike: SevMedium,
}

func (a *assessor) anomalies() error {
	as, err := a.tx.ListAnomalies(a.org.ID, a.since, 1000)
	if err != nil {
		return err
	}
	for _, an := range as {
		subj := "token " + an.TokenID
		if t, err := a.tx.GetToken(an.TokenID); err == nil {
			subj = tokenSubject(t)
		}
		sev := anomalySeverity[an.Kind]
		if sev == "" {
			sev = SevMedium
		}
		a.rep.add("anomalies/"+an.Kind, sev, "anomalies", subj, fmt.Sprintf("%s (%s): %s", an.Window, subj, an.Detail))
	}
	return nil
}
