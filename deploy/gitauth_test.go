package deploy_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/gatehouse-dev/gatehouse/deploy"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// gitHTTPBackend is git's own smart-HTTP server program, or a loud skip.
func gitHTTPBackend(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "--exec-path").Output()
	if err == nil {
		p := filepath.Join(strings.TrimSpace(string(out)), "git-http-backend")
		if _, err = os.Stat(p); err == nil {
			return p
		}
	}
	skipLoudly(t, "git-http-backend not found (git --exec-path: %v); the runner's HTTPS checkout with credentials is NOT tested", err)
	return ""
}

// bareRepos makes a directory holding proj.git, a bare clone of repo(t).
func bareRepos(t *testing.T) string {
	root := t.TempDir()
	git(t, root, "clone", "-q", "--bare", repo(t), filepath.Join(root, "proj.git"))
	return root
}

// gitHTTPServer serves the repositories of root at URL/git/NAME.git through git
// http-backend (CGI) to requests that authorize passes; others get 401 with a Basic
// challenge, as GitHub and GitLab answer.
func gitHTTPServer(t *testing.T, root string, tls bool, authorize func(user, password string, ok bool) bool) *httptest.Server {
	backend := &cgi.Handler{Path: gitHTTPBackend(t), Root: "/git", Env: []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorize(r.BasicAuth()) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "authentication required", http.StatusUnauthorized)
			return
		}
		backend.ServeHTTP(w, r)
	})
	var hs *httptest.Server
	if tls {
		hs = httptest.NewTLSServer(h)
	} else {
		hs = httptest.NewServer(h)
	}
	t.Cleanup(hs.Close)
	return hs
}

// watchCommands records the arguments of every command the runner starts.
func watchCommands(t *testing.T) func() [][]string {
	var mu sync.Mutex
	var all [][]string
	restore := deploy.SetCommandHook(func(c *exec.Cmd) {
		mu.Lock()
		all = append(all, append([]string(nil), c.Args...))
		mu.Unlock()
	})
	t.Cleanup(restore)
	return func() [][]string { mu.Lock(); defer mu.Unlock(); return append([][]string(nil), all...) }
}

func (f *fixture) gitSettings(t *testing.T, repoURL, branch string, auth map[string]any) {
	t.Helper()
	g := map[string]any{"repoUrl": repoURL, "branch": branch}
	if auth != nil {
		g["gitAuth"] = auth
	}
	must(t, f.s.admin.Do(cliwire.Call{Method: "PUT", Path: f.prod + "/deployments/settings", Body: map[string]any{
		"sourceContext": map[string]any{"git": g},
	}}, nil))
}

// runOnce triggers an update, runs it, and returns its status, message and log.
func (f *fixture) runOnce(t *testing.T) (status, message, logs string) {
	t.Helper()
	id := f.trigger(t, "update")
	if ran, err := f.runner.RunOne(context.Background()); !ran || err != nil {
		t.Fatalf("RunOne = %v, %v", ran, err)
	}
	d, logs := f.deployment(t, id)
	status, _ = d["status"].(string)
	message, _ = d["message"].(string)
	return status, message, logs
}

// noSecrets checks that no secret is in the runner's command lines, the run's log or
// message, or the organization's audit log.
func (f *fixture) noSecrets(t *testing.T, cmds [][]string, texts []string, secrets ...string) {
	t.Helper()
	var audit []byte
	must(t, f.s.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/auditlogs/v2/export?format=json"}, &audit))
	if len(audit) < 100 {
		t.Fatalf("the audit export is nearly empty: %s", audit)
	}
	texts = append(texts, string(audit))
	for _, c := range cmds {
		texts = append(texts, strings.Join(c, " "))
	}
	if len(cmds) == 0 {
		t.Fatal("no command was seen")
	}
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Errorf("secret %q appears in %.300q", s, text)
			}
		}
	}
}

