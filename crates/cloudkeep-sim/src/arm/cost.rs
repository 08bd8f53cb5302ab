//! Microsoft.CostManagement query: ActualCost and AmortizedCost, Daily,
//! Monthly or no granularity, up to two groupings by dimension or tag key,
//! filters, `nextLink` paging, and query-unit throttling per tenant.
//!
//! Rows are computed from the cost model on demand; a computed result is
//! cached (a few entries) so that following its `nextLink`s is cheap.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use axum::http::{HeaderValue, StatusCode};
use chrono::{Datelike, Duration, NaiveDate};
use serde_json::{Value, json};

use super::{ArmError, ArmResult, Ctx, decode_offset, encode_offset};
use crate::faults::CostHeaders;
use crate::server::json;
use crate::world::cost::{self, catalogue::Meter};
use crate::world::{Resource, World};

/// Rows per page, as Cost Management pages.
pub const PAGE_ROWS: usize = 1000;
const CACHE_ENTRIES: usize = 4;

const DIMENSIONS: &[&str] = &[
    "ResourceId",
    "ResourceGroup",
    "ResourceGroupName",
    "ServiceName",
    "MeterCategory",
    "MeterSubCategory",
    "Meter",
    "MeterId",
    "ResourceLocation",
    "ResourceType",
    "SubscriptionId",
    "SubscriptionName",
    "ChargeType",
    "PricingModel",
    "PublisherType",
];

fn bad(message: impl std::fmt::Display) -> ArmError {
    ArmError::bad_request("BadRequest", format!("Invalid query definition: {message}"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    None,
    Daily,
    Monthly,
}

#[derive(Debug, Clone, PartialEq)]
enum Grouping {
    Dimension(&'static str),
    TagKey(String),
}

#[derive(Debug, Clone)]
enum Filter {
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
    Dimension {
        name: &'static str,
        op: FilterOp,
        values: Vec<String>,
    },
    Tag {
        name: String,
        op: FilterOp,
        values: Vec<String>,
    },
}

#[derive(Debug, Clone, Copy)]
enum FilterOp {
    In,
    Contains,
}

#[derive(Debug, Clone)]
struct Query {
    amortized: bool,
    from: NaiveDate,
    to: NaiveDate,
    granularity: Granularity,
    aggregations: Vec<String>,
    groupings: Vec<Grouping>,
    filter: Option<Filter>,
}

fn dimension(name: &str) -> Result<&'static str, ArmError> {
    DIMENSIONS
        .iter()
        .find(|d| d.eq_ignore_ascii_case(name))
        .copied()
        .ok_or_else(|| {
            bad(format!(
                "Invalid dimension name '{name}'. Valid dimensions: {}.",
                DIMENSIONS.join(", ")
            ))
        })
}

fn parse_date(v: &Value, field: &str) -> Result<NaiveDate, ArmError> {
    let s = v
        .as_str()
        .ok_or_else(|| bad(format!("timePeriod.{field} is required.")))?;
    let day = s.get(..10).unwrap_or(s);
    NaiveDate::parse_from_str(day, "%Y-%m-%d")
        .map_err(|_| bad(format!("timePeriod.{field} '{s}' is not a date.")))
}

fn parse_filter(v: &Value) -> Result<Filter, ArmError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("filter must be an object."))?;
    let list = |key: &str| -> Result<Vec<Filter>, ArmError> {
        obj.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| bad(format!("filter.{key} must be an array.")))?
            .iter()
            .map(parse_filter)
            .collect()
    };
    if obj.contains_key("and") {
        return Ok(Filter::And(list("and")?));
    }
    if obj.contains_key("or") {
        return Ok(Filter::Or(list("or")?));
    }
    if let Some(inner) = obj.get("not") {
        return Ok(Filter::Not(Box::new(parse_filter(inner)?)));
    }
    let comparison = |c: &Value| -> Result<(String, FilterOp, Vec<String>), ArmError> {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a filter comparison needs a name."))?;
        let op = match c.get("operator").and_then(Value::as_str).unwrap_or("In") {
            o if o.eq_ignore_ascii_case("In") || o.eq_ignore_ascii_case("Equal") => FilterOp::In,
            o if o.eq_ignore_ascii_case("Contains") => FilterOp::Contains,
            o => return Err(bad(format!("Invalid filter operator '{o}'."))),
        };
        let values = c
            .get("values")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("a filter comparison needs values."))?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        Ok((name.to_string(), op, values))
    };
    if let Some(d) = obj.get("dimensions").or_else(|| obj.get("dimension")) {
        let (name, op, values) = comparison(d)?;
        return Ok(Filter::Dimension {
            name: dimension(&name)?,
            op,
            values,
        });
    }
    if let Some(t) = obj.get("tags").or_else(|| obj.get("tag")) {
        let (name, op, values) = comparison(t)?;
        return Ok(Filter::Tag { name, op, values });
    }
    Err(bad("filter must use and, or, not, dimensions or tags."))
}

