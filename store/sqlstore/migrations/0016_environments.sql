-- Environments (Pulumi ESC). Definitions are YAML with fn::secret values as ciphertext
-- under the environment's data key (env_keys, wrapped by the keyring): no plaintext here.
CREATE TABLE environments (
    id                 @ID@,
    org_id             @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    project            @TEXT@ NOT NULL,
    name               @TEXT@ NOT NULL,
    revision           @BIGINT@ NOT NULL DEFAULT 0,
    deletion_protected @BIGINT@ NOT NULL DEFAULT 0,
    created            @BIGINT@ NOT NULL,
    modified           @BIGINT@ NOT NULL,
    created_by         @TEXT@ NOT NULL DEFAULT '',
    creator_user_id    @BIGINT@ NOT NULL DEFAULT 0,
    UNIQUE (org_id, project, name)
);

-- Immutable revisions of a definition.
CREATE TABLE env_revisions (
    env_id        @BIGINT@ NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    number        @BIGINT@ NOT NULL,
    yaml          @BLOB@ NOT NULL,
    created       @BIGINT@ NOT NULL,
    creator_login @TEXT@ NOT NULL DEFAULT '',
    PRIMARY KEY (env_id, number)
);

-- Revision tags (latest is implicit: environments.revision).
CREATE TABLE env_tags (
    env_id       @BIGINT@ NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name         @TEXT@ NOT NULL,
    revision     @BIGINT@ NOT NULL,
    created      @BIGINT@ NOT NULL,
    modified     @BIGINT@ NOT NULL,
    editor_login @TEXT@ NOT NULL DEFAULT '',
    PRIMARY KEY (env_id, name)
);

-- Environment tags: name/value metadata (distinct from revision tags). Protection rules by
-- tag select environments by them.
CREATE TABLE env_kv_tags (
    env_id       @BIGINT@ NOT NULL REFERENCES environments (id) ON DELETE CASCADE,
    name         @TEXT@ NOT NULL,
    value        @TEXT@ NOT NULL,
    created      @BIGINT@ NOT NULL,
    modified     @BIGINT@ NOT NULL,
    editor_login @TEXT@ NOT NULL DEFAULT '',
    PRIMARY KEY (env_id, name)
);

-- Open sessions: the evaluated environment sealed under the environment's data key.
-- Sessions of anonymous definitions (yaml/open: a stack's environment: imports) have
-- env_id 0 and are sealed under the organization's session key (env_keys row -org_id).
CREATE TABLE env_sessions (
    id       @TEXT@ PRIMARY KEY,
    org_id   @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    env_id   @BIGINT@ NOT NULL,
    revision @BIGINT@ NOT NULL,
    owner    @TEXT@ NOT NULL,
    data     @BLOB@ NOT NULL,
    created  @BIGINT@ NOT NULL,
    expires  @BIGINT@ NOT NULL
);
CREATE INDEX env_sessions_expires ON env_sessions (expires);

-- Data keys wrapped by the keyring: env_id > 0 an environment's, env_id = -org_id an
-- organization's key for anonymous open sessions.
CREATE TABLE env_keys (
    env_id  @BIGINT@ PRIMARY KEY,
    wrapped @BLOB@ NOT NULL
);

-- Grants and protection rules may name one environment or an ESC project.
ALTER TABLE grants ADD COLUMN env_id @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE grants ADD COLUMN env_project @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE protections ADD COLUMN env_id @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE protections ADD COLUMN env_project @TEXT@ NOT NULL DEFAULT '';
