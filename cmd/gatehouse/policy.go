package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// gatehouse policy: policy packs, policy groups, approved providers and policy results
// (package policy). Publishing a pack is the stock CLI's `pulumi policy publish`.

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Policy as code: packs, groups that require them, approved providers, results"}
	c := addClientFlags(cmd)
	orgDo := orgFlag(cmd, c)
	cmd.AddCommand(newPolicyPackCmd(c, orgDo), newPolicyGroupCmd(c, orgDo), newPolicyProvidersCmd(c, orgDo), newPolicyResultsCmd(c, orgDo))
	return cmd
}

type orgCall func(cmd *cobra.Command, method, suffix string, body, out any) error

func newPolicyPackCmd(c *apiClient, orgDo orgCall) *cobra.Command {
	cmd := &cobra.Command{Use: "pack", Short: "Published policy packs (publish with `pulumi policy publish ORG`)"}
	ls := &cobra.Command{
		Use: "ls", Short: "List policy packs and their versions", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				PolicyPacks []struct {
					Name        string   `json:"name"`
					DisplayName string   `json:"displayName"`
					VersionTags []string `json:"versionTags"`
				} `json:"policyPacks"`
			}
			if err := orgDo(cmd, "GET", "/policypacks", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tDISPLAY NAME\tVERSIONS")
				for _, p := range out.PolicyPacks {
					fmt.Fprintf(w, "%s\t%s\t%s\n", p.Name, p.DisplayName, strings.Join(p.VersionTags, ", "))
				}
			})
		},
	}
	rm := &cobra.Command{
		Use: "rm PACK [VERSION]", Short: "Remove a pack version (or every version); refused while a group enables it", Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			suffix := "/policypacks/" + url.PathEscape(args[0])
			if len(args) == 2 {
				suffix += "/versions/" + url.PathEscape(args[1])
			}
			if err := orgDo(cmd, "DELETE", suffix, nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"removed": strings.Join(args, "@")}, "removed policy pack %s", strings.Join(args, " "))
		},
	}
	cmd.AddCommand(ls, rm)
	return cmd
}

func newPolicyGroupCmd(c *apiClient, orgDo orgCall) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Policy groups: the stacks (by name, project or tag) that must run which packs"}
	groupPath := func(name string) string { return "/policygroups/" + url.PathEscape(name) }
	patch := func(cmd *cobra.Command, group string, body map[string]any) error {
		return orgDo(cmd, "PATCH", groupPath(group), body, nil)
	}
	ls := &cobra.Command{
		Use: "ls", Short: "List policy groups", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out struct {
				PolicyGroups []struct {
					Name                  string `json:"name"`
					IsOrgDefault          bool   `json:"isOrgDefault"`
					NumStacks             int    `json:"numStacks"`
					NumEnabledPolicyPacks int    `json:"numEnabledPolicyPacks"`
				} `json:"policyGroups"`
			}
			if err := orgDo(cmd, "GET", "/policygroups", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "NAME\tDEFAULT\tSTACKS\tPACKS")
				for _, g := range out.PolicyGroups {
					fmt.Fprintf(w, "%s\t%v\t%d\t%d\n", g.Name, g.IsOrgDefault, g.NumStacks, g.NumEnabledPolicyPacks)
				}
			})
		},
	}
	show := &cobra.Command{
		Use: "show GROUP", Short: "Show a group's selectors, stacks and packs", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Name      string              `json:"name"`
				Selectors []map[string]string `json:"selectors"`
				Stacks    []struct {
					Name           string `json:"name"`
					RoutingProject string `json:"routingProject"`
				} `json:"stacks"`
				AppliedPolicyPacks []struct {
					Name       string `json:"name"`
					VersionTag string `json:"versionTag"`
				} `json:"appliedPolicyPacks"`
			}
			if err := orgDo(cmd, "GET", groupPath(args[0]), nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "KIND\tVALUE")
				for _, s := range out.Selectors {
					for k, v := range s {
						fmt.Fprintf(w, "selector\t%s %s\n", k, v)
					}
				}
				for _, s := range out.Stacks {
					fmt.Fprintf(w, "stack\t%s/%s\n", s.RoutingProject, s.Name)
				}
				for _, p := range out.AppliedPolicyPacks {
					v := p.VersionTag
					if v == "" {
						v = "newest"
					}
					fmt.Fprintf(w, "pack\t%s %s\n", p.Name, v)
				}
			})
		},
	}
	create := &cobra.Command{
		Use: "create GROUP", Short: "Create a policy group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "POST", "/policygroups", map[string]any{"name": args[0], "entityType": "stacks"}, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"created": args[0]}, "created policy group %s", args[0])
		},
	}
	rm := &cobra.Command{
		Use: "rm GROUP", Short: "Delete a policy group", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := orgDo(cmd, "DELETE", groupPath(args[0]), nil, nil); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"deleted": args[0]}, "deleted policy group %s", args[0])
		},
	}
	var sf, rsf scopeFlags
	sel := &cobra.Command{
		Use: "select GROUP", Short: "Add a selector: --stack PROJECT/STACK, --project P or --tag NAME=VALUE", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := sf.check(); err != nil || sf.isEnv() {
				return fmt.Errorf("give exactly one of --stack, --project, --tag")
			}
			if err := patch(cmd, args[0], map[string]any{"addSelector": sf.body(nil)}); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"group": args[0], "added": sf.body(nil)}, "policy group %s now selects %s", args[0], sf.String())
		},
	}
	sf.add(sel)
	unsel := &cobra.Command{
		Use: "unselect GROUP", Short: "Remove a selector", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := rsf.check(); err != nil || rsf.isEnv() {
				return fmt.Errorf("give exactly one of --stack, --project, --tag")
			}
			if err := patch(cmd, args[0], map[string]any{"removeSelector": rsf.body(nil)}); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"group": args[0], "removed": rsf.body(nil)}, "policy group %s no longer selects %s", args[0], rsf.String())
		},
	}
	rsf.add(unsel)
	var configFile string
	enable := &cobra.Command{
		Use: "enable GROUP PACK [VERSION]", Short: "Require a pack version (default: always the newest) of the group's stacks", Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := map[string]any{"name": args[1]}
			if len(args) == 3 {
				m["versionTag"] = args[2]
			}
			if configFile != "" {
				b, err := os.ReadFile(configFile)
				if err != nil {
					return err
				}
				var cfg map[string]json.RawMessage
				if err := json.Unmarshal(b, &cfg); err != nil {
					return fmt.Errorf("--config: %w", err)
				}
				m["config"] = cfg
			}
			if err := patch(cmd, args[0], map[string]any{"addPolicyPack": m}); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"group": args[0], "enabled": m}, "policy group %s requires %s", args[0], strings.Join(args[1:], " "))
		},
	}
	enable.Flags().StringVar(&configFile, "config", "", "JSON file of the pack's policy configuration")
	disable := &cobra.Command{
		Use: "disable GROUP PACK [VERSION]", Short: "Stop requiring a pack in the group", Args: cobra.RangeArgs(2, 3),
		RunE: func(cmd *cobra.Command, args []string) error {
			m := map[string]any{"name": args[1]}
			if len(args) == 3 {
				m["versionTag"] = args[2]
			}
			if err := patch(cmd, args[0], map[string]any{"removePolicyPack": m}); err != nil {
				return err
			}
			return c.done(cmd, map[string]any{"group": args[0], "disabled": m}, "policy group %s no longer requires %s", args[0], args[1])
		},
	}
	cmd.AddCommand(ls, show, create, rm, sel, unsel, enable, disable)
	return cmd
}

