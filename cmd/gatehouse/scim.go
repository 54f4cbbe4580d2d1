package main

import (
	"fmt"
	"net/url"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

// scimTokenOut is the answer of /api/orgs/{org}/scim/token.
type scimTokenOut struct {
	Configured bool   `json:"configured"`
	ID         string `json:"id,omitempty"`
	Token      string `json:"token,omitempty"`
	CreatedBy  string `json:"createdBy,omitempty"`
	Created    string `json:"created,omitempty"`
	BaseURL    string `json:"baseUrl"`
}

// newSCIMCmd is `gatehouse scim`: the organization's SCIM provisioning token.
func newSCIMCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scim",
		Short: "SCIM provisioning: the organization's SCIM token for Okta or Entra ID",
		Long: `An organization admin creates the organization's SCIM token and gives it, with the base URL
printed, to the identity provider (Okta, Microsoft Entra ID). There is one token per
organization: creating a new one ends the old one at once, on every Gatehouse process. The
token is shown once; only its digest is kept.`,
	}
	c := addClientFlags(cmd)
	var org string
	cmd.PersistentFlags().StringVar(&org, "org", envDefault("GATEHOUSE_ORG", ""), "organization (env GATEHOUSE_ORG)")
	path := func() (string, error) {
		if org == "" {
			return "", fmt.Errorf("--org is required")
		}
		return "/api/orgs/" + url.PathEscape(org) + "/scim/token", nil
	}
	token := &cobra.Command{Use: "token", Short: "Create, regenerate or show the organization's SCIM token"}
	create := func(use, short string) *cobra.Command {
		return &cobra.Command{
			Use: use, Short: short, Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				p, err := path()
				if err != nil {
					return err
				}
				var out scimTokenOut
				if err := c.do(cmd, "POST", p, nil, &out); err != nil {
					return err
				}
				return c.print(cmd, out, func(w *tabwriter.Writer) {
					fmt.Fprintf(w, "SCIM base URL:\t%s\n", out.BaseURL)
					fmt.Fprintf(w, "SCIM token:\t%s\n", out.Token)
					fmt.Fprintln(w, "The token is shown once; any earlier SCIM token of the organization no longer works.")
				})
			},
		}
	}
	show := &cobra.Command{
		Use: "show", Short: "Show whether the organization has a SCIM token (never its value)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := path()
			if err != nil {
				return err
			}
			var out scimTokenOut
			if err := c.do(cmd, "GET", p, nil, &out); err != nil {
				return err
			}
			return c.print(cmd, out, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "SCIM base URL:\t%s\n", out.BaseURL)
				if !out.Configured {
					fmt.Fprintln(w, "SCIM token:\tnone (gatehouse scim token create)")
					return
				}
				fmt.Fprintf(w, "SCIM token:\t%s, created %s by %s\n", out.ID, out.Created, out.CreatedBy)
			})
		},
	}
	token.AddCommand(create("create", "Create the organization's SCIM token (replaces any earlier one)"),
		create("regenerate", "Replace the organization's SCIM token; the old one stops working at once"), show)
	cmd.AddCommand(token)
	return cmd
}
