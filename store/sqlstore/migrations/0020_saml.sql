-- SAML 2.0 sign-in (issue 14). Times are Unix nanoseconds (UTC).

-- One identity provider per organization: its metadata as the administrator gave it (or as
-- fetched from metadata_url) and the facts validated from it on save.
CREATE TABLE saml_configs (
    org_id              @BIGINT@ NOT NULL PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    idp_metadata        @TEXT@ NOT NULL,
    metadata_url        @TEXT@ NOT NULL DEFAULT '',
    entity_id           @TEXT@ NOT NULL,
    sso_url             @TEXT@ NOT NULL,
    name_id_format      @TEXT@ NOT NULL,
    valid_until         @BIGINT@ NOT NULL DEFAULT 0, -- the earliest expiry of its signing certificates
    allow_idp_initiated @BIGINT@ NOT NULL DEFAULT 0,
    email_attribute     @TEXT@ NOT NULL DEFAULT '',
    name_attribute      @TEXT@ NOT NULL DEFAULT '',
    groups_attribute    @TEXT@ NOT NULL DEFAULT '',
    modified_by         @TEXT@ NOT NULL DEFAULT '',
    created             @BIGINT@ NOT NULL,
    modified            @BIGINT@ NOT NULL
);

-- AuthnRequests sent for SP-initiated sign-ins, until their answer arrives or they expire.
-- binding is the SHA-256 of a random value kept in the browser's cookie: only the browser
-- that started the sign-in can finish it.
CREATE TABLE saml_requests (
    id        @TEXT@ NOT NULL PRIMARY KEY,
    org_id    @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    binding   @BLOB@ NOT NULL,
    return_to @TEXT@ NOT NULL DEFAULT '',
    expires   @BIGINT@ NOT NULL
);
CREATE INDEX saml_requests_expires ON saml_requests (expires);

-- Assertions already accepted (replay protection), kept until the assertion could no longer
-- be accepted anyway. The primary key decides between concurrent sign-ins with one
-- assertion, across processes.
CREATE TABLE saml_assertions (
    org_id        @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    assertion_key @TEXT@ NOT NULL, -- hex SHA-256 of the IdP entity ID and the assertion ID
    expires       @BIGINT@ NOT NULL,
    PRIMARY KEY (org_id, assertion_key)
);
CREATE INDEX saml_assertions_expires ON saml_assertions (expires);
