package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// newOIDCCmd is `gatehouse oidc`: the OIDC issuers an organization trusts for token
// exchange, and their authorization policies (Pulumi Cloud's REST API for both).
func newOIDCCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oidc",
		Short: "OIDC issuers and policies: pipelines trade their ID tokens for short-lived Gatehouse tokens",
		Long: `Pipelines (GitHub Actions, GitLab CI, ...) exchange the OIDC ID token their platform gives
each job for a short-lived Gatehouse token (pulumi login --oidc-token, or pulumi/auth-actions).
An organization registers the issuers it trusts and, per issuer, the policies that decide which
token a job may get. A new issuer has no policies: nothing is issued until a policy allows it.`,
	}
	c := addClientFlags(cmd)
	var org string
	cmd.PersistentFlags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "organization (env GATEHOUSE_ORG)")
	base := func() (string, error) {
		if org == "" {
			return "", fmt.Errorf("--org is required")
		}
		return "/api/orgs/" + url.PathEscape(org), nil
	}
	// resolve finds an issuer by ID or by name.
	resolve := func(cmd *cobra.Command, ref string) (*httpapi.OIDCIssuer, error) {
		p, err := base()
		if err != nil {
			return nil, err
		}
		var list oidcIssuerList
		if err := c.do(cmd, "GET", p+"/oidc/issuers", nil, &list); err != nil {
			return nil, err
		}
		for i, is := range list.OIDCIssuers {
			if is.ID == ref || strings.EqualFold(is.Name, ref) {
				return &list.OIDCIssuers[i], nil
			}
		}
		return nil, fmt.Errorf("organization %s has no OIDC issuer %q (see gatehouse oidc issuer list)", org, ref)
	}
	cmd.AddCommand(newOIDCIssuerCmd(c, base, resolve), newOIDCPolicyCmd(c, base, resolve))
	return cmd
}

type oidcIssuerList struct {
	OIDCIssuers []httpapi.OIDCIssuer `json:"oidcIssuers"`
}

// issuerKeys says where an issuer's signing keys come from.
func issuerKeys(is *httpapi.OIDCIssuer) string {
	if len(is.JWKS) > 0 {
		return "pinned JWKS"
	}
	return "discovery"
}

func oidcOrNever(s string) string {
	if s == "" {
		return "never"
	}
	return s
}

