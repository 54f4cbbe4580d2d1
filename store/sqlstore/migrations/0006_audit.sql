-- The audit log's bookkeeping: signed checkpoints of the hash chain, and the cursors and
-- leases of the continuous export. Times are Unix nanoseconds (UTC).

-- A checkpoint is a signature (by a key kept outside the database) over (seq, hash, time,
-- key_id): "periodic" ones are made by the server, a "retention" one anchors what remains
-- after the events up to its seq were archived and pruned.
CREATE TABLE audit_checkpoints (
    seq       @BIGINT@ NOT NULL,
    kind      @TEXT@ NOT NULL CHECK (kind IN ('periodic', 'retention')),
    hash      @BLOB@ NOT NULL,
    time      @BIGINT@ NOT NULL,
    key_id    @TEXT@ NOT NULL,
    signature @BLOB@ NOT NULL,
    PRIMARY KEY (seq, kind)
);
CREATE INDEX audit_checkpoints_kind ON audit_checkpoints (kind, seq);

-- One row per export sink: the seq of the last event the sink acknowledged, and the lease
-- that lets one process (of several serving the database) export to it.
CREATE TABLE audit_export_cursors (
    sink        @TEXT@ PRIMARY KEY,
    seq         @BIGINT@ NOT NULL DEFAULT 0,
    lease_owner @TEXT@ NOT NULL DEFAULT '',
    lease_until @BIGINT@ NOT NULL DEFAULT 0
);

-- Listings are newest first by seq within an organization (the API's pages, continuation
-- tokens), filtered by event, actor and a time range. Indexes ordered by seq serve them by
-- walking backwards and stopping after a page, with time in the index to filter without
-- reading the rows; the (..., time) indexes they replace made the database sort every match
-- (all of an organization's events for an unfiltered listing) to find the newest.
DROP INDEX IF EXISTS audit_org_time;
DROP INDEX IF EXISTS audit_action;
DROP INDEX IF EXISTS audit_actor;
CREATE INDEX audit_org_seq ON audit_events (org_id, seq, time);
CREATE INDEX audit_action_seq ON audit_events (org_id, action, seq, time);
CREATE INDEX audit_actor_seq ON audit_events (org_id, actor_name, seq, time);