fn month_start(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn parse_query(body: &Value, today: NaiveDate) -> Result<Query, ArmError> {
    let kind = body
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("type is required (ActualCost, AmortizedCost or Usage)."))?;
    let amortized = match kind.to_ascii_lowercase().as_str() {
        "actualcost" | "usage" => false,
        "amortizedcost" => true,
        _ => {
            return Err(bad(format!(
                "Invalid type '{kind}'. Allowed: Usage, ActualCost, AmortizedCost."
            )));
        }
    };
    let timeframe = body
        .get("timeframe")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("timeframe is required."))?;
    let (from, to) = match timeframe.to_ascii_lowercase().as_str() {
        "custom" => {
            let period = body
                .get("timePeriod")
                .ok_or_else(|| bad("timePeriod is required when timeframe is Custom."))?;
            (
                parse_date(&period["from"], "from")?,
                parse_date(&period["to"], "to")?,
            )
        }
        "monthtodate" | "billingmonthtodate" => (month_start(today), today),
        "thelastmonth" | "thelastbillingmonth" => {
            let end = month_start(today) - Duration::days(1);
            (month_start(end), end)
        }
        "weektodate" => (
            today - Duration::days(i64::from(today.weekday().num_days_from_monday())),
            today,
        ),
        _ => return Err(bad(format!("Invalid timeframe '{timeframe}'."))),
    };
    if from > to {
        return Err(bad("timePeriod.from must not be after timePeriod.to."));
    }
    if (to - from).num_days() > 366 {
        return Err(bad(
            "The time period for pulling the data cannot exceed 1 year(s).",
        ));
    }
    let dataset = body
        .get("dataset")
        .ok_or_else(|| bad("Dataset is invalid or not supplied."))?;
    let granularity = match dataset
        .get("granularity")
        .and_then(Value::as_str)
        .unwrap_or("None")
    {
        g if g.eq_ignore_ascii_case("Daily") => Granularity::Daily,
        g if g.eq_ignore_ascii_case("Monthly") => Granularity::Monthly,
        g if g.eq_ignore_ascii_case("None") => Granularity::None,
        g => {
            return Err(bad(format!(
                "Invalid granularity '{g}'. Allowed: Daily, Monthly, None."
            )));
        }
    };
    let mut aggregations = Vec::new();
    if let Some(aggs) = dataset.get("aggregation").and_then(Value::as_object) {
        for (alias, agg) in aggs {
            let name = agg.get("name").and_then(Value::as_str).unwrap_or(alias);
            let function = agg.get("function").and_then(Value::as_str).unwrap_or("Sum");
            if !function.eq_ignore_ascii_case("Sum") {
                return Err(bad(format!(
                    "Invalid aggregation function '{function}' for '{alias}'; only Sum is supported."
                )));
            }
            if !["Cost", "PreTaxCost", "CostUSD", "PreTaxCostUSD"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(name))
            {
                return Err(bad(format!("Invalid aggregation column '{name}'.")));
            }
            aggregations.push(name.to_string());
        }
    }
    // Without an aggregation Azure answers only the date and currency
    // columns (AZURE.md); the cost column is named after the aggregated
    // column (`Cost`, `PreTaxCost`), not the alias.
    let mut groupings = Vec::new();
    if let Some(groups) = dataset.get("grouping").and_then(Value::as_array) {
        if groups.len() > 2 {
            return Err(bad("Maximum allowed number of groupings is 2."));
        }
        for g in groups {
            let kind = g.get("type").and_then(Value::as_str).unwrap_or("Dimension");
            let name = g
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("a grouping needs a name."))?;
            groupings.push(match kind.to_ascii_lowercase().as_str() {
                "dimension" => Grouping::Dimension(dimension(name)?),
                "tagkey" => Grouping::TagKey(name.to_string()),
                _ => {
                    return Err(bad(format!(
                        "Invalid grouping type '{kind}'. Allowed: Dimension, TagKey."
                    )));
                }
            });
        }
    }
    let filter = dataset.get("filter").map(parse_filter).transpose()?;
    Ok(Query {
        amortized,
        from,
        to,
        granularity,
        aggregations,
        groupings,
        filter,
    })
}

