package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/sso/ssotest"
)

// TestBrowserLogin: the stock CLI's `pulumi login` without a token, through an OIDC
// sign-in. The CLI runs under script(1) (it offers the browser only on a terminal); the
// browser it opens is a fake xdg-open that writes the URL to a file; an HTTP client plays
// the browser through Gatehouse's sign-in, a real OpenID provider on loopback (zitadel's
// example OP) and the confirmation form, and ends at the CLI's listener. Then `pulumi
// whoami` answers as the person.
func TestBrowserLogin(t *testing.T) {
	pulumi, err := exec.LookPath("pulumi")
	if err != nil {
		skipLoudly(t, "no `pulumi` CLI on PATH; install the stock Pulumi CLI to run the browser-login test")
	}
	scriptBin, err := exec.LookPath("script")
	if err != nil {
		skipLoudly(t, "no script(1) on PATH: `pulumi login` offers the browser only on a terminal")
	}
	bin := gatehouseBinary(t)
	dataDir := t.TempDir()
	admin := bootstrap(t, bin, dataDir, "acme", "alice")
	addr := freeAddr(t)
	base := "http://" + addr
	op := ssotest.StartOP(t, base+sso.OIDCCallbackPath("acme"), ssotest.User{ID: "idp-dana", Username: "dana@idp.test", Password: "pw", Email: "dana@example.com", EmailVerified: true, First: "Dana"})
	startServer(t, bin, dataDir, addr, "--allow-private-issuers")
	body, _ := json.Marshal(map[string]any{"jitRole": "member", "oidc": map[string]any{"issuer": op.Issuer, "clientId": op.ClientID, "clientSecret": op.ClientSecret}})
	req, _ := http.NewRequest("PUT", base+"/api/orgs/acme/sso", bytes.NewReader(body))
	req.Header.Set("Authorization", "token "+admin)
	req.Header.Set("Content-Type", "application/json")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatalf("PUT sso config: %v %v", resp, err)
	}

	// The fake browser.
	tools := t.TempDir()
	urlFile := filepath.Join(t.TempDir(), "opened-url")
	opener := "#!/bin/sh\nprintf '%s' \"$1\" > " + urlFile + "\n"
	for _, name := range []string{"xdg-open", "x-www-browser", "www-browser"} {
		if err := os.WriteFile(filepath.Join(tools, name), []byte(opener), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	home := t.TempDir()
	var env []string
	for _, kv := range pulumiEnv(home, "") {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PULUMI_ACCESS_TOKEN", "CI", "GITHUB_ACTIONS", "GITLAB_CI", "TF_BUILD", "JENKINS_URL", "BUILDKITE", "TRAVIS", "CIRCLECI", "TERM", "PATH", "BROWSER":
			continue
		}
		env = append(env, kv)
	}
	env = append(env, "PATH="+tools+string(os.PathListSeparator)+os.Getenv("PATH"), "BROWSER="+filepath.Join(tools, "xdg-open"),
		"TERM=xterm", "PULUMI_CONSOLE_DOMAIN="+addr)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	login := exec.CommandContext(ctx, scriptBin, "-qefc", pulumi+" login "+base, "/dev/null")
	login.Env = env
	stdin, err := login.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out syncBuffer
	login.Stdout, login.Stderr = &out, &out
	if err := login.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- login.Wait() }()
	// ENTER at the prompt: log in with the browser.
	var opened string
	for deadline := time.Now().Add(90 * time.Second); opened == "" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if strings.Contains(out.String(), "ENTER") {
			_, _ = io.WriteString(stdin, "\r")
		}
		if b, err := os.ReadFile(urlFile); err == nil && len(b) > 0 {
			opened = string(b)
		}
	}
	if opened == "" {
		t.Fatalf("the CLI opened no browser; its output:\n%s", out.String())
	}
	cliURL, err := url.Parse(opened)
	if err != nil || cliURL.Host != addr || cliURL.Path != "/cli-login" {
		t.Fatalf("the CLI opened %q, want %s/cli-login?...", opened, base)
	}

	// The browser.
	jar, _ := cookiejar.New(nil)
	br := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(u string) (*http.Response, string) {
		resp, err := br.Get(u)
		if err != nil {
			t.Fatalf("GET %s: %v", u, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	if resp, page := get(opened); resp.StatusCode != 200 || !strings.Contains(page, "Sign in") {
		t.Fatalf("GET %s = %d %s", opened, resp.StatusCode, page)
	}
	ret := "/cli-login?" + cliURL.RawQuery
	resp, _ := get(base + "/login/acme/sso/oidc?return=" + url.QueryEscape(ret))
	cb := op.Login(t, resp.Header.Get("Location"), "dana@idp.test", "pw")
	if resp, page := get(cb.String()); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("OIDC callback = %d %s", resp.StatusCode, page)
	}
	_, page := get(base + ret)
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`).FindAllStringSubmatch(page, -1) {
		form.Set(m[1], strings.NewReplacer("&amp;", "&", "&#43;", "+", "&#39;", "'", "&#34;", `"`, "&lt;", "<", "&gt;", ">").Replace(m[2]))
	}
	preq, _ := http.NewRequest("POST", base+"/cli-login", strings.NewReader(form.Encode()))
	preq.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	preq.Header.Set("Origin", base)
	presp, err := br.Do(preq)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	to := presp.Header.Get("Location")
	if presp.StatusCode != http.StatusFound || !strings.HasPrefix(to, "http://127.0.0.1:") {
		t.Fatalf("POST /cli-login = %d to %q", presp.StatusCode, to)
	}
	// The CLI's listener takes the token and sends the browser to /welcome/cli.
	if resp, page := get(to); resp.StatusCode/100 != 3 || !strings.Contains(resp.Header.Get("Location"), "/welcome/cli") {
		t.Fatalf("the CLI's listener answered %d %q %s", resp.StatusCode, resp.Header.Get("Location"), page)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("pulumi login: %v\n%s", err, out.String())
		}
	case <-ctx.Done():
		t.Fatalf("pulumi login did not finish:\n%s", out.String())
	}
	_ = stdin.Close()
	who := exec.CommandContext(ctx, pulumi, "whoami")
	who.Env = env
	b, err := who.CombinedOutput()
	if err != nil || strings.TrimSpace(string(b)) != "dana" {
		t.Fatalf("pulumi whoami = %q, %v; want dana", b, err)
	}
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
