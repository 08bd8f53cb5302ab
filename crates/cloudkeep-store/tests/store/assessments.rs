//! Assessment stories: approval freezes an assessment and its evidence in
//! the store itself (raw SQL is refused on both backends), later evidence
//! is flagged rather than edited in, samples redraw from their seed,
//! invitations expire and revoke, and the retention purge keeps what was
//! attested.

use chrono::Duration;
use cloudkeep_domain::assessment::{
    AssessmentDefinition, AssessmentState, InvitationState, draw_sample,
};
use cloudkeep_domain::evidence::{CheckId, ControlId, EvidenceResult, EvidenceSource};
use cloudkeep_domain::report::RunReport;
use cloudkeep_domain::{Clock, ManualClock, RunStatus, SyncTrigger};
use cloudkeep_store::{
    Attach, EvidenceFilter, Observation, OrgScope, PageRequest, Store, StoreError,
    SubscriptionRecord,
};
use cloudkeep_testkit::{TestStore, both_backends};
use serde_json::json;
use uuid::Uuid;

use super::evidence::https;
use super::{
    connect_subscriptions, events_of, keyfile, new_sub, on_manual_clock, org, raw_exec, try_exec,
    unique,
};

fn account(n: usize) -> String {
    format!(
        "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/a{n}"
    )
}

/// `storage.shared_key_access` (CC6.1 only) of an account.
fn shared_key(subject: &str) -> Observation {
    Observation {
        check: CheckId::StorageSharedKeyAccess,
        subject: subject.into(),
        facts: json!({"field": "allowSharedKeyAccess", "value": false, "absent": false}),
        result: EvidenceResult::Pass,
        reason: None,
    }
}

async fn observe(
    store: &Store,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
    clock: &ManualClock,
    observations: &[Observation],
) {
    store
        .record_evidence(
            scope,
            sub,
            Uuid::new_v4(),
            clock.now(),
            EvidenceSource::Storage,
            observations,
        )
        .await
        .expect("record");
}

async fn evidence_of(
    store: &Store,
    scope: &OrgScope,
    check: CheckId,
    subject: &str,
) -> Vec<cloudkeep_store::EvidenceRecord> {
    store
        .evidence(
            scope,
            &EvidenceFilter {
                checks: Some(vec![check]),
                subject: Some(subject.into()),
                ..Default::default()
            },
            &PageRequest::first(100),
        )
        .await
        .expect("evidence")
        .items
}

struct Setup {
    scope: OrgScope,
    sub: SubscriptionRecord,
    _keys: (tempfile::TempDir, cloudkeep_domain::crypto::LocalKeyFile),
}

async fn setup(store: &Store, name: &str) -> Setup {
    let (scope, _) = org(store, &unique(name)).await;
    let keys = keyfile();
    let conn = connect_subscriptions(store, &scope, &keys.1, "s", vec![new_sub("sub-1")]).await;
    Setup {
        scope,
        sub: conn.subscriptions[0].clone(),
        _keys: keys,
    }
}

fn definition(clock: &ManualClock, controls: &[ControlId]) -> AssessmentDefinition {
    AssessmentDefinition::new(
        "SOC 2 Type II",
        clock.now() - Duration::hours(1),
        clock.now() + Duration::days(2),
        controls,
    )
    .expect("definition")
}

fn is_state(e: &StoreError) -> bool {
    matches!(e, StoreError::State(_))
}

