package oidc_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/oidc"
)

func TestParseClaimPath(t *testing.T) {
	good := map[string]oidc.ClaimPath{
		"sub":                      {"sub"},
		"repository_id":            {"repository_id"},
		`"kubernetes.io".pod.name`: {"kubernetes.io", "pod", "name"},
		`a."b.c"`:                  {"a", "b.c"},
		`"say \"hi\"".x`:           {`say "hi"`, "x"},
		`"back\\slash"`:            {`back\slash`},
	}
	for in, want := range good {
		got, err := oidc.ParseClaimPath(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseClaimPath(%q) = %q, %v; want %q", in, got, err, want)
		}
		// String is the inverse.
		again, err := oidc.ParseClaimPath(got.String())
		if err != nil || !reflect.DeepEqual(again, want) {
			t.Errorf("round trip of %q via %q = %q, %v", in, got.String(), again, err)
		}
	}
	for _, in := range []string{"", ".", "a.", ".a", "a..b", `"a`, `"a"b`, `a"b"`, `""`, strings.Repeat("a", oidc.MaxPatternLen+1)} {
		if p, err := oidc.ParseClaimPath(in); err == nil {
			t.Errorf("ParseClaimPath(%q) = %q, want an error", in, p)
		}
	}
}

func TestPatternMatch(t *testing.T) {
	cases := []struct {
		pattern, value string
		want           bool
	}{
		{"repo:octo-org/app:ref:refs/heads/main", "repo:octo-org/app:ref:refs/heads/main", true},
		{"repo:octo-org/app:ref:refs/heads/main", "repo:octo-org/app:ref:refs/heads/mainx", false},
		{"repo:octo-org/app:ref:refs/heads/main", "xrepo:octo-org/app:ref:refs/heads/main", false},
		// Globs are anchored: a trailing * after the separator cannot widen the repository.
		{"repo:octo-org/app:*", "repo:octo-org/app:environment:production", true},
		{"repo:octo-org/app:*", "repo:octo-org/app:pull_request", true},
		{"repo:octo-org/app:*", "repo:octo-org/app-evil:ref:refs/heads/main", false},
		{"repo:octo-org/app:*", "repo:octo-org/app", false},
		{"repo:octo-org/app:*", "repo:evil/x:repo:octo-org/app:y", false},
		// The classic mistake: no separator before the star admits look-alike repositories.
		{"repo:octo-org/app*", "repo:octo-org/app-evil:ref:refs/heads/main", true},
		// GitHub's ID-bearing sub (2026): owner-ID and repo-ID suffixes are part of the value.
		{"repo:octocat-123456/my-repo-456789:ref:refs/heads/main", "repo:octocat-123456/my-repo-456789:ref:refs/heads/main", true},
		{"repo:octocat-123456/my-repo-456789:*", "repo:octocat-123456/my-repo-456789:environment:prod", true},
		{"repo:octocat-123456/my-repo-456789:*", "repo:octocat-123456-9/my-repo-456789:environment:prod", false},
		{"repo:octocat-123456/my-repo-456789:*", "repo:octocat/my-repo:environment:prod", false},
		{"repo:octocat/my-repo:*", "repo:octocat-123456/my-repo-456789:environment:prod", false},
		// ? is one character or none (Pulumi Cloud's meaning).
		{"refs/heads/release-?", "refs/heads/release-1", true},
		{"refs/heads/release-?", "refs/heads/release-", true},
		{"refs/heads/release-?", "refs/heads/release-12", false},
		// . is literal.
		{"org/my.repo", "org/myXrepo", false},
		{"org/my.repo", "org/my.repo", true},
		// Escapes.
		{`a\*b`, "a*b", true},
		{`a\*b`, "axxb", false},
		{"*", "", true},
		{"", "", true},
		{"", "x", false},
		{"a**b", "ab", true},
		{"*a*a*a*a*a*a*a*a*b", strings.Repeat("a", 5000), false}, // no exponential backtracking
		{"héllo-*", "héllo-wörld", true},
	}
	for _, c := range cases {
		p, err := oidc.ParsePattern(c.pattern)
		if err != nil {
			t.Fatalf("ParsePattern(%q): %v", c.pattern, err)
		}
		if got := p.Match(c.value); got != c.want {
			t.Errorf("%q matches %q = %v, want %v", c.pattern, c.value, got, c.want)
		}
	}
	if _, err := oidc.ParsePattern(`trailing\`); err == nil {
		t.Error("a trailing backslash must be refused")
	}
}

func claims(t *testing.T, js string) oidc.Claims {
	t.Helper()
	c, err := oidc.ParseClaims([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClaimValues(t *testing.T) {
	c := claims(t, `{"sub":"s","aud":["a","b"],"repository_id":"123","run":12345678901234567,"flag":true,
		"kubernetes.io":{"pod":{"name":"web-1"}},"obj":{"x":1}}`)
	for path, want := range map[string][]string{
		"sub": {"s"}, "aud": {"a", "b"}, "repository_id": {"123"}, "run": {"12345678901234567"}, "flag": {"true"},
		`"kubernetes.io".pod.name`: {"web-1"}, "kubernetes.io": nil, "obj": nil, "missing": nil, "sub.x": nil,
	} {
		p, err := oidc.ParseClaimPath(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.Values(p); !reflect.DeepEqual(got, want) {
			t.Errorf("Values(%s) = %q, want %q", path, got, want)
		}
	}
}

func allow(tokenType, name string, rules map[string]string) gatehouse.OIDCPolicy {
	p := gatehouse.OIDCPolicy{Decision: "allow", TokenType: tokenType, Rules: rules}
	switch tokenType {
	case "team":
		p.TeamName = name
	case "personal":
		p.UserLogin = name
	}
	return p
}

func TestNormalizePolicies(t *testing.T) {
	sub := map[string]string{"sub": "repo:acme/app:*"}
	good := []gatehouse.OIDCPolicy{
		{Decision: "Allow", TokenType: "org", Rules: sub, AuthorizedPermissions: []string{"Admin"}},
		allow("team", "dev", sub),
		allow("personal", "alice", map[string]string{"repository_id": "42"}),
		{Decision: "deny", Rules: map[string]string{"event_name": "pull_request"}},
		{Decision: "deny"}, // a kill switch
		{Decision: "allow", TokenType: "team", TeamName: "dev", Rules: sub, MaxExpiration: time.Hour},
	}
	if err := oidc.NormalizePolicies(good); err != nil {
		t.Fatal(err)
	}
	if good[0].Decision != "allow" || good[0].TokenType != "organization" || good[0].AuthorizedPermissions[0] != "admin" {
		t.Fatalf("not normalized: %+v", good[0])
	}
	bad := map[string]gatehouse.OIDCPolicy{
		"decision":              {Decision: "maybe", TokenType: "team", TeamName: "dev", Rules: sub},
		"token type":            {Decision: "allow", TokenType: "robot", Rules: sub},
		"runner":                {Decision: "allow", TokenType: "runner", Rules: sub},
		"allow without type":    {Decision: "allow", Rules: sub},
		"team without name":     allow("team", "", sub),
		"user without login":    allow("personal", "", sub),
		"team name on org":      {Decision: "allow", TokenType: "organization", TeamName: "x", Rules: sub},
		"admin on team":         {Decision: "allow", TokenType: "team", TeamName: "dev", AuthorizedPermissions: []string{"admin"}, Rules: sub},
		"unknown permission":    {Decision: "allow", TokenType: "organization", AuthorizedPermissions: []string{"root"}, Rules: sub},
		"no rules":              allow("team", "dev", nil),
		"aud only":              allow("team", "dev", map[string]string{"aud": "urn:pulumi:org:acme"}),
		"wildcard sub":          allow("team", "dev", map[string]string{"sub": "*", "aud": "urn:pulumi:org:acme"}),
		"bad path":              allow("team", "dev", map[string]string{`"unterminated`: "x"}),
		"bad pattern":           allow("team", "dev", map[string]string{"sub": `x\`}),
		"lifetime too long":     {Decision: "allow", TokenType: "team", TeamName: "dev", Rules: sub, MaxExpiration: 26 * time.Hour},
		"lifetime too short":    {Decision: "allow", TokenType: "team", TeamName: "dev", Rules: sub, MaxExpiration: time.Second},
		"user login on team":    {Decision: "deny", TokenType: "team", UserLogin: "x"},
		"team name on personal": {Decision: "deny", TokenType: "personal", TeamName: "x"},
	}
	for name, p := range bad {
		if err := oidc.NormalizePolicies([]gatehouse.OIDCPolicy{p}); !gatehouse.IsCode(err, gatehouse.EINVALID) {
			t.Errorf("%s: got %v, want EINVALID", name, err)
		}
	}
	many := make([]gatehouse.OIDCPolicy, oidc.MaxPolicies+1)
	for i := range many {
		many[i] = allow("team", "dev", sub)
	}
	if err := oidc.NormalizePolicies(many); err == nil {
		t.Error("more than MaxPolicies policies must be refused")
	}
}

func TestEvaluate(t *testing.T) {
	gh := claims(t, `{"iss":"https://token.actions.githubusercontent.com","aud":"urn:pulumi:org:acme",
		"sub":"repo:acme/infra:environment:production","repository":"acme/infra","repository_id":"42",
		"environment":"production","ref":"refs/heads/main","event_name":"push",
		"job_workflow_ref":"acme/infra/.github/workflows/deploy.yml@refs/heads/main"}`)
	prodTeam := oidc.Target{TokenType: "team", Team: "production-deployers"}
	ps := []gatehouse.OIDCPolicy{
		allow("team", "dev-deployers", map[string]string{"sub": "repo:acme/infra:environment:dev"}),
		allow("team", "production-deployers", map[string]string{"sub": "repo:acme/infra:environment:production", "repository_id": "42"}),
		allow("organization", "", map[string]string{"repository": "acme/tools"}),
	}
	if err := oidc.NormalizePolicies(ps); err != nil {
		t.Fatal(err)
	}

	d := oidc.Evaluate(ps, gh, prodTeam)
	if !d.Allow || d.Index != 1 || d.Policy != &ps[1] {
		t.Fatalf("production team: %+v", d)
	}
	// Team names compare case-insensitively, like the store's.
	if d := oidc.Evaluate(ps, gh, oidc.Target{TokenType: "team", Team: "Production-Deployers"}); !d.Allow {
		t.Fatalf("case-insensitive team: %+v", d)
	}
	// The same job may not get the dev team's token, an organization token, or a personal one.
	for _, tg := range []oidc.Target{
		{TokenType: "team", Team: "dev-deployers"},
		{TokenType: "team", Team: "other"},
		{TokenType: "organization"},
		{TokenType: "personal", User: "alice"},
	} {
		if d := oidc.Evaluate(ps, gh, tg); d.Allow || d.Index != -1 || !strings.Contains(d.Reason, "deny by default") {
			t.Errorf("%v: %+v, want deny by default", tg, d)
		}
	}
	// Policy mismatch: another repository with the same environment name.
	other := claims(t, `{"sub":"repo:acme/infra-fork:environment:production","repository_id":"43"}`)
	if d := oidc.Evaluate(ps, other, prodTeam); d.Allow {
		t.Fatalf("fork allowed: %+v", d)
	}
	// All rules must match: right sub, wrong repository_id (a recycled name).
	recycled := claims(t, `{"sub":"repo:acme/infra:environment:production","repository_id":"999"}`)
	if d := oidc.Evaluate(ps, recycled, prodTeam); d.Allow {
		t.Fatalf("recycled repository allowed: %+v", d)
	}
	// No claims: nothing matches.
	if d := oidc.Evaluate(ps, oidc.Claims{}, prodTeam); d.Allow {
		t.Fatal("empty claims allowed")
	}
	// No policies: deny by default.
	if d := oidc.Evaluate(nil, gh, prodTeam); d.Allow {
		t.Fatal("no policies allowed")
	}

	// Deny wins, wherever it is in the list.
	for _, deny := range []gatehouse.OIDCPolicy{
		{Decision: "deny", Rules: map[string]string{"event_name": "push"}},                                   // every token type
		{Decision: "deny", TokenType: "team", Rules: map[string]string{"ref": "refs/heads/*"}},               // every team
		{Decision: "deny", TokenType: "team", TeamName: "production-deployers"},                              // this team, any claims
		{Decision: "deny", Rules: map[string]string{`job_workflow_ref`: "acme/infra/.github/workflows/*@*"}}, // a workflow
	} {
		for _, at := range []int{0, len(ps)} {
			withDeny := append(append(append([]gatehouse.OIDCPolicy{}, ps[:at]...), deny), ps[at:]...)
			if err := oidc.NormalizePolicies(withDeny); err != nil {
				t.Fatal(err)
			}
			d := oidc.Evaluate(withDeny, gh, prodTeam)
			if d.Allow || d.Index != at || d.Policy.Decision != "deny" {
				t.Errorf("deny %+v at %d: %+v", deny, at, d)
			}
		}
	}
	// A deny scoped to another team or another token type does not apply.
	for _, deny := range []gatehouse.OIDCPolicy{
		{Decision: "deny", TokenType: "team", TeamName: "dev-deployers"},
		{Decision: "deny", TokenType: "organization"},
		{Decision: "deny", Rules: map[string]string{"event_name": "pull_request"}},
	} {
		withDeny := append([]gatehouse.OIDCPolicy{deny}, ps...)
		if d := oidc.Evaluate(withDeny, gh, prodTeam); !d.Allow {
			t.Errorf("unrelated deny %+v refused: %+v", deny, d)
		}
	}

	// Organization tokens: admin only when the policy authorizes it.
	tools := claims(t, `{"sub":"repo:acme/tools:ref:refs/heads/main","repository":"acme/tools"}`)
	if d := oidc.Evaluate(ps, tools, oidc.Target{TokenType: "organization"}); !d.Allow {
		t.Fatalf("org member token: %+v", d)
	}
	if d := oidc.Evaluate(ps, tools, oidc.Target{TokenType: "organization", Admin: true}); d.Allow {
		t.Fatalf("admin without authorizedPermissions: %+v", d)
	}
	ps[2].AuthorizedPermissions = []string{"admin"}
	if d := oidc.Evaluate(ps, tools, oidc.Target{TokenType: "organization", Admin: true}); !d.Allow {
		t.Fatalf("admin with authorizedPermissions: %+v", d)
	}

	// Nested claims and list-valued claims.
	k8s := claims(t, `{"sub":"system:serviceaccount:ci:deployer","aud":["urn:pulumi:org:acme","other"],
		"kubernetes.io":{"namespace":"ci","pod":{"name":"runner-7"}}}`)
	kps := []gatehouse.OIDCPolicy{allow("personal", "robot", map[string]string{
		`"kubernetes.io".namespace`: "ci", `"kubernetes.io".pod.name`: "runner-?", "aud": "urn:pulumi:org:acme",
	})}
	if err := oidc.NormalizePolicies(kps); err != nil {
		t.Fatal(err)
	}
	if d := oidc.Evaluate(kps, k8s, oidc.Target{TokenType: "personal", User: "robot"}); !d.Allow {
		t.Fatalf("nested claims: %+v", d)
	}
	k8s["kubernetes.io"].(map[string]any)["namespace"] = "default"
	if d := oidc.Evaluate(kps, k8s, oidc.Target{TokenType: "personal", User: "robot"}); d.Allow {
		t.Fatalf("nested claim mismatch allowed: %+v", d)
	}
}

func TestLifetime(t *testing.T) {
	h := time.Hour
	for _, c := range []struct{ req, iss, pol, want time.Duration }{
		{0, 0, 0, 2 * h},
		{h, 0, 0, h},
		{48 * h, 0, 0, 25 * h},
		{0, h, 0, h},
		{0, 3 * h, 30 * time.Minute, 30 * time.Minute},
		{10 * h, 3 * h, 5 * h, 3 * h},
		{-5, 0, 0, 2 * h},
	} {
		if got := oidc.Lifetime(c.req, c.iss, c.pol); got != c.want {
			t.Errorf("Lifetime(%v, %v, %v) = %v, want %v", c.req, c.iss, c.pol, got, c.want)
		}
	}
}

// TestPolicyMustNameOwner: an allow policy must name whose workload it admits; a pattern that
// is only wildcards, or a wildcard where the owner goes, names no one.
func TestPolicyMustNameOwner(t *testing.T) {
	for _, tc := range []struct {
		claim, pattern string
		ok             bool
	}{
		// Named: exact values, or wildcards after a written-out owner.
		{"sub", "repo:acme/infra:ref:refs/heads/main", true},
		{"sub", "repo:acme/infra:*", true},
		{"sub", "repo:acme/*", true},
		{"sub", "repo:acme-1234/infra-5678:environment:production", true},
		{"sub", "project_path:platform/*:ref_type:branch:ref:main", true},
		{"sub", "system:serviceaccount:ci:*", true},
		{"sub", "system:serviceaccount:ci:deployer", true},
		{"sub", "org/0b1c2d3e/project/*", true},
		{"sub", `\*`, true}, // a literal star: exactly the value "*"
		{"repository", "acme/tools", true},
		{"repository", "acme/*", true},
		{"repository_id", "456789", true},
		{"repository_owner", "acme", true},
		{`"kubernetes.io".namespace`, "ci", true},
		// GitHub custom sub templates that begin with an owner claim.
		{"sub", "repository_owner:acme:*", true},
		{"sub", "repository_owner_id:1234:environment:production", true},
		{"sub", "repository_id:456789:*", true},
		{"sub", "repository:acme/infra:*", true},
		{"sub", "4f1c2d3e-5a6b-7c8d-9e0f-a1b2c3d4e5f6", true}, // an object ID (Azure, Google)
		{"sub", "sc://acme/infra/deploy", true},               // Azure DevOps
		{"repository_owner_id", "1234", true},
		{"project_path", "platform/infra", true},
		{"namespace_path", "platform", true},
		{"namespace_id", "42", true},
		{"project_id", "7", true},
		{`"oidc.circleci.com/project-id"`, "0b1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff", true},
		{"tid", "72f988bf-86f1-41af-91ab-2d7cd011db47", true},
		// Not named: only wildcards, or a wildcard in the owner's place.
		{"sub", "*", false},
		{"sub", "**", false},
		{"sub", "?*", false},
		{"sub", "*:*", false},
		{"sub", "repo:*", false},
		{"sub", "repo:*:*", false},
		{"sub", "repo:*:ref:refs/heads/main", false},
		{"sub", "repo:*/infra:*", false},
		{"sub", "repo:acme*/infra:*", false},
		{"sub", "repo:?cme/infra:*", false},
		{"sub", "system:serviceaccount:*:deployer", false},
		{"sub", "project_path:*", false},
		{"sub", "org/*/project/*", false},
		{"sub", "*:acme/infra:*", false},
		{"repository", "*/infra", false},
		{"repository", "*", false},
		{"repository_owner", "acme*", false},
		{"email", "*@example.com", false},
		{"sub", "system:*", false}, // every service account of the cluster
		{"sub", "system:serviceaccount:*", false},
		{"sub", "repository_owner:*", false},
		{"sub", "repository_owner_id:*", false},
		{"sub", "repository_owner:acme*", false},
		{"sub", "x?:*", false},
		{"namespace_path", "*", false},
		{`"kubernetes.io".namespace`, "*", false},
		// Claims that say what ran, not whose it is, name no one even when exact.
		{"aud", "urn:pulumi:org:acme", false},
		{"ref", "refs/heads/main", false},
		{"environment", "production", false},
		{"event_name", "push", false},
		{"runner_environment", "github-hosted", false},
		{"repository_visibility", "public", false},
		{"actor", "alice", false},
		{"workflow", "deploy", false},
		// A public reusable workflow may be called from any repository.
		{"job_workflow_ref", "acme/infra/.github/workflows/deploy.yml@*", false},
		{"job_workflow_ref", "acme/infra/.github/workflows/deploy.yml@refs/heads/main", false},
		// Subs that a GitHub custom template gives any repository, even written out.
		{"sub", "environment:production", false},
		{"sub", "ref:refs/heads/main", false},
		{"sub", "context:*", false},
		{"sub", "job_workflow_ref:acme/infra/.github/workflows/deploy.yml@refs/heads/main", false},
		{"sub", "workflow:deploy:environment:production", false},
		{"sub", "pull_request", false},
		{"sub", "*:repo:acme/infra:*", false},
	} {
		ps := []gatehouse.OIDCPolicy{allow("team", "dev", map[string]string{tc.claim: tc.pattern, "aud": "urn:pulumi:org:acme"})}
		err := oidc.NormalizePolicies(ps)
		if tc.ok && err != nil {
			t.Errorf("%s %q refused: %v", tc.claim, tc.pattern, err)
		}
		if !tc.ok {
			if !gatehouse.IsCode(err, gatehouse.EINVALID) {
				t.Errorf("%s %q accepted, want EINVALID", tc.claim, tc.pattern)
			} else if msg := gatehouse.ErrorMessage(err); !strings.Contains(msg, "name") || !strings.Contains(msg, "repo:acme/infra:*") {
				t.Errorf("%s %q: the message does not say what to name: %s", tc.claim, tc.pattern, msg)
			}
		}
		// Deny policies may be as broad as they like.
		deny := []gatehouse.OIDCPolicy{{Decision: "deny", Rules: map[string]string{tc.claim: tc.pattern}}}
		if err := oidc.NormalizePolicies(deny); err != nil {
			t.Errorf("deny %s %q: %v", tc.claim, tc.pattern, err)
		}
	}
	// One naming rule is enough next to broad ones.
	ps := []gatehouse.OIDCPolicy{allow("team", "dev", map[string]string{"sub": "repo:*", "repository_id": "42"})}
	if err := oidc.NormalizePolicies(ps); err != nil {
		t.Errorf("repo:* next to repository_id: %v", err)
	}
	// A policy stored before the check fails closed at evaluation.
	for _, tc := range []struct {
		rules  map[string]string
		claims string
	}{
		{map[string]string{"sub": "system:*"}, `{"sub":"system:serviceaccount:attacker-ns:default"}`},
		{map[string]string{"sub": "repository_owner:*"}, `{"sub":"repository_owner:evil"}`},
		{map[string]string{"sub": "environment:production"}, `{"sub":"environment:production"}`},
		{map[string]string{"repository_visibility": "public"}, `{"repository_visibility":"public","sub":"repo:evil/x:ref:refs/heads/main"}`},
		{map[string]string{"sub": "repo:*"}, `{"sub":"repo:evil/x"}`},
		{map[string]string{"sub": "project_path:*"}, `{"sub":"project_path:evil/x:ref_type:branch:ref:main"}`},
		{map[string]string{"sub": "x?:*"}, `{"sub":"x:y"}`},
		{map[string]string{"job_workflow_ref": "acme/infra/.github/workflows/deploy.yml@refs/heads/main"},
			`{"sub":"repo:evil/x:ref:refs/heads/main","job_workflow_ref":"acme/infra/.github/workflows/deploy.yml@refs/heads/main"}`},
	} {
		p := gatehouse.OIDCPolicy{Decision: "allow", TokenType: "organization", Rules: tc.rules}
		if err := oidc.NormalizePolicy(&p); !gatehouse.IsCode(err, gatehouse.EINVALID) {
			t.Errorf("allow %v accepted (%v), want EINVALID", tc.rules, err)
		}
		if d := oidc.Evaluate([]gatehouse.OIDCPolicy{p}, claims(t, tc.claims), oidc.Target{TokenType: "organization"}); d.Allow {
			t.Errorf("stored allow %v admits %s", tc.rules, tc.claims)
		}
	}
	stored := []gatehouse.OIDCPolicy{{Decision: "allow", TokenType: "team", TeamName: "dev", Rules: map[string]string{"sub": "repo:*"}}}
	c := claims(t, `{"sub":"repo:evil/x:ref:refs/heads/main"}`)
	if d := oidc.Evaluate(stored, c, oidc.Target{TokenType: "team", Team: "dev"}); d.Allow || !strings.Contains(d.Reason, "names no owner") {
		t.Fatalf("a stored repo:* policy: %+v", d)
	}
}
