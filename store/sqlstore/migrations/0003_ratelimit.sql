-- Failed-authentication counters per source, shared by every process on the database.
CREATE TABLE auth_failures (
    key          @TEXT@ PRIMARY KEY,
    window_start @BIGINT@ NOT NULL,
    count        @BIGINT@ NOT NULL
);
