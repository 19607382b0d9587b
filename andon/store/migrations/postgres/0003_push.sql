-- Push notifications (andon/store/push.py): each task's webhook configs, and the outbox of
-- deliveries, one row per pushed event per config. The trigger queues the rows inside the
-- transaction that appends the event, whatever statement appended it.
CREATE TABLE andon_push_configs (
    task_id text NOT NULL,
    id text NOT NULL,
    url text NOT NULL,
    version text NOT NULL,
    token text,
    auth_scheme text,
    auth_credentials text,
    created_at double precision NOT NULL,
    PRIMARY KEY (task_id, id)
);

CREATE TABLE andon_push_outbox (
    task_id text NOT NULL,
    config_id text NOT NULL,
    seq integer NOT NULL,
    state text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_at double precision NOT NULL,
    lease_owner text,
    lease_until double precision,
    last_error text,
    created_at double precision NOT NULL,
    PRIMARY KEY (task_id, config_id, seq)
);
CREATE INDEX andon_push_outbox_due ON andon_push_outbox (next_at) WHERE state = 'pending';

CREATE FUNCTION andon_push_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO andon_push_outbox (task_id, config_id, seq, next_at, created_at)
    SELECT NEW.task_id, id, NEW.seq, NEW.created_at, NEW.created_at
    FROM andon_push_configs WHERE task_id = NEW.task_id;
    RETURN NULL;
END;
$$;
CREATE TRIGGER andon_push_enqueue AFTER INSERT ON andon_events
    FOR EACH ROW WHEN (NEW.kind IN ('status', 'progress', 'artifact'))
    EXECUTE FUNCTION andon_push_enqueue();