/// What a cost line is, for grouping and filtering: constant over days.
struct LineKind<'a> {
    resource: Option<&'a Resource>,
    meter: &'static Meter,
    subscription_id: &'a str,
    subscription_name: &'a str,
    charge_type: &'static str,
    pricing_model: &'static str,
}

impl LineKind<'_> {
    fn dimension(&self, d: &str) -> String {
        let r = self.resource;
        match d {
            "ResourceId" => r.map(|r| r.id.to_ascii_lowercase()).unwrap_or_default(),
            "ResourceGroup" => r
                .map(|r| r.resource_group.to_ascii_lowercase())
                .unwrap_or_default(),
            "ResourceGroupName" => r.map(|r| r.resource_group.clone()).unwrap_or_default(),
            "ServiceName" => self.meter.service_name.to_string(),
            "MeterCategory" => self.meter.meter_category.to_string(),
            "MeterSubCategory" => self.meter.meter_subcategory.to_string(),
            "Meter" => self.meter.meter.to_string(),
            "MeterId" => meter_id(self.meter),
            "ResourceLocation" => r
                .map(|r| r.location.to_ascii_lowercase())
                .unwrap_or_default(),
            "ResourceType" => r
                .map(|r| r.resource_type.to_ascii_lowercase())
                .unwrap_or_default(),
            "SubscriptionId" => self.subscription_id.to_string(),
            "SubscriptionName" => self.subscription_name.to_string(),
            "ChargeType" => self.charge_type.to_string(),
            "PricingModel" => self.pricing_model.to_string(),
            "PublisherType" => {
                if std::ptr::eq(self.meter, &cost::catalogue::MARKETPLACE) {
                    "Marketplace".to_string()
                } else {
                    "Azure".to_string()
                }
            }
            _ => String::new(),
        }
    }

    fn tag(&self, key: &str) -> Option<(&str, &str)> {
        self.resource?
            .tags
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn matches(&self, f: &Filter) -> bool {
        let test = |op: FilterOp, actual: &str, values: &[String]| match op {
            FilterOp::In => values.iter().any(|v| v.eq_ignore_ascii_case(actual)),
            FilterOp::Contains => values.iter().any(|v| {
                actual
                    .to_ascii_lowercase()
                    .contains(&v.to_ascii_lowercase())
            }),
        };
        match f {
            Filter::And(fs) => fs.iter().all(|f| self.matches(f)),
            Filter::Or(fs) => fs.iter().any(|f| self.matches(f)),
            Filter::Not(f) => !self.matches(f),
            Filter::Dimension { name, op, values } => test(*op, &self.dimension(name), values),
            Filter::Tag { name, op, values } => {
                self.tag(name).is_some_and(|(_, v)| test(*op, v, values))
            }
        }
    }
}

