-- The client's journaling batch period (package protocol): learned per stack from the
-- gaps between the journal batches of an update whose CLI set its own
-- PULUMI_JOURNALING_BATCH_PERIOD, and, per update, the period the choice assumed and
-- whether the CLI set its own (0 / 1). Microseconds; 0 when never learned.
ALTER TABLE stack_protocol_profiles ADD COLUMN batch_period_us @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE update_protocols ADD COLUMN batch_period_us @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE update_protocols ADD COLUMN client_batch_period @BIGINT@ NOT NULL DEFAULT 0;
