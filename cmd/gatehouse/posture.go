package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/posture"
)

// `gatehouse token usage`, `gatehouse posture` and `gatehouse allowlist` (issue 17), through
// the API.

// newTokenUsageCmd is `gatehouse token usage ID`: which clients use the token, from where,
// on what; during a rotation's grace period, who still has to switch.
func newTokenUsageCmd(c *apiClient, base func() (string, error), org *string) *cobra.Command {
	return &cobra.Command{
		Use:   "usage ID",
		Short: "Who uses a token: clients (address, user agent, CI identity), stacks and environments, anomalies; during a rotation, who still uses the old token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			id, err := c.resolveTokenID(cmd, p, args[0])
			if err != nil {
				return err
			}
			path := "/api/user/tokens/" + url.PathEscape(id) + "/usage"
			if *org != "" {
				path = "/api/orgs/" + url.PathEscape(*org) + "/tokens/" + url.PathEscape(id) + "/usage"
			}
			var out httpapi.TokenUsageJSON
			if err := c.do(cmd, "GET", path, nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "Token %s (%s, %s): %d requests (%d denied), first seen %s, last seen %s; window %d days\n",
					oneLine(out.Name), out.TokenID, out.Kind, out.Requests, out.Denied, dash(out.FirstSeen), dash(out.LastSeen), out.WindowDays)
				if out.InGrace {
					fmt.Fprintf(w, "Rotating: the token stops working at %s.\n", out.Revoked)
					if out.Successor != nil {
						fmt.Fprintf(w, "Successor %s (%s) last used %s.\n", oneLine(out.Successor.Name), out.Successor.TokenID, dash(out.Successor.LastSeen))
					}
					if len(out.RemainingUsers) == 0 {
						fmt.Fprintln(w, "No client used the old token since the rotation began: it is safe to let it die (or revoke it now).")
					} else {
						fmt.Fprintf(w, "%d client(s) still use the old token:\n", len(out.RemainingUsers))
						clientsTable(w, out.RemainingUsers)
					}
					fmt.Fprintln(w)
				}
				fmt.Fprintln(w, "CLIENTS (these stop working if the token is revoked)")
				clientsTable(w, out.Clients)
				if out.OverflowClients > 0 {
					fmt.Fprintf(w, "(+%d more clients with %d requests not itemized: the inventory keeps a bounded number per token)\n", out.OverflowClients, out.OverflowRequests)
				}
				fmt.Fprintln(w, "\nTARGETS\tKIND\tREQUESTS\tLAST SEEN")
				for _, g := range out.Targets {
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", oneLine(g.Name), g.Kind, g.Requests, g.LastSeen)
				}
				if out.OverflowTargets > 0 {
					fmt.Fprintf(w, "(+%d more targets not itemized)\n", out.OverflowTargets)
				}
				if len(out.Anomalies) > 0 {
					fmt.Fprintln(w, "\nANOMALIES\tWINDOW\tDETAIL")
					for _, a := range out.Anomalies {
						fmt.Fprintf(w, "%s\t%s\t%s\n", a.Kind, a.Window, oneLine(a.Detail))
					}
				}
			})
		},
	}
}

