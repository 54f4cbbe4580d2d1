-- ID tokens already exchanged for a Gatehouse token (replay protection). A record lives until
-- the token could no longer be accepted anyway (its exp, at most iat plus the token age limit,
-- plus the clock skew tolerance); expired records are pruned. The primary key decides between
-- concurrent exchanges of one token, across processes.
CREATE TABLE oidc_exchanged_tokens (
    org_id    @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    token_key @TEXT@ NOT NULL, -- hex SHA-256 of the issuer and jti, or of the signed token without jti
    expires   @BIGINT@ NOT NULL, -- Unix nanoseconds (UTC)
    PRIMARY KEY (org_id, token_key)
);
CREATE INDEX oidc_exchanged_tokens_expires ON oidc_exchanged_tokens (expires);
