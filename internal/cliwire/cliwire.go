// Package cliwire is a client that speaks the Pulumi service protocol the way the stock
// pulumi CLI does (headers, gzip-compressed bodies on the calls the CLI compresses, error
// decoding). Gatehouse's tests drive the server through it; it is the CLI's stand-in where
// no pulumi binary is available.
package cliwire

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client talks to one server.
type Client struct {
	BaseURL string
	Token   string // access token (Authorization: token ...)
	HTTP    *http.Client
}

// New returns a client for baseURL with an access token.
func New(baseURL, token string) *Client {
	return &Client{BaseURL: strings.TrimRight(baseURL, "/"), Token: token, HTTP: http.DefaultClient}
}

// Error is a non-2xx answer, decoded as the CLI decodes it.
type Error struct {
	Status  int
	Code    int    `json:"code"`
	Message string `json:"message"`
	Body    string
	Header  http.Header
}

func (e *Error) Error() string { return fmt.Sprintf("[%d] %s", e.Status, e.Message) }

// Call is one request.
type Call struct {
	Method string
	Path   string
	// LeaseToken, when set, authenticates with "update-token" instead of the access token.
	LeaseToken string
	// NoAuth sends no Authorization header.
	NoAuth bool
	Body   any // marshalled to JSON unless it is []byte (sent as is)
	Gzip   bool
	Header http.Header
}

// Do performs c and decodes a 2xx JSON answer into out (when out is not nil).
func (cl *Client) Do(c Call, out any) error {
	var body io.Reader
	var raw []byte
	if c.Body != nil {
		switch b := c.Body.(type) {
		case []byte:
			raw = b
		default:
			var err error
			if raw, err = json.Marshal(b); err != nil {
				return err
			}
		}
		if c.Gzip {
			var buf bytes.Buffer
			zw := gzip.NewWriter(&buf)
			_, _ = zw.Write(raw)
			_ = zw.Close()
			raw = buf.Bytes()
		}
		body = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(c.Method, cl.BaseURL+c.Path, body)
	if err != nil {
		return err
	}
	// The headers the CLI sends on every call (pkg/backend/httpstate/client/client.go).
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/vnd.pulumi+9")
	req.Header.Set("Accept-Encoding", "gzip")
	req.Header.Set("User-Agent", "pulumi-cli/1 (v3.260.0; linux)")
	if c.Gzip && c.Body != nil {
		req.Header.Set("Content-Encoding", "gzip")
	}
	switch {
	case c.NoAuth:
	case c.LeaseToken != "":
		req.Header.Set("Authorization", "update-token "+c.LeaseToken)
	case cl.Token != "":
		req.Header.Set("Authorization", "token "+cl.Token)
	}
	for k, vs := range c.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	// Disable Go's transparent decompression so that we check Content-Encoding handling
	// the way the CLI does (it accepts gzip and x-gzip only).
	hc := cl.HTTP
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rd io.Reader = resp.Body
	switch enc := resp.Header.Get("Content-Encoding"); enc {
	case "":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			return fmt.Errorf("bad gzip response: %w", err)
		}
		rd = zr
	default:
		return fmt.Errorf("unsupported response Content-Encoding %q", enc)
	}
	b, err := io.ReadAll(rd)
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		e := &Error{Status: resp.StatusCode, Body: string(b), Header: resp.Header}
		if json.Unmarshal(b, e) != nil {
			e.Message = strings.TrimSpace(string(b))
		}
		return e
	}
	if out != nil {
		if len(b) == 0 {
			return fmt.Errorf("unmarshalling response object: empty body (status %d)", resp.StatusCode)
		}
		if raw, ok := out.(*[]byte); ok {
			*raw = b
			return nil
		}
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("unmarshalling response object: %w", err)
		}
	}
	return nil
}

// Status returns the HTTP status of err (0 for nil, -1 for non-HTTP errors).
func Status(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := err.(*Error); ok {
		return e.Status
	}
	return -1
}
