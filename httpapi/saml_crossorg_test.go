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

// TestSAMLEntityIDOfAnotherOrg: SAML identities are keyed by (IdP entity ID, NameID)
// across the server, and an entity ID is whatever an organization admin's metadata says.
// The admin of organization evil configures an identity provider of their own (their own
// signing key) that claims acme's IdP entity ID, and signs in acme's alice: refused, since
// evil trusts a key acme's configuration does not (found in review: evil's admin got a
// session of acme's user, a member of acme, that minted personal tokens). An organization
// configured with the same identity provider (same keys) signs the same person in.
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

	// evil: an organization whose admin (mallory) is not in acme.
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "evil"}}, nil))
	var mal struct {
		TokenValue string `json:"tokenValue"`
	}
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/evil/users", Body: map[string]string{"name": "mallory", "role": "admin"}}, &mal))
	mallory := cliwire.New(w.base, mal.TokenValue)

	// mallory's IdP: her own key, but configured with acme's IdP URL (so its entity ID and
	// the Issuer of its assertions are acme IdP's), served on her own listener.
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
	// evil's SAML: mallory's metadata, IdP-initiated sign-in, JIT members.
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

	// mallory signs in "alice" at her IdP and posts the answer to evil's ACS.
	mb := samlBrowser(t)
	r, err := mb.PostForm(malBase+"/login", url.Values{"user": {"alice"}, "password": {"x"}})
	if err != nil || r.StatusCode != http.StatusOK {
		t.Fatalf("mallory IdP login: %v %v", err, r)
	}
	r.Body.Close()
	r, err = mb.Get(malBase + "/login/evil")
	if err != nil {
		t.Fatal(err)
	}
	acs, vals = form(t, body(t, r))
	resp, page = post(t, mb, acs, vals)
	if resp.StatusCode != http.StatusForbidden || sessionCookie(resp) != "" || !strings.Contains(page, "another organization") {
		t.Fatalf("evil's identity provider signs in acme's alice: %d, cookies %v: %.300s", resp.StatusCode, resp.Cookies(), page)
	}
	var evil struct {
		Members []struct{ User struct{ Name string } }
	}
	must(t, w.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/evil/members"}, &evil))
	if len(evil.Members) != 2 { // its creator (the bootstrap admin) and mallory
		t.Fatalf("evil's members: %+v", evil.Members)
	}

	// sister: configured with acme's own identity provider (the same keys) signs alice in,
	// as the account acme's sign-in linked.
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "sister"}}, nil))
	w.registerSP("sister")
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/sister/saml", Body: map[string]any{"newIdpSsoDescriptor": w.idpMetadata(), "allowIdpInitiated": true}}, nil))
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPut, Path: "/api/orgs/sister/sso", Body: map[string]any{"jitRole": "member"}}, nil))
	sb := samlBrowser(t)
	acs, vals = w.idpInitiated(sb, "sister", "")
	resp, page = post(t, sb, acs, vals)
	if sessionCookie(resp) == "" {
		t.Fatalf("the same identity provider in sister: %d %.300s", resp.StatusCode, page)
	}
	var users []string
	for _, o := range []string{"acme", "sister"} {
		var ms struct {
			Members []struct{ User struct{ Name string } }
		}
		must(t, w.admin.Do(cliwire.Call{Method: "GET", Path: "/api/orgs/" + o + "/members"}, &ms))
		for _, m := range ms.Members {
			if m.User.Name != "alice" {
				users = append(users, o+":"+m.User.Name)
			}
		}
	}
	if len(users) != 2 || users[0][len("acme:"):] != users[1][len("sister:"):] {
		t.Fatalf("alice's account in acme and sister: %v, want the same account in both", users)
	}
}
