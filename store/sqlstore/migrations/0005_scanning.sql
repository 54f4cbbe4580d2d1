-- Secret-scanning partner deliveries already processed (GitHub secret scanning): a
-- redelivery of the same body is answered from here, without revoking or recording again.
-- Times are Unix nanoseconds (UTC).
CREATE TABLE scan_deliveries (
    digest   @BLOB@ PRIMARY KEY,    -- SHA-256 of the raw request body
    key_id   @TEXT@ NOT NULL,       -- the signing key's identifier
    received @BIGINT@ NOT NULL,
    labels   @TEXT@ NOT NULL        -- JSON array: "true_positive"/"false_positive" per match, never token values
);
CREATE INDEX scan_deliveries_received ON scan_deliveries (received);