// TestRunnerGitHTTPCredentials: the runner clones over HTTP and HTTPS from git's own
// server with an access token (as GitHub and GitLab take it) or a user and password;
// wrong or missing credentials and an untrusted certificate fail the run with a clear
// message; the secrets are in no command line, log line, message or audit event.
func TestRunnerGitHTTPCredentials(t *testing.T) {
	f := newFixture(t)
	const token, user, password = "ghp_s3cretTokenValue0123456789", "deployer", "pa55-w0rd-never-logged"
	root := bareRepos(t)
	var mu sync.Mutex
	var seen []string
	srv := gitHTTPServer(t, root, false, func(u, p string, ok bool) bool {
		mu.Lock()
		seen = append(seen, u)
		mu.Unlock()
		return ok && u != "" && p == token || ok && u == user && p == password
	})
	tlsSrv := gitHTTPServer(t, root, true, func(u, p string, ok bool) bool { return ok && u != "" && p == token })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	must(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tlsSrv.Certificate().Raw}), 0o644))
	cmds := watchCommands(t)
	var texts []string
	secret := func(v string) map[string]string { return map[string]string{"secret": v} }

	for _, tc := range []struct {
		name, url string
		auth      map[string]any
		caFile    string
		want      []string // in the message (failed) or the log (succeeded)
	}{
		{"token", srv.URL + "/git/proj.git", map[string]any{"accessToken": secret(token)}, "", []string{"found Pulumi.yaml"}},
		{"basic", srv.URL + "/git/proj.git", map[string]any{"basicAuth": map[string]any{"userName": user, "password": secret(password)}}, "", []string{"found Pulumi.yaml"}},
		{"https-private-ca", tlsSrv.URL + "/git/proj.git", map[string]any{"accessToken": secret(token)}, ca, []string{"found Pulumi.yaml"}},
		{"wrong-token", srv.URL + "/git/proj.git", map[string]any{"accessToken": secret(token + "x")}, "", []string{"Authentication failed", "check gitAuth in the deployment settings"}},
		{"wrong-password", srv.URL + "/git/proj.git", map[string]any{"basicAuth": map[string]any{"userName": user, "password": secret(password + "x")}}, "", []string{"Authentication failed", "check gitAuth"}},
		{"none", srv.URL + "/git/proj.git", nil, "", []string{"could not read Username", "wants credentials: set gitAuth"}},
		{"https-untrusted", tlsSrv.URL + "/git/proj.git", map[string]any{"accessToken": secret(token)}, "", []string{"certificate", "--git-ca-file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.withRunner(t, func(c *deploy.RunnerConfig) { c.GitCAFile = tc.caFile })
			f.gitSettings(t, tc.url, "main", tc.auth)
			status, msg, logs := f.runOnce(t)
			texts = append(texts, msg, logs)
			ok := !strings.Contains(tc.name, "wrong") && tc.name != "none" && tc.name != "https-untrusted"
			in := logs
			if !ok {
				in = msg
			}
			if ok && status != "succeeded" || !ok && status != "failed" {
				t.Fatalf("status %q, message %q; logs:\n%s", status, msg, logs)
			}
			for _, w := range tc.want {
				if !strings.Contains(in, w) {
					t.Errorf("%q lacks %q; logs:\n%s", in, w, logs)
				}
			}
			if !ok && !strings.Contains(logs, msg) && !strings.Contains(logs, "fatal:") {
				t.Errorf("the log says nothing of the failure:\n%s", logs)
			}
		})
	}
	mu.Lock()
	if !strings.Contains(strings.Join(seen, " "), "x-access-token") {
		t.Errorf("the token was not sent as GitHub's x-access-token user: users seen %v", seen)
	}
	mu.Unlock()
	f.noSecrets(t, cmds(), texts, token, password)
}

// sshGitServer is an SSH server on loopback that accepts only the key authorized and runs
// git-upload-pack for the exec request on the repositories of root.
func sshGitServer(t *testing.T, root string, authorized ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	signer, err := ssh.NewSignerFromKey(hostPriv)
	must(t, err)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), authorized.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serveSSH(c, cfg, root)
		}
	}()
	return l.Addr().String(), signer.PublicKey()
}

func serveSSH(c net.Conn, cfg *ssh.ServerConfig, root string) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range creqs {
				if req.Type != "exec" {
					_ = req.Reply(false, nil)
					continue
				}
				var exe struct{ Command string }
				if ssh.Unmarshal(req.Payload, &exe) != nil || !strings.HasPrefix(exe.Command, "git-upload-pack '") {
					_ = req.Reply(false, nil)
					return
				}
				path := strings.Trim(strings.TrimPrefix(exe.Command, "git-upload-pack "), "'")
				_ = req.Reply(true, nil)
				cmd := exec.Command("git", "upload-pack", filepath.Join(root, filepath.Clean("/"+path)))
				in, _ := cmd.StdinPipe()
				cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
				code := 1
				if cmd.Start() == nil {
					go func() { _, _ = io.Copy(in, ch); in.Close() }()
					code = 0
					if err := cmd.Wait(); err != nil {
						code = 1
					}
				}
				_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				return
			}
		}()
	}
}

