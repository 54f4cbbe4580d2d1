package httpapi

import (
	"encoding/csv"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
)

// The access review: every principal of an organization (members, teams, live organization
// and team tokens) against every stack and environment the caller may see, with the
// effective permission and why. Each cell is the answer of authz.Decide, through the same
// code as GET S/access (stackAccessOf) and the environment permission Decide uses
// (authz.EnvPermission): there is no second permission engine here.

// reviewEntry is one cell of the review.
type reviewEntry struct {
	PrincipalKind string `json:"principalKind"` // user, team, org-token, team-token
	Principal     string `json:"principal"`
	ResourceKind  string `json:"resourceKind"` // stack, environment
	Resource      string `json:"resource"`     // project/stack, project/environment
	Permission    string `json:"permission"`   // stacks: read, write, admin; environments: read, open, write, admin
	Decrypt       bool   `json:"decrypt"`      // stacks: may decrypt secrets; environments: may open
	Protected     bool   `json:"protected"`
	CanChange     bool   `json:"canChange"` // false when a protection rule keeps this principal to reading
	Via           string `json:"via"`
}

type reviewResource struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Protected bool   `json:"protected"`
}

type reviewPrincipal struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type accessReview struct {
	Org        string            `json:"org"`
	Generated  string            `json:"generated"`
	Principals []reviewPrincipal `json:"principals"`
	Resources  []reviewResource  `json:"resources"`
	Entries    []reviewEntry     `json:"entries"`
}

// reviewFilter narrows a review: principal and resource are substrings of the names; kind
// is user, team or token; min is the lowest permission listed (read, open, write, admin;
// open ranks between read and write, as for environments).
type reviewFilter struct {
	Principal, Resource, Kind, Min string
}

func reviewFilterOf(q url.Values) (reviewFilter, error) {
	f := reviewFilter{Principal: q.Get("principal"), Resource: q.Get("resource"), Kind: q.Get("kind"), Min: q.Get("min")}
	for name, v := range map[string]string{"principal": f.Principal, "resource": f.Resource} {
		if _, err := auditQueryText(name, v); err != nil {
			return f, err
		}
	}
	switch f.Kind {
	case "", "user", "team", "token":
	default:
		return f, gatehouse.Errorf(gatehouse.EINVALID, "kind must be user, team or token")
	}
	switch f.Min {
	case "", "read", "open", "write", "admin":
	default:
		return f, gatehouse.Errorf(gatehouse.EINVALID, "min must be read, open, write or admin")
	}
	return f, nil
}

func (f reviewFilter) query() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"principal": f.Principal, "resource": f.Resource, "kind": f.Kind, "min": f.Min} {
		if s != "" {
			v.Set(k, s)
		}
	}
	return v
}

var reviewRank = map[string]int{"read": 1, "open": 2, "write": 3, "admin": 4}

func (f reviewFilter) principal(p *principal) bool {
	if f.Kind != "" && !(f.Kind == p.Kind || f.Kind == "token" && strings.HasSuffix(p.Kind, "-token")) {
		return false
	}
	return f.Principal == "" || strings.Contains(strings.ToLower(p.Name), strings.ToLower(f.Principal))
}

func (f reviewFilter) resource(name string) bool {
	return f.Resource == "" || strings.Contains(strings.ToLower(name), strings.ToLower(f.Resource))
}

func (f reviewFilter) entry(e *reviewEntry) bool {
	if f.Min == "" {
		return true
	}
	return reviewRank[e.Permission] >= reviewRank[f.Min]
}

