package sso

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"

	gatehouse "github.com/gatehouse-dev/gatehouse"
)

// SAML 2.0 sign-in: Gatehouse is a service provider per organization, on Pulumi Cloud's
// URLs (all on the API host):
//
//	/login/{org}/sso                   SP-initiated sign-in (Pulumi's default RelayState)
//	/login/{org}/sso/saml/acs          assertion consumer service (HTTP-POST binding)
//	/login/{org}/sso/saml/metadata     SP entity ID and metadata
//
// SAML verifies what the identity provider posts and turns it into a SAMLIdentity; a
// SAMLCompleter (the session layer) signs the person in.

// Defaults of SAMLOptions.
const (
	DefaultSAMLClockSkew       = 30 * time.Second
	MaxSAMLClockSkew           = saml2MaxClockSkew
	DefaultSAMLRequestLifetime = 10 * time.Minute
	// saml2MaxClockSkew is crewjam/saml's own (package-wide) leeway: Gatehouse's bound is
	// checked on top of it, so it can only be narrower.
	saml2MaxClockSkew = 180 * time.Second

	maxSAMLResponseBytes = 1 << 20
	maxPendingCookies    = 8
	samlCookiePrefix     = "gatehouse_saml_"
)

// SAMLOptions configure SAML sign-in.
type SAMLOptions struct {
	// BaseURL is the API host's origin (https://api.example.com): entity IDs and the ACS
	// URL are made from it, and RelayState paths must be on it. Empty: SAML is off.
	BaseURL string
	// ClockSkew is how far the identity provider's clock may be from Gatehouse's (default
	// DefaultSAMLClockSkew, at most MaxSAMLClockSkew).
	ClockSkew time.Duration
	// RequestLifetime is how long an SP-initiated sign-in may take at the identity provider.
	RequestLifetime time.Duration
	// MetadataClient fetches IdP metadata URLs (a netguard client).
	MetadataClient *http.Client
	Now            func() time.Time
}

// SAMLIdentity is a person as a verified SAML assertion describes them.
type SAMLIdentity struct {
	OrgID   int64
	OrgName string
	// Issuer is the identity provider's entity ID; Subject its NameID for the person:
	// (Issuer, Subject) is the stable key of the person's identity.
	Issuer       string
	Subject      string
	NameIDFormat string
	Email        string // "" when the assertion carries none
	Name         string
	Groups       []string // for group-to-team mapping
	// SessionNotOnOrAfter is the AuthnStatement's SessionNotOnOrAfter (zero: none): the
	// session must not outlive it.
	SessionNotOnOrAfter time.Time
	// ReturnTo is the same-origin path to continue at after signing in ("" for the default).
	ReturnTo string
	// IDPInitiated is true for a sign-in the identity provider started.
	IDPInitiated bool
}

// SAMLCompleter signs in the person a verified assertion names: a session, the
// organization's membership and teams, the continuation of a CLI login (Manager.Complete
// through CompleteSAML). It always writes the response: a redirect, or an error page.
type SAMLCompleter interface {
	CompleteSAML(ctx context.Context, w http.ResponseWriter, r *http.Request, org *gatehouse.Org, id *SAMLIdentity) error
}

// SAMLError is a refused sign-in. Reason is for the audit log and says why in a few
// words, never with the assertion's contents; Error() is what the person is shown.
type SAMLError struct {
	Reason string
	Err    error // the library's error (logs only at debug: it may quote the response)
}

func (e *SAMLError) Error() string { return "SAML sign-in refused: " + e.Reason }
func (e *SAMLError) Unwrap() error { return e.Err }

func samlRefuse(reason string, err error) error { return &SAMLError{Reason: reason, Err: err} }

// SAML is the SAML service provider of every organization.
type SAML struct {
	store  gatehouse.Store
	base   *url.URL
	skew   time.Duration
	life   time.Duration
	client *http.Client
	now    func() time.Time
}