/// A computed result: its columns and all its rows, in order.
#[derive(Debug)]
pub struct QueryResult {
    columns: Vec<Value>,
    rows: Vec<Value>,
}

#[derive(Debug, Default)]
pub struct Cache {
    entries: VecDeque<(String, Arc<QueryResult>)>,
}

impl Cache {
    fn get(&self, key: &str) -> Option<Arc<QueryResult>> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, r)| r.clone())
    }

    fn insert(&mut self, key: String, result: Arc<QueryResult>) {
        if self.entries.len() >= CACHE_ENTRIES {
            self.entries.pop_front();
        }
        self.entries.push_back((key, result));
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

fn in_scope(r: &Resource, scope: &str) -> bool {
    crate::world::scope_contains(scope, &r.id)
}

/// A meter's id: a stable GUID per meter, as Azure's are global.
fn meter_id(m: &Meter) -> String {
    crate::world::posture_guid(
        0,
        &format!(
            "meter:{}|{}|{}",
            m.meter_category, m.meter_subcategory, m.meter
        ),
    )
}

/// Sums of cost per (group key, time bucket), in micro-dollars.
struct Sums<'q> {
    q: &'q Query,
    key_ids: HashMap<Vec<String>, u32>,
    keys: Vec<Vec<String>>,
    sums: HashMap<(u32, u32), i64>,
}

impl<'q> Sums<'q> {
    fn new(q: &'q Query) -> Self {
        Sums {
            q,
            key_ids: HashMap::new(),
            keys: Vec::new(),
            sums: HashMap::new(),
        }
    }

    fn bucket(&self, d: NaiveDate) -> u32 {
        match self.q.granularity {
            Granularity::Daily => d.year() as u32 * 10_000 + d.month() * 100 + d.day(),
            Granularity::Monthly => d.year() as u32 * 100 + d.month(),
            Granularity::None => 0,
        }
    }

    /// The group a line kind falls in, or `None` when the filter drops it.
    /// Group keys are constant over days, so they are interned once.
    fn group(&mut self, kind: &LineKind) -> Option<u32> {
        if !self.q.filter.as_ref().is_none_or(|f| kind.matches(f)) {
            return None;
        }
        let mut key = Vec::with_capacity(self.q.groupings.len() * 2);
        for g in &self.q.groupings {
            match g {
                Grouping::Dimension(d) => key.push(kind.dimension(d)),
                Grouping::TagKey(k) => {
                    let (tk, tv) = kind
                        .tag(k)
                        .map(|(a, b)| (a.to_string(), b.to_string()))
                        .unwrap_or_default();
                    key.push(tk);
                    key.push(tv);
                }
            }
        }
        if let Some(id) = self.key_ids.get(&key) {
            return Some(*id);
        }
        let id = self.keys.len() as u32;
        self.key_ids.insert(key.clone(), id);
        self.keys.push(key);
        Some(id)
    }

    fn add(&mut self, group: Option<u32>, day: NaiveDate, micros: i64) {
        if let Some(id) = group {
            let b = self.bucket(day);
            *self.sums.entry((id, b)).or_insert(0) += micros;
        }
    }
}