func newOIDCIssuerCmd(c *apiClient, base func() (string, error), resolve func(*cobra.Command, string) (*httpapi.OIDCIssuer, error)) *cobra.Command {
	cmd := &cobra.Command{Use: "issuer", Short: "OIDC issuers the organization trusts"}

	var name, issuerURL, jwksFile string
	var maxExp time.Duration
	var thumbprints []string
	add := &cobra.Command{
		Use:   "add",
		Short: "Register an issuer (its keys are discovered now, or pinned with --jwks-file)",
		Example: `  gatehouse oidc issuer add --org acme --name github --url https://token.actions.githubusercontent.com
  gatehouse oidc issuer add --org acme --name k8s --url https://kubernetes.default.svc --jwks-file jwks.json --max-expiration 1h`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			if name == "" || issuerURL == "" {
				return fmt.Errorf("--name and --url are required")
			}
			body := map[string]any{"name": name, "url": issuerURL}
			if maxExp != 0 {
				body["maxExpiration"] = int64(maxExp / time.Second)
			}
			if len(thumbprints) > 0 {
				body["thumbprints"] = thumbprints
			}
			if jwksFile != "" {
				b, err := readOIDCInput(cmd, jwksFile)
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return fmt.Errorf("%s is not JSON", jwksFile)
				}
				body["jwks"] = json.RawMessage(b)
			}
			var out httpapi.OIDCIssuer
			if err := c.do(cmd, "POST", p+"/oidc/issuers", body, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "registered issuer %s (%s)\n", out.Name, out.ID)
				fmt.Fprintln(w, "It has no policies yet, so it issues nothing: add some with gatehouse oidc policy set.")
			})
		},
	}
	add.Flags().StringVar(&name, "name", "", "a name for the issuer")
	add.Flags().StringVar(&issuerURL, "url", "", "the issuer URL: exactly the iss claim of its tokens")
	add.Flags().StringVar(&jwksFile, "jwks-file", "", "pin the issuer's JWKS from this file ('-' for stdin) instead of discovering it")
	add.Flags().DurationVar(&maxExp, "max-expiration", 0, "longest lifetime of tokens issued for this issuer (default 25h)")
	add.Flags().StringSliceVar(&thumbprints, "thumbprint", nil, "TLS certificate thumbprint (recorded for Pulumi Cloud compatibility; Gatehouse always verifies TLS)")

	list := &cobra.Command{
		Use: "list", Aliases: []string{"ls"}, Short: "List the organization's issuers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			var out oidcIssuerList
			if err := c.do(cmd, "GET", p+"/oidc/issuers", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tNAME\tURL\tKEYS\tMAX EXPIRATION\tLAST USED")
				for _, is := range out.OIDCIssuers {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", is.ID, is.Name, is.URL, issuerKeys(&is), time.Duration(is.MaxExpiration)*time.Second, oidcOrNever(is.LastUsed))
				}
			})
		},
	}

	show := &cobra.Command{
		Use: "show ISSUER", Short: "Show an issuer (by ID or name)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			is, err := resolve(cmd, args[0])
			if err != nil {
				return err
			}
			return c.print(cmd, is, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "id\t%s\n", is.ID)
				fmt.Fprintf(w, "name\t%s\n", is.Name)
				fmt.Fprintf(w, "url (iss)\t%s\n", is.URL)
				fmt.Fprintf(w, "keys\t%s\n", issuerKeys(is))
				fmt.Fprintf(w, "max expiration\t%s\n", time.Duration(is.MaxExpiration)*time.Second)
				fmt.Fprintf(w, "created\t%s\n", is.Created)
				fmt.Fprintf(w, "modified\t%s\n", is.Modified)
				fmt.Fprintf(w, "last used\t%s\n", oidcOrNever(is.LastUsed))
			})
		},
	}

	rm := &cobra.Command{
		Use: "rm ISSUER", Short: "Delete an issuer and its policies (tokens it issued stay valid until they expire or are revoked)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			is, err := resolve(cmd, args[0])
			if err != nil {
				return err
			}
			p, _ := base()
			return c.do(cmd, "DELETE", p+"/oidc/issuers/"+url.PathEscape(is.ID), nil, nil)
		},
	}
	cmd.AddCommand(add, list, show, rm)
	return cmd
}

// oidcPolicyOut is one policy (Pulumi Cloud's AuthPolicyDefinition, plus maxExpiration).
type oidcPolicyOut struct {
	Decision              string            `json:"decision"`
	TokenType             string            `json:"tokenType"`
	TeamName              string            `json:"teamName,omitempty"`
	UserLogin             string            `json:"userLogin,omitempty"`
	AuthorizedPermissions []string          `json:"authorizedPermissions"`
	Rules                 map[string]string `json:"rules"`
	MaxExpiration         int64             `json:"maxExpiration,omitempty"`
}

type oidcAuthPolicyOut struct {
	ID       string          `json:"id"`
	Version  int             `json:"version"`
	Created  string          `json:"created,omitempty"`
	Modified string          `json:"modified,omitempty"`
	Policies []oidcPolicyOut `json:"policies"`
}

func (p *oidcPolicyOut) target() string {
	switch p.TokenType {
	case "team":
		return "team " + p.TeamName
	case "personal":
		return "user " + p.UserLogin
	case "organization":
		for _, perm := range p.AuthorizedPermissions {
			if perm == "admin" {
				return "organization (admin allowed)"
			}
		}
		return "organization"
	case "":
		return "any token"
	}
	return p.TokenType
}

func (p *oidcPolicyOut) rules() string {
	keys := make([]string, 0, len(p.Rules))
	for k := range p.Rules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + p.Rules[k]
	}
	return strings.Join(parts, " ")
}