func clientsTable(w *tabwriter.Writer, cs []httpapi.TokenClientJSON) {
	fmt.Fprintln(w, "ADDRESS\tUSER AGENT\tCI IDENTITY\tREQUESTS\tDENIED\tFIRST SEEN\tLAST SEEN")
	for _, c := range cs {
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", c.Address, oneLine(c.UserAgent), dash(oneLine(c.CI)), c.Requests, c.Denied, c.FirstSeen, c.LastSeen)
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newPostureCmd is `gatehouse posture --org ORG`.
func newPostureCmd() *cobra.Command {
	var org, format, failOn string
	var sarif bool
	cmd := &cobra.Command{
		Use:   "posture",
		Short: "The organization's security posture: members, teams, tokens, stacks, environments, OIDC, audit and anomalies, each finding with a severity and a fix",
		Long: `Runs the assess loop against an organization (administrators) and prints the findings,
most severe first, each with what to do about it.

  gatehouse posture --org acme                    a table
  gatehouse posture --org acme --json             the report as JSON
  gatehouse posture --org acme --sarif > p.sarif  SARIF 2.1.0 for code scanning dashboards
  gatehouse posture --org acme --fail-on high     exit status 3 when a finding is high (CI gate)

Thresholds (learning period, rotation period, production tag, ...) are per organization:
GET/PUT /api/orgs/ORG/posture/settings.`,
		Args: cobra.NoArgs,
	}
	c := addClientFlags(cmd)
	cmd.Flags().StringVar(&org, "org", "", "organization (required)")
	bindEnv(cmd.Flags(), "org", "GATEHOUSE_ORG")
	cmd.Flags().BoolVar(&sarif, "sarif", false, "print SARIF 2.1.0")
	bindEnv(cmd.Flags(), "sarif", "GATEHOUSE_POSTURE_SARIF")
	cmd.Flags().StringVar(&format, "format", "", "table, json or sarif (instead of --json / --sarif)")
	bindEnv(cmd.Flags(), "format", "GATEHOUSE_POSTURE_FORMAT")
	cmd.Flags().StringVar(&failOn, "fail-on", "", "exit with status 3 when a finding is at least this severe: high, medium or low")
	bindEnv(cmd.Flags(), "fail-on", "GATEHOUSE_POSTURE_FAIL_ON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if org == "" {
			return fmt.Errorf("--org is required")
		}
		var threshold posture.Severity
		if failOn != "" {
			s, err := posture.ParseSeverity(failOn)
			if err != nil {
				return fmt.Errorf("--fail-on: want high, medium or low")
			}
			threshold = s
		}
		switch {
		case format == "":
		case format == "json":
			c.json = true
		case format == "sarif":
			sarif = true
		case format == "table":
		default:
			return fmt.Errorf("--format: want table, json or sarif")
		}
		var rep posture.Report
		if err := c.do(cmd, "GET", "/api/orgs/"+url.PathEscape(org)+"/posture", nil, &rep); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		switch {
		case sarif:
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(posture.SARIF(&rep)); err != nil {
				return err
			}
		case c.json:
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			if err := enc.Encode(rep); err != nil {
				return err
			}
		default:
			if err := posture.WriteTable(out, &rep); err != nil {
				return err
			}
		}
		if threshold != "" && rep.Fails(threshold) {
			return exitError(3) // the report says why
		}
		return nil
	}
	return cmd
}

// newAllowListCmd is `gatehouse allowlist`.
func newAllowListCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "allowlist",
		Short: "Address allow-lists of an organization and its tokens, and named address ranges (administrators)",
		Long: `Requests from addresses not on an applicable allow-list are refused (403, audited).
An organization's list applies to its tokens and to personal tokens acting in it; a token's
list applies to that token. Entries are networks (10.0.0.0/8), addresses, or @NAME for a
named range defined once (e.g. a CI provider's published ranges):

  gatehouse allowlist range set github-actions 4.148.0.0/16 20.1.128.0/17 --org acme
  gatehouse allowlist set --org acme 203.0.113.0/24 @github-actions
  gatehouse allowlist set --org acme --token TOKEN_ID @github-actions
  gatehouse allowlist set --org acme --token TOKEN_ID          (no entries: remove the list)
  gatehouse allowlist ls --org acme

Changes take effect on every server process at the next request, and are audited.`,
	}
	c := addClientFlags(cmd)
	var org string
	cmd.PersistentFlags().StringVar(&org, "org", "", "organization (required)")
	bindEnv(cmd.PersistentFlags(), "org", "GATEHOUSE_ORG")
	need := func() error {
		if org == "" {
			return fmt.Errorf("--org is required")
		}
		return nil
	}
	ls := &cobra.Command{
		Use: "ls", Short: "List the organization's allow-lists and named ranges", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			var out httpapi.AllowListsJSON
			if err := c.do(cmd, "GET", "/api/orgs/"+url.PathEscape(org)+"/allowlists", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "LIST\tENTRIES")
				fmt.Fprintf(w, "organization\t%s\n", dash(strings.Join(out.Organization, " ")))
				for id, es := range out.Tokens {
					fmt.Fprintf(w, "token %s\t%s\n", id, strings.Join(es, " "))
				}
				for n, cs := range out.Ranges {
					fmt.Fprintf(w, "range @%s\t%s\n", n, strings.Join(cs, " "))
				}
			})
		},
	}
	var tokenID string
	var force bool
	set := &cobra.Command{
		Use: "set [ENTRY...]", Short: "Replace the organization's (or with --token, a token's) allow-list; no entries removes it",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(); err != nil {
				return err
			}
			path := "/api/orgs/" + url.PathEscape(org) + "/allowlist"
			if tokenID != "" {
				path = "/api/orgs/" + url.PathEscape(org) + "/tokens/" + url.PathEscape(tokenID) + "/allowlist"
			}
			if args == nil {
				args = []string{}
			}
			var out map[string]any
			if err := c.do(cmd, "PUT", path, map[string]any{"entries": args, "force": force}, &out); err != nil {
				return err
			}
			return c.done(cmd, out, "allow-list set: %s", dash(strings.Join(args, " ")))
		},
	}
	set.Flags().StringVar(&tokenID, "token", "", "the token whose list to set (organization and team tokens)")
	set.Flags().BoolVar(&force, "force", false, "set an organization list that does not permit your own address")
	rng := &cobra.Command{Use: "range", Short: "Named address ranges, referenced as @NAME"}
	var rforce bool
	rset := &cobra.Command{
		Use: "set NAME CIDR...", Short: "Create or replace a named range", Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(); err != nil {
				return err
			}
			var out map[string]any
			if err := c.do(cmd, "PUT", "/api/orgs/"+url.PathEscape(org)+"/ranges/"+url.PathEscape(args[0]), map[string]any{"cidrs": args[1:], "force": rforce}, &out); err != nil {
				return err
			}
			return c.done(cmd, out, "range @%s set", args[0])
		},
	}
	rset.Flags().BoolVar(&rforce, "force", false, "change a range the organization's list uses even if the list then no longer permits your own address")
	rrm := &cobra.Command{
		Use: "rm NAME", Short: "Delete a named range (not while a list uses it)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := need(); err != nil {
				return err
			}
			if err := c.do(cmd, "DELETE", "/api/orgs/"+url.PathEscape(org)+"/ranges/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"name": args[0], "status": "deleted"}, "range @%s deleted", args[0])
		},
	}
	rng.AddCommand(rset, rrm)
	cmd.AddCommand(ls, set, rng, newAllowListClearCmd(&org))
	return cmd
}

