//! Cost Management queries (`POST {scope}/providers/Microsoft.CostManagement/query`,
//! api-version 2025-03-01): a custom period, daily, monthly or no
//! granularity, a summed cost column, up to two groupings and a filter;
//! rows come back as typed records, a page (about 1000 rows) at a time,
//! following `properties.nextLink` with the same body. A query is charged
//! query units per tenant (one per month queried, on its first page), which
//! the client paces by (`pacing`).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde_json::{Value, json};

use crate::client::AzureClient;
use crate::error::{AzureError, truncate_raw};
use crate::fields::number;
use crate::paging::{Page, PageRequest, Paged, link, tree};
use crate::token::AccessToken;

const COST_API: &str = "2025-03-01";
/// Cost Management refuses periods longer than a year.
const MAX_DAYS: i64 = 366;
/// Columns that hold the summed cost, whatever the aggregation was called.
const COST_COLUMNS: &[&str] = &["Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD"];
const DATE_COLUMNS: &[&str] = &["UsageDate", "BillingMonth", "UsageMonth", "Date"];
const CURRENCY_COLUMNS: &[&str] = &["Currency", "BillingCurrency", "BillingCurrencyCode"];

/// Which costs: as billed, with reservations spread over their term, or
/// the legacy usage view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostType {
    ActualCost,
    AmortizedCost,
    Usage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CostGranularity {
    /// A row per day (`UsageDate`).
    Daily,
    /// A row per billing month (`BillingMonth`).
    Monthly,
    /// One total per group for the whole period.
    None,
}

/// What rows are grouped by (at most two).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostGrouping {
    /// A dimension such as `ResourceId`, `ResourceGroupName`, `ServiceName`.
    Dimension(String),
    /// A tag key: rows are split by that tag's value.
    TagKey(String),
}

/// Which costs count: dimension or tag values (`In`), combined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CostFilter {
    And(Vec<CostFilter>),
    Or(Vec<CostFilter>),
    Dimension { name: String, values: Vec<String> },
    Tag { name: String, values: Vec<String> },
}

impl CostFilter {
    fn to_json(&self) -> Value {
        let comparison = |name: &str, values: &[String]| json!({ "name": name, "operator": "In", "values": values });
        match self {
            CostFilter::And(all) => {
                json!({ "and": all.iter().map(Self::to_json).collect::<Vec<_>>() })
            }
            CostFilter::Or(any) => {
                json!({ "or": any.iter().map(Self::to_json).collect::<Vec<_>>() })
            }
            CostFilter::Dimension { name, values } => {
                json!({ "dimensions": comparison(name, values) })
            }
            CostFilter::Tag { name, values } => json!({ "tags": comparison(name, values) }),
        }
    }
}

/// A cost query over a custom period (both days included).
#[derive(Debug, Clone, PartialEq)]
pub struct CostQuery {
    pub cost_type: CostType,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub granularity: CostGranularity,
    /// The cost column summed: `Cost` (the default) or `PreTaxCost` (older
    /// pay-as-you-go scopes).
    pub cost_column: String,
    pub groupings: Vec<CostGrouping>,
    pub filter: Option<CostFilter>,
}

impl CostQuery {
    /// An ungrouped, unfiltered query summing `Cost`.
    pub fn new(
        cost_type: CostType,
        from: NaiveDate,
        to: NaiveDate,
        granularity: CostGranularity,
    ) -> Self {
        CostQuery {
            cost_type,
            from,
            to,
            granularity,
            cost_column: "Cost".to_string(),
            groupings: Vec::new(),
            filter: None,
        }
    }

    pub fn group_by(mut self, grouping: CostGrouping) -> Self {
        self.groupings.push(grouping);
        self
    }

    pub fn filter(mut self, filter: CostFilter) -> Self {
        self.filter = Some(filter);
        self
    }

    /// The query units Cost Management charges for it: one per month
    /// (31 days) of the period or part of one. The answer's
    /// `qpu-consumed` header corrects the estimate.
    pub fn query_units(&self) -> u32 {
        let days = ((self.to - self.from).num_days() + 1).max(1);
        u32::try_from((days + 30) / 31).unwrap_or(u32::MAX)
    }

