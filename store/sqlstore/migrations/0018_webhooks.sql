-- Webhooks of organizations (stack_id 0) and stacks, and their durable delivery queue,
-- which is also each webhook's delivery log. secret is the signing secret sealed by the
-- keyring's envelope (never plaintext). Times are Unix nanoseconds (UTC).
CREATE TABLE webhooks (
    id           @ID@,
    org_id       @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    stack_id     @BIGINT@ NOT NULL DEFAULT 0,
    name         @TEXT@ NOT NULL,
    display_name @TEXT@ NOT NULL DEFAULT '',
    payload_url  @TEXT@ NOT NULL,
    active       @BIGINT@ NOT NULL DEFAULT 1,
    format       @TEXT@ NOT NULL DEFAULT 'raw',
    filters      @TEXT@ NOT NULL DEFAULT '[]',
    groups_      @TEXT@ NOT NULL DEFAULT '[]',
    secret       @BLOB@,
    created      @BIGINT@ NOT NULL,
    modified     @BIGINT@ NOT NULL,
    UNIQUE (org_id, stack_id, name)
);

-- One row per event and webhook. A process claims due pending rows with a lease (lease,
-- lease_until); a row whose lease ran out (its process died) is claimed again.
CREATE TABLE webhook_deliveries (
    id               @ID@,
    webhook_id       @BIGINT@ NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    uuid             @TEXT@ NOT NULL,
    kind             @TEXT@ NOT NULL,
    event            @TEXT@ NOT NULL DEFAULT '',
    payload          @BLOB@ NOT NULL,
    status           @TEXT@ NOT NULL,
    attempts         @BIGINT@ NOT NULL DEFAULT 0,
    next_attempt     @BIGINT@ NOT NULL,
    lease            @TEXT@ NOT NULL DEFAULT '',
    lease_until      @BIGINT@ NOT NULL DEFAULT 0,
    created          @BIGINT@ NOT NULL,
    last_attempt     @BIGINT@ NOT NULL DEFAULT 0,
    duration_ms      @BIGINT@ NOT NULL DEFAULT 0,
    request_url      @TEXT@ NOT NULL DEFAULT '',
    request_headers  @TEXT@ NOT NULL DEFAULT '',
    response_code    @BIGINT@ NOT NULL DEFAULT 0,
    response_headers @TEXT@ NOT NULL DEFAULT '',
    response_body    @TEXT@ NOT NULL DEFAULT '',
    error            @TEXT@ NOT NULL DEFAULT ''
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt);
CREATE INDEX webhook_deliveries_hook ON webhook_deliveries (webhook_id, id);
