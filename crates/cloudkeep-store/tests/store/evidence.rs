//! Evidence stories: fingerprinted intervals without gaps or overlaps,
//! coverage with staleness and the worst-state rule, the control mapping,
//! and alerts that fire once with every transition queued for webhooks.

use chrono::{DateTime, Duration, Utc};
use cloudkeep_domain::evidence::{
    AlertKind, AlertState, CheckId, ControlId, CoverageState, DeliveryState, EvidenceResult,
    EvidenceSource,
};
use cloudkeep_domain::{Clock, ManualClock};
use cloudkeep_store::{
    AlertFilter, EvidenceFilter, EvidenceRecord, NewAlert, Observation, OrgScope, PageRequest,
    Store, StoreError, SubscriptionRecord,
};
use cloudkeep_testkit::{TestStore, both_backends};
use serde_json::json;
use uuid::Uuid;

use super::{connect_subscriptions, events_of, keyfile, new_sub, on_manual_clock, org, unique};

const ACCOUNT: &str =
    "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/Logs";
const OTHER: &str =
    "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/other";

pub(crate) fn https(subject: &str, on: bool) -> Observation {
    Observation {
        check: CheckId::StorageHttpsOnly,
        subject: subject.into(),
        facts: json!({"field": "supportsHttpsTrafficOnly", "value": on, "absent": false}),
        result: if on {
            EvidenceResult::Pass
        } else {
            EvidenceResult::Fail
        },
        reason: (!on).then(|| "plain HTTP".into()),
    }
}

/// One sync's storage evidence of `sub`, observed now.
async fn observe(
    store: &Store,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
    clock: &ManualClock,
    observations: &[Observation],
) -> cloudkeep_store::EvidenceCounts {
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
        .expect("record")
}

async fn all(store: &Store, scope: &OrgScope, filter: &EvidenceFilter) -> Vec<EvidenceRecord> {
    store
        .evidence(scope, filter, &PageRequest::first(1000))
        .await
        .expect("evidence")
        .items
}

/// Millisecond precision, as stored.
fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

