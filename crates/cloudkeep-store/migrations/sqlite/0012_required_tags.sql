-- Tag coverage: each organisation's required tag keys, and the tags of
-- resource groups and subscriptions, from which a resource's missing tag
-- is suggested.

-- The keys every resource should carry (lower case, as Azure compares
-- them), in the order the organisation listed them; they match through
-- spend_tag_aliases (alias -> key).
CREATE TABLE required_tag_keys (
    org_id     TEXT    NOT NULL REFERENCES organisations (org_id),
    key_lower  TEXT    NOT NULL,
    key_order  INTEGER NOT NULL,
    PRIMARY KEY (org_id, key_lower)
);

-- The tags of a subscription's resource groups (resource_group lower
-- case) and of the subscription itself (resource_group ''), one row per
-- key, replaced at every inventory pass. Kept only while the
-- subscription's sync level reads tags.
CREATE TABLE scope_tags (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    subscription_id  TEXT    NOT NULL,
    resource_group   TEXT    NOT NULL,
    key_lower        TEXT    NOT NULL,
    tag_key          TEXT    NOT NULL,
    tag_value        TEXT    NOT NULL,
    PRIMARY KEY (org_id, subscription_id, resource_group, key_lower)
) WITHOUT ROWID;
