package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/app"
)

func newBackupCmd() *cobra.Command {
	var sf storeFlags
	var to string
	cmd := &cobra.Command{
		Use:   "backup --data-dir DIR --to FILE",
		Short: "Write a consistent copy of the embedded database while servers keep running",
		Long: `backup copies the SQLite database to a new file (VACUUM INTO: one consistent snapshot; servers
keep serving). The key files are not in the copy: back up gatehouse.key and audit-signing.key
separately (once; they do not change). PostgreSQL: use pg_dump or base backups.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if to == "" {
				return fmt.Errorf("--to FILE is required")
			}
			if err := app.Backup(cmd.Context(), sf.config(), to); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backed up %s to %s\n", app.SQLitePath(sf.config()), to)
			fmt.Fprintln(cmd.ErrOrStderr(), "gatehouse: the key files (gatehouse.key, audit-signing.key) are not in the backup: keep copies of them apart from it")
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "the backup file to create (never overwritten)")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var sf storeFlags
	var from string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --data-dir DIR --from FILE",
		Short: "Replace the embedded database with a backup, after verifying it (servers stopped)",
		Long: `restore checks the backup before it replaces anything: it must open, its keyring canary must
unwrap with the data directory's key file (or --keyring), and its audit log must verify (with
audit-signing.key, if present). Refused while a server runs on the data directory, and on a
data directory that holds a database unless --force.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return fmt.Errorf("--from FILE is required")
			}
			rep, err := app.Restore(cmd.Context(), sf.config(), from, force)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "restored %s from %s\n", app.SQLitePath(sf.config()), from)
			fmt.Fprintf(out, "audit log: %s; %d signed checkpoints", rep.Audit.String(), rep.Checkpoints)
			if !rep.KeyChecked {
				fmt.Fprint(out, " (no audit signing key in the data directory: the checkpoints' signatures were not checked)")
			}
			fmt.Fprintln(out)
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&from, "from", "", "the backup file")
	cmd.Flags().BoolVar(&force, "force", false, "replace the data directory's existing database")
	return cmd
}
