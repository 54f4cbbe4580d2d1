package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/audit"
)

// `gatehouse audit`: list and export an organization's audit log through the API, and
// verify or prune the whole log directly on the database.

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "The audit log: list, export, verify, prune"}
	cmd.AddCommand(newAuditLsCmd(), newAuditExportCmd(), newAuditVerifyCmd(), newAuditVerifyRemoteCmd(), newAuditPruneCmd(), newAuditPublicKeyCmd(), newAuditCheckpointCmd())
	return cmd
}

// auditFilterFlags are the filters ls and export share.
type auditFilterFlags struct {
	org, since, until, event, user string
	outcome, source                string
	site                           bool // ls --site: the site-wide events (site administrators)
}

func (f *auditFilterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.org, "org", envDefault("GATEHOUSE_ORG", ""), "organization (env GATEHOUSE_ORG)")
	cmd.Flags().StringVar(&f.since, "since", "", "only events at or after this time: RFC 3339, a date (2006-01-02), Unix seconds, or a duration ago (24h, 7d)")
	cmd.Flags().StringVar(&f.until, "until", "", "only events before this time (same forms as --since)")
	cmd.Flags().StringVar(&f.event, "event", "", "only this event (the action, e.g. stack:create or org:member:write)")
	cmd.Flags().StringVar(&f.user, "user", "", "only this actor (a user's login or a token's name)")
	cmd.Flags().StringVar(&f.outcome, "outcome", "", "only this outcome: success, failure or denied")
	cmd.Flags().StringVar(&f.source, "source", "", "only calls from this source address (exactly, as listed)")
}

// query returns the v2 query parameters of the filters.
func (f *auditFilterFlags) query(now time.Time) (url.Values, error) {
	if f.org == "" && !f.site {
		return nil, fmt.Errorf("--org is required")
	}
	switch f.outcome {
	case "", "success", "failure", "denied":
	default:
		return nil, fmt.Errorf("--outcome %q: want success, failure or denied", f.outcome)
	}
	q := url.Values{}
	for _, p := range []struct{ flag, val, param string }{{"since", f.since, "startTime"}, {"until", f.until, "endTime"}} {
		if p.val == "" {
			continue
		}
		t, err := parseAuditTime(p.val, now)
		if err != nil {
			return nil, fmt.Errorf("--%s: %w", p.flag, err)
		}
		q.Set(p.param, strconv.FormatInt(t.Unix(), 10))
	}
	if f.event != "" {
		q.Set("eventFilter", f.event)
	}
	if f.user != "" {
		q.Set("userFilter", f.user)
	}
	if f.outcome != "" {
		q.Set("outcome", f.outcome)
	}
	if f.source != "" {
		q.Set("sourceIp", f.source)
	}
	return q, nil
}

