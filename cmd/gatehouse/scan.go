package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/scan"
	"github.com/gatehouse-dev/gatehouse/token"
)

const scanLong = `Scan files, directory trees and git history for Gatehouse access tokens.

Every match is checksum-verified offline, so look-alikes are not reported. A finding is
printed as

  path:line:col: KIND token REDACTED [commit SHORT] [staged] [live|dead|revoked]

and never with the token's value (--json adds the value's SHA-256 instead).

What is scanned, per PATH (default "."):
  - the files under PATH (.git directories, symbolic links, binary files and files over
    10 MiB are skipped);
  - the git history of the repository (every blob reachable from any ref): by default
    when PATH is the top of a git work tree or a bare repository; --history forces it,
    --no-history skips it;
  - with --staged, only the files staged in git's index (what the next commit will
    contain): the pre-commit hook mode.

With --server (or GATEHOUSE_SERVER) and a token, the server is asked whether each token
found is live; --revoke revokes the live ones (holding a token's value is enough to
revoke it). Nothing is sent anywhere unless a server is named.

Exit status: 0 when no token was found, 1 when tokens were found (even once revoked),
2 on an error with no token found.

Pre-commit hook (.git/hooks/pre-commit, executable):

  #!/bin/sh
  exec gatehouse scan --staged`

// scanStatus is a finding's state on the server.
const (
	statusLive    = "live"
	statusDead    = "dead"
	statusRevoked = "revoked" // was live, revoked by this run
)

// finding is one token occurrence, with what the server said about it.
type finding struct {
	scan.Finding
	Staged bool
	Status string
}

type findingJSON struct {
	Path   string `json:"path"`
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Commit string `json:"commit,omitempty"`
	Staged bool   `json:"staged,omitempty"`
	Kind   string `json:"kind"`
	Token  string `json:"token"`  // redacted
	SHA256 string `json:"sha256"` // of the value
	Status string `json:"status,omitempty"`
}

type scanOptions struct {
	history, noHistory, staged, revoke bool
	client                             *apiClient
}

func newScanCmd() *cobra.Command {
	o := &scanOptions{}
	cmd := &cobra.Command{
		Use:   "scan [PATH|GIT REPO]...",
		Short: "Find Gatehouse tokens in files and git history; with --server, check them and --revoke the live ones",
		Long:  scanLong,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runScan(cmd, o, args)
		},
	}
	o.client = addClientFlags(cmd)
	cmd.Flags().BoolVar(&o.history, "history", false, "scan the git history of PATH (default: when PATH is the top of a git work tree or a bare repository)")
	cmd.Flags().BoolVar(&o.noHistory, "no-history", false, "do not scan git history")
	cmd.Flags().BoolVar(&o.staged, "staged", false, "scan only the files staged in git's index (for a pre-commit hook)")
	cmd.Flags().BoolVar(&o.revoke, "revoke", false, "revoke the live tokens found (needs --server and --token)")
	return cmd
}

// scanFailed returns the command's result for exit status code, with a message.
func scanFailed(code int, format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), exitError(code))
}

