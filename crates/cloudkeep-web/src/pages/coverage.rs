//! Tag coverage: the required keys (admins and owners change them), the
//! coverage of usage cost by each key, cost-weighted and by count, broken
//! down by subscription, resource group or service, the untagged spend
//! ranked by cost with each missing key's suggested value and its source,
//! and the fix (editors and above), which makes tag edits of the selected
//! resources with the values typed per row or else the suggested ones.
//! The figures, suggestions and edits are the API's own (`coverage_view`,
//! `get_untagged`, `fix_coverage`, `set_required_tags`); the page only
//! reads the form.

use std::collections::BTreeMap;

use askama::Template;
use axum::Json;
use axum::extract::{OriginalUri, RawQuery, State};
use axum::http::StatusCode;
use cloudkeep_domain::Permission;
use cloudkeep_server::api::coverage as api;
use cloudkeep_server::wire::{
    CoverageFixRequest, CoverageFixResult, CoveredView, FixValueSource, RequiredTagCoverage,
    RequiredTags, SuggestionSourceView, UntaggedView,
};
use cloudkeep_server::{ApiError, AppState, Body};
use serde::Deserialize;

use super::anomalies::{Choice, known_values, subscriptions};
use super::evidence::ChartView;
use crate::charts::{LineChart, Series, Unit};
use crate::format;
use crate::page::{Chrome, PageResult, Problem, Section, form_page, is_refusal, notice, see_other};
use crate::session::{Form, Web, all_of, query};

/// The breakdowns a person picks from (the API's).
const BREAKDOWNS: &[(&str, &str)] = &[
    ("subscription", "Subscription"),
    ("resource_group", "Resource group"),
    ("service", "Service"),
];

/// The page's question, as its query string (and the fix form's hidden
/// fields) carry it.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct CoverageForm {
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub to: Option<String>,
    #[serde(default)]
    pub subscription: Option<String>,
    #[serde(default)]
    pub resource_group: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub by: Option<String>,
    #[serde(default)]
    pub top: Option<String>,
    #[serde(default)]
    pub notice: Option<String>,
    #[serde(default)]
    pub n: Option<u64>,
}

fn given(v: &Option<String>) -> Option<&str> {
    v.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

impl CoverageForm {
    /// The scope and period, as both API queries take them.
    fn scope_pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("from", &self.from),
            ("to", &self.to),
            ("subscription", &self.subscription),
            ("resource_group", &self.resource_group),
            ("service", &self.service),
        ]
        .into_iter()
        .filter_map(|(k, v)| given(v).map(|v| (k, v.to_string())))
        .collect()
    }

    fn by(&self) -> &str {
        given(&self.by).unwrap_or("resource_group")
    }

    fn coverage_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.scope_pairs())
            .append_pair("by", self.by())
            .finish()
    }

    fn untagged_query(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.scope_pairs())
            .append_pair("top", given(&self.top).unwrap_or("50"))
            .finish()
    }
}

