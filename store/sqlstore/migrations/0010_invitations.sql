-- Invitations: an organization invites a user name to become a member; the user whose name
-- it is accepts or declines. At most one pending invitation per organization and user name
-- (an expired one is marked 'expired' before a new one is made). Times are Unix nanoseconds.
CREATE TABLE invitations (
    id         @TEXT@ PRIMARY KEY,
    org_id     @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_name  @TEXT@ NOT NULL,
    user_key   @TEXT@ NOT NULL, -- lower-cased user name: names match regardless of case
    role       @TEXT@ NOT NULL,
    invited_by @TEXT@ NOT NULL DEFAULT '',
    status     @TEXT@ NOT NULL, -- pending, accepted, declined, revoked, expired
    created    @BIGINT@ NOT NULL,
    expires    @BIGINT@ NOT NULL,
    resolved   @BIGINT@ NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX invitations_pending ON invitations (org_id, user_key) WHERE status = 'pending';
CREATE INDEX invitations_user ON invitations (user_key);
CREATE INDEX invitations_org ON invitations (org_id);

-- The organization whose admin created a user account (POST /api/orgs/{org}/users); 0 when
-- created otherwise. Only that organization may add the user back directly, and only while
-- the user belongs to no other organization; everyone else needs the user's consent.
ALTER TABLE users ADD COLUMN created_org_id @BIGINT@ NOT NULL DEFAULT 0;
