//! `cloudkeep anomalies`: spend incidents (anomalies and new usage) with
//! the resource that explains most of each, as a table or `--json`;
//! `--movers` shows the top movers period over period instead.

use anyhow::Result;
use clap::Args;
use cloudkeep_server::Page;
use cloudkeep_server::wire::{IncidentView, MoversView};

use super::{Api, call_as, table, url_escape};

#[derive(Args)]
pub struct AnomaliesArgs {
    /// One Azure subscription id.
    #[arg(long)]
    subscription: Option<String>,
    /// anomaly, new_service or new_region.
    #[arg(long)]
    kind: Option<String>,
    /// Incidents with a day on or after this one (YYYY-MM-DD).
    #[arg(long)]
    from: Option<String>,
    /// Incidents with a day on or before this one (with --movers: the period's last day).
    #[arg(long)]
    to: Option<String>,
    /// At most this many (incidents: 1 to 1000; movers: 1 to 100).
    #[arg(long)]
    limit: Option<u32>,
    /// Top movers instead of incidents.
    #[arg(long)]
    movers: bool,
    /// With --movers: week (the default) or month.
    #[arg(long)]
    period: Option<String>,
    /// With --movers: service (the default), resource_group or resource.
    #[arg(long)]
    by: Option<String>,
    #[command(flatten)]
    api: Api,
}

fn query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", url_escape(v))))
        .collect::<Vec<_>>()
        .join("&")
}

fn money(v: f64) -> String {
    format!("{v:.2}")
}

pub async fn anomalies(args: AnomaliesArgs) -> Result<()> {
    let api = &args.api;
    if args.movers {
        let q = query(&[
            ("period", args.period.clone()),
            ("by", args.by.clone()),
            ("to", args.to.clone()),
            ("top", args.limit.map(|l| l.to_string())),
        ]);
        let view: MoversView = call_as(
            api,
            reqwest::Method::GET,
            &format!("/api/v1/spend/movers?{q}"),
            None,
        )
        .await?;
        if api.json {
            println!("{}", serde_json::to_string(&view)?);
            return Ok(());
        }
        println!(
            "top movers by {} ({}): {} to {} against {} to {}, {}",
            view.by,
            view.period,
            view.from,
            view.to,
            view.previous_from,
            view.previous_to,
            view.currency
        );
        table(
            &["", "NOW", "BEFORE", "CHANGE", "%"],
            view.movers
                .iter()
                .map(|m| {
                    vec![
                        m.key.clone().unwrap_or_else(|| "(none)".into()),
                        money(m.current),
                        money(m.previous),
                        format!("{:+.2}", m.change),
                        m.change_ratio
                            .map(|r| format!("{:+.1}%", r * 100.0))
                            .unwrap_or_else(|| "new".into()),
                    ]
                })
                .collect(),
        );
        return Ok(());
    }
    let q = query(&[
        ("subscription", args.subscription.clone()),
        ("kind", args.kind.clone()),
        ("from", args.from.clone()),
        ("to", args.to.clone()),
        ("limit", args.limit.map(|l| l.to_string())),
    ]);
    let page: Page<IncidentView> = call_as(
        api,
        reqwest::Method::GET,
        &format!("/api/v1/spend/anomalies?{q}"),
        None,
    )
    .await?;
    if api.json {
        println!("{}", serde_json::to_string(&page)?);
        return Ok(());
    }
    table(
        &[
            "FIRST DAY",
            "DAYS",
            "KIND",
            "SUBSCRIPTION",
            "SERVICE/REGION",
            "EXPECTED",
            "ACTUAL",
            "CHANGE",
            "Z",
            "STATE",
            "MOSTLY",
        ],
        page.items
            .iter()
            .map(|i| {
                let top = i
                    .contributors
                    .iter()
                    .find(|c| c.kind == cloudkeep_domain::anomaly::ContributorKind::Resource)
                    .map(|c| {
                        format!(
                            "{} ({:.0}%)",
                            c.name.clone().unwrap_or_else(|| c.item.clone()),
                            c.share * 100.0
                        )
                    })
                    .unwrap_or_default();
                vec![
                    i.first_day.to_string(),
                    ((i.last_day - i.first_day).num_days() + 1).to_string(),
                    i.kind.to_string(),
                    i.subscription_name.clone(),
                    i.service.clone().or(i.region.clone()).unwrap_or_default(),
                    money(i.expected),
                    money(i.actual),
                    format!("{:+.2} {}", i.delta, i.currency),
                    i.max_z
                        .map(|z| format!("{z:.1}"))
                        .unwrap_or_else(|| "-".into()),
                    if i.ended { "ended" } else { "ongoing" }.into(),
                    top,
                ]
            })
            .collect(),
    );
    if page.next.is_some() {
        println!("(more incidents: narrow with --from/--to or raise --limit)");
    }
    Ok(())
}