async fn approval_freezes_the_assessment_and_its_evidence(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "freeze").await;
    let scope = &s.scope;
    observe(
        store,
        scope,
        &s.sub,
        &clock,
        &[
            https(&account(1), true),
            https(&account(2), false),
            shared_key(&account(1)),
        ],
    )
    .await;
    let a = store
        .create_assessment(scope, &definition(&clock, &[ControlId::Cc66]), "user:test")
        .await
        .expect("create");
    assert_eq!(a.state, AssessmentState::Draft);
    assert!(a.checks().contains(&CheckId::StorageHttpsOnly));
    assert!(!a.checks().contains(&CheckId::StorageSharedKeyAccess));

    // Everything in scope: the two https rows, not the CC6.1-only one.
    let added = store
        .attach_evidence(scope, a.id, &Attach::InScope, "user:test")
        .await
        .expect("attach");
    assert_eq!(added, 2);
    assert_eq!(
        store
            .attach_evidence(scope, a.id, &Attach::InScope, "user:test")
            .await
            .expect("again"),
        0,
        "attaching twice adds nothing"
    );
    let one = evidence_of(store, scope, CheckId::StorageHttpsOnly, &account(1)).await[0].clone();
    let two = evidence_of(store, scope, CheckId::StorageHttpsOnly, &account(2)).await[0].clone();
    let out_of_scope =
        evidence_of(store, scope, CheckId::StorageSharedKeyAccess, &account(1)).await[0].clone();
    let refused = store
        .attach_evidence(
            scope,
            a.id,
            &Attach::Rows(vec![out_of_scope.id]),
            "user:test",
        )
        .await
        .expect_err("not in scope");
    assert!(
        refused.to_string().contains("no control in scope"),
        "{refused}"
    );
    assert_eq!(
        store
            .detach_evidence(scope, a.id, Some(&[one.id]), "user:test")
            .await
            .expect("detach"),
        1
    );
    assert_eq!(
        store
            .attach_evidence(scope, a.id, &Attach::Rows(vec![one.id]), "user:test")
            .await
            .expect("attach a row"),
        1
    );

    let approved = store
        .approve_assessment(scope, a.id, "user:auditor")
        .await
        .expect("approve");
    assert_eq!(approved.state, AssessmentState::Approved);
    assert_eq!(approved.evidence, 2);
    assert!(is_state(
        &store
            .approve_assessment(scope, a.id, "user:auditor")
            .await
            .expect_err("twice")
    ));
    for e in [
        store
            .attach_evidence(scope, a.id, &Attach::InScope, "user:test")
            .await
            .expect_err("attach after approval"),
        store
            .detach_evidence(scope, a.id, None, "user:test")
            .await
            .expect_err("detach after approval"),
    ] {
        assert!(is_state(&e), "{e}");
        assert!(e.to_string().contains("immutable"), "{e}");
    }

    // The store refuses whoever asks: raw SQL on the tables themselves.
    let (org_id, id) = (scope.org().to_string(), a.id.to_string());
    let (e1, e2) = (one.id.to_string(), two.id.to_string());
    for sql in [
        format!(
            "UPDATE assessments SET name = 'edited' WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!(
            "UPDATE assessments SET state = 'draft' WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!("DELETE FROM assessments WHERE org_id = '{org_id}' AND assessment_id = '{id}'"),
        format!(
            "DELETE FROM assessment_evidence WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!(
            "UPDATE assessment_evidence SET fingerprint = 'x' WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!(
            "INSERT INTO assessment_evidence (org_id, assessment_id, evidence_id, fingerprint, attached_at, attached_by) \
             VALUES ('{org_id}', '{id}', '{}', 'f', 0, 'x')",
            out_of_scope.id
        ),
        format!(
            "DELETE FROM assessment_checks WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!(
            "DELETE FROM assessment_controls WHERE org_id = '{org_id}' AND assessment_id = '{id}'"
        ),
        format!(
            "UPDATE evidence SET result = 'pass' WHERE org_id = '{org_id}' AND evidence_id = '{e2}'"
        ),
        format!(
            "UPDATE evidence SET facts = '{{}}' WHERE org_id = '{org_id}' AND evidence_id = '{e1}'"
        ),
        format!(
            "UPDATE evidence SET observed_at = observed_at - 1 WHERE org_id = '{org_id}' AND evidence_id = '{e1}'"
        ),
        format!(
            "UPDATE evidence SET last_observed_at = last_observed_at - 1 WHERE org_id = '{org_id}' AND evidence_id = '{e1}'"
        ),
        format!("DELETE FROM evidence WHERE org_id = '{org_id}' AND evidence_id = '{e2}'"),
    ] {
        let e = try_exec(&b.url, &sql)
            .await
            .expect_err(&format!("refused: {sql}"));
        assert!(e.to_string().contains("immutable"), "{sql}: {e}");
    }
    // Evidence of no approved assessment is not frozen.
    raw_exec(
        &b.url,
        &format!(
            "UPDATE evidence SET reason = 'checked' WHERE org_id = '{org_id}' AND evidence_id = '{}'",
            out_of_scope.id
        ),
    )
    .await;

    // Later syncs: the same state extends the row that continues the
    // attested one; a different one is new evidence, flagged on the
    // assessment, the attested row unchanged.
    assert!(
        store
            .changes_after_approval(scope, a.id)
            .await
            .expect("changes")
            .is_empty()
    );
    clock.advance(Duration::days(3));
    observe(
        store,
        scope,
        &s.sub,
        &clock,
        &[https(&account(1), true), https(&account(2), false)],
    )
    .await;
    assert!(
        store
            .changes_after_approval(scope, a.id)
            .await
            .expect("changes")
            .is_empty()
    );
    clock.advance(Duration::days(1));
    observe(
        store,
        scope,
        &s.sub,
        &clock,
        &[https(&account(1), true), https(&account(2), true)],
    )
    .await;
    let changes = store
        .changes_after_approval(scope, a.id)
        .await
        .expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].attested, two.id);
    assert_eq!(changes[0].later.result, EvidenceResult::Pass);
    let history = evidence_of(store, scope, CheckId::StorageHttpsOnly, &account(2)).await;
    let attested = history.iter().find(|e| e.id == two.id).expect("kept");
    assert_eq!(attested.result, EvidenceResult::Fail);
    assert_eq!(attested.fingerprint, two.fingerprint);
    assert_eq!(
        attested.valid_to, approved.approved_at,
        "closed at the approval"
    );

    for action in [
        "assessment.created",
        "assessment.evidence_attached",
        "assessment.evidence_detached",
        "assessment.approved",
    ] {
        assert!(
            !events_of(store, scope, action).await.is_empty(),
            "{action}"
        );
    }
    let approved_event = &events_of(store, scope, "assessment.approved").await[0];
    assert_eq!(approved_event.details["evidence"], 2);
    assert!(store.verify_audit(scope).await.expect("verify").is_ok());
}
both_backends!(approval_freezes_the_assessment_and_its_evidence);

