-- OIDC token exchange: the issuers an organization trusts and their authorization policies.
-- Times are Unix nanoseconds (UTC); durations are seconds.
CREATE TABLE oidc_issuers (
    id             @TEXT@ PRIMARY KEY,
    org_id         @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name           @TEXT@ NOT NULL,
    name_key       @TEXT@ NOT NULL, -- lower-cased name: unique per organization regardless of case
    url            @TEXT@ NOT NULL, -- the issuer identifier (iss), matched exactly
    jwks           @BLOB@,          -- pinned JWKS (JSON); NULL: discovery
    thumbprints    @TEXT@ NOT NULL DEFAULT '[]',
    max_expiration @BIGINT@ NOT NULL,
    created        @BIGINT@ NOT NULL,
    modified       @BIGINT@ NOT NULL,
    last_used      @BIGINT@ NOT NULL DEFAULT 0,
    UNIQUE (org_id, name_key),
    UNIQUE (org_id, url)
);

-- One authorization policy per issuer: its policies as one JSON document, replaced as a whole.
CREATE TABLE oidc_auth_policies (
    id        @TEXT@ PRIMARY KEY,
    org_id    @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    issuer_id @TEXT@ NOT NULL UNIQUE REFERENCES oidc_issuers (id) ON DELETE CASCADE,
    version   @BIGINT@ NOT NULL,
    policies  @TEXT@ NOT NULL DEFAULT '[]',
    created   @BIGINT@ NOT NULL,
    modified  @BIGINT@ NOT NULL
);
