-- Security evidence: fingerprinted observations kept as intervals, the
-- organisation's changes to the control mapping and its secure-score
-- threshold, each control's daily coverage, and alerts with the webhooks
-- that deliver them (built once, for every area's alerts).

-- One row per interval of one subject's state under one check. The
-- current interval has no valid_to; a change closes it and opens another
-- at the same instant, so a subject's intervals never gap or overlap.
-- subject_key is the ARM id as compared (lower case), subject as read.
CREATE TABLE evidence (
    org_id            TEXT    NOT NULL REFERENCES organisations (org_id),
    evidence_id       TEXT    NOT NULL,
    connection_id     TEXT    NOT NULL,
    subscription_id   TEXT    NOT NULL,
    collector         TEXT    NOT NULL,
    check_id          TEXT    NOT NULL,
    subject           TEXT    NOT NULL,
    subject_key       TEXT    NOT NULL,
    facts             TEXT    NOT NULL,
    result            TEXT    NOT NULL,
    reason            TEXT,
    fingerprint       TEXT    NOT NULL,
    run_id            TEXT    NOT NULL,
    last_run_id       TEXT    NOT NULL,
    observed_at       INTEGER NOT NULL,
    last_observed_at  INTEGER NOT NULL,
    valid_to          INTEGER,
    recorded_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, evidence_id)
);
-- At most one current interval per subject and check.
CREATE UNIQUE INDEX evidence_current ON evidence (org_id, subscription_id, check_id, subject_key) WHERE valid_to IS NULL;
CREATE INDEX evidence_subject ON evidence (org_id, subscription_id, check_id, subject_key, observed_at);
CREATE INDEX evidence_observed ON evidence (org_id, observed_at, evidence_id);

-- An organisation's changes to the default mapping (docs/controls.md):
-- included 1 adds the check to the control, 0 takes it out.
CREATE TABLE control_mapping (
    org_id      TEXT    NOT NULL REFERENCES organisations (org_id),
    control_id  TEXT    NOT NULL,
    check_id    TEXT    NOT NULL,
    included    INTEGER NOT NULL,
    changed_at  INTEGER NOT NULL,
    changed_by  TEXT    NOT NULL,
    PRIMARY KEY (org_id, control_id, check_id)
);

-- Evidence settings per organisation (none: the defaults). The secure-score
-- threshold is kept in basis points (7000 = 0.7).
CREATE TABLE evidence_settings (
    org_id                        TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    secure_score_threshold_bp     INTEGER NOT NULL,
    updated_at                    INTEGER NOT NULL,
    updated_by                    TEXT    NOT NULL
);

-- Each control's coverage per day (UTC); a day keeps its last figures.
CREATE TABLE control_history (
    org_id          TEXT    NOT NULL REFERENCES organisations (org_id),
    control_id      TEXT    NOT NULL,
    day             TEXT    NOT NULL,
    state           TEXT    NOT NULL,
    passing         INTEGER NOT NULL,
    failing         INTEGER NOT NULL,
    stale           INTEGER NOT NULL,
    not_collected   INTEGER NOT NULL,
    not_applicable  INTEGER NOT NULL,
    recorded_at     INTEGER NOT NULL,
    PRIMARY KEY (org_id, control_id, day)
);

-- Alerts of every area. scope names what the alert is about
-- ("connection:{id}"); figures are the numbers behind it (JSON).
CREATE TABLE alerts (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    alert_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    scope            TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    figures          TEXT    NOT NULL,
    opened_at        INTEGER NOT NULL,
    acknowledged_at  INTEGER,
    acknowledged_by  TEXT,
    resolved_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, alert_id)
);
-- An alert fires once: at most one open or acknowledged alert per kind and scope.
CREATE UNIQUE INDEX alerts_active ON alerts (org_id, kind, scope) WHERE state <> 'resolved';
CREATE INDEX alerts_opened ON alerts (org_id, opened_at, alert_id);

-- Webhooks: the signing secret is sealed with the organisation's data key,
-- as connection credentials are (data_key_version names the key).
CREATE TABLE webhooks (
    org_id            TEXT    NOT NULL REFERENCES organisations (org_id),
    webhook_id        TEXT    NOT NULL,
    name              TEXT    NOT NULL,
    url               TEXT    NOT NULL,
    secret            BLOB    NOT NULL,
    data_key_version  INTEGER NOT NULL,
    enabled           INTEGER NOT NULL,
    created_at        INTEGER NOT NULL,
    created_by        TEXT    NOT NULL,
    deleted_at        INTEGER,
    PRIMARY KEY (org_id, webhook_id)
);

-- One delivery of one event to one webhook. Its body is fixed when it is
-- queued (a job of kind 'webhook' whose connection_id column holds the
-- delivery's id); each attempt signs it afresh and is logged.
CREATE TABLE webhook_deliveries (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    delivery_id      TEXT    NOT NULL,
    webhook_id       TEXT    NOT NULL,
    event            TEXT    NOT NULL,
    alert_id         TEXT,
    payload          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    next_attempt_at  INTEGER,
    delivered_at     INTEGER,
    last_status      INTEGER,
    last_error       TEXT,
    PRIMARY KEY (org_id, delivery_id)
);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (org_id, webhook_id, created_at, delivery_id);

CREATE TABLE webhook_attempts (
    org_id       TEXT    NOT NULL REFERENCES organisations (org_id),
    delivery_id  TEXT    NOT NULL,
    attempt      INTEGER NOT NULL,
    at           INTEGER NOT NULL,
    status       INTEGER,
    error        TEXT,
    duration_ms  INTEGER NOT NULL,
    PRIMARY KEY (org_id, delivery_id, attempt)
);
