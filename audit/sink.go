package audit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"gocloud.dev/blob"
)

// Sink receives batches of audit events. Write returns nil only once the whole batch is
// durably accepted (the sink's acknowledgement); the Exporter then advances its cursor.
// Write may be called again with the same batch after an error, so sinks must tolerate
// (and where they can, absorb) a repeated batch. A Sink is used by one goroutine at a time.
type Sink interface {
	// Name identifies the sink in export cursors, metrics and logs. It never contains
	// credentials.
	Name() string
	Write(ctx context.Context, batch []gatehouse.AuditEvent) error
	Close() error
}

// Output formats of the file and blob sinks.
const (
	FormatJSONL = "jsonl" // WriteJSONL (default): every field, verifiable
	FormatCEF   = "cef"   // WriteCEF
	FormatOCSF  = "ocsf"  // WriteOCSF
)

// OpenSink opens a sink from a URL. See the package documentation for the schemes and their
// parameters. Parameters common to all sinks:
//
//	name=NAME      the sink's Name (export cursor key, metric label); default: the URL
//	               without credentials and query
//	hostname=HOST  the host name reported in CEF (dvchost) and syslog; default os.Hostname
func OpenSink(ctx context.Context, rawURL string) (Sink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Parse errors repeat the URL, which may hold credentials: keep only the cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("audit: bad sink URL: %v", err)
	}
	q := u.Query()
	name := q.Get("name")
	if name == "" {
		name = redactedURL(u)
	}
	if err := checkSinkName(name); err != nil {
		return nil, err
	}
	host := q.Get("hostname")
	if host == "" {
		host, _ = os.Hostname()
	}
	switch u.Scheme {
	case "file":
		if q.Has("blob") {
			return openBlobSink(ctx, u, name, host)
		}
		return openFileSink(u, name, host)
	case "syslog+tcp", "syslog+tls":
		return openSyslogSink(u, name, host)
	case "https", "http":
		return openWebhookSink(u, name)
	}
	if blob.DefaultURLMux().ValidBucketScheme(u.Scheme) {
		return openBlobSink(ctx, u, name, host)
	}
	return nil, fmt.Errorf("audit: unknown sink scheme %q (want file, syslog+tcp, syslog+tls, https, or a blob scheme such as s3 or mem)", u.Scheme)
}

// redactedURL renders u without user information and query, for a sink's default name.
func redactedURL(u *url.URL) string {
	r := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, Opaque: u.Opaque}
	return r.String()
}

func checkSinkName(name string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("audit: sink name must be 1..256 bytes")
	}
	if strings.IndexFunc(name, isControl) >= 0 {
		return fmt.Errorf("audit: sink name contains control characters")
	}
	return nil
}

// queryWithout returns u's query without the named parameters (ours, not the target's).
func queryWithout(u *url.URL, names ...string) url.Values {
	q := u.Query()
	for _, n := range names {
		q.Del(n)
	}
	return q
}

// parseFormat reads the format parameter (default jsonl).
func parseFormat(q url.Values) (string, error) {
	switch f := q.Get("format"); f {
	case "", FormatJSONL:
		return FormatJSONL, nil
	case FormatCEF, FormatOCSF:
		return f, nil
	default:
		return "", fmt.Errorf("audit: unknown sink format %q (want jsonl, cef or ocsf)", f)
	}
}

// parseDuration reads a duration parameter.
func parseDuration(q url.Values, key string, def time.Duration) (time.Duration, error) {
	s := q.Get(key)
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("audit: sink parameter %s=%q is not a positive duration", key, s)
	}
	return d, nil
}

// encodeBatch renders a batch in format, one event per line.
func encodeBatch(dst []byte, format, host string, batch []gatehouse.AuditEvent) ([]byte, error) {
	var err error
	for i := range batch {
		e := &batch[i]
		switch format {
		case FormatCEF:
			dst = e.Time.UTC().AppendFormat(dst, "Jan _2 15:04:05")
			dst = append(dst, ' ')
			dst = append(dst, host...)
			dst = append(dst, ' ')
			dst = appendCEF(dst, host, e)
			dst = append(dst, '\n')
		case FormatOCSF:
			dst, err = appendOCSF(dst, e)
		default:
			dst, err = appendJSON(dst, e)
		}
		if err != nil {
			return nil, fmt.Errorf("audit: encoding event %d: %w", e.Seq, err)
		}
	}
	return dst, nil
}

// formatExt is the file name extension of a format.
func formatExt(format string) string {
	switch format {
	case FormatCEF:
		return "cef"
	case FormatOCSF:
		return "ocsf.jsonl"
	}
	return "jsonl"
}
