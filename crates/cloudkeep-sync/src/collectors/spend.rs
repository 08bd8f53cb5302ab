//! Spend: a subscription's daily cost per resource and meter, as billed
//! (ActualCost → FOCUS BilledCost) and amortised (AmortizedCost →
//! EffectiveCost), with Azure's own daily totals to reconcile against.
//!
//! A first sync backfills 13 months, newest month first, storing the
//! position with each month (so an interrupted backfill resumes where it
//! stopped); a month Azure has nothing for (204) ends the backfill early,
//! as the subscription had no cost before. Every sync then re-pulls a
//! trailing window (5 days unless the connection says otherwise) and
//! everything since the last day pulled, replacing those days.
//!
//! A period costs four queries (each a query unit per month): the two
//! ungrouped daily totals and the two daily listings grouped by ResourceId
//! and Meter; and, when it lists a meter not named yet in this collection,
//! three small ones without granularity that name each meter's service
//! and charge type (in actual and in amortised cost: a reservation's meter
//! is a Purchase in one and UnusedReservation in the other). A period with
//! no total at all stops after the first two.
//! Spend runs at every sync level; tags come from the inventory.

use std::collections::HashMap;

use chrono::{Duration, NaiveDate};
use cloudkeep_azure::{CostGranularity, CostGrouping, CostQuery, CostRow, CostType};
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::report::Counts;
use cloudkeep_domain::spend::{month_end, month_start, months_before};
use cloudkeep_store::{
    BACKFILL_MONTHS, Backfill, CostLine, DayTotal, MeterInfo, PURCHASE, PullCounts, SpendPull,
    USAGE,
};
use futures_util::TryStreamExt;

use crate::{CollectContext, CollectError, Collector};

pub struct Spend;

/// What one subscription's spend collection did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpendCounts {
    /// Backfill months done (of `months_total`).
    pub months_done: u64,
    pub months_total: u64,
    /// Periods pulled this run (backfill months and trailing windows).
    pub periods: u64,
    pub queries: u64,
    /// Cost rows stored (reconciliation rows included).
    pub rows: u64,
    pub days: u64,
    /// Days whose rows needed a reconciliation row to meet Azure's total.
    pub reconciled: u64,
    pub trailing_days: u64,
    /// Periods whose pull held what was stored: nothing rewritten.
    pub unchanged_periods: u64,
}

impl From<SpendCounts> for Counts {
    fn from(c: SpendCounts) -> Counts {
        Counts::new()
            .with("months_done", c.months_done)
            .with("months_total", c.months_total)
            .with("periods", c.periods)
            .with("queries", c.queries)
            .with("rows", c.rows)
            .with("days", c.days)
            .with("reconciled", c.reconciled)
            .with("trailing_days", c.trailing_days)
            .with("unchanged_periods", c.unchanged_periods)
    }
}

impl Collector for Spend {
    fn name(&self) -> &'static str {
        "spend"
    }

    fn runs_at(&self, _level: SyncLevel) -> bool {
        // Cost is the subscription's, not its resources': every level.
        true
    }

    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<Counts, CollectError>> {
        Box::pin(async move { collect(&ctx).await.map(Counts::from) })
    }
}

