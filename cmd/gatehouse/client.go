package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// apiClient is how the administration commands talk to a running server: --server and
// --token (GATEHOUSE_SERVER, GATEHOUSE_TOKEN), JSON in and out, errors as the server
// phrased them.
type apiClient struct {
	server, token string
	json          bool
	http          *http.Client
	out           io.Writer
}

// addClientFlags registers --server, --token and --json on cmd (persistent, so a command
// group shares them) and returns the client they configure.
func addClientFlags(cmd *cobra.Command) *apiClient {
	c := &apiClient{http: &http.Client{Timeout: 60 * time.Second}}
	cmd.PersistentFlags().StringVar(&c.server, "server", envDefault("GATEHOUSE_SERVER", "http://127.0.0.1:8080"), "Gatehouse server URL (env GATEHOUSE_SERVER)")
	envSecretVar(cmd.PersistentFlags(), &c.token, "token", "GATEHOUSE_TOKEN", os.Getenv("PULUMI_ACCESS_TOKEN"), "access token (env GATEHOUSE_TOKEN, else PULUMI_ACCESS_TOKEN)")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *apiClient) do(cmd *cobra.Command, method, path string, body, out any) error {
	c.out = cmd.OutOrStdout()
	if c.token == "" {
		return fmt.Errorf("no token: pass --token or set GATEHOUSE_TOKEN")
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, strings.TrimRight(c.server, "/")+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "token "+c.token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.pulumi+8")
	req.Header.Set("User-Agent", "gatehouse-cli")
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(b, &e) == nil && e.Message != "" {
			return fmt.Errorf("[%d] %s", resp.StatusCode, e.Message)
		}
		return fmt.Errorf("[%d] %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil && len(b) > 0 {
		if raw, ok := out.(*json.RawMessage); ok {
			*raw = b
			return nil
		}
		return json.Unmarshal(b, out)
	}
	return nil
}

// print writes v as indented JSON (with --json) or calls table to write a table.
func (c *apiClient) print(cmd *cobra.Command, v any, table func(w *tabwriter.Writer)) error {
	out := cmd.OutOrStdout()
	if c.json || table == nil {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	table(w)
	return w.Flush()
}
