-- Retracted environment revisions: a retracted revision can no longer be read or opened;
-- its tags moved to the replacement. retracted is the time (0: not retracted).
ALTER TABLE env_revisions ADD COLUMN retracted @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE env_revisions ADD COLUMN retract_replacement @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE env_revisions ADD COLUMN retracted_by @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE env_revisions ADD COLUMN retract_reason @TEXT@ NOT NULL DEFAULT '';

-- A team's environment grant may cap how long its members open the environment for
-- (Pulumi's maxOpenDuration), in seconds; 0 is no cap beyond the server's.
ALTER TABLE grants ADD COLUMN max_open_seconds @BIGINT@ NOT NULL DEFAULT 0;

-- A team grant may select environments by tag (name=value), as stack grants select stacks.
ALTER TABLE grants ADD COLUMN env_tag_name @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE grants ADD COLUMN env_tag_value @TEXT@ NOT NULL DEFAULT '';