async fn collect(ctx: &CollectContext<'_>) -> Result<SpendCounts, CollectError> {
    let today = ctx.store.now().date_naive();
    let trailing = ctx
        .store
        .spend_trailing_days(ctx.scope, ctx.subscription.connection_id)
        .await?;
    let mut state = match ctx
        .store
        .spend_backfill(ctx.scope, ctx.subscription)
        .await?
    {
        Some(s) => s,
        None => Backfill {
            start_month: months_before(today, BACKFILL_MONTHS - 1),
            next_month: Some(month_start(today)),
            months_done: 0,
            months_total: BACKFILL_MONTHS,
            pulled_through: None,
        },
    };
    let mut counts = SpendCounts {
        months_total: u64::from(state.months_total),
        trailing_days: u64::from(trailing),
        ..Default::default()
    };
    let mut pulled_today = false;
    let mut maps = MeterMaps::default();
    // A month pulled and not stored yet: storing it overlaps pulling the
    // next one (the query units refill meanwhile, so storing costs the
    // backfill no time). Its position is stored with it, so a stop keeps
    // whole months, in order. Each month holds a turn from before it is
    // pulled until it is stored (`CollectContext::spend_month`).
    let mut pending: Option<Pending> = None;
    // The backfill, newest month first.
    while let Some(month) = state.next_month.filter(|m| *m >= state.start_month) {
        ctx.progress(
            u64::from(state.months_done),
            u64::from(state.months_total),
            "months",
        );
        let to = month_end(month).min(today);
        let (pulled, stored) = tokio::join!(
            async {
                let turn = ctx.spend_month().await;
                (
                    pull(ctx, month, to, &mut maps, &mut counts.queries).await,
                    turn,
                )
            },
            record_pending(ctx, pending.take()),
        );
        counts.add(stored?);
        let (pulled, turn) = pulled;
        let pulled = pulled?;
        let older = months_before(month, 1);
        state.months_done += 1;
        state.pulled_through = state.pulled_through.max(Some(to));
        // Nothing at all in a past month: the subscription had no cost
        // before it, so the backfill is done.
        state.next_month = match &pulled {
            None if month < month_start(today) => None,
            _ if older < state.start_month => None,
            _ => Some(older),
        };
        if state.next_month.is_none() {
            state.months_done = state.months_total;
        }
        pending = Some(Pending {
            pulled,
            state,
            _turn: turn,
        });
        counts.periods += 1;
        pulled_today |= to == today;
    }
    counts.add(record_pending(ctx, pending).await?);
    ctx.progress(
        u64::from(state.months_done),
        u64::from(state.months_total),
        "months",
    );
    // The trailing window, and whatever came since the last day pulled.
    if !pulled_today {
        let window = today - Duration::days(i64::from(trailing.max(1)) - 1);
        let mut from = match state.pulled_through {
            Some(last) if last + Duration::days(1) < window => last + Duration::days(1),
            _ => window,
        }
        .max(state.start_month);
        while from <= today {
            // One month at a time: Cost Management charges by the month.
            let to = month_end(from).min(today);
            let _turn = ctx.spend_month().await;
            let pulled = pull(ctx, from, to, &mut maps, &mut counts.queries).await?;
            state.pulled_through = state.pulled_through.max(Some(to));
            let pulled = pulled.or_else(|| {
                // Nothing in the window: still replace what was stored.
                Some(SpendPull {
                    from,
                    to,
                    currency: "USD".into(),
                    lines: Vec::new(),
                    totals: Vec::new(),
                })
            });
            counts.add(record(ctx, pulled, &state).await?);
            counts.periods += 1;
            from = to + Duration::days(1);
        }
    }
    counts.months_done = u64::from(state.months_done);
    ctx.store
        .refresh_spend_tags(ctx.scope, ctx.subscription)
        .await?;
    Ok(counts)
}

impl SpendCounts {
    fn add(&mut self, stored: PullCounts) {
        self.rows += stored.rows;
        self.days += stored.days;
        self.reconciled += stored.reconciled;
        self.unchanged_periods += u64::from(stored.unchanged);
    }
}

/// Stores a pull with the position it reaches (only the position when
/// the period had no cost).
async fn record(
    ctx: &CollectContext<'_>,
    pulled: Option<SpendPull>,
    state: &Backfill,
) -> Result<PullCounts, CollectError> {
    Ok(match pulled {
        Some(p) => {
            ctx.store
                .record_spend_pull(ctx.scope, ctx.subscription, &p, state)
                .await?
        }
        None => {
            ctx.store
                .set_spend_backfill(ctx.scope, ctx.subscription, state)
                .await?;
            PullCounts::default()
        }
    })
}

/// A month pulled and not stored yet, with the position it reaches and
/// its turn to be held.
struct Pending<'t> {
    pulled: Option<SpendPull>,
    state: Backfill,
    _turn: Option<tokio::sync::SemaphorePermit<'t>>,
}