/// Every column of an evidence row as stored, as one string.
async fn stored_row(url: &str, org_id: &str, id: Uuid) -> String {
    use sqlx::Connection;
    let sql = format!(
        "SELECT org_id || '|' || evidence_id || '|' || connection_id || '|' || subscription_id || '|' || collector \
         || '|' || check_id || '|' || subject || '|' || subject_key || '|' || facts || '|' || result || '|' \
         || COALESCE(reason, '<null>') || '|' || fingerprint || '|' || run_id || '|' || last_run_id || '|' \
         || CAST(observed_at AS TEXT) || '|' || CAST(last_observed_at AS TEXT) || '|' \
         || COALESCE(CAST(valid_to AS TEXT), '<null>') || '|' || CAST(recorded_at AS TEXT) AS whole \
         FROM evidence WHERE org_id = '{org_id}' AND evidence_id = '{id}'"
    );
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(&sql)
            .fetch_one(&mut c)
            .await
            .expect("row")
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.expect("connect");
        sqlx::query_scalar(&sql)
            .fetch_one(&mut c)
            .await
            .expect("row")
    }
}

/// A time as the store keeps it (milliseconds).
fn ms(t: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis()).expect("time")
}

/// Asserts that each row is stored as it was.
async fn unchanged(url: &str, org_id: &str, rows: &[(Uuid, String)]) {
    for (id, row) in rows {
        assert_eq!(&stored_row(url, org_id, *id).await, row, "attested {id}");
    }
}

/// A subject's intervals under a check, oldest first, checked to follow
/// one another with no gap and no overlap, the last one current.
async fn history_of(
    store: &Store,
    scope: &OrgScope,
    check: CheckId,
    subject: &str,
) -> Vec<cloudkeep_store::EvidenceRecord> {
    let mut rows = evidence_of(store, scope, check, subject).await;
    rows.sort_by_key(|e| (e.observed_at, e.id));
    for pair in rows.windows(2) {
        assert_eq!(
            pair[0].valid_to,
            Some(pair[1].observed_at),
            "no gap, no overlap: {pair:?}"
        );
    }
    for e in &rows[..rows.len() - 1] {
        assert!(e.valid_to.is_some(), "only the last is current: {rows:?}");
    }
    rows
}

