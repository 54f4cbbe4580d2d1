package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/gatehouse-dev/gatehouse/internal/cliwire"
)

// TestSAMLSecondOrgMember: one IdP (one Entra tenant) configured in acme and sister;
// alice's SAML account (acme's, just in time) is added to sister by its admin. Her first
// SAML sign-in to sister finds no link of sister's, and her account is in two
// organizations, so it cannot be linked by email ("sign in first" cannot work: a SAML
// answer is a cross-site POST, without the session cookie); with just-in-time membership
// she gets an account of sister's own, as the README says (found in review: she was
// refused, locked out of sister's SAML).
func TestSAMLSecondOrgMember(t *testing.T) {
	w := newSAMLWorld(t)
	b := samlBrowser(t)
	acs, vals := w.spInitiated(b, "acme", "")
	resp, page := post(t, b, acs, vals)
	wantSignedIn(t, resp, page, "/")
	acmeAlice := samlMembers(t, w, "acme")
	if len(acmeAlice) != 1 {
		t.Fatalf("acme members %v", acmeAlice)
	}
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs", Body: map[string]string{"name": "sister"}}, nil))
	w.registerSP("sister")
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPatch, Path: "/api/orgs/sister/saml", Body: map[string]any{"newIdpSsoDescriptor": w.idpMetadata(), "allowIdpInitiated": true}}, nil))
	must(t, w.admin.Do(cliwire.Call{Method: http.MethodPut, Path: "/api/orgs/sister/sso", Body: map[string]any{"jitRole": "member"}}, nil))
	must(t, w.admin.Do(cliwire.Call{Method: "POST", Path: "/api/orgs/sister/members/" + acmeAlice[0], Body: map[string]string{"role": "member"}}, nil))

	sb := samlBrowser(t) // a fresh browser: as a real one at a cross-site POST (no Lax cookie)
	acs, vals = w.idpInitiated(sb, "sister", "")
	resp, page = post(t, sb, acs, vals)
	if sessionCookie(resp) == "" {
		t.Fatalf("alice, a member of sister (added by its admin), cannot sign in to sister through its SAML: %d %s", resp.StatusCode, page[strings.Index(page, "<body>"):])
	}
	if got := samlMembers(t, w, "sister"); len(got) != 2 {
		t.Errorf("sister's members %v: want acme's account (added by hand) and sister's own", got)
	}
}
