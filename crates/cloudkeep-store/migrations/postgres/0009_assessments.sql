-- Assessments: a fixed audit period of evidence for chosen controls.
-- Approval makes an assessment, its scope and every evidence row attached
-- to it immutable, and the triggers below enforce it in the store itself,
-- whatever the caller. Also: Type II samples, auditors' invitations to one
-- assessment, an auditor's grant to the data, the retention window.

CREATE TABLE assessments (
    org_id         TEXT    NOT NULL REFERENCES organisations (org_id),
    assessment_id  TEXT    NOT NULL,
    name           TEXT    NOT NULL,
    period_start   BIGINT  NOT NULL,
    period_end     BIGINT  NOT NULL,
    state          TEXT    NOT NULL,
    created_at     BIGINT  NOT NULL,
    created_by     TEXT    NOT NULL,
    approved_at    BIGINT,
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
    attached_at    BIGINT  NOT NULL,
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
    size             BIGINT  NOT NULL,
    population       BIGINT  NOT NULL,
    population_hash  TEXT    NOT NULL,
    drawn_at         BIGINT  NOT NULL,
    drawn_by         TEXT    NOT NULL,
    PRIMARY KEY (org_id, sample_id)
);
CREATE INDEX assessment_samples_assessment ON assessment_samples (org_id, assessment_id, drawn_at);
CREATE TABLE assessment_sample_items (
    org_id       TEXT    NOT NULL REFERENCES organisations (org_id),
    sample_id    TEXT    NOT NULL,
    position     BIGINT  NOT NULL,
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
    created_at     BIGINT  NOT NULL,
    created_by     TEXT    NOT NULL,
    expires_at     BIGINT  NOT NULL,
    revoked_at     BIGINT,
    revoked_by     TEXT,
    PRIMARY KEY (org_id, invitation_id)
);
CREATE UNIQUE INDEX assessment_invitations_hash ON assessment_invitations (org_id, token_hash);
CREATE INDEX assessment_invitations_assessment ON assessment_invitations (org_id, assessment_id, created_at);

-- The organisation's retention window (none: the default, 400 days).
CREATE TABLE retention_settings (
    org_id          TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    retention_days  BIGINT  NOT NULL,
    updated_at      BIGINT  NOT NULL,
    updated_by      TEXT    NOT NULL
);

-- When the scheduler last looked for anything past the window (once a day).
CREATE TABLE retention_checks (
    org_id      TEXT    NOT NULL PRIMARY KEY REFERENCES organisations (org_id),
    checked_at  BIGINT NOT NULL
);

-- An owner's grant to an auditor: spend, inventory and tags too.
ALTER TABLE users ADD COLUMN data_access BIGINT NOT NULL DEFAULT 0;

-- Immutability. An approved assessment is never changed or removed.
CREATE FUNCTION assessments_approved_immutable() RETURNS trigger AS $$
BEGIN
    IF OLD.state = 'approved' THEN
        RAISE EXCEPTION 'assessment is approved and immutable';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER assessments_approved_no_change BEFORE UPDATE OR DELETE ON assessments
    FOR EACH ROW EXECUTE FUNCTION assessments_approved_immutable();

-- Its scope and attachments neither.
CREATE FUNCTION assessment_parts_frozen() RETURNS trigger AS $$
DECLARE
    o TEXT;
    a TEXT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        o := NEW.org_id; a := NEW.assessment_id;
    ELSE
        o := OLD.org_id; a := OLD.assessment_id;
    END IF;
    IF EXISTS (SELECT 1 FROM assessments x WHERE x.org_id = o AND x.assessment_id = a AND x.state = 'approved') THEN
        RAISE EXCEPTION 'assessment is approved and immutable';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER assessment_checks_frozen BEFORE INSERT OR UPDATE OR DELETE ON assessment_checks
    FOR EACH ROW EXECUTE FUNCTION assessment_parts_frozen();
CREATE TRIGGER assessment_controls_frozen BEFORE INSERT OR UPDATE OR DELETE ON assessment_controls
    FOR EACH ROW EXECUTE FUNCTION assessment_parts_frozen();
CREATE TRIGGER assessment_evidence_frozen BEFORE INSERT OR UPDATE OR DELETE ON assessment_evidence
    FOR EACH ROW EXECUTE FUNCTION assessment_parts_frozen();

-- Samples are a record of a draw: append-only.
CREATE FUNCTION assessment_samples_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'samples are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER assessment_samples_no_change BEFORE UPDATE OR DELETE ON assessment_samples
    FOR EACH ROW EXECUTE FUNCTION assessment_samples_append_only();
CREATE TRIGGER assessment_sample_items_no_change BEFORE UPDATE OR DELETE ON assessment_sample_items
    FOR EACH ROW EXECUTE FUNCTION assessment_samples_append_only();

-- Evidence attached to an approved assessment is never removed, and what
-- it says never changes. A sync may still move its interval forward:
-- extend its last observation, or close it at or after that; a later,
-- different state is a new row, which the assessment shows as changed
-- after approval.
CREATE FUNCTION evidence_attested_immutable() RETURNS trigger AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM assessment_evidence ae JOIN assessments a ON a.org_id = ae.org_id AND a.assessment_id = ae.assessment_id
                   WHERE ae.org_id = OLD.org_id AND ae.evidence_id = OLD.evidence_id AND a.state = 'approved') THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'evidence is attached to an approved assessment and immutable';
    END IF;
    IF (NEW.org_id, NEW.evidence_id, NEW.connection_id, NEW.subscription_id, NEW.collector, NEW.check_id,
        NEW.subject, NEW.subject_key, NEW.facts, NEW.result, NEW.reason, NEW.fingerprint, NEW.run_id,
        NEW.observed_at, NEW.recorded_at)
       IS DISTINCT FROM
       (OLD.org_id, OLD.evidence_id, OLD.connection_id, OLD.subscription_id, OLD.collector, OLD.check_id,
        OLD.subject, OLD.subject_key, OLD.facts, OLD.result, OLD.reason, OLD.fingerprint, OLD.run_id,
        OLD.observed_at, OLD.recorded_at)
    THEN
        RAISE EXCEPTION 'evidence is attached to an approved assessment and immutable';
    END IF;
    IF OLD.valid_to IS NULL THEN
        IF NEW.last_observed_at < OLD.last_observed_at
           OR (NEW.valid_to IS NOT NULL AND NEW.valid_to < NEW.last_observed_at) THEN
            RAISE EXCEPTION 'evidence is attached to an approved assessment and immutable';
        END IF;
    ELSIF (NEW.valid_to, NEW.last_observed_at, NEW.last_run_id) IS DISTINCT FROM (OLD.valid_to, OLD.last_observed_at, OLD.last_run_id) THEN
        RAISE EXCEPTION 'evidence is attached to an approved assessment and immutable';
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER evidence_attested BEFORE UPDATE OR DELETE ON evidence
    FOR EACH ROW EXECUTE FUNCTION evidence_attested_immutable();
