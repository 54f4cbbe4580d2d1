package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// newInviteCmd is `gatehouse invite`: an organization admin invites people who are not the
// organization's own (members of other organizations, or anyone on the site) by user name,
// and the invited person accepts or declines with their own token.
func newInviteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "invite",
		Short: "Invite people to an organization; accept or decline your invitations",
		Long: `An organization admin invites a user name to become a member (create, ls, revoke with --org).
The invited person sees their invitations (ls --mine) and accepts or declines them, with a
personal token of their own. The organization learns nothing about the name until the person
answers: an invitation for a name nobody has looks like any other.`,
	}
	c := addClientFlags(cmd)
	var org string
	cmd.PersistentFlags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "organization (env GATEHOUSE_ORG)")
	base := func() (string, error) {
		if org == "" {
			return "", fmt.Errorf("--org is required (or --mine for your own invitations)")
		}
		return "/api/orgs/" + url.PathEscape(org) + "/invitations", nil
	}

	var role string
	var days int
	create := &cobra.Command{
		Use: "create USER", Short: "Invite a user name to the organization (organization admins)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			var inv httpapi.Invitation
			if err := c.do(cmd, "POST", p, map[string]any{"userName": args[0], "role": role, "expiresInDays": days}, &inv); err != nil {
				return err
			}
			return c.print(cmd, inv, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "invited %s to %s as %s until %s (invitation %s)\n", inv.UserName, inv.Org, inv.Role, inv.Expires, inv.ID)
				fmt.Fprintf(w, "they accept with: gatehouse invite accept %s\n", inv.ID)
			})
		},
	}
	create.Flags().StringVar(&role, "role", "member", "admin, member or billing-manager")
	create.Flags().IntVar(&days, "days", 7, "days the invitation can be accepted (1-90)")

	var mine, pending bool
	ls := &cobra.Command{
		Use: "ls", Short: "List the organization's invitations (--org), or your own pending ones (--mine)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var out httpapi.InvitationList
			if mine {
				if err := c.do(cmd, "GET", "/api/user/invitations", nil, &out); err != nil {
					return err
				}
				return c.print(cmd, out, func(w *tabwriter.Writer) {
					fmt.Fprintln(w, "ID\tORGANIZATION\tROLE\tINVITED BY\tEXPIRES")
					for _, i := range out.Invitations {
						fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", i.ID, i.Org, i.Role, i.InvitedBy, i.Expires)
					}
				})
			}
			p, err := base()
			if err != nil {
				return err
			}
			if pending {
				p += "?pending=true"
			}
			if err := c.do(cmd, "GET", p, nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "ID\tUSER\tROLE\tSTATUS\tINVITED BY\tEXPIRES")
				for _, i := range out.Invitations {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", i.ID, i.UserName, i.Role, i.Status, i.InvitedBy, i.Expires)
				}
			})
		},
	}
	ls.Flags().BoolVar(&mine, "mine", false, "your own pending invitations (any organization)")
	ls.Flags().BoolVar(&pending, "pending", false, "only invitations that can still be accepted")

	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke a pending invitation (organization admins)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := base()
			if err != nil {
				return err
			}
			var inv httpapi.Invitation
			if err := c.do(cmd, "DELETE", p+"/"+url.PathEscape(args[0]), nil, &inv); err != nil {
				return err
			}
			return c.print(cmd, inv, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "revoked the invitation of %s to %s\n", inv.UserName, inv.Org)
			})
		},
	}
	answer := func(verb, short, done string) *cobra.Command {
		return &cobra.Command{
			Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				var inv httpapi.Invitation
				if err := c.do(cmd, "POST", "/api/user/invitations/"+url.PathEscape(args[0])+"/"+verb, nil, &inv); err != nil {
					return err
				}
				return c.print(cmd, inv, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, done+"\n", inv.Org, inv.Role)
				})
			},
		}
	}
	cmd.AddCommand(create, ls, revoke,
		answer("accept", "Accept an invitation: you become a member of its organization (your personal token)", "you are now a member of %s (%s)"),
		answer("decline", "Decline an invitation (your personal token)", "declined the invitation to %s (%s)"))
	return cmd
}