// NewSAML returns the service provider; with an empty BaseURL every call fails (SAML off).
func NewSAML(store gatehouse.Store, o SAMLOptions) (*SAML, error) {
	s := &SAML{store: store, skew: o.ClockSkew, life: o.RequestLifetime, client: o.MetadataClient, now: o.Now}
	if s.now == nil {
		s.now = time.Now
	}
	if s.skew <= 0 {
		s.skew = DefaultSAMLClockSkew
	}
	if s.skew > MaxSAMLClockSkew {
		return nil, fmt.Errorf("the SAML clock skew may be at most %s", MaxSAMLClockSkew)
	}
	if s.life <= 0 {
		s.life = DefaultSAMLRequestLifetime
	}
	if s.client == nil {
		s.client = http.DefaultClient
	}
	if o.BaseURL != "" {
		u, err := url.Parse(strings.TrimRight(o.BaseURL, "/"))
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return nil, fmt.Errorf("the SAML base URL %q must be an http(s) origin like https://api.example.com", o.BaseURL)
		}
		s.base = &url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}
	}
	return s, nil
}

// Enabled reports whether a base URL is configured.
func (s *SAML) Enabled() bool { return s != nil && s.base != nil }

func (s *SAML) enabled() error {
	if !s.Enabled() {
		return gatehouse.Errorf(gatehouse.EUNAVAILABLE, "SAML sign-in is not set up on this server (it needs the server's public URL)")
	}
	return nil
}

func (s *SAML) url(p string) *url.URL {
	u := *s.base
	u.Path = strings.TrimRight(s.base.Path, "/") + p
	return &u
}

// OnBaseHost reports whether host (a request's Host) is the base URL's: the cookie that
// binds a sign-in to its browser is set there, where the identity provider posts back.
func (s *SAML) OnBaseHost(host string) bool {
	return s.Enabled() && strings.EqualFold(host, s.base.Host)
}

// StartPath is the path of the organization's SP-initiated sign-in.
func StartPath(org string) string { return "/login/" + url.PathEscape(org) + "/sso" }

// EntityID is the organization's SP entity ID (its metadata URL).
func (s *SAML) EntityID(org string) string { return s.url(StartPath(org) + "/saml/metadata").String() }

// ACSURL is the organization's assertion consumer service URL.
func (s *SAML) ACSURL(org string) string { return s.url(StartPath(org) + "/saml/acs").String() }

// StartURL is the organization's SP-initiated sign-in URL (Pulumi's default RelayState).
func (s *SAML) StartURL(org string) string { return s.url(StartPath(org)).String() }

// serviceProvider is the organization's service provider for one request (nil cfg: for
// the SP metadata, before an identity provider is configured).
func (s *SAML) serviceProvider(org string, cfg *gatehouse.SAMLConfig, now time.Time) (*saml.ServiceProvider, error) {
	sp := &saml.ServiceProvider{
		EntityID:    s.EntityID(org),
		MetadataURL: *s.url(StartPath(org) + "/saml/metadata"),
		AcsURL:      *s.url(StartPath(org) + "/saml/acs"),
		// No NameIDPolicy format: the identity provider sends the NameID its application
		// is configured with (persistent or emailAddress, checked on arrival).
		AuthnNameIDFormat:                saml.UnspecifiedNameIDFormat,
		AssertionConsumerServiceBindings: []string{saml.HTTPPostBinding},
		MetadataValidDuration:            48 * time.Hour,
		Clock:                            dsig.NewFakeClockAt(now),
		RejectSHA1Signatures:             false, // Entra ID and ADFS may still sign with SHA-1 (a setting there)
		RejectUnknownConditions:          true,
	}
	if cfg == nil {
		return sp, nil
	}
	md, err := ParseIDPMetadata([]byte(cfg.IDPMetadata), now)
	if err != nil {
		return nil, err
	}
	sp.IDPMetadata = md.Descriptor
	sp.AllowIDPInitiated = cfg.AllowIDPInitiated
	return sp, nil
}

