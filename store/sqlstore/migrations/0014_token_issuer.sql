-- Tokens issued by OIDC token exchange remember their issuer, so that they can be told
-- apart from tokens people created (they must not be rotated into long-lived credentials).
-- Earlier exchanges recorded the issuer only in created_by ("oidc:<issuer name>").
ALTER TABLE tokens ADD COLUMN issuer @TEXT@ NOT NULL DEFAULT '';
UPDATE tokens SET issuer = substr(created_by, 6) WHERE created_by LIKE 'oidc:%';