async fn approval_closes_attested_intervals_and_syncs_continue_new_ones(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "attest").await;
    let scope = &s.scope;
    let org_id = scope.org().to_string();
    let both = |one: bool, two: bool| [https(&account(1), one), https(&account(2), two)];
    observe(store, scope, &s.sub, &clock, &both(true, false)).await;
    clock.advance(Duration::minutes(30));
    observe(store, scope, &s.sub, &clock, &both(true, false)).await;
    let seen_at = ms(clock.now());
    let a = store
        .create_assessment(scope, &definition(&clock, &[ControlId::Cc66]), "user:test")
        .await
        .expect("create");
    assert_eq!(
        store
            .attach_evidence(scope, a.id, &Attach::InScope, "user:test")
            .await
            .expect("attach"),
        2
    );
    let before: Vec<_> = store
        .all_assessment_evidence(scope, a.id)
        .await
        .expect("attached")
        .into_iter()
        .map(|x| x.evidence)
        .collect();
    assert!(before.iter().all(|e| e.valid_to.is_none()), "current");

    // Approval closes each attested row at its instant and continues the
    // state in a new row from there: same state, last observation kept.
    clock.advance(Duration::minutes(10));
    let approved = store
        .approve_assessment(scope, a.id, "user:auditor")
        .await
        .expect("approve");
    let at = approved.approved_at.expect("approved at");
    assert_eq!(at, ms(clock.now()));
    let event = &events_of(store, scope, "assessment.approved").await[0];
    assert_eq!(event.details["continued"], 2);
    let exported: Vec<_> = store
        .all_assessment_evidence(scope, a.id)
        .await
        .expect("attached");
    let mut attested = Vec::new();
    for (was, now) in before.iter().zip(&exported) {
        let now = &now.evidence;
        assert_eq!(now.id, was.id);
        assert_eq!(now.valid_to, Some(at), "closed at the approval");
        assert_eq!(
            cloudkeep_store::EvidenceRecord {
                valid_to: None,
                ..now.clone()
            },
            *was,
            "nothing else changed"
        );
        let history = history_of(store, scope, CheckId::StorageHttpsOnly, &now.subject).await;
        assert_eq!(history.len(), 2);
        let next = &history[1];
        assert_ne!(next.id, now.id);
        assert_eq!(next.observed_at, at);
        assert_eq!(next.valid_to, None);
        assert_eq!(
            (&next.fingerprint, &next.facts, next.result, &next.reason),
            (&now.fingerprint, &now.facts, now.result, &now.reason)
        );
        assert_eq!(next.last_observed_at, seen_at, "no observation invented");
        assert_eq!(
            (next.run_id, next.last_run_id),
            (now.last_run_id, now.last_run_id)
        );
        attested.push((now.id, stored_row(&b.url, &org_id, now.id).await));
    }

    // The same state again: the new row is extended, not the attested one.
    clock.advance(Duration::days(1));
    observe(store, scope, &s.sub, &clock, &both(true, false)).await;
    unchanged(&b.url, &org_id, &attested).await;
    for n in [1, 2] {
        let history = history_of(store, scope, CheckId::StorageHttpsOnly, &account(n)).await;
        assert_eq!(history.len(), 2);
        assert_eq!(history[1].last_observed_at, ms(clock.now()), "extended");
    }
    assert!(
        store
            .changes_after_approval(scope, a.id)
            .await
            .expect("changes")
            .is_empty()
    );

    // A changed state: the new row closes and a third opens, flagged as a
    // change after approval; account 1 no longer seen: its new row closes.
    clock.advance(Duration::days(1));
    observe(store, scope, &s.sub, &clock, &[https(&account(2), true)]).await;
    unchanged(&b.url, &org_id, &attested).await;
    let two = history_of(store, scope, CheckId::StorageHttpsOnly, &account(2)).await;
    assert_eq!(two.len(), 3);
    assert_eq!(two[1].valid_to, Some(ms(clock.now())));
    assert_eq!(two[2].result, EvidenceResult::Pass);
    let one = history_of(store, scope, CheckId::StorageHttpsOnly, &account(1)).await;
    assert_eq!(one.len(), 2);
    assert_eq!(one[1].valid_to, Some(ms(clock.now())));
    let changes = store
        .changes_after_approval(scope, a.id)
        .await
        .expect("changes");
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].attested, two[0].id);
    assert_eq!(changes[0].later.id, two[2].id);

    // Back again: a fourth row; still nothing attested moves.
    clock.advance(Duration::days(1));
    observe(store, scope, &s.sub, &clock, &both(true, false)).await;
    unchanged(&b.url, &org_id, &attested).await;
    assert_eq!(
        history_of(store, scope, CheckId::StorageHttpsOnly, &account(2))
            .await
            .len(),
        4
    );
    // Account 1 seen again after a sync without it: a new row after that
    // gap (the one gap there is: while it was not seen).
    let one = evidence_of(store, scope, CheckId::StorageHttpsOnly, &account(1)).await;
    assert_eq!(one.len(), 3);
    assert_eq!(one[0].observed_at, ms(clock.now()));
    assert_eq!(one[0].valid_to, None);

    // The store refuses every change to an attested row, whoever asks,
    // even one that would only move its interval or change nothing.
    for (id, _) in &attested {
        for sql in [
            format!(
                "UPDATE evidence SET last_observed_at = last_observed_at + 1 WHERE org_id = '{org_id}' AND evidence_id = '{id}'"
            ),
            format!(
                "UPDATE evidence SET valid_to = valid_to + 1 WHERE org_id = '{org_id}' AND evidence_id = '{id}'"
            ),
            format!(
                "UPDATE evidence SET valid_to = NULL WHERE org_id = '{org_id}' AND evidence_id = '{id}'"
            ),
            format!(
                "UPDATE evidence SET last_run_id = last_run_id WHERE org_id = '{org_id}' AND evidence_id = '{id}'"
            ),
            format!("DELETE FROM evidence WHERE org_id = '{org_id}' AND evidence_id = '{id}'"),
        ] {
            let e = try_exec(&b.url, &sql)
                .await
                .expect_err(&format!("refused: {sql}"));
            assert!(e.to_string().contains("immutable"), "{sql}: {e}");
        }
    }
    unchanged(&b.url, &org_id, &attested).await;

    // The assessment still lists, and exports, what was approved.
    let after = store
        .all_assessment_evidence(scope, a.id)
        .await
        .expect("attached");
    assert_eq!(after, exported);
    assert!(store.verify_audit(scope).await.expect("verify").is_ok());
}
both_backends!(approval_closes_attested_intervals_and_syncs_continue_new_ones);

