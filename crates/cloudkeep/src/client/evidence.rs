//! `cloudkeep evidence`, `cloudkeep controls` and `cloudkeep alerts`:
//! security evidence, SOC 2 control coverage and alerts through the API,
//! as tables or `--json`.

use anyhow::Result;
use clap::{Args, Subcommand};
use cloudkeep_server::Page;
use cloudkeep_server::wire::{
    AlertView, ControlDetail, ControlView, CoverageView, EvidenceDetail, EvidenceView,
};

use super::{Api, all_pages, call_as, form_query, output_as, table, url_escape};

#[derive(Subcommand)]
pub enum EvidenceCommand {
    /// Evidence rows, every page: current ones unless a period or --history is given.
    List {
        /// Rows of the checks mapped to this control (CC6.1, CC6.6, CC7.1).
        #[arg(long)]
        control: Option<String>,
        /// One check (e.g. storage.anonymous_blob_access).
        #[arg(long)]
        check: Option<String>,
        /// pass, fail, not_applicable or not_collected.
        #[arg(long)]
        result: Option<String>,
        /// An ARM id: its evidence and that of everything under it.
        #[arg(long)]
        subject: Option<String>,
        #[arg(long)]
        connection: Option<String>,
        /// cloudkeep's subscription id.
        #[arg(long)]
        subscription: Option<String>,
        /// Observed from this time (RFC 3339).
        #[arg(long)]
        from: Option<String>,
        /// Observed until this time (RFC 3339).
        #[arg(long)]
        to: Option<String>,
        /// Closed intervals too, not only the current ones.
        #[arg(long)]
        history: bool,
        #[command(flatten)]
        api: Api,
    },
    /// One evidence row with its subject's history and its controls.
    Show {
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Args)]
pub struct ControlsArgs {
    /// One control (CC6.1, CC6.6, CC7.1): its checks, worst evidence and daily history.
    id: Option<String>,
    /// Days of history for one control.
    #[arg(long, default_value_t = 30)]
    days: u32,
    #[command(flatten)]
    api: Api,
}

#[derive(Args)]
pub struct AlertsArgs {
    /// open, acknowledged or resolved.
    #[arg(long)]
    state: Option<String>,
    /// evidence_stale, budget_actual, budget_forecast, spend_anomaly or spend_new_usage.
    #[arg(long)]
    kind: Option<String>,
    /// Acknowledge this alert instead of listing.
    #[arg(long)]
    ack: Option<String>,
    #[command(flatten)]
    api: Api,
}

/// A fraction as a percentage, or `-`.
fn percent(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |f| format!("{:.0}%", f * 100.0))
}

/// The coverage columns: state, coverage, pass rate, and the counts.
fn coverage_cells(c: &CoverageView) -> Vec<String> {
    vec![
        c.state.to_string(),
        percent(c.evidence_coverage),
        percent(c.pass_rate),
        c.passing.to_string(),
        c.failing.to_string(),
        c.stale.to_string(),
        c.not_collected.to_string(),
    ]
}

const COVERAGE_HEADERS: [&str; 7] = [
    "STATE",
    "COVERAGE",
    "PASS RATE",
    "PASSING",
    "FAILING",
    "STALE",
    "NOT COLLECTED",
];

/// The end of an ARM id, enough to tell subjects apart in a table
/// (`storageAccounts/stlogs`, `keys/cmk-1`); `--json` has the whole id.
fn short(subject: &str) -> String {
    let parts: Vec<&str> = subject.trim_matches('/').split('/').collect();
    parts[parts.len().saturating_sub(2)..].join("/")
}

