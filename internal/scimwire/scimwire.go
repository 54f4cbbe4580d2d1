// Package scimwire is a minimal SCIM client for tests: it sends requests the way identity
// providers do (Authorization: Bearer, application/scim+json) and returns the raw answer.
package scimwire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Client talks to one organization's service provider (BaseURL is .../scim/v2/{org}).
type Client struct {
	BaseURL string
	Token   string
	// Scheme is the Authorization scheme ("Bearer" when empty).
	Scheme string
	HTTP   *http.Client
}

// Response is an answer.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	// JSON is the body decoded as an object (nil when it is not one).
	JSON map[string]any
}

// Do sends a request. body may be nil, a string or []byte (sent as-is) or any value (JSON).
func (c *Client) Do(method, path string, body any) (*Response, error) {
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.BaseURL+path, rd)
	if err != nil {
		return nil, err
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json; charset=utf-8")
	}
	req.Header.Set("Accept", "application/scim+json")
	if c.Token != "" {
		scheme := c.Scheme
		if scheme == "" {
			scheme = "Bearer"
		}
		req.Header.Set("Authorization", scheme+" "+c.Token)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	r := &Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	_ = json.Unmarshal(b, &r.JSON)
	return r, nil
}

// String returns a field of the JSON body as a string ("" when absent).
func (r *Response) String(key string) string {
	if r.JSON == nil {
		return ""
	}
	switch v := r.JSON[key].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Resources returns the Resources of a ListResponse.
func (r *Response) Resources() []map[string]any {
	var out []map[string]any
	if r.JSON == nil {
		return nil
	}
	list, _ := r.JSON["Resources"].([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func (r *Response) GoString() string { return fmt.Sprintf("HTTP %d %s", r.Status, r.Body) }
