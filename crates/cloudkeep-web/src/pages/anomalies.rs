//! Spend anomalies: the incidents the detector found (anomalous days of a
//! subscription's service, and first usage on a service or in a region),
//! filtered as the API filters them; one incident with the resources and
//! meters that explain it and its service's daily cost drawn against the
//! expected range; top movers period over period; and the dashboard's
//! card. The incidents and movers are the API's (`list_anomalies`,
//! `get_anomaly`, `get_movers`); the expected range is the domain's own
//! `judge` over the store's usage series, the one the detector reads.

use std::collections::{BTreeSet, HashMap};

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use chrono::{Datelike, Duration, NaiveDate};
use cloudkeep_domain::anomaly::{
    AnomalySettings, ContributorKind, Direction, IncidentKind, MoverDimension, MoverPeriod, judge,
};
use cloudkeep_server::api::anomalies as api;
use cloudkeep_server::api::spend::{parse_spend_query, spend_view};
use cloudkeep_server::wire::{IncidentView, MoversView};
use cloudkeep_server::{AppState, Params};
use serde::Deserialize;

use super::evidence::ChartView;
use crate::charts::{Band, LineChart, Series, Span, Table, Unit};
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, html};
use crate::session::{Web, query, query_with};

/// Incidents a page lists.
const PER_PAGE: &str = "50";

/// The list's filters and the movers' choice, as the query string carries them.
#[derive(Debug, Default, Deserialize)]
pub struct AnomaliesForm {
    /// `open`, `ended`, or nothing (both).
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub subscription: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub after: Option<String>,
    /// Movers: `week` or `month`.
    #[serde(default)]
    pub period: Option<String>,
    /// Movers: `service`, `resource_group` or `resource`.
    #[serde(default)]
    pub by: Option<String>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// An incident's kind as people say it.
fn kind_label(kind: IncidentKind, direction: Direction) -> &'static str {
    match (kind, direction) {
        (IncidentKind::Anomaly, Direction::Up) => "Spike",
        (IncidentKind::Anomaly, Direction::Down) => "Drop",
        (IncidentKind::NewService, _) => "New service",
        (IncidentKind::NewRegion, _) => "New region",
    }
}

fn signed_money(v: f64, currency: &str) -> String {
    if v >= 0.0 {
        format!("+{}", format::money(v, currency))
    } else {
        format!("−{}", format::money(-v, currency))
    }
}

fn signed_percent(v: f64) -> String {
    if v >= 0.0 {
        format!("+{}", format::percent(v))
    } else {
        format!("−{}", format::percent(-v))
    }
}

/// Days as people read them: `Nov 30, 2026`, `Nov 29 – Dec 3, 2026`.
fn period_text(first: NaiveDate, last: NaiveDate) -> String {
    if first == last {
        first.format("%b %-d, %Y").to_string()
    } else if first.year() == last.year() {
        format!("{} – {}", first.format("%b %-d"), last.format("%b %-d, %Y"))
    } else {
        format!(
            "{} – {}",
            first.format("%b %-d, %Y"),
            last.format("%b %-d, %Y")
        )
    }
}

/// An incident as a line of the list (and of the dashboard's card).
pub struct IncidentLine {
    pub id: String,
    pub kind: &'static str,
    /// A class for the badge: `up`, `down`, `new`.
    pub kind_class: &'static str,
    pub subject: String,
    pub subscription: String,
    pub period: String,
    pub expected: String,
    pub actual: String,
    pub delta: String,
    pub z: String,
    pub ended: bool,
}

fn line(i: &IncidentView) -> IncidentLine {
    let money = |v: f64| format::money(v, &i.currency);
    IncidentLine {
        id: i.id.to_string(),
        kind: kind_label(i.kind, i.direction),
        kind_class: match (i.kind, i.direction) {
            (IncidentKind::Anomaly, Direction::Up) => "up",
            (IncidentKind::Anomaly, Direction::Down) => "down",
            _ => "new",
        },
        subject: subject(i),
        subscription: i.subscription_name.clone(),
        period: period_text(i.first_day, i.last_day),
        expected: money(i.expected),
        actual: money(i.actual),
        delta: signed_money(i.delta, &i.currency),
        z: i.max_z
            .map(|z| format!("{z:.1}"))
            .unwrap_or_else(|| "—".into()),
        ended: i.ended,
    }
}

