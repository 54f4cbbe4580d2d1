package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
)

// newAuditVerifyRemoteCmd asks a running server to verify the whole audit log
// (GET /api/admin/auditlogs/verify, site administrators): no database access needed.
func newAuditVerifyRemoteCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "verify-remote",
		Short: "Ask a running server to verify the whole audit log (site administrators)",
		Long: "Like `audit verify`, but the server reads its own database and checks the chain and the signed\n" +
			"checkpoints with its signing key. Prints the result and exits 1 if the log does not verify.",
		Args: cobra.NoArgs,
	}
	c := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		var raw json.RawMessage
		if err := c.do(cmd, "GET", "/api/admin/auditlogs/verify", nil, &raw); err != nil {
			return err
		}
		var rep struct {
			OK                bool   `json:"ok"`
			Summary           string `json:"summary"`
			Checkpoints       int    `json:"checkpoints"`
			StoredCheckpoints int    `json:"storedCheckpoints"`
			KeyID             string `json:"keyId"`
		}
		if err := json.Unmarshal(raw, &rep); err != nil {
			return err
		}
		out := cmd.OutOrStdout()
		if c.json {
			fmt.Fprintln(out, string(raw))
		} else {
			fmt.Fprintln(out, rep.Summary)
			fmt.Fprintf(out, "checkpoints: %d stored, %d matched", rep.StoredCheckpoints, rep.Checkpoints)
			if rep.KeyID != "" {
				fmt.Fprintf(out, "; key %s", rep.KeyID)
			}
			fmt.Fprintln(out)
		}
		if !rep.OK {
			return exitError(1)
		}
		return nil
	}
	return cmd
}