/// Stores the pending month, if any; its turn ends once it is stored.
async fn record_pending(
    ctx: &CollectContext<'_>,
    pending: Option<Pending<'_>>,
) -> Result<PullCounts, CollectError> {
    match pending {
        Some(p) => record(ctx, p.pulled, &p.state).await,
        None => Ok(PullCounts::default()),
    }
}

/// Runs one query to its last page; `queries` counts the queries sent.
async fn rows(
    ctx: &CollectContext<'_>,
    query: CostQuery,
    queries: &mut u64,
) -> Result<Vec<CostRow>, CollectError> {
    *queries += 1;
    let scope = format!("/subscriptions/{}", ctx.subscription.azure_id);
    let mut renewals = 0;
    loop {
        let token = ctx.current_token().await;
        match ctx
            .azure
            .cost_query(&token, &scope, &query)
            .try_collect()
            .await
        {
            // A token that ran out while a query paged (a long listing, a
            // short-lived token): the query again with a renewed one, a few
            // times (each query takes the token as it stands).
            Err(cloudkeep_azure::AzureError::Unauthorized { code, .. })
                if code.eq_ignore_ascii_case("ExpiredAuthenticationToken")
                    && renewals < crate::TOKEN_RENEWALS =>
            {
                renewals += 1;
                *queries += 1;
            }
            other => return Ok(other?),
        }
    }
}

fn group<'r>(row: &'r CostRow, name: &str) -> Option<&'r str> {
    row.groups
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// A meter's names by a second grouping (`ServiceName`, `ChargeType`).
fn meter_map(rows: &[CostRow], column: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for r in rows {
        if let (Some(m), Some(v)) = (group(r, "Meter"), group(r, column)) {
            // A meter with several values keeps its first non-empty one.
            if !v.is_empty() {
                out.entry(m.to_string()).or_insert_with(|| v.to_string());
            }
        }
    }
    out
}

/// Each meter's service and charge types, learnt once per collection.
#[derive(Debug, Default)]
struct MeterMaps {
    services: HashMap<String, String>,
    /// Charge type in actual cost (`Purchase` for a reservation's meter).
    actual: HashMap<String, String>,
    /// In amortised cost (`UnusedReservation` for the same meter).
    amortized: HashMap<String, String>,
}

/// FOCUS's charge columns for Azure's charge type.
fn meter_info(meter: &str, service: Option<&String>, charge_type: &str) -> MeterInfo {
    let ct = charge_type.to_ascii_lowercase();
    let (category, pricing, status) = match ct.as_str() {
        "purchase" => (PURCHASE, Some("Committed"), None),
        "unusedreservation" | "unusedsavingsplan" => (USAGE, Some("Committed"), Some("Unused")),
        "refund" => ("Credit", None, None),
        "tax" => ("Tax", None, None),
        _ => (USAGE, Some("Standard"), None),
    };
    MeterInfo {
        meter: meter.to_string(),
        // A meter Azure names no service for keeps its own name there.
        service_name: Some(service.cloned().unwrap_or_else(|| meter.to_string())),
        charge_category: category.to_string(),
        pricing_category: pricing.map(str::to_string),
        commitment_status: status.map(str::to_string),
        charge_type: if charge_type.is_empty() {
            "Usage".to_string()
        } else {
            charge_type.to_string()
        },
    }
}