// sshKey makes an ed25519 key: its OpenSSH PEM (encrypted with passphrase if not empty)
// and public key.
func sshKey(t *testing.T, passphrase string) (string, ssh.PublicKey) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	var b *pem.Block
	if passphrase == "" {
		b, err = ssh.MarshalPrivateKey(priv, "gatehouse test")
	} else {
		b, err = ssh.MarshalPrivateKeyWithPassphrase(priv, "gatehouse test", []byte(passphrase))
	}
	must(t, err)
	sp, err := ssh.NewPublicKey(pub)
	must(t, err)
	return string(pem.EncodeToMemory(b)), sp
}

// TestRunnerGitSSHKey: the runner clones over SSH with the settings' private key (and its
// passphrase) from a server that accepts only that key; a host key pinned with
// --ssh-known-hosts is checked (a different one fails the run), an unpinned one is taken
// as first seen and the log says so; a wrong key or passphrase fails the run clearly;
// the key and passphrase are in no command line, log line, message or audit event.
func TestRunnerGitSSHKey(t *testing.T) {
	if _, err := exec.LookPath("ssh"); err != nil {
		skipLoudly(t, "no ssh client on this host; the runner's SSH checkout is NOT tested")
	}
	f := newFixture(t)
	const passphrase = "correct horse battery staple"
	key, pub := sshKey(t, "")
	encKey, encPub := sshKey(t, passphrase)
	otherKey, _ := sshKey(t, "")
	root := bareRepos(t)
	addr, hostKey := sshGitServer(t, root, pub)
	encAddr, encHostKey := sshGitServer(t, root, encPub)
	_, strangerKey := sshGitServer(t, root, pub)
	dir := t.TempDir()
	pinned := filepath.Join(dir, "known_hosts")
	must(t, os.WriteFile(pinned, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey)+"\n"+
		knownhosts.Line([]string{knownhosts.Normalize(encAddr)}, encHostKey)+"\n"), 0o644))
	wrongPin := filepath.Join(dir, "wrong_known_hosts")
	must(t, os.WriteFile(wrongPin, []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, strangerKey)+"\n"), 0o644))
	cmds := watchCommands(t)
	// An ssh first on PATH records the arguments git gives it.
	realSSH, _ := exec.LookPath("ssh")
	wrap, sshArgs := t.TempDir(), filepath.Join(dir, "ssh-args")
	must(t, os.WriteFile(filepath.Join(wrap, "ssh"), []byte("#!/bin/sh\nprintf '%s\\n' \"$*\" >> "+sshArgs+"\nexec "+realSSH+" \"$@\"\n"), 0o755))
	t.Setenv("PATH", wrap+string(os.PathListSeparator)+os.Getenv("PATH"))
	var texts []string
	secret := func(v string) map[string]string { return map[string]string{"secret": v} }
	url := "ssh://git@" + addr + "/proj.git"
	_, port, _ := net.SplitHostPort(encAddr)
	if _, err := strconv.Atoi(port); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name, url, knownHosts string
		auth                  map[string]any
		ok                    bool
		want                  []string // in the message (failed) or the log (succeeded)
		notInLog              string
	}{
		{"pinned", url, pinned, map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(key)}}, true, []string{"found Pulumi.yaml"}, "not verified"},
		{"first-seen", url, "", map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(key)}}, true, []string{"found Pulumi.yaml", "host key of the repository's server is not verified", "--ssh-known-hosts"}, ""},
		{"passphrase", "ssh://git@" + encAddr + "/proj.git", pinned, map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(encKey), "password": secret(passphrase)}}, true, []string{"found Pulumi.yaml"}, ""},
		{"wrong-key", url, pinned, map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(otherKey)}}, false, []string{"ssh://git@127.0.0.1:", "cannot be cloned", "Permission denied (publickey)", "check gitAuth"}, ""},
		{"wrong-passphrase", "ssh://git@" + encAddr + "/proj.git", pinned, map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(encKey), "password": secret("not the passphrase")}}, false, []string{"Permission denied (publickey)", "check gitAuth"}, ""},
		{"host-key-mismatch", url, wrongPin, map[string]any{"sshAuth": map[string]any{"sshPrivateKey": secret(key)}}, false, []string{"Host key verification failed", "host key is not the one in the runner's --ssh-known-hosts"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.withRunner(t, func(c *deploy.RunnerConfig) { c.SSHKnownHosts = tc.knownHosts })
			f.gitSettings(t, tc.url, "main", tc.auth)
			status, msg, logs := f.runOnce(t)
			texts = append(texts, msg, logs)
			if tc.ok && status != "succeeded" || !tc.ok && status != "failed" {
				t.Fatalf("status %q, message %q; logs:\n%s", status, msg, logs)
			}
			in := logs
			if !tc.ok {
				in = msg
			}
			for _, w := range tc.want {
				if !strings.Contains(in, w) {
					t.Errorf("%q lacks %q; logs:\n%s", in, w, logs)
				}
			}
			if tc.notInLog != "" && strings.Contains(logs, tc.notInLog) {
				t.Errorf("the log says %q:\n%s", tc.notInLog, logs)
			}
			if strings.Contains(logs, "left behind") {
				t.Errorf("the key file outlived the checkout:\n%s", logs)
			}
		})
	}
	pemBody := func(k string) string { // the key's base64 body, line by line
		var out []string
		for _, l := range strings.Split(k, "\n") {
			if len(l) > 40 && !strings.HasPrefix(l, "-----") {
				out = append(out, l)
			}
		}
		return strings.Join(out, "\n")
	}
	b, err := os.ReadFile(sshArgs)
	must(t, err)
	if !strings.Contains(string(b), "-i ") || !strings.Contains(string(b), "git-upload-pack") {
		t.Errorf("git did not run ssh with a key file: %s", b)
	}
	all := cmds()
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		all = append(all, []string{"ssh", l})
	}
	f.noSecrets(t, all, texts, pemBody(key), pemBody(encKey), passphrase)
}

