-- Each attached row's check and observation time, beside it: a control's
-- population is then a range of one index, and the attached list a page of
-- another, instead of a lookup (and a sort) of every attached row's
-- evidence: hundreds of milliseconds per page once an assessment holds a
-- large tenant's rows. Both are copies of the evidence row's own fields,
-- which never change, so an approved assessment's rows take them too: the
-- trigger that refuses changes to them is lifted for this one statement.
ALTER TABLE assessment_evidence ADD COLUMN check_id TEXT, ADD COLUMN observed_at BIGINT;
ALTER TABLE assessment_evidence DISABLE TRIGGER assessment_evidence_frozen;
UPDATE assessment_evidence ae SET check_id = e.check_id, observed_at = e.observed_at
FROM evidence e WHERE e.org_id = ae.org_id AND e.evidence_id = ae.evidence_id;
ALTER TABLE assessment_evidence ENABLE TRIGGER assessment_evidence_frozen;
CREATE INDEX assessment_evidence_check ON assessment_evidence (org_id, assessment_id, check_id, evidence_id);
CREATE INDEX assessment_evidence_observed ON assessment_evidence (org_id, assessment_id, observed_at, evidence_id);