fn compute(world: &World, scope: &str, q: &Query) -> QueryResult {
    let from = q.from.max(world.cost_start());
    let to = q.to.min(world.today());
    let mut sums = Sums::new(q);
    let mut lines = Vec::new();
    let days = || {
        let mut d = from;
        std::iter::from_fn(move || {
            (d <= to).then(|| {
                let day = d;
                d += Duration::days(1);
                day
            })
        })
    };
    let kind = |resource, meter, sid, sname, charge_type, pricing_model| LineKind {
        resource,
        meter,
        subscription_id: sid,
        subscription_name: sname,
        charge_type,
        pricing_model,
    };
    if from <= to {
        for r in world.resources.iter().filter(|r| in_scope(r, scope)) {
            let meters = cost::catalogue::meters(&r.resource_type);
            if meters.is_empty() {
                continue;
            }
            let (sid, sname) = world
                .subscription(&r.subscription_id)
                .map(|s| (s.id.as_str(), s.display_name.as_str()))
                .unwrap_or(("", ""));
            let events = cost::events_for(&world.cost_events, r);
            // Usage lines, one group per meter.
            let groups: Vec<(&'static Meter, Option<u32>)> = meters
                .iter()
                .map(|m| {
                    let model = if cost::is_reserved(r, m) {
                        "Reservation"
                    } else {
                        "OnDemand"
                    };
                    (m, sums.group(&kind(Some(r), m, sid, sname, "Usage", model)))
                })
                .collect();
            // The reservation's rows carry no resource: its purchase in
            // actual cost, its unused part in amortised cost.
            let mut reservation = |wanted: bool, charge_type| {
                (r.cost.reserved && wanted)
                    .then(|| {
                        let m = &cost::catalogue::RESERVATION_PURCHASE;
                        sums.group(&kind(None, m, sid, sname, charge_type, "Reservation"))
                    })
                    .flatten()
            };
            let purchase = reservation(!q.amortized, "Purchase");
            let unused = reservation(q.amortized, "UnusedReservation");
            for day in days() {
                lines.clear();
                cost::resource_day_lines(r, day, cost::factor_on(&events, day), &mut lines);
                for line in &lines {
                    if let Some((_, g)) = groups.iter().find(|(m, _)| std::ptr::eq(*m, line.meter))
                    {
                        let v = if q.amortized {
                            line.amortized
                        } else {
                            line.actual
                        };
                        sums.add(*g, day, v);
                    }
                }
                if let Some(amount) = purchase.and(cost::reservation_purchase(r, day)) {
                    sums.add(purchase, day, amount);
                }
                if let Some(amount) = unused.and(cost::reservation_unused(r, day)) {
                    sums.add(unused, day, amount);
                }
            }
        }
        // Charges with no resource belong to the subscription only.
        if crate::world::scope_is_subscription(scope) {
            if let Some(s) = crate::arm::subscription_of(scope).and_then(|s| world.subscription(s))
            {
                let g = sums.group(&kind(
                    None,
                    &cost::catalogue::MARKETPLACE,
                    &s.id,
                    &s.display_name,
                    "Usage",
                    "OnDemand",
                ));
                let restated: Vec<&cost::CostEvent> = world
                    .cost_events
                    .iter()
                    .filter(|e| e.kind == cost::EventKind::Restatement)
                    .filter(|e| crate::world::scope_contains(&e.scope, scope))
                    .collect();
                for day in days() {
                    let amount = cost::unassigned_day(world.seed, &s.id, day) as f64
                        * cost::factor_on(&restated, day);
                    sums.add(g, day, amount.round() as i64);
                }
            }
        }
    }

    let mut columns: Vec<Value> = q
        .aggregations
        .iter()
        .map(|a| json!({"name": a, "type": "Number"}))
        .collect();
    for g in &q.groupings {
        match g {
            Grouping::Dimension(d) => columns.push(json!({"name": d, "type": "String"})),
            Grouping::TagKey(_) => {
                columns.push(json!({"name": "TagKey", "type": "String"}));
                columns.push(json!({"name": "TagValue", "type": "String"}));
            }
        }
    }
    match q.granularity {
        Granularity::Daily => columns.push(json!({"name": "UsageDate", "type": "Number"})),
        Granularity::Monthly => columns.push(json!({"name": "BillingMonth", "type": "Datetime"})),
        Granularity::None => {}
    }
    columns.push(json!({"name": "Currency", "type": "String"}));

    let Sums { keys, sums, .. } = sums;
    let mut entries: Vec<((u32, u32), i64)> = sums.into_iter().collect();
    entries.sort_by(|((ka, da), _), ((kb, db), _)| {
        da.cmp(db)
            .then_with(|| keys[*ka as usize].cmp(&keys[*kb as usize]))
    });
    let rows = entries
        .into_iter()
        .map(|((key, date), micros)| {
            let cost = micros as f64 / 1e6;
            let mut row: Vec<Value> = q.aggregations.iter().map(|_| json!(cost)).collect();
            row.extend(keys[key as usize].iter().map(|k| json!(k)));
            match q.granularity {
                Granularity::Daily => row.push(json!(date)),
                Granularity::Monthly => row.push(json!(format!(
                    "{:04}-{:02}-01T00:00:00",
                    date / 100,
                    date % 100
                ))),
                Granularity::None => {}
            }
            row.push(json!("USD"));
            Value::Array(row)
        })
        .collect();
    QueryResult { columns, rows }
}

type Headers = Vec<(&'static str, String)>;

/// The documented family: query units per tenant, charged on a query's
/// first page (following its `nextLink` is free).
fn qpu_throttle(ctx: &Ctx, tenant: &str, q: &Query, continuing: bool) -> Result<Headers, ArmError> {
    if continuing {
        return Ok(vec![(
            "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed",
            "0".into(),
        )]);
    }
    match ctx.st.throttle.take_qpu(tenant, qpu(q)) {
        Ok((consumed, remaining)) => Ok(vec![
            (
                "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed",
                consumed.to_string(),
            ),
            (
                "x-ms-ratelimit-microsoft.costmanagement-qpu-remaining",
                format!("QueryResource={remaining}, Tenant={remaining}"),
            ),
        ]),
        Err(wait) => {
            let mut e = too_many(wait);
            e.headers.push((
                "x-ms-ratelimit-microsoft.costmanagement-qpu-retry-after",
                wait.to_string(),
            ));
            e.headers.push((
                "x-ms-ratelimit-microsoft.costmanagement-qpu-consumed",
                "0".into(),
            ));
            Err(e)
        }
    }
}

/// The family in recorded real answers: requests per scope and per tenant
/// in a sliding minute, every request counted (pages too); successful
/// answers carry what is left and when each window resets.
fn entity_throttle(ctx: &Ctx, scope: &str, tenant: &str) -> Result<Headers, ArmError> {
    match ctx.st.throttle.take_cost_request(scope, tenant) {
        Ok(c) => Ok(vec![
            (
                "x-ms-ratelimit-microsoft.costmanagement-entity-requests",
                c.entity_remaining.to_string(),
            ),
            (
                "x-ms-ratelimit-microsoft.costmanagement-tenant-requests",
                c.tenant_remaining.to_string(),
            ),
            (
                "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
                c.entity_reset_secs.to_string(),
            ),
            (
                "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
                c.tenant_reset_secs.to_string(),
            ),
        ]),
        Err((which, wait)) => {
            let mut e = too_many(wait);
            let (requests, retry) = if which == "entity" {
                (
                    "x-ms-ratelimit-microsoft.costmanagement-entity-requests",
                    "x-ms-ratelimit-microsoft.costmanagement-entity-retry-after",
                )
            } else {
                (
                    "x-ms-ratelimit-microsoft.costmanagement-tenant-requests",
                    "x-ms-ratelimit-microsoft.costmanagement-tenant-retry-after",
                )
            };
            e.headers.push((requests, "0".into()));
            e.headers.push((retry, wait.to_string()));
            Err(e)
        }
    }
}

fn too_many(wait: u64) -> ArmError {
    let mut e = ArmError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "429",
        format!("Too many requests. Please retry after {wait} seconds."),
    );
    e.headers.push(("retry-after", wait.to_string()));
    e
}

/// Query processing units a query costs: one per month (or part) queried.
fn qpu(q: &Query) -> u32 {
    let days = (q.to - q.from).num_days() + 1;
    (days as f64 / 31.0).ceil().max(1.0) as u32
}

pub fn query(ctx: &Ctx) -> ArmResult {
    let scope = ctx.p("scope");
    let body = ctx.json_body()?;
    let (today, generation, tenant) = {
        let world = ctx.st.world();
        ctx.authorize(&world, "Microsoft.CostManagement/query/read", scope)?;
        let segs: Vec<&str> = scope.trim_matches('/').split('/').collect();
        if segs.len() >= 4 && world.resource_group(segs[1], segs[3]).is_none() {
            return Err(ArmError::not_found(
                "ResourceGroupNotFound",
                format!("Resource group '{}' could not be found.", segs[3]),
            ));
        }
        (world.today(), world.generation, ctx.claims.tid.clone())
    };
    let q = parse_query(&body, today)?;
    let continuation = ctx.q("$skiptoken");
    let throttle_headers = if ctx.st.config.throttle {
        match ctx.st.faults().cost_headers {
            CostHeaders::Qpu => qpu_throttle(ctx, &tenant, &q, continuation.is_some())?,
            CostHeaders::Entity => entity_throttle(ctx, scope, &tenant)?,
        }
    } else {
        Vec::new()
    };
    let cache_key = format!(
        "{}|{}|{}|{}",
        scope.to_ascii_lowercase(),
        body,
        generation,
        today
    );
    let cached = ctx
        .st
        .cost_cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&cache_key);
    let result = match cached {
        Some(r) => r,
        None => {
            let computed = Arc::new(compute(&ctx.st.world(), scope, &q));
            ctx.st
                .cost_cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(cache_key, computed.clone());
            computed
        }
    };
    let offset = match continuation {
        Some(t) => {
            decode_offset(t).ok_or_else(|| bad("The $skiptoken is invalid or has expired."))?
        }
        None => 0,
    };
    let world_start = ctx.st.world().cost_start();
    if result.rows.is_empty() && (q.to < world_start || q.from > today) {
        // Nothing at all in the period: Cost Management answers 204.
        return Ok(json(StatusCode::NO_CONTENT, &Value::Null).map(|_| axum::body::Body::empty()));
    }
    let end = offset
        .min(result.rows.len())
        .saturating_add(PAGE_ROWS)
        .min(result.rows.len());
    let rows = &result.rows[offset.min(end)..end];
    let next_link = if end < result.rows.len() {
        json!(ctx.next_link(&encode_offset(end)))
    } else {
        Value::Null
    };
    let name = ctx.st.random_id();
    let response_body = json!({
        "id": format!("{}/providers/Microsoft.CostManagement/query/{name}", scope.trim_start_matches('/')),
        "name": name,
        "type": "Microsoft.CostManagement/query",
        "location": null,
        "sku": null,
        "eTag": null,
        "properties": {
            "nextLink": next_link,
            "columns": result.columns,
            "rows": rows,
        },
    });
    let mut response = json(StatusCode::OK, &response_body);
    for (name, value) in throttle_headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_daily_grouped_query() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 25).expect("date");
        let q = parse_query(
            &json!({
                "type": "AmortizedCost", "timeframe": "Custom",
                "timePeriod": {"from": "2026-10-01T00:00:00Z", "to": "2026-10-31T23:59:59Z"},
                "dataset": {"granularity": "Daily",
                    "aggregation": {"totalCost": {"name": "Cost", "function": "Sum"}},
                    "grouping": [{"type": "Dimension", "name": "resourceId"}, {"type": "TagKey", "name": "env"}]}
            }),
            today,
        )
        .expect("parses");
        assert!(q.amortized);
        assert_eq!(
            q.groupings,
            vec![
                Grouping::Dimension("ResourceId"),
                Grouping::TagKey("env".into())
            ]
        );
        assert_eq!(qpu(&q), 1);
        let too_long = json!({"type": "ActualCost", "timeframe": "Custom",
            "timePeriod": {"from": "2024-01-01", "to": "2025-06-01"}, "dataset": {"granularity": "Daily"}});
        assert!(parse_query(&too_long, today).is_err());
        let three = json!({"type": "ActualCost", "timeframe": "MonthToDate", "dataset": {"grouping": [
            {"type": "Dimension", "name": "ResourceId"}, {"type": "Dimension", "name": "ServiceName"}, {"type": "Dimension", "name": "Meter"}]}});
        assert!(parse_query(&three, today).is_err());
    }
}
