-- Leases of distributed mode (andon/dispatch/leases.py): one worker's right to run one
-- task, renewed by its heartbeats, and the job queue's job of that attempt.
CREATE TABLE andon_leases (
    task_id text PRIMARY KEY,
    job_id bigint NOT NULL,
    worker text NOT NULL,
    epoch integer,
    expires_at timestamptz NOT NULL
);
CREATE INDEX andon_leases_by_expiry ON andon_leases (expires_at);
CREATE INDEX andon_leases_by_worker ON andon_leases (worker);
