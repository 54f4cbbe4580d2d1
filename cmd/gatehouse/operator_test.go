package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/token"
)

// runCLIErr runs the gatehouse command in-process and returns its output and error.
func runCLIErr(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err = root.ExecuteContext(context.Background())
	return out.String(), errb.String(), err
}

// mustCLI runs a command that must succeed and returns its stdout.
func mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runCLIErr(t, args...)
	if err != nil {
		t.Fatalf("gatehouse %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// TestOrgSetBooleansAreReal: --members-can-create-stacks takes true or false; any other
// word is an error (it used to set false silently).
func TestOrgSetBooleansAreReal(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	for _, bad := range []string{"yes", "1", "on", "enable"} {
		if _, _, err := runCLIErr(t, "org", "set", "acme", "--server", url, "--members-can-create-stacks", bad); err == nil || !strings.Contains(err.Error(), "true or false") {
			t.Errorf("--members-can-create-stacks %s: err %v, want an error saying true or false", bad, err)
		}
	}
	for _, c := range []struct {
		arg  string
		want bool
	}{{"true", true}, {"false", false}, {"TRUE", true}, {"=true", true}} {
		args := []string{"org", "set", "acme", "--server", url, "--json"}
		if strings.HasPrefix(c.arg, "=") {
			args = append(args, "--members-can-delete-stacks"+c.arg)
		} else {
			args = append(args, "--members-can-delete-stacks", c.arg)
		}
		var got map[string]any
		if err := json.Unmarshal([]byte(mustCLI(t, args...)), &got); err != nil {
			t.Fatal(err)
		}
		if got["membersCanDeleteStacks"] != c.want {
			t.Errorf("--members-can-delete-stacks %s: got %v", c.arg, got["membersCanDeleteStacks"])
		}
	}
}

// TestReadOnlyCommandsCreateNothing: a mistyped --data-dir is an error for the commands
// that work on an existing instance, and nothing is created.
func TestReadOnlyCommandsCreateNothing(t *testing.T) {
	isolate(t)
	base := t.TempDir()
	typo := filepath.Join(base, "typo")
	for _, args := range [][]string{
		{"audit", "verify", "--data-dir", typo},
		{"audit", "prune", "--data-dir", typo, "--signing-key", filepath.Join(base, "nokey"), "--before", "1d", "--archive", "file://" + filepath.Join(base, "a.jsonl")},
		{"keys", "rotate", "--data-dir", typo, "--to", newKeyURL(t)},
		{"migrate", "--from-data-dir", typo, "--to", "sqlite://" + filepath.Join(base, "copy.db")},
		{"audit", "public-key", "--data-dir", typo},
	} {
		_, _, err := runCLIErr(t, args...)
		if err == nil {
			t.Errorf("%v succeeded on a missing data directory", args)
		}
		if _, serr := os.Stat(typo); !errors.Is(serr, fs.ErrNotExist) {
			t.Fatalf("%v created %s (err %v)", args, typo, err)
		}
	}
	_, _, err := runCLIErr(t, "audit", "verify", "--data-dir", typo)
	if err == nil || !strings.Contains(err.Error(), "no Gatehouse database") {
		t.Errorf("audit verify: %v, want 'no Gatehouse database'", err)
	}
}

func newKeyURL(t *testing.T) string {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return "base64key://" + base64.URLEncoding.EncodeToString(k)
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// lockedBuffer is a bytes.Buffer safe for a server goroutine and the test.
type lockedBuffer struct {
	mu chan struct{}
	b  bytes.Buffer
}

func newLockedBuffer() *lockedBuffer { return &lockedBuffer{mu: make(chan struct{}, 1)} }
func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.b.String()
}

// startServe runs `gatehouse serve args...` in-process until the test ends and returns
// its stderr.
func startServe(t *testing.T, args ...string) *lockedBuffer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errb := newLockedBuffer()
	root := newRoot()
	root.SetOut(io.Discard)
	root.SetErr(errb)
	root.SetArgs(append([]string{"serve"}, args...))
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v\n%s", err, errb.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return errb
}

func waitFor(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// TestServeFirstStartCanLogIn: the README's first command (serve on a new data directory)
// says loudly that it creates a new instance and leaves a way to log in: the first admin's
// token in a 0600 file, never in the log.
func TestServeFirstStartCanLogIn(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "data")
	addr := freeAddr(t)
	errb := startServe(t, "--data-dir", dir, "--addr", addr, "--log-format", "text")
	tokPath := filepath.Join(dir, AdminTokenFile)
	var tok string
	waitFor(t, "the admin token file", func() bool {
		b, err := os.ReadFile(tokPath)
		tok = strings.TrimSpace(string(b))
		return err == nil && tok != ""
	})
	if fi, _ := os.Stat(tokPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("token file mode %o", fi.Mode().Perm())
	}
	var code int
	var user map[string]any
	waitFor(t, "the server", func() bool {
		req, _ := http.NewRequest("GET", "http://"+addr+"/api/user", nil)
		req.Header.Set("Authorization", "token "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		code = resp.StatusCode
		_ = json.NewDecoder(resp.Body).Decode(&user)
		return true
	})
	if code != 200 || user["name"] != "admin" {
		t.Fatalf("GET /api/user with the first-start token: %d %v", code, user)
	}
	log := errb.String()
	for _, want := range []string{"NEW Gatehouse instance", "pulumi login http://" + addr, tokPath} {
		if !strings.Contains(log, want) {
			t.Errorf("serve's output lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, tok) {
		t.Errorf("serve printed the admin token:\n%s", log)
	}
}

// TestKeysRotateRefusedWhileServing: a running server holds the instance lock; keys
// rotate is refused (a stack created during a rotation would become unreadable).
func TestKeysRotateRefusedWhileServing(t *testing.T) {
	isolate(t)
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.Open(context.Background(), app.Config{DataDir: dir}, httpapi.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	to := newKeyURL(t)
	_, _, err = runCLIErr(t, "keys", "rotate", "--data-dir", dir, "--to", to)
	if err == nil || !strings.Contains(err.Error(), "server is running") {
		t.Fatalf("keys rotate while serving: %v, want refused", err)
	}
	srv.Close()
	if out := mustCLI(t, "keys", "rotate", "--data-dir", dir, "--to", to); !strings.Contains(out, "re-wrapped") {
		t.Fatalf("keys rotate after stop: %s", out)
	}
	// And now a server on the old key file is refused (canary), one on the new key starts.
	if _, err := app.Open(context.Background(), app.Config{DataDir: dir}, httpapi.DefaultConfig(), log); err == nil {
		t.Fatal("server started with the old key after rotation")
	}
	srv, err = app.Open(context.Background(), app.Config{DataDir: dir, Keyring: to}, httpapi.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
}

// TestAdminCLISaysWhatChanged: silent successes print what changed; --json prints
// objects with the API's names and words; a repeated grant is an explicit update; two
// scopes are refused clearly; token IDs can be given by unique prefix.
func TestAdminCLISaysWhatChanged(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	cli := func(args ...string) string { return mustCLI(t, append(args, "--server", url)...) }

	if out := cli("team", "create", "ops", "--org", "acme"); !strings.Contains(out, "created team ops") {
		t.Errorf("team create: %q", out)
	}
	out := cli("team", "ls", "--org", "acme", "--json")
	if !strings.Contains(out, `"displayName"`) || strings.Contains(out, `"DisplayName"`) {
		t.Errorf("team ls --json uses Go field names:\n%s", out)
	}
	out = cli("org", "show", "acme", "--json")
	if !strings.Contains(out, `"defaultStackPermission": "none"`) {
		t.Errorf("org show --json: permission not a word:\n%s", out)
	}
	if out := cli("grant", "add", "ops", "--org", "acme", "--project", "web", "--permission", "read"); !strings.Contains(out, "granted team ops read on project web") {
		t.Errorf("grant add: %q", out)
	}
	if out := cli("grant", "add", "ops", "--org", "acme", "--project", "web", "--permission", "write"); !strings.Contains(out, "from read to write") {
		t.Errorf("repeated grant add: %q", out)
	}
	out = cli("grant", "add", "ops", "--org", "acme", "--project", "web", "--permission", "write", "--json")
	if !strings.Contains(out, `"change": "unchanged"`) {
		t.Errorf("grant add --json: %s", out)
	}
	_, _, err := runCLIErr(t, "grant", "add", "ops", "--org", "acme", "--stack", "web/nosuch", "--project", "web", "--server", url)
	if err == nil || !strings.Contains(err.Error(), "exactly one scope") {
		t.Errorf("two scopes: %v", err)
	}
	code, body := apiCall(t, url, admin, "PATCH", "/api/orgs/acme/teams/ops", map[string]any{"addGrant": map[string]any{"stack": "web/nosuch", "project": "web", "permission": "read"}})
	if code != 400 || !strings.Contains(body["message"].(string), "exactly one") {
		t.Errorf("API with two scopes: %d %v", code, body)
	}
	if out := cli("member", "set-role", "alice", "admin", "--org", "acme"); !strings.Contains(out, "alice is now admin") {
		t.Errorf("member set-role: %q", out)
	}

	// Token IDs: unique prefixes are accepted.
	code, created := apiCall(t, url, admin, "POST", "/api/user/tokens", map[string]any{"name": "laptop"})
	if code != 200 {
		t.Fatal(code, created)
	}
	id := created["id"].(string)
	if out := cli("token", "revoke", id[:8]); !strings.Contains(out, "revoked token "+id) {
		t.Errorf("token revoke by prefix: %q", out)
	}
}

// TestClientFlags: --server without a scheme works on loopback and is a clear error
// elsewhere; --token on the command line and plain http to another host warn.
func TestClientFlags(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	hostPort := strings.TrimPrefix(url, "http://")
	t.Setenv("GATEHOUSE_TOKEN", admin)
	if out := mustCLI(t, "member", "ls", "--org", "acme", "--server", hostPort); !strings.Contains(out, "alice") {
		t.Errorf("--server %s: %q", hostPort, out)
	}
	_, _, err := runCLIErr(t, "member", "ls", "--org", "acme", "--server", "gatehouse.example.com:8080")
	if err == nil || !strings.Contains(err.Error(), "https://gatehouse.example.com:8080") {
		t.Errorf("--server without scheme on another host: %v", err)
	}
	t.Setenv("GATEHOUSE_TOKEN", "")
	_, errOut, err := runCLIErr(t, "member", "ls", "--org", "acme", "--server", url, "--token", admin)
	if err != nil || !strings.Contains(errOut, "--token on the command line") {
		t.Errorf("--token: err %v, stderr %q", err, errOut)
	}
	tf := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(tf, []byte(admin+"\n"), 0o600)
	_, errOut, err = runCLIErr(t, "member", "ls", "--org", "acme", "--server", url, "--token-file", tf)
	if err != nil || errOut != "" {
		t.Errorf("--token-file: err %v, stderr %q", err, errOut)
	}
	_, errOut, _ = runCLIErr(t, "member", "ls", "--org", "acme", "--server", "http://gatehouse.invalid:1", "--token-file", tf)
	if !strings.Contains(errOut, "unencrypted") {
		t.Errorf("plain http to another host: no warning: %q", errOut)
	}
}

// TestInvalidEnvironmentIsAnError: a flag's environment variable the flag cannot parse is
// a start-up error naming the variable, not silently the default.
func TestInvalidEnvironmentIsAnError(t *testing.T) {
	isolate(t)
	dir := filepath.Join(t.TempDir(), "data")
	for env, val := range map[string]string{
		"GATEHOUSE_MAX_BODY_BYTES":         "1GB",
		"GATEHOUSE_AUDIT_CHECKPOINT_EVERY": "5 minutes",
		"GATEHOUSE_REQUEST_LOG":            "maybe",
	} {
		t.Run(env, func(t *testing.T) {
			t.Setenv(env, val)
			_, _, err := runCLIErr(t, "serve", "--data-dir", dir, "--addr", "127.0.0.1:0")
			if err == nil || !strings.Contains(err.Error(), env) {
				t.Fatalf("serve with %s=%s: %v", env, val, err)
			}
		})
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused start created %s", dir)
	}
}

// TestUnauthorizedSaysWhy: 401s keep the CLI's shape and say which: missing, malformed,
// unknown, revoked.
func TestUnauthorizedSaysWhy(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	code, created := apiCall(t, url, admin, "POST", "/api/user/tokens", map[string]any{"name": "old"})
	if code != 200 {
		t.Fatal(code, created)
	}
	old := created["tokenValue"].(string)
	if code, out := apiCall(t, url, admin, "DELETE", "/api/user/tokens/"+created["id"].(string), nil); code != 200 && code != 204 {
		t.Fatal(code, out)
	}
	code, short := apiCall(t, url, admin, "POST", "/api/user/tokens", map[string]any{"name": "short", "expires": time.Now().Add(time.Second).Unix() + 1})
	if code != 200 {
		t.Fatal(code, short)
	}
	time.Sleep(time.Until(time.Unix(int64(short["expires"].(float64)), 0)) + 50*time.Millisecond)
	for _, c := range []struct{ tok, want string }{
		{short["tokenValue"].(string), "expired at"},
		{"", "No credentials provided"},
		{"not-a-token", "malformed"},
		{mustToken(t, token.Personal), "unknown token"},
		{old, "revoked"},
	} {
		code, body := apiCall(t, url, c.tok, "GET", "/api/user", nil)
		msg, _ := body["message"].(string)
		if code != 401 || body["code"] != float64(401) || !strings.Contains(msg, c.want) {
			t.Errorf("token %.12q: %d %v, want 401 saying %q", c.tok, code, body, c.want)
		}
	}
}

// TestVersion: `gatehouse version` and `--version` print the version and Go version from
// the build information.
func TestVersion(t *testing.T) {
	out := mustCLI(t, "version")
	if !strings.HasPrefix(out, "gatehouse ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("version: %q", out)
	}
	out = mustCLI(t, "--version")
	if !strings.HasPrefix(out, "gatehouse ") || !strings.Contains(out, runtime.Version()) {
		t.Errorf("--version: %q", out)
	}
	var bi map[string]any
	if err := json.Unmarshal([]byte(mustCLI(t, "version", "--json")), &bi); err != nil || bi["go"] != runtime.Version() {
		t.Errorf("version --json: %v %v", bi, err)
	}
}

// TestOrgAndStackLs: org ls lists the caller's organizations with their role; stack ls the
// stacks they can see (all pages).
func TestOrgAndStackLs(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	if out := mustCLI(t, "org", "ls", "--server", url); !strings.Contains(out, "acme") || !strings.Contains(out, "admin") {
		t.Errorf("org ls: %q", out)
	}
	for _, name := range []string{"dev", "prod"} {
		if code, out := apiCall(t, url, admin, "POST", "/api/stacks/acme/web", map[string]any{"stackName": name}); code != 200 {
			t.Fatal(code, out)
		}
	}
	out := mustCLI(t, "stack", "ls", "--server", url)
	if !strings.Contains(out, "acme/web/dev") || !strings.Contains(out, "acme/web/prod") {
		t.Errorf("stack ls: %q", out)
	}
	var got struct {
		Stacks []map[string]any `json:"stacks"`
	}
	if err := json.Unmarshal([]byte(mustCLI(t, "stack", "ls", "--server", url, "--json", "--org", "acme")), &got); err != nil || len(got.Stacks) != 2 || got.Stacks[0]["stackName"] == nil {
		t.Errorf("stack ls --json: %v %v", got, err)
	}
}

// TestUserLsAndDisable: user ls lists every user; user disable ends every personal token
// of the person at once, and they cannot authenticate afterwards.
func TestUserLsAndDisable(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	bobTok := strings.TrimSpace(mustCLI(t, "user", "create", "bob", "--org", "acme", "--server", url))
	code, second := apiCall(t, url, bobTok, "POST", "/api/user/tokens", map[string]any{"name": "laptop"})
	if code != 200 {
		t.Fatal(code, second)
	}
	out := mustCLI(t, "user", "ls", "--server", url)
	if !strings.Contains(out, "alice") || !strings.Contains(out, "bob") || strings.Contains(out, "disabled") {
		t.Errorf("user ls: %q", out)
	}
	if out := mustCLI(t, "user", "disable", "bob", "--server", url); !strings.Contains(out, "disabled bob") || !strings.Contains(out, "revoked 2 personal tokens") {
		t.Errorf("user disable: %q", out)
	}
	for _, tok := range []string{bobTok, second["tokenValue"].(string)} {
		code, body := apiCall(t, url, tok, "GET", "/api/user", nil)
		if code != 401 || !strings.Contains(body["message"].(string), "disabled") {
			t.Errorf("a disabled user's token: %d %v", code, body)
		}
	}
	var got struct {
		Users []map[string]any `json:"users"`
	}
	json.Unmarshal([]byte(mustCLI(t, "user", "ls", "--server", url, "--json")), &got)
	if len(got.Users) != 2 || got.Users[1]["name"] != "bob" || got.Users[1]["disabled"] == nil {
		t.Errorf("user ls --json: %v", got)
	}
	if _, _, err := runCLIErr(t, "user", "disable", "alice", "--server", url); err == nil {
		t.Error("an admin disabled themselves")
	}
}
