-- Teams, grants and protection rules.
CREATE TABLE teams (
    id           @ID@,
    org_id       @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name         @TEXT@ NOT NULL,
    name_key     @TEXT@ NOT NULL,
    display_name @TEXT@ NOT NULL DEFAULT '',
    description  @TEXT@ NOT NULL DEFAULT '',
    created      @BIGINT@ NOT NULL,
    UNIQUE (org_id, name_key)
);

CREATE TABLE team_members (
    team_id @BIGINT@ NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    user_id @BIGINT@ NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    @TEXT@ NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

-- A grant covers exactly one scope: a stack (stack_id), a project, or a tag selector.
CREATE TABLE grants (
    id         @ID@,
    team_id    @BIGINT@ NOT NULL REFERENCES teams (id) ON DELETE CASCADE,
    scope_key  @TEXT@ NOT NULL,
    stack_id   @BIGINT@ NOT NULL DEFAULT 0,
    project    @TEXT@ NOT NULL DEFAULT '',
    tag_name   @TEXT@ NOT NULL DEFAULT '',
    tag_value  @TEXT@ NOT NULL DEFAULT '',
    permission @BIGINT@ NOT NULL,
    decrypt    @BIGINT@ NOT NULL DEFAULT 0,
    created    @BIGINT@ NOT NULL,
    UNIQUE (team_id, scope_key)
);
CREATE INDEX grants_stack ON grants (stack_id);

CREATE TABLE protections (
    id         @ID@,
    org_id     @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    scope_key  @TEXT@ NOT NULL,
    stack_id   @BIGINT@ NOT NULL DEFAULT 0,
    project    @TEXT@ NOT NULL DEFAULT '',
    tag_name   @TEXT@ NOT NULL DEFAULT '',
    tag_value  @TEXT@ NOT NULL DEFAULT '',
    created_by @TEXT@ NOT NULL DEFAULT '',
    created    @BIGINT@ NOT NULL,
    UNIQUE (org_id, scope_key)
);