    /// What Cost Management would refuse, said before any unit is spent.
    fn check(&self) -> Result<(), AzureError> {
        let invalid = |why: String| Err(AzureError::InvalidRequest(why));
        if self.from > self.to {
            return invalid(format!(
                "the period starts ({}) after it ends ({})",
                self.from, self.to
            ));
        }
        if (self.to - self.from).num_days() + 1 > MAX_DAYS {
            return invalid(format!(
                "the period {} to {} is longer than Cost Management's {MAX_DAYS} days",
                self.from, self.to
            ));
        }
        if self.groupings.len() > 2 {
            return invalid(format!(
                "{} groupings asked; Cost Management allows at most 2",
                self.groupings.len()
            ));
        }
        if self.cost_column.trim().is_empty() {
            return invalid("the cost column is empty".to_string());
        }
        Ok(())
    }

    /// The request body; the same for every page.
    fn body(&self) -> Value {
        let kind = match self.cost_type {
            CostType::ActualCost => "ActualCost",
            CostType::AmortizedCost => "AmortizedCost",
            CostType::Usage => "Usage",
        };
        let granularity = match self.granularity {
            CostGranularity::Daily => "Daily",
            CostGranularity::Monthly => "Monthly",
            CostGranularity::None => "None",
        };
        let grouping: Vec<Value> = self
            .groupings
            .iter()
            .map(|g| match g {
                CostGrouping::Dimension(name) => json!({"type": "Dimension", "name": name}),
                CostGrouping::TagKey(name) => json!({"type": "TagKey", "name": name}),
            })
            .collect();
        let mut dataset = json!({
            "granularity": granularity,
            "aggregation": {"totalCost": {"name": self.cost_column.trim(), "function": "Sum"}},
        });
        if !grouping.is_empty() {
            dataset["grouping"] = Value::Array(grouping);
        }
        if let Some(filter) = &self.filter {
            dataset["filter"] = filter.to_json();
        }
        json!({
            "type": kind,
            "timeframe": "Custom",
            "timePeriod": {
                "from": format!("{}T00:00:00Z", self.from),
                "to": format!("{}T23:59:59Z", self.to),
            },
            "dataset": dataset,
        })
    }
}

/// One row of a cost query's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct CostRow {
    /// The day (`Daily`), the first day of the billing month (`Monthly`),
    /// `None` without granularity.
    pub date: Option<NaiveDate>,
    pub cost: f64,
    /// `USD`, `EUR`, ...; empty when the answer has no currency column.
    pub currency: String,
    /// Dimension groupings by column name (`ResourceId` → its id). Cost
    /// Management lower-cases resource ids and groups.
    pub groups: BTreeMap<String, String>,
    /// Tag groupings: tag key → value. A row whose resources lack the tag
    /// has no entry.
    pub tags: BTreeMap<String, String>,
}

/// What each column of a page holds.
enum Column {
    Cost,
    Date,
    Currency,
    TagKey,
    TagValue,
    Group(String),
    /// A second cost column, or one without a name.
    Ignored,
}

fn columns_of(columns: &[Value], cost_column: &str) -> Result<Vec<Column>, AzureError> {
    let names: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Value::Object(o) => o.get("name").and_then(Value::as_str).unwrap_or_default(),
            Value::String(s) => s.as_str(),
            _ => "",
        })
        .map(|n| n.trim().to_string())
        .collect();
    let is = |set: &[&str], n: &str| set.iter().any(|s| s.eq_ignore_ascii_case(n));
    // The aggregation asked for, else the first column that holds a cost.
    let cost_at = names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(cost_column))
        .or_else(|| names.iter().position(|n| is(COST_COLUMNS, n)))
        .ok_or_else(|| {
            AzureError::Malformed(format!(
                "a cost query answer without a cost column: {}",
                truncate_raw(&Value::Array(columns.to_vec()).to_string())
            ))
        })?;
    Ok(names
        .into_iter()
        .enumerate()
        .map(|(i, n)| match n.as_str() {
            _ if i == cost_at => Column::Cost,
            n if n.is_empty() || is(COST_COLUMNS, n) => Column::Ignored,
            n if is(DATE_COLUMNS, n) => Column::Date,
            n if is(CURRENCY_COLUMNS, n) => Column::Currency,
            n if n.eq_ignore_ascii_case("TagKey") => Column::TagKey,
            n if n.eq_ignore_ascii_case("TagValue") => Column::TagValue,
            _ => Column::Group(n),
        })
        .collect())
}

