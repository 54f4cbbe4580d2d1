package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// Webhook request headers.
const (
	// HeaderSignature carries "sha256=" and the hex HMAC-SHA256 of the request body, keyed
	// with the secret named by hmac_secret_env.
	HeaderSignature = "X-Gatehouse-Signature"
	// HeaderBatch carries "FIRST-LAST", the seq range of the batch; a repeated batch has
	// the same value, so receivers can use it to drop duplicates.
	HeaderBatch = "X-Gatehouse-Audit-Batch"
)

type webhookSink struct {
	name   string
	target string // the URL posted to, without our parameters
	client *http.Client
	secret []byte
	buf    bytes.Buffer
}

// openWebhookSink opens https://host/path[?hmac_secret_env=VAR&timeout=30s&ca=/path].
// Plain http is allowed only to loopback addresses (checked on every connection). The
// parameters name, hostname, hmac_secret_env, timeout and ca are Gatehouse's and are
// removed from the URL that is posted to; other query parameters are kept.
func openWebhookSink(u *url.URL, name string) (Sink, error) {
	if u.Host == "" {
		return nil, errors.New("audit: webhook sink URL needs a host")
	}
	q := u.Query()
	loopbackOnly := u.Scheme == "http"
	if loopbackOnly && !isLoopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("audit: webhook sink %s: http:// is allowed only for loopback hosts; use https://", name)
	}
	timeout, err := parseDuration(q, "timeout", 30*time.Second)
	if err != nil {
		return nil, err
	}
	s := &webhookSink{name: name}
	if env := q.Get("hmac_secret_env"); env != "" {
		v := os.Getenv(env)
		if v == "" {
			return nil, fmt.Errorf("audit: webhook sink %s: environment variable %s (hmac_secret_env) is empty or unset", name, env)
		}
		s.secret = []byte(v)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if ca := q.Get("ca"); ca != "" {
		cfg, err := tlsClientConfig(url.Values{"ca": {ca}}, u.Hostname())
		if err != nil {
			return nil, err
		}
		tr.TLSClientConfig = cfg
	} else {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if loopbackOnly {
		tr.Proxy = nil
		d := &net.Dialer{Timeout: timeout}
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			if ta, ok := c.RemoteAddr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
				c.Close()
				return nil, errors.New("http:// webhook resolved to a non-loopback address")
			}
			return c, nil
		}
	}
	s.client = &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect could send the batch elsewhere (or to plain http): treat it as a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	target := *u
	target.RawQuery = queryWithout(u, "name", "hostname", "hmac_secret_env", "timeout", "ca").Encode()
	target.Fragment = ""
	s.target = target.String()
	return s, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func (s *webhookSink) Name() string { return s.name }

// Write posts the batch as a JSON array of events (the JSONL objects). Any 2xx status is
// the acknowledgement; anything else, a redirect included, is an error and the batch is
// retried.
func (s *webhookSink) Write(ctx context.Context, batch []gatehouse.AuditEvent) error {
	if len(batch) == 0 {
		return nil
	}
	s.buf.Reset()
	s.buf.WriteByte('[')
	var line []byte
	for i := range batch {
		var err error
		line, err = appendJSON(line[:0], &batch[i])
		if err != nil {
			return fmt.Errorf("audit: encoding event %d: %w", batch[i].Seq, err)
		}
		if i > 0 {
			s.buf.WriteByte(',')
		}
		s.buf.Write(bytes.TrimRight(line, "\n"))
	}
	s.buf.WriteByte(']')
	body := s.buf.Bytes()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.target, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("audit: webhook sink %s: %v", s.name, redactErr(err))
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "gatehouse/"+gatehouse.Version)
	req.Header.Set(HeaderBatch, strconv.FormatInt(batch[0].Seq, 10)+"-"+strconv.FormatInt(batch[len(batch)-1].Seq, 10))
	if s.secret != nil {
		mac := hmac.New(sha256.New, s.secret)
		mac.Write(body)
		req.Header.Set(HeaderSignature, "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("audit: webhook sink %s: %v", s.name, redactErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("audit: webhook sink %s: HTTP status %d", s.name, resp.StatusCode)
	}
	return nil
}

// redactErr drops the URL (which may carry credentials) from an HTTP client error.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func (s *webhookSink) Close() error {
	s.client.CloseIdleConnections()
	return nil
}