async fn evidence_keeps_intervals_without_gaps_or_overlaps(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, _) = org(store, &unique("intervals")).await;
    let (_dir, keys) = keyfile();
    let conn = connect_subscriptions(store, &scope, &keys, "s", vec![new_sub("sub-1")]).await;
    let sub = conn.subscriptions[0].clone();

    let t0 = clock.now();
    let first = observe(
        store,
        &scope,
        &sub,
        &clock,
        &[https(ACCOUNT, true), https(OTHER, false)],
    )
    .await;
    assert_eq!((first.observed, first.opened, first.changed), (2, 2, 0));
    clock.advance(Duration::hours(24));
    let t1 = clock.now();
    let same = observe(
        store,
        &scope,
        &sub,
        &clock,
        &[https(ACCOUNT, true), https(OTHER, false)],
    )
    .await;
    assert_eq!(
        (same.opened, same.changed, same.closed),
        (0, 0, 0),
        "an unchanged observation adds no row"
    );
    clock.advance(Duration::hours(24));
    let t2 = clock.now();
    // The subject's id comes back in another case: the same subject.
    let changed = observe(
        store,
        &scope,
        &sub,
        &clock,
        &[https(&ACCOUNT.to_uppercase(), false)],
    )
    .await;
    assert_eq!(
        (changed.opened, changed.changed, changed.closed),
        (1, 1, 1),
        "ACCOUNT changed; OTHER is gone"
    );
    clock.advance(Duration::hours(24));
    let t3 = clock.now();
    let back = observe(store, &scope, &sub, &clock, &[https(ACCOUNT, true)]).await;
    assert_eq!(
        (back.opened, back.changed),
        (1, 1),
        "a change back opens a new interval"
    );

    let history = all(
        store,
        &scope,
        &EvidenceFilter {
            subject: Some(ACCOUNT.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(history.len(), 3);
    let (item, intervals) = store
        .evidence_item(&scope, history[0].id)
        .await
        .expect("item");
    assert_eq!(item.valid_to, None, "newest first: the current interval");
    let starts: Vec<i64> = intervals.iter().map(|e| ms(e.observed_at)).collect();
    assert_eq!(starts, [ms(t0), ms(t2), ms(t3)]);
    for pair in intervals.windows(2) {
        assert_eq!(
            pair[0].valid_to.map(ms),
            Some(ms(pair[1].observed_at)),
            "each interval ends where the next begins"
        );
        assert_ne!(pair[0].fingerprint, pair[1].fingerprint);
    }
    assert_eq!(
        ms(intervals[0].last_observed_at),
        ms(t1),
        "extended, not repeated"
    );
    assert_eq!(
        intervals[0].fingerprint, intervals[2].fingerprint,
        "same facts, same fingerprint"
    );
    assert_eq!(
        intervals.iter().map(|e| e.result).collect::<Vec<_>>(),
        [
            EvidenceResult::Pass,
            EvidenceResult::Fail,
            EvidenceResult::Pass
        ]
    );
    let other = all(
        store,
        &scope,
        &EvidenceFilter {
            subject: Some(OTHER.into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].valid_to.map(ms),
        Some(ms(t2)),
        "gone: closed, none opened"
    );

    // Current rows, and what held during a period.
    let current = all(
        store,
        &scope,
        &EvidenceFilter {
            current_only: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(current.len(), 1);
    let early = all(
        store,
        &scope,
        &EvidenceFilter {
            since: Some(t0),
            until: Some(t1),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(early.len(), 2, "ACCOUNT's first interval and OTHER's");
    let failing = all(
        store,
        &scope,
        &EvidenceFilter {
            result: Some(EvidenceResult::Fail),
            checks: Some(vec![CheckId::StorageHttpsOnly]),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(failing.len(), 2);
    let none = all(
        store,
        &scope,
        &EvidenceFilter {
            checks: Some(vec![]),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());
}
both_backends!(evidence_keeps_intervals_without_gaps_or_overlaps);

async fn coverage_takes_the_worst_state_and_goes_stale(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, _) = org(store, &unique("coverage")).await;
    let (_dir, keys) = keyfile();
    let conn = connect_subscriptions(
        store,
        &scope,
        &keys,
        "s",
        vec![new_sub("sub-1"), new_sub("sub-2")],
    )
    .await;
    let (one, two) = (conn.subscriptions[0].clone(), conn.subscriptions[1].clone());
    let report = store.coverage(&scope).await.expect("coverage");
    let https = report.check(CheckId::StorageHttpsOnly).expect("check");
    assert_eq!(
        (https.state, https.tally.not_collected),
        (CoverageState::NotCollected, 2),
        "never collected: one not collected item per subscription"
    );
    observe(store, &scope, &one, &clock, &[self::https(ACCOUNT, true)]).await;
    observe(store, &scope, &two, &clock, &[self::https(OTHER, true)]).await;
    let report = store.coverage(&scope).await.expect("coverage");
    let https = report.check(CheckId::StorageHttpsOnly).expect("check");
    assert_eq!(https.state, CoverageState::Passing);
    assert_eq!(https.tally.evidence_coverage(), Some(1.0));
    // A failure anywhere: the check fails, and so do its controls.
    clock.advance(Duration::hours(1));
    observe(store, &scope, &two, &clock, &[self::https(OTHER, false)]).await;
    let report = store.coverage(&scope).await.expect("coverage");
    assert_eq!(
        report.check(CheckId::StorageHttpsOnly).map(|c| c.state),
        Some(CoverageState::Failing)
    );
    let (checks, cc66) = report.control(ControlId::Cc66).expect("CC6.6");
    assert!(checks.contains(&CheckId::StorageHttpsOnly));
    assert_eq!(cc66.state, CoverageState::Failing);
    assert_eq!(cc66.tally.pass_rate(), Some(0.5));
    // Past the stale threshold (48 hours) without a new observation.
    clock.advance(Duration::hours(49));
    let report = store.coverage(&scope).await.expect("coverage");
    let https = report.check(CheckId::StorageHttpsOnly).expect("check");
    assert_eq!(
        (https.state, https.tally.stale, https.tally.fresh()),
        (CoverageState::Stale, 2, 0)
    );
    assert_eq!(https.tally.evidence_coverage(), Some(0.0), "coverage drops");
    // Today's history keeps the day's last figures.
    store
        .record_control_history(&scope, &report)
        .await
        .expect("history");
    store
        .record_control_history(&scope, &report)
        .await
        .expect("again");
    assert!(
        store
            .control_history_written(&scope)
            .await
            .expect("written")
    );
    let days = store
        .control_history(&scope, ControlId::Cc66, clock.now().date_naive())
        .await
        .expect("history");
    assert_eq!(days.len(), 1);
    assert_eq!(days[0].tally, cc66_now(store, &scope).await);
}
both_backends!(coverage_takes_the_worst_state_and_goes_stale);

/// The coverage is kept per evidence revision: each write that changes
/// what it counts shows in the next read, after a read that kept it.
async fn coverage_follows_every_write_that_changes_it(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, _) = org(store, &unique("coverage-writes")).await;
    let (_dir, keys) = keyfile();
    let conn = connect_subscriptions(store, &scope, &keys, "s", vec![new_sub("sub-1")]).await;
    let one = conn.subscriptions[0].clone();
    let https = || async {
        let report = store.coverage(&scope).await.expect("coverage");
        let c = report.check(CheckId::StorageHttpsOnly).expect("check");
        (
            c.state,
            c.tally.passing,
            c.tally.stale,
            c.tally.not_collected,
        )
    };
    assert_eq!(https().await, (CoverageState::NotCollected, 0, 0, 1));
    observe(store, &scope, &one, &clock, &[self::https(ACCOUNT, true)]).await;
    assert_eq!(https().await, (CoverageState::Passing, 1, 0, 0));
    // A second subscription: one more not collected.
    store
        .add_subscriptions(&scope, conn.id, &[new_sub("sub-2")], &[], "user:test")
        .await
        .expect("another subscription");
    assert_eq!(https().await.3, 1, "the new subscription is not collected");
    // A stale threshold of 1 hour, 2 hours after the observation.
    clock.advance(Duration::hours(2));
    assert_eq!(https().await.1, 1, "48 hours by default: still fresh");
    store
        .update_connection(&scope, conn.id, None, None, Some(3600), "user:test")
        .await
        .expect("threshold");
    assert_eq!(https().await.2, 1, "stale under the new threshold");
    // Seen again as it was: fresh again at once. Seen again while fresh:
    // the same counts.
    for _ in 0..2 {
        observe(store, &scope, &one, &clock, &[self::https(ACCOUNT, true)]).await;
        let (_, passing, stale, _) = https().await;
        assert_eq!((passing, stale), (1, 0), "seen again: fresh");
        clock.advance(Duration::minutes(10));
    }
    // Revoked: nothing of the connection counts.
    store
        .revoke_connection(&scope, conn.id, "user:test")
        .await
        .expect("revoke");
    let (_, passing, stale, not_collected) = https().await;
    assert_eq!((passing, stale, not_collected), (0, 0, 0));
}
both_backends!(coverage_follows_every_write_that_changes_it);

async fn cc66_now(store: &Store, scope: &OrgScope) -> cloudkeep_domain::evidence::Tally {
    store
        .coverage(scope)
        .await
        .expect("coverage")
        .control(ControlId::Cc66)
        .expect("CC6.6")
        .1
        .tally
}

async fn the_control_mapping_changes_with_an_audit_event(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("mapping")).await;
    let checks = store
        .change_control_mapping(
            &scope,
            ControlId::Cc71,
            &[CheckId::StorageHttpsOnly],
            &[CheckId::DefenderPlanCspm],
            "user:admin",
        )
        .await
        .expect("change");
    assert!(checks.contains(&CheckId::StorageHttpsOnly));
    assert!(!checks.contains(&CheckId::DefenderPlanCspm));
    let events = events_of(store, &scope, "control_mapping.changed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["added"], json!(["storage.https_only"]));
    // Back to the default: the overrides go.
    let checks = store
        .change_control_mapping(
            &scope,
            ControlId::Cc71,
            &[CheckId::DefenderPlanCspm],
            &[CheckId::StorageHttpsOnly],
            "user:admin",
        )
        .await
        .expect("change back");
    assert_eq!(checks, ControlId::Cc71.default_checks());
    assert!(
        store
            .control_mapping_overrides(&scope)
            .await
            .expect("overrides")
            .is_empty()
    );
    let both = store
        .change_control_mapping(
            &scope,
            ControlId::Cc61,
            &[CheckId::RbacGuestUsers],
            &[CheckId::RbacGuestUsers],
            "user:admin",
        )
        .await;
    assert!(matches!(both, Err(StoreError::Invalid(_))), "{both:?}");
    // The threshold, likewise audited.
    assert_eq!(
        store
            .evidence_settings(&scope)
            .await
            .expect("settings")
            .secure_score_threshold,
        0.7
    );
    let set = store
        .set_secure_score_threshold(&scope, 0.85, "user:admin")
        .await
        .expect("set");
    assert_eq!(set.secure_score_threshold, 0.85);
    assert!(
        store
            .set_secure_score_threshold(&scope, 1.5, "user:admin")
            .await
            .is_err()
    );
    assert_eq!(
        events_of(store, &scope, "evidence_settings.changed")
            .await
            .len(),
        1
    );
}
both_backends!(the_control_mapping_changes_with_an_audit_event);

async fn alerts_fire_once_and_every_transition_is_queued(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("alerts")).await;
    let (_dir, keys) = keyfile();
    let (hook, secret) = store
        .create_webhook(
            &scope,
            &keys,
            "ops",
            "https://hooks.example.com/ck",
            "user:admin",
        )
        .await
        .expect("webhook");
    assert!(secret.expose().starts_with("whsec_"));
    assert_eq!(
        store
            .open_webhook_secret(&scope, &keys, hook.id)
            .await
            .expect("open")
            .expose(),
        secret.expose()
    );
    let stale = || NewAlert {
        kind: AlertKind::EvidenceStale,
        scope: "connection:c-1".into(),
        title: "stale".into(),
        figures: json!({"hours": 49}),
    };
    let opened = store
        .open_alert(&scope, stale(), "system:scheduler")
        .await
        .expect("open")
        .expect("a new alert");
    assert!(
        store
            .open_alert(&scope, stale(), "system:scheduler")
            .await
            .expect("open again")
            .is_none(),
        "fires once"
    );
    let acked = store
        .acknowledge_alert(&scope, opened.id, "user:editor")
        .await
        .expect("ack");
    assert_eq!(acked.state, AlertState::Acknowledged);
    assert_eq!(
        store
            .acknowledge_alert(&scope, opened.id, "user:editor")
            .await
            .expect("ack again")
            .acknowledged_at,
        acked.acknowledged_at,
        "acknowledging again changes nothing"
    );
    let resolved = store
        .resolve_alert(
            &scope,
            AlertKind::EvidenceStale,
            "connection:c-1",
            json!({}),
            "system:sync",
        )
        .await
        .expect("resolve")
        .expect("resolved");
    assert_eq!(resolved.state, AlertState::Resolved);
    assert!(
        store
            .resolve_alert(
                &scope,
                AlertKind::EvidenceStale,
                "connection:c-1",
                json!({}),
                "x"
            )
            .await
            .expect("resolve again")
            .is_none()
    );
    assert!(
        store
            .acknowledge_alert(&scope, opened.id, "user:editor")
            .await
            .is_err(),
        "a resolved alert is not acknowledged"
    );
    for action in ["alert.opened", "alert.acknowledged", "alert.resolved"] {
        assert_eq!(events_of(store, &scope, action).await.len(), 1, "{action}");
    }
    let deliveries = store
        .deliveries(&scope, hook.id, &PageRequest::first(10))
        .await
        .expect("deliveries")
        .items;
    let mut events: Vec<&str> = deliveries.iter().map(|d| d.event.as_str()).collect();
    events.sort_unstable();
    assert_eq!(
        events,
        ["alert.acknowledged", "alert.opened", "alert.resolved"]
    );
    assert!(deliveries.iter().all(|d| d.state == DeliveryState::Pending));
    let payload: serde_json::Value = serde_json::from_str(&deliveries[0].payload).expect("payload");
    assert_eq!(payload["alert"]["id"], json!(opened.id));
    let queued = store.job_counts(&scope).await.expect("jobs");
    assert_eq!(
        queued,
        vec![("queued".to_string(), 3)],
        "one job per delivery"
    );
    // After it resolved, the same cause opens a new alert.
    let again = store
        .open_alert(&scope, stale(), "system:scheduler")
        .await
        .expect("open")
        .expect("new");
    assert_ne!(again.id, opened.id);
    let open = store
        .alerts(
            &scope,
            &AlertFilter {
                state: Some(AlertState::Open),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .expect("alerts")
        .items;
    assert_eq!(open.len(), 1);
    // The secret survives a data key rotation; a deleted webhook's is gone.
    store
        .rotate_data_key(&scope, &keys, "system:test")
        .await
        .expect("rotate");
    assert_eq!(
        store
            .open_webhook_secret(&scope, &keys, hook.id)
            .await
            .expect("open after rotation")
            .expose(),
        secret.expose()
    );
    store
        .delete_webhook(&scope, hook.id, "user:admin")
        .await
        .expect("delete");
    assert!(
        store
            .open_webhook_secret(&scope, &keys, hook.id)
            .await
            .is_err()
    );
}
both_backends!(alerts_fire_once_and_every_transition_is_queued);