/// `UsageDate` as a number (20240131) or a string of one, or a date or
/// datetime string (`BillingMonth`: "2024-01-01T00:00:00"), or a month
/// (202401).
fn date_of(v: &Value) -> Option<NaiveDate> {
    let text = match v {
        Value::Number(n) => n.as_u64()?.to_string(),
        Value::String(s) => s.trim().to_string(),
        _ => return None,
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    match text.len() {
        8 if digits(&text) => NaiveDate::parse_from_str(&text, "%Y%m%d").ok(),
        6 if digits(&text) => NaiveDate::parse_from_str(&format!("{text}01"), "%Y%m%d").ok(),
        _ => NaiveDate::parse_from_str(text.get(..10)?, "%Y-%m-%d").ok(),
    }
}

fn cell_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn row_from(row: &Value, columns: &[Column]) -> Result<CostRow, AzureError> {
    let malformed = |why: &str| {
        AzureError::Malformed(format!(
            "a cost row {why}: {}",
            truncate_raw(&row.to_string())
        ))
    };
    let cells = row.as_array().ok_or_else(|| malformed("is not a list"))?;
    if cells.len() != columns.len() {
        return Err(malformed(&format!(
            "has {} cells for {} columns",
            cells.len(),
            columns.len()
        )));
    }
    let mut out = CostRow {
        date: None,
        cost: 0.0,
        currency: String::new(),
        groups: BTreeMap::new(),
        tags: BTreeMap::new(),
    };
    let mut tag_key = String::new();
    for (cell, column) in cells.iter().zip(columns) {
        match column {
            Column::Cost => {
                out.cost = number(Some(cell)).ok_or_else(|| malformed("has no cost"))?
            }
            Column::Date => out.date = Some(date_of(cell).ok_or_else(|| malformed("has no date"))?),
            Column::Currency => out.currency = cell_text(cell),
            Column::TagKey => tag_key = cell_text(cell),
            Column::TagValue => {
                let key = std::mem::take(&mut tag_key);
                if !key.is_empty() {
                    out.tags.insert(key, cell_text(cell));
                }
            }
            Column::Group(name) => {
                out.groups.insert(name.clone(), cell_text(cell));
            }
            Column::Ignored => {}
        }
    }
    Ok(out)
}

/// A page: `properties.columns`, `properties.rows` and `properties.nextLink`.
fn cost_page(page: &Value, cost_column: &str) -> Result<Page<CostRow>, AzureError> {
    let props = page.get("properties").unwrap_or(&Value::Null);
    let rows = match props.get("rows") {
        Some(Value::Array(rows)) => rows.as_slice(),
        None | Some(Value::Null) => &[],
        Some(other) => {
            return Err(AzureError::Malformed(format!(
                "'rows' is not a list: {}",
                truncate_raw(&other.to_string())
            )));
        }
    };
    let items = if rows.is_empty() {
        Vec::new()
    } else {
        let columns = props
            .get("columns")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let columns = columns_of(columns, cost_column)?;
        rows.iter()
            .map(|r| row_from(r, &columns))
            .collect::<Result<_, _>>()?
    };
    Ok(Page {
        items,
        next: link(props.get("nextLink")),
    })
}

impl AzureClient {
    /// Runs a cost query at a scope (`/subscriptions/{s}` or a resource
    /// group) and streams its rows, a page at a time. A 204 (no data for the
    /// period) is an empty stream. The query is paced by the tenant's
    /// remaining query units; a wait beyond the client's bound is
    /// `AzureError::Throttled`, and a query Cost Management would refuse
    /// (more than two groupings, a period over a year) is
    /// `AzureError::InvalidRequest`, both without a request.
    pub fn cost_query<'a>(
        &'a self,
        token: &'a AccessToken,
        scope: &str,
        query: &CostQuery,
    ) -> Paged<'a, CostRow> {
        let first = query.check().and_then(|()| {
            let url = self.scope_url(
                scope,
                &["providers", "Microsoft.CostManagement", "query"],
                &[("api-version", COST_API)],
            )?;
            Ok(PageRequest {
                qpu_units: Some(query.query_units()),
                ..PageRequest::post(url, query.body())
            })
        });
        let cost_column = query.cost_column.trim().to_string();
        self.paged(
            token,
            first,
            tree(move |page| cost_page(page, &cost_column)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
    }

    #[test]
    fn reads_the_examples_rows() {
        // Query_Usage_SubscriptionDailyFilter.json (PreTaxCost, lower-cased group).
        let page = json!({"id": "subscriptions/0/providers/Microsoft.CostManagement/Query/0",
            "properties": {"nextLink": null,
                "columns": [{"name": "PreTaxCost", "type": "Number"}, {"name": "ResourceGroup", "type": "String"},
                    {"name": "UsageDate", "type": "Number"}, {"name": "Currency", "type": "String"}],
                "rows": [[2.10333307059661, "ScreenSharingTest-peer", 20180331, "USD"],
                    [0.14384913581657052, "ssbciotelement01", 20180401, "USD"]]}});
        let p = cost_page(&page, "Cost").expect("page");
        assert!(p.next.is_none());
        assert_eq!(p.items.len(), 2);
        let r = &p.items[1];
        assert_eq!(r.date, Some(day("2018-04-01")));
        assert_eq!(r.currency, "USD");
        assert_eq!(
            r.groups.get("ResourceGroup").map(String::as_str),
            Some("ssbciotelement01")
        );
        assert!((r.cost - 0.14384913581657052).abs() < 1e-12);
        // Monthly, two tag groupings, a string cost, and a nextLink.
        let page = json!({"properties": {"nextLink": "https://arm/x?$skiptoken=1",
            "columns": [{"name": "Cost"}, {"name": "TagKey"}, {"name": "TagValue"}, {"name": "TagKey"},
                {"name": "TagValue"}, {"name": "BillingMonth"}, {"name": "Currency"}],
            "rows": [["1.5", "env", "prod", "", "", "2026-10-01T00:00:00", "EUR"]]}});
        let p = cost_page(&page, "Cost").expect("page");
        let r = &p.items[0];
        assert_eq!(r.date, Some(day("2026-10-01")));
        assert_eq!(r.tags.len(), 1);
        assert_eq!(r.tags.get("env").map(String::as_str), Some("prod"));
        assert!(r.groups.is_empty());
        assert!(p.next.is_some());
        // 204's cousin: no rows, no columns.
        assert!(
            cost_page(&json!({"properties": {"rows": []}}), "Cost")
                .expect("empty")
                .items
                .is_empty()
        );
        for bad in [
            json!({"properties": {"columns": [{"name": "Currency"}], "rows": [["USD"]]}}),
            json!({"properties": {"columns": [{"name": "Cost"}], "rows": [[1, 2]]}}),
            json!({"properties": {"columns": [{"name": "Cost"}, {"name": "UsageDate"}], "rows": [[1, "soon"]]}}),
        ] {
            assert!(
                matches!(cost_page(&bad, "Cost"), Err(AzureError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn builds_and_checks_queries() {
        let q = CostQuery::new(
            CostType::AmortizedCost,
            day("2026-10-01"),
            day("2026-10-31"),
            CostGranularity::Daily,
        )
        .group_by(CostGrouping::Dimension("ResourceId".into()))
        .group_by(CostGrouping::TagKey("env".into()))
        .filter(CostFilter::Or(vec![
            CostFilter::Dimension {
                name: "ResourceLocation".into(),
                values: vec!["westeurope".into()],
            },
            CostFilter::Tag {
                name: "env".into(),
                values: vec!["prod".into()],
            },
        ]));
        let body = q.body();
        assert_eq!(body["type"], "AmortizedCost");
        assert_eq!(body["timeframe"], "Custom");
        assert_eq!(body["timePeriod"]["to"], "2026-10-31T23:59:59Z");
        assert_eq!(body["dataset"]["aggregation"]["totalCost"]["name"], "Cost");
        assert_eq!(
            body["dataset"]["grouping"][1],
            json!({"type": "TagKey", "name": "env"})
        );
        assert_eq!(body["dataset"]["filter"]["or"][1]["tags"]["operator"], "In");
        assert_eq!(q.query_units(), 1);
        assert!(q.check().is_ok());
        let two_months = CostQuery::new(
            CostType::ActualCost,
            day("2026-09-01"),
            day("2026-10-31"),
            CostGranularity::None,
        );
        assert_eq!(two_months.query_units(), 2);
        for bad in [
            q.clone().group_by(CostGrouping::Dimension("Meter".into())),
            CostQuery::new(
                CostType::ActualCost,
                day("2026-10-02"),
                day("2026-10-01"),
                CostGranularity::None,
            ),
            CostQuery::new(
                CostType::ActualCost,
                day("2025-01-01"),
                day("2026-10-01"),
                CostGranularity::None,
            ),
        ] {
            assert!(
                matches!(bad.check(), Err(AzureError::InvalidRequest(_))),
                "{bad:?}"
            );
        }
        assert_eq!(date_of(&json!("20240131")), Some(day("2024-01-31")));
        assert_eq!(date_of(&json!(202401)), Some(day("2024-01-01")));
        assert_eq!(
            date_of(&json!("2024-01-31T00:00:00Z")),
            Some(day("2024-01-31"))
        );
        assert_eq!(date_of(&json!(null)), None);
    }
}