// parseAuditTime reads RFC 3339, a date, Unix seconds, or a duration before now ("90m",
// "24h", "7d").
func parseAuditTime(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation("2006-01-02", s, time.UTC); err == nil {
		return t, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return time.Unix(n, 0), nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		if n, err := strconv.Atoi(days); err == nil && n >= 0 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("invalid time %q: want RFC 3339, 2006-01-02, Unix seconds or a duration ago (24h, 7d)", s)
}

// auditEventOut is what ls reads of the API's events.
type auditEventOut struct {
	Timestamp int64  `json:"timestamp"`
	Time      string `json:"time"`
	SourceIP  string `json:"sourceIP"`
	Event     string `json:"event"`
	User      struct {
		Name string `json:"name"`
	} `json:"user"`
	ActorName string `json:"actorName"`
	ActorKind string `json:"actorKind"`
	Target    string `json:"target"`
	Outcome   string `json:"outcome"`
	Reason    string `json:"reason"`
}

func newAuditLsCmd() *cobra.Command {
	var f auditFilterFlags
	var limit int
	cmd := &cobra.Command{
		Use: "ls", Short: "List an organization's audit events, or with --site the site-wide ones, newest first", Args: cobra.NoArgs,
		Long: `List an organization's audit events (organization admins), newest first.

With --site, list the site-wide events instead (site administrators): those of no
organization, such as failed authentications (auth), rate limiting (auth:rate-limited)
and site administration. For example, the failed logins of the last day from one address:

  gatehouse audit ls --site --outcome failure --since 24h --source 203.0.113.7`,
	}
	c := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		path := "/api/orgs/" + url.PathEscape(f.org) + "/auditlogs/v2?"
		if f.site {
			if cmd.Flags().Changed("org") {
				return fmt.Errorf("--site and --org exclude each other: site-wide events belong to no organization")
			}
			f.org, path = "", "/api/admin/auditlogs?"
		}
		q, err := f.query(time.Now())
		if err != nil {
			return err
		}
		var all []map[string]any // --json: the API's events as they are
		var rows []auditEventOut
		for limit <= 0 || len(rows) < limit {
			size := 1000
			if limit > 0 {
				size = min(size, limit-len(rows))
			}
			q.Set("pageSize", strconv.Itoa(size))
			var page struct {
				AuditLogEvents    []map[string]any `json:"auditLogEvents"`
				ContinuationToken *string          `json:"continuationToken"`
			}
			if err := c.do(cmd, "GET", path+q.Encode(), nil, &page); err != nil {
				return err
			}
			for _, ev := range page.AuditLogEvents {
				all = append(all, ev)
				var row auditEventOut
				if err := remarshal(ev, &row); err != nil {
					return err
				}
				rows = append(rows, row)
			}
			if page.ContinuationToken == nil || *page.ContinuationToken == "" || len(page.AuditLogEvents) == 0 {
				break
			}
			q.Set("continuationToken", *page.ContinuationToken)
		}
		if all == nil {
			all = []map[string]any{}
		}
		return c.print(cmd, all, func(w *tabwriter.Writer) {
			fmt.Fprintln(w, "TIME\tACTOR\tEVENT\tOUTCOME\tTARGET\tSOURCE\tREASON")
			for _, r := range rows {
				actor := r.User.Name
				if actor == "" {
					actor = r.ActorName
				}
				if r.ActorKind != "" && r.ActorKind != "user" {
					actor = r.ActorKind + ":" + actor
				}
				tm := time.Unix(r.Timestamp, 0).UTC().Format(time.RFC3339)
				if t, err := time.Parse(time.RFC3339Nano, r.Time); err == nil {
					tm = t.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", tm, oneLine(actor), oneLine(r.Event), r.Outcome, oneLine(r.Target), oneLine(r.SourceIP), oneLine(r.Reason))
			}
		})
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&f.site, "site", false, "the site-wide events (of no organization: failed logins, rate limiting, site administration); site administrators")
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many events (0: all)")
	return cmd
}

func remarshal(in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, out)
}

// oneLine keeps a table cell on one line (control characters become spaces).
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