// SPMetadata is the organization's SP metadata XML.
func (s *SAML) SPMetadata(org *gatehouse.Org) ([]byte, error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	sp, err := s.serviceProvider(org.Name, nil, s.now())
	if err != nil {
		return nil, err
	}
	md := sp.Metadata()
	b, err := xmlMarshal(md)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// config returns the organization's SAML configuration (ENOTFOUND when none).
func (s *SAML) config(ctx context.Context, orgID int64) (*gatehouse.SAMLConfig, error) {
	var cfg *gatehouse.SAMLConfig
	err := s.store.View(ctx, func(tx gatehouse.Tx) (err error) { cfg, err = tx.GetSAMLConfig(orgID); return err })
	return cfg, err
}

// Begin starts an SP-initiated sign-in: it records an AuthnRequest bound to the browser
// (by the cookie it returns, sent only to the ACS) and writes the redirect (or, for an
// identity provider with only the HTTP-POST binding, the auto-submitting form) to the
// identity provider. returnTo is where the person continues after signing in; anything
// but a same-origin path is dropped.
func (s *SAML) Begin(ctx context.Context, w http.ResponseWriter, org *gatehouse.Org, returnTo string) error {
	if err := s.enabled(); err != nil {
		return err
	}
	cfg, err := s.config(ctx, org.ID)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return gatehouse.Errorf(gatehouse.ENOTFOUND, "organization %s has no SAML single sign-on", org.Name)
		}
		return err
	}
	now := s.now()
	sp, err := s.serviceProvider(org.Name, cfg, now)
	if err != nil {
		return gatehouse.Errorf(gatehouse.EUNAVAILABLE, "the organization's SAML identity provider cannot be used: %s", gatehouse.ErrorMessage(err))
	}
	binding, location := saml.HTTPRedirectBinding, sp.GetSSOBindingLocation(saml.HTTPRedirectBinding)
	if location == "" {
		binding, location = saml.HTTPPostBinding, sp.GetSSOBindingLocation(saml.HTTPPostBinding)
	}
	req, err := sp.MakeAuthenticationRequest(location, binding, saml.HTTPPostBinding)
	if err != nil {
		return err
	}
	var secret [32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return err
	}
	rec := &gatehouse.SAMLRequest{ID: req.ID, OrgID: org.ID, Binding: sha256.Sum256(secret[:]),
		ReturnTo: SafeReturnPath(returnTo, s.base, StartPath(org.Name)), Expires: now.Add(s.life)}
	if err := s.store.Update(ctx, func(tx gatehouse.Tx) error { return tx.CreateSAMLRequest(rec) }); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: samlCookiePrefix + req.ID, Value: base64.RawURLEncoding.EncodeToString(secret[:]),
		Path: s.url(StartPath(org.Name) + "/saml/acs").Path, MaxAge: int(s.life.Seconds()), HttpOnly: true,
		// The identity provider's form posts to the ACS from its own site: only
		// SameSite=None cookies come along (and those must be Secure, on https).
		Secure: s.base.Scheme == "https", SameSite: sameSiteForPost(s.base.Scheme),
	})
	w.Header().Set("Cache-Control", "no-store")
	// The RelayState is the request's ID: the answer must carry it back unchanged.
	if binding == saml.HTTPRedirectBinding {
		u, err := req.Redirect(req.ID, sp)
		if err != nil {
			return err
		}
		http.Redirect(w, &http.Request{Method: http.MethodGet}, u.String(), http.StatusFound)
		return nil
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'unsafe-inline'; form-action *")
	_, err = w.Write(req.Post(req.ID))
	return err
}

func sameSiteForPost(scheme string) http.SameSite {
	if scheme == "https" {
		return http.SameSiteNoneMode
	}
	// Browsers refuse SameSite=None without Secure; on plain http (development) the
	// default lets a top-level cross-site POST through in some browsers only.
	return http.SameSiteDefaultMode
}

