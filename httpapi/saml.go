package httpapi

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	gatehouse "github.com/gatehouse-dev/gatehouse"
	"github.com/gatehouse-dev/gatehouse/authz"
	"github.com/gatehouse-dev/gatehouse/netguard"
	"github.com/gatehouse-dev/gatehouse/sso"
)

// SAML 2.0 sign-in on Pulumi Cloud's URLs (the browser's side, on the API host) and the
// organization administration API GET/PATCH/DELETE /api/orgs/{org}/saml. The work is
// package sso's; these handlers read requests and write answers.

type samlAPI struct {
	s         *Server
	sp        *sso.SAML
	done      sso.SAMLCompleter
	client    *http.Client
	lastPrune atomic.Int64
}

func (s *Server) registerSAMLRoutes() {
	client := s.cfg.SAMLMetadataClient
	if client == nil {
		client = netguard.NewClient(netguard.Options{AllowPrivate: s.cfg.AllowPrivateIssuers, MaxBodyBytes: 1 << 20})
	}
	opts := s.cfg.SAML
	if opts.BaseURL == "" {
		opts.BaseURL = s.cfg.Sessions.PublicURL
	}
	opts.MetadataClient, opts.Now = client, s.cfg.Now
	sp, err := sso.NewSAML(s.store, opts)
	if err != nil {
		// Configuration is checked at start-up (cmd/gatehouse); a bad one here is a bug.
		panic(err)
	}
	a := &samlAPI{s: s, sp: sp, done: s.sso, client: client}
	get, post, patch, del := http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete
	s.handle(get, "/login/{org}/sso", authz.Public, a.start)
	s.handle(get, "/login/{org}/sso/saml/metadata", authz.Public, a.metadata)
	// Sign-ins are audited by the handler (a refusal, with its reason) and by Complete.
	s.handle(post, "/login/{org}/sso/saml/acs", authz.Public, a.acs).selfAudited()
	s.handle(get, "/api/orgs/{org}/saml", authz.OrgSAMLRead, a.get)
	s.handle(patch, "/api/orgs/{org}/saml", authz.OrgSAMLWrite, a.patch)
	s.handle(del, "/api/orgs/{org}/saml", authz.OrgSAMLWrite, a.delete)
}

// errorPage answers a browser page's failure with an HTML page (the JSON the API speaks
// means nothing to a person).
func (a *samlAPI) errorPage(rq *Request, err error) http.Handler {
	rq.status = statusOf(err)
	msg := gatehouse.ErrorMessage(err)
	var se *sso.SAMLError
	if errors.As(err, &se) {
		rq.status, msg = http.StatusForbidden, se.Error()
	} else if rq.status >= 500 {
		a.s.log.Error("SAML sign-in failed", "request_id", rq.ID, "err", err)
		msg = "the sign-in failed (internal error); request " + rq.ID
	}
	status := rq.status
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.s.sso.ErrorPage(w, r, status, "Sign-in failed", msg)
	})
}

// start is GET /login/{org}/sso[?returnTo=/path or ?return=/path]: SP-initiated sign-in (a redirect, or
// the auto-posting form, to the identity provider).
func (a *samlAPI) start(rq *Request) (any, error) {
	rq.status = http.StatusFound
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.s.sso.ConfirmCrossSiteStart(w, r, rq.Org.Name) {
			return
		}
		q := r.URL.Query()
		if a.sp.Enabled() && !a.sp.OnBaseHost(r.Host) && q.Get("hop") == "" {
			// Started on another host (the console's app. host): go to the API host first,
			// where the answer will arrive, so that the browser's binding cookie is there.
			// Once only: behind a proxy that rewrites Host this would loop.
			q.Set("hop", "1")
			// The hop sends this host's origin as its Referer (whatever the page's policy),
			// which tells the API host that the start came from this site (a same-site
			// start from another host is confirmed first: sso.ConfirmCrossSiteStart).
			w.Header().Set("Referrer-Policy", "strict-origin")
			http.Redirect(w, r, a.sp.StartURL(rq.Org.Name)+"?"+q.Encode(), http.StatusFound)
			return
		}
		returnTo := q.Get("returnTo")
		if returnTo == "" {
			returnTo = q.Get("return") // package sso's name for it
		}
		if err := a.sp.Begin(r.Context(), w, rq.Org, returnTo); err != nil {
			a.errorPage(rq, err).ServeHTTP(w, r)
		}
	}), nil
}

// metadata is GET /login/{org}/sso/saml/metadata: the organization's SP metadata (its
// entity ID is this URL), there before any identity provider is configured.
func (a *samlAPI) metadata(rq *Request) (any, error) {
	b, err := a.sp.SPMetadata(rq.Org)
	if err != nil {
		return nil, err
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/samlmetadata+xml")
		w.Header().Set("Content-Disposition", `inline; filename="gatehouse-`+url.PathEscape(rq.Org.Name)+`-sp-metadata.xml"`)
		_, _ = w.Write(b)
	}), nil
}

