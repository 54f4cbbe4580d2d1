-- The state protocol of each update (full checkpoints or journaling) and why it was
-- chosen, and per stack what its updates taught about its programs (package protocol).
-- parallelism_milli is the learned number of steps in flight times 1000; rtt_us the
-- client's round trip in microseconds. Times are Unix nanoseconds (UTC).
CREATE TABLE stack_protocol_profiles (
    stack_id          @BIGINT@ PRIMARY KEY REFERENCES stacks (id) ON DELETE CASCADE,
    updates           @BIGINT@ NOT NULL,
    parallelism_milli @BIGINT@ NOT NULL,
    source            @TEXT@ NOT NULL DEFAULT '',
    modified          @BIGINT@ NOT NULL
);

CREATE TABLE update_protocols (
    update_id         @TEXT@ PRIMARY KEY REFERENCES updates (id) ON DELETE CASCADE,
    protocol          @TEXT@ NOT NULL,
    reason            @TEXT@ NOT NULL,
    rtt_us            @BIGINT@ NOT NULL,
    rtt_source        @TEXT@ NOT NULL,
    parallelism_milli @BIGINT@ NOT NULL,
    resources         @BIGINT@ NOT NULL
);
