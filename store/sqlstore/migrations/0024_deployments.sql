-- Deployments (issue 19): a stack's deployment settings (secret values sealed), runner
-- pools (token digests only), deployments (the queue and the run history, with the
-- runner's lease and the digest of the run's deployment credential) and their output.
-- Times are Unix nanoseconds (UTC).
CREATE TABLE deploy_settings (
    stack_id @BIGINT@ PRIMARY KEY,
    org_id   @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    repo     @TEXT@ NOT NULL DEFAULT '',
    settings @TEXT@ NOT NULL DEFAULT '',
    paused   @BIGINT@ NOT NULL DEFAULT 0,
    modified @BIGINT@ NOT NULL
);
CREATE INDEX deploy_settings_repo ON deploy_settings (repo);

CREATE TABLE deploy_pools (
    id          @TEXT@ PRIMARY KEY,
    org_id      @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        @TEXT@ NOT NULL,
    description @TEXT@ NOT NULL DEFAULT '',
    digest      @BLOB@ NOT NULL UNIQUE,
    created     @BIGINT@ NOT NULL,
    created_by  @TEXT@ NOT NULL DEFAULT '',
    revoked     @BIGINT@ NOT NULL DEFAULT 0,
    UNIQUE (org_id, name)
);

-- active is 1 while a deployment holds its stack (leased, not ended): the partial unique
-- index lets one deployment per stack run at a time, whatever processes race.
CREATE TABLE deployments (
    id             @TEXT@ PRIMARY KEY,
    org_id         @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    stack_id       @BIGINT@ NOT NULL,
    version        @BIGINT@ NOT NULL,
    operation      @TEXT@ NOT NULL,
    status         @TEXT@ NOT NULL,
    request        @TEXT@ NOT NULL DEFAULT '',
    initiator      @TEXT@ NOT NULL DEFAULT '',
    requested_by   @TEXT@ NOT NULL DEFAULT '',
    pool_id        @TEXT@ NOT NULL DEFAULT '',
    created        @BIGINT@ NOT NULL,
    modified       @BIGINT@ NOT NULL,
    started        @BIGINT@ NOT NULL DEFAULT 0,
    ended          @BIGINT@ NOT NULL DEFAULT 0,
    lease          @TEXT@ NOT NULL DEFAULT '',
    lease_until    @BIGINT@ NOT NULL DEFAULT 0,
    runner         @TEXT@ NOT NULL DEFAULT '',
    cred_digest    @TEXT@ NOT NULL DEFAULT '',
    cred_until     @BIGINT@ NOT NULL DEFAULT 0,
    cancel         @BIGINT@ NOT NULL DEFAULT 0,
    active         @BIGINT@ NOT NULL DEFAULT 0,
    update_id      @TEXT@ NOT NULL DEFAULT '',
    update_version @BIGINT@ NOT NULL DEFAULT 0,
    message        @TEXT@ NOT NULL DEFAULT '',
    report         @TEXT@ NOT NULL DEFAULT '',
    UNIQUE (stack_id, version)
);
CREATE UNIQUE INDEX deployments_active ON deployments (stack_id) WHERE active = 1;
CREATE INDEX deployments_queue ON deployments (org_id, status, created);
CREATE INDEX deployments_cred ON deployments (cred_digest);

CREATE TABLE deploy_logs (
    deployment_id @TEXT@ NOT NULL,
    seq           @BIGINT@ NOT NULL,
    header        @TEXT@ NOT NULL DEFAULT '',
    line          @TEXT@ NOT NULL DEFAULT '',
    at            @BIGINT@ NOT NULL,
    PRIMARY KEY (deployment_id, seq)
);
