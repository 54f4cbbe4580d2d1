package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/secrets"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage the key-encryption key of stack secrets"}
	var sf storeFlags
	var to string
	rotate := &cobra.Command{
		Use:   "rotate",
		Short: "Re-wrap every stack data key under a new key-encryption key",
		Long: `rotate unwraps every stack's data key with the current keyring (--keyring, default the
key file in the data directory) and wraps it with the new one (--to), in one transaction,
then replaces the keyring canary. Stop the servers first; afterwards start them with
--keyring set to the new URL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to (the new keyring URL) is required")
			}
			ctx := cmd.Context()
			cfg := sf.config()
			store, err := app.OpenExistingStore(ctx, cfg)
			if err != nil {
				return err
			}
			defer store.Close()
			// A server caches unwrapped data keys and wraps new stacks' keys with the old
			// keyring: rotating under it would leave those stacks unreadable.
			unlock, err := app.LockStore(ctx, cfg, store, true)
			if err != nil {
				return fmt.Errorf("keys rotate: %w", err)
			}
			defer unlock()
			from, err := app.OpenKeyring(ctx, cfg, store)
			if err != nil {
				return err
			}
			defer from.Close()
			next, err := secrets.OpenKeyring(ctx, to, cfg.DataDir)
			if err != nil {
				return fmt.Errorf("new keyring: %w", err)
			}
			defer next.Close()
			n, err := app.RotateKeys(ctx, store, from, next)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "re-wrapped %d stack data keys from %s to %s\n", n, from.Describe(), next.Describe())
			return nil
		},
	}
	sf.add(rotate)
	rotate.Flags().StringVar(&to, "to", "", "URL of the new key-encryption key")
	cmd.AddCommand(rotate)
	return cmd
}