async fn an_assessment_outside_its_period_or_organisation_attaches_nothing(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "period").await;
    let (other, _) = org(store, &unique("other")).await;
    observe(store, &s.scope, &s.sub, &clock, &[https(&account(1), true)]).await;
    let row = evidence_of(store, &s.scope, CheckId::StorageHttpsOnly, &account(1)).await[0].clone();
    // A period that ended before the evidence was first observed.
    let past = AssessmentDefinition::new(
        "last year",
        clock.now() - Duration::days(400),
        clock.now() - Duration::days(35),
        &[ControlId::Cc66],
    )
    .expect("definition");
    let a = store
        .create_assessment(&s.scope, &past, "user:test")
        .await
        .expect("create");
    assert_eq!(
        store
            .attach_evidence(&s.scope, a.id, &Attach::InScope, "user:test")
            .await
            .expect("attach"),
        0
    );
    let e = store
        .attach_evidence(&s.scope, a.id, &Attach::Rows(vec![row.id]), "user:test")
        .await
        .expect_err("outside the period");
    assert!(e.to_string().contains("period"), "{e}");
    let e = store
        .approve_assessment(&s.scope, a.id, "user:test")
        .await
        .expect_err("nothing attached");
    assert!(e.to_string().contains("no evidence"), "{e}");
    // Another organisation sees no such assessment.
    assert!(matches!(
        store.assessment(&other, a.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let mine = definition(&clock, &[ControlId::Cc66]);
    let theirs = store
        .create_assessment(&other, &mine, "user:other")
        .await
        .expect("create");
    let e = store
        .attach_evidence(&other, theirs.id, &Attach::Rows(vec![row.id]), "user:other")
        .await
        .expect_err("another organisation's row");
    assert!(e.to_string().contains("does not exist"), "{e}");
}
both_backends!(an_assessment_outside_its_period_or_organisation_attaches_nothing);

async fn samples_redraw_from_their_seed(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "sample").await;
    let observations: Vec<Observation> = (0..20).map(|n| https(&account(n), n % 3 == 0)).collect();
    observe(store, &s.scope, &s.sub, &clock, &observations).await;
    let a = store
        .create_assessment(
            &s.scope,
            &definition(&clock, &[ControlId::Cc61, ControlId::Cc66]),
            "user:test",
        )
        .await
        .expect("create");
    store
        .attach_evidence(&s.scope, a.id, &Attach::InScope, "user:test")
        .await
        .expect("attach");
    let population = store
        .population(&s.scope, a.id, ControlId::Cc66)
        .await
        .expect("population");
    assert_eq!(population.len(), 20);
    assert!(
        store
            .population(&s.scope, a.id, ControlId::Cc61)
            .await
            .expect("population")
            .is_empty(),
        "https_only is not a CC6.1 check"
    );
    let e = store
        .population(&s.scope, a.id, ControlId::Cc71)
        .await
        .expect_err("not in scope");
    assert!(
        e.to_string().contains("not in the assessment's scope"),
        "{e}"
    );

    let drawn = store
        .draw_sample(&s.scope, a.id, ControlId::Cc66, 5, Some(7), "user:auditor")
        .await
        .expect("draw");
    assert_eq!((drawn.size, drawn.population, drawn.seed), (5, 20, 7));
    assert_eq!(drawn.items, draw_sample(&population, 5, 7), "redo the draw");
    let again = store
        .draw_sample(&s.scope, a.id, ControlId::Cc66, 5, Some(7), "user:auditor")
        .await
        .expect("draw again");
    assert_eq!(again.items, drawn.items);
    assert_eq!(again.population_hash, drawn.population_hash);
    let random = store
        .draw_sample(&s.scope, a.id, ControlId::Cc66, 50, None, "user:auditor")
        .await
        .expect("draw all");
    assert_eq!(random.size, 20, "a sample is at most its population");
    let stored = store.samples(&s.scope, a.id).await.expect("samples");
    assert_eq!(stored.len(), 3);
    assert_eq!(stored[0], drawn);
    assert_eq!(
        draw_sample(&population, 50, stored[2].seed),
        stored[2].items,
        "a random seed is stored too"
    );
    let e = try_exec(
        &b.url,
        &format!(
            "UPDATE assessment_samples SET seed = '8' WHERE org_id = '{}'",
            s.scope.org()
        ),
    )
    .await
    .expect_err("append-only");
    assert!(e.to_string().contains("append-only"), "{e}");
    assert_eq!(
        events_of(store, &s.scope, "assessment.sample_drawn")
            .await
            .len(),
        3
    );
}
both_backends!(samples_redraw_from_their_seed);

async fn invitations_expire_and_revoke(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "invite").await;
    let a = store
        .create_assessment(
            &s.scope,
            &definition(&clock, &[ControlId::Cc66]),
            "user:owner",
        )
        .await
        .expect("create");
    let (inv, secret) = store
        .invite_auditor(&s.scope, a.id, "Auditor@Example.com", 30, "user:owner")
        .await
        .expect("invite");
    assert_eq!(inv.email, "auditor@example.com");
    assert_eq!(inv.state, InvitationState::Active);
    let access = store
        .authenticate_invitation(&secret)
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(access.scope, s.scope);
    assert_eq!(access.invitation.assessment_id, a.id);
    assert_eq!(access.invitation.state, InvitationState::Active);
    // An API token's lookup does not know it.
    assert!(
        store
            .authenticate_token(&secret)
            .await
            .expect("auth")
            .is_none()
    );

    clock.advance(Duration::days(30));
    let access = store
        .authenticate_invitation(&secret)
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(access.invitation.state, InvitationState::Expired);
    let e = store
        .revoke_invitation(&s.scope, a.id, inv.id, "user:owner")
        .await
        .expect_err("expired");
    assert!(e.to_string().contains("expired"), "{e}");

    let (second, secret2) = store
        .invite_auditor(&s.scope, a.id, "b@example.com", 5, "user:owner")
        .await
        .expect("invite");
    let revoked = store
        .revoke_invitation(&s.scope, a.id, second.id, "user:owner")
        .await
        .expect("revoke");
    assert_eq!(revoked.state, InvitationState::Revoked);
    let access = store
        .authenticate_invitation(&secret2)
        .await
        .expect("auth")
        .expect("found");
    assert_eq!(access.invitation.state, InvitationState::Revoked);
    assert!(
        store
            .invite_auditor(&s.scope, a.id, "c@example.com", 0, "user:owner")
            .await
            .is_err()
    );
    assert_eq!(
        store.invitations(&s.scope, a.id).await.expect("list").len(),
        2
    );
    assert_eq!(
        events_of(store, &s.scope, "assessment.invitation_created")
            .await
            .len(),
        2
    );
    assert_eq!(
        events_of(store, &s.scope, "assessment.invitation_revoked")
            .await
            .len(),
        1
    );
}
both_backends!(invitations_expire_and_revoke);

