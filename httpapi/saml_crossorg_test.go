package httpapi_test

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml/samlidp"
	"github.com/jonboulle/clockwork"
	dsig "github.com/russellhaering/goxmldsig"
	"golang.org/x/crypto/bcrypt"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestSAMLEntityIDOfAnotherOrg: an IdP entity ID is whatever an organization admin's
// metadata says, so SAML identities belong to the organization whose configuration linked
// them. The admin of organization evil configures an identity provider of their own (their
// own signing key) that claims acme's IdP entity ID and signs in acme's alice: evil gets
// an account of its own, never acme's (found in review: evil's admin got a session of
// acme's user, a member of acme, that minted personal tokens). An organization configured
// with acme's identity provider signs the person in as an account of its own too.
func TestSAMLEntityIDOfAnotherOrg(t *testing.T) {
	w := newSAMLWorld(t)
	// The victim: alice signs in to acme through acme's IdP (JIT member of acme).
	b := samlBrowser(t)
	acs, vals := w.spInitiated(b, "acme", "")
	resp, page := post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/")
	w.wantPerson(resp)
	e := w.env
	must(t, e.createStack(w.admin, "acme", "payroll", "prod", nil))

	_, signInAtEvil := spoofingOrg(t, w)
	resp, page = signInAtEvil()
	if sessionCookie(resp) == "" {
		t.Fatalf("evil's own identity provider signs nobody in to evil: %d %.300s", resp.StatusCode, page)
	}
	members := func(org string) []string { return samlMembers(t, w, org) }
	acmeAlice, evilAlice := members("acme"), members("evil")
	if len(acmeAlice) != 1 || len(evilAlice) != 1 || acmeAlice[0] == evilAlice[0] {
		t.Fatalf("acme's SAML account %v, evil's %v: want one each, not the same", acmeAlice, evilAlice)
	}
	// The account evil's IdP signs in acts nowhere in acme.
	wantStatus(t, cliwire.New(w.base, e.personalToken(t, evilAlice[0])).Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil), 404)

	// sister: configured with acme's own identity provider. Its people are its own.
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "sister"}}, nil))
	w.registerSP("sister")
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/sister/saml", Body: map[string]any{"newIdpSsoDescriptor": w.idpMetadata(), "allowIdpInitiated": true}}, nil))
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPut, Path: "/api/orgs/sister/sso", Body: map[string]any{"jitRole": "member"}}, nil))
	sb := samlBrowser(t)
	acs, vals = w.idpInitiated(sb, "sister", "")
	resp, page = post(t, sb, acs, vals)
	if sessionCookie(resp) == "" {
		t.Fatalf("acme's identity provider in sister: %d %.300s", resp.StatusCode, page)
	}
	if got := members("sister"); len(got) != 1 || got[0] == acmeAlice[0] {
		t.Fatalf("sister's SAML account %v (acme's: %v)", got, acmeAlice)
	}
	// acme's alice still signs in to acme as her own account.
	b2 := samlBrowser(t)
	acs, vals = w.spInitiated(b2, "acme", "")
	resp, page = post(t, b2, acs, vals)
	wantSignedIn(t, resp, page, "/")
	if got := members("acme"); len(got) != 1 || got[0] != acmeAlice[0] {
		t.Fatalf("acme's members after: %v, want %v", got, acmeAlice)
	}
}