/// One period of the subscription: `None` when Azure has no cost at all in it.
async fn pull(
    ctx: &CollectContext<'_>,
    from: NaiveDate,
    to: NaiveDate,
    maps: &mut MeterMaps,
    queries: &mut u64,
) -> Result<Option<SpendPull>, CollectError> {
    let daily = |t| CostQuery::new(t, from, to, CostGranularity::Daily);
    let whole = |t| CostQuery::new(t, from, to, CostGranularity::None);
    let by = |name: &str| CostGrouping::Dimension(name.to_string());
    let billed_totals = rows(ctx, daily(CostType::ActualCost), queries).await?;
    let effective_totals = rows(ctx, daily(CostType::AmortizedCost), queries).await?;
    if billed_totals.is_empty() && effective_totals.is_empty() {
        return Ok(None);
    }
    let mut totals: std::collections::BTreeMap<NaiveDate, DayTotal> = Default::default();
    let mut currency = String::new();
    for (r, effective) in billed_totals
        .iter()
        .map(|r| (r, false))
        .chain(effective_totals.iter().map(|r| (r, true)))
    {
        let Some(day) = r.date else { continue };
        if currency.is_empty() {
            currency.clone_from(&r.currency);
        }
        let t = totals.entry(day).or_insert(DayTotal {
            day,
            billed: 0.0,
            effective: 0.0,
        });
        if effective {
            t.effective += r.cost;
        } else {
            t.billed += r.cost;
        }
    }
    let listed = |t| daily(t).group_by(by("ResourceId")).group_by(by("Meter"));
    let listed_actual = rows(ctx, listed(CostType::ActualCost), queries).await?;
    let listed_amortized = rows(ctx, listed(CostType::AmortizedCost), queries).await?;
    // Meters are named once per collection: a period whose meters are all
    // known (a backfill's older months, mostly) spends no units on them.
    let unknown = |rows: &[CostRow], known: &HashMap<String, String>| {
        rows.iter()
            .any(|r| !known.contains_key(group(r, "Meter").unwrap_or_default()))
    };
    if unknown(&listed_actual, &maps.services)
        || unknown(&listed_actual, &maps.actual)
        || unknown(&listed_amortized, &maps.amortized)
    {
        let named = |cost_type, column: &'static str| {
            whole(cost_type).group_by(by("Meter")).group_by(by(column))
        };
        let services = rows(ctx, named(CostType::ActualCost, "ServiceName"), queries).await?;
        maps.services.extend(meter_map(&services, "ServiceName"));
        let actual = rows(ctx, named(CostType::ActualCost, "ChargeType"), queries).await?;
        maps.actual.extend(meter_map(&actual, "ChargeType"));
        let amortized = rows(ctx, named(CostType::AmortizedCost, "ChargeType"), queries).await?;
        maps.amortized.extend(meter_map(&amortized, "ChargeType"));
        // A meter Azure named nothing for is not asked about again.
        for (listed, map) in [
            (&listed_actual, &mut maps.actual),
            (&listed_amortized, &mut maps.amortized),
        ] {
            for r in listed {
                let m = group(r, "Meter").unwrap_or_default().to_string();
                map.entry(m).or_insert_with(|| "Usage".into());
            }
        }
        for r in &listed_actual {
            let m = group(r, "Meter").unwrap_or_default().to_string();
            maps.services.entry(m.clone()).or_insert(m);
        }
    }
    let mut lines = Vec::new();
    for (cost_type, listed, types) in [
        (CostType::ActualCost, listed_actual, &maps.actual),
        (CostType::AmortizedCost, listed_amortized, &maps.amortized),
    ] {
        for r in listed {
            let Some(day) = r.date else { continue };
            let meter = group(&r, "Meter").unwrap_or_default();
            let charge_type = types.get(meter).map(String::as_str).unwrap_or("Usage");
            let resource = group(&r, "ResourceId")
                .filter(|s| !s.trim().is_empty())
                .map(|s| s.to_ascii_lowercase());
            let (billed, effective) = match cost_type {
                CostType::AmortizedCost => (0.0, r.cost),
                _ => (r.cost, 0.0),
            };
            if currency.is_empty() {
                currency.clone_from(&r.currency);
            }
            lines.push(CostLine {
                day,
                resource_id: resource,
                meter: meter_info(meter, maps.services.get(meter), charge_type),
                billed,
                effective,
            });
        }
    }
    if currency.is_empty() {
        currency = "USD".into();
    }
    Ok(Some(SpendPull {
        from,
        to,
        currency,
        lines,
        totals: totals.into_values().collect(),
    }))
}
