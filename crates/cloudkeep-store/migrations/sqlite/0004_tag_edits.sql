-- Tag edits: a user's desired change to a resource's tags, with the tags it
-- was based on (for the three-way merge) and its state.

CREATE TABLE tag_edits (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    edit_id          TEXT    NOT NULL,
    resource_id      TEXT    NOT NULL,
    subscription_id  TEXT    NOT NULL,
    author           TEXT    NOT NULL,
    set_tags         TEXT    NOT NULL,
    remove_tags      TEXT    NOT NULL,
    base_tags        TEXT    NOT NULL,
    -- pending, applied, conflict, refused, failed, or local (kept in cloudkeep).
    state            TEXT    NOT NULL,
    reason           TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    PRIMARY KEY (org_id, edit_id)
);
CREATE INDEX tag_edits_state ON tag_edits (org_id, state, created_at);
CREATE INDEX tag_edits_resource ON tag_edits (org_id, resource_id, created_at);