// Finish verifies the identity provider's answer posted to the ACS (form already read
// into form) and returns the identity it proves. Every refusal is a *SAMLError. It clears
// the cookie of the request it answers.
func (s *SAML) Finish(ctx context.Context, w http.ResponseWriter, r *http.Request, form url.Values, org *gatehouse.Org) (*SAMLIdentity, error) {
	if err := s.enabled(); err != nil {
		return nil, err
	}
	if form.Get("SAMLart") != "" {
		return nil, samlRefuse("the HTTP-Artifact binding is not supported", nil)
	}
	raw := form.Get("SAMLResponse")
	if raw == "" {
		return nil, samlRefuse("no SAMLResponse", nil)
	}
	if len(raw) > maxSAMLResponseBytes {
		return nil, samlRefuse("SAMLResponse too large", nil)
	}
	relayState := form.Get("RelayState")
	if len(relayState) > maxReturnPath {
		return nil, samlRefuse("RelayState too long", nil)
	}
	cfg, err := s.config(ctx, org.ID)
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, samlRefuse("the organization has no SAML configuration", err)
		}
		return nil, err
	}
	now := s.now()
	sp, err := s.serviceProvider(org.Name, cfg, now)
	if err != nil {
		return nil, samlRefuse("the configured IdP metadata is not valid now: "+gatehouse.ErrorMessage(err), err)
	}
	sp.ReplayCache = &replayCache{s: s, ctx: ctx, orgID: org.ID, issuer: cfg.EntityID}
	// The requests this browser started (their IDs name its cookies).
	pending := map[string]string{}
	var ids []string
	for _, c := range r.Cookies() {
		if id, ok := strings.CutPrefix(c.Name, samlCookiePrefix); ok && id != "" && len(ids) < maxPendingCookies {
			if _, dup := pending[id]; !dup {
				pending[id] = c.Value
				ids = append(ids, id)
			}
		}
	}
	xmlBytes, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(raw), ""))
	if err != nil {
		return nil, samlRefuse("SAMLResponse is not base64", err)
	}
	assertion, err := sp.ParseXMLResponse(xmlBytes, ids, *s.url(StartPath(org.Name) + "/saml/acs"))
	if err != nil {
		return nil, samlRefuse(reasonOf(err), err)
	}
	if err := s.checkTimes(assertion, sp.AcsURL.String(), now); err != nil {
		return nil, err
	}
	id, err := s.identity(assertion, cfg)
	if err != nil {
		return nil, err
	}
	id.OrgID, id.OrgName = org.ID, org.Name
	inResponseTo := answeredRequest(assertion, sp.AcsURL.String())
	if inResponseTo == "" {
		if !cfg.AllowIDPInitiated {
			return nil, samlRefuse("IdP-initiated sign-in is not allowed for this organization", nil)
		}
		id.IDPInitiated = true
		id.ReturnTo = SafeReturnPath(relayState, s.base, StartPath(org.Name))
		return id, nil
	}
	secret, ok := pending[inResponseTo]
	if !ok {
		return nil, samlRefuse("the response answers no sign-in this browser started", nil)
	}
	http.SetCookie(w, &http.Cookie{Name: samlCookiePrefix + inResponseTo, Value: "", Path: sp.AcsURL.Path, MaxAge: -1, HttpOnly: true,
		Secure: s.base.Scheme == "https", SameSite: sameSiteForPost(s.base.Scheme)})
	if relayState != inResponseTo {
		return nil, samlRefuse("RelayState does not match the sign-in request", nil)
	}
	var req *gatehouse.SAMLRequest
	err = s.store.Update(ctx, func(tx gatehouse.Tx) (err error) { req, err = tx.TakeSAMLRequest(org.ID, inResponseTo); return err })
	if err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, samlRefuse("the sign-in request is unknown, expired or answered already", err)
		}
		return nil, err
	}
	got, err := base64.RawURLEncoding.DecodeString(secret)
	if err != nil || sha256.Sum256(got) != req.Binding {
		return nil, samlRefuse("the sign-in request was started by another browser", nil)
	}
	id.ReturnTo = req.ReturnTo
	return id, nil
}

// answeredRequest is the request ID the assertion's bearer confirmation for acs answers
// ("" when none: IdP-initiated).
func answeredRequest(a *saml.Assertion, acs string) string {
	if a.Subject == nil {
		return ""
	}
	for _, c := range a.Subject.SubjectConfirmations {
		if c.Method == "urn:oasis:names:tc:SAML:2.0:cm:bearer" && c.SubjectConfirmationData != nil &&
			c.SubjectConfirmationData.Recipient == acs && c.SubjectConfirmationData.InResponseTo != "" {
			return c.SubjectConfirmationData.InResponseTo
		}
	}
	return ""
}

// checkTimes applies Gatehouse's clock skew bound, narrower than the library's: the
// assertion must be issued, and valid, within skew of now.
func (s *SAML) checkTimes(a *saml.Assertion, acs string, now time.Time) error {
	skew := s.skew
	if a.IssueInstant.After(now.Add(skew)) {
		return samlRefuse("the assertion is issued in the future (clock skew)", nil)
	}
	if c := a.Conditions; c != nil {
		if c.NotBefore.After(now.Add(skew)) {
			return samlRefuse("the assertion is not yet valid (clock skew)", nil)
		}
		if !c.NotOnOrAfter.IsZero() && !now.Before(c.NotOnOrAfter.Add(skew)) {
			return samlRefuse("the assertion has expired", nil)
		}
	}
	ok := false
	if a.Subject != nil {
		for _, c := range a.Subject.SubjectConfirmations {
			d := c.SubjectConfirmationData
			if c.Method != "urn:oasis:names:tc:SAML:2.0:cm:bearer" || d == nil || d.Recipient != acs {
				continue
			}
			if d.NotBefore.After(now.Add(skew)) || !now.Before(d.NotOnOrAfter.Add(skew)) {
				continue
			}
			ok = true
		}
	}
	if !ok {
		return samlRefuse("the assertion has expired", nil)
	}
	return nil
}

