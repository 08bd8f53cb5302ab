-- The foundation for spend and evidence: tags queryable in SQL, indexed
-- resource filters, one live connection per Azure subscription, a typed
-- run report, and inventory times kept per subscription.

-- Observed tags, one row per resource and key, so "has tag", "tag k=v" and
-- "missing tag" are indexed queries. Azure tag names are case-insensitive:
-- key_lower is the key as compared, tag_key as Azure spells it.
-- resources.tags keeps the whole set, as read.
CREATE TABLE resource_tags (
    org_id       TEXT NOT NULL REFERENCES organisations (org_id),
    resource_id  TEXT NOT NULL,
    key_lower    TEXT NOT NULL,
    tag_key      TEXT NOT NULL,
    tag_value    TEXT NOT NULL,
    PRIMARY KEY (org_id, resource_id, key_lower)
) WITHOUT ROWID;
CREATE INDEX resource_tags_value ON resource_tags (org_id, key_lower, tag_value, resource_id);
INSERT INTO resource_tags (org_id, resource_id, key_lower, tag_key, tag_value)
    SELECT r.org_id, r.resource_id, lower(j.key), j.key, j.value FROM resources r, json_each(r.tags) j
    WHERE r.tags IS NOT NULL
    ON CONFLICT DO NOTHING;

-- Filters compare Azure's case-insensitive names in lower case. Types and
-- resource groups can be rare enough to want an index; a subscription's
-- resources are found through resources_azure, and locations are few and
-- common, so a scan in id order finds a page of them at once (every index
-- is paid for on every inventory insert).
CREATE INDEX resources_type ON resources (org_id, lower(resource_type), resource_id);
CREATE INDEX resources_group ON resources (org_id, lower(resource_group), resource_id);

-- A subscription belongs to at most one live connection of an
-- organisation. A revoked connection's subscriptions are detached (kept
-- as its history); of two live connections holding one subscription, the
-- older keeps it.
ALTER TABLE subscriptions ADD COLUMN detached_at INTEGER;
-- When the inventory last listed the subscription: a live resource was
-- last seen then (so an unchanged sync writes no row per resource).
ALTER TABLE subscriptions ADD COLUMN inventory_at INTEGER;
-- Bumped by every change to the subscription's resources: an inventory
-- pass diffed before a change is diffed again.
ALTER TABLE subscriptions ADD COLUMN resources_rev INTEGER NOT NULL DEFAULT 0;
UPDATE subscriptions SET detached_at = (
    SELECT c.deleted_at FROM connections c
    WHERE c.org_id = subscriptions.org_id AND c.connection_id = subscriptions.connection_id)
WHERE EXISTS (
    SELECT 1 FROM connections c
    WHERE c.org_id = subscriptions.org_id AND c.connection_id = subscriptions.connection_id
      AND c.deleted_at IS NOT NULL);
UPDATE subscriptions SET detached_at = CAST(strftime('%s','now') AS INTEGER) * 1000
WHERE detached_at IS NULL AND EXISTS (
    SELECT 1 FROM subscriptions o
    JOIN connections oc ON oc.org_id = o.org_id AND oc.connection_id = o.connection_id
    JOIN connections mc ON mc.org_id = subscriptions.org_id AND mc.connection_id = subscriptions.connection_id
    WHERE o.org_id = subscriptions.org_id AND o.azure_id = subscriptions.azure_id
      AND o.detached_at IS NULL AND o.subscription_id <> subscriptions.subscription_id
      AND (oc.created_at < mc.created_at OR (oc.created_at = mc.created_at AND oc.connection_id < mc.connection_id)));
CREATE UNIQUE INDEX subscriptions_live ON subscriptions (org_id, azure_id) WHERE detached_at IS NULL;

-- The run's typed report (steps, counts, progress, errors); runs recorded
-- before it keep their counts and errors columns, read by the store.
ALTER TABLE sync_runs ADD COLUMN report TEXT;

-- Edits refused by a sync level were stored as 'refused'; that state is
-- now 'cancelled' (refused edits are no longer stored at all).
UPDATE tag_edits SET state = 'cancelled' WHERE state = 'refused';
CREATE INDEX tag_edits_subscription ON tag_edits (org_id, subscription_id, state);
