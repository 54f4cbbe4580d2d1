package httpapi_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"log"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml/samlidp"
	"github.com/jonboulle/clockwork"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/crypto/bcrypt"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/app"
	"github.com/gatehouse-dev/gatehouse/httpapi"
	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/store/sqlstore"
)

// SAML sign-in against a real SAML identity provider on loopback: crewjam/saml's samlidp
// with an in-memory store, one user (alice) and Gatehouse's organization acme registered
// as a service provider.

// listen reserves a loopback address, so that a server's own URL is known before it starts.
func listen(t *testing.T) (net.Listener, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln, "http://" + ln.Addr().String()
}

func serveOn(t *testing.T, ln net.Listener, h http.Handler) {
	hs := httptest.NewUnstartedServer(h)
	hs.Listener.Close()
	hs.Listener = ln
	hs.Start()
	t.Cleanup(hs.Close)
}

// keyPair returns an RSA key and a self-signed certificate valid from nb to na.
func keyPair(t *testing.T, cn string, nb, na time.Time) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: nb, NotAfter: na, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

type idp struct {
	srv   *samlidp.Server
	url   string
	key   *rsa.PrivateKey
	cert  *x509.Certificate
	clock *clockwork.FakeClock
}

func startIdP(t *testing.T, now time.Time) *idp {
	t.Helper()
	ln, base := listen(t)
	u, _ := url.Parse(base)
	key, cert := keyPair(t, "test idp", now.Add(-time.Hour), now.Add(365*24*time.Hour))
	clk := clockwork.NewFakeClockAt(now)
	srv, err := samlidp.New(samlidp.Options{URL: *u, Key: key, Signer: key, Certificate: cert, Store: &samlidp.MemoryStore{},
		Clock: dsig.NewFakeClock(clk), Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("wonderland"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.Put("/users/alice", samlidp.User{Name: "alice", HashedPassword: hash, Email: "alice@example.com",
		Groups: []string{"eng", "ops"}, GivenName: "Alice", Surname: "Liddell"}); err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, srv)
	return &idp{srv: srv, url: base, key: key, cert: cert, clock: clk}
}

type samlWorld struct {
	*env
	base string
	idp  *idp
}

// newSAMLWorld starts Gatehouse (on a known URL, its SAML base URL) and the identity
// provider, registers acme at the identity provider and configures acme's SAML from the
// identity provider's metadata.
func newSAMLWorld(t *testing.T, tweak ...func(*httpapi.Config)) *samlWorld {
	t.Helper()
	ln, base := listen(t)
	clk := &clock{t: time.Now().UTC().Truncate(time.Second)}
	cfg := httpapi.DefaultConfig()
	cfg.Now = clk.Now
	cfg.SAML.BaseURL = base
	cfg.SAMLMetadataClient = netguard.NewClient(netguard.Options{AllowPrivate: true})
	for _, f := range tweak {
		f(&cfg)
	}
	dir := t.TempDir()
	srv, err := app.Open(context.Background(), app.Config{DataDir: dir}, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	srv.Store.(*sqlstore.DB).Clock = clk.Now
	srv.StartWorkers()
	tok, err := app.Bootstrap(context.Background(), srv.Store, "acme", "alice")
	if err != nil {
		t.Fatal(err)
	}
	serveOn(t, ln, srv.Handler)
	t.Cleanup(func() { _ = srv.Close() })
	e := &env{t: t, srv: srv, url: base, admin: cliwire.New(base, tok), clock: clk, dir: dir, close: func() {}}
	w := &samlWorld{env: e, base: base, idp: startIdP(t, clk.Now())}
	// The identity provider learns Gatehouse's SP metadata, Gatehouse the IdP's.
	w.registerSP("acme")
	if _, err := w.configure(map[string]any{"newIdpSsoDescriptor": w.idpMetadata(), "allowIdpInitiated": true}); err != nil {
		t.Fatal(err)
	}
	// acme's policy: people the IdP sends become members; IdP group eng is team engineers.
	if err := w.admin.Do(cliwire.Call{Method: http.MethodPost, Path: "/api/orgs/acme/teams/pulumi", Body: map[string]string{"name": "engineers"}}, nil); err != nil {
		t.Fatal(err)
	}
	if err := srv.Store.Update(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		return tx.PutOrgSSO(&gatehouse.OrgSSO{OrgID: org.ID, JITRole: gatehouse.RoleMember, GroupTeams: map[string]string{"eng": "engineers"}})
	}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *samlWorld) get(u string) *http.Response {
	w.t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		w.t.Fatal(err)
	}
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (w *samlWorld) idpMetadata() string { return body(w.t, w.get(w.idp.url+"/metadata")) }

func (w *samlWorld) registerSP(org string) {
	w.t.Helper()
	md := body(w.t, w.get(w.base+"/login/"+org+"/sso/saml/metadata"))
	req, _ := http.NewRequest(http.MethodPut, w.idp.url+"/services/"+org, strings.NewReader(md))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		w.t.Fatalf("registering %s at the IdP: %v %v", org, err, resp)
	}
	// An IdP-initiated shortcut: /login/<org>/<path> signs in with RelayState /<path>.
	sc, _ := json.Marshal(map[string]any{"service_provider": w.base + "/login/" + org + "/sso/saml/metadata", "url_suffix_as_relay_state": true})
	req, _ = http.NewRequest(http.MethodPut, w.idp.url+"/shortcuts/"+org, bytes.NewReader(sc))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
		w.t.Fatalf("shortcut: %v %v", err, resp)
	}
}

func (w *samlWorld) configure(body map[string]any) (map[string]any, error) {
	var out map[string]any
	err := w.admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/acme/saml", Body: body}, &out)
	return out, err
}

// browser is a person's browser: cookies, and redirects followed only where the test says.
func samlBrowser(t *testing.T) *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		// Follow redirects into the identity provider; stop at Gatehouse's answers.
		if strings.Contains(req.URL.Path, "/sso/saml/acs") || !strings.HasPrefix(req.URL.Path, "/sso") {
			return http.ErrUseLastResponse
		}
		return nil
	}}
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	formInput  = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"`)
)