// identity maps the assertion's subject and attributes.
func (s *SAML) identity(a *saml.Assertion, cfg *gatehouse.SAMLConfig) (*SAMLIdentity, error) {
	if a.Subject == nil || a.Subject.NameID == nil || strings.TrimSpace(a.Subject.NameID.Value) == "" {
		return nil, samlRefuse("the assertion names no subject (NameID)", nil)
	}
	nid := a.Subject.NameID
	if nid.Format == nameIDTransient {
		return nil, samlRefuse("the assertion's NameID is transient (a stable persistent or emailAddress NameID is required)", nil)
	}
	if len(nid.Value) > 512 {
		return nil, samlRefuse("the assertion's NameID is too long", nil)
	}
	id := &SAMLIdentity{Issuer: cfg.EntityID, Subject: nid.Value, NameIDFormat: nid.Format}
	attrs := attributeValues(a)
	id.Email = first(attrs, cfg.EmailAttribute, defaultEmailAttributes)
	if id.Email == "" && nid.Format == NameIDEmailAddress {
		id.Email = nid.Value
	}
	id.Name = first(attrs, cfg.NameAttribute, defaultNameAttributes)
	if id.Name == "" {
		given, family := first(attrs, "", givenNameAttributes), first(attrs, "", familyNameAttributes)
		id.Name = strings.TrimSpace(given + " " + family)
	}
	id.Email, id.Name = bound(id.Email, 320), bound(id.Name, 256)
	if id.Email != "" && (!strings.Contains(id.Email, "@") || strings.ContainsAny(id.Email, " <>\"\r\n")) {
		id.Email = "" // not an address: never used to match anyone
	}
	seen := map[string]bool{}
	for _, g := range all(attrs, cfg.GroupsAttribute, defaultGroupsAttributes) {
		g = bound(strings.TrimSpace(g), 256)
		if g != "" && !seen[g] && len(id.Groups) < maxGroups {
			seen[g] = true
			id.Groups = append(id.Groups, g)
		}
	}
	for _, st := range a.AuthnStatements {
		if st.SessionNotOnOrAfter != nil && (id.SessionNotOnOrAfter.IsZero() || st.SessionNotOnOrAfter.Before(id.SessionNotOnOrAfter)) {
			id.SessionNotOnOrAfter = st.SessionNotOnOrAfter.UTC()
		}
	}
	return id, nil
}

const maxGroups = 500

// Default attribute names (Name or FriendlyName, case-insensitive) when the configuration
// names none: Okta's attribute statements (email, firstName, lastName, groups), Entra ID's
// claim URIs, and the LDAP/eduPerson OIDs other identity providers send.
var (
	defaultEmailAttributes = []string{"email", "mail", "emailAddress",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress", "urn:oid:0.9.2342.19200300.100.1.3"}
	defaultNameAttributes = []string{"name", "displayName", "http://schemas.microsoft.com/identity/claims/displayname",
		"cn", "urn:oid:2.5.4.3"}
	givenNameAttributes = []string{"firstName", "givenName", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname",
		"urn:oid:2.5.4.42"}
	familyNameAttributes = []string{"lastName", "surname", "sn", "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname",
		"urn:oid:2.5.4.4"}
	defaultGroupsAttributes = []string{"groups", "memberOf", "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
		"eduPersonAffiliation", "urn:oid:1.3.6.1.4.1.5923.1.1.1.1"}
)

// attributeValues maps each attribute's Name and FriendlyName (lower-cased) to its values.
func attributeValues(a *saml.Assertion) map[string][]string {
	out := map[string][]string{}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			var vs []string
			for _, v := range at.Values {
				vs = append(vs, v.Value)
			}
			for _, n := range []string{at.Name, at.FriendlyName} {
				if n != "" {
					k := strings.ToLower(n)
					out[k] = append(out[k], vs...)
				}
			}
		}
	}
	return out
}

func all(attrs map[string][]string, configured string, defaults []string) []string {
	if configured != "" {
		return attrs[strings.ToLower(configured)]
	}
	for _, n := range defaults {
		if vs := attrs[strings.ToLower(n)]; len(vs) > 0 {
			return vs
		}
	}
	return nil
}

