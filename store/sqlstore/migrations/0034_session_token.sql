-- The access token that proved a browser session's token sign-in ('' for other sign-ins):
-- revoking the token ends the session (RevokeToken).
ALTER TABLE sessions ADD COLUMN token_id @TEXT@ NOT NULL DEFAULT '';
CREATE INDEX sessions_token ON sessions (token_id);