// spoofingOrg makes organization evil, whose admin mallory (not in acme) configures an
// identity provider of her own (her own key) that claims acme IdP's entity ID, with
// IdP-initiated sign-in and just-in-time members. signIn signs "alice" in at that IdP and
// posts its answer to evil's ACS.
func spoofingOrg(t *testing.T, w *samlWorld) (mallory *cliwire.Client, signIn func() (*http.Response, string)) {
	t.Helper()
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "evil"}}, nil))
	var mal struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/evil/users", Body: map[string]string{"name": "mallory", "role": "admin"}}, &mal))
	mallory = cliwire.New(w.base, mal.TokenValue)
	ln, malBase := listen(t)
	acmeIdP, _ := url.Parse(w.idp.url)
	key, cert := keyPair(t, "mallory idp", w.clock.Now().Add(-time.Hour), w.clock.Now().Add(24*time.Hour))
	srv, err := samlidp.New(samlidp.Options{URL: *acmeIdP, Key: key, Signer: key, Certificate: cert, Store: &samlidp.MemoryStore{},
		Clock: dsig.NewFakeClock(clockwork.NewFakeClockAt(w.clock.Now())), Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("x"), bcrypt.MinCost)
	must(t, srv.Store.Put("/users/alice", samlidp.User{Name: "alice", HashedPassword: hash, Email: "alice@example.com"}))
	serveOn(t, ln, srv)
	md := body(t, w.get(malBase+"/metadata"))
	if !strings.Contains(md, `entityID="`+w.idp.url+`/metadata"`) {
		t.Fatalf("mallory's metadata does not claim acme IdP's entity ID: %s", md)
	}
	must(t, mallory.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/evil/saml", Body: map[string]any{"newIdpSsoDescriptor": md, "allowIdpInitiated": true}}, nil))
	must(t, mallory.Do(cliwire.Call{Method: http.MethodPut, Path: "/api/orgs/evil/sso", Body: map[string]any{"jitRole": "member"}}, nil))
	spmd := body(t, w.get(w.base+"/login/evil/sso/saml/metadata"))
	req, _ := http.NewRequest(http.MethodPut, malBase+"/services/evil", strings.NewReader(spmd))
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("register evil at mallory's IdP: %v %v", err, r)
	}
	sc, _ := json.Marshal(map[string]any{"service_provider": w.base + "/login/evil/sso/saml/metadata"})
	req, _ = http.NewRequest(http.MethodPut, malBase+"/shortcuts/evil", bytes.NewReader(sc))
	if r, err := http.DefaultClient.Do(req); err != nil || r.StatusCode != http.StatusNoContent {
		t.Fatalf("shortcut: %v %v", err, r)
	}
	return mallory, func() (*http.Response, string) {
		mb := samlBrowser(t)
		r, err := mb.PostForm(malBase+"/login", url.Values{"user": {"alice"}, "password": {"x"}})
		if err != nil || r.StatusCode != http.StatusOK {
			t.Fatalf("mallory IdP login: %v %v", err, r)
		}
		r.Body.Close()
		if r, err = mb.Get(malBase + "/login/evil"); err != nil {
			t.Fatal(err)
		}
		acs, vals := form(t, body(t, r))
		return post(t, mb, acs, vals)
	}
}

// samlMembers lists org's members but the bootstrap admin (alice) and evil's mallory.
func samlMembers(t *testing.T, w *samlWorld, org string) []string {
	t.Helper()
	var ms struct {
		Members []struct{ User struct{ Name string } }
	}
	must(t, w.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/" + org + "/members"}, &ms))
	var out []string
	for _, m := range ms.Members {
		if m.User.Name != "alice" && m.User.Name != "mallory" {
			out = append(out, m.User.Name)
		}
	}
	return out
}

// TestSAMLIdentityPreclaimedByAnotherOrg: the other order. evil's admin signs acme IdP's
// (entity ID, alice's NameID) in at evil first, through her own key, to an account she holds
// a token of, then puts acme IdP's real (public) metadata in evil. acme's alice, signing in
// to acme for the first time, gets an account of acme's own, and mallory's account acts
// nowhere in acme (found in review: she landed in mallory's account, made a member of acme
// with alice's teams, while a check compared only the two configurations' keys).
func TestSAMLIdentityPreclaimedByAnotherOrg(t *testing.T) {
	w := newSAMLWorld(t)
	e := w.env
	mallory, signInAtEvil := spoofingOrg(t, w)
	if resp, page := signInAtEvil(); sessionCookie(resp) == "" {
		t.Fatalf("mallory's pre-claim through evil: %d %.300s", resp.StatusCode, page)
	}
	ev := samlMembers(t, w, "evil")
	if len(ev) != 1 {
		t.Fatalf("evil members: %v", ev)
	}
	xtok := cliwire.New(w.base, e.personalToken(t, ev[0]))
	must(t, mallory.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/evil/saml", Body: map[string]any{"newIdpSsoDescriptor": w.idpMetadata(), "allowIdpInitiated": true}}, nil))
	b := samlBrowser(t)
	acs, vals := w.spInitiated(b, "acme", "")
	resp, page := post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/")
	w.wantPerson(resp)
	if am := samlMembers(t, w, "acme"); len(am) != 1 || am[0] == ev[0] {
		t.Fatalf("acme's alice signed in as %v; evil's account is %s", am, ev[0])
	}
	wantStatus(t, xtok.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme"}, nil), 404)
	wantStatus(t, xtok.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/acme/teams/engineers"}, nil), 404)
}
