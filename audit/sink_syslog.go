package audit

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// syslogFacilityAudit is RFC 5424 facility 13, "log audit".
const syslogFacilityAudit = 13

// syslogSink sends events as RFC 5424 messages with a CEF payload over TCP or TLS, framed by
// octet counting (RFC 6587 section 3.4.1, RFC 5425 for TLS).
type syslogSink struct {
	name     string
	addr     string
	tls      *tls.Config // nil for plain TCP
	host     string      // HOSTNAME field and CEF dvchost
	facility int
	timeout  time.Duration
	procID   string

	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

// openSyslogSink opens syslog+tcp://host:port or syslog+tls://host:port with parameters
// ca=/path/ca.pem (TLS roots; default: the system's), server_name=NAME (TLS; default: the
// URL's host), cert=/path&key=/path (TLS client certificate), facility=0..23 (default 13,
// log audit), timeout=10s (dial and write).
func openSyslogSink(u *url.URL, name, host string) (Sink, error) {
	if u.Port() == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("audit: syslog sink URL needs host:port: %s://collector.example.com:6514", u.Scheme)
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("audit: syslog sink URL takes no path")
	}
	q := u.Query()
	s := &syslogSink{
		name:     name,
		addr:     u.Host,
		host:     syslogToken(host, 255),
		facility: syslogFacilityAudit,
		procID:   strconv.Itoa(os.Getpid()),
	}
	var err error
	if s.timeout, err = parseDuration(q, "timeout", 10*time.Second); err != nil {
		return nil, err
	}
	if f := q.Get("facility"); f != "" {
		n, err := strconv.Atoi(f)
		if err != nil || n < 0 || n > 23 {
			return nil, fmt.Errorf("audit: syslog facility %q is not 0..23", f)
		}
		s.facility = n
	}
	allowed := map[string]bool{"name": true, "hostname": true, "timeout": true, "facility": true}
	if u.Scheme == "syslog+tls" {
		for _, k := range []string{"ca", "server_name", "cert", "key"} {
			allowed[k] = true
		}
		cfg, err := tlsClientConfig(q, u.Hostname())
		if err != nil {
			return nil, err
		}
		s.tls = cfg
	}
	for k := range q {
		if !allowed[k] {
			return nil, fmt.Errorf("audit: unknown %s sink parameter %q", u.Scheme, k)
		}
	}
	return s, nil
}

// tlsClientConfig builds a TLS client configuration from the ca, server_name, cert and key
// parameters.
func tlsClientConfig(q url.Values, host string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if sn := q.Get("server_name"); sn != "" {
		cfg.ServerName = sn
	}
	if ca := q.Get("ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("audit: reading sink CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("audit: sink CA file %s holds no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	certFile, keyFile := q.Get("cert"), q.Get("key")
	if (certFile == "") != (keyFile == "") {
		return nil, errors.New("audit: sink parameters cert and key go together")
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("audit: loading sink client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

func (s *syslogSink) Name() string { return s.name }

// Write sends the batch as one write of octet-counted frames. Syslog over TCP has no
// acknowledgement: a batch counts as delivered once the kernel took it. Before each batch
// the connection is probed, so a collector that closed it (restart, idle timeout) is
// noticed and the batch goes to a new connection instead of into a dead one; what a
// collector that crashes after the probe had not yet read can still be lost. Prefer the
// webhook or blob sinks where end-to-end acknowledgement matters.
func (s *syslogSink) Write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	s.buf = s.buf[:0]
	for i := range batch {
		s.buf = s.appendFrame(s.buf, &batch[i])
	}
	if s.conn != nil && !connAlive(s.conn) {
		s.conn.Close()
		s.conn = nil
	}
	if s.conn == nil {
		c, err := s.dial(ctx)
		if err != nil {
			return fmt.Errorf("audit: syslog sink %s: connecting: %w", s.name, err)
		}
		s.conn = c
	}
	deadline := time.Now().Add(s.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = s.conn.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := s.conn.Write(s.buf)
	stop()
	if err != nil {
		s.conn.Close()
		s.conn = nil
		return fmt.Errorf("audit: syslog sink %s: writing: %w", s.name, err)
	}
	return nil
}

func (s *syslogSink) dial(ctx context.Context) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	nd := &net.Dialer{KeepAlive: 30 * time.Second}
	if s.tls == nil {
		return nd.DialContext(ctx, "tcp", s.addr)
	}
	td := &tls.Dialer{NetDialer: nd, Config: s.tls}
	return td.DialContext(ctx, "tcp", s.addr)
}

// connAlive probes an idle connection: a syslog collector never sends, so a read that
// times out means the connection is still open, while EOF or an error means it is not.
func connAlive(c net.Conn) bool {
	if err := c.SetReadDeadline(time.Now().Add(time.Millisecond)); err != nil {
		return false
	}
	var b [1]byte
	_, err := c.Read(b[:])
	_ = c.SetReadDeadline(time.Time{})
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// appendFrame appends one octet-counted RFC 5424 message:
//
//	LEN SP <PRI>1 TIMESTAMP HOSTNAME gatehouse PROCID audit - CEF:0|...
func (s *syslogSink) appendFrame(b []byte, e *gatehouse.AuditEvent) []byte {
	start := len(b)
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(s.facility*8+syslogSeverity(e.Outcome)), 10)
	b = append(b, ">1 "...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, s.host...)
	b = append(b, " gatehouse "...)
	b = append(b, s.procID...)
	b = append(b, " audit - "...)
	b = appendCEF(b, s.host, e)
	msg := b[start:]
	// Prefix the length: build it, then shift the message right.
	var lenBuf [24]byte
	l := strconv.AppendInt(lenBuf[:0], int64(len(msg)), 10)
	l = append(l, ' ')
	b = append(b, l...)
	copy(b[start+len(l):], b[start:len(b)-len(l)])
	copy(b[start:], l)
	return b
}

// syslogSeverity maps an outcome to an RFC 5424 severity: success 6 (informational),
// failure 5 (notice), denied 4 (warning).
func syslogSeverity(outcome string) int {
	switch outcome {
	case gatehouse.OutcomeSuccess:
		return 6
	case gatehouse.OutcomeDenied:
		return 4
	default:
		return 5
	}
}

// syslogToken makes s a valid RFC 5424 header token (PRINTUSASCII, at most max bytes,
// "-" when empty); other bytes become '_'.
func syslogToken(s string, max int) string {
	if s == "" {
		return "-"
	}
	if len(s) > max {
		s = s[:max]
	}
	b := []byte(s)
	for i, c := range b {
		if c < 33 || c > 126 {
			b[i] = '_'
		}
	}
	return string(b)
}

func (s *syslogSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