async fn retention_purges_past_the_window_but_keeps_approved_evidence(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let s = setup(store, "retention").await;
    let scope = &s.scope;
    assert_eq!(
        store
            .retention_settings(scope)
            .await
            .expect("settings")
            .days,
        400
    );
    assert!(
        store
            .set_retention_days(scope, 5, "user:owner")
            .await
            .is_err()
    );
    observe(
        store,
        scope,
        &s.sub,
        &clock,
        &(0..4).map(|n| https(&account(n), true)).collect::<Vec<_>>(),
    )
    .await;
    let run = store
        .begin_sync_run(
            scope,
            s.sub.connection_id,
            SyncTrigger::Manual,
            clock.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    store
        .finish_sync_run(
            scope,
            &run,
            RunStatus::Succeeded,
            &RunReport::default(),
            "system:test",
        )
        .await
        .expect("finish");
    let a = store
        .create_assessment(scope, &definition(&clock, &[ControlId::Cc66]), "user:owner")
        .await
        .expect("create");
    let kept = evidence_of(store, scope, CheckId::StorageHttpsOnly, &account(0)).await[0].clone();
    store
        .attach_evidence(scope, a.id, &Attach::Rows(vec![kept.id]), "user:owner")
        .await
        .expect("attach");
    store
        .approve_assessment(scope, a.id, "user:owner")
        .await
        .expect("approve");
    // A draft's attachment does not keep its row.
    let draft = store
        .create_assessment(scope, &definition(&clock, &[ControlId::Cc66]), "user:owner")
        .await
        .expect("draft");
    store
        .attach_evidence(scope, draft.id, &Attach::InScope, "user:owner")
        .await
        .expect("attach");
    // The connection is revoked: its evidence stays readable in the window.
    store
        .revoke_connection(scope, s.sub.connection_id, "user:owner")
        .await
        .expect("revoke");
    let of_connection = EvidenceFilter {
        connection: Some(s.sub.connection_id),
        ..Default::default()
    };
    let count = |store: Store, scope: OrgScope| {
        let f = of_connection.clone();
        async move { store.evidence_count(&scope, &f).await.expect("count") }
    };
    clock.advance(Duration::days(399));
    assert_eq!(
        store
            .purge_retention_batch(scope, 100, "system:retention")
            .await
            .expect("purge"),
        Default::default(),
        "nothing is past the window yet"
    );
    // The four rows and the one that continues the approved row's state
    // from the approval (itself not attested).
    assert_eq!(count(store.clone(), scope.clone()).await, 5);

    assert!(
        !store
            .enqueue_retention(scope, clock.now())
            .await
            .expect("queue"),
        "nothing to purge: no job"
    );
    clock.advance(Duration::days(2));
    assert!(
        store
            .enqueue_retention(scope, clock.now())
            .await
            .expect("queue")
    );
    assert!(
        !store
            .enqueue_retention(scope, clock.now())
            .await
            .expect("queue"),
        "looked less than a day ago"
    );
    // Interrupted after its first batch...
    let first = store
        .purge_retention_batch(scope, 1, "system:retention")
        .await
        .expect("purge");
    assert_eq!((first.evidence, first.sync_runs), (1, 1));
    assert_eq!(count(store.clone(), scope.clone()).await, 4);
    // ...and resumed: the rest goes, the approved row stays.
    let mut total = first;
    loop {
        let batch = store
            .purge_retention_batch(scope, 1, "system:retention")
            .await
            .expect("purge");
        if batch.is_empty() {
            break;
        }
        total.add(batch);
    }
    assert_eq!((total.evidence, total.sync_runs), (4, 1));
    let left = store
        .evidence(scope, &of_connection, &PageRequest::first(10))
        .await
        .expect("evidence")
        .items;
    assert_eq!(left.iter().map(|e| e.id).collect::<Vec<_>>(), vec![kept.id]);
    assert_eq!(store.assessment(scope, a.id).await.expect("a").evidence, 1);
    assert_eq!(
        store
            .assessment(scope, draft.id)
            .await
            .expect("draft")
            .evidence,
        1
    );
    let purged = events_of(store, scope, "retention.purged").await;
    assert_eq!(purged.len(), 4);
    let sum: u64 = purged
        .iter()
        .map(|e| e.details["evidence"].as_u64().expect("count"))
        .sum();
    assert_eq!(sum, 4);
}
both_backends!(retention_purges_past_the_window_but_keeps_approved_evidence);
