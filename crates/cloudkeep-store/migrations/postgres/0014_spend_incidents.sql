-- Spend incidents: anomalies of a subscription x service's daily usage
-- cost, and new usage (a first cost on a service or in a region), each
-- with the resources and meters that explain it.

-- incident_id is a stable hash of (kind, subscription, subject, first
-- day), so a re-detection updates the incident rather than adding one.
-- subject is the service (anomaly, new_service) or the region (new_region).
CREATE TABLE spend_incidents (
    org_id          TEXT    NOT NULL REFERENCES organisations (org_id),
    incident_id     TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    subscription    TEXT    NOT NULL,
    subscription_name TEXT    NOT NULL,
    subject         TEXT    NOT NULL,
    direction       TEXT    NOT NULL,
    first_day       BIGINT  NOT NULL,
    last_day        BIGINT  NOT NULL,
    expected        DOUBLE PRECISION    NOT NULL,
    actual          DOUBLE PRECISION    NOT NULL,
    max_z           DOUBLE PRECISION,
    ended           BIGINT  NOT NULL,
    currency        TEXT    NOT NULL,
    detected_at     BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    PRIMARY KEY (org_id, incident_id)
);
CREATE INDEX spend_incidents_day ON spend_incidents (org_id, first_day);

-- What explains an incident, ranked by share of its change: resources
-- (key = ResourceId, empty for charges with no resource) and meters.
CREATE TABLE spend_incident_contributors (
    org_id       TEXT    NOT NULL REFERENCES organisations (org_id),
    incident_id  TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    rank         BIGINT  NOT NULL,
    item         TEXT    NOT NULL,
    name         TEXT,
    expected     DOUBLE PRECISION    NOT NULL,
    actual       DOUBLE PRECISION    NOT NULL,
    share        DOUBLE PRECISION    NOT NULL,
    PRIMARY KEY (org_id, incident_id, kind, rank)
);
