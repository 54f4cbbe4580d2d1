-- Deployments act for a principal when their credential opens environments (issue 19):
-- who triggered the run (REST API), or who last stored the stack's deployment settings (a
-- VCS webhook's runs). Kind is 'user' (id: the user's ID) or 'token' (id: the token's ID);
-- '' is nobody.
ALTER TABLE deployments ADD COLUMN acts_for_kind @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE deployments ADD COLUMN acts_for_id @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE deploy_settings ADD COLUMN modified_by_kind @TEXT@ NOT NULL DEFAULT '';
ALTER TABLE deploy_settings ADD COLUMN modified_by_id @TEXT@ NOT NULL DEFAULT '';