func newAuditExportCmd() *cobra.Command {
	var f auditFilterFlags
	var format, output string
	cmd := &cobra.Command{
		Use: "export", Short: "Download an organization's audit events (CSV, CEF, JSON Lines or OCSF), oldest first", Args: cobra.NoArgs,
	}
	c := addClientFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		q, err := f.query(time.Now())
		if err != nil {
			return err
		}
		switch format {
		case "csv", "cef", "ocsf":
			q.Set("format", format)
		case "jsonl", "json":
			q.Set("format", "json")
		default:
			return fmt.Errorf("--format must be csv, cef, jsonl or ocsf")
		}
		if err := c.check(cmd); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(cmd.Context(), "GET", c.server+"/api/orgs/"+url.PathEscape(f.org)+"/auditlogs/v2/export?"+q.Encode(), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "token "+c.token)
		req.Header.Set("Accept", "application/vnd.pulumi+8")
		req.Header.Set("User-Agent", "gatehouse-cli")
		// No overall timeout: an export streams as long as it has events. Go's transport asks
		// for gzip and decompresses the (always gzip) answer itself.
		resp, err := (&http.Client{}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode >= 400 {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			var e struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(b, &e) == nil && e.Message != "" {
				return fmt.Errorf("[%d] %s", resp.StatusCode, e.Message)
			}
			return fmt.Errorf("[%d] %s", resp.StatusCode, strings.TrimSpace(string(b)))
		}
		if output == "" || output == "-" {
			_, err := io.Copy(cmd.OutOrStdout(), resp.Body)
			if err != nil {
				return fmt.Errorf("the export was cut short: %w", err)
			}
			return nil
		}
		// Write next to the target and rename on success: a cut-short export never looks
		// like a complete file.
		tmp := output + ".partial"
		out, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(out, resp.Body)
		if err == nil {
			err = out.Sync()
		}
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(tmp)
			return fmt.Errorf("the export was cut short: %w", err)
		}
		if err := os.Rename(tmp, output); err != nil {
			return err
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "wrote %d bytes to %s\n", n, output)
		return nil
	}
	f.add(cmd)
	cmd.Flags().StringVar(&format, "format", "csv", "csv, cef, jsonl or ocsf")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write to this file (mode 0600) instead of standard output")
	return cmd
}

// auditDBFlags select a database and the checkpoint key for the commands that work on the
// database directly.
type auditDBFlags struct {
	dataDir, database, signingKey string
}

func (f *auditDBFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.dataDir, "data-dir", envDefault("GATEHOUSE_DATA_DIR", ""), "data directory of the embedded database (env GATEHOUSE_DATA_DIR)")
	envSecretVar(cmd.Flags(), &f.database, "database", "GATEHOUSE_DATABASE", "", "database URL: sqlite:///path or postgres://... (env GATEHOUSE_DATABASE)")
	cmd.Flags().StringVar(&f.signingKey, "signing-key", envDefault("GATEHOUSE_AUDIT_SIGNING_KEY", ""), "the checkpoint signing key (default: audit-signing.key in the data directory; env GATEHOUSE_AUDIT_SIGNING_KEY)")
}

func (f *auditDBFlags) config() app.Config {
	return app.Config{DataDir: f.dataDir, Database: f.database}
}

// existingSigner loads the signing key if its file exists (nil, nil if it does not): the
// commands that only read never create a key.
func (f *auditDBFlags) existingSigner() (*audit.Signer, error) {
	path, err := app.AuditSigningKeyPath(f.signingKey, f.dataDir)
	if err != nil {
		return nil, nil
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		if f.signingKey != "" {
			return nil, fmt.Errorf("signing key %s: %w", path, err)
		}
		return nil, nil
	}
	return app.LoadAuditSigner(path, "")
}

