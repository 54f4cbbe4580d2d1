package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
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
	server, token, tokenFile string
	json                     bool
	http                     *http.Client
	out                      io.Writer
	checked                  bool // server URL and token checked, warnings printed
}

// addClientFlags registers --server, --token and --json on cmd (persistent, so a command
// group shares them) and returns the client they configure.
func addClientFlags(cmd *cobra.Command) *apiClient {
	c := &apiClient{http: &http.Client{Timeout: 60 * time.Second}}
	cmd.PersistentFlags().StringVar(&c.server, "server", envDefault("GATEHOUSE_SERVER", "http://127.0.0.1:8080"), "Gatehouse server URL (env GATEHOUSE_SERVER)")
	envSecretVar(cmd.PersistentFlags(), &c.token, "token", "GATEHOUSE_TOKEN", os.Getenv("PULUMI_ACCESS_TOKEN"), "access token (visible to other users in ps: prefer env GATEHOUSE_TOKEN, else PULUMI_ACCESS_TOKEN, or --token-file)")
	cmd.PersistentFlags().StringVar(&c.tokenFile, "token-file", envDefault("GATEHOUSE_TOKEN_FILE", ""), "read the access token from this file (env GATEHOUSE_TOKEN_FILE)")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print JSON instead of a table")
	return c
}

// do sends a JSON request and decodes a JSON answer into out (if not nil).
func (c *apiClient) do(cmd *cobra.Command, method, path string, body, out any) error {
	c.out = cmd.OutOrStdout()
	if err := c.check(cmd); err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(cmd.Context(), method, c.server+path, rd)
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

// check completes the server URL and reads the token, once per command, and warns about
// a token on the command line and about tokens sent unencrypted to another machine.
func (c *apiClient) check(cmd *cobra.Command) error {
	if c.checked {
		return nil
	}
	server, err := serverURL(c.server)
	if err != nil {
		return err
	}
	c.server = server
	if f := cmd.Flags().Lookup("token"); f != nil && f.Changed {
		fmt.Fprintln(cmd.ErrOrStderr(), "gatehouse: warning: --token on the command line is visible to other users (ps, shell history); use GATEHOUSE_TOKEN or --token-file")
	}
	if c.tokenFile != "" && (cmd.Flags().Lookup("token") == nil || !cmd.Flags().Lookup("token").Changed) {
		b, err := os.ReadFile(c.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		c.token = strings.TrimSpace(string(b))
	}
	if c.token == "" {
		return fmt.Errorf("no token: set GATEHOUSE_TOKEN, or pass --token-file or --token")
	}
	if u, err := url.Parse(c.server); err == nil && u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		fmt.Fprintf(cmd.ErrOrStderr(), "gatehouse: warning: %s is plain http to another machine: the token travels unencrypted (use https://)\n", c.server)
	}
	c.checked = true
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