fn subject(i: &IncidentView) -> String {
    i.service
        .clone()
        .or_else(|| i.region.clone())
        .unwrap_or_default()
}

/// A resource's name from its ARM id: the names after the provider
/// namespace (`server/database` for a database), as Azure writes them.
fn arm_name(id: &str) -> String {
    let parts: Vec<&str> = id.split('/').filter(|p| !p.is_empty()).collect();
    match parts
        .iter()
        .rposition(|p| p.eq_ignore_ascii_case("providers"))
    {
        Some(at) if parts.len() > at + 3 => parts[at + 2..]
            .iter()
            .skip(1)
            .step_by(2)
            .copied()
            .collect::<Vec<_>>()
            .join("/"),
        _ => parts.last().copied().unwrap_or(id).to_string(),
    }
}

/// The choices of a filter: a value and its label.
pub type Choice = (String, String);

/// The organisation's live subscriptions, by Azure id, named.
pub async fn subscriptions(state: &AppState, web: &Web) -> Result<Vec<Choice>, Problem> {
    let mut subs: Vec<Choice> = state
        .store
        .subscriptions(&web.auth.scope)
        .await?
        .into_iter()
        .filter(|s| s.is_live())
        .map(|s| {
            let label = format!("{} ({})", s.display_name, s.azure_id);
            (s.azure_id.to_ascii_lowercase(), label)
        })
        .collect();
    subs.sort_by(|a, b| a.1.cmp(&b.1));
    subs.dedup_by(|a, b| a.0 == b.0);
    Ok(subs)
}

/// The values spend has had of a dimension over the last 90 days (at
/// most 100, by cost), as the API's analysis answers them, sorted.
pub async fn known_values(
    state: &AppState,
    web: &Web,
    group_by: &str,
) -> Result<Vec<String>, Problem> {
    let today = state.store.now().date_naive();
    let from = today - Duration::days(89);
    let ask = parse_spend_query(
        Some(&format!(
            "group_by={group_by}&from={from}&to={today}&granularity=month&top=100"
        )),
        today,
    )?;
    let view = spend_view(state, &web.caller(), ask).await?;
    let values: BTreeSet<String> = view
        .series
        .iter()
        .filter(|s| !s.other)
        .filter_map(|s| s.key.first().cloned().flatten())
        .collect();
    Ok(values.into_iter().collect())
}

/// A list of choices with `current` in it, should it be missing (a value
/// from a link, or one no longer seen).
fn with_current(mut choices: Vec<Choice>, current: Option<&str>) -> Vec<Choice> {
    if let Some(c) = current {
        if !choices.iter().any(|(v, _)| v.eq_ignore_ascii_case(c)) {
            choices.push((c.to_string(), c.to_string()));
        }
    }
    choices
}

// ---- the list ----

#[derive(Template)]
#[template(path = "anomalies.html")]
struct AnomaliesPage {
    chrome: Chrome,
    state: String,
    kind: String,
    subscription: String,
    service: String,
    states: &'static [(&'static str, &'static str)],
    kinds: &'static [(&'static str, &'static str)],
    subscriptions: Vec<Choice>,
    services: Vec<Choice>,
    incidents: Vec<IncidentLine>,
    next: Option<String>,
    movers: Movers,
}

const STATES: &[(&str, &str)] = &[("", "Open and ended"), ("open", "Open"), ("ended", "Ended")];
const KINDS: &[(&str, &str)] = &[
    ("", "Every kind"),
    ("anomaly", "Spike or drop"),
    ("new_service", "New service"),
    ("new_region", "New region"),
];
const PERIODS: &[(&str, &str)] = &[("week", "Last 7 days"), ("month", "Last 30 days")];
const BYS: &[(&str, &str)] = &[
    ("service", "Service"),
    ("resource_group", "Resource group"),
    ("resource", "Resource"),
];

