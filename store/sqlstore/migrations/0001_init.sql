-- Gatehouse schema, version 1. One source for every engine: @ID@, @BLOB@, @BIGINT@ and
-- @TEXT@ are replaced by the dialect (see dialect.go). Times are Unix nanoseconds (UTC).
CREATE TABLE meta (
    key   @TEXT@ PRIMARY KEY,
    value @BLOB@ NOT NULL
);

CREATE TABLE orgs (
    id       @ID@,
    name     @TEXT@ NOT NULL,
    name_key @TEXT@ NOT NULL UNIQUE, -- lower-cased name: names are unique regardless of case
    settings @TEXT@ NOT NULL,
    created  @BIGINT@ NOT NULL
);

CREATE TABLE users (
    id         @ID@,
    name       @TEXT@ NOT NULL,
    name_key   @TEXT@ NOT NULL UNIQUE,
    email      @TEXT@ NOT NULL DEFAULT '',
    site_admin @BIGINT@ NOT NULL DEFAULT 0,
    created    @BIGINT@ NOT NULL
);

CREATE TABLE members (
    org_id  @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    user_id @BIGINT@ NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role    @TEXT@ NOT NULL,
    created @BIGINT@ NOT NULL,
    PRIMARY KEY (org_id, user_id)
);
CREATE INDEX members_user ON members (user_id);

CREATE TABLE tokens (
    id          @TEXT@ PRIMARY KEY,
    kind        @TEXT@ NOT NULL,
    digest      @BLOB@ NOT NULL UNIQUE,
    name        @TEXT@ NOT NULL,
    scope       @TEXT@ NOT NULL, -- "u:<user id>", "o:<org id>" (org and team tokens share a name space)
    description @TEXT@ NOT NULL DEFAULT '',
    user_id     @BIGINT@ NOT NULL DEFAULT 0,
    org_id      @BIGINT@ NOT NULL DEFAULT 0,
    team_id     @BIGINT@ NOT NULL DEFAULT 0,
    role        @TEXT@ NOT NULL DEFAULT '',
    pipeline    @BIGINT@ NOT NULL DEFAULT 0,
    created_by  @TEXT@ NOT NULL DEFAULT '',
    created     @BIGINT@ NOT NULL,
    expires     @BIGINT@ NOT NULL DEFAULT 0,
    revoked     @BIGINT@ NOT NULL DEFAULT 0,
    last_used   @BIGINT@ NOT NULL DEFAULT 0,
    last_ip     @TEXT@ NOT NULL DEFAULT '',
    last_agent  @TEXT@ NOT NULL DEFAULT ''
);
-- Token names are unique within their scope forever: revoked tokens keep their rows.
CREATE UNIQUE INDEX tokens_name ON tokens (scope, name);
CREATE INDEX tokens_user ON tokens (user_id);
CREATE INDEX tokens_org ON tokens (org_id);

CREATE TABLE stacks (
    id              @ID@,
    org_id          @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project         @TEXT@ NOT NULL,
    name            @TEXT@ NOT NULL,
    tags            @TEXT@ NOT NULL,
    version         @BIGINT@ NOT NULL DEFAULT 0,
    active_update   @TEXT@ NOT NULL DEFAULT '',
    resource_count  @BIGINT@ NOT NULL DEFAULT 0,
    last_update     @BIGINT@ NOT NULL DEFAULT 0,
    created         @BIGINT@ NOT NULL,
    created_by      @TEXT@ NOT NULL DEFAULT '',
    creator_user_id @BIGINT@ NOT NULL DEFAULT 0,
    UNIQUE (org_id, project, name)
);

-- Tags again, one row each, for filtering and tag-selector grants.
CREATE TABLE stack_tags (
    stack_id @BIGINT@ NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    name     @TEXT@ NOT NULL,
    value    @TEXT@ NOT NULL,
    PRIMARY KEY (stack_id, name)
);
CREATE INDEX stack_tags_name ON stack_tags (name, value);

CREATE TABLE stack_keys (
    stack_id @BIGINT@ PRIMARY KEY REFERENCES stacks (id) ON DELETE CASCADE,
    wrapped  @BLOB@ NOT NULL
);