func first(attrs map[string][]string, configured string, defaults []string) string {
	for _, v := range all(attrs, configured, defaults) {
		if v = strings.TrimSpace(v); v != "" {
			return v
		}
	}
	return ""
}

func bound(s string, n int) string {
	s = samlOneLine(s)
	if len(s) > n {
		return ""
	}
	return s
}

// reasonOf names why the library refused a response, by its error classes only: the
// messages may quote the response.
func reasonOf(err error) string {
	var bad saml.ErrBadStatus
	switch {
	case errors.Is(err, saml.ErrAssertionReplayed):
		return "the assertion was used before (replay)"
	case errors.As(err, &bad):
		return "the identity provider answered with an error status"
	case errors.Is(err, saml.ErrUntrustedCertificate):
		return "the signature is not made with the identity provider's certificate"
	case errors.Is(err, saml.ErrCertificateNotValidNow):
		return "the identity provider's signing certificate is expired or not yet valid"
	case errors.Is(err, saml.ErrInvalidSignature):
		return "the response or assertion signature is missing or invalid"
	case errors.Is(err, saml.ErrAudienceMismatch):
		return "the assertion is for another audience"
	case errors.Is(err, saml.ErrDestinationMismatch):
		return "the response is for another recipient (Destination or Recipient)"
	case errors.Is(err, saml.ErrRequestIDMismatch):
		return "the response answers no sign-in this browser started (InResponseTo)"
	case errors.Is(err, saml.ErrIssuerMismatch):
		return "the response is from another identity provider (Issuer)"
	case errors.Is(err, saml.ErrExpired):
		return "the response or assertion has expired"
	case errors.Is(err, saml.ErrNotYetValid):
		return "the response or assertion is not yet valid (clock skew)"
	case errors.Is(err, saml.ErrDecryptionFailed):
		return "the assertion cannot be decrypted"
	case errors.Is(err, saml.ErrUnsupported):
		return "the response uses something not supported"
	case errors.Is(err, saml.ErrMissingElement):
		return "the response lacks a required element"
	case errors.Is(err, saml.ErrMalformedMessage):
		return "the response is malformed"
	}
	var ie *saml.InvalidResponseError
	if errors.As(err, &ie) && ie.PrivateErr != nil && strings.Contains(ie.PrivateErr.Error(), "signature element not present") {
		// (crewjam/saml's own unexported error for an unsigned response and assertion)
		return "neither the response nor the assertion is signed (signature required)"
	}
	return "the response is not valid"
}

// replayCache records accepted assertions in the store, so that every process refuses a
// replay until the assertion could not be accepted anyway.
type replayCache struct {
	s      *SAML
	ctx    context.Context
	orgID  int64
	issuer string
}

func (c *replayCache) Consume(assertionID string, expiresAt time.Time) error {
	sum := sha256.Sum256([]byte(c.issuer + "\x00" + assertionID))
	var ok bool
	err := c.s.store.Update(c.ctx, func(tx gatehouse.Tx) (err error) {
		ok, err = tx.ConsumeSAMLAssertion(c.orgID, hex.EncodeToString(sum[:]), expiresAt)
		return err
	})
	if err != nil {
		return err
	}
	if !ok {
		return saml.ErrAssertionReplayed
	}
	return nil
}

// Prune deletes expired requests and replay records (best effort).
func (s *SAML) Prune(ctx context.Context) error {
	return s.store.Update(ctx, func(tx gatehouse.Tx) error { _, err := tx.PruneSAML(); return err })
}

// CompleteSAML hands a verified SAML identity to Complete: the person is signed in to
// org (policy, just-in-time membership, group-to-team mapping, session, audit) and sent
// to id.ReturnTo. The identity provider is the organization's authority on its people's
// addresses, so the email it asserts counts as verified.
func (m *Manager) CompleteSAML(ctx context.Context, w http.ResponseWriter, r *http.Request, org *gatehouse.Org, id *SAMLIdentity) error {
	return m.Complete(ctx, w, r, org.Name, Identity{Provider: gatehouse.SignInSAML, Issuer: id.Issuer, Subject: id.Subject,
		Email: id.Email, EmailVerified: id.Email != "", Name: id.Name, Groups: id.Groups,
		SessionNotOnOrAfter: id.SessionNotOnOrAfter}, id.ReturnTo)
}
