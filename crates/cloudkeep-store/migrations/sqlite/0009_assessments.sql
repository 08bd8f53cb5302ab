-- Assessments: a fixed audit period of evidence for chosen controls.
-- Approval makes an assessment, its scope and every evidence row attached
-- to it immutable, and the triggers below enforce it in the store itself,
-- whatever the caller. Also: Type II samples, auditors' invitations to one
-- assessment, an auditor's grant to the data, the retention window.

CREATE TABLE assessments (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    assessment_id  TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    period_start   INTEGER NOT NULL,
    period_end     INTEGER NOT NULL,
    state          TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT    NOT NULL,
    approved_at    INTEGER,
    approved_by    TEXT,
    PRIMARY KEY (org_id, assessment_id)
);
CREATE INDEX assessments_created ON assessments (org_id, created_at, assessment_id);

-- The controls in scope and, per control, the checks mapped to it when the
-- assessment was created (the mapping can change later; a population
-- must not).
CREATE TABLE assessment_checks (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    assessment_id  TEXT    NOT NULL,
    control_id     TEXT    NOT NULL,
    check_id       TEXT    NOT NULL,
    PRIMARY KEY (org_id, assessment_id, control_id, check_id)
);
-- A control with no check mapped still is in scope.
CREATE TABLE assessment_controls (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    assessment_id  TEXT    NOT NULL,
    control_id     TEXT    NOT NULL,
    PRIMARY KEY (org_id, assessment_id, control_id)
);

-- Evidence attached to an assessment, with its fingerprint as attached.
CREATE TABLE assessment_evidence (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    assessment_id  TEXT    NOT NULL,
    evidence_id    TEXT    NOT NULL,
    fingerprint    TEXT    NOT NULL,
    attached_at    INTEGER NOT NULL,
    attached_by    TEXT    NOT NULL,
    PRIMARY KEY (org_id, assessment_id, evidence_id)
);
CREATE INDEX assessment_evidence_row ON assessment_evidence (org_id, evidence_id);

-- A Type II sample: drawn from a control's population with a stored seed
-- (decimal text: a u64), its items in draw order. Append-only.
CREATE TABLE assessment_samples (
    org_id           TEXT    NOT NULL REFERENCES organisations (org_id),
    sample_id        TEXT    NOT NULL,
    assessment_id    TEXT    NOT NULL,
    control_id       TEXT    NOT NULL,
    seed             TEXT    NOT NULL,
    size             INTEGER NOT NULL,
    population       INTEGER NOT NULL,
    population_hash  TEXT    NOT NULL,
    drawn_at         INTEGER NOT NULL,
    drawn_by         TEXT    NOT NULL,
    PRIMARY KEY (org_id, sample_id)
);
CREATE INDEX assessment_samples_assessment ON assessment_samples (org_id, assessment_id, drawn_at);
CREATE TABLE assessment_sample_items (
    org_id       TEXT    NOT NULL REFERENCES organisations (org_id),
    sample_id    TEXT    NOT NULL,
    position     INTEGER NOT NULL,
    evidence_id  TEXT    NOT NULL,
    PRIMARY KEY (org_id, sample_id, position)
);

-- An auditor invited to one assessment: a bearer secret (only its hash is
-- kept) that reads that assessment until it expires or is revoked.
CREATE TABLE assessment_invitations (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    invitation_id  TEXT    NOT NULL,
    assessment_id  TEXT    NOT NULL,
    email          TEXT    NOT NULL,
    token_hash     TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    created_by     TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    revoked_at     INTEGER,
    revoked_by     TEXT,
    PRIMARY KEY (org_id, invitation_id)
);
CREATE UNIQUE INDEX assessment_invitations_hash ON assessment_invitations (org_id, token_hash);
CREATE INDEX assessment_invitations_assessment ON assessment_invitations (org_id, assessment_id, created_at);

-- The organisation's retention window (none: the default, 400 days).
CREATE TABLE retention_settings (
    org_id          TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    retention_days  INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    updated_by      TEXT    NOT NULL
);

-- When the scheduler last looked for anything past the window (once a day).
CREATE TABLE retention_checks (
    org_id      TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    checked_at  INTEGER NOT NULL
);

-- An owner's grant to an auditor: spend, inventory and tags too.
ALTER TABLE users ADD COLUMN data_access INTEGER NOT NULL DEFAULT 0;