#[derive(Template)]
#[template(path = "coverage.html")]
struct CoveragePage {
    chrome: Chrome,
    form: CoverageForm,
    /// The period and scope, carried by the fix form.
    hidden: Vec<(&'static str, String)>,
    breakdowns: &'static [(&'static str, &'static str)],
    required: Vec<String>,
    /// The required keys' form as typed (after a refusal) or as stored.
    keys_text: String,
    keys_error: Option<String>,
    may_set_keys: bool,
    may_fix: bool,
    /// The question was not usable (a bad date, say): what was wrong.
    error: Option<String>,
    figures: Option<Figures>,
    untagged: Option<Untagged>,
    fix_error: Option<String>,
    fixed: Option<Fixed>,
    /// The scope's choices: subscriptions (id, name), resource groups and
    /// services spend has had.
    subscriptions: Vec<Choice>,
    resource_groups: Vec<String>,
    services: Vec<String>,
}

/// A list of values with `current` in it (a value from a link, or one no
/// longer seen).
fn with_value(mut values: Vec<String>, current: Option<&str>) -> Vec<String> {
    if let Some(c) = current {
        if !values.iter().any(|v| v.eq_ignore_ascii_case(c)) {
            values.push(c.to_string());
        }
    }
    values
}

/// One line of a coverage table: cost-weighted and by count.
struct Share {
    cost_share: String,
    cost: String,
    count_share: String,
    resources: String,
    /// 0 to 100, for a `<meter>`.
    value: u32,
}

fn share(c: &CoveredView, currency: &str) -> Share {
    let pct = |s: Option<f64>| s.map(format::percent).unwrap_or_else(|| "—".into());
    Share {
        cost_share: pct(c.cost_share),
        cost: format::money(c.cost, currency),
        count_share: pct(c.resource_share),
        resources: format::count(c.resources),
        value: (c.cost_share.unwrap_or(0.0) * 100.0).round() as u32,
    }
}

struct Figures {
    period: String,
    total_cost: String,
    total_resources: String,
    overall: Share,
    keys: Vec<(String, Share)>,
    by_label: String,
    /// Per group: its name, usage cost, every key, each key's cost share.
    groups: Vec<(String, String, Share, Vec<String>)>,
    chart: Option<ChartView>,
}

fn figures(c: &RequiredTagCoverage) -> Figures {
    let money = |v: f64| format::money(v, &c.currency);
    let by_label = BREAKDOWNS
        .iter()
        .find(|(k, _)| Some(*k) == c.by.as_deref())
        .map_or("Group", |(_, l)| l)
        .to_string();
    let chart = (c.daily.len() > 1).then(|| {
        let mut series = vec![Series {
            name: "All required keys".into(),
            values: c.daily.iter().map(|d| d.overall).collect(),
            dashed: false,
        }];
        series.extend(c.keys.iter().take(3).map(|k| Series {
            name: k.clone(),
            values: c
                .daily
                .iter()
                .map(|d| d.keys.get(k).copied().flatten())
                .collect(),
            dashed: true,
        }));
        let chart = LineChart {
            id: "coverage-daily".into(),
            title: "Share of usage cost carrying the required keys, day by day".into(),
            description: format!(
                "Cost-weighted coverage per day from {} to {}, of all required keys together and of each.",
                c.from, c.to
            ),
            x_name: "Day".into(),
            x_labels: c
                .daily
                .iter()
                .map(|d| d.day.format("%b %-d").to_string())
                .collect(),
            series,
            unit: Unit::Percent,
            reference: None,
        };
        ChartView {
            svg: chart.svg(),
            table: chart.table(),
        }
    });
    Figures {
        period: format!("{} to {}", c.from, c.to),
        total_cost: money(c.total.cost),
        total_resources: format::count(c.total.resources),
        overall: share(&c.total.overall, &c.currency),
        keys: c
            .total
            .keys
            .iter()
            .map(|k| (k.key.clone(), share(&k.covered, &c.currency)))
            .collect(),
        by_label,
        groups: c
            .groups
            .iter()
            .map(|g| {
                (
                    g.key.clone().unwrap_or_else(|| "(none)".into()),
                    money(g.figures.cost),
                    share(&g.figures.overall, &c.currency),
                    g.figures
                        .keys
                        .iter()
                        .map(|k| {
                            k.covered
                                .cost_share
                                .map(format::percent)
                                .unwrap_or_else(|| "—".into())
                        })
                        .collect(),
                )
            })
            .collect(),
        chart,
    }
}

fn source_text(s: SuggestionSourceView) -> &'static str {
    match s {
        SuggestionSourceView::ResourceGroup => "its resource group's tag",
        SuggestionSourceView::Subscription => "its subscription's tag",
        SuggestionSourceView::Siblings => "most of its siblings",
    }
}

fn fix_source_text(s: FixValueSource) -> &'static str {
    match s {
        FixValueSource::Given => "given",
        FixValueSource::ResourceGroup => "its resource group's tag",
        FixValueSource::Subscription => "its subscription's tag",
        FixValueSource::Siblings => "most of its siblings",
    }
}

struct Untagged {
    summary: String,
    rows: Vec<UntaggedRow>,
}

