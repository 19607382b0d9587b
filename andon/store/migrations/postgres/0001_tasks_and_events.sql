-- Tasks and their event logs. Times are Unix seconds (double precision), as TaskRecord
-- holds them. Event data and status messages are `json`, which keeps the text (and the
-- key order) an agent wrote; metadata is `jsonb` so a transition can merge it with ||.
CREATE TABLE andon_tasks (
    id text PRIMARY KEY,
    context_id text NOT NULL,
    owner text NOT NULL,
    state text NOT NULL,
    prior_state text,
    epoch integer NOT NULL DEFAULT 0,
    reason text,
    status_message json,
    metadata jsonb NOT NULL DEFAULT '{}',
    retry_of text,
    timeout double precision,
    idle_timeout double precision,
    input_timeout double precision,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    last_seq integer NOT NULL DEFAULT 0
);
CREATE INDEX andon_tasks_by_created ON andon_tasks (created_at, id);
CREATE INDEX andon_tasks_by_owner ON andon_tasks (owner, created_at, id);
CREATE INDEX andon_tasks_by_context ON andon_tasks (context_id, created_at, id);
-- Few tasks are active or waiting at any time: recovery and dispatch scan only those.
CREATE INDEX andon_tasks_unfinished ON andon_tasks (state, created_at)
    WHERE state IN ('submitted', 'working', 'input-required', 'auth-required', 'canceling');

CREATE TABLE andon_events (
    task_id text NOT NULL,
    seq integer NOT NULL,
    kind text NOT NULL,
    data json NOT NULL,
    final boolean NOT NULL DEFAULT false,
    created_at double precision NOT NULL,
    PRIMARY KEY (task_id, seq)
);