-- Immutability. An approved assessment is never changed or removed.
CREATE TRIGGER assessments_approved_no_update BEFORE UPDATE ON assessments
WHEN OLD.state = 'approved'
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessments_approved_no_delete BEFORE DELETE ON assessments
WHEN OLD.state = 'approved'
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;

-- Its scope and attachments neither.
CREATE TRIGGER assessment_checks_frozen_insert BEFORE INSERT ON assessment_checks
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = NEW.org_id AND a.assessment_id = NEW.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_checks_frozen_update BEFORE UPDATE ON assessment_checks
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_checks_frozen_delete BEFORE DELETE ON assessment_checks
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_controls_frozen_insert BEFORE INSERT ON assessment_controls
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = NEW.org_id AND a.assessment_id = NEW.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_controls_frozen_update BEFORE UPDATE ON assessment_controls
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_controls_frozen_delete BEFORE DELETE ON assessment_controls
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_evidence_frozen_insert BEFORE INSERT ON assessment_evidence
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = NEW.org_id AND a.assessment_id = NEW.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_evidence_frozen_update BEFORE UPDATE ON assessment_evidence
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;
CREATE TRIGGER assessment_evidence_frozen_delete BEFORE DELETE ON assessment_evidence
WHEN EXISTS (SELECT 1 FROM assessments a WHERE a.org_id = OLD.org_id AND a.assessment_id = OLD.assessment_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'assessment is approved and immutable');
END;

-- Samples are a record of a draw: append-only.
CREATE TRIGGER assessment_samples_no_update BEFORE UPDATE ON assessment_samples
BEGIN
    SELECT RAISE(ABORT, 'samples are append-only');
END;
CREATE TRIGGER assessment_samples_no_delete BEFORE DELETE ON assessment_samples
BEGIN
    SELECT RAISE(ABORT, 'samples are append-only');
END;
CREATE TRIGGER assessment_sample_items_no_update BEFORE UPDATE ON assessment_sample_items
BEGIN
    SELECT RAISE(ABORT, 'samples are append-only');
END;
CREATE TRIGGER assessment_sample_items_no_delete BEFORE DELETE ON assessment_sample_items
BEGIN
    SELECT RAISE(ABORT, 'samples are append-only');
END;

-- Evidence attached to an approved assessment is never removed, and what
-- it says never changes. A sync may still move its interval forward (see
-- `evidence_attested_update`): extend its last observation, or close it
-- at or after that; a later, different state is a new row, which the
-- assessment shows as changed after approval.
CREATE TRIGGER evidence_attested_no_delete BEFORE DELETE ON evidence
WHEN EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
             WHERE ae.org_id = OLD.org_id AND ae.evidence_id = OLD.evidence_id AND a.state = 'approved')
BEGIN
    SELECT RAISE(ABORT, 'evidence is attached to an approved assessment and immutable');
END;
CREATE TRIGGER evidence_attested_update BEFORE UPDATE ON evidence
WHEN EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
             WHERE ae.org_id = OLD.org_id AND ae.evidence_id = OLD.evidence_id AND a.state = 'approved')
 AND NOT (
        NEW.org_id IS OLD.org_id AND NEW.evidence_id IS OLD.evidence_id AND NEW.connection_id IS OLD.connection_id
    AND NEW.subscription_id IS OLD.subscription_id AND NEW.collector IS OLD.collector AND NEW.check_id IS OLD.check_id
    AND NEW.subject IS OLD.subject AND NEW.subject_key IS OLD.subject_key AND NEW.facts IS OLD.facts
    AND NEW.result IS OLD.result AND NEW.reason IS OLD.reason AND NEW.fingerprint IS OLD.fingerprint
    AND NEW.run_id IS OLD.run_id AND NEW.observed_at IS OLD.observed_at AND NEW.recorded_at IS OLD.recorded_at
    AND ((OLD.valid_to IS NULL AND NEW.last_observed_at >= OLD.last_observed_at
          AND (NEW.valid_to IS NULL OR NEW.valid_to >= NEW.last_observed_at))
      OR (OLD.valid_to IS NOT NULL AND NEW.valid_to IS OLD.valid_to
          AND NEW.last_observed_at IS OLD.last_observed_at AND NEW.last_run_id IS OLD.last_run_id))
 )
BEGIN
    SELECT RAISE(ABORT, 'evidence is attached to an approved assessment and immutable');
END;