fn print_evidence(rows: &[EvidenceView]) {
    table(
        &[
            "EVIDENCE", "CHECK", "RESULT", "SUBJECT", "OBSERVED", "UNTIL", "REASON",
        ],
        rows.iter()
            .map(|e| {
                vec![
                    e.id.to_string(),
                    e.check.to_string(),
                    e.result.to_string(),
                    short(&e.subject),
                    e.observed_at.format("%Y-%m-%d %H:%M").to_string(),
                    e.valid_to.map_or_else(
                        || "current".into(),
                        |t| t.format("%Y-%m-%d %H:%M").to_string(),
                    ),
                    e.reason.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect(),
    );
    println!("{} rows", rows.len());
}

pub async fn evidence(cmd: EvidenceCommand) -> Result<()> {
    match cmd {
        EvidenceCommand::List {
            control,
            check,
            result,
            subject,
            connection,
            subscription,
            from,
            to,
            history,
            api,
        } => {
            let query = form_query(&[
                ("control", control),
                ("check", check),
                ("result", result),
                ("subject", subject),
                ("connection", connection),
                ("subscription", subscription),
                ("observed_from", from),
                ("observed_to", to),
                ("current", history.then(|| "false".to_string())),
            ]);
            let rows: Vec<EvidenceView> =
                all_pages(&api, &format!("/api/v1/evidence?{query}")).await?;
            output_as(&api, &rows, |rows| print_evidence(rows));
        }
        EvidenceCommand::Show { id, api } => {
            let detail: EvidenceDetail = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/evidence/{}", url_escape(&id)),
                None,
            )
            .await?;
            output_as(&api, &detail, |d| {
                let e = &d.evidence;
                println!("{} {} of {}", e.check, e.result, e.subject);
                if let Some(r) = &e.reason {
                    println!("  reason:      {r}");
                }
                println!("  facts:       {}", e.facts);
                println!("  fingerprint: {}", e.fingerprint);
                let controls: Vec<String> = d.controls.iter().map(|c| c.to_string()).collect();
                println!("  controls:    {}", controls.join(", "));
                println!("history:");
                print_evidence(&d.history);
            });
        }
    }
    Ok(())
}

pub async fn controls(args: ControlsArgs) -> Result<()> {
    let ControlsArgs { id, days, api } = args;
    let Some(id) = id else {
        let list: Page<ControlView> =
            call_as(&api, reqwest::Method::GET, "/api/v1/controls", None).await?;
        output_as(&api, &list.items, |items| {
            let mut headers = vec!["CONTROL", "TITLE"];
            headers.extend(COVERAGE_HEADERS);
            let rows = items
                .iter()
                .map(|c| {
                    let mut row = vec![c.id.to_string(), c.title.clone()];
                    row.extend(coverage_cells(&c.coverage));
                    row
                })
                .collect();
            table(&headers, rows);
        });
        return Ok(());
    };
    let detail: ControlDetail = call_as(
        &api,
        reqwest::Method::GET,
        &format!(
            "/api/v1/controls/{}?days={days}&evidence_limit=20",
            url_escape(&id)
        ),
        None,
    )
    .await?;
    output_as(&api, &detail, |d| {
        let c = &d.control;
        println!("{} {}: {}", c.id, c.title, c.coverage.state);
        println!("  {}", c.criterion);
        println!(
            "  evidence coverage {}, pass rate {}",
            percent(c.coverage.evidence_coverage),
            percent(c.coverage.pass_rate)
        );
        let mut headers = vec!["CHECK"];
        headers.extend(COVERAGE_HEADERS);
        table(
            &headers,
            d.check_coverage
                .iter()
                .map(|k| {
                    let mut row = vec![k.check.to_string()];
                    row.extend(coverage_cells(&k.coverage));
                    row
                })
                .collect(),
        );
        println!(
            "worst evidence ({} of {} current rows; `cloudkeep evidence list --control {}` for all):",
            d.evidence.len(),
            d.evidence_total,
            c.id
        );
        print_evidence(&d.evidence);
        println!("daily history:");
        table(
            &["DAY", "STATE", "COVERAGE", "PASS RATE"],
            d.history
                .iter()
                .map(|h| {
                    vec![
                        h.day.to_string(),
                        h.coverage.state.to_string(),
                        percent(h.coverage.evidence_coverage),
                        percent(h.coverage.pass_rate),
                    ]
                })
                .collect(),
        );
    });
    Ok(())
}

pub async fn alerts(args: AlertsArgs) -> Result<()> {
    let AlertsArgs {
        state,
        kind,
        ack,
        api,
    } = args;
    if let Some(id) = ack {
        let alert: AlertView = call_as(
            &api,
            reqwest::Method::POST,
            &format!("/api/v1/alerts/{}/acknowledge", url_escape(&id)),
            None,
        )
        .await?;
        output_as(&api, &alert, |a| {
            println!("alert {} acknowledged: {}", a.id, a.title)
        });
        return Ok(());
    }
    let query = form_query(&[("state", state), ("kind", kind)]);
    let list: Vec<AlertView> = all_pages(&api, &format!("/api/v1/alerts?{query}")).await?;
    output_as(&api, &list, |list| {
        table(
            &["ALERT", "KIND", "STATE", "OPENED", "RESOLVED", "TITLE"],
            list.iter()
                .map(|a| {
                    vec![
                        a.id.to_string(),
                        a.kind.to_string(),
                        a.state.to_string(),
                        a.opened_at.format("%Y-%m-%d %H:%M").to_string(),
                        a.resolved_at
                            .map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M").to_string()),
                        a.title.clone(),
                    ]
                })
                .collect(),
        );
    });
    Ok(())
}
