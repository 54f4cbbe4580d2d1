-- Policy as code (package policy). policy_packs holds one row per pack version; its
-- archive is kept like a checkpoint: inline (archive) or, with a blob store, under
-- blob_key (the SHA-256 of its bytes). digest is the hex SHA-256 of the archive.
CREATE TABLE policy_packs (
    id           @ID@,
    org_id       @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name         @TEXT@ NOT NULL,
    version      @BIGINT@ NOT NULL,
    version_tag  @TEXT@ NOT NULL,
    display_name @TEXT@ NOT NULL DEFAULT '',
    metadata     @BLOB@ NOT NULL,
    status       @TEXT@ NOT NULL,
    digest       @TEXT@ NOT NULL DEFAULT '',
    size         @BIGINT@ NOT NULL DEFAULT 0,
    archive      @BLOB@,
    blob_key     @TEXT@ NOT NULL DEFAULT '',
    created_by   @TEXT@ NOT NULL DEFAULT '',
    created      @BIGINT@ NOT NULL,
    completed    @BIGINT@ NOT NULL DEFAULT 0,
    UNIQUE (org_id, name, version_tag)
);
CREATE INDEX policy_packs_pending ON policy_packs (status, created);

-- Upload and download capabilities handed to the CLI as URLs (digest only).
CREATE TABLE policy_urls (
    digest    @TEXT@ PRIMARY KEY,
    purpose   @TEXT@ NOT NULL,
    pack_id   @BIGINT@ NOT NULL,
    update_id @TEXT@ NOT NULL DEFAULT '',
    expires   @BIGINT@ NOT NULL,
    used      @BIGINT@ NOT NULL DEFAULT 0
);
CREATE INDEX policy_urls_expires ON policy_urls (expires);

-- Policy groups: selectors (stack scopes) and enabled packs as JSON.
CREATE TABLE policy_groups (
    id         @ID@,
    org_id     @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name       @TEXT@ NOT NULL,
    is_default @BIGINT@ NOT NULL DEFAULT 0,
    selectors  @TEXT@ NOT NULL DEFAULT '[]',
    packs      @TEXT@ NOT NULL DEFAULT '[]',
    created    @BIGINT@ NOT NULL,
    modified   @BIGINT@ NOT NULL,
    UNIQUE (org_id, name)
);

-- Policy findings reported with updates (and Gatehouse's own provider refusals).
CREATE TABLE policy_results (
    id           @ID@,
    org_id       @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    stack_id     @BIGINT@ NOT NULL,
    update_id    @TEXT@ NOT NULL DEFAULT '',
    dry_run      @BIGINT@ NOT NULL DEFAULT 0,
    kind         @TEXT@ NOT NULL,
    pack_name    @TEXT@ NOT NULL DEFAULT '',
    pack_version @TEXT@ NOT NULL DEFAULT '',
    policy_name  @TEXT@ NOT NULL DEFAULT '',
    level        @TEXT@ NOT NULL DEFAULT '',
    severity     @TEXT@ NOT NULL DEFAULT '',
    urn          @TEXT@ NOT NULL DEFAULT '',
    message      @TEXT@ NOT NULL DEFAULT '',
    created      @BIGINT@ NOT NULL
);
CREATE INDEX policy_results_org ON policy_results (org_id, id);
CREATE INDEX policy_results_stack ON policy_results (stack_id, id);
CREATE INDEX policy_results_update ON policy_results (update_id);

-- Organization policy settings: the approved providers (JSON list) when enforced.
CREATE TABLE policy_settings (
    org_id             @BIGINT@ PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    enforced           @BIGINT@ NOT NULL DEFAULT 0,
    approved_providers @TEXT@ NOT NULL DEFAULT '[]',
    modified           @BIGINT@ NOT NULL
);
