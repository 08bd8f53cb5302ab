//! Spend anomalies after a sync: the detector (`cloudkeep_domain::anomaly`)
//! runs over every subscription × service's daily usage cost, each incident
//! is stored with the resources and meters that explain it, and an alert
//! (`spend_anomaly`, `spend_new_usage`) opens once per incident and
//! resolves when the incident has ended.
//!
//! A review judges the recent days (the last 14 by default) over enough
//! history for the detector (its 4 weeks of expected values and 56 days of
//! residuals); the benchmark asks for every day the data covers.

use std::collections::HashSet;

use chrono::{Duration, NaiveDate};
use cloudkeep_domain::RunStatus;
use cloudkeep_domain::anomaly::{
    AnomalySettings, Direction, Episode, IncidentKind, detect, is_new_usage,
};
use cloudkeep_domain::evidence::AlertKind;
use cloudkeep_store::{
    Contributor, FirstUsage, Incident, NewAlert, NewIncident, OrgScope, Store, StoreError, SyncRun,
    UsageSeries, incident_id,
};
use serde_json::{Value, json};

/// Days a review judges unless told otherwise.
pub const RECENT_DAYS: u32 = 14;
/// Days of history loaded before the first day judged: the 56 days of
/// residuals, each needing 4 weeks before it.
const HISTORY_DAYS: i64 = 56 + 28;
/// How long usage counts as new.
const NEW_FOR_DAYS: i64 = 7;

/// What a review looks at and does.
#[derive(Debug, Clone, Copy)]
pub struct ReviewOptions {
    pub settings: AnomalySettings,
    /// The days judged, up to today; `None`: every day the data covers.
    pub days: Option<u32>,
    /// Whether incidents open and resolve alerts.
    pub alerts: bool,
}

impl Default for ReviewOptions {
    fn default() -> Self {
        ReviewOptions {
            settings: AnomalySettings::default(),
            days: Some(RECENT_DAYS),
            alerts: true,
        }
    }
}

/// What one review found and changed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AnomalyReview {
    /// Series judged (subscription × service).
    pub series: u64,
    /// Days judged over all series.
    pub days: u64,
    /// Incidents found in the window (new or found again).
    pub incidents: Vec<Incident>,
    pub incidents_new: u64,
    pub alerts_opened: u64,
    pub alerts_resolved: u64,
}

/// Reviews the recent days with the default settings, alerting.
pub async fn review(
    store: &Store,
    scope: &OrgScope,
    actor: &str,
) -> Result<AnomalyReview, StoreError> {
    review_with(store, scope, actor, &ReviewOptions::default()).await
}