func runScan(cmd *cobra.Command, o *scanOptions, paths []string) error {
	ctx := cmd.Context()
	if ctx == nil {
		ctx = context.Background()
	}
	c := o.client
	// The found values go to the server only when one is named: never to a default address.
	online := cmd.Flags().Changed("server") || os.Getenv("GATEHOUSE_SERVER") != ""
	switch {
	case o.history && o.noHistory:
		return scanFailed(2, "--history and --no-history exclude each other")
	case o.revoke && !online:
		return scanFailed(2, "--revoke needs --server (or GATEHOUSE_SERVER) and --token")
	case cmd.Flags().Changed("token") && !online:
		return scanFailed(2, "--token needs --server (or GATEHOUSE_SERVER): found tokens are only sent to a server you name")
	case online && c.token == "":
		return scanFailed(2, "no token for %s: pass --token or set GATEHOUSE_TOKEN", c.server)
	}
	if len(paths) == 0 {
		paths = []string{"."}
	}

	var found []*finding
	var errs []error
	add := func(staged bool) func(scan.Finding) {
		return func(f scan.Finding) { found = append(found, &finding{Finding: f, Staged: staged}) }
	}
	for _, p := range paths {
		if o.staged {
			if err := scanStaged(ctx, p, add(true)); err != nil {
				errs = append(errs, err)
			}
			if !o.history {
				continue
			}
		} else if err := scan.ScanPath(ctx, p, add(false)); err != nil {
			errs = append(errs, err)
		}
		history := o.history
		if !o.history && !o.noHistory && !o.staged {
			history = isRepository(ctx, p)
		}
		if history {
			if err := scan.ScanGitHistory(ctx, p, add(false)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return scanFailed(2, "scan interrupted: %v", err)
	}

	var notes []string
	if online && len(found) > 0 {
		n, err := checkFindings(cmd, c, found, o.revoke)
		notes = n
		if err != nil {
			errs = append(errs, err)
		}
	}

	out := cmd.OutOrStdout()
	if c.json {
		doc := struct {
			Findings []findingJSON `json:"findings"`
			Errors   []string      `json:"errors,omitempty"`
		}{Findings: []findingJSON{}}
		for _, f := range found {
			sum := sha256.Sum256([]byte(f.Token))
			doc.Findings = append(doc.Findings, findingJSON{Path: f.Path, Line: f.Line, Column: f.Column, Commit: f.Commit,
				Staged: f.Staged, Kind: string(f.Kind), Token: token.Redact(f.Token), SHA256: hex.EncodeToString(sum[:]), Status: f.Status})
		}
		for _, err := range errs {
			doc.Errors = append(doc.Errors, err.Error())
		}
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(doc); err != nil {
			return scanFailed(2, "%v", err)
		}
	} else {
		for _, f := range found {
			fmt.Fprintln(out, f.line())
		}
	}
	stderr := cmd.ErrOrStderr()
	for _, n := range notes {
		fmt.Fprintln(stderr, "gatehouse scan:", n)
	}
	if len(found) > 0 {
		for _, err := range errs {
			fmt.Fprintln(stderr, "gatehouse scan: warning:", err)
		}
		return scanFailed(1, "%s", summary(found))
	}
	if len(errs) > 0 {
		return scanFailed(2, "%v", errors.Join(errs...))
	}
	if !c.json {
		fmt.Fprintln(stderr, "gatehouse scan: no Gatehouse tokens found")
	}
	return nil
}

// line is a finding as printed: path:line:col: KIND token REDACTED [commit SHORT] [staged] [status].
func (f *finding) line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d:%d: %s token %s", f.Path, f.Line, f.Column, f.Kind, token.Redact(f.Token))
	if f.Commit != "" {
		b.WriteString(" commit " + f.Commit[:min(7, len(f.Commit))])
	}
	if f.Staged {
		b.WriteString(" staged")
	}
	if f.Status != "" {
		b.WriteString(" " + f.Status)
	}
	return b.String()
}

func summary(found []*finding) string {
	distinct := map[string]string{}
	for _, f := range found {
		distinct[f.Token] = f.Status
	}
	counts := map[string]int{}
	for _, st := range distinct {
		counts[st]++
	}
	s := fmt.Sprintf("%d Gatehouse token(s) found (%d distinct)", len(found), len(distinct))
	var parts []string
	for _, st := range []string{statusLive, statusRevoked, statusDead} {
		if counts[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	if len(parts) > 0 {
		s += ": " + strings.Join(parts, ", ")
	}
	switch {
	case counts[statusLive] > 0:
		s += "; revoke the live ones (gatehouse scan --revoke) and give what used them a new token"
	case counts[""] > 0:
		s += "; treat them as leaked: remove them, and revoke them (gatehouse scan --server URL --token T --revoke)"
	}
	return s
}

type leakAnswer struct {
	Kind   string `json:"kind"`
	Status string `json:"status"`
	Result string `json:"result"`
	ID     string `json:"id"`
	Name   string `json:"name"`
}

// checkFindings asks the server about every distinct value found and, with revoke,
// revokes the live ones. It sets each finding's Status and returns notes for the user.
func checkFindings(cmd *cobra.Command, c *apiClient, found []*finding, revoke bool) ([]string, error) {
	var values []string
	seen := map[string]bool{}
	for _, f := range found {
		if !seen[f.Token] {
			seen[f.Token] = true
			values = append(values, f.Token)
		}
	}
	status := map[string]string{}
	var notes []string
	call := func(path string, vs []string, fn func(v string, a leakAnswer)) error {
		for start := 0; start < len(vs); start += 100 {
			chunk := vs[start:min(start+100, len(vs))]
			var out struct {
				Tokens []leakAnswer `json:"tokens"`
			}
			if err := c.do(cmd, "POST", path, map[string]any{"tokens": chunk}, &out); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if len(out.Tokens) != len(chunk) {
				return fmt.Errorf("%s: the server answered %d tokens for %d", path, len(out.Tokens), len(chunk))
			}
			for i, a := range out.Tokens {
				fn(chunk[i], a)
			}
		}
		return nil
	}
	setAll := func() {
		for _, f := range found {
			f.Status = status[f.Token]
		}
	}
	err := call("/api/tokens/status", values, func(v string, a leakAnswer) {
		status[v] = statusDead
		if a.Status == statusLive {
			status[v] = statusLive
		}
	})
	if err != nil {
		return nil, err
	}
	if !revoke {
		setAll()
		return nil, nil
	}
	// Revoke the live ones, the caller's own token (if it was found) last, so that the
	// calls before it still authenticate.
	var live []string
	own := false
	for _, v := range values {
		switch {
		case status[v] != statusLive:
		case v == c.token:
			own = true
		default:
			live = append(live, v)
		}
	}
	if own {
		live = append(live, c.token)
	}
	err = call("/api/tokens/revoke", live, func(v string, a leakAnswer) {
		switch a.Result {
		case "revoked":
			status[v] = statusRevoked
		case "already-dead", "unknown":
			status[v] = statusDead
		case "not-revocable":
			notes = append(notes, token.Redact(v)+" is an update's lease token: it cannot be revoked and dies with its update")
		}
	})
	setAll()
	if own && status[c.token] == statusRevoked {
		notes = append(notes, "the token this command used was among the tokens found, and is now revoked")
	}
	return notes, err
}

// isRepository reports whether dir is the top of a git work tree or a bare repository: the
// places whose history is scanned by default.
func isRepository(ctx context.Context, dir string) bool {
	info, err := os.Stat(dir)
	if err != nil || !info.IsDir() {
		return false
	}
	if _, err := os.Lstat(filepath.Join(dir, ".git")); err == nil {
		return true
	}
	out, err := gitCommand(ctx, dir, false, "rev-parse", "--is-bare-repository").Output()
	return err == nil && strings.TrimSpace(string(out)) == "true"
}

// gitCommand runs git in dir. With inherit, git's own environment variables (GIT_DIR,
// GIT_INDEX_FILE, ...) are passed on: a pre-commit hook must read the index being
// committed, which git names that way.
func gitCommand(ctx context.Context, dir string, inherit bool, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", append([]string{"-C", dir}, args...)...)
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !inherit && strings.HasPrefix(name, "GIT_") {
			continue
		}
		cmd.Env = append(cmd.Env, kv)
	}
	cmd.Env = append(cmd.Env, "GIT_TERMINAL_PROMPT=0", "GIT_NO_LAZY_FETCH=1", "GIT_OPTIONAL_LOCKS=0")
	return cmd
}

func gitOutput(ctx context.Context, dir string, args ...string) ([]byte, error) {
	cmd := gitCommand(ctx, dir, true, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git %s in %s: %v: %s", args[0], dir, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// scanStaged scans the files staged in the index of the repository at dir (added, modified
// or changed in type, compared with HEAD). Paths are shown relative to the work tree's top.
func scanStaged(ctx context.Context, dir string, fn func(scan.Finding)) error {
	top, err := gitOutput(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return fmt.Errorf("scan --staged: %w", err)
	}
	root := strings.TrimRight(string(top), "\r\n")
	raw, err := gitOutput(ctx, root, "diff", "--cached", "--raw", "-z", "--no-renames", "--no-abbrev",
		"--no-ext-diff", "--no-textconv", "--diff-filter=AMT")
	if err != nil {
		return fmt.Errorf("scan --staged: %w", err)
	}
	type blob struct{ path, oid string }
	var blobs []blob
	fields := strings.Split(strings.TrimSuffix(string(raw), "\x00"), "\x00")
	for i := 0; i+1 < len(fields); i += 2 {
		// ":<old mode> <new mode> <old oid> <new oid> <status>", then the path.
		h := strings.Fields(strings.TrimPrefix(strings.TrimLeft(fields[i], "\n"), ":"))
		if len(h) != 5 || h[1] == "160000" { // submodules have no blob
			continue
		}
		blobs = append(blobs, blob{path: fields[i+1], oid: h[3]})
	}
	if len(blobs) == 0 {
		return nil
	}
	cat := gitCommand(ctx, root, true, "cat-file", "--batch")
	var in bytes.Buffer
	for _, b := range blobs {
		in.WriteString(b.oid + "\n")
	}
	cat.Stdin = &in
	stdout, err := cat.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cat.Stderr = &stderr
	if err := cat.Start(); err != nil {
		return fmt.Errorf("scan --staged: git cat-file: %w", err)
	}
	r := bufio.NewReaderSize(stdout, 64<<10)
	var scanErr error
	for _, b := range blobs {
		hdr, err := r.ReadString('\n')
		if err != nil {
			scanErr = fmt.Errorf("scan --staged: reading %s: %w", b.path, err)
			break
		}
		// "<oid> blob <size>" or "<oid> missing".
		h := strings.Fields(hdr)
		if len(h) != 3 {
			continue
		}
		size, err := strconv.ParseInt(h[2], 10, 64)
		if err != nil {
			scanErr = fmt.Errorf("scan --staged: bad git cat-file header %q", hdr)
			break
		}
		if h[1] != "blob" || size > scan.MaxFileSize {
			if _, err := io.CopyN(io.Discard, r, size+1); err != nil {
				scanErr = err
				break
			}
			continue
		}
		content := make([]byte, size+1) // the content and git's newline
		if _, err := io.ReadFull(r, content); err != nil {
			scanErr = fmt.Errorf("scan --staged: reading %s: %w", b.path, err)
			break
		}
		content = content[:size]
		if bytes.IndexByte(content[:min(len(content), 8<<10)], 0) >= 0 {
			continue // binary
		}
		if err := scan.ScanText(b.path, bytes.NewReader(content), fn); err != nil {
			scanErr = err
			break
		}
	}
	if scanErr != nil {
		_ = cat.Process.Kill()
	}
	if err := cat.Wait(); err != nil && scanErr == nil {
		scanErr = fmt.Errorf("scan --staged: git cat-file: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return scanErr
}
