-- Every attempt of a webhook delivery (the delivery row keeps the last one's facts too):
-- at most gatehouse.MaxWebhookAttemptsKept per delivery (the newest), deleted with their
-- delivery. Times are Unix nanoseconds (UTC).
CREATE TABLE webhook_delivery_attempts (
    id               @ID@,
    delivery_id      @BIGINT@ NOT NULL,
    attempt          @BIGINT@ NOT NULL,
    at               @BIGINT@ NOT NULL,
    status           @TEXT@ NOT NULL,
    duration_ms      @BIGINT@ NOT NULL DEFAULT 0,
    request_url      @TEXT@ NOT NULL DEFAULT '',
    request_headers  @TEXT@ NOT NULL DEFAULT '',
    response_code    @BIGINT@ NOT NULL DEFAULT 0,
    response_headers @TEXT@ NOT NULL DEFAULT '',
    response_body    @TEXT@ NOT NULL DEFAULT '',
    error            @TEXT@ NOT NULL DEFAULT ''
);
CREATE INDEX webhook_delivery_attempts_delivery ON webhook_delivery_attempts (delivery_id, attempt);
