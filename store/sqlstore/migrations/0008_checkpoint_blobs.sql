-- Checkpoints in object storage (optional, see store/sqlstore/blobs.go): a row whose
-- blob_key is set holds no data itself; its bytes are the object under that key, whose name
-- is the SHA-256 of the content. '' means the data is in the row.
ALTER TABLE checkpoints ADD COLUMN blob_key @TEXT@ NOT NULL DEFAULT '';
