-- A counter per organisation that every write of spend rows, their tags
-- or the tag aliases moves, in the writing transaction: analyses are kept
-- in memory per revision, and every instance reads the revision before
-- answering from what it kept, so none answers from rows another replaced.
CREATE TABLE spend_revisions (
    org_id  TEXT   NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    rev     BIGINT NOT NULL
);
