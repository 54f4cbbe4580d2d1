-- An update records the credential that started it (its lease's source), so that the lease
-- is renewed only while that credential may still run the update: a revoked
-- token, a disabled user or a lost grant ends the lease within one lease period (security
-- review). Kind is 'user' or 'token'; '' is none recorded (deployment runs, whose run
-- bounds their updates, and updates started before this migration).
ALTER TABLE updates ADD COLUMN starter_kind @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE updates ADD COLUMN starter_id @TEXT@ NOT NULL DEFAULT '';
