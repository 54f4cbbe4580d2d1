-- An invitation is bound to the user who had the invited name when it was made (user_id),
-- not to whoever holds the name when it is answered: an account made later under the name,
-- by another organization's admin for one, must not take it. 0: nobody had the name then;
-- such an invitation can never be accepted or declined (only revoked, or left to expire).
ALTER TABLE invitations ADD COLUMN user_id @BIGINT@ NOT NULL DEFAULT 0;
-- Invitations made before: bound to the user of the name, if that user existed already
-- when the invitation was made (one created afterwards gets nothing).
UPDATE invitations SET user_id = COALESCE((SELECT u.id FROM users u WHERE u.name_key = invitations.user_key AND u.created <= invitations.created), 0);
DROP INDEX IF EXISTS invitations_user;
CREATE INDEX invitations_user_id ON invitations (user_id);
