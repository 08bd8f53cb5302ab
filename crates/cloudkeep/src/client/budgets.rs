//! `cloudkeep budgets`: budgets with where each stands this month (spend so
//! far and the month-end forecast against the amount), made, replaced and
//! deleted through the API; `cloudkeep budgets forecast` for any filters.

use anyhow::Result;
use clap::{Args, Subcommand};
use cloudkeep_server::wire::{BudgetDetail, BudgetView, ForecastView};
use serde_json::json;

use super::{Api, all_pages, call, call_as, output_as, table, url_escape};

#[derive(Subcommand)]
pub enum BudgetsCommand {
    /// Every budget, with spend this month and the forecast against it.
    List {
        #[command(flatten)]
        api: Api,
    },
    /// One budget, day by day: actual cost so far, then the forecast.
    Show {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// Make a budget.
    Create {
        #[command(flatten)]
        def: Definition,
        #[command(flatten)]
        api: Api,
    },
    /// Replace a budget's definition.
    Set {
        id: String,
        #[command(flatten)]
        def: Definition,
        #[command(flatten)]
        api: Api,
    },
    /// Delete a budget; its open alerts resolve.
    Delete {
        id: String,
        #[command(flatten)]
        api: Api,
    },
    /// This month's forecast for the organisation, or for filters.
    Forecast {
        /// <dimension>=<value>, tag:<key>=<value>, tag:<key> or !tag:<key> (repeat the flag).
        #[arg(long)]
        filter: Vec<String>,
        /// billed (the default) or effective.
        #[arg(long)]
        metric: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Args)]
pub struct Definition {
    #[arg(long)]
    name: String,
    /// Per calendar month, in the billing currency.
    #[arg(long)]
    amount: f64,
    /// billed (the default) or effective.
    #[arg(long, default_value = "billed")]
    metric: String,
    /// The scope: subscription=<id>, resource_group=<name>, tag:<key>=<value>
    /// (repeat the flag; none is the whole organisation).
    #[arg(long)]
    filter: Vec<String>,
    /// A percentage of the amount that spend this month may cross (repeat).
    #[arg(long = "actual")]
    actual: Vec<f64>,
    /// A percentage of the amount that the month-end forecast may cross (repeat).
    #[arg(long = "forecast")]
    forecast: Vec<f64>,
}

impl Definition {
    fn body(&self) -> serde_json::Value {
        json!({
            "name": self.name, "amount": self.amount, "metric": self.metric,
            "filters": self.filter, "actual_thresholds": self.actual,
            "forecast_thresholds": self.forecast,
        })
    }
}

fn pcts(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|t| format!("{t}%"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn print_budgets(list: &[BudgetView]) {
    table(
        &[
            "BUDGET", "NAME", "SCOPE", "AMOUNT", "SPENT", "%", "FORECAST", "%", "CROSSED",
        ],
        list.iter()
            .map(|b| {
                let s = &b.status;
                let mut crossed: Vec<String> =
                    s.actual_crossed.iter().map(|t| format!("{t}%")).collect();
                crossed.extend(
                    s.forecast_crossed
                        .iter()
                        .map(|t| format!("{t}% (forecast)")),
                );
                vec![
                    b.id.to_string(),
                    b.name.clone(),
                    if b.filters.is_empty() {
                        "organisation".into()
                    } else {
                        b.filters.join(" ")
                    },
                    format!("{:.2} {}", b.amount, s.currency),
                    format!("{:.2}", s.actual),
                    format!("{:.0}%", s.actual_pct),
                    format!("{:.2}", s.forecast),
                    format!("{:.0}%", s.forecast_pct),
                    if crossed.is_empty() {
                        "-".into()
                    } else {
                        crossed.join(", ")
                    },
                ]
            })
            .collect(),
    );
}

fn print_days(f: &ForecastView) {
    println!(
        "{} {}: {:.2} {} so far (through {}), {:.2} forecast at month end",
        f.metric,
        f.month.format("%Y-%m"),
        f.month_to_date,
        f.currency,
        f.as_of,
        f.month_end
    );
    let rows = f
        .actual
        .iter()
        .map(|p| {
            vec![
                p.start.to_string(),
                format!("{:.2}", p.cost),
                "actual".into(),
            ]
        })
        .chain(f.forecast.iter().map(|p| {
            vec![
                p.start.to_string(),
                format!("{:.2}", p.cost),
                "forecast".into(),
            ]
        }))
        .collect();
    table(&["DAY", "COST", ""], rows);
}

fn print_detail(d: &BudgetDetail) {
    let b = &d.budget;
    println!(
        "budget {} '{}': {:.2} {} a month; thresholds {} on spend, {} on the forecast",
        b.id,
        b.name,
        b.amount,
        b.status.currency,
        pcts(&b.actual_thresholds),
        pcts(&b.forecast_thresholds)
    );
    print_budgets(std::slice::from_ref(b));
    print_days(&d.days);
}

pub async fn budgets(cmd: BudgetsCommand) -> Result<()> {
    match cmd {
        BudgetsCommand::List { api } => {
            let list: Vec<BudgetView> = all_pages(&api, "/api/v1/budgets").await?;
            output_as(&api, &list, |l| print_budgets(l));
        }
        BudgetsCommand::Show { id, api } => {
            let d: BudgetDetail = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/budgets/{}", url_escape(&id)),
                None,
            )
            .await?;
            output_as(&api, &d, print_detail);
        }
        BudgetsCommand::Create { def, api } => {
            let d: BudgetDetail = call_as(
                &api,
                reqwest::Method::POST,
                "/api/v1/budgets",
                Some(def.body()),
            )
            .await?;
            output_as(&api, &d, print_detail);
        }
        BudgetsCommand::Set { id, def, api } => {
            let d: BudgetDetail = call_as(
                &api,
                reqwest::Method::PUT,
                &format!("/api/v1/budgets/{}", url_escape(&id)),
                Some(def.body()),
            )
            .await?;
            output_as(&api, &d, print_detail);
        }
        BudgetsCommand::Delete { id, api } => {
            call(
                &api,
                reqwest::Method::DELETE,
                &format!("/api/v1/budgets/{}", url_escape(&id)),
                None,
            )
            .await?;
            if !api.json {
                println!("budget {id} deleted");
            }
        }
        BudgetsCommand::Forecast {
            filter,
            metric,
            api,
        } => {
            let mut query: Vec<String> = filter
                .iter()
                .map(|f| format!("filter={}", url_escape(f)))
                .collect();
            if let Some(m) = metric {
                query.push(format!("metric={}", url_escape(&m)));
            }
            let f: ForecastView = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/spend/forecast?{}", query.join("&")),
                None,
            )
            .await?;
            output_as(&api, &f, print_days);
        }
    }
    Ok(())
}