// form parses the identity provider's HTML form (login or POST binding).
func form(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := formAction.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in %q", page)
	}
	vals := url.Values{}
	for _, in := range formInput.FindAllStringSubmatch(page, -1) {
		vals.Set(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	return html.UnescapeString(m[1]), vals
}

// spInitiated runs the SP-initiated sign-in up to the identity provider's answer and
// returns the ACS URL and the form the browser would post there.
func (w *samlWorld) spInitiated(b *http.Client, org, returnTo string) (string, url.Values) {
	t := w.t
	t.Helper()
	u := w.base + "/login/" + org + "/sso"
	if returnTo != "" {
		u += "?returnTo=" + url.QueryEscape(returnTo)
	}
	resp, err := b.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	if resp.StatusCode == http.StatusOK && strings.Contains(page, `name="SAMLResponse"`) {
		return form(t, page) // signed in at the IdP already
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `name="password"`) {
		t.Fatalf("want the IdP's login form, got %d %s", resp.StatusCode, page)
	}
	action, vals := form(t, page)
	vals.Set("user", "alice")
	vals.Set("password", "wonderland")
	resp, err = b.PostForm(action, vals)
	if err != nil {
		t.Fatal(err)
	}
	page = body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP login: %d %s", resp.StatusCode, page)
	}
	return form(t, page)
}

// idpInitiated signs alice in at the identity provider and starts its shortcut for org
// with the path suffix (RelayState "/"+suffix).
func (w *samlWorld) idpInitiated(b *http.Client, org, suffix string) (string, url.Values) {
	t := w.t
	t.Helper()
	resp, err := b.PostForm(w.idp.url+"/login", url.Values{"user": {"alice"}, "password": {"wonderland"}})
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP login: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = b.Get(w.idp.url + "/login/" + org + "/" + suffix)
	if err != nil {
		t.Fatal(err)
	}
	page := body(t, resp)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("IdP-initiated: %d %s", resp.StatusCode, page)
	}
	return form(t, page)
}

// post posts the form to the ACS as browser b.
func post(t *testing.T, b *http.Client, acs string, vals url.Values) (*http.Response, string) {
	t.Helper()
	resp, err := b.PostForm(acs, vals)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body(t, resp)
}

