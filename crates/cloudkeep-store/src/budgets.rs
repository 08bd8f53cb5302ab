//! Budgets: stored definitions (audited when made, changed or deleted) and
//! a budget's standing this month: actual spend to date, the month-end
//! forecast (the domain's weekday medians over four weeks of usage cost),
//! and the thresholds each has crossed.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use cloudkeep_domain::budget::{BudgetDefinition, Forecast, crossed, filter_text, forecast};
use cloudkeep_domain::spend::{
    SpendDimension, SpendFilter, SpendGranularity, day_number, month_start,
};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::page::{Cursor, Page, PageRequest};
use crate::spend::SpendQuery;
use crate::{OrgScope, Result, Store, StoreError, parse, time, within};

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub id: Uuid,
    pub definition: BudgetDefinition,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub updated_at: DateTime<Utc>,
}

/// Where a budget stands in a month.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetStatus {
    /// The month's first day.
    pub month: NaiveDate,
    pub currency: String,
    /// Spend from the month's first day through `forecast.as_of`.
    pub actual: f64,
    pub forecast: Forecast,
    /// Actual and forecast as percentages of the amount.
    pub actual_pct: f64,
    pub forecast_pct: f64,
    /// The thresholds each has reached.
    pub actual_crossed: Vec<f64>,
    pub forecast_crossed: Vec<f64>,
    /// Cost per day of the month so far.
    pub daily: Vec<(NaiveDate, f64)>,
}

const COLUMNS: &str = "budget_id, name, amount, metric, filters, actual_thresholds, forecast_thresholds, \
     created_at, created_by, updated_at";

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("budget {what}"))
}

