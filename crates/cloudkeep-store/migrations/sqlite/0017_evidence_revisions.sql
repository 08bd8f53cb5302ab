-- A counter per organisation that every write changing what the control
-- coverage counts moves, in the writing transaction (evidence recorded,
-- continued or purged; subscriptions attached, moved or detached;
-- connections revoked or their stale threshold changed; the control
-- mapping changed): the coverage is kept in memory per revision, and
-- every instance reads the revision before answering from what it kept.
CREATE TABLE evidence_revisions (
    org_id  TEXT   NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    rev     BIGINT NOT NULL
);
