-- Deployments' pull/merge request comments (issue 19): the comment a stack's runs for one
-- pull request (GitHub) or merge request (GitLab) report to, so that a later run edits it
-- in place. pr_key is "<provider>:<repository>#<number>". Times are Unix nanoseconds (UTC).
-- The index on running deployments' leases serves the dead-runner sweep.
CREATE TABLE deploy_comments (
    stack_id   @BIGINT@ NOT NULL,
    pr_key     @TEXT@ NOT NULL,
    org_id     @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    comment_id @TEXT@ NOT NULL,
    modified   @BIGINT@ NOT NULL,
    PRIMARY KEY (stack_id, pr_key)
);
CREATE INDEX deployments_lease ON deployments (status, lease_until);