/// Reviews an organisation's spend for anomalies and new usage.
pub async fn review_with(
    store: &Store,
    scope: &OrgScope,
    actor: &str,
    options: &ReviewOptions,
) -> Result<AnomalyReview, StoreError> {
    let to = store.now().date_naive();
    let s = &options.settings;
    let (window_start, load_from) = match options.days {
        Some(days) => {
            let start = to - Duration::days(i64::from(days.max(1)) - 1);
            (start, start - Duration::days(HISTORY_DAYS))
        }
        // Everything: from the backfill's reach (13 months) and more.
        None => {
            let far = to - Duration::days(800);
            (far, far)
        }
    };
    let mut out = AnomalyReview::default();
    // Open incidents are followed until they end, even out of the window.
    let open: HashSet<uuid::Uuid> = store
        .open_incidents(scope, IncidentKind::Anomaly)
        .await?
        .into_iter()
        .map(|i| i.id)
        .collect();
    // Every series and its contributors are read from the spend projection
    // when it stands: build it first (the pages read it next), unless it
    // would not fit or is turned off; then SQL answers, as it does for the
    // series of a sync that writes meanwhile.
    if let Err(e) = store.spend_columns_warm(scope).await {
        tracing::debug!(org = %scope.org(), "anomaly review through SQL: {e}");
    }
    let series = store.spend_usage_series(scope, load_from, to).await?;
    for one in &series {
        out.series += 1;
        out.days += one.values.len() as u64;
        let kept: Vec<Episode> = detect(one.start, &one.values, s)
            .into_iter()
            .filter(|e| {
                e.last_day >= window_start
                    || open.contains(&incident_id(
                        IncidentKind::Anomaly,
                        &one.subscription,
                        &one.service,
                        e.first_day,
                    ))
            })
            .collect();
        if kept.is_empty() {
            continue;
        }
        // One read of the series' rows for all its episodes.
        let spans: Vec<(NaiveDate, NaiveDate, f64)> = kept
            .iter()
            .map(|e| (e.first_day, e.last_day, e.delta()))
            .collect();
        let contributors = store
            .spend_contributors_of(
                scope,
                IncidentKind::Anomaly,
                &one.subscription,
                &one.service,
                &spans,
            )
            .await?;
        for (e, contributors) in kept.iter().zip(contributors) {
            record(
                store,
                scope,
                actor,
                options,
                anomaly(one, e, contributors),
                &mut out,
            )
            .await?;
        }
    }
    let mut new_usage = store.spend_first_usage(scope).await?;
    new_usage.retain(|f| {
        f.first_day >= window_start.max(to - Duration::days(NEW_FOR_DAYS + RECENT_DAYS as i64))
            || options.days.is_none()
    });
    for first in new_usage {
        if !is_new_usage(first.subscription_first_day, first.first_day, s) {
            continue;
        }
        let Some(new) = new_use(store, scope, &first, to, s).await? else {
            continue;
        };
        record(store, scope, actor, options, new, &mut out).await?;
    }
    Ok(out)
}

fn anomaly(series: &UsageSeries, e: &Episode, contributors: Vec<Contributor>) -> NewIncident {
    NewIncident {
        kind: IncidentKind::Anomaly,
        subscription: series.subscription.clone(),
        subscription_name: series.subscription_name.clone(),
        subject: series.service.clone(),
        direction: e.direction,
        first_day: e.first_day,
        last_day: e.last_day,
        expected: e.expected,
        actual: e.actual,
        max_z: Some(e.max_z),
        ended: e.ended,
        currency: series.currency.clone(),
        contributors,
    }
}

/// A first cost on a service or in a region, over its first week; `None`
/// while it is under the money threshold (a cent of new usage pages no one).
async fn new_use(
    store: &Store,
    scope: &OrgScope,
    first: &FirstUsage,
    to: NaiveDate,
    s: &AnomalySettings,
) -> Result<Option<NewIncident>, StoreError> {
    let last = (first.first_day + Duration::days(NEW_FOR_DAYS - 1)).min(to);
    let contributors = store
        .spend_contributors(
            scope,
            first.kind,
            &first.subscription,
            &first.subject,
            (first.first_day, last),
            1.0,
        )
        .await?;
    let actual: f64 = contributors
        .iter()
        .filter(|c| c.kind == cloudkeep_store::ContributorKind::Resource)
        .map(|c| c.actual)
        .sum();
    if actual < s.min_delta {
        return Ok(None);
    }
    let contributors = contributors
        .into_iter()
        .map(|mut c| {
            c.share = c.actual / actual;
            c
        })
        .collect();
    Ok(Some(NewIncident {
        kind: first.kind,
        subscription: first.subscription.clone(),
        subscription_name: first.subscription_name.clone(),
        subject: first.subject.clone(),
        direction: Direction::Up,
        first_day: first.first_day,
        last_day: last,
        expected: 0.0,
        actual,
        max_z: None,
        ended: (to - first.first_day).num_days() >= NEW_FOR_DAYS,
        currency: first.currency.clone(),
        contributors,
    }))
}

/// The alert scope of an incident.
pub fn alert_scope(incident: &Incident) -> String {
    format!("incident:{}", incident.id)
}

