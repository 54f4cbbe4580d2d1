-- SCIM 2.0 provisioning (issue 15). Times are Unix nanoseconds (UTC).

-- One SCIM bearer token per organization: only its digest. Regenerating replaces the row,
-- so the old token stops authenticating at once on every process.
CREATE TABLE scim_tokens (
    org_id     @BIGINT@ PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    id         @TEXT@ NOT NULL,
    digest     @BLOB@ NOT NULL UNIQUE,
    created_by @TEXT@ NOT NULL DEFAULT '',
    created    @BIGINT@ NOT NULL
);

-- People the organization's identity provider provisioned: the SCIM userName (immutable,
-- unique per organization regardless of case: user_name_key), externalId and names, the
-- active flag, and the role to restore on reactivation. The account itself is the users row.
CREATE TABLE scim_users (
    org_id        @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id       @BIGINT@ NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_name     @TEXT@ NOT NULL,
    user_name_key @TEXT@ NOT NULL,
    external_id   @TEXT@ NOT NULL DEFAULT '',
    given_name    @TEXT@ NOT NULL DEFAULT '',
    family_name   @TEXT@ NOT NULL DEFAULT '',
    display_name  @TEXT@ NOT NULL DEFAULT '',
    active        @BIGINT@ NOT NULL DEFAULT 1,
    saved_role    @TEXT@ NOT NULL DEFAULT '',
    created       @BIGINT@ NOT NULL,
    modified      @BIGINT@ NOT NULL,
    PRIMARY KEY (org_id, user_id),
    UNIQUE (org_id, user_name_key)
);
CREATE INDEX scim_users_user ON scim_users (user_id);

-- Teams the identity provider manages (SCIM groups): their members and names are
-- read-only through the other APIs. modified is touched by every SCIM change of the team.
CREATE TABLE scim_teams (
    team_id  @BIGINT@ PRIMARY KEY REFERENCES teams (id) ON DELETE CASCADE,
    org_id   @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    created  @BIGINT@ NOT NULL,
    modified @BIGINT@ NOT NULL
);
