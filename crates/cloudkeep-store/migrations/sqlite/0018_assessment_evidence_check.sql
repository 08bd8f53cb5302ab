-- Each attached row's check and observation time, beside it: a control's
-- population is then a range of one index, and the attached list a page of
-- another, instead of a lookup (and a sort) of every attached row's
-- evidence: hundreds of milliseconds per page once an assessment holds a
-- large tenant's rows. Both are copies of the evidence row's own fields,
-- which never change, so an approved assessment's rows take them too: the
-- trigger that refuses changes to them is lifted for this one statement.
ALTER TABLE assessment_evidence ADD COLUMN check_id TEXT;
ALTER TABLE assessment_evidence ADD COLUMN observed_at INTEGER;
DROP TRIGGER assessment_evidence_frozen_update;
UPDATE assessment_evidence SET (check_id, observed_at) = (
    SELECT e.check_id, e.observed_at FROM evidence e
    WHERE e.org_id = assessment_evidence.org_id AND e.evidence_id = assessment_evidence.evidence_id
);
CREATE TRIGGER assessment_evidence_frozen_update BEFORE UPDATE ON assessment_evidence
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE INDEX assessment_evidence_check ON assessment_evidence (org_id, assessment_id, check_id, evidence_id);
CREATE INDEX assessment_evidence_observed ON assessment_evidence (org_id, assessment_id, observed_at, evidence_id);