func newAuditVerifyCmd() *cobra.Command {
	var f auditDBFlags
	var publicKey, reference string
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Prove the audit log intact, or name the first event changed, removed or reordered",
		Long: "Reads the whole audit log from the database in log order and checks the hash chain, every signed checkpoint\n" +
			"and the chain of checkpoints. A log that starts after event 1 is accepted only from a signed retention checkpoint.\n" +
			"With --checkpoint FILE (a checkpoint kept outside the database: the JSON `gatehouse audit checkpoint` prints, or a\n" +
			"file sink's JSON Lines, whose last audit:checkpoint event is taken) the log must still hold that checkpoint.\n" +
			"Prints OK with the counts and the newest checkpoint's age and exits 0, or prints the first problem and exits 1.\n" +
			"Checkpoints are checked with --public-key (PEM, from `gatehouse audit public-key`), else with the signing key.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			var pub ed25519.PublicKey
			if publicKey != "" {
				b, err := os.ReadFile(publicKey)
				if err != nil {
					return err
				}
				if pub, err = audit.ParsePublicKey(b); err != nil {
					return err
				}
			} else {
				s, err := f.existingSigner()
				if err != nil {
					return err
				}
				if s != nil {
					pub = s.Public()
				}
			}
			var opts audit.VerifyOptions
			if reference != "" {
				rf, err := os.Open(reference)
				if err != nil {
					return err
				}
				ref, err := audit.ReadCheckpointFile(rf)
				rf.Close()
				if err != nil {
					return fmt.Errorf("--checkpoint %s: %w", reference, err)
				}
				opts.Reference = &ref
			}
			store, err := app.OpenExistingStore(ctx, f.config())
			if err != nil {
				return err
			}
			defer store.Close()
			rep, stored, err := app.VerifyAuditWith(ctx, store, pub, opts)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintln(out, rep.String())
			if pub != nil {
				fmt.Fprintf(out, "checkpoints: %d stored (%d chained, %d in the old format), %d matched; key %s\n", stored, rep.Chained, rep.Legacy, rep.Checkpoints, audit.KeyID(pub))
			} else {
				fmt.Fprintln(out, "checkpoints: none stored (the hash chain alone was checked)")
			}
			if n := rep.Newest; n != nil {
				age, warning := rep.StaleCheckpoint(time.Now(), every)
				idx := "old format"
				if n.Index > 0 {
					idx = fmt.Sprintf("#%d", n.Index)
				}
				fmt.Fprintf(out, "newest checkpoint: %s (%s) at seq %d, made %s (%s ago)\n", n.Kind, idx, n.Seq, n.Time.UTC().Format(time.RFC3339), audit.RoundAge(age))
				if warning != "" {
					fmt.Fprintln(out, "WARNING: "+warning)
				}
			}
			if opts.Reference == nil {
				fmt.Fprintln(out, "no outside reference given: a cut tail taken together with its checkpoints cannot be seen (use --checkpoint)")
			}
			if !rep.OK {
				return exitError(1)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&publicKey, "public-key", envDefault("GATEHOUSE_AUDIT_PUBLIC_KEY", ""), "PEM public key to check the checkpoints with (default: derived from the signing key; env GATEHOUSE_AUDIT_PUBLIC_KEY)")
	cmd.Flags().StringVar(&reference, "checkpoint", envDefault("GATEHOUSE_AUDIT_CHECKPOINT", ""), "outside reference: a checkpoint JSON file, or a sink's JSON Lines file (its last checkpoint); the log must still hold it (env GATEHOUSE_AUDIT_CHECKPOINT)")
	everyDef, _ := time.ParseDuration(envDefault("GATEHOUSE_AUDIT_CHECKPOINT_EVERY", "5m"))
	cmd.Flags().DurationVar(&every, "checkpoint-every", everyDef, "the server's checkpoint period: warn when the newest checkpoint is older than twice it while events after it are unvouched (env GATEHOUSE_AUDIT_CHECKPOINT_EVERY)")
	return cmd
}

func newAuditCheckpointCmd() *cobra.Command {
	var f auditDBFlags
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Print the newest signed audit checkpoint as JSON, to keep outside the database for `audit verify --checkpoint`",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := app.OpenStore(ctx, f.config())
			if err != nil {
				return err
			}
			defer store.Close()
			cp, err := app.LastAuditCheckpoint(ctx, store)
			if err != nil {
				return err
			}
			b, err := json.Marshal(cp)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(cmd.OutOrStdout(), string(b))
			return err
		},
	}
	cmd.Flags().StringVar(&f.dataDir, "data-dir", envDefault("GATEHOUSE_DATA_DIR", ""), "data directory of the embedded database (env GATEHOUSE_DATA_DIR)")
	envSecretVar(cmd.Flags(), &f.database, "database", "GATEHOUSE_DATABASE", "", "database URL: sqlite:///path or postgres://... (env GATEHOUSE_DATABASE)")
	return cmd
}