CREATE TABLE checkpoints (
    stack_id @BIGINT@ NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    version  @BIGINT@ NOT NULL,
    data     @BLOB@ NOT NULL,
    created  @BIGINT@ NOT NULL,
    PRIMARY KEY (stack_id, version)
);

CREATE TABLE updates (
    id                @TEXT@ PRIMARY KEY,
    stack_id          @BIGINT@ NOT NULL REFERENCES stacks (id) ON DELETE CASCADE,
    kind              @TEXT@ NOT NULL,
    dry_run           @BIGINT@ NOT NULL,
    status            @TEXT@ NOT NULL,
    version           @BIGINT@ NOT NULL DEFAULT 0,
    program           @BLOB@ NOT NULL,
    author            @TEXT@ NOT NULL DEFAULT '',
    created           @BIGINT@ NOT NULL,
    started           @BIGINT@ NOT NULL DEFAULT 0,
    ended             @BIGINT@ NOT NULL DEFAULT 0,
    lease_digest      @BLOB@,
    lease_expires     @BIGINT@ NOT NULL DEFAULT 0,
    journal_version   @BIGINT@ NOT NULL DEFAULT 0,
    sequence          @BIGINT@ NOT NULL DEFAULT 0,
    resource_changes  @TEXT@ NOT NULL DEFAULT '{}',
    resource_count    @BIGINT@ NOT NULL DEFAULT 0
);
CREATE INDEX updates_stack ON updates (stack_id, created);
CREATE UNIQUE INDEX updates_lease ON updates (lease_digest);

CREATE TABLE engine_events (
    update_id @TEXT@ NOT NULL REFERENCES updates (id) ON DELETE CASCADE,
    seq       @BIGINT@ NOT NULL,
    data      @BLOB@ NOT NULL,
    PRIMARY KEY (update_id, seq)
);

CREATE TABLE journal_entries (
    update_id @TEXT@ NOT NULL REFERENCES updates (id) ON DELETE CASCADE,
    seq       @BIGINT@ NOT NULL,
    data      @BLOB@ NOT NULL,
    PRIMARY KEY (update_id, seq)
);

-- The audit log: append-only, hash-chained. audit_head holds the chain's tip in one row so
-- that concurrent writers (several processes on one PostgreSQL) serialize on it.
CREATE TABLE audit_events (
    seq        @BIGINT@ PRIMARY KEY,
    id         @TEXT@ NOT NULL UNIQUE,
    time       @BIGINT@ NOT NULL,
    org_id     @BIGINT@ NOT NULL DEFAULT 0,
    org_name   @TEXT@ NOT NULL DEFAULT '',
    actor_kind @TEXT@ NOT NULL DEFAULT '',
    actor_name @TEXT@ NOT NULL DEFAULT '',
    user_id    @BIGINT@ NOT NULL DEFAULT 0,
    token_id   @TEXT@ NOT NULL DEFAULT '',
    source_ip  @TEXT@ NOT NULL DEFAULT '',
    user_agent @TEXT@ NOT NULL DEFAULT '',
    action     @TEXT@ NOT NULL,
    target     @TEXT@ NOT NULL DEFAULT '',
    outcome    @TEXT@ NOT NULL,
    reason     @TEXT@ NOT NULL DEFAULT '',
    request_id @TEXT@ NOT NULL DEFAULT '',
    details    @TEXT@ NOT NULL DEFAULT '{}',
    prev_hash  @BLOB@ NOT NULL,
    hash       @BLOB@ NOT NULL
);
CREATE INDEX audit_org_time ON audit_events (org_id, time);
CREATE INDEX audit_time ON audit_events (time);
CREATE INDEX audit_action ON audit_events (org_id, action, time);
CREATE INDEX audit_actor ON audit_events (org_id, actor_name, time);

CREATE TABLE audit_head (
    id   @BIGINT@ PRIMARY KEY,
    seq  @BIGINT@ NOT NULL,
    hash @BLOB@ NOT NULL
);
