package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with the given serial and
// returns it (as its own root).
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(serial),
		Subject:               pkix.Name{CommonName: "gatehouse test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return cert
}

// TestServeTLS: --tls-cert/--tls-key serve HTTPS (TLS 1.2 at least) with HSTS, and a
// renewed certificate is served without a restart.
func TestServeTLS(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	addr := freeAddr(t)
	startServe(t, "--data-dir", filepath.Join(dir, "data"), "--addr", addr, "--tls-cert", certFile, "--tls-key", keyFile)

	get := func(root *x509.Certificate, maxVersion uint16) (*http.Response, error) {
		pool := x509.NewCertPool()
		pool.AddCert(root)
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: maxVersion}, DisableKeepAlives: true}}
		resp, err := c.Get("https://" + addr + "/healthz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	var resp *http.Response
	waitFor(t, "the TLS server", func() bool {
		var err error
		resp, err = get(first, 0)
		return err == nil
	})
	if resp.StatusCode != 200 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("GET /healthz over TLS: %d %+v", resp.StatusCode, resp.TLS)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.Contains(h, "max-age=") {
		t.Errorf("no HSTS header: %q", h)
	}
	if _, err := get(first, tls.VersionTLS11); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// Renewal: new files, new mtime; the next handshake after the check interval uses it.
	second := writeCert(t, certFile, keyFile, 2)
	future := time.Now().Add(time.Minute)
	os.Chtimes(certFile, future, future)
	os.Chtimes(keyFile, future, future)
	waitFor(t, "the renewed certificate", func() bool {
		resp, err := get(second, 0)
		return err == nil && resp.TLS.PeerCertificates[0].SerialNumber.Int64() == 2
	})
	// Plain http on the TLS port is not served.
	if r, err := http.Get("http://" + addr + "/healthz"); err == nil && r.StatusCode == 200 {
		t.Error("plain http served on the TLS port")
	}
}

// TestServePlainHTTPWarnsOffLoopback: serving plain HTTP on a non-loopback address warns.
func TestServePlainHTTPWarnsOffLoopback(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Skip("cannot listen on 0.0.0.0: ", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	errb := startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text")
	waitFor(t, "the server", func() bool { return strings.Contains(errb.String(), "gatehouse serving") })
	if !strings.Contains(errb.String(), "plain HTTP on a non-loopback address") {
		t.Errorf("no warning:\n%s", errb.String())
	}
}

// TestRequestLogAndMetrics: one info line per request (method, route pattern, status,
// duration, caller, request id; never the token), off with --request-log=false; /metrics
// has failed authentications by reason, build info, database pool stats and audit write
// failures.
func TestRequestLogAndMetrics(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	errb := startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text")
	var tok string
	waitFor(t, "the admin token", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return tok != ""
	})
	call := func(tok, path string) int {
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if tok != "" {
			req.Header.Set("Authorization", "token "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "the server", func() bool { return call(tok, "/api/orgs/default") == 200 })
	if code := call("not-a-token", "/api/user"); code != 401 {
		t.Fatalf("malformed token: %d", code)
	}
	waitFor(t, "the request log line", func() bool { return strings.Contains(errb.String(), "route=/api/orgs/{org}") })
	var line string
	for _, l := range strings.Split(errb.String(), "\n") {
		if strings.Contains(l, "msg=request") && strings.Contains(l, "route=/api/orgs/{org}") {
			line = l
		}
	}
	for _, want := range []string{"level=INFO", "method=GET", "status=200", "duration_ms=", "actor=admin", "request_id="} {
		if !strings.Contains(line, want) {
			t.Errorf("request log line lacks %q: %s", want, line)
		}
	}
	if strings.Contains(errb.String(), tok) || strings.Contains(errb.String(), "not-a-token") {
		t.Error("a token reached the log")
	}

	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := string(b)
	for _, want := range []string{
		`gatehouse_auth_failures_total{reason="malformed"} 1`,
		`gatehouse_auth_failures_total{reason="revoked"} 0`,
		`gatehouse_build_info{`,
		`go_sql_open_connections{db_name="sqlite"}`,
		`gatehouse_audit_write_failures_total 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// --request-log=false: no request lines.
	dir2 := t.TempDir()
	addr2 := freeAddr(t)
	errb2 := startServe(t, "--data-dir", dir2, "--addr", addr2, "--log-format", "text", "--request-log=false")
	waitFor(t, "the second server", func() bool {
		r, err := http.Get("http://" + addr2 + "/healthz")
		if err == nil {
			r.Body.Close()
		}
		return err == nil
	})
	if strings.Contains(errb2.String(), "msg=request") {
		t.Errorf("--request-log=false still logs requests:\n%s", errb2.String())
	}
}

// TestHealthcheck: the container health check exits 0 against a serving server and fails
// where nothing answers.
func TestHealthcheck(t *testing.T) {
	isolate(t)
	addr := freeAddr(t)
	if _, _, err := runCLIErr(t, "healthcheck", "--url", "http://"+addr+"/healthz"); err == nil {
		t.Fatal("healthcheck passed with no server")
	}
	startServe(t, "--data-dir", t.TempDir(), "--addr", addr, "--request-log=false")
	waitFor(t, "a healthy server", func() bool {
		_, _, err := runCLIErr(t, "healthcheck", "--url", "http://"+addr+"/healthz")
		return err == nil
	})
}

// TestAuditVerifyRemote: a site administrator verifies the whole audit log through the API.
func TestAuditVerifyRemote(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	addr := freeAddr(t)
	startServe(t, "--data-dir", dir, "--addr", addr, "--request-log=false")
	var tok string
	waitFor(t, "the admin token", func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, AdminTokenFile))
		tok = strings.TrimSpace(string(b))
		return tok != ""
	})
	t.Setenv("GATEHOUSE_TOKEN", tok)
	var out string
	waitFor(t, "the server", func() bool {
		var err error
		out, _, err = runCLIErr(t, "audit", "verify-remote", "--server", addr)
		return err == nil
	})
	if !strings.Contains(out, "OK") || !strings.Contains(out, "checkpoints:") {
		t.Errorf("audit verify-remote: %q", out)
	}
}
