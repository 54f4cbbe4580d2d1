package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/app"
)

func newBootstrapCmd() *cobra.Command {
	var sf storeFlags
	var org, admin string
	cmd := &cobra.Command{
		Use:   "bootstrap",
		Short: "Create the first organization and its admin; print the admin's token",
		Long: `bootstrap initializes an empty data store: it creates the first organization and its first
admin (a site administrator) and prints the admin's personal access token on stdout, alone on
one line. It is shown once and stored only as a digest. On a store that is already
bootstrapped it changes nothing and fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if org == "" || admin == "" {
				return fmt.Errorf("--org and --admin are required")
			}
			ctx := cmd.Context()
			cfg := sf.config()
			store, err := app.OpenStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			kr, err := app.OpenKeyring(ctx, cfg, store)
			if err != nil {
				return err
			}
			defer kr.Close()
			tok, err := app.Bootstrap(ctx, store, org, admin)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&org, "org", "", "name of the first organization")
	cmd.Flags().StringVar(&admin, "admin", "", "user name of the first admin")
	return cmd
}
