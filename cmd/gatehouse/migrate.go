package main

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/app"
)

func newMigrateCmd() *cobra.Command {
	var from, fromDir, to, toDir, signingKey string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Copy a whole Gatehouse database into a new, empty one (e.g. SQLite to PostgreSQL) and verify it",
		Long: `migrate copies every table of the source database into the target, in dependency order, with
every ID as it is (the keyring canary, the security epoch and the audit chain byte for byte),
moves the target's ID generators past the source's, then reads the target back and compares
every table's row count and SHA-256 checksum with the source's. It refuses, changing nothing,
a target that already holds data (organizations, users, stacks, tokens, audit events).

Stop the servers first. Afterwards serve the target with the same keyring (--data-dir for the
key file, or --keyring), the same audit signing key and, if checkpoints are in object storage,
the same --blob-url:

  gatehouse migrate --from-data-dir ./data --to 'postgres://gatehouse@db:5432/gatehouse'
  gatehouse serve --data-dir ./data --database 'postgres://gatehouse@db:5432/gatehouse'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (from == "") == (fromDir == "") {
				return fmt.Errorf("give the source with exactly one of --from URL and --from-data-dir DIR")
			}
			if (to == "") == (toDir == "") {
				return fmt.Errorf("give the target with exactly one of --to URL and --to-data-dir DIR")
			}
			ctx := cmd.Context()
			src := app.Config{Database: from, DataDir: fromDir}
			dst := app.Config{Database: to, DataDir: toDir}
			res, err := app.Migrate(ctx, src, dst)
			out := cmd.OutOrStdout()
			if asJSON && res.Tables != nil {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				_ = enc.Encode(res)
			} else if res.Tables != nil {
				tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "TABLE\tROWS\tSHA-256 SOURCE\tSHA-256 TARGET")
				for _, t := range res.Tables {
					fmt.Fprintf(tw, "%s\t%d\t%s\t%s", t.Table, t.Source.Rows, t.Source.Checksum[:16], t.Target.Checksum[:min(16, len(t.Target.Checksum))])
					if !t.OK() {
						fmt.Fprintf(tw, "\tMISMATCH (target %d rows)", t.Target.Rows)
					}
					fmt.Fprintln(tw)
				}
				tw.Flush()
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "OK: %d tables, %d rows copied from %s to %s; row counts and checksums match\n",
				len(res.Tables), res.Rows(), res.From, res.To)

			// The audit chain on the target, as `gatehouse audit verify` checks it.
			keys := auditDBFlags{dataDir: fromDir, signingKey: signingKey}
			signer, err := keys.existingSigner()
			if err != nil {
				return err
			}
			var pub ed25519.PublicKey
			if signer != nil {
				pub = signer.Public()
			}
			store, err := app.OpenStore(ctx, dst)
			if err != nil {
				return err
			}
			defer store.Close()
			if pub == nil {
				cps, err := app.AuditCheckpoints(ctx, store)
				if err != nil {
					return err
				}
				if len(cps) > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "audit log: %d signed checkpoints; verify them with `gatehouse audit verify --database TARGET --signing-key KEY`\n", len(cps))
					return nil
				}
			}
			rep, _, err := app.VerifyAudit(ctx, store, pub)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "audit log on the target: %s\n", rep)
			if !rep.OK {
				return exitError(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "source database URL: sqlite:///path/gatehouse.db or postgres://...")
	cmd.Flags().StringVar(&fromDir, "from-data-dir", "", "source: the SQLite database in this data directory")
	cmd.Flags().StringVar(&to, "to", "", "target database URL: postgres://... or sqlite:///path/gatehouse.db (a new, empty database)")
	cmd.Flags().StringVar(&toDir, "to-data-dir", "", "target: the SQLite database in this data directory")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "the audit checkpoint signing key, to verify the copied log's checkpoints (default: audit-signing.key in --from-data-dir)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the per-table report as JSON")
	return cmd
}