func newAuditPruneCmd() *cobra.Command {
	var f auditDBFlags
	var before, archive string
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Retention: archive the events older than --before to a sink, then delete them",
		Long: "Verifies the log, copies the events older than --before to the --archive sink (any sink URL, e.g.\n" +
			"file:///backup/audit-archive.jsonl or s3://bucket?prefix=audit/), never past an export sink's cursor,\n" +
			"then in one transaction stores a signed retention checkpoint at the last archived event and deletes\n" +
			"the archived rows. What remains still verifies (from that checkpoint).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if before == "" || archive == "" {
				return fmt.Errorf("--before and --archive are required")
			}
			cutoff, err := parseAuditTime(before, time.Now())
			if err != nil {
				return fmt.Errorf("--before: %w", err)
			}
			signer, err := f.existingSigner()
			if err != nil {
				return err
			}
			if signer == nil {
				return fmt.Errorf("no audit signing key found (the server creates audit-signing.key in its data directory): pass --signing-key")
			}
			store, err := app.OpenExistingStore(ctx, f.config())
			if err != nil {
				return err
			}
			defer store.Close()
			sink, err := audit.OpenSink(ctx, archive)
			if err != nil {
				return err
			}
			host, _ := os.Hostname()
			res, perr := app.PruneAudit(ctx, store, signer, sink, cutoff, "gatehouse audit prune on "+host)
			if cerr := sink.Close(); perr == nil && cerr != nil {
				perr = fmt.Errorf("closing the archive: %w", cerr)
			}
			out := cmd.OutOrStdout()
			switch {
			case res.Archived == 0:
				fmt.Fprintf(out, "nothing to prune before %s", cutoff.UTC().Format(time.RFC3339))
				if res.LimitingSink != "" {
					fmt.Fprintf(out, " (export sink %s has acknowledged up to seq %d)", res.LimitingSink, res.ExportLimit)
				}
				fmt.Fprintln(out)
			default:
				fmt.Fprintf(out, "archived %d events (seq %d..%d) to %s, deleted %d\n", res.Archived, res.FirstSeq, res.LastSeq, sink.Name(), res.Deleted)
				if res.LimitingSink != "" && res.LastSeq == res.ExportLimit {
					fmt.Fprintf(out, "stopped at export sink %s's cursor (seq %d)\n", res.LimitingSink, res.ExportLimit)
				}
			}
			if perr != nil {
				return perr
			}
			// What remains must verify from the new anchor.
			rep, _, err := app.VerifyAudit(context.WithoutCancel(ctx), store, signer.Public())
			if err != nil {
				return err
			}
			fmt.Fprintln(out, "remaining log: "+rep.String())
			if !rep.OK {
				return exitError(1)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&before, "before", "", "archive and delete events older than this (RFC 3339, 2006-01-02, Unix seconds, or a duration ago such as 365d)")
	cmd.Flags().StringVar(&archive, "archive", "", "sink URL the pruned events are archived to (required)")
	return cmd
}

func newAuditPublicKeyCmd() *cobra.Command {
	var f auditDBFlags
	cmd := &cobra.Command{
		Use: "public-key", Short: "Print the checkpoint signing key's public key (PEM), for `audit verify --public-key`", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := f.existingSigner()
			if err != nil {
				return err
			}
			if s == nil {
				return fmt.Errorf("no audit signing key found: pass --data-dir or --signing-key")
			}
			b, err := audit.MarshalPublicKey(s.Public())
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
	cmd.Flags().StringVar(&f.dataDir, "data-dir", envDefault("GATEHOUSE_DATA_DIR", ""), "data directory (env GATEHOUSE_DATA_DIR)")
	cmd.Flags().StringVar(&f.signingKey, "signing-key", envDefault("GATEHOUSE_AUDIT_SIGNING_KEY", ""), "the checkpoint signing key (default: audit-signing.key in the data directory)")
	return cmd
}
