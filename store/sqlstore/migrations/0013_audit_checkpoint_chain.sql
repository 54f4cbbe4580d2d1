-- Audit checkpoints form a chain in the order they were made: each signs its kind, its
-- position (chain_idx, from 1) and the seq and digest of the checkpoint made before it.
-- Rows written before this migration keep chain_idx 0: they are in the old format (their
-- signature covers seq, hash, time and key only) and verify under the old rule; the first
-- checkpoint made after it starts the chain and names the old one with the highest seq as its
-- predecessor.
ALTER TABLE audit_checkpoints ADD COLUMN chain_idx @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE audit_checkpoints ADD COLUMN prev_seq @BIGINT@ NOT NULL DEFAULT 0;
ALTER TABLE audit_checkpoints ADD COLUMN prev_digest @BLOB@;
-- One checkpoint per position: two processes racing to extend the chain cannot fork it.
CREATE UNIQUE INDEX audit_checkpoints_chain ON audit_checkpoints (chain_idx) WHERE chain_idx > 0;
