-- Pull digests per period instead of one per subscription: a trailing
-- window across the turn of a month is pulled as two periods, which
-- replaced each other's digest at every sync and so never matched. A
-- write of a period drops the digests of every period it overlaps (what
-- they describe is no longer what is stored).
CREATE TABLE spend_pull_digests (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    subscription_id  TEXT    NOT NULL,
    day_from         BIGINT NOT NULL,
    day_to           BIGINT NOT NULL,
    digest           TEXT    NOT NULL,
    PRIMARY KEY (org_id, subscription_id, day_from, day_to)
);
ALTER TABLE spend_backfill DROP COLUMN pull_digest;