// acs is POST /login/{org}/sso/saml/acs: the identity provider's answer (HTTP-POST binding).
// A refusal is audited with its reason (never the assertion's contents) and answered with
// an error page; a verified identity goes to the completer, which signs the person in (or
// refuses them by the organization's policy) and audits that.
func (a *samlAPI) acs(rq *Request) (any, error) {
	rq.event.Action = sso.ActionLogin
	rq.Detail("method", gatehouse.SignInSAML)
	a.prune(rq)
	failed := func(err error) (any, error) {
		var se *sso.SAMLError
		if errors.As(err, &se) {
			rq.event.Reason = se.Reason
			a.s.log.Info("SAML sign-in refused", "org", rq.Org.Name, "request_id", rq.ID, "reason", se.Reason, "err", se.Err)
		}
		rq.fail(gatehouse.OutcomeFailure, err)
		return a.errorPage(rq, err), nil
	}
	if ct := rq.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return failed(gatehouse.Errorf(gatehouse.EINVALID, "not a form post (the ACS takes the HTTP-POST binding)"))
	}
	body, err := rq.readBody()
	if err != nil {
		return failed(err)
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return failed(&sso.SAMLError{Reason: "the form cannot be parsed", Err: err})
	}
	id, err := a.sp.Finish(rq.Context(), rq.w, rq.Request, form, rq.Org)
	if err != nil {
		return failed(err)
	}
	rq.status = http.StatusSeeOther
	org := rq.Org
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Complete always answers: the session and a redirect, or its error page (and
		// its own audit record of the refusal).
		_ = a.done.CompleteSAML(r.Context(), w, r, org, id)
	}), nil
}

// prune deletes expired SAML requests and replay records, at most once a minute per
// process (best effort).
func (a *samlAPI) prune(rq *Request) {
	now, last := a.s.cfg.Now().UnixNano(), a.lastPrune.Load()
	if now-last < int64(time.Minute) || !a.lastPrune.CompareAndSwap(last, now) {
		return
	}
	if err := a.sp.Prune(context.WithoutCancel(rq.Context())); err != nil {
		a.s.log.Warn("SAML: cannot prune expired requests and replay records", "request_id", rq.ID, "err", err)
	}
}

// samlOrganization is Pulumi Cloud's SAMLOrganization, with Gatehouse's additions.
type samlOrganization struct {
	Organization     string `json:"organization"`
	IDPSSODescriptor string `json:"idpSsoDescriptor"`
	EntityID         string `json:"entityId"`
	SSOURL           string `json:"ssoUrl"`
	ValidUntil       string `json:"validUntil,omitempty"`
	NameIDFormat     string `json:"nameIdFormat"`
	ValidationError  string `json:"validationError,omitempty"`

	// Gatehouse: what to enter at the identity provider, and the sign-in settings.
	SPEntityID        string `json:"spEntityId,omitempty"`
	ACSURL            string `json:"acsUrl,omitempty"`
	SignInURL         string `json:"signInUrl,omitempty"`
	IDPMetadataURL    string `json:"idpMetadataUrl,omitempty"`
	AllowIDPInitiated bool   `json:"allowIdpInitiated"`
	EmailAttribute    string `json:"emailAttribute,omitempty"`
	NameAttribute     string `json:"nameAttribute,omitempty"`
	GroupsAttribute   string `json:"groupsAttribute,omitempty"`
	Modified          string `json:"modified,omitempty"`
	ModifiedBy        string `json:"modifiedBy,omitempty"`
}

func (a *samlAPI) view(org *gatehouse.Org, c *gatehouse.SAMLConfig) samlOrganization {
	v := samlOrganization{Organization: org.Name, IDPSSODescriptor: c.IDPMetadata, EntityID: c.EntityID, SSOURL: c.SSOURL,
		NameIDFormat: c.NameIDFormat, ValidationError: sso.ValidationError(c, a.s.cfg.Now()), IDPMetadataURL: c.MetadataURL,
		AllowIDPInitiated: c.AllowIDPInitiated, EmailAttribute: c.EmailAttribute, NameAttribute: c.NameAttribute,
		GroupsAttribute: c.GroupsAttribute, ModifiedBy: c.ModifiedBy}
	if !c.ValidUntil.IsZero() {
		v.ValidUntil = c.ValidUntil.UTC().Format(time.RFC3339)
	}
	if !c.Modified.IsZero() {
		v.Modified = c.Modified.UTC().Format(time.RFC3339)
	}
	if a.sp.Enabled() {
		v.SPEntityID, v.ACSURL, v.SignInURL = a.sp.EntityID(org.Name), a.sp.ACSURL(org.Name), a.sp.StartURL(org.Name)
	}
	return v
}

func (a *samlAPI) notSAML(org *gatehouse.Org) error {
	return gatehouse.Errorf(gatehouse.ENOTFOUND, "organization '%s' is not configured for SAML single sign-on", org.Name)
}

