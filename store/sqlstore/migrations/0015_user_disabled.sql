-- A disabled user (gatehouse user disable): every personal token is revoked at that moment
-- and authentication refuses the person from then on, including tokens minted later (by
-- OIDC exchange). 0: active; otherwise the time of disabling (ns).
ALTER TABLE users ADD COLUMN disabled @BIGINT@ NOT NULL DEFAULT 0;