func sessionCookie(resp *http.Response) string {
	for _, c := range resp.Cookies() {
		if (c.Name == sso.DevCookieName || c.Name == sso.CookieName) && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// wantSignedIn asserts a sign-in that ended with a session cookie and a redirect to to.
func wantSignedIn(t *testing.T, resp *http.Response, page, to string) {
	t.Helper()
	if resp.StatusCode != http.StatusSeeOther || sessionCookie(resp) == "" || resp.Header.Get("Location") != to {
		t.Fatalf("want a session and a redirect to %q, got %d, Location %q, cookies %v: %s", to, resp.StatusCode, resp.Header.Get("Location"), resp.Cookies(), page)
	}
}

// signIns counts the successful sign-ins in the audit log.
func (w *samlWorld) signIns() int {
	evs, err := listAudit(w.env)
	if err != nil {
		w.t.Fatal(err)
	}
	n := 0
	for _, ev := range evs {
		if ev.Action == sso.ActionLogin && ev.Outcome == gatehouse.OutcomeSuccess {
			n++
		}
	}
	return n
}

// wantPerson asserts that the sign-in answered by resp made alice@example.com's session:
// her identity linked to a user (new, by just-in-time membership) who is a member of acme
// and, by her IdP group eng, of team engineers; the session cookie authenticates API calls.
func (w *samlWorld) wantPerson(resp *http.Response) {
	t := w.t
	t.Helper()
	var user *gatehouse.User
	var inTeam bool
	if err := w.srv.Store.View(context.Background(), func(tx gatehouse.Tx) error {
		org, err := tx.GetOrgByName("acme")
		if err != nil {
			return err
		}
		// SAML identities are keyed per organization (sso.identityIssuer).
		link, err := tx.GetIdentity("saml:"+strconv.FormatInt(org.ID, 10)+":"+w.idp.url+"/metadata", "alice@example.com")
		if err != nil {
			return err
		}
		if user, err = tx.GetUser(link.UserID); err != nil {
			return err
		}
		if _, err := tx.GetMember(org.ID, user.ID); err != nil {
			return fmt.Errorf("not a member of acme: %w", err)
		}
		team, err := tx.GetTeamByName(org.ID, "engineers")
		if err != nil {
			return err
		}
		ms, err := tx.ListTeamMembers(team.ID)
		for _, m := range ms {
			inTeam = inTeam || m.User.ID == user.ID
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if user.Email != "alice@example.com" || !inTeam {
		t.Errorf("user %+v (in team engineers: %v)", user, inTeam)
	}
	req, _ := http.NewRequest(http.MethodGet, w.base+"/api/user/session", nil)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var sess struct {
		User, Organization, Method string
	}
	if err := json.NewDecoder(r.Body).Decode(&sess); err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/user/session with the cookie: %d %v", r.StatusCode, err)
	}
	r.Body.Close()
	if sess.User != user.Name || sess.Organization != "acme" || sess.Method != gatehouse.SignInSAML {
		t.Errorf("session %+v, want user %s of acme by saml", sess, user.Name)
	}
}

// wantRefused asserts a refused sign-in (403 page, no session) whose audited reason contains reason.
func (w *samlWorld) wantRefused(t *testing.T, resp *http.Response, page, reason string) {
	t.Helper()
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != "" || !strings.Contains(page, "Sign-in failed") {
		t.Fatalf("want a refusal (403, no session), got %d, cookies %v: %s", resp.StatusCode, resp.Cookies(), page)
	}
	evs, err := listAudit(w.env)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs { // newest first
		if ev.Action == sso.ActionLogin && ev.Outcome == gatehouse.OutcomeFailure {
			if !strings.Contains(ev.Reason, reason) {
				t.Fatalf("the last failed sign-in's reason is %q, want it to contain %q", ev.Reason, reason)
			}
			if ev.OrgName != "acme" || ev.Details["method"] != "saml" {
				t.Fatalf("failed sign-in event %+v: want org acme, method saml", ev)
			}
			return
		}
	}
	t.Fatalf("no failed sign-in in the audit log (want reason %q)", reason)
}

func TestSAMLSignInSPInitiated(t *testing.T) {
	w := newSAMLWorld(t)
	b := samlBrowser(t)
	acs, vals := w.spInitiated(b, "acme", "/cli-login?cliSessionPort=1234&cliSessionNonce=n")
	if acs != w.base+"/login/acme/sso/saml/acs" {
		t.Fatalf("the IdP posts to %q", acs)
	}
	resp, page := post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/cli-login?cliSessionPort=1234&cliSessionNonce=n")
	w.wantPerson(resp)
	// The very same answer again (a replay, from the same browser): refused.
	resp, page = post(t, b, acs, vals)
	w.wantRefused(t, resp, page, "")
	// Posted by another browser (login CSRF), a fresh answer to a request of this one: refused.
	acs, vals = w.spInitiated(b, "acme", "")
	resp, page = post(t, samlBrowser(t), acs, vals)
	w.wantRefused(t, resp, page, "answers no sign-in this browser started")
	// A RelayState changed on the way: refused.
	acs, vals = w.spInitiated(b, "acme", "")
	vals.Set("RelayState", "/somewhere")
	resp, page = post(t, b, acs, vals)
	w.wantRefused(t, resp, page, "RelayState does not match")
	// A returnTo on another site is dropped: the person lands on the default page.
	acs, vals = w.spInitiated(b, "acme", "https://evil.example/steal")
	resp, page = post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/")
}

// TestSAMLStartOnAnotherHost: a sign-in started on the console's host goes to the API host
// first (the binding cookie must be where the IdP posts back), once.
func TestSAMLStartOnAnotherHost(t *testing.T) {
	w := newSAMLWorld(t)
	b := samlBrowser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, tc := range []struct{ query, want string }{
		{"?return=%2Fcli-login%3Fx%3D1", w.base + "/login/acme/sso?hop=1&return=%2Fcli-login%3Fx%3D1"},
		{"?hop=1", ""}, // no second hop: on to the IdP
	} {
		req, _ := http.NewRequest(http.MethodGet, w.base+"/login/acme/sso"+tc.query, nil)
		req.Host = "app.example.com"
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc := resp.Header.Get("Location")
		if tc.want != "" && (resp.StatusCode != http.StatusFound || loc != tc.want) {
			t.Errorf("%s: %d to %q, want a redirect to %q", tc.query, resp.StatusCode, loc, tc.want)
		}
		if tc.want == "" && !strings.HasPrefix(loc, w.idp.url+"/sso?") {
			t.Errorf("%s: %d to %q, want the IdP", tc.query, resp.StatusCode, loc)
		}
	}
}

// TestSAMLHopIsSameSite: the console host's hop to the API host arrives same-site (the
// console's host is a sibling of the API's); its redirect sends the console's origin as
// Referer, so that it goes on to the identity provider, while a same-site start from any
// other host (a sibling subdomain's page) is asked to continue first (found in review).
func TestSAMLHopIsSameSite(t *testing.T) {
	w := newSAMLWorld(t, func(c *httpapi.Config) { c.Sessions.PublicURL = "http://app.example.com" })
	b := samlBrowser(t)
	b.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	get := func(host, query, site, referer string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, w.base+"/login/acme/sso"+query, nil)
		if host != "" {
			req.Host = host
		}
		req.Header.Set("Sec-Fetch-Site", site)
		if referer != "" {
			req.Header.Set("Referer", referer)
		}
		resp, err := b.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := get("app.example.com", "?return=%2Fstacks", "same-origin", "")
	if resp.StatusCode != http.StatusFound || !strings.Contains(resp.Header.Get("Location"), "hop=1") || resp.Header.Get("Referrer-Policy") != "strict-origin" {
		t.Fatalf("start on the console host: %d to %q, Referrer-Policy %q; want the hop, strict-origin", resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("Referrer-Policy"))
	}
	if resp := get("", "?hop=1&return=%2Fstacks", "same-site", "http://app.example.com/"); resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), w.idp.url+"/sso?") {
		t.Errorf("the hop from the console host: %d to %q, want the IdP", resp.StatusCode, resp.Header.Get("Location"))
	}
	for _, ref := range []string{"", "http://wiki.example.com/"} {
		if resp := get("", "?hop=1&return=%2Fstacks", "same-site", ref); resp.StatusCode != http.StatusOK || resp.Header.Get("Location") != "" {
			t.Errorf("a same-site start from %q: %d to %q, want the page asking to continue", ref, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

func TestSAMLSignInIDPInitiated(t *testing.T) {
	w := newSAMLWorld(t)
	b := samlBrowser(t)
	acs, vals := w.idpInitiated(b, "acme", "stacks/acme")
	if vals.Get("RelayState") != "/stacks/acme" {
		t.Fatalf("RelayState %q", vals.Get("RelayState"))
	}
	resp, page := post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/stacks/acme")
	w.wantPerson(resp)
	// RelayState that leaves the site, or Pulumi's default RelayState (the sign-in start):
	// the default landing page.
	for _, rs := range []string{"https://evil.example/x", "//evil.example/x", `/\evil.example`, w.base + "/login/acme/sso", "javascript:alert(1)"} {
		_, vals = w.idpInitiated(b, "acme", "x")
		vals.Set("RelayState", rs) // RelayState is not signed: anyone on the way may change it
		resp, page = post(t, b, acs, vals)
		wantSignedIn(t, resp, page, "/")
	}
	// A same-origin absolute URL keeps its path.
	_, vals = w.idpInitiated(b, "acme", "x")
	vals.Set("RelayState", w.base+"/welcome/cli?a=b")
	resp, page = post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/welcome/cli?a=b")
	// Not allowed unless configured.
	if _, err := w.configure(map[string]any{"allowIdpInitiated": false}); err != nil {
		t.Fatal(err)
	}
	_, vals = w.idpInitiated(b, "acme", "x")
	resp, page = post(t, b, acs, vals)
	w.wantRefused(t, resp, page, "answers no sign-in")
	// SP-initiated still works.
	acs, vals = w.spInitiated(b, "acme", "")
	resp, page = post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/")
}

// captured returns a fresh, genuine IdP-initiated answer for acme: its ACS and form.
func (w *samlWorld) captured() (string, url.Values) {
	return w.idpInitiated(samlBrowser(w.t), "acme", "x")
}

// resign decodes the SAMLResponse in vals, removes every signature, lets mutate change the
// Response and its Assertion, then signs the Assertion and the Response with key (none when
// key is nil) and puts it back.
func resign(t *testing.T, vals url.Values, key *rsa.PrivateKey, cert *x509.Certificate, mutate func(resp, assertion *etree.Element)) url.Values {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(vals.Get("SAMLResponse"))
	if err != nil {
		t.Fatal(err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(raw); err != nil {
		t.Fatal(err)
	}
	resp := doc.Root()
	assertion := resp.SelectElement("Assertion")
	if assertion == nil {
		t.Fatal("no assertion")
	}
	for _, el := range []*etree.Element{resp, assertion} {
		for _, sig := range el.SelectElements("Signature") {
			el.RemoveChild(sig)
		}
	}
	if mutate != nil {
		mutate(resp, assertion)
	}
	if key != nil {
		ctx := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}))
		ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
		sign := func(el *etree.Element) *etree.Element {
			signed, err := ctx.SignEnveloped(el)
			if err != nil {
				t.Fatal(err)
			}
			// The Signature goes right after the Issuer (schema order).
			// (SignEnveloped appends it to the Child slice without linking it: take it off
			// the slice, then insert it properly.)
			sig := signed.Child[len(signed.Child)-1].(*etree.Element)
			signed.Child = signed.Child[:len(signed.Child)-1]
			signed.InsertChildAt(signed.SelectElement("Issuer").Index()+1, sig)
			return signed
		}
		idx := assertion.Index()
		signedAssertion := sign(assertion)
		resp.RemoveChildAt(idx)
		resp.InsertChildAt(idx, signedAssertion)
		doc.SetRoot(sign(resp))
	}
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	v := url.Values{}
	for k, vs := range vals {
		v[k] = vs
	}
	v.Set("SAMLResponse", base64.StdEncoding.EncodeToString(out))
	return v
}

func TestSAMLRefusals(t *testing.T) {
	w := newSAMLWorld(t)
	other, otherCert := keyPair(t, "attacker", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	b := samlBrowser(t)
	setText := func(el *etree.Element, path, v string) {
		t.Helper()
		found := el.FindElement(path)
		if found == nil {
			t.Fatalf("no %s", path)
		}
		found.SetText(v)
	}
	setAttr := func(el *etree.Element, path, attr, v string) {
		t.Helper()
		found := el.FindElement(path)
		if found == nil {
			t.Fatalf("no %s", path)
		}
		found.CreateAttr(attr, v)
	}

	// The re-signing helper is faithful: re-signed with the IdP's own key, an answer passes.
	acs, vals := w.captured()
	resp, page := post(t, b, acs, resign(t, vals, w.idp.key, w.idp.cert, nil))
	wantSignedIn(t, resp, page, "/x")

	cases := []struct {
		name, reason string
		key          *rsa.PrivateKey
		cert         *x509.Certificate
		mutate       func(resp, assertion *etree.Element)
	}{
		{"unsigned", "signature", nil, nil, nil},
		{"unsigned, subject changed", "signature", nil, nil, func(_, a *etree.Element) { setText(a, "Subject/NameID", "mallory@example.com") }},
		{"signed with another key", "signature", other, otherCert, func(_, a *etree.Element) { setText(a, "Subject/NameID", "mallory@example.com") }},
		{"wrong audience", "audience", w.idp.key, w.idp.cert, func(_, a *etree.Element) {
			setText(a, "Conditions/AudienceRestriction/Audience", "https://other.example.com/login/acme/sso/saml/metadata")
		}},
		{"wrong recipient", "recipient", w.idp.key, w.idp.cert, func(r, a *etree.Element) {
			r.CreateAttr("Destination", "https://other.example.com/login/acme/sso/saml/acs")
			setAttr(a, "Subject/SubjectConfirmation/SubjectConfirmationData", "Recipient", "https://other.example.com/login/acme/sso/saml/acs")
		}},
		{"wrong recipient only in the assertion", "recipient", w.idp.key, w.idp.cert, func(_, a *etree.Element) {
			setAttr(a, "Subject/SubjectConfirmation/SubjectConfirmationData", "Recipient", w.base+"/login/globex/sso/saml/acs")
		}},
		{"another identity provider", "Issuer", w.idp.key, w.idp.cert, func(r, a *etree.Element) {
			setText(r, "Issuer", "https://evil.example/idp")
			setText(a, "Issuer", "https://evil.example/idp")
		}},
		{"expired (NotOnOrAfter long past)", "expired", w.idp.key, w.idp.cert, func(_, a *etree.Element) {
			past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
			setAttr(a, "Conditions", "NotOnOrAfter", past)
			setAttr(a, "Subject/SubjectConfirmation/SubjectConfirmationData", "NotOnOrAfter", past)
		}},
		{"answers a request never made", "", w.idp.key, w.idp.cert, func(r, a *etree.Element) {
			r.CreateAttr("InResponseTo", "id-forged")
			setAttr(a, "Subject/SubjectConfirmation/SubjectConfirmationData", "InResponseTo", "id-forged")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			acs, vals := w.captured()
			resp, page := post(t, b, acs, resign(t, vals, tc.key, tc.cert, tc.mutate))
			w.wantRefused(t, resp, page, tc.reason)
		})
	}
	t.Run("replayed", func(t *testing.T) {
		acs, vals := w.captured()
		resp, page := post(t, b, acs, vals)
		wantSignedIn(t, resp, page, "/x")
		resp, page = post(t, samlBrowser(t), acs, vals)
		w.wantRefused(t, resp, page, "replay")
	})
	t.Run("expired (the clock moved on)", func(t *testing.T) {
		acs, vals := w.captured()
		w.clock.Advance(5 * time.Minute)
		defer w.clock.Advance(-5 * time.Minute)
		resp, page := post(t, b, acs, vals)
		w.wantRefused(t, resp, page, "expired")
	})
	t.Run("issued in the future beyond the clock skew", func(t *testing.T) {
		// 60s ahead: within crewjam/saml's 180s, beyond Gatehouse's 30s default.
		w.idp.clock.Advance(60 * time.Second)
		defer w.idp.clock.Advance(-60 * time.Second)
		acs, vals := w.captured()
		resp, page := post(t, b, acs, vals)
		w.wantRefused(t, resp, page, "clock skew")
	})
	t.Run("issued in the future within the clock skew", func(t *testing.T) {
		w.idp.clock.Advance(10 * time.Second)
		defer w.idp.clock.Advance(-10 * time.Second)
		acs, vals := w.captured()
		resp, page := post(t, b, acs, vals)
		wantSignedIn(t, resp, page, "/x")
	})
	t.Run("another organization's ACS", func(t *testing.T) {
		acs, vals := w.captured()
		resp, page := post(t, b, strings.Replace(acs, "/acme/", "/globex/", 1), vals)
		if (resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusUnauthorized) || sessionCookie(resp) != "" {
			t.Fatalf("want 404 or 401 (no organization globex), got %d: %s", resp.StatusCode, page)
		}
	})
	t.Run("artifact binding", func(t *testing.T) {
		resp, page := post(t, b, w.base+"/login/acme/sso/saml/acs", url.Values{"SAMLart": {"AAQAAA"}})
		w.wantRefused(t, resp, page, "Artifact")
	})
}

// TestSAMLSignatureWrapping: XML signature wrapping (XSW) attacks built from a genuine
// answer whose assertion is signed by the identity provider. None signs mallory in.
func TestSAMLSignatureWrapping(t *testing.T) {
	w := newSAMLWorld(t)
	b := samlBrowser(t)
	const evil = "mallory@example.com"
	// genuine returns the parsed genuine Response and its signed Assertion (with the
	// Response's own signature removed unless keepResponseSig).
	genuine := func(keepResponseSig bool) (url.Values, *etree.Document, *etree.Element, *etree.Element) {
		_, vals := w.captured()
		raw, _ := base64.StdEncoding.DecodeString(vals.Get("SAMLResponse"))
		doc := etree.NewDocument()
		if err := doc.ReadFromBytes(raw); err != nil {
			t.Fatal(err)
		}
		resp := doc.Root()
		if !keepResponseSig {
			resp.RemoveChild(resp.SelectElement("Signature"))
		}
		return vals, doc, resp, resp.SelectElement("Assertion")
	}
	evilCopy := func(a *etree.Element) *etree.Element {
		e := a.Copy()
		e.CreateAttr("ID", "id-evil")
		if sig := e.SelectElement("Signature"); sig != nil {
			e.RemoveChild(sig)
		}
		e.FindElement("Subject/NameID").SetText(evil)
		return e
	}
	encode := func(vals url.Values, doc *etree.Document) url.Values {
		out, err := doc.WriteToBytes()
		if err != nil {
			t.Fatal(err)
		}
		v := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(out)}, "RelayState": {vals.Get("RelayState")}}
		return v
	}
	attacks := map[string]func() url.Values{
		"evil assertion before the signed one": func() url.Values {
			vals, doc, resp, a := genuine(false)
			resp.InsertChildAt(a.Index(), evilCopy(a))
			return encode(vals, doc)
		},
		"evil assertion after the signed one": func() url.Values {
			vals, doc, resp, a := genuine(false)
			resp.AddChild(evilCopy(a))
			return encode(vals, doc)
		},
		"signed assertion moved into the evil one's Signature Object": func() url.Values {
			vals, doc, resp, a := genuine(false)
			ev := evilCopy(a)
			sig := a.SelectElement("Signature").Copy()
			obj := sig.CreateElement("ds:Object")
			obj.AddChild(a.Copy())
			ev.InsertChildAt(ev.SelectElement("Issuer").Index()+1, sig)
			resp.RemoveChild(a)
			resp.AddChild(ev)
			return encode(vals, doc)
		},
		"signed assertion moved into the evil one (child), evil carries its signature": func() url.Values {
			vals, doc, resp, a := genuine(false)
			ev := evilCopy(a)
			ev.CreateAttr("ID", a.SelectAttrValue("ID", ""))
			ev.InsertChildAt(ev.SelectElement("Issuer").Index()+1, a.SelectElement("Signature").Copy())
			ev.AddChild(a.Copy())
			resp.RemoveChild(a)
			resp.AddChild(ev)
			return encode(vals, doc)
		},
		"signed Response wrapped in an unsigned one with an evil assertion": func() url.Values {
			vals, doc, resp, a := genuine(true)
			outer := resp.Copy()
			outer.CreateAttr("ID", "id-outer")
			outer.RemoveChild(outer.SelectElement("Signature"))
			outer.RemoveChild(outer.SelectElement("Assertion"))
			ext := outer.CreateElement("samlp:Extensions")
			ext.AddChild(resp.Copy())
			outer.AddChild(evilCopy(a))
			doc.SetRoot(outer)
			return encode(vals, doc)
		},
		"signed Response with its assertion's subject changed": func() url.Values {
			vals, doc, _, a := genuine(true)
			a.RemoveChild(a.SelectElement("Signature"))
			a.FindElement("Subject/NameID").SetText(evil)
			return encode(vals, doc)
		},
		"evil assertion with a duplicate of the signed one's ID": func() url.Values {
			vals, doc, resp, a := genuine(false)
			ev := evilCopy(a)
			ev.CreateAttr("ID", a.SelectAttrValue("ID", ""))
			resp.InsertChildAt(a.Index(), ev)
			return encode(vals, doc)
		},
	}
	for name, build := range attacks {
		t.Run(name, func(t *testing.T) {
			before := w.signIns()
			resp, page := post(t, b, w.base+"/login/acme/sso/saml/acs", build())
			if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != "" {
				t.Fatalf("want a refusal, got %d %v: %s", resp.StatusCode, resp.Cookies(), page)
			}
			if w.signIns() != before {
				t.Fatal("a wrapped response signed someone in")
			}
		})
	}
	// No record of a refused sign-in carries an assertion's contents.
	evs, err := listAudit(w.env)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs {
		if ev.Outcome == gatehouse.OutcomeSuccess {
			continue
		}
		b, _ := json.Marshal(ev)
		if strings.Contains(string(b), evil) || strings.Contains(string(b), "alice@example.com") || strings.Contains(string(b), "Assertion") {
			t.Errorf("audit event carries assertion contents: %s", b)
		}
	}
}

// metadataWith returns IdP metadata XML for cert with the given NameIDFormat and SSO bindings.
func metadataWith(cert *x509.Certificate, entityID, nameIDFormat string, bindings ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0"?><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID=%q>`, entityID)
	b.WriteString(`<md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">`)
	if cert != nil {
		fmt.Fprintf(&b, `<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>%s</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`,
			base64.StdEncoding.EncodeToString(cert.Raw))
	}
	if nameIDFormat != "" {
		fmt.Fprintf(&b, `<md:NameIDFormat>%s</md:NameIDFormat>`, nameIDFormat)
	}
	for _, binding := range bindings {
		fmt.Fprintf(&b, `<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:%s" Location="https://idp.example.com/sso"/>`, binding)
	}
	b.WriteString(`</md:IDPSSODescriptor></md:EntityDescriptor>`)
	return b.String()
}

func TestSAMLConfigAPI(t *testing.T) {
	w := newSAMLWorld(t)
	var got map[string]any
	if err := w.admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/acme/saml"}, &got); err != nil {
		t.Fatal(err)
	}
	if got["entityId"] != w.idp.url+"/metadata" || got["ssoUrl"] != w.idp.url+"/sso" || got["organization"] != "acme" ||
		got["acsUrl"] != w.base+"/login/acme/sso/saml/acs" || got["spEntityId"] != w.base+"/login/acme/sso/saml/metadata" ||
		got["validationError"] != nil || got["allowIdpInitiated"] != true || got["validUntil"] == nil ||
		!strings.Contains(got["idpSsoDescriptor"].(string), "IDPSSODescriptor") {
		t.Errorf("GET saml = %v", got)
	}
	now := w.clock.Now()
	_, good := keyPair(t, "good", now.Add(-time.Hour), now.Add(time.Hour*24*30))
	_, expired := keyPair(t, "expired", now.Add(-48*time.Hour), now.Add(-time.Hour))
	for _, tc := range []struct{ name, xml, want string }{
		{"expired certificate", metadataWith(expired, "https://idp.example.com", sso.NameIDEmailAddress, "HTTP-Redirect"), sso.ErrTextCertExpired},
		{"an expired certificate beside a good one", strings.Replace(metadataWith(good, "https://idp.example.com", sso.NameIDEmailAddress, "HTTP-Redirect"),
			"</md:KeyDescriptor>", "</md:KeyDescriptor>"+keyDescriptor(expired), 1), sso.ErrTextCertExpired},
		{"no certificate", metadataWith(nil, "https://idp.example.com", sso.NameIDEmailAddress, "HTTP-Redirect"), sso.ErrTextCertMissing},
		{"transient NameID", metadataWith(good, "https://idp.example.com", "urn:oasis:names:tc:SAML:2.0:nameid-format:transient", "HTTP-Redirect"), sso.ErrTextNameIDFormat},
		{"no NameIDFormat", metadataWith(good, "https://idp.example.com", "", "HTTP-POST"), sso.ErrTextNameIDFormat},
		{"no SSO binding", metadataWith(good, "https://idp.example.com", sso.NameIDPersistent), sso.ErrTextNoSSOBinding},
		{"only an artifact binding", metadataWith(good, "https://idp.example.com", sso.NameIDPersistent, "HTTP-Artifact"), sso.ErrTextNoSSOBinding},
		{"malformed", "<md:EntityDescriptor", sso.ErrTextMalformedXML},
		{"no entity ID", metadataWith(good, "", sso.NameIDPersistent, "HTTP-POST"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := w.configure(map[string]any{"newIdpSsoDescriptor": tc.xml})
			ce := wantStatus(t, err, http.StatusBadRequest)
			if !strings.Contains(ce.Message, tc.want) {
				t.Errorf("message %q, want it to contain %q", ce.Message, tc.want)
			}
		})
	}
	// The stored configuration is unchanged by the refusals.
	var after map[string]any
	if err := w.admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/acme/saml"}, &after); err != nil {
		t.Fatal(err)
	}
	if after["entityId"] != got["entityId"] || after["modified"] != got["modified"] {
		t.Errorf("a refused PATCH changed the configuration: %v", after)
	}
	// A valid one with only the HTTP-POST binding, and settings.
	out, err := w.configure(map[string]any{"newIdpSsoDescriptor": metadataWith(good, "https://idp2.example.com", sso.NameIDPersistent, "HTTP-POST"),
		"groupsAttribute": "memberOf", "allowIdpInitiated": false})
	if err != nil {
		t.Fatal(err)
	}
	if out["entityId"] != "https://idp2.example.com" || out["nameIdFormat"] != sso.NameIDPersistent || out["groupsAttribute"] != "memberOf" ||
		out["allowIdpInitiated"] != false || out["ssoUrl"] != "https://idp.example.com/sso" {
		t.Errorf("PATCH = %v", out)
	}
	// From a URL (the identity provider's metadata endpoint).
	if out, err = w.configure(map[string]any{"idpMetadataUrl": w.idp.url + "/metadata"}); err != nil {
		t.Fatal(err)
	}
	if out["entityId"] != w.idp.url+"/metadata" || out["idpMetadataUrl"] != w.idp.url+"/metadata" || out["groupsAttribute"] != "memberOf" {
		t.Errorf("PATCH from a URL = %v", out)
	}
	wantStatus(t, func() error {
		_, err := w.configure(map[string]any{"newIdpSsoDescriptor": "x", "idpMetadataUrl": "https://x"})
		return err
	}(), http.StatusBadRequest)
	// Audited, with the facts and never the XML.
	evs, err := listAudit(w.env)
	if err != nil {
		t.Fatal(err)
	}
	var changes int
	for _, ev := range evs {
		if ev.Action == "org:saml:write" && ev.Outcome == gatehouse.OutcomeSuccess {
			changes++
			if ev.Details["idpEntityId"] == "" || ev.Details["nameIdFormat"] == "" || ev.Details["validUntil"] == "" {
				t.Errorf("SAML change event without its facts: %+v", ev)
			}
			for _, v := range ev.Details {
				if strings.Contains(v, "<") {
					t.Errorf("SAML change event carries XML: %+v", ev)
				}
			}
		}
	}
	if changes != 3 { // the world's own configuration, the POST-only one, the URL one
		t.Errorf("%d SAML configuration changes audited, want 3", changes)
	}
	// Members may not read it; removal; then 404 as Pulumi answers for an org without SAML.
	if err := w.admin.Do(cliwire.Call{Method: http.MethodDelete, Path: "/api/orgs/acme/saml"}, nil); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, w.admin.Do(cliwire.Call{Method: http.MethodGet, Path: "/api/orgs/acme/saml"}, nil), http.StatusNotFound)
	wantStatus(t, func() error { _, err := w.configure(map[string]any{"allowIdpInitiated": true}); return err }(), http.StatusBadRequest)
	resp := w.get(w.base + "/login/acme/sso")
	if page := body(t, resp); resp.StatusCode != http.StatusNotFound || !strings.Contains(page, "no SAML single sign-on") {
		t.Errorf("sign-in start without SAML: %d %s", resp.StatusCode, page)
	}
}

func keyDescriptor(cert *x509.Certificate) string {
	return `<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>` +
		base64.StdEncoding.EncodeToString(cert.Raw) + `</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>`
}

// TestSAMLMetadataURLGuarded: without --allow-private-issuers, an IdP metadata URL on the
// server's own network is not fetched.
func TestSAMLMetadataURLGuarded(t *testing.T) {
	w := newSAMLWorld(t, func(c *httpapi.Config) { c.SAMLMetadataClient = nil })
	_, err := w.configure(map[string]any{"idpMetadataUrl": w.idp.url + "/metadata"})
	if ce := wantStatus(t, err, http.StatusBadRequest); !strings.Contains(ce.Message, "loopback") {
		t.Errorf("message %q", ce.Message)
	}
}
