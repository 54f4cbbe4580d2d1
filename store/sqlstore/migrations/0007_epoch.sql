-- The security epoch: bumped in the same transaction as every change that can alter an
-- authentication or authorization decision (token revocation, membership, teams, grants,
-- protection rules, organization settings). Servers cache identities and decision facts
-- per epoch, so a change takes effect on the very next request on every process.
CREATE TABLE security_epoch (
    id    @BIGINT@ PRIMARY KEY,
    epoch @BIGINT@ NOT NULL
);
INSERT INTO security_epoch (id, epoch) VALUES (1, 0);