// TestRunnerBadRepository: an unreachable repository and a branch that does not exist
// fail the run with git's reason; the stack's next run starts and succeeds.
func TestRunnerBadRepository(t *testing.T) {
	f := newFixture(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	dead := "http://" + l.Addr().String() + "/git/proj.git"
	l.Close() // nothing listens there now
	good := repo(t)
	for _, tc := range []struct {
		name, url, branch string
		want              []string
	}{
		{"unreachable", dead, "main", []string{"cannot be cloned", "unable to access", "Failed to connect"}},
		{"bad-branch", good, "no-such-branch", []string{"cannot be cloned", "no-such-branch not found", "check the branch"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f.gitSettings(t, tc.url, tc.branch, nil)
			status, msg, logs := f.runOnce(t)
			if status != "failed" {
				t.Fatalf("status %q; logs:\n%s", status, logs)
			}
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %q lacks %q; logs:\n%s", msg, w, logs)
				}
			}
			f.gitSettings(t, good, "main", nil)
			if status, msg, logs := f.runOnce(t); status != "succeeded" {
				t.Fatalf("the next run: status %q, message %q; logs:\n%s", status, msg, logs)
			}
		})
	}
}

// TestRunnerTrustFilesChecked: a --git-ca-file or --ssh-known-hosts that cannot be read
// stops the runner on start, not each run later; so does a --container engine that is not
// installed.
func TestRunnerTrustFilesChecked(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		cfg  deploy.RunnerConfig
		want string
	}{
		{deploy.RunnerConfig{GitCAFile: missing}, "--git-ca-file"},
		{deploy.RunnerConfig{SSHKnownHosts: missing}, "--ssh-known-hosts"},
		{deploy.RunnerConfig{Container: "no-such-container-engine"}, "--container no-such-container-engine"},
	} {
		tc.cfg.Server, tc.cfg.Token, tc.cfg.Pulumi = "http://127.0.0.1:1", "t", "sh"
		if _, err := deploy.NewRunner(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewRunner = %v, want an error naming %s", err, tc.want)
		}
	}
}
