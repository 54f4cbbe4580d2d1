package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/httpapi"
)

// The GitHub secret scanning partner endpoint (POST /api/secret-scanning/github) verifies
// deliveries with GitHub's public keys, read from a file at start-up:
//
//	curl -fsS https://api.github.com/meta/public_keys/secret_scanning > github-secret-scanning-keys.json
//	gatehouse serve --secret-scanning-keys github-secret-scanning-keys.json
//
// Without the flag the endpoint refuses every delivery (401). When GitHub rotates its keys,
// refresh the file and restart.

const secretScanningKeysFlag = "secret-scanning-keys"

// addSecretScanningKeysFlag registers --secret-scanning-keys on the serve command.
func addSecretScanningKeysFlag(cmd *cobra.Command) {
	cmd.Flags().String(secretScanningKeysFlag, envDefault("GATEHOUSE_SECRET_SCANNING_KEYS", ""),
		"GitHub's secret-scanning public keys document (JSON from https://api.github.com/meta/public_keys/secret_scanning): enables POST /api/secret-scanning/github (env GATEHOUSE_SECRET_SCANNING_KEYS)")
}

// secretScanningKeys loads the keys named by --secret-scanning-keys (none when the flag is
// not set); a file that cannot be read or parsed stops the server from starting.
func secretScanningKeys(cmd *cobra.Command) ([]httpapi.SecretScanningKey, error) {
	path, err := cmd.Flags().GetString(secretScanningKeysFlag)
	if err != nil || path == "" {
		return nil, err
	}
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", secretScanningKeysFlag, err)
	}
	keys, err := httpapi.ParseSecretScanningKeys(doc)
	if err != nil {
		return nil, fmt.Errorf("--%s %s: %w", secretScanningKeysFlag, path, err)
	}
	return keys, nil
}
