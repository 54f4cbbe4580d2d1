-- Posture (issue 17): the token usage inventory (aggregated: one row per token, per
-- distinct client, per target and per active hour; never one per request), anomalies
-- (unique per token, kind and window, so that racing processes flag each once), address
-- allow-lists and named address ranges, and per-organization posture settings (JSON).
-- Times are Unix nanoseconds (UTC).
CREATE TABLE token_usage (
    token_id          @TEXT@ PRIMARY KEY,
    org_id            @BIGINT@ NOT NULL DEFAULT 0,
    first_seen        @BIGINT@ NOT NULL,
    last_seen         @BIGINT@ NOT NULL,
    requests          @BIGINT@ NOT NULL DEFAULT 0,
    denied            @BIGINT@ NOT NULL DEFAULT 0,
    hours_mask        @BIGINT@ NOT NULL DEFAULT 0,
    overflow_clients  @BIGINT@ NOT NULL DEFAULT 0,
    overflow_requests @BIGINT@ NOT NULL DEFAULT 0,
    overflow_targets  @BIGINT@ NOT NULL DEFAULT 0
);

CREATE TABLE token_usage_clients (
    token_id   @TEXT@ NOT NULL,
    ip         @TEXT@ NOT NULL,
    agent      @TEXT@ NOT NULL,
    ci         @TEXT@ NOT NULL,
    org_id     @BIGINT@ NOT NULL DEFAULT 0,
    first_seen @BIGINT@ NOT NULL,
    last_seen  @BIGINT@ NOT NULL,
    requests   @BIGINT@ NOT NULL DEFAULT 0,
    denied     @BIGINT@ NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, ip, agent, ci)
);

CREATE TABLE token_usage_targets (
    token_id   @TEXT@ NOT NULL,
    kind       @TEXT@ NOT NULL,
    name       @TEXT@ NOT NULL,
    first_seen @BIGINT@ NOT NULL,
    last_seen  @BIGINT@ NOT NULL,
    requests   @BIGINT@ NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, kind, name)
);

CREATE TABLE token_usage_hours (
    token_id @TEXT@ NOT NULL,
    hour     @BIGINT@ NOT NULL,
    requests @BIGINT@ NOT NULL DEFAULT 0,
    denied   @BIGINT@ NOT NULL DEFAULT 0,
    PRIMARY KEY (token_id, hour)
);

CREATE TABLE posture_anomalies (
    id         @ID@,
    org_id     @BIGINT@ NOT NULL DEFAULT 0,
    token_id   @TEXT@ NOT NULL,
    kind       @TEXT@ NOT NULL,
    window_key @TEXT@ NOT NULL,
    at         @BIGINT@ NOT NULL,
    detail     @TEXT@ NOT NULL DEFAULT '',
    ip         @TEXT@ NOT NULL DEFAULT '',
    agent      @TEXT@ NOT NULL DEFAULT '',
    UNIQUE (token_id, kind, window_key)
);
CREATE INDEX posture_anomalies_org ON posture_anomalies (org_id, at);

CREATE TABLE address_allowlists (
    org_id      @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    token_id    @TEXT@ NOT NULL DEFAULT '',
    entries     @TEXT@ NOT NULL,
    modified_by @TEXT@ NOT NULL DEFAULT '',
    modified    @BIGINT@ NOT NULL,
    PRIMARY KEY (org_id, token_id)
);

CREATE TABLE address_ranges (
    org_id      @BIGINT@ NOT NULL REFERENCES orgs (id) ON DELETE CASCADE,
    name        @TEXT@ NOT NULL,
    cidrs       @TEXT@ NOT NULL,
    modified_by @TEXT@ NOT NULL DEFAULT '',
    modified    @BIGINT@ NOT NULL,
    PRIMARY KEY (org_id, name)
);

CREATE TABLE posture_settings (
    org_id   @BIGINT@ PRIMARY KEY REFERENCES orgs (id) ON DELETE CASCADE,
    settings @TEXT@ NOT NULL,
    modified @BIGINT@ NOT NULL
);
