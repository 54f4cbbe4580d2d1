-- Organizations' own VCS webhook secrets (issue 19, per-organization webhooks): the GitHub
-- webhook secret (HMAC key of X-Hub-Signature-256) or GitLab webhook token of one
-- organization, sealed with the organization's data key (meta "deploy-vcs-key/<org ID>").
-- An organization with one is reachable only through its own delivery URL. Times are Unix
-- nanoseconds (UTC).
CREATE TABLE deploy_vcs_secrets (
    org_id     @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    provider   @TEXT@ NOT NULL,
    sealed     @BLOB@ NOT NULL,
    created    @BIGINT@ NOT NULL,
    created_by @TEXT@ NOT NULL DEFAULT '',
    PRIMARY KEY (org_id, provider)
);
