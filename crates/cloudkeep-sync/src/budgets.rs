//! Budget alerts: after spend is collected (and when a budget is made or
//! changed), each budget's actual spend and month-end forecast are held
//! against its thresholds. A crossing opens one alert (`budget_actual` or
//! `budget_forecast`) whose scope names the budget, the month and the
//! threshold (`budget:{id}:2026-12:actual:80`), so it fires once while it
//! holds and a new month starts over: at every scheduler pass, the alerts
//! of a month gone by, of a deleted budget, or of a forecast back under
//! its threshold are resolved.

use std::collections::BTreeSet;

use chrono::NaiveDate;
use cloudkeep_domain::budget::threshold_label;
use cloudkeep_domain::evidence::AlertKind;
use cloudkeep_store::{Budget, BudgetStatus, NewAlert, OrgScope, Store, StoreError};
use serde_json::json;

/// What one review changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Review {
    pub alerts_opened: u64,
    pub alerts_resolved: u64,
}

const KINDS: [AlertKind; 2] = [AlertKind::BudgetActual, AlertKind::BudgetForecast];

/// The alert scope of one threshold of one budget in one month.
pub fn alert_scope(budget: &Budget, month: NaiveDate, kind: AlertKind, threshold: f64) -> String {
    let which = if kind == AlertKind::BudgetActual {
        "actual"
    } else {
        "forecast"
    };
    format!(
        "budget:{}:{}:{which}:{}",
        budget.id,
        month.format("%Y-%m"),
        threshold_label(threshold)
    )
}

fn figures(b: &Budget, s: &BudgetStatus, threshold: f64) -> serde_json::Value {
    json!({
        "budget_id": b.id, "budget": b.definition.name, "amount": b.definition.amount,
        "currency": s.currency, "month": s.month.format("%Y-%m").to_string(),
        "threshold_pct": threshold, "actual": s.actual, "actual_pct": s.actual_pct,
        "forecast": s.forecast.month_end_total, "forecast_pct": s.forecast_pct,
        "as_of": s.forecast.as_of,
    })
}

fn title(b: &Budget, s: &BudgetStatus, kind: AlertKind, threshold: f64) -> String {
    let (what, value, pct) = if kind == AlertKind::BudgetActual {
        ("spend this month", s.actual, s.actual_pct)
    } else {
        (
            "the month-end forecast",
            s.forecast.month_end_total,
            s.forecast_pct,
        )
    };
    format!(
        "Budget '{}': {what} is {value:.2} {}, {pct:.0}% of {:.2} (threshold {}%) in {}",
        b.definition.name,
        s.currency,
        b.definition.amount,
        threshold_label(threshold),
        s.month.format("%Y-%m"),
    )
}

/// Holds every budget against its thresholds in `today`'s month: opens an
/// alert per threshold crossed (once), and resolves those no longer
/// crossed (a month gone by, a deleted budget, a forecast that fell back).
pub async fn review(store: &Store, scope: &OrgScope, actor: &str) -> Result<Review, StoreError> {
    let today = store.now().date_naive();
    let mut out = Review::default();
    let mut holding = BTreeSet::new();
    for b in store.all_budgets(scope).await? {
        let s = store.budget_status(scope, &b, today).await?;
        for (kind, crossed) in [
            (AlertKind::BudgetActual, &s.actual_crossed),
            (AlertKind::BudgetForecast, &s.forecast_crossed),
        ] {
            for t in crossed {
                let key = alert_scope(&b, s.month, kind, *t);
                holding.insert(key.clone());
                let new = NewAlert {
                    kind,
                    scope: key,
                    title: title(&b, &s, kind, *t),
                    figures: figures(&b, &s, *t),
                };
                if store.open_alert(scope, new, actor).await?.is_some() {
                    out.alerts_opened += 1;
                }
            }
        }
    }
    out.alerts_resolved += resolve_except(store, scope, &holding, actor).await?;
    Ok(out)
}

/// The cheap part of a review, for every scheduler pass: resolves budget
/// alerts of months gone by and of budgets deleted, without reading spend.
pub async fn roll_over(store: &Store, scope: &OrgScope, actor: &str) -> Result<u64, StoreError> {
    let month = store.now().date_naive().format("%Y-%m").to_string();
    let live: BTreeSet<String> = store
        .all_budgets(scope)
        .await?
        .into_iter()
        .map(|b| b.id.to_string())
        .collect();
    let mut resolved = 0;
    for kind in KINDS {
        for a in store.active_alerts(scope, kind).await? {
            let mut parts = a.scope.split(':').skip(1);
            let (id, m) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let why = if !live.contains(id) {
                "the budget was deleted"
            } else if m != month {
                "a new month started"
            } else {
                continue;
            };
            if store
                .resolve_alert(scope, kind, &a.scope, resolution(&a.figures, why), actor)
                .await?
                .is_some()
            {
                resolved += 1;
            }
        }
    }
    Ok(resolved)
}

fn resolution(figures: &serde_json::Value, why: &str) -> serde_json::Value {
    let mut f = figures.clone();
    if let Some(o) = f.as_object_mut() {
        o.insert("resolved_because".into(), json!(why));
    }
    f
}

/// Resolves every active budget alert whose scope is not in `holding`.
async fn resolve_except(
    store: &Store,
    scope: &OrgScope,
    holding: &BTreeSet<String>,
    actor: &str,
) -> Result<u64, StoreError> {
    let month = store.now().date_naive().format("%Y-%m").to_string();
    let mut resolved = 0;
    for kind in KINDS {
        for a in store.active_alerts(scope, kind).await? {
            if holding.contains(&a.scope) {
                continue;
            }
            let why = if a.scope.split(':').nth(2) == Some(month.as_str()) {
                "the figure fell back under the threshold"
            } else {
                "a new month started"
            };
            if store
                .resolve_alert(scope, kind, &a.scope, resolution(&a.figures, why), actor)
                .await?
                .is_some()
            {
                resolved += 1;
            }
        }
    }
    Ok(resolved)
}

/// After a run that collected spend: budgets are reviewed. Failing here
/// does not fail the run (the next run reviews again).
pub async fn after_sync(
    store: &Store,
    scope: &OrgScope,
    run: &cloudkeep_store::SyncRun,
    actor: &str,
) {
    use cloudkeep_domain::RunStatus;
    if !matches!(run.status, RunStatus::Succeeded | RunStatus::Partial) {
        return;
    }
    if let Err(e) = review(store, scope, actor).await {
        tracing::warn!(run = %run.id, error = %e, "could not review the budgets after a run");
    }
}