fn alert_kind(kind: IncidentKind) -> AlertKind {
    match kind {
        IncidentKind::Anomaly => AlertKind::SpendAnomaly,
        IncidentKind::NewService | IncidentKind::NewRegion => AlertKind::SpendNewUsage,
    }
}

/// The alert's title: the subscription, the service (or region) and the
/// resource that explains most of it.
pub fn title(i: &Incident) -> String {
    let top = i
        .resources()
        .next()
        .map(|c| {
            let name = c.name.clone().unwrap_or_else(|| {
                if c.item.is_empty() {
                    "charges with no resource".into()
                } else {
                    c.item.clone()
                }
            });
            format!(", mostly {name}")
        })
        .unwrap_or_default();
    let sub = &i.subscription_name;
    match i.kind {
        IncidentKind::Anomaly => {
            let way = match i.direction {
                Direction::Up => "up",
                Direction::Down => "down",
            };
            format!(
                "Spend anomaly in subscription '{sub}': {} {way} {:.2} {} ({:.2} expected) from {}{top}",
                i.subject,
                i.delta().abs(),
                i.currency,
                i.expected,
                i.first_day
            )
        }
        IncidentKind::NewService => format!(
            "New usage in subscription '{sub}': first cost on {} from {} ({:.2} {}){top}",
            i.subject, i.first_day, i.actual, i.currency
        ),
        IncidentKind::NewRegion => format!(
            "New usage in subscription '{sub}': first cost in region {} from {} ({:.2} {}){top}",
            i.subject, i.first_day, i.actual, i.currency
        ),
    }
}

/// The figures an incident's alert carries.
pub fn figures(i: &Incident) -> Value {
    let top = i.resources().next();
    json!({
        "incident": i.id,
        "kind": i.kind,
        "subscription": i.subscription,
        "subscription_name": i.subscription_name,
        "service": i.service(),
        "region": i.region(),
        "direction": i.direction,
        "first_day": i.first_day,
        "last_day": i.last_day,
        "expected": i.expected,
        "actual": i.actual,
        "delta": i.delta(),
        "z": i.max_z,
        "currency": i.currency,
        "ended": i.ended,
        "top_resource": top.map(|c| &c.item),
        "top_resource_share": top.map(|c| c.share),
    })
}

async fn record(
    store: &Store,
    scope: &OrgScope,
    actor: &str,
    options: &ReviewOptions,
    new: NewIncident,
    out: &mut AnomalyReview,
) -> Result<(), StoreError> {
    let (incident, created) = store.record_incident(scope, &new).await?;
    if created {
        out.incidents_new += 1;
    }
    if options.alerts {
        let kind = alert_kind(incident.kind);
        let key = alert_scope(&incident);
        if incident.ended {
            if store
                .resolve_alert(scope, kind, &key, figures(&incident), actor)
                .await?
                .is_some()
            {
                out.alerts_resolved += 1;
            }
        } else {
            let alert = NewAlert {
                kind,
                scope: key,
                title: title(&incident),
                figures: figures(&incident),
            };
            if store.open_alert(scope, alert, actor).await?.is_some() {
                out.alerts_opened += 1;
            }
        }
    }
    out.incidents.push(incident);
    Ok(())
}

/// After a run that collected spend: reviews the recent days. Failing
/// here does not fail the run (the next run reviews again).
pub async fn after_sync(store: &Store, scope: &OrgScope, run: &SyncRun, actor: &str) {
    if !matches!(run.status, RunStatus::Succeeded | RunStatus::Partial)
        || run.report.total("spend", "periods") == 0
    {
        return;
    }
    match review(store, scope, actor).await {
        Ok(r) => tracing::debug!(
            run = %run.id,
            incidents = r.incidents.len(),
            opened = r.alerts_opened,
            resolved = r.alerts_resolved,
            "reviewed spend for anomalies"
        ),
        Err(e) => {
            tracing::warn!(run = %run.id, error = %e, "could not review spend for anomalies after a run")
        }
    }
}