fn budget(row: &AnyRow) -> Result<Budget> {
    let json_list = |col: &str| -> Result<String> { row.try_get(col).map_err(Into::into) };
    let filters: Vec<String> =
        serde_json::from_str(&json_list("filters")?).map_err(|_| corrupt("filters"))?;
    let filters = filters
        .iter()
        .map(|f| f.parse::<SpendFilter>().map_err(|_| corrupt("filter")))
        .collect::<Result<Vec<_>>>()?;
    let thresholds = |col: &str| -> Result<Vec<f64>> {
        serde_json::from_str(&json_list(col)?).map_err(|_| corrupt("thresholds"))
    };
    Ok(Budget {
        id: parse(row, "budget_id")?,
        definition: BudgetDefinition {
            name: row.try_get("name")?,
            amount: row.try_get("amount")?,
            metric: parse(row, "metric")?,
            filters,
            actual_thresholds: thresholds("actual_thresholds")?,
            forecast_thresholds: thresholds("forecast_thresholds")?,
        },
        created_at: time(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        updated_at: time(row.try_get("updated_at")?),
    })
}

fn filters_json(def: &BudgetDefinition) -> String {
    let texts: Vec<String> = def.filters.iter().map(filter_text).collect();
    json!(texts).to_string()
}

fn definition_json(def: &BudgetDefinition) -> serde_json::Value {
    json!({
        "name": def.name, "amount": def.amount, "metric": def.metric,
        "filters": def.filters.iter().map(filter_text).collect::<Vec<_>>(),
        "actual_thresholds": def.actual_thresholds, "forecast_thresholds": def.forecast_thresholds,
    })
}

impl Store {
    /// Refuses a tag key no resource of the organisation carries and no
    /// alias names: a budget on it would watch nothing.
    async fn check_budget_tags(&self, scope: &OrgScope, def: &BudgetDefinition) -> Result<()> {
        let aliases = self.spend_tag_aliases(scope).await?;
        for f in &def.filters {
            let key = match f {
                SpendFilter::HasTag(k, _) | SpendFilter::LacksTag(k) => k,
                SpendFilter::Is(..) => continue,
            };
            if aliases.contains_key(key) || aliases.values().any(|k| k == key) {
                continue;
            }
            let known = sqlx::query(
                "SELECT 1 FROM resource_tags WHERE org_id = $1 AND key_lower = $2 LIMIT 1",
            )
            .bind(scope.id())
            .bind(key)
            .fetch_optional(&self.pool)
            .await?
            .is_some()
                || sqlx::query(
                    "SELECT 1 FROM spend_resource_tags WHERE org_id = $1 AND key_lower = $2 LIMIT 1",
                )
                .bind(scope.id())
                .bind(key)
                .fetch_optional(&self.pool)
                .await?
                .is_some();
            if !known {
                return Err(StoreError::Invalid(format!(
                    "no resource carries the tag key '{key}' and no alias names it: use a key resources carry (GET /api/v1/resources?tag=...), or add an alias first"
                )));
            }
        }
        Ok(())
    }

    /// Makes a budget (the caller checks the definition with
    /// `BudgetDefinition::checked`); audited (`budget.created`).
    pub async fn create_budget(
        &self,
        scope: &OrgScope,
        def: &BudgetDefinition,
        actor: &str,
    ) -> Result<Budget> {
        self.check_budget_tags(scope, def).await?;
        let id = Uuid::new_v4();
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "budget.created",
            format!("budget:{id}"),
            definition_json(def),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO budgets (org_id, budget_id, name, amount, metric, filters, actual_thresholds, \
                 forecast_thresholds, created_at, created_by, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $9)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(&def.name)
            .bind(def.amount)
            .bind(def.metric.as_str())
            .bind(filters_json(def))
            .bind(json!(def.actual_thresholds).to_string())
            .bind(json!(def.forecast_thresholds).to_string())
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        self.budget(scope, id).await
    }

    /// Replaces a budget's definition; audited (`budget.updated`).
    pub async fn update_budget(
        &self,
        scope: &OrgScope,
        id: Uuid,
        def: &BudgetDefinition,
        actor: &str,
    ) -> Result<Budget> {
        self.budget(scope, id).await?;
        self.check_budget_tags(scope, def).await?;
        let entry = AuditEntry::new(
            actor,
            "budget.updated",
            format!("budget:{id}"),
            definition_json(def),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE budgets SET name = $3, amount = $4, metric = $5, filters = $6, actual_thresholds = $7, \
                 forecast_thresholds = $8, updated_at = $9 WHERE org_id = $1 AND budget_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(&def.name)
            .bind(def.amount)
            .bind(def.metric.as_str())
            .bind(filters_json(def))
            .bind(json!(def.actual_thresholds).to_string())
            .bind(json!(def.forecast_thresholds).to_string())
            .bind(self.now_ms())
            .execute(&mut **tx)
            .await?;
            crate::access::found(done.rows_affected(), "budget")
        })
        .await?;
        tx.commit().await?;
        self.budget(scope, id).await
    }

    /// Deletes a budget (kept, marked deleted, for the audit's sake);
    /// audited (`budget.deleted`). Its open alerts resolve at the next review.
    pub async fn delete_budget(&self, scope: &OrgScope, id: Uuid, actor: &str) -> Result<()> {
        let entry = AuditEntry::new(actor, "budget.deleted", format!("budget:{id}"), json!({}));
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE budgets SET deleted_at = $3 WHERE org_id = $1 AND budget_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(self.now_ms())
            .execute(&mut **tx)
            .await?;
            crate::access::found(done.rows_affected(), "budget")
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn budget(&self, scope: &OrgScope, id: Uuid) -> Result<Budget> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budgets WHERE org_id = $1 AND budget_id = $2 AND deleted_at IS NULL"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "budget" })?;
        budget(&row)
    }

    /// The organisation's budgets (not deleted), oldest first.
    pub async fn budgets(&self, scope: &OrgScope, page: &PageRequest) -> Result<Page<Budget>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budgets WHERE org_id = $1 AND deleted_at IS NULL \
             AND (created_at > $2 OR (created_at = $2 AND budget_id > $3)) ORDER BY created_at, budget_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(budget).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |b| {
            Cursor::of(&[
                &b.created_at.timestamp_millis().to_string(),
                &b.id.to_string(),
            ])
        }))
    }

    /// Every live budget of the organisation (a review reads them all).
    pub async fn all_budgets(&self, scope: &OrgScope) -> Result<Vec<Budget>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM budgets WHERE org_id = $1 AND deleted_at IS NULL ORDER BY created_at, budget_id"
        ))
        .bind(scope.id())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(budget).collect()
    }

    /// The latest day on or before `today` that any subscription of the
    /// organisation has cost for (Azure's cost lags the day).
    pub async fn spend_latest_day(
        &self,
        scope: &OrgScope,
        today: NaiveDate,
    ) -> Result<Option<NaiveDate>> {
        // Kept per spend revision (read before the rows, as analyses are).
        let rev = self.spend_revision_to_answer(scope).await?.rev;
        if let Some(kept) = self.spend_cache.latest_day(scope.org(), today, rev) {
            return Ok(kept);
        }
        let row = sqlx::query("SELECT MAX(day) FROM spend_days WHERE org_id = $1 AND day <= $2")
            .bind(scope.id())
            .bind(day_number(today))
            .fetch_one(&self.pool)
            .await?;
        let latest = row
            .try_get::<Option<i64>, _>(0)?
            .map(cloudkeep_domain::spend::from_day_number);
        self.spend_cache
            .keep_latest_day(scope.org(), today, rev, latest);
        Ok(latest)
    }

    /// A forecast of one month for spend filters: actual cost through the
    /// latest day with cost, and the weekday medians of the four weeks to
    /// it (usage only) for the rest. Answers the forecast, the currency and
    /// the month's daily cost.
    pub async fn spend_forecast(
        &self,
        scope: &OrgScope,
        metric: cloudkeep_domain::spend::SpendMetric,
        filters: &[SpendFilter],
        today: NaiveDate,
    ) -> Result<(Forecast, String, Vec<(NaiveDate, f64)>)> {
        let first = month_start(today);
        let as_of = self
            .spend_latest_day(scope, today)
            .await?
            .filter(|d| *d >= first - Duration::days(1))
            .unwrap_or(first - Duration::days(1));
        let analysis = |from, to, usage_only: bool| {
            let mut filters = filters.to_vec();
            if usage_only {
                filters.push(SpendFilter::Is(
                    SpendDimension::ChargeCategory,
                    "usage".into(),
                ));
            }
            SpendQuery {
                metric,
                granularity: SpendGranularity::Day,
                from,
                to,
                groups: Vec::new(),
                filters,
                top: 1,
            }
        };
        let (mtd, daily, mut currencies) = if as_of >= first {
            let a = self
                .spend_analysis(scope, &analysis(first, as_of, false))
                .await?;
            (a.total, a.buckets, a.currencies)
        } else {
            (0.0, Vec::new(), Vec::new())
        };
        let usage = self
            .spend_analysis(scope, &analysis(as_of - Duration::days(27), as_of, true))
            .await?;
        currencies.extend(usage.currencies);
        currencies.sort();
        currencies.dedup();
        let usage: BTreeMap<NaiveDate, f64> = usage.buckets.into_iter().collect();
        let currency = match currencies.as_slice() {
            [] => "USD".to_string(),
            many => many.join(","),
        };
        Ok((forecast(first, as_of, mtd, &usage), currency, daily))
    }

    /// Where a budget stands in the month of `today`.
    pub async fn budget_status(
        &self,
        scope: &OrgScope,
        b: &Budget,
        today: NaiveDate,
    ) -> Result<BudgetStatus> {
        let def = &b.definition;
        let (forecast, currency, daily) = self
            .spend_forecast(scope, def.metric, &def.filters, today)
            .await?;
        let actual = forecast.month_to_date;
        let pct = |v: f64| v / def.amount * 100.0;
        Ok(BudgetStatus {
            month: month_start(today),
            currency,
            actual,
            actual_pct: pct(actual),
            forecast_pct: pct(forecast.month_end_total),
            actual_crossed: crossed(def.amount, actual, &def.actual_thresholds),
            forecast_crossed: crossed(
                def.amount,
                forecast.month_end_total,
                &def.forecast_thresholds,
            ),
            forecast,
            daily,
        })
    }
}
