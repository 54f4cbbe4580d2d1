package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/token"
)

// runCLI runs the gatehouse command in-process and returns its output and exit status.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	root := newRoot()
	var out, errb bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errb)
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	code = 0
	if err != nil {
		var ee exitError
		if !errors.As(err, &ee) {
			t.Fatalf("gatehouse %s: %v (not an exit status)\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out.String(), errb.String())
		}
		code = int(ee)
		errb.WriteString(err.Error())
	}
	return out.String(), errb.String(), code
}

// isolate keeps the developer's environment out of the command.
func isolate(t *testing.T) {
	for _, k := range []string{"GATEHOUSE_SERVER", "GATEHOUSE_TOKEN", "PULUMI_ACCESS_TOKEN"} {
		t.Setenv(k, "")
	}
}

type gitRepo struct {
	t   *testing.T
	dir string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git not found in PATH")
	}
	t.Setenv("GIT_CONFIG_GLOBAL", os.DevNull)
	t.Setenv("GIT_CONFIG_NOSYSTEM", "1")
	r := &gitRepo{t: t, dir: t.TempDir()}
	r.git("init", "-q")
	return r
}

func (r *gitRepo) git(args ...string) string {
	r.t.Helper()
	full := append([]string{"-C", r.dir, "-c", "user.name=x", "-c", "user.email=x@example.com",
		"-c", "init.defaultBranch=main", "-c", "commit.gpgSign=false"}, args...)
	out, err := exec.Command("git", full...).CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (r *gitRepo) write(name, content string) {
	r.t.Helper()
	p := filepath.Join(r.dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

func mustToken(t *testing.T, k token.Kind) string {
	t.Helper()
	v, err := token.New(k)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// noValues fails if any of the token values appears in s.
func noValues(t *testing.T, s string, values ...string) {
	t.Helper()
	for _, v := range values {
		if strings.Contains(s, v) || strings.Contains(s, v[len(v)-20:]) {
			t.Fatalf("output carries a token value:\n%s", s)
		}
	}
}

// leakRepo is a repository whose history holds committed (then removed) a token, and whose
// work tree holds an uncommitted token and a look-alike.
type leakRepo struct {
	*gitRepo
	committed, untracked, fake string
	added                      string
}

func newLeakRepo(t *testing.T, committed, untracked string) *leakRepo {
	r := &leakRepo{gitRepo: newGitRepo(t), committed: committed, untracked: untracked}
	r.write("README.md", "# app\n")
	r.commit("init")
	r.write("config/ci.env", "# CI settings\nexport PULUMI_ACCESS_TOKEN="+committed+"\n")
	r.added = r.gitRepo.commit("add CI settings")
	r.write("config/ci.env", "# CI settings\nexport PULUMI_ACCESS_TOKEN=${{ secrets.PULUMI_ACCESS_TOKEN }}\n")
	r.gitRepo.commit("remove the token")
	fake := []byte(untracked)
	fake[len(fake)-1] ^= 1 // a look-alike: right shape, wrong checksum
	r.fake = string(fake)
	r.write("notes.txt", "token: "+untracked+"\nlook-alike: "+r.fake+"\n")
	return r
}

func TestScanFilesAndHistory(t *testing.T) {
	isolate(t)
	committed, untracked := mustToken(t, token.Team), mustToken(t, token.Personal)
	r := newLeakRepo(t, committed, untracked)
	short := r.added[:7]
	treeLine := filepath.Join(r.dir, "notes.txt") + ":1:8: pat token " + token.Redact(untracked)
	histLine := "config/ci.env:2:28: team token " + token.Redact(committed) + " commit " + short

	// The top of a work tree: the files and the history.
	out, errOut, code := runCLI(t, "scan", r.dir)
	if code != 1 {
		t.Fatalf("exit status %d, want 1\n%s\n%s", code, out, errOut)
	}
	if want := treeLine + "\n" + histLine + "\n"; out != want {
		t.Fatalf("output:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errOut, "2 Gatehouse token(s) found") {
		t.Errorf("stderr: %s", errOut)
	}
	noValues(t, out+errOut, committed, untracked, r.fake)

	// --no-history: the work tree only.
	out, _, code = runCLI(t, "scan", "--no-history", r.dir)
	if code != 1 || out != treeLine+"\n" {
		t.Fatalf("--no-history: exit %d, output:\n%s", code, out)
	}
	// A subdirectory is not the top of the work tree: no history unless asked.
	out, errOut, code = runCLI(t, "scan", filepath.Join(r.dir, "config"))
	if code != 0 || out != "" || !strings.Contains(errOut, "no Gatehouse tokens found") {
		t.Fatalf("subdirectory: exit %d, output:\n%s%s", code, out, errOut)
	}
	out, _, code = runCLI(t, "scan", "--history", filepath.Join(r.dir, "config"))
	if code != 1 || out != histLine+"\n" {
		t.Fatalf("--history on a subdirectory: exit %d, output:\n%s", code, out)
	}

	// JSON: no values, their digests.
	out, _, code = runCLI(t, "scan", "--json", r.dir)
	if code != 1 {
		t.Fatalf("--json: exit %d", code)
	}
	var doc struct {
		Findings []findingJSON `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("--json output %q: %v", out, err)
	}
	sum := sha256.Sum256([]byte(committed))
	if len(doc.Findings) != 2 || doc.Findings[1].Commit != r.added || doc.Findings[1].SHA256 != hex.EncodeToString(sum[:]) ||
		doc.Findings[1].Kind != "team" || doc.Findings[1].Line != 2 || doc.Findings[0].Path != filepath.Join(r.dir, "notes.txt") {
		t.Fatalf("--json findings = %+v", doc.Findings)
	}
	noValues(t, out, committed, untracked)

	// Clean trees exit 0; errors without findings exit 2; bad flag combinations too.
	clean := t.TempDir()
	if err := os.WriteFile(filepath.Join(clean, "a.txt"), []byte("look-alike "+r.fake+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, code := runCLI(t, "scan", clean); code != 0 {
		t.Errorf("clean tree: exit %d", code)
	}
	if _, errOut, code := runCLI(t, "scan", filepath.Join(clean, "missing")); code != 2 || !strings.Contains(errOut, "missing") {
		t.Errorf("missing path: exit %d: %s", code, errOut)
	}
	if _, _, code := runCLI(t, "scan", "--history", clean); code != 2 {
		t.Errorf("--history outside a repository: exit %d", code)
	}
	for _, args := range [][]string{{"--revoke"}, {"--token", untracked}, {"--history", "--no-history"}} {
		if _, _, code := runCLI(t, append([]string{"scan", clean}, args...)...); code != 2 {
			t.Errorf("scan %v: exit %d, want 2", args, code)
		}
	}
	// An error does not hide findings: tokens found still exit 1.
	if _, _, code := runCLI(t, "scan", "--no-history", r.dir, filepath.Join(clean, "missing")); code != 1 {
		t.Errorf("findings and an error: exit %d, want 1", code)
	}
}

func TestScanStaged(t *testing.T) {
	isolate(t)
	r := newGitRepo(t)
	staged, unstaged := mustToken(t, token.Org), mustToken(t, token.Personal)
	// The first commit: nothing is in HEAD yet.
	r.write("deploy/prod.yaml", "a: 1\ntoken: "+staged+"\n")
	r.write("scratch.txt", unstaged+"\n")
	r.git("add", "deploy/prod.yaml")
	out, errOut, code := runCLI(t, "scan", "--staged", r.dir)
	if want := "deploy/prod.yaml:2:8: org token " + token.Redact(staged) + " staged\n"; code != 1 || out != want {
		t.Fatalf("--staged: exit %d, output:\n%s\nwant:\n%s\n%s", code, out, want, errOut)
	}
	// The staged version counts, not the work tree's.
	r.write("deploy/prod.yaml", "a: 1\n")
	if out, _, code := runCLI(t, "scan", "--staged", r.dir); code != 1 || out == "" {
		t.Fatalf("--staged after editing the work tree: exit %d, output %q", code, out)
	}
	r.git("add", "deploy/prod.yaml")
	if out, errOut, code := runCLI(t, "scan", "--staged", r.dir); code != 0 || out != "" {
		t.Fatalf("--staged with a clean index: exit %d, output %q %s", code, out, errOut)
	}
	r.commit("clean")
	r.write("bin.dat", "\x00\x01"+staged)
	r.git("add", "bin.dat")
	if out, _, code := runCLI(t, "scan", "--staged", r.dir); code != 0 || out != "" {
		t.Fatalf("--staged with a binary file: exit %d, output %q", code, out)
	}
	if _, _, code := runCLI(t, "scan", "--staged", t.TempDir()); code != 2 {
		t.Fatalf("--staged outside a repository: exit %d, want 2", code)
	}
}

// testServer runs Gatehouse (SQLite in a temp dir) behind httptest and returns its URL and
// the bootstrap admin's token.
func testServer(t *testing.T) (string, string) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.Open(ctx, app.Config{DataDir: t.TempDir()}, httpapi.DefaultConfig(), log)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := app.Bootstrap(ctx, srv.Store, "acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return hs.URL, admin
}

func apiCall(t *testing.T, url, tok, method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "token "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func TestScanWithServerRevokes(t *testing.T) {
	isolate(t)
	url, admin := testServer(t)
	create := func(name string) (string, string) {
		code, out := apiCall(t, url, admin, "POST", "/api/user/tokens", map[string]any{"name": name})
		if code != 200 {
			t.Fatalf("creating token %s: %d %v", name, code, out)
		}
		return out["id"].(string), out["tokenValue"].(string)
	}
	_, leaked := create("ci-leaked")
	deadID, dead := create("old")
	if code, _ := apiCall(t, url, admin, "DELETE", "/api/user/tokens/"+deadID, nil); code != 200 {
		t.Fatalf("revoking: %d", code)
	}
	r := newLeakRepo(t, leaked, dead)
	short := r.added[:7]
	treeLine := filepath.Join(r.dir, "notes.txt") + ":1:8: pat token " + token.Redact(dead)
	histLine := "config/ci.env:2:28: pat token " + token.Redact(leaked) + " commit " + short

	out, errOut, code := runCLI(t, "scan", r.dir, "--server", url, "--token", admin)
	if want := treeLine + " dead\n" + histLine + " live\n"; code != 1 || out != want {
		t.Fatalf("with a server: exit %d, output:\n%s\nwant:\n%s\n%s", code, out, want, errOut)
	}
	if code, _ := apiCall(t, url, leaked, "GET", "/api/user", nil); code != 200 {
		t.Fatalf("checking revoked the token: %d", code)
	}

	// --revoke kills the live one, and says so; tokens were found, so the exit status is 1.
	out, errOut, code = runCLI(t, "scan", r.dir, "--server", url, "--token", admin, "--revoke")
	if want := treeLine + " dead\n" + histLine + " revoked\n"; code != 1 || out != want {
		t.Fatalf("--revoke: exit %d, output:\n%s\nwant:\n%s\n%s", code, out, want, errOut)
	}
	if !strings.Contains(errOut, "1 revoked") || !strings.Contains(errOut, "1 dead") {
		t.Errorf("--revoke summary: %s", errOut)
	}
	noValues(t, out+errOut, leaked, dead)
	if code, _ := apiCall(t, url, leaked, "GET", "/api/user", nil); code != 401 {
		t.Fatalf("the leaked token still works after --revoke: %d", code)
	}
	if code, _ := apiCall(t, url, admin, "GET", "/api/user", nil); code != 200 {
		t.Fatalf("the admin token stopped working: %d", code)
	}

	// The server named by the environment works the same; now both are dead.
	t.Setenv("GATEHOUSE_SERVER", url)
	t.Setenv("GATEHOUSE_TOKEN", admin)
	out, _, code = runCLI(t, "scan", "--json", r.dir)
	var doc struct {
		Findings []findingJSON `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil || code != 1 || len(doc.Findings) != 2 ||
		doc.Findings[0].Status != "dead" || doc.Findings[1].Status != "dead" {
		t.Fatalf("--json with GATEHOUSE_SERVER: exit %d, %+v, %v", code, doc.Findings, err)
	}

	// A bad token for the server: an error, but the findings still say exit 1.
	_, errOut, code = runCLI(t, "scan", r.dir, "--token", mustToken(t, token.Personal))
	if code != 1 || !strings.Contains(errOut, "401") {
		t.Fatalf("bad server token: exit %d: %s", code, errOut)
	}
}
