package console_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/internal/loudskip"
)

// The browser test drives the console in real headless Chromium (Debian's chromium,
// installed by scripts/install-chromium.sh; GATEHOUSE_CHROMIUM names another binary). One
// browser serves the whole test. Screenshots of the main pages go to docs/console/, which
// the README's tour shows.

// skipLoudly skips t with a banner on stderr (internal/loudskip).
func skipLoudly(t *testing.T, format string, args ...any) {
	t.Helper()
	loudskip.Skip(t, "BROWSER TEST", format, args...)
}

func chromium(t *testing.T) string {
	if p := os.Getenv("GATEHOUSE_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	skipLoudly(t, "no chromium on PATH (run scripts/install-chromium.sh as root, or set GATEHOUSE_CHROMIUM)")
	return ""
}

func TestBrowserConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("the browser test starts Chromium; run without -short")
	}
	bin := chromium(t)
	start := time.Now()
	hs, adminTok := startGatehouse(t, httpapi.DefaultConfig())
	base := hs.URL
	admin := cliwire.New(base, adminTok)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// The world: bob (a member), stacks app/prod (tagged env=production, protected) and
	// app/dev, an environment.
	var bob struct {
		TokenValue string `json:"tokenValue"`
	}
	must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/users", Body: map[string]string{"name": "bob", "role": "member"}}, &bob))
	for _, st := range []struct {
		name string
		tags map[string]string
	}{{"prod", map[string]string{"env": "production"}}, {"dev", nil}} {
		must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/stacks/acme/app", Body: map[string]any{"stackName": st.name, "tags": st.tags}}, nil))
	}
	must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/acme/protections", Body: map[string]string{"tag": "env=production"}}, nil))
	must(admin.Do(cliwire.Call{Method: "POST", Path: "/api/esc/environments/acme", Body: map[string]string{"project": "app", "name": "prod-env"}}, nil))

	// An attacker's page on another origin (another port: same site, other origin) that
	// posts a form to the console.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f" method="post" action="%s/console/orgs/acme/teams"><input name="name" value="evil"></form><script>document.getElementById("f").submit()</script>`, base)
	}))
	t.Cleanup(evil.Close)

	// Chromium's helper processes may still be writing its profile for a moment after the
	// browser is stopped: the profile is removed with retries rather than by t.TempDir's
	// cleanup (which fails the test on "directory not empty").
	profile, err := os.MkdirTemp("", "gatehouse-chromium-")
	must(err)
	t.Cleanup(func() {
		for i := 0; i < 50; i++ {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("could not remove the browser profile %s", profile)
	})
	opts := append([]chromedp.ExecAllocatorOption{},
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile), chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 3*time.Minute) // ~30 s on an idle machine; a shared one is slower
	defer cancelT()
	if err := chromedp.Run(bctx); err != nil {
		skipLoudly(t, "chromium %s does not start: %v", bin, err)
	}

	shots := filepath.Join("..", "docs", "console")
	must(os.MkdirAll(shots, 0o755))
	shot := func(name string) chromedp.Action {
		return chromedp.ActionFunc(func(ctx context.Context) error {
			var buf []byte
			if err := chromedp.FullScreenshot(&buf, 100).Do(ctx); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(shots, name+".png"), buf, 0o644)
		})
	}
	run := func(step string, actions ...chromedp.Action) {
		t.Helper()
		if err := chromedp.Run(bctx, actions...); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		var s string
		run("read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
		return s
	}
	signIn := func(tok string) {
		run("sign in",
			chromedp.Navigate(base+"/"),
			chromedp.WaitVisible("#token", chromedp.ByID),
			chromedp.SendKeys("#token", tok, chromedp.ByID),
			chromedp.Submit("#token", chromedp.ByID),
			chromedp.WaitVisible("nav.main", chromedp.ByQuery),
		)
	}
	signOut := func() {
		var flash string
		run("sign out", chromedp.Click(`header.top form button`, chromedp.ByQuery), chromedp.WaitVisible("#token", chromedp.ByID),
			chromedp.Text("p.flash", &flash, chromedp.ByQuery))
		if flash != "You are signed out." {
			t.Fatalf("after signing out: %q", flash)
		}
		// The session is over: pages ask to sign in again.
		run("after sign-out", chromedp.Navigate(base+"/console/orgs/acme"), chromedp.WaitVisible("#token", chromedp.ByID))
	}

	// Sign in with the administrator's token; GET / leads to the console.
	run("sign-in page", chromedp.Navigate(base+"/"), chromedp.WaitVisible("#token", chromedp.ByID), shot("signin"))
	signIn(adminTok)
	run("overview", chromedp.Navigate(base+"/console/orgs/acme"), chromedp.WaitVisible("main h1", chromedp.ByQuery), shot("overview"))

	// The access review before: nobody but alice (admin) and bob's nothing.
	before := ""
	run("access review", chromedp.Navigate(base+"/console/orgs/acme/access"), chromedp.Text("#access-matrix", &before, chromedp.ByID))
	if strings.Contains(before, "team ops grant") {
		t.Fatalf("the review mentions team ops before it exists")
	}

	// Create team ops, add bob, grant it write on app/dev.
	run("create team",
		chromedp.Navigate(base+"/console/orgs/acme/teams"),
		chromedp.SendKeys("#team-name", "ops", chromedp.ByID),
		chromedp.SendKeys("#team-desc", "Operators <on call>", chromedp.ByID),
		chromedp.Submit("#team-name", chromedp.ByID),
		chromedp.WaitVisible(`p.flash`, chromedp.ByQuery),
	)
	if got := text("main h1"); got != "Team ops" {
		t.Fatalf("after creating the team: %q", got)
	}
	run("add bob", chromedp.SetValue("#add-member", "bob", chromedp.ByID), chromedp.Submit("#add-member", chromedp.ByID), chromedp.WaitReady(`input[name="member"][value="bob"]`, chromedp.ByQuery))
	run("grant",
		chromedp.SetValue("#g-stack", "app/dev", chromedp.ByID),
		chromedp.SetValue("#g-perm", "write", chromedp.ByID),
		chromedp.Submit("#g-stack", chromedp.ByID),
		chromedp.WaitVisible("#team-grants", chromedp.ByID),
		shot("team"),
	)
	if g := text("#team-grants"); !strings.Contains(g, "stack app/dev") || !strings.Contains(g, "write") {
		t.Fatalf("team grants: %q", g)
	}
	after := ""
	run("access review after", chromedp.Navigate(base+"/console/orgs/acme/access"), chromedp.Text("#access-matrix", &after, chromedp.ByID), shot("access-review"))
	if !strings.Contains(after, "team ops grant on stack app/dev") {
		t.Fatalf("the review does not show the new grant:\n%s", after)
	}
	run("access review filtered", chromedp.SendKeys("#f-principal", "bob", chromedp.ByID), chromedp.Submit("#f-principal", chromedp.ByID), chromedp.WaitVisible(`#f-principal[value="bob"]`, chromedp.ByQuery))
	if got := text("#access-matrix"); strings.Contains(got, "alice") || !strings.Contains(got, "bob") {
		t.Fatalf("filtered by bob: %q", got)
	}
	run("stack page", chromedp.Navigate(base+"/console/orgs/acme/stacks/app/dev"), chromedp.WaitVisible("#stack-access", chromedp.ByID), shot("stack"))
	if got := text("#stack-access"); !strings.Contains(got, "bob") {
		t.Fatalf("app/dev's access does not list bob: %q", got)
	}
	run("stacks", chromedp.Navigate(base+"/console/orgs/acme/stacks"), chromedp.WaitVisible("table", chromedp.ByQuery), shot("stacks"))

	// Create an organization token (shown once), then revoke it (confirmed).
	var value string
	run("create token",
		chromedp.Navigate(base+"/console/orgs/acme/tokens"),
		chromedp.SendKeys("#org-name", "ci-bot", chromedp.ByID),
		chromedp.Submit("#org-name", chromedp.ByID),
		chromedp.WaitVisible("#new-token", chromedp.ByID),
		chromedp.Value("#new-token", &value, chromedp.ByID),
		shot("token-created"),
	)
	if !strings.HasPrefix(value, "gh") && len(value) < 20 {
		t.Fatalf("new token value %q", value)
	}
	if err := cliwire.New(base, value).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil); err != nil {
		t.Fatalf("the new token does not work: %v", err)
	}
	var list string
	run("tokens", chromedp.Navigate(base+"/console/orgs/acme/tokens"), chromedp.Text("#org", &list, chromedp.ByID), shot("tokens"))
	if !strings.Contains(list, "ci-bot") {
		t.Fatalf("the token list: %q", list)
	}
	run("revoke",
		chromedp.Click(`#org form[action$="/revoke"] button`, chromedp.ByQuery),
		chromedp.WaitVisible(`button.danger[autofocus]`, chromedp.ByQuery),
		chromedp.Click(`button.danger[autofocus]`, chromedp.ByQuery),
		chromedp.WaitVisible(`p.flash`, chromedp.ByQuery),
	)
	if err := cliwire.New(base, value).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil); cliwire.Status(err) != 401 {
		t.Fatalf("the revoked token: %v", err)
	}

	// A form posted from another origin is refused (the session's CSRF check), and
	// changes nothing.
	var refused string
	run("cross-origin post", chromedp.Navigate(evil.URL), chromedp.WaitVisible("main", chromedp.ByQuery), chromedp.Text("main", &refused, chromedp.ByQuery))
	if !strings.Contains(refused, "cross-site request refused") && !strings.Contains(refused, "CSRF") {
		t.Fatalf("the cross-origin post was not refused: %q", refused)
	}
	if err := admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/evil"}, nil); cliwire.Status(err) != 404 {
		t.Fatalf("the cross-origin post created team evil: %v", err)
	}

	signOut()

	// Bob may not see the audit timeline, nor app/prod (no access): refused, and the
	// pages he may see do not link to them.
	signIn(bob.TokenValue)
	var nav, body string
	run("bob overview", chromedp.Navigate(base+"/console/orgs/acme"), chromedp.Text("nav.main", &nav, chromedp.ByQuery))
	if strings.Contains(nav, "Audit") || strings.Contains(nav, "Tokens") {
		t.Fatalf("bob's navigation offers %q", nav)
	}
	run("bob audit", chromedp.Navigate(base+"/console/orgs/acme/audit"), chromedp.Text("main", &body, chromedp.ByQuery))
	if !strings.Contains(body, "org:audit:read requires the organization admin role") {
		t.Fatalf("bob's audit page: %q", body)
	}
	run("bob prod", chromedp.Navigate(base+"/console/orgs/acme/stacks/app/prod"), chromedp.Text("main", &body, chromedp.ByQuery))
	if !strings.Contains(body, "not found") {
		t.Fatalf("bob's view of app/prod: %q", body)
	}
	// On a phone.
	run("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Navigate(base+"/console/orgs/acme/access"),
		chromedp.WaitVisible("main h1", chromedp.ByQuery), shot("phone-access-review"), chromedp.EmulateViewport(1280, 900))
	signOut()
	// Back as alice: the audit timeline finds those changes (and bob's denials).
	signIn(adminTok)
	// The audit timeline finds those changes, filtered by action and outcome.
	var events string
	run("audit",
		chromedp.Navigate(base+"/console/orgs/acme/audit"),
		chromedp.SendKeys("#a-action", "org:token:write", chromedp.ByID),
		chromedp.Submit("#a-action", chromedp.ByID),
		chromedp.WaitVisible(`#a-action[value="org:token:write"]`, chromedp.ByQuery),
		chromedp.Text("#audit-events", &events, chromedp.ByID),
	)
	if n := strings.Count(events, "org:token:write"); n < 2 || !strings.Contains(events, "acme/tokens/") {
		t.Fatalf("token events in the timeline (%d):\n%s", n, events)
	}
	run("audit teams",
		chromedp.Navigate(base+"/console/orgs/acme/audit?eventFilter=org:team:write&target=ops"),
		chromedp.WaitVisible("#audit-events", chromedp.ByID),
		chromedp.Text("#audit-events", &events, chromedp.ByID),
	)
	if !strings.Contains(events, "acme/teams/ops") || strings.Count(events, "org:team:write") < 3 {
		t.Fatalf("team events in the timeline:\n%s", events)
	}
	run("audit denied",
		chromedp.Navigate(base+"/console/orgs/acme/audit"),
		chromedp.WaitVisible("main h1", chromedp.ByQuery),
		shot("audit"),
		chromedp.Click(`#audit-events tbody tr:nth-child(3) a`, chromedp.ByQuery),
		chromedp.WaitVisible(`dl.kv`, chromedp.ByQuery),
		shot("audit-event"),
	)
	signOut()
	_ = page.CaptureScreenshotFormatPng
	t.Logf("browser test took %s", time.Since(start).Round(time.Millisecond))
}

// startGatehouse serves a new Gatehouse (SQLite in a temporary directory) with cfg on
// loopback, bootstrapped with organization acme and its admin alice, whose token it returns.
func startGatehouse(t *testing.T, cfg httpapi.Config) (*httptest.Server, string) {
	t.Helper()
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.Open(ctx, app.Config{DataDir: t.TempDir()}, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	srv.StartWorkers()
	adminTok, err := app.Bootstrap(ctx, srv.Store, "acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler)
	t.Cleanup(func() { hs.Close(); srv.Close() })
	return hs, adminTok
}
