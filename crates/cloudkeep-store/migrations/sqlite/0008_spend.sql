-- Spend: cost rows at day x resource x meter, named as FOCUS 1.2 names
-- them, with their dimensions in small tables (a resource, a meter and its
-- charge), Azure's own daily totals per subscription (the reconciliation),
-- each subscription's backfill position, the trailing window per
-- connection, and each organisation's tag key aliases.

-- A resource as cost rows see it, per subscription: resource_key is a
-- stable hash of (subscription, lower-cased ResourceId), so rows are keyed
-- without a lookup. ResourceId is NULL for charges with no resource (a
-- reservation purchase, a marketplace charge, a reconciliation).
CREATE TABLE spend_resources (
    org_id              TEXT    NOT NULL REFERENCES organisations (org_id),
    resource_key        INTEGER NOT NULL,
    SubAccountId        TEXT    NOT NULL,
    SubAccountName      TEXT    NOT NULL,
    ResourceId          TEXT,
    ResourceName        TEXT,
    ResourceType        TEXT,
    RegionId            TEXT,
    x_ResourceGroupName TEXT,
    BillingCurrency     TEXT    NOT NULL,
    PRIMARY KEY (org_id, resource_key)
);
CREATE INDEX spend_resources_sub ON spend_resources (org_id, SubAccountId);

-- The resource's tags as the inventory last had them (none below the
-- read-tags levels), refreshed at every spend collection.
CREATE TABLE spend_resource_tags (
    org_id        TEXT    NOT NULL REFERENCES organisations (org_id),
    resource_key  INTEGER NOT NULL,
    key_lower     TEXT    NOT NULL,
    tag_key       TEXT    NOT NULL,
    tag_value     TEXT    NOT NULL,
    PRIMARY KEY (org_id, resource_key, key_lower)
) WITHOUT ROWID;
CREATE INDEX spend_resource_tags_key ON spend_resource_tags (org_id, key_lower, resource_key);

-- A meter with its service and charge: meter_key hashes them all.
CREATE TABLE spend_meters (
    org_id                    TEXT    NOT NULL REFERENCES organisations (org_id),
    meter_key                 INTEGER NOT NULL,
    SkuMeter                  TEXT    NOT NULL,
    ServiceName               TEXT,
    ServiceCategory           TEXT    NOT NULL,
    ChargeCategory            TEXT    NOT NULL,
    PricingCategory           TEXT,
    CommitmentDiscountStatus  TEXT,
    x_ChargeType              TEXT    NOT NULL,
    PRIMARY KEY (org_id, meter_key)
);

-- The cost rows: ChargePeriodStart as a day number (days since
-- 1970-01-01, UTC; the row covers that one day). Keyed for the period
-- queries every analysis makes; the dimensions are joined by key.
CREATE TABLE spend_costs (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    day            INTEGER NOT NULL,
    resource_key   INTEGER NOT NULL,
    meter_key      INTEGER NOT NULL,
    BilledCost     REAL    NOT NULL,
    EffectiveCost  REAL    NOT NULL,
    PRIMARY KEY (org_id, day, resource_key, meter_key)
) WITHOUT ROWID;
CREATE INDEX spend_costs_resource ON spend_costs (org_id, resource_key, day);

-- Azure's ungrouped total per subscription and day, and what the stored
-- rows summed to before the reconciliation row made up the difference.
CREATE TABLE spend_days (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    SubAccountId     TEXT    NOT NULL,
    day              INTEGER NOT NULL,
    billed_total     REAL    NOT NULL,
    effective_total  REAL    NOT NULL,
    billed_rows      REAL    NOT NULL,
    effective_rows   REAL    NOT NULL,
    BillingCurrency  TEXT    NOT NULL,
    pulled_at        INTEGER NOT NULL,
    PRIMARY KEY (org_id, SubAccountId, day)
);

-- Where a subscription's backfill stands: months are pulled newest first,
-- next_month (a day number, the 1st) is the next one to pull, NULL once
-- done; pulled_through is the latest day pulled.
CREATE TABLE spend_backfill (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    subscription_id  TEXT    NOT NULL,
    start_month      INTEGER NOT NULL,
    next_month       INTEGER,
    months_done      INTEGER NOT NULL,
    months_total     INTEGER NOT NULL,
    pulled_through   INTEGER,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, subscription_id)
);

CREATE TABLE spend_settings (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    connection_id  TEXT    NOT NULL,
    trailing_days  INTEGER NOT NULL,
    PRIMARY KEY (org_id, connection_id)
);

-- Tag keys that mean the same (Env, environment -> env), lower case.
CREATE TABLE spend_tag_aliases (
    org_id       TEXT NOT NULL REFERENCES organisations (org_id),
    alias_lower  TEXT NOT NULL,
    key_lower    TEXT NOT NULL,
    PRIMARY KEY (org_id, alias_lower)
);