// get is GET /api/orgs/{org}/saml.
func (a *samlAPI) get(rq *Request) (any, error) {
	var c *gatehouse.SAMLConfig
	if err := rq.View(func(tx gatehouse.Tx) (err error) { c, err = tx.GetSAMLConfig(rq.Org.ID); return err }); err != nil {
		if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
			return nil, a.notSAML(rq.Org)
		}
		return nil, err
	}
	return a.view(rq.Org, c), nil
}

// patch is PATCH /api/orgs/{org}/saml {newIdpSsoDescriptor | idpMetadataUrl, allowIdpInitiated,
// emailAttribute, nameAttribute, groupsAttribute}: the metadata is validated before it is
// saved (400 with the reason); the first PATCH configures the organization.
func (a *samlAPI) patch(rq *Request) (any, error) {
	var req struct {
		NewIDPSSODescriptor *string `json:"newIdpSsoDescriptor"`
		IDPMetadataURL      *string `json:"idpMetadataUrl"`
		AllowIDPInitiated   *bool   `json:"allowIdpInitiated"`
		EmailAttribute      *string `json:"emailAttribute"`
		NameAttribute       *string `json:"nameAttribute"`
		GroupsAttribute     *string `json:"groupsAttribute"`
	}
	if err := rq.decode(&req); err != nil {
		return nil, err
	}
	if req.NewIDPSSODescriptor != nil && req.IDPMetadataURL != nil {
		return nil, gatehouse.Errorf(gatehouse.EINVALID, "give newIdpSsoDescriptor or idpMetadataUrl, not both")
	}
	for _, p := range []*string{req.EmailAttribute, req.NameAttribute, req.GroupsAttribute} {
		if p != nil && (len(*p) > 256 || strings.ContainsAny(*p, "\r\n\x00")) {
			return nil, gatehouse.Errorf(gatehouse.EINVALID, "attribute names are at most 256 characters on one line")
		}
	}
	var xmlText, source string
	switch {
	case req.NewIDPSSODescriptor != nil:
		xmlText, source = *req.NewIDPSSODescriptor, "xml"
	case req.IDPMetadataURL != nil:
		b, err := sso.FetchIDPMetadata(rq.Context(), a.client, *req.IDPMetadataURL)
		if err != nil {
			return nil, err
		}
		xmlText, source = string(b), "url"
	}
	var md *sso.IDPMetadata
	if source != "" {
		var err error
		if md, err = sso.ParseIDPMetadata([]byte(xmlText), a.s.cfg.Now()); err != nil {
			return nil, err
		}
	}
	var out *gatehouse.SAMLConfig
	err := rq.Change(func(tx gatehouse.Tx) error {
		c, err := tx.GetSAMLConfig(rq.Org.ID)
		switch {
		case gatehouse.IsCode(err, gatehouse.ENOTFOUND):
			if md == nil {
				return gatehouse.Errorf(gatehouse.EINVALID, "newIdpSsoDescriptor is required")
			}
			c = &gatehouse.SAMLConfig{OrgID: rq.Org.ID}
		case err != nil:
			return err
		}
		if md != nil {
			c.IDPMetadata, c.EntityID, c.SSOURL, c.NameIDFormat, c.ValidUntil = xmlText, md.EntityID, md.SSOURL, md.NameIDFormat, md.ValidUntil
			c.MetadataURL = ""
			if req.IDPMetadataURL != nil {
				c.MetadataURL = *req.IDPMetadataURL
			}
			rq.Detail("metadataSource", source)
		}
		if req.AllowIDPInitiated != nil {
			c.AllowIDPInitiated = *req.AllowIDPInitiated
		}
		if req.EmailAttribute != nil {
			c.EmailAttribute = *req.EmailAttribute
		}
		if req.NameAttribute != nil {
			c.NameAttribute = *req.NameAttribute
		}
		if req.GroupsAttribute != nil {
			c.GroupsAttribute = *req.GroupsAttribute
		}
		c.ModifiedBy = rq.Subject.Name()
		rq.Detail("idpEntityId", c.EntityID)
		rq.Detail("nameIdFormat", c.NameIDFormat)
		rq.Detail("validUntil", c.ValidUntil.UTC().Format(time.RFC3339))
		rq.Detail("allowIdpInitiated", boolText(c.AllowIDPInitiated))
		if err := tx.PutSAMLConfig(c); err != nil {
			return err
		}
		out = c
		return nil
	})
	if err != nil {
		return nil, err
	}
	return a.view(rq.Org, out), nil
}

// delete is DELETE /api/orgs/{org}/saml: SAML sign-in ends for the organization.
func (a *samlAPI) delete(rq *Request) (any, error) {
	err := rq.Change(func(tx gatehouse.Tx) error { return tx.DeleteSAMLConfig(rq.Org.ID) })
	if gatehouse.IsCode(err, gatehouse.ENOTFOUND) {
		return nil, a.notSAML(rq.Org)
	}
	return nil, err
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
