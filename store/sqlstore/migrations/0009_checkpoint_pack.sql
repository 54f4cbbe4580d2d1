-- Finished versions of a stack's state are stored compressed: every few versions a
-- keyframe (zstd), in between the difference to the keyframe (zstd with the keyframe as
-- its dictionary), so storage grows with what changed, not with the size of the stack.
-- format: 'raw' (as received), 'zfull' (zstd) or 'zdelta' (zstd against base_version).
ALTER TABLE checkpoints ADD COLUMN format @TEXT@ NOT NULL DEFAULT 'raw';
ALTER TABLE checkpoints ADD COLUMN base_version @BIGINT@ NOT NULL DEFAULT 0;
