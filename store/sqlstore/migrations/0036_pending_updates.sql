-- Updates created and never started, per stack (CreateUpdate prunes those older than an
-- hour and bounds the rest): a partial index keeps both cheap on stacks with long histories.
CREATE INDEX updates_pending ON updates (stack_id, created) WHERE status = 'not started';
