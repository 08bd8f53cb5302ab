-- Jobs: work the scheduler hands out under leases, so that several
-- cloudkeep processes on one database split the work and a crashed
-- process's job is taken up again when its lease runs out.

CREATE TABLE jobs (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    job_id         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    run_at         BIGINT NOT NULL,
    attempts       BIGINT NOT NULL DEFAULT 0,
    lease_owner    TEXT,
    lease_until    BIGINT,
    last_error     TEXT,
    created_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    PRIMARY KEY (org_id, job_id)
);
CREATE INDEX jobs_due ON jobs (org_id, status, run_at);
-- At most one queued or running job per connection and kind.
CREATE UNIQUE INDEX jobs_one_active ON jobs (org_id, connection_id, kind) WHERE status IN ('queued', 'running');
