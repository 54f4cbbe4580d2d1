-- Single sign-on for people (package sso). Times are Unix nanoseconds (UTC).

-- Browser sessions. Only the digest of the cookie's secret is stored. org_id is the
-- organization whose sign-in started the session (NULL: none). idle_expires moves forward
-- with use (never past expires); idp_not_after is the identity provider's
-- SessionNotOnOrAfter (0: none). csrf is the session's synchronizer token.
CREATE TABLE sessions (
    id            @TEXT@ PRIMARY KEY,
    digest        @BLOB@ NOT NULL UNIQUE,
    user_id       @BIGINT@ NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id        @BIGINT@ REFERENCES orgs (id) ON DELETE CASCADE,
    method        @TEXT@ NOT NULL,
    created       @BIGINT@ NOT NULL,
    last_seen     @BIGINT@ NOT NULL,
    idle_expires  @BIGINT@ NOT NULL,
    expires       @BIGINT@ NOT NULL,
    idp_not_after @BIGINT@ NOT NULL DEFAULT 0,
    csrf          @TEXT@ NOT NULL,
    ip            @TEXT@ NOT NULL DEFAULT '',
    agent         @TEXT@ NOT NULL DEFAULT ''
);
CREATE INDEX sessions_user ON sessions (user_id, org_id);
CREATE INDEX sessions_expires ON sessions (expires);

-- Identities at identity providers linked to users, keyed by (issuer, subject).
CREATE TABLE user_identities (
    issuer     @TEXT@ NOT NULL,
    subject    @TEXT@ NOT NULL,
    user_id    @BIGINT@ NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    org_id     @BIGINT@ NOT NULL DEFAULT 0,
    provider   @TEXT@ NOT NULL,
    email      @TEXT@ NOT NULL DEFAULT '',
    created    @BIGINT@ NOT NULL,
    last_login @BIGINT@ NOT NULL DEFAULT 0,
    PRIMARY KEY (issuer, subject)
);
CREATE INDEX user_identities_user ON user_identities (user_id);

-- Each organization's SSO configuration and policy (JSON; client secrets inside are sealed
-- by the keyring's envelope).
CREATE TABLE org_sso (
    org_id   @BIGINT@ PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    config   @TEXT@ NOT NULL,
    modified @BIGINT@ NOT NULL
);

-- Sign-ins in progress (OIDC state, nonce, PKCE verifier, return URL), by the digest of the
-- state value, taken once.
CREATE TABLE sso_states (
    digest  @BLOB@ PRIMARY KEY,
    org_id  @BIGINT@ NOT NULL,
    kind    @TEXT@ NOT NULL,
    data    @BLOB@ NOT NULL,
    expires @BIGINT@ NOT NULL
);
