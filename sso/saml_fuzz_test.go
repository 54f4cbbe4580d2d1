package sso_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/sso"
	"github.com/gatehouse-dev/gatehouse/store/sqlite"
)

// Fuzzing the ACS: whatever SAMLResponse and RelayState arrive, Finish does not panic,
// answers every refusal with a *SAMLError, and accepts nothing but a response that the
// identity provider signed (built here, with the subject "alice@example.com"); the return
// path it gives is always a same-origin path.

const (
	fuzzBase   = "https://api.example.com"
	fuzzIdP    = "https://idp.example.com/metadata"
	fuzzACS    = fuzzBase + "/login/acme/sso/saml/acs"
	fuzzAud    = fuzzBase + "/login/acme/sso/saml/metadata"
	fuzzPerson = "alice@example.com"
)

type fuzzWorld struct {
	sp   *sso.SAML
	org  *gatehouse.Org
	key  *rsa.PrivateKey
	cert *x509.Certificate
	now  time.Time
}

func newFuzzWorld(tb testing.TB) *fuzzWorld {
	tb.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, tb.TempDir(), sqlite.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	now := time.Now().UTC().Truncate(time.Second)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	tpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fuzz idp"}, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	md := `<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="` + fuzzIdP + `"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">` +
		`<md:KeyDescriptor use="signing"><ds:KeyInfo xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:X509Data><ds:X509Certificate>` + base64.StdEncoding.EncodeToString(der) +
		`</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:NameIDFormat>` + sso.NameIDEmailAddress + `</md:NameIDFormat>` +
		`<md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/></md:IDPSSODescriptor></md:EntityDescriptor>`
	org := &gatehouse.Org{Name: "acme"}
	if err := db.Update(ctx, func(tx gatehouse.Tx) error {
		if err := tx.CreateOrg(org); err != nil {
			return err
		}
		return tx.PutSAMLConfig(&gatehouse.SAMLConfig{OrgID: org.ID, IDPMetadata: md, EntityID: fuzzIdP, SSOURL: "https://idp.example.com/sso",
			NameIDFormat: sso.NameIDEmailAddress, AllowIDPInitiated: true})
	}); err != nil {
		tb.Fatal(err)
	}
	sp, err := sso.NewSAML(db, sso.SAMLOptions{BaseURL: fuzzBase, Now: func() time.Time { return now }})
	if err != nil {
		tb.Fatal(err)
	}
	return &fuzzWorld{sp: sp, org: org, key: key, cert: cert, now: now}
}

// signedResponse is a genuine IdP-initiated answer for alice, signed by the world's IdP.
func (w *fuzzWorld) signedResponse(tb testing.TB) string {
	tb.Helper()
	id := make([]byte, 10)
	_, _ = rand.Read(id)
	now := w.now
	a := &saml.Assertion{ID: "id-" + hex.EncodeToString(id), IssueInstant: now, Version: "2.0", Issuer: saml.Issuer{Value: fuzzIdP},
		Subject: &saml.Subject{NameID: &saml.NameID{Format: sso.NameIDEmailAddress, Value: fuzzPerson},
			SubjectConfirmations: []saml.SubjectConfirmation{{Method: "urn:oasis:names:tc:SAML:2.0:cm:bearer",
				SubjectConfirmationData: &saml.SubjectConfirmationData{Recipient: fuzzACS, NotOnOrAfter: now.Add(90 * time.Second)}}}},
		Conditions: &saml.Conditions{NotBefore: now.Add(-30 * time.Second), NotOnOrAfter: now.Add(90 * time.Second),
			AudienceRestrictions: []saml.AudienceRestriction{{Audience: saml.Audience{Value: fuzzAud}}}},
		AuthnStatements: []saml.AuthnStatement{{AuthnInstant: now,
			AuthnContext: saml.AuthnContext{AuthnContextClassRef: &saml.AuthnContextClassRef{Value: "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"}}}},
		AttributeStatements: []saml.AttributeStatement{{Attributes: []saml.Attribute{
			{Name: "email", Values: []saml.AttributeValue{{Type: "xs:string", Value: fuzzPerson}}},
			{Name: "groups", Values: []saml.AttributeValue{{Type: "xs:string", Value: "eng"}, {Type: "xs:string", Value: "ops"}}},
		}}},
	}
	ctx := dsig.NewDefaultSigningContext(dsig.TLSCertKeyStore(tls.Certificate{Certificate: [][]byte{w.cert.Raw}, PrivateKey: w.key}))
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	signed, err := ctx.SignEnveloped(a.Element())
	if err != nil {
		tb.Fatal(err)
	}
	a.Signature = signed.Child[len(signed.Child)-1].(*etree.Element)
	resp := &saml.Response{ID: "id-r" + hex.EncodeToString(id), IssueInstant: now, Version: "2.0", Destination: fuzzACS,
		Issuer: &saml.Issuer{Value: fuzzIdP}, Status: saml.Status{StatusCode: saml.StatusCode{Value: saml.StatusSuccess}}}
	el := resp.Element()
	el.AddChild(a.Element())
	doc := etree.NewDocument()
	doc.SetRoot(el)
	b, err := doc.WriteToBytes()
	if err != nil {
		tb.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(b)
}

// check runs one ACS post and the properties every answer must have.
func (w *fuzzWorld) check(t *testing.T, samlResponse, relayState string, genuine bool) {
	t.Helper()
	form := url.Values{"SAMLResponse": {samlResponse}, "RelayState": {relayState}}
	r := httptest.NewRequest("POST", fuzzACS, strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	id, err := w.sp.Finish(context.Background(), httptest.NewRecorder(), r, form, w.org)
	if err != nil {
		var se *sso.SAMLError
		if !errors.As(err, &se) {
			t.Fatalf("a refusal that is no *SAMLError: %v", err)
		}
		if strings.Contains(se.Reason, fuzzPerson) {
			t.Fatalf("a refusal's audited reason quotes the assertion: %q", se.Reason)
		}
		return
	}
	if id.Subject != fuzzPerson || id.Issuer != fuzzIdP || !id.IDPInitiated {
		t.Fatalf("accepted an identity the IdP did not sign: %+v", id)
	}
	if !genuine && samlResponse == "" {
		t.Fatal("accepted an empty response")
	}
	if id.ReturnTo != "" && (!strings.HasPrefix(id.ReturnTo, "/") || strings.HasPrefix(id.ReturnTo, "//") ||
		strings.ContainsAny(id.ReturnTo, "\\\r\n") || sso.SafeReturn(id.ReturnTo) != id.ReturnTo) {
		t.Fatalf("RelayState %q gave the return path %q, not a same-origin path", relayState, id.ReturnTo)
	}
}

func FuzzSAMLFinish(f *testing.F) {
	w := newFuzzWorld(f)
	// A genuine answer first (accepted once; its mutations explore the verification).
	f.Add(w.signedResponse(f), "/stacks")
	f.Add(w.signedResponse(f), "https://evil.example/x")
	f.Add(w.signedResponse(f), "//evil.example/x")
	f.Add("", "")
	f.Add("not base64!", "/")
	f.Add(base64.StdEncoding.EncodeToString([]byte("<samlp:Response/>")), "/\\evil")
	f.Add(base64.StdEncoding.EncodeToString([]byte(`<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r>&x;</r>`)), fuzzBase+"/ok?a=b")
	f.Fuzz(func(t *testing.T, samlResponse, relayState string) {
		w.check(t, samlResponse, relayState, false)
	})
}

// TestSAMLFinishMutations is a short, deterministic fuzz run inside the ordinary tests:
// random byte-level mutations of genuine signed answers (decoded, mutated, encoded again)
// and of RelayState. None may sign anyone else in or give a foreign return path.
func TestSAMLFinishMutations(t *testing.T) {
	w := newFuzzWorld(t)
	// The genuine answer is accepted (so the mutations start from something valid).
	form := url.Values{"SAMLResponse": {w.signedResponse(t)}, "RelayState": {"/stacks"}}
	r := httptest.NewRequest("POST", fuzzACS, strings.NewReader(form.Encode()))
	if id, err := w.sp.Finish(context.Background(), httptest.NewRecorder(), r, form, w.org); err != nil || id.Subject != fuzzPerson ||
		id.ReturnTo != "/stacks" || id.Email != fuzzPerson || strings.Join(id.Groups, ",") != "eng,ops" {
		t.Fatalf("the genuine answer: %+v, %v", id, err)
	}
	rng := mrand.New(mrand.NewPCG(14, 2026))
	accepted := 0
	for i := range 300 {
		raw, _ := base64.StdEncoding.DecodeString(w.signedResponse(t))
		for range 1 + rng.IntN(4) {
			switch pos := rng.IntN(len(raw)); rng.IntN(3) {
			case 0:
				raw[pos] = byte(rng.IntN(256))
			case 1:
				raw = append(raw[:pos], raw[pos+1:]...)
			case 2:
				raw = append(raw[:pos], append([]byte{"<>\"'&/=x "[rng.IntN(9)]}, raw[pos:]...)...)
			}
		}
		relay := []string{"/ok", "https://evil.example/", "//x", "/\\x", fuzzBase + "/a", "\x00", ""}[rng.IntN(7)]
		before := accepted
		func() {
			form := url.Values{"SAMLResponse": {base64.StdEncoding.EncodeToString(raw)}, "RelayState": {relay}}
			r := httptest.NewRequest("POST", fuzzACS, strings.NewReader(form.Encode()))
			if id, err := w.sp.Finish(context.Background(), httptest.NewRecorder(), r, form, w.org); err == nil {
				accepted++
				if id.Subject != fuzzPerson {
					t.Fatalf("mutation %d signed in %q", i, id.Subject)
				}
			}
		}()
		w.check(t, base64.StdEncoding.EncodeToString(raw), relay, before != accepted)
	}
	t.Logf("300 mutations, %d still accepted (changes outside what the signature covers, e.g. whitespace)", accepted)
}
