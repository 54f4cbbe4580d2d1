-- Tokens issued by OIDC token exchange remember their issuer, so that they can be told
-- apart from tokens people created (they must not be rotated into long-lived credentials).
-- Earlier exchanges recorded the issuer only in created_by ("oidc:<issuer name>").
ALTER TABLE tokens ADD COLUMN issuer @TEXT@ NOT NULL DEFAULT '';
UPDATE tokens SET issuer = substr(created_by, 6) WHERE created_by LIKE 'oidc:%';
-- A personal token is a pipeline credential only when an exchange issued it. Earlier,
-- rotating an issued personal token passed that on to a successor of any lifetime: such
-- successors become the plain personal tokens of the person who rotated them.
UPDATE tokens SET pipeline = 0 WHERE kind = 'pat' AND pipeline <> 0 AND issuer = '';
