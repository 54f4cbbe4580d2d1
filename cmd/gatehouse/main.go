// Command gatehouse is the Gatehouse server and its administration tool.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "gatehouse:", errorText(err))
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		os.Exit(1)
	}
}

// exitError is a command result that only sets the exit status.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func errorText(err error) string {
	var ge *gatehouse.Error
	if errors.As(err, &ge) {
		if ge.Err != nil && ge.Code == gatehouse.EINTERNAL {
			return ge.Message + ": " + ge.Err.Error()
		}
		return ge.Message
	}
	return err.Error()
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "gatehouse",
		Short:         "Gatehouse: a self-hosted backend for the Pulumi CLI",
		Long:          "Gatehouse serves the stock pulumi CLI (pulumi login http://host:port): state, secrets, identity, access control and audit.",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       versionString(),
		// Flags parsed from the environment (numbers, durations, booleans): an invalid
		// value is an error, never silently the default.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error { return applyEnv(cmd) },
	}
	root.SetVersionTemplate("gatehouse {{.Version}}\n")
	root.AddCommand(newServeCmd(), newBootstrapCmd(), newKeysCmd(),
		newOrgCmd(), newMemberCmd(), newUserCmd(), newTeamCmd(), newGrantCmd(), newProtectCmd(), newStackCmd(), newTokenCmd())
	root.AddCommand(newOIDCCmd())
	root.AddCommand(newInviteCmd())
	root.AddCommand(newSCIMCmd())
	root.AddCommand(newScanCmd())
	root.AddCommand(newAuditCmd(), newRateLimitCmd())
	root.AddCommand(newPostureCmd(), newAllowListCmd())
	root.AddCommand(newMigrateCmd())
	root.AddCommand(newPolicyCmd())
	root.AddCommand(newVersionCmd())
	root.AddCommand(newBackupCmd(), newRestoreCmd(), newHealthcheckCmd())
	root.AddCommand(newRunnerCmd())
	return root
}

// envDefault returns the environment variable's value, or def.
// envSecretVar is fs.StringVar with its default from the environment variable env (else
// fallback), for values that must not be printed: --help shows a flag's default, and the
// default would be the environment's token or database password.
func envSecretVar(fs *pflag.FlagSet, p *string, name, env, fallback, usage string) {
	fs.StringVar(p, name, envDefault(env, fallback), usage)
	fs.Lookup(name).DefValue = ""
}

func envDefault(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}