struct UntaggedRow {
    /// cloudkeep's resource id, when the inventory holds it (the fix
    /// needs it).
    id: Option<String>,
    name: String,
    arm_id: String,
    subscription: String,
    resource_group: String,
    cost: String,
    /// Each missing key: the key, a suggested value and where it comes
    /// from, and the value typed in its place (after a refused fix).
    missing: Vec<MissingKey>,
    fixable: bool,
}

/// A missing key of a row: the key, its suggestion (a value and where it
/// comes from) and the value typed in its place.
type MissingKey = (String, Option<(String, &'static str)>, String);

/// The field of a row's typed value for a key.
fn value_field(resource: &str, key: &str) -> String {
    format!("value:{resource}:{key}")
}

fn untagged(u: &UntaggedView, typed: &[(String, String)]) -> Untagged {
    Untagged {
        summary: format!(
            "{} resource{} lacking a required key, with {} of usage cost from {} to {}",
            format::count(u.resources),
            if u.resources == 1 { "" } else { "s" },
            format::money(u.cost, &u.currency),
            u.from,
            u.to
        ),
        rows: u
            .items
            .iter()
            .map(|r| UntaggedRow {
                id: r.resource_id.map(|id| id.to_string()),
                name: r.name.clone().unwrap_or_else(|| r.arm_id.clone()),
                arm_id: r.arm_id.clone(),
                subscription: r.subscription_name.clone(),
                resource_group: r.resource_group.clone().unwrap_or_else(|| "—".into()),
                cost: format::money(r.cost, &u.currency),
                fixable: r.resource_id.is_some()
                    && r.missing.iter().any(|m| m.suggestion.is_some()),
                missing: r
                    .missing
                    .iter()
                    .map(|m| {
                        let field = r
                            .resource_id
                            .map(|id| value_field(&id.to_string(), &m.key))
                            .unwrap_or_default();
                        (
                            m.key.clone(),
                            m.suggestion
                                .as_ref()
                                .map(|s| (s.value.clone(), source_text(s.source))),
                            typed
                                .iter()
                                .find(|(k, _)| *k == field)
                                .map(|(_, v)| v.clone())
                                .unwrap_or_default(),
                        )
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// What a fix did, as the page shows it.
struct Fixed {
    created: Vec<FixedLine>,
    skipped: Vec<(String, String, String)>,
}

struct FixedLine {
    resource_id: String,
    name: String,
    cost: String,
    state: String,
    /// Key, value, where the value came from.
    set: Vec<(String, String, &'static str)>,
}

fn fixed(result: &CoverageFixResult, currency: &str) -> Fixed {
    Fixed {
        created: result
            .created
            .iter()
            .map(|c| FixedLine {
                resource_id: c.resource_id.to_string(),
                name: c.name.clone().unwrap_or_else(|| c.resource_id.to_string()),
                cost: format::money(c.cost, currency),
                state: c.edit.state.to_string(),
                set: c
                    .edit
                    .set
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.clone(),
                            c.sources
                                .get(k)
                                .map(|s| fix_source_text(*s))
                                .unwrap_or("given"),
                        )
                    })
                    .collect(),
            })
            .collect(),
        skipped: result
            .skipped
            .iter()
            .map(|s| {
                (
                    s.arm_id.rsplit('/').next().unwrap_or(&s.arm_id).to_string(),
                    s.key.clone().unwrap_or_else(|| "every key".into()),
                    s.reason.clone(),
                )
            })
            .collect(),
    }
}

/// What a render adds to the page's question: a refused keys form, a
/// fix's answer or refusal.
#[derive(Default)]
struct Extra {
    notice: Option<String>,
    keys_text: Option<String>,
    keys_error: Option<String>,
    fix_error: Option<String>,
    fixed: Option<CoverageFixResult>,
    /// The values typed per row (field, value), kept after a refusal.
    typed: Vec<(String, String)>,
}

async fn render(state: &AppState, web: &Web, form: CoverageForm, extra: Extra) -> PageResult {
    let caller = web.caller();
    let Json(required) = api::get_required_tags(State(state.clone()), web.caller()).await?;
    let required = required.keys;
    let mut error = None;
    let mut coverage = None;
    let mut list = None;
    if !required.is_empty() {
        let today = state.store.now().date_naive();
        let answer = match api::parse_coverage_query(Some(&form.coverage_query()), today, false) {
            Ok(ask) => api::coverage_view(state, &caller, ask).await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(c) => coverage = Some(c),
            Err(e) if is_refusal(&e) => error = Some(e.message),
            Err(e) => return Err(e.into()),
        }
        if error.is_none() {
            match api::get_untagged(
                State(state.clone()),
                web.caller(),
                RawQuery(Some(form.untagged_query())),
            )
            .await
            {
                Ok(Json(u)) => list = Some(u),
                Err(e) if is_refusal(&e) => error = Some(e.message),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let currency = list
        .as_ref()
        .map(|u| u.currency.clone())
        .or_else(|| coverage.as_ref().map(|c| c.currency.clone()))
        .unwrap_or_else(|| "USD".into());
    let chrome = Chrome::new(web, "Tag coverage", Section::Coverage).with_notice(extra.notice);
    let failed = extra.keys_error.is_some() || extra.fix_error.is_some();
    let (subscriptions, resource_groups, services) = if required.is_empty() {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        let mut subs = subscriptions(state, web).await?;
        if let Some(c) = given(&form.subscription) {
            if !subs.iter().any(|(v, _)| v.eq_ignore_ascii_case(c)) {
                subs.push((c.to_string(), c.to_string()));
            }
        }
        (
            subs,
            with_value(
                known_values(state, web, "resource_group").await?,
                given(&form.resource_group),
            ),
            with_value(
                known_values(state, web, "service").await?,
                given(&form.service),
            ),
        )
    };
    let page = CoveragePage {
        subscriptions,
        resource_groups,
        services,
        chrome,
        breakdowns: BREAKDOWNS,
        hidden: form.scope_pairs(),
        keys_text: extra.keys_text.unwrap_or_else(|| required.join(", ")),
        required,
        keys_error: extra.keys_error,
        may_set_keys: web.may(Permission::ManageConnections),
        may_fix: web.may(Permission::EditTags),
        error,
        figures: coverage.as_ref().map(figures),
        untagged: list.as_ref().map(|u| untagged(u, &extra.typed)),
        fix_error: extra.fix_error,
        fixed: extra.fixed.as_ref().map(|r| fixed(r, &currency)),
        form,
    };
    Ok(form_page(&page, failed))
}

pub async fn coverage(
    State(state): State<AppState>,
    web: Web,
    OriginalUri(uri): OriginalUri,
) -> PageResult {
    let form: CoverageForm = query(&uri)?;
    let extra = Extra {
        notice: notice(form.notice.as_deref(), form.n),
        ..Default::default()
    };
    render(&state, &web, form, extra).await
}

#[derive(Deserialize)]
pub struct KeysForm {
    #[serde(default)]
    keys: String,
}

/// The required keys, typed separated by commas or one per line.
pub async fn set_required_keys(
    State(state): State<AppState>,
    Form { web, form, .. }: Form<KeysForm>,
) -> PageResult {
    let keys = form
        .keys
        .split([',', '\n', ';'])
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect();
    match api::set_required_tags(
        State(state.clone()),
        web.caller(),
        Body(RequiredTags { keys }),
    )
    .await
    {
        Ok(_) => Ok(see_other("/coverage?notice=required_keys_saved")),
        Err(e) if is_refusal(&e) => {
            let extra = Extra {
                keys_text: Some(form.keys),
                keys_error: Some(e.message),
                ..Default::default()
            };
            render(&state, &web, CoverageForm::default(), extra).await
        }
        Err(e) => Err(e.into()),
    }
}

fn parse_day(v: &Option<String>) -> Result<Option<chrono::NaiveDate>, String> {
    given(v)
        .map(|d| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .map_err(|_| format!("'{d}' is not a date: use YYYY-MM-DD"))
        })
        .transpose()
}

/// The fix of the selected rows (`resource` checkboxes) and of the rows
/// with a value typed (`value:{resource}:{key}`), over the page's period
/// and scope: each missing key gets the value typed in its row, else its
/// suggested one. Rows with the same typed values go to the API together.
pub async fn fix(
    State(state): State<AppState>,
    Form { web, form, fields }: Form<CoverageForm>,
) -> PageResult {
    if !web.may(Permission::EditTags) {
        return Err(ApiError::forbidden("fixing tag coverage").into());
    }
    let typed: Vec<(String, String)> = fields
        .iter()
        .filter(|(k, v)| k.starts_with("value:") && !v.trim().is_empty())
        .cloned()
        .collect();
    let fail = |message: String| Extra {
        fix_error: Some(message),
        typed: typed.clone(),
        ..Default::default()
    };
    // Each row's typed values by key.
    let mut rows: BTreeMap<uuid::Uuid, BTreeMap<String, String>> = BTreeMap::new();
    for s in all_of(&fields, "resource") {
        let Ok(id) = s.parse::<uuid::Uuid>() else {
            return Err(Problem::not_found());
        };
        rows.entry(id).or_default();
    }
    for (field, value) in &typed {
        let Some((id, key)) = field["value:".len()..].split_once(':') else {
            continue;
        };
        let Ok(id) = id.parse::<uuid::Uuid>() else {
            return Err(Problem::not_found());
        };
        rows.entry(id)
            .or_default()
            .insert(key.to_string(), value.trim().to_string());
    }
    if rows.is_empty() {
        let extra = fail(
            "Select the resources to fix (or type a value in their rows): none was selected."
                .into(),
        );
        return render(&state, &web, form, extra).await;
    }
    let (from, to) = match (parse_day(&form.from), parse_day(&form.to)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => return render(&state, &web, form, fail(e)).await,
    };
    // Rows with the same values, together.
    let mut batches: BTreeMap<BTreeMap<String, String>, Vec<uuid::Uuid>> = BTreeMap::new();
    for (id, values) in rows {
        batches.entry(values).or_default().push(id);
    }
    let mut done = CoverageFixResult {
        created: Vec::new(),
        skipped: Vec::new(),
    };
    let mut error = None;
    for (values, resource_ids) in batches {
        let request = CoverageFixRequest {
            subscription: given(&form.subscription).map(str::to_string),
            resource_group: given(&form.resource_group).map(str::to_string),
            service: given(&form.service).map(str::to_string),
            keys: Vec::new(),
            from,
            to,
            top: None,
            resource_ids,
            use_suggested: true,
            values,
        };
        match api::fix_coverage(State(state.clone()), web.caller(), Body(request)).await {
            Ok((_, Json(result))) => {
                done.created.extend(result.created);
                done.skipped.extend(result.skipped);
            }
            Err(e) if is_refusal(&e) => {
                error = Some(e.message);
                break;
            }
            Err(e) => return Err(e.into()),
        }
    }
    let n = done.created.len() as u64;
    let extra = Extra {
        notice: (n > 0 || error.is_none())
            .then(|| notice(Some("edits_created"), Some(n)))
            .flatten(),
        typed: if error.is_some() { typed } else { Vec::new() },
        fix_error: error,
        fixed: Some(done),
        ..Default::default()
    };
    render(&state, &web, form, extra).await
}

/// The dashboard's line on required tags: the share of the last 30 days'
/// usage cost carrying every required key (none when no key is set).
pub struct CoverageLine {
    pub keys: String,
    pub share: String,
    pub value: u32,
    pub by_count: String,
    pub period: String,
}

pub async fn panel(state: &AppState, web: &Web) -> Result<Option<CoverageLine>, Problem> {
    let caller = web.caller();
    let keys = match api::get_required_tags(State(state.clone()), web.caller()).await {
        Ok(Json(k)) => k.keys,
        Err(e) if e.status == StatusCode::FORBIDDEN => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if keys.is_empty() {
        return Ok(None);
    }
    let today = state.store.now().date_naive();
    let ask = api::parse_coverage_query(None, today, false)?;
    let c = api::coverage_view(state, &caller, ask).await?;
    let s = share(&c.total.overall, &c.currency);
    Ok(Some(CoverageLine {
        keys: keys.join(", "),
        share: s.cost_share,
        value: s.value,
        by_count: s.count_share,
        period: format!("{} to {}", c.from, c.to),
    }))
}
