-- Inventory: resources with their observed tags and tag history, and the
-- record of every sync run.

CREATE TABLE resources (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    resource_id      TEXT    NOT NULL,
    connection_id    TEXT    NOT NULL,
    subscription_id  TEXT    NOT NULL,
    azure_id         TEXT    NOT NULL,
    arm_id           TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    resource_type    TEXT    NOT NULL,
    location         TEXT    NOT NULL,
    resource_group   TEXT    NOT NULL,
    -- The tags last observed in Azure (JSON); NULL while the subscription's
    -- sync level does not read tags.
    tags             TEXT,
    first_seen       BIGINT NOT NULL,
    last_seen        BIGINT NOT NULL,
    deleted_at       BIGINT,
    azure_created    BIGINT,
    azure_changed    BIGINT,
    PRIMARY KEY (org_id, resource_id)
);
CREATE UNIQUE INDEX resources_azure ON resources (org_id, subscription_id, azure_id);

CREATE TABLE tag_history (
    org_id       TEXT    NOT NULL REFERENCES organisations (org_id),
    resource_id  TEXT    NOT NULL,
    seq          BIGINT NOT NULL,
    observed_at  BIGINT NOT NULL,
    old_tags     TEXT    NOT NULL,
    new_tags     TEXT    NOT NULL,
    run_id       TEXT    NOT NULL,
    PRIMARY KEY (org_id, resource_id, seq)
);

CREATE TABLE sync_runs (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    run_id         TEXT    NOT NULL,
    connection_id  TEXT    NOT NULL,
    trigger_kind   TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    started_at     BIGINT NOT NULL,
    finished_at    BIGINT,
    counts         TEXT    NOT NULL,
    errors         TEXT    NOT NULL,
    PRIMARY KEY (org_id, run_id)
);
CREATE INDEX sync_runs_connection ON sync_runs (org_id, connection_id, started_at);
