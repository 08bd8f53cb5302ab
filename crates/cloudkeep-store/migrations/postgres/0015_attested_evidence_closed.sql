-- Attested evidence is immutable, its interval included. Approval closes
-- every attached row still current at the approval instant and continues
-- the subject's state in a new row from that same instant (in the
-- approval's transaction, so a subject's intervals still never gap or
-- overlap); later syncs extend or close that new row, never the attested
-- one. The trigger function of 0009 that let a sync move an attested
-- interval forward becomes one that refuses every UPDATE and DELETE.

-- Rows attested before this migration and still current: close them at
-- the first approval (or at their last observation, if a sync extended
-- them past it) and continue them from there, as approval now does. The
-- continuation keeps the last observation's time and run: it is the same
-- state, not a new observation, so its freshness is unchanged.
CREATE TEMP TABLE attested_current AS
SELECT e.org_id, e.evidence_id, gen_random_uuid()::text AS next_id,
       GREATEST(e.last_observed_at, (SELECT MIN(a.approved_at) FROM assessment_evidence ae
                                     JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
                                     WHERE ae.org_id = e.org_id AND ae.evidence_id = e.evidence_id AND a.state = 'approved')) AS cut
FROM evidence e
WHERE e.valid_to IS NULL
  AND EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
              WHERE ae.org_id = e.org_id AND ae.evidence_id = e.evidence_id AND a.state = 'approved');

-- Closing at or after the last observation, what 0009's trigger allows.
UPDATE evidence e SET valid_to = c.cut
FROM attested_current c
WHERE c.org_id = e.org_id AND c.evidence_id = e.evidence_id AND e.valid_to IS NULL;

INSERT INTO evidence (org_id, evidence_id, connection_id, subscription_id, collector, check_id, subject, subject_key,
                      facts, result, reason, fingerprint, run_id, last_run_id, observed_at, last_observed_at, valid_to, recorded_at)
SELECT e.org_id, c.next_id, e.connection_id, e.subscription_id, e.collector, e.check_id, e.subject, e.subject_key,
       e.facts, e.result, e.reason, e.fingerprint, e.last_run_id, e.last_run_id, c.cut, e.last_observed_at, NULL,
       (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT
FROM attested_current c JOIN evidence e ON e.org_id = c.org_id AND e.evidence_id = c.evidence_id;

DROP TABLE attested_current;

-- From now on an attested row is never changed or removed, whatever the
-- caller.
CREATE OR REPLACE FUNCTION evidence_attested_immutable() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
               WHERE ae.org_id = OLD.org_id AND ae.evidence_id = OLD.evidence_id AND a.state = 'approved') THEN
        RAISE EXCEPTION 'evidence is attached to an approved assessment and immutable';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
