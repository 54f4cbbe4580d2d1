package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// `gatehouse ratelimit`: the failed-authentication limiter's counters, and ending a block
// (site administrators, through the API).

func newRateLimitCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ratelimit",
		Short: "Failed-authentication rate limits: list counters, clear a block (site administrators)",
		Long: `Gatehouse counts failed authentications per source address and per token prefix (the
non-secret start of a presented token); past the limit (30 failures per 5 minutes)
further failures from that address or with that prefix get 429 until the window ends.
A valid credential is never refused.

  gatehouse ratelimit ls                       the counters of the current windows
  gatehouse ratelimit clear 203.0.113.7        end an address's block at once
  gatehouse ratelimit clear tok:gatehouse_pat_AbCd   end a token prefix's block

Clearing takes effect on every server process from its next request, and is audited.`,
	}
	c := addClientFlags(cmd)
	ls := &cobra.Command{
		Use: "ls", Short: "List the failed-authentication counters of the current windows, highest first", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out httpapi.RateLimitsJSON
			if err := c.do(cmd, "GET", "/api/admin/ratelimits", nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "SOURCE\tKIND\tFAILURES\tWINDOW START\tBLOCKED UNTIL")
				for _, r := range out.RateLimits {
					until := "-"
					if r.Blocked {
						until = r.BlockedUntil
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", oneLine(r.Source), r.Kind, r.Failures, r.WindowStart, until)
				}
				if out.Truncated {
					fmt.Fprintf(w, "(only the %d highest counters are listed)\n", len(out.RateLimits))
				}
				if len(out.RateLimits) == 0 {
					fmt.Fprintf(w, "(no failed authentications in the current window; limit %d per %ds)\n", out.Limit, out.WindowSeconds)
				}
			})
		},
	}
	clear := &cobra.Command{
		Use:   "clear SOURCE",
		Short: "End a block: delete the failure counts of an address (ip:ADDR or ADDR) or a token prefix (tok:PREFIX)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var out struct {
				Source  string `json:"source"`
				Kind    string `json:"kind"`
				Cleared int64  `json:"cleared"`
			}
			if err := c.do(cmd, "DELETE", "/api/admin/ratelimits/"+url.PathEscape(args[0]), nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				if out.Cleared == 0 {
					fmt.Fprintf(w, "no failures were counted for %s (%s); nothing is blocked\n", oneLine(out.Source), out.Kind)
					return
				}
				fmt.Fprintf(w, "cleared %s (%s): its failures are forgotten and no server refuses it any more\n", oneLine(out.Source), out.Kind)
			})
		},
	}
	cmd.AddCommand(ls, clear)
	return cmd
}