func newPolicyProvidersCmd(c *apiClient, orgDo orgCall) *cobra.Command {
	cmd := &cobra.Command{Use: "providers", Short: "Approved providers: the only provider packages (and versions) stacks may add to their state"}
	type listOut struct {
		Enforced  bool `json:"enforced"`
		Providers []struct {
			Name     string `json:"name"`
			Versions string `json:"versions,omitempty"`
		} `json:"providers"`
	}
	show := func(cmd *cobra.Command, out listOut) error {
		return c.print(cmd, out, func(w *tabwriter.Writer) {
			fmt.Fprintf(w, "ENFORCED\t%v\n", out.Enforced)
			fmt.Fprintln(w, "PROVIDER\tVERSIONS")
			for _, p := range out.Providers {
				v := p.Versions
				if v == "" {
					v = "any"
				}
				fmt.Fprintf(w, "%s\t%s\n", p.Name, v)
			}
		})
	}
	ls := &cobra.Command{
		Use: "ls", Short: "Show the allow-list", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out listOut
			if err := orgDo(cmd, "GET", "/policy/providers", nil, &out); err != nil {
				return err
			}
			return show(cmd, out)
		},
	}
	set := &cobra.Command{
		Use:   "set NAME[@RANGE]...",
		Short: "Enforce an allow-list, e.g. aws@'>=6.0.0 <7.0.0' random kubernetes (replaces the list)",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			provs := []map[string]string{}
			for _, a := range args {
				name, rng, _ := strings.Cut(a, "@")
				m := map[string]string{"name": name}
				if rng != "" {
					m["versions"] = rng
				}
				provs = append(provs, m)
			}
			var out listOut
			if err := orgDo(cmd, "PUT", "/policy/providers", map[string]any{"enforced": true, "providers": provs}, &out); err != nil {
				return err
			}
			return show(cmd, out)
		},
	}
	off := &cobra.Command{
		Use: "off", Short: "Stop enforcing approved providers", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out listOut
			if err := orgDo(cmd, "PUT", "/policy/providers", map[string]any{"enforced": false}, &out); err != nil {
				return err
			}
			return show(cmd, out)
		},
	}
	cmd.AddCommand(ls, set, off)
	return cmd
}

func newPolicyResultsCmd(c *apiClient, orgDo orgCall) *cobra.Command {
	var stack, pack, kind string
	cmd := &cobra.Command{
		Use: "results", Short: "Policy results reported with updates (violations, remediations, summaries, refused providers)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := url.Values{}
			for k, v := range map[string]string{"stack": stack, "pack": pack, "kind": kind} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var out struct {
				Results []struct {
					ObservedAt    string `json:"observedAt"`
					EntityProject string `json:"entityProject"`
					EntityID      string `json:"entityId"`
					Kind          string `json:"kind"`
					PolicyPack    string `json:"policyPack"`
					PolicyName    string `json:"policyName"`
					Level         string `json:"level"`
					ResourceURN   string `json:"resourceURN"`
					Message       string `json:"message"`
				} `json:"results"`
			}
			if err := orgDo(cmd, "GET", "/policyresults?"+q.Encode(), nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "TIME\tSTACK\tKIND\tPACK\tPOLICY\tLEVEL\tMESSAGE")
				for _, r := range out.Results {
					fmt.Fprintf(w, "%s\t%s/%s\t%s\t%s\t%s\t%s\t%s\n", r.ObservedAt, r.EntityProject, r.EntityID, r.Kind, r.PolicyPack, r.PolicyName, r.Level, truncateLine(r.Message, 100))
				}
			})
		},
	}
	cmd.Flags().StringVar(&stack, "stack", "", "only this stack (project/stack)")
	cmd.Flags().StringVar(&pack, "pack", "", "only this policy pack")
	cmd.Flags().StringVar(&kind, "kind", "", "violation, remediation, summary or provider")
	return cmd
}

func truncateLine(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