func newOIDCPolicyCmd(c *apiClient, base func() (string, error), resolve func(*cobra.Command, string) (*httpapi.OIDCIssuer, error)) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "An issuer's policies: which tokens its ID tokens may be exchanged for"}
	get := func(cmd *cobra.Command, ref string) (*httpapi.OIDCIssuer, *oidcAuthPolicyOut, error) {
		is, err := resolve(cmd, ref)
		if err != nil {
			return nil, nil, err
		}
		p, _ := base()
		var out oidcAuthPolicyOut
		if err := c.do(cmd, "GET", p+"/auth/policies/oidcissuers/"+url.PathEscape(is.ID), nil, &out); err != nil {
			return nil, nil, err
		}
		return is, &out, nil
	}
	printPolicies := func(cmd *cobra.Command, is *httpapi.OIDCIssuer, ap *oidcAuthPolicyOut) error {
		return c.print(cmd, ap, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "issuer %s, policy %s, version %d\n", is.Name, ap.ID, ap.Version)
			if len(ap.Policies) == 0 {
				fmt.Fprintln(w, "no policies: every exchange is refused")
				return
			}
			fmt.Fprintln(w, "\n#\tDECISION\tTOKEN\tMAX EXPIRATION\tRULES")
			for i, p := range ap.Policies {
				exp := "-"
				if p.MaxExpiration > 0 {
					exp = (time.Duration(p.MaxExpiration) * time.Second).String()
				}
				fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", i, p.Decision, p.target(), exp, p.rules())
			}
		})
	}

	list := &cobra.Command{
		Use: "list ISSUER", Aliases: []string{"ls", "show"}, Short: "Show an issuer's policies", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			is, ap, err := get(cmd, args[0])
			if err != nil {
				return err
			}
			return printPolicies(cmd, is, ap)
		},
	}

	var file string
	set := &cobra.Command{
		Use:   "set ISSUER --file FILE",
		Short: "Replace an issuer's policies with the list in FILE (JSON; '-' for stdin)",
		Long: `set replaces all of an issuer's policies. FILE holds {"policies": [...]} or just the list, each
policy as in Pulumi Cloud:

  {"decision": "allow", "tokenType": "team", "teamName": "production-deployers",
   "rules": {"sub": "repo:acme/infra:environment:production", "repository_id": "123456"}}

decision is allow or deny (deny wins; without an allow nothing is issued); tokenType is
organization (with "authorizedPermissions": ["admin"] to allow scope admin), team (teamName) or
personal (userLogin); rules map claims (nested: "kubernetes.io".pod.name) to exact values or
globs with * and ?; "maxExpiration" (seconds) caps the tokens the policy issues. An empty list
refuses every exchange.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if file == "" {
				return fmt.Errorf("--file is required")
			}
			b, err := readOIDCInput(cmd, file)
			if err != nil {
				return err
			}
			var body struct {
				Policies []json.RawMessage `json:"policies"`
			}
			if trimmed := strings.TrimSpace(string(b)); strings.HasPrefix(trimmed, "[") {
				err = json.Unmarshal(b, &body.Policies)
			} else {
				err = json.Unmarshal(b, &body)
			}
			if err != nil {
				return fmt.Errorf("%s: %v", file, err)
			}
			if body.Policies == nil {
				body.Policies = []json.RawMessage{}
			}
			is, cur, err := get(cmd, args[0])
			if err != nil {
				return err
			}
			p, _ := base()
			var out oidcAuthPolicyOut
			if err := c.do(cmd, "PATCH", p+"/auth/policies/"+url.PathEscape(cur.ID), body, &out); err != nil {
				return err
			}
			return printPolicies(cmd, is, &out)
		},
	}
	set.Flags().StringVarP(&file, "file", "f", "", "JSON file with the policies ('-' for stdin)")
	cmd.AddCommand(list, set)
	return cmd
}

// readOIDCInput reads a file, or stdin for "-".
func readOIDCInput(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		return io.ReadAll(io.LimitReader(cmd.InOrStdin(), 1<<20))
	}
	return os.ReadFile(name)
}