/// Top movers as the page shows them.
struct Movers {
    period: String,
    by: String,
    periods: &'static [(&'static str, &'static str)],
    bys: &'static [(&'static str, &'static str)],
    /// What is compared, in words.
    compared: String,
    by_label: &'static str,
    /// The group (and its resource's page), this period, the one before,
    /// the change and the change as a share.
    rows: Vec<MoverRow>,
    /// The filters kept by the movers' form.
    hidden: Vec<(&'static str, String)>,
}

struct MoverRow {
    name: String,
    title: String,
    link: Option<String>,
    current: String,
    previous: String,
    change: String,
    ratio: String,
}

fn parse_name<T: std::str::FromStr<Err = cloudkeep_domain::ParseError>>(
    v: Option<&str>,
) -> Result<Option<T>, Problem> {
    v.map(|v| v.parse::<T>())
        .transpose()
        .map_err(|e| Problem::bad_request(&e.to_string()))
}

pub async fn list(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let form: AnomaliesForm = query(&uri)?;
    let ended = match given(&form.state) {
        None => None,
        Some("open") => Some(false),
        Some("ended") => Some(true),
        Some(other) => {
            return Err(Problem::bad_request(&format!(
                "'{other}' is not a state: open or ended"
            )));
        }
    };
    let kind: Option<IncidentKind> = parse_name(given(&form.kind))?;
    let Json(page) = api::list_anomalies(
        State(state.clone()),
        web.caller(),
        Params(api::AnomaliesQuery {
            subscription: given(&form.subscription).map(str::to_string),
            kind,
            from: None,
            to: None,
            ended,
            service: given(&form.service).map(str::to_string),
            limit: Some(PER_PAGE.into()),
            after: given(&form.after).map(str::to_string),
        }),
    )
    .await?;
    let movers = movers(&state, &web, &form).await?;
    let services: Vec<Choice> = known_values(&state, &web, "service")
        .await?
        .into_iter()
        .map(|s| (s.clone(), s))
        .collect();
    let chrome = Chrome::new(&web, "Spend anomalies", Section::Anomalies);
    Ok(html(&AnomaliesPage {
        chrome,
        state: given(&form.state).unwrap_or("").to_string(),
        kind: given(&form.kind).unwrap_or("").to_string(),
        subscription: given(&form.subscription).unwrap_or("").to_ascii_lowercase(),
        service: given(&form.service).unwrap_or("").to_string(),
        states: STATES,
        kinds: KINDS,
        subscriptions: with_current(
            subscriptions(&state, &web).await?,
            given(&form.subscription),
        ),
        services: with_current(services, given(&form.service)),
        incidents: page.items.iter().map(line).collect(),
        next: page.next.map(|n| {
            format!(
                "/anomalies?{}",
                query_with(&uri, &["after"], &[("after", n.as_str())])
            )
        }),
        movers,
    }))
}

async fn movers(state: &AppState, web: &Web, form: &AnomaliesForm) -> Result<Movers, Problem> {
    let period: MoverPeriod = parse_name(given(&form.period))?.unwrap_or(MoverPeriod::Week);
    let by: MoverDimension = parse_name(given(&form.by))?.unwrap_or(MoverDimension::Service);
    let Json(m): Json<MoversView> = api::get_movers(
        State(state.clone()),
        web.caller(),
        Params(api::MoversQuery {
            period: Some(period),
            by: Some(by),
            to: None,
            top: Some("10".into()),
        }),
    )
    .await?;
    let links = if by == MoverDimension::Resource {
        let ids: Vec<String> = m.movers.iter().filter_map(|x| x.key.clone()).collect();
        state.store.live_resource_ids(&web.auth.scope, &ids).await?
    } else {
        HashMap::new()
    };
    let money = |v: f64| format::money(v, &m.currency);
    let hidden = [
        ("state", &form.state),
        ("subscription", &form.subscription),
        ("service", &form.service),
        ("kind", &form.kind),
    ]
    .into_iter()
    .filter_map(|(k, v)| given(v).map(|v| (k, v.to_string())))
    .collect();
    Ok(Movers {
        period: period.to_string(),
        by: by.to_string(),
        periods: PERIODS,
        bys: BYS,
        compared: format!(
            "{} to {} against {} to {} (effective cost, every charge)",
            m.from, m.to, m.previous_from, m.previous_to
        ),
        by_label: BYS
            .iter()
            .find(|(k, _)| *k == by.as_str())
            .map_or("Group", |(_, l)| l),
        rows: m
            .movers
            .iter()
            .map(|x| {
                let key = x.key.clone().unwrap_or_else(|| "(none)".into());
                MoverRow {
                    name: if by == MoverDimension::Resource {
                        arm_name(&key)
                    } else {
                        key.clone()
                    },
                    link: x
                        .key
                        .as_ref()
                        .and_then(|k| links.get(&k.to_ascii_lowercase()))
                        .map(|id| format!("/resources/{id}")),
                    title: key,
                    current: money(x.current),
                    previous: money(x.previous),
                    change: signed_money(x.change, &m.currency),
                    ratio: x
                        .change_ratio
                        .map(signed_percent)
                        .unwrap_or_else(|| "new".into()),
                }
            })
            .collect(),
        hidden,
    })
}

// ---- one incident ----

#[derive(Template)]
#[template(path = "anomaly.html")]
struct AnomalyPage {
    chrome: Chrome,
    title: String,
    i: IncidentLine,
    kind_note: &'static str,
    subscription_id: String,
    subject_label: &'static str,
    days: String,
    change_share: String,
    detected: String,
    updated: String,
    chart: Option<ChartView>,
    no_chart: &'static str,
    resources: Vec<ContributorRow>,
    meters: Vec<ContributorRow>,
    spend_link: String,
}

struct ContributorRow {
    name: String,
    title: String,
    link: Option<String>,
    expected: String,
    actual: String,
    delta: String,
    share: String,
    /// 0 to 100, for a `<meter>`.
    share_value: u32,
}

pub async fn detail(State(state): State<AppState>, web: Web, Path(id): Path<String>) -> PageResult {
    let Json(i) = api::get_anomaly(State(state.clone()), web.caller(), Path(id)).await?;
    let money = |v: f64| format::money(v, &i.currency);
    let arm_ids: Vec<String> = i
        .contributors
        .iter()
        .filter(|c| c.kind == ContributorKind::Resource && !c.item.is_empty())
        .map(|c| c.item.clone())
        .collect();
    let links = state
        .store
        .live_resource_ids(&web.auth.scope, &arm_ids)
        .await?;
    let row = |c: &cloudkeep_server::wire::ContributorView| {
        let resource = c.kind == ContributorKind::Resource;
        let name = match (&c.name, resource) {
            (Some(n), _) => n.clone(),
            (None, true) if c.item.is_empty() => "(charges with no resource)".into(),
            (None, true) => arm_name(&c.item),
            (None, false) => c.item.clone(),
        };
        ContributorRow {
            name,
            title: c.item.clone(),
            link: resource
                .then(|| links.get(&c.item.to_ascii_lowercase()))
                .flatten()
                .map(|id| format!("/resources/{id}")),
            expected: money(c.expected),
            actual: money(c.actual),
            delta: signed_money(c.delta, &i.currency),
            share: format::percent(c.share),
            share_value: (c.share.clamp(0.0, 1.0) * 100.0).round() as u32,
        }
    };
    let resources = i
        .contributors
        .iter()
        .filter(|c| c.kind == ContributorKind::Resource)
        .map(row)
        .collect();
    let meters = i
        .contributors
        .iter()
        .filter(|c| c.kind == ContributorKind::Meter)
        .map(row)
        .collect();
    let chart = match &i.service {
        Some(service) => service_chart(&state, &web, &i, service).await?,
        None => None,
    };
    let line = line(&i);
    let title = format!("{}: {} in {}", line.kind, line.subject, i.subscription_name);
    let n_days = (i.last_day - i.first_day).num_days() + 1;
    // The spend explorer over the same days and scope, by resource.
    let mut filter = format!("subscription={}", i.subscription);
    match (&i.service, &i.region) {
        (Some(s), _) => filter.push_str(&format!(";service={s}")),
        (None, Some(r)) => filter.push_str(&format!(";region={r}")),
        _ => {}
    }
    let spend_link = format!(
        "/spend?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("metric", "effective")
            .append_pair(
                "from",
                &(i.first_day - Duration::days(28))
                    .format("%Y-%m-%d")
                    .to_string(),
            )
            .append_pair("to", &i.last_day.format("%Y-%m-%d").to_string())
            .append_pair("group_by", "resource")
            .append_pair("filter", &filter)
            .finish()
    );
    let chrome = Chrome::new(&web, title.clone(), Section::Anomalies);
    Ok(html(&AnomalyPage {
        chrome,
        title,
        kind_note: match i.kind {
            IncidentKind::Anomaly => {
                "Days whose usage cost was far from the median of the same weekday over the 4 weeks before (|z| ≥ 3.5 and a large enough change)."
            }
            IncidentKind::NewService => {
                "The subscription's first usage cost on this service, after 6 weeks and more of its cost elsewhere."
            }
            IncidentKind::NewRegion => {
                "The subscription's first usage cost in this region, after 6 weeks and more of its cost elsewhere."
            }
        },
        subscription_id: i.subscription.clone(),
        subject_label: if i.region.is_some() {
            "Region"
        } else {
            "Service"
        },
        days: format!(
            "{} ({n_days} day{})",
            period_text(i.first_day, i.last_day),
            if n_days == 1 { "" } else { "s" }
        ),
        change_share: if i.expected.abs() > 1e-9 {
            format!(
                "{} of the expected cost",
                signed_percent(i.delta / i.expected)
            )
        } else {
            "nothing was expected".into()
        },
        detected: format::when(i.detected_at),
        updated: format::when(i.updated_at),
        no_chart: if i.service.is_some() {
            "No daily cost of this service is stored around these days."
        } else {
            "A new region spans services, so there is no one series to draw; the spend explorer below shows the region's cost."
        },
        chart,
        resources,
        meters,
        spend_link,
        i: line,
    }))
}

/// Days drawn before an incident's first day, and after its last.
const BEFORE: i64 = 28;
const AFTER: i64 = 7;

/// The service's daily usage cost around the incident, with the range the
/// detector expected each day in (expected ± the z threshold × the spread,
/// from the domain's `judge` over the same series the detector reads) and
/// the incident's days marked.
async fn service_chart(
    state: &AppState,
    web: &Web,
    i: &IncidentView,
    service: &str,
) -> Result<Option<ChartView>, Problem> {
    let settings = AnomalySettings::default();
    let today = state.store.now().date_naive();
    let show_from = i.first_day - Duration::days(BEFORE);
    let show_to = (i.last_day + Duration::days(AFTER)).min(today);
    // The detector's history: its 56 days of residuals, each 4 weeks deep.
    let load_from = show_from - Duration::days((settings.window + 28) as i64);
    let Some(series) = state
        .store
        .spend_usage_series_of(
            &web.auth.scope,
            load_from,
            show_to,
            &i.subscription,
            service,
        )
        .await?
    else {
        return Ok(None);
    };
    let verdicts: HashMap<NaiveDate, (f64, f64)> = judge(series.start, &series.values, &settings)
        .into_iter()
        .map(|v| (v.day, (v.expected, v.scale)))
        .collect();
    let mut labels = Vec::new();
    let mut actual = Vec::new();
    let mut expected = Vec::new();
    let (mut low, mut high) = (Vec::new(), Vec::new());
    let mut rows = Vec::new();
    let (mut first, mut last) = (None, None);
    let money = |v: f64| format::money(v, &i.currency);
    let mut day = show_from.max(series.start);
    while day <= show_to {
        let idx = (day - series.start).num_days() as usize;
        let Some(v) = series.values.get(idx).copied() else {
            break;
        };
        let k = labels.len();
        if day >= i.first_day && day <= i.last_day {
            first.get_or_insert(k);
            last = Some(k);
        }
        let judged = verdicts.get(&day).copied();
        let range = judged.map(|(e, s)| (e - settings.z * s, e + settings.z * s));
        labels.push(day.format("%b %-d").to_string());
        actual.push(Some(v));
        expected.push(judged.map(|(e, _)| e));
        low.push(range.map(|r| r.0.max(0.0)));
        high.push(range.map(|r| r.1));
        rows.push(vec![
            day.format("%Y-%m-%d").to_string(),
            money(v),
            judged.map(|(e, _)| money(e)).unwrap_or_else(|| "—".into()),
            range
                .map(|(lo, hi)| format!("{} to {}", money(lo.max(0.0)), money(hi)))
                .unwrap_or_else(|| "—".into()),
            judged
                .map(|(e, s)| format!("{:.1}", (v - e) / s))
                .unwrap_or_else(|| "—".into()),
            if day >= i.first_day && day <= i.last_day {
                "yes".into()
            } else {
                String::new()
            },
        ]);
        day += Duration::days(1);
    }
    if labels.is_empty() {
        return Ok(None);
    }
    let title = format!("{service}: usage cost per day, with the expected range");
    let chart = LineChart {
        id: "incident-chart".into(),
        title: title.clone(),
        description: format!(
            "Daily usage cost (effective) of {service} in {} from {} to {}, against the expected cost (the median of the same weekday over the 4 weeks before) and the range around it that is not an anomaly; the incident's days, {}, are shaded.",
            i.subscription_name,
            show_from.max(series.start),
            show_to,
            period_text(i.first_day, i.last_day)
        ),
        x_name: "Day".into(),
        x_labels: labels,
        series: vec![
            Series {
                name: "Actual".into(),
                values: actual,
                dashed: false,
            },
            Series {
                name: "Expected".into(),
                values: expected,
                dashed: true,
            },
        ],
        unit: Unit::Money(i.currency.clone()),
        reference: None,
    };
    let band = Band {
        name: "Expected range".into(),
        low,
        high,
    };
    let span = first.zip(last).map(|(first, last)| Span {
        name: format!("The incident, {}", period_text(i.first_day, i.last_day)),
        first,
        last,
    });
    Ok(Some(ChartView {
        svg: chart.svg_with(Some(&band), span.as_ref()),
        table: Table {
            caption: title,
            columns: vec![
                "Day".into(),
                "Actual".into(),
                "Expected".into(),
                "Expected range".into(),
                "z".into(),
                "In the incident".into(),
            ],
            rows,
        },
    }))
}

// ---- the dashboard's card ----

/// Open incidents for the dashboard: how many, and the latest few.
pub struct AnomalyCard {
    pub open: u64,
    pub incidents: Vec<IncidentLine>,
}

/// Incidents the card lists.
const ON_CARD: usize = 5;

pub async fn card(state: &AppState, web: &Web) -> Result<Option<AnomalyCard>, Problem> {
    let answer = api::list_anomalies(
        State(state.clone()),
        web.caller(),
        Params(api::AnomaliesQuery {
            subscription: None,
            kind: None,
            from: None,
            to: None,
            ended: Some(false),
            service: None,
            limit: Some(ON_CARD.to_string()),
            after: None,
        }),
    )
    .await;
    let page = match answer {
        Ok(Json(p)) => p,
        Err(e) if e.status == StatusCode::FORBIDDEN => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    // Counted, not listed: the card shows a handful.
    let open = state.store.open_incident_count(&web.auth.scope).await?;
    Ok(Some(AnomalyCard {
        open,
        incidents: page.items.iter().map(line).collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::{arm_name, period_text};

    #[test]
    fn days_read_as_people_read_them() {
        let d = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("day");
        assert_eq!(
            period_text(d("2026-11-30"), d("2026-11-30")),
            "Nov 30, 2026"
        );
        assert_eq!(
            period_text(d("2026-11-29"), d("2026-12-03")),
            "Nov 29 – Dec 3, 2026"
        );
        assert_eq!(
            period_text(d("2025-12-30"), d("2026-01-02")),
            "Dec 30, 2025 – Jan 2, 2026"
        );
    }

    #[test]
    fn a_resource_is_named_as_azure_names_it() {
        let db = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Sql/servers/sql-1/databases/audit";
        assert_eq!(arm_name(db), "sql-1/audit");
        assert_eq!(
            arm_name(
                "/subscriptions/s/resourcegroups/rg/providers/microsoft.compute/virtualmachines/vm-1"
            ),
            "vm-1"
        );
        assert_eq!(arm_name("odd"), "odd");
    }
}
