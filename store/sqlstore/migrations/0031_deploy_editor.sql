-- A deployment records, besides the principal it acts for (who triggered it), the last
-- editor of the stack's deployment settings when it was queued: who chose the code it
-- runs (pre-run commands, repository). Its credential reads and opens an environment only
-- when both may (issue 19, security review). Kind is 'user' or 'token'; '' is nobody
-- (runs queued before this migration, and pull-request runs that open no environment).
ALTER TABLE deployments ADD COLUMN editor_kind @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN editor_id @TEXT@ NOT NULL DEFAULT '';
