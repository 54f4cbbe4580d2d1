-- Remote stack configuration (`pulumi stack init --remote-config`, PUT .../config): the ESC
-- environment holding the stack's configuration and its secrets provider settings. Times
-- are Unix nanoseconds (UTC).
CREATE TABLE stack_configs (
    stack_id         @BIGINT@ PRIMARY KEY REFERENCES stacks (id) ON DELETE CASCADE,
    environment      @TEXT@ NOT NULL,
    secrets_provider @TEXT@ NOT NULL DEFAULT '',
    encrypted_key    @TEXT@ NOT NULL DEFAULT '',
    encryption_salt  @TEXT@ NOT NULL DEFAULT '',
    modified         @BIGINT@ NOT NULL
);