// accessReview computes the review of the request's organization for the caller.
func (rq *Request) accessReview(f reviewFilter) (*accessReview, error) {
	out := &accessReview{Org: rq.Org.Name, Generated: rq.s.cfg.Now().UTC().Format(time.RFC3339),
		Principals: []reviewPrincipal{}, Resources: []reviewResource{}, Entries: []reviewEntry{}}
	err := rq.View(func(tx gatehouse.Tx) error {
		ps, err := orgPrincipals(tx, rq.Org, rq.may(authz.OrgTeamRead))
		if err != nil {
			return err
		}
		var keep []principal
		for i := range ps {
			if f.principal(&ps[i]) {
				keep = append(keep, ps[i])
				out.Principals = append(out.Principals, reviewPrincipal{Kind: ps[i].Kind, Name: ps[i].Name})
			}
		}
		stacks, err := orgStacks(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		for i := range stacks {
			st := &stacks[i]
			name := st.Project + "/" + st.Name
			// Only the stacks whose access the caller may list (GET S/access).
			if !f.resource(name) || !authz.Decide(rq.Subject, authz.StackAccess, authz.Resource{Org: rq.Org, Stack: st}, rq.facts).Allow {
				continue
			}
			prot := stackProtected(rq.facts.Protections, st)
			out.Resources = append(out.Resources, reviewResource{Kind: "stack", Name: name, Protected: prot})
			for j := range keep {
				acc, ok := stackAccessOf(&keep[j], rq.Org, st)
				if !ok {
					continue
				}
				e := reviewEntry{PrincipalKind: acc.Kind, Principal: acc.Name, ResourceKind: "stack", Resource: name,
					Permission: acc.Permission, Decrypt: acc.Decrypt, Protected: prot, CanChange: acc.CanChange, Via: acc.Via}
				if f.entry(&e) {
					out.Entries = append(out.Entries, e)
				}
			}
		}
		envs, err := orgEnvironments(tx, rq.Org.ID)
		if err != nil {
			return err
		}
		for i := range envs {
			en := &envs[i]
			name := en.Project + "/" + en.Name
			if !f.resource(name) || !authz.Decide(rq.Subject, authz.EnvRead, authz.Resource{Org: rq.Org, Env: en}, rq.facts).Allow {
				continue
			}
			prot := false
			for _, p := range rq.facts.Protections {
				if p.MatchesEnv(en.ID, en.Project, en.Tags, true) {
					prot = true
				}
			}
			out.Resources = append(out.Resources, reviewResource{Kind: "environment", Name: name, Protected: prot})
			for j := range keep {
				p := &keep[j]
				res := authz.Resource{Org: rq.Org, Env: en}
				d := authz.Decide(p.Sub, authz.EnvRead, res, p.Facts)
				if !d.Allow {
					continue
				}
				perm, why := authz.EnvPermission(p.Sub, en, rq.Org, p.Facts)
				e := reviewEntry{PrincipalKind: p.Kind, Principal: p.Name, ResourceKind: "environment", Resource: name,
					Permission: perm.String(), Protected: prot, Via: why,
					Decrypt:   authz.Decide(p.Sub, authz.EnvOpen, res, p.Facts).Allow,
					CanChange: authz.Decide(p.Sub, authz.EnvWrite, res, p.Facts).Allow}
				if f.entry(&e) {
					out.Entries = append(out.Entries, e)
				}
			}
		}
		return nil
	})
	return out, err
}

// orgStacks lists every stack of an organization.
func orgStacks(tx gatehouse.Tx, orgID int64) ([]gatehouse.Stack, error) {
	var all []gatehouse.Stack
	cont := ""
	for {
		sts, next, err := tx.ListStacks(gatehouse.StackFilter{OrgIDs: []int64{orgID}, Continuation: cont, Limit: 500})
		if err != nil {
			return nil, err
		}
		all = append(all, sts...)
		if next == "" || len(sts) == 0 {
			return all, nil
		}
		cont = next
	}
}

// orgEnvironments lists every environment of an organization.
func orgEnvironments(tx gatehouse.Tx, orgID int64) ([]gatehouse.Environment, error) {
	var all []gatehouse.Environment
	cont := ""
	for {
		envs, next, err := tx.ListEnvironments(gatehouse.EnvFilter{OrgIDs: []int64{orgID}, Continuation: cont, Limit: 500})
		if err != nil {
			return nil, err
		}
		all = append(all, envs...)
		if next == "" || len(envs) == 0 {
			return all, nil
		}
		cont = next
	}
}

// getAccessReview is GET /api/orgs/{org}/access-review: the review as JSON, or as CSV with
// ?format=csv (or Accept: text/csv).
func (s *Server) getAccessReview(rq *Request) (any, error) {
	f, err := reviewFilterOf(rq.URL.Query())
	if err != nil {
		return nil, err
	}
	rv, err := rq.accessReview(f)
	if err != nil {
		return nil, err
	}
	format := rq.URL.Query().Get("format")
	if format == "" && strings.Contains(rq.Header.Get("Accept"), "text/csv") {
		format = "csv"
	}
	switch format {
	case "", "json":
		return rv, nil
	case "csv":
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "format must be json or csv")
	}
	h := rq.w.Header()
	secureHeaders(h)
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="access-review-`+rq.Org.Name+`.csv"`)
	h.Set("Cache-Control", "no-store")
	rq.w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(rq.w)
	_ = cw.Write([]string{"principal_kind", "principal", "resource_kind", "resource", "permission", "decrypt_or_open", "protected", "can_change", "via"})
	for _, e := range rv.Entries {
		_ = cw.Write([]string{e.PrincipalKind, csvSafe(e.Principal), e.ResourceKind, csvSafe(e.Resource), e.Permission,
			strconv.FormatBool(e.Decrypt), strconv.FormatBool(e.Protected), strconv.FormatBool(e.CanChange), csvSafe(e.Via)})
	}
	cw.Flush()
	rq.w = discardResponse{h: http.Header{}}
	return headOnly{}, nil
}

// csvSafe keeps a cell from being read as a formula by a spreadsheet.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