// newAllowListClearCmd is `gatehouse allowlist clear`: the recovery path of an organization
// whose allow-list locks out every admin. It works on the store directly (like bootstrap and
// migrate), not through the API, so it needs the server's --data-dir or --database; it
// removes the organization's list (or with --token, a token's), bumps the security epoch
// (running servers obey at their next request) and records an audit event.
func newAllowListClearCmd(org *string) *cobra.Command {
	var sf storeFlags
	var tokenID string
	cmd := &cobra.Command{
		Use:   "clear",
		Short: "Remove an organization's allow-list directly in the store (recovery from a lockout; operators)",
		Long: `clear removes the organization's address allow-list (or with --token, that token's)
directly in the data store, without the API: the way back in when a list (or a range it uses)
refuses every admin's address. Run it where the server's data is reachable:

  gatehouse allowlist clear --org acme --data-dir /var/lib/gatehouse
  gatehouse allowlist clear --org acme --database postgres://...

Running servers apply the change at their next request. The removal is audited
(action allowlist:cleared, actor "gatehouse allowlist clear").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if *org == "" {
				return fmt.Errorf("--org is required")
			}
			if sf.dataDir == "" && sf.database == "" {
				return fmt.Errorf("--data-dir or --database is required (this command works on the store, not through the API)")
			}
			ctx := cmd.Context()
			store, err := app.OpenStore(ctx, sf.config())
			if err != nil {
				return err
			}
			defer store.Close()
			var old []string
			err = store.Update(ctx, func(tx gatehouse.Tx) error {
				o, err := tx.GetOrgByName(*org)
				if err != nil {
					return err
				}
				if tokenID != "" {
					tk, err := tx.GetToken(tokenID)
					if err != nil || tk.OrgID != o.ID {
						return gatehouse.Errorf(gatehouse.ENOTFOUND, "token '%s' not found in organization %s", tokenID, o.Name)
					}
				}
				l, err := tx.GetAllowList(o.ID, tokenID)
				if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
					return nil
				}
				if err != nil {
					return err
				}
				old = l.Entries
				if err := tx.PutAllowList(&gatehouse.AllowList{OrgID: o.ID, TokenID: tokenID, ModifiedBy: "gatehouse allowlist clear"}); err != nil {
					return err
				}
				target := o.Name + "/allowlist"
				if tokenID != "" {
					target = o.Name + "/tokens/" + tokenID + "/allowlist"
				}
				return tx.AppendAudit(&gatehouse.AuditEvent{
					OrgID: o.ID, OrgName: o.Name, ActorKind: "system", ActorName: "gatehouse allowlist clear",
					Action: "allowlist:cleared", Target: target, Outcome: gatehouse.OutcomeSuccess,
					Details: map[string]string{"entries": strings.Join(old, ",")},
				})
			})
			if err != nil {
				return err
			}
			if old == nil {
				fmt.Fprintln(cmd.OutOrStdout(), "no allow-list to clear")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "allow-list cleared (was: %s)\n", strings.Join(old, " "))
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&tokenID, "token", "", "clear this token's list instead of the organization's")
	return cmd
}
