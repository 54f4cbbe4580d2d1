package sso

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crewjam/saml"
	"github.com/crewjam/saml/samlsp"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// SAML NameID formats Gatehouse accepts: stable identifiers only (Pulumi Cloud's rule).
const (
	NameIDPersistent   = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
	NameIDEmailAddress = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
	nameIDTransient    = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
)

// The texts of IdP metadata validation errors, as Pulumi Cloud's documentation gives them
// (administration/access-identity/saml/sso.md, troubleshooting).
const (
	ErrTextMalformedXML   = "Malformed XML"
	ErrTextCertExpired    = "KeyDescriptor public key certificate in the IDPSSODescriptor has expired"
	ErrTextCertMissing    = "KeyDescriptor public key certificate is missing in the IDPSSODescriptor"
	ErrTextNameIDFormat   = "NameIDFormat does not have the expected value or is completely missing"
	ErrTextNoSSOBinding   = "An SSO binding was not found in the XML. Contact your SSO provider."
	ErrTextNoEntityID     = "The IdP metadata XML has no entity ID"
	ErrTextNoIDPSSO       = "The IdP metadata XML has no IDPSSODescriptor"
	maxIDPMetadataBytes   = 512 << 10
	metadataFetchDeadline = 15 * time.Second
)

// IDPMetadata is what Gatehouse takes from an identity provider's metadata.
type IDPMetadata struct {
	Descriptor   *saml.EntityDescriptor
	EntityID     string
	SSOURL       string // the HTTP-Redirect SingleSignOnService, else the HTTP-POST one
	NameIDFormat string // persistent preferred over emailAddress
	// ValidUntil is the earliest NotAfter of the signing certificates.
	ValidUntil time.Time
}

// ParseIDPMetadata parses and validates an identity provider's metadata XML (an
// EntityDescriptor, or an EntitiesDescriptor with one identity provider) at now: an
// IDPSSODescriptor with an entity ID, signing certificates none of which has expired, a
// persistent or emailAddress NameIDFormat and an HTTP-Redirect or HTTP-POST
// SingleSignOnService. Errors are EINVALID with the texts of Pulumi Cloud's documentation.
func ParseIDPMetadata(xmlText []byte, now time.Time) (*IDPMetadata, error) {
	if len(xmlText) > maxIDPMetadataBytes {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: the metadata is larger than %d bytes", ErrTextMalformedXML, maxIDPMetadataBytes)
	}
	if len(bytes.TrimSpace(xmlText)) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: empty", ErrTextMalformedXML)
	}
	ed, err := samlsp.ParseMetadata(xmlText)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: %s", ErrTextMalformedXML, samlOneLine(err.Error()))
	}
	if len(ed.IDPSSODescriptors) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", ErrTextNoIDPSSO)
	}
	if strings.TrimSpace(ed.EntityID) == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", ErrTextNoEntityID)
	}
	md := &IDPMetadata{Descriptor: ed, EntityID: ed.EntityID}
	var certs []*x509.Certificate
	formats := map[string]bool{}
	for _, d := range ed.IDPSSODescriptors {
		for _, kd := range d.KeyDescriptors {
			if kd.Use != "" && kd.Use != "signing" {
				continue
			}
			for _, xc := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(xc.Data), ""))
				if err != nil {
					return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: a certificate is not valid base64", ErrTextCertMissing)
				}
				c, err := x509.ParseCertificate(der)
				if err != nil {
					return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: a certificate cannot be parsed: %s", ErrTextCertMissing, samlOneLine(err.Error()))
				}
				certs = append(certs, c)
			}
		}
		for _, f := range d.NameIDFormats {
			formats[strings.TrimSpace(string(f))] = true
		}
		for _, s := range d.SingleSignOnServices {
			switch {
			case s.Binding == saml.HTTPRedirectBinding && s.Location != "":
				md.SSOURL = s.Location
			case s.Binding == saml.HTTPPostBinding && s.Location != "" && md.SSOURL == "":
				md.SSOURL = s.Location
			}
		}
	}
	if len(certs) == 0 {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", ErrTextCertMissing)
	}
	for _, c := range certs {
		if !now.Before(c.NotAfter) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s (expired %s)", ErrTextCertExpired, c.NotAfter.UTC().Format(time.RFC3339))
		}
		if md.ValidUntil.IsZero() || c.NotAfter.Before(md.ValidUntil) {
			md.ValidUntil = c.NotAfter.UTC()
		}
	}
	switch {
	case formats[NameIDPersistent]:
		md.NameIDFormat = NameIDPersistent
	case formats[NameIDEmailAddress]:
		md.NameIDFormat = NameIDEmailAddress
	default:
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s (want %s or %s)", ErrTextNameIDFormat, NameIDPersistent, NameIDEmailAddress)
	}
	if md.SSOURL == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s", ErrTextNoSSOBinding)
	}
	if u, err := url.Parse(md.SSOURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s (the SingleSignOnService location is not an http(s) URL)", ErrTextNoSSOBinding)
	}
	return md, nil
}

// FetchIDPMetadata fetches metadata from rawURL with client (a netguard client: an
// organization administrator chooses the URL, so it must not reach the server's own
// network) and returns the body, bounded.
func FetchIDPMetadata(ctx context.Context, client *http.Client, rawURL string) ([]byte, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "idpMetadataUrl must be an http(s) URL")
	}
	if u.User != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "idpMetadataUrl must not carry credentials")
	}
	ctx, cancel := context.WithTimeout(ctx, metadataFetchDeadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "idpMetadataUrl: %v", err)
	}
	req.Header.Set("Accept", "application/samlmetadata+xml, application/xml, text/xml")
	resp, err := client.Do(req)
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "cannot fetch the IdP metadata from %s: %s", u.Redacted(), samlOneLine(err.Error()))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "cannot fetch the IdP metadata from %s: HTTP %d", u.Redacted(), resp.StatusCode)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxIDPMetadataBytes+1))
	if err != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "cannot fetch the IdP metadata from %s: %s", u.Redacted(), samlOneLine(err.Error()))
	}
	if len(b) > maxIDPMetadataBytes {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "%s: the metadata is larger than %d bytes", ErrTextMalformedXML, maxIDPMetadataBytes)
	}
	return b, nil
}

// ValidationError is the metadata's problem at now ("" when none): the certificate
// validated on save may have expired since.
func ValidationError(c *gatehouse.SAMLConfig, now time.Time) string {
	if _, err := ParseIDPMetadata([]byte(c.IDPMetadata), now); err != nil {
		return gatehouse.ErrorMessage(err)
	}
	return ""
}

func samlOneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

func xmlMarshal(v any) ([]byte, error) {
	b, err := xml.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return append([]byte(xml.Header), b...), nil
}
