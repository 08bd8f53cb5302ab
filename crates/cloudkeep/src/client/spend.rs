//! `cloudkeep spend`: cost by time and up to two groupings through the API,
//! as a table with a bar per row or `--json`; `cloudkeep spend export`
//! streams the FOCUS 1.2 CSV to a file or standard output.

use std::io::Write;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cloudkeep_server::wire::SpendView;

use super::{Api, call_as, table, url_escape};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SpendArgs {
    #[command(subcommand)]
    command: Option<SpendCommand>,
    #[command(flatten)]
    query: QueryArgs,
}

#[derive(Subcommand)]
pub enum SpendCommand {
    /// The period's cost rows as FOCUS 1.2 CSV (streamed; constant memory).
    Export {
        /// The first day (YYYY-MM-DD; default 29 days before --to).
        #[arg(long)]
        from: Option<String>,
        /// The last day (default today).
        #[arg(long)]
        to: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Args)]
pub struct QueryArgs {
    /// Up to two of subscription, resource_group, service, service_category,
    /// region, resource_type, resource, tag:<key> (repeat the flag).
    #[arg(long = "group-by")]
    group_by: Vec<String>,
    /// The first day (YYYY-MM-DD; default 29 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// The last day (default today).
    #[arg(long)]
    to: Option<String>,
    /// day, week or month.
    #[arg(long)]
    granularity: Option<String>,
    /// billed (BilledCost) or effective (EffectiveCost, amortised).
    #[arg(long)]
    metric: Option<String>,
    /// <dimension>=<value>, tag:<key>=<value>, tag:<key> or !tag:<key> (repeat the flag).
    #[arg(long)]
    filter: Vec<String>,
    /// Groups shown by name; the rest are "other".
    #[arg(long)]
    top: Option<u32>,
    // The API's options (as `Api`), optional here so that `spend export`
    // (with its own) does not ask for them twice.
    /// The server's URL.
    #[arg(long, env = "CLOUDKEEP_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API token (`ck_...`).
    #[arg(long, env = "CLOUDKEEP_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// The query string of an analysis.
fn query_string(q: &QueryArgs) -> String {
    let mut parts = Vec::new();
    for g in &q.group_by {
        parts.push(format!("group_by={}", url_escape(g)));
    }
    for f in &q.filter {
        parts.push(format!("filter={}", url_escape(f)));
    }
    for (k, v) in [
        ("from", &q.from),
        ("to", &q.to),
        ("granularity", &q.granularity),
        ("metric", &q.metric),
    ] {
        if let Some(v) = v {
            parts.push(format!("{k}={}", url_escape(v)));
        }
    }
    if let Some(t) = q.top {
        parts.push(format!("top={t}"));
    }
    parts.join("&")
}

/// A bar of `width` cells for `value` of `max` (eighths for the last cell).
fn bar(value: f64, max: f64, width: usize) -> String {
    if max <= 0.0 || value <= 0.0 {
        return String::new();
    }
    let eighths = ((value / max) * (width * 8) as f64).round() as usize;
    let mut s = "█".repeat(eighths / 8);
    const PARTS: [&str; 8] = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];
    s.push_str(PARTS[eighths % 8]);
    s
}

fn print_view(v: &SpendView) {
    println!(
        "{} cost {} to {} ({}), by {}: {:.2} {}",
        v.metric,
        v.from,
        v.to,
        v.granularity,
        if v.group_by.is_empty() {
            "day".to_string()
        } else {
            v.group_by.join(" and ")
        },
        v.total,
        v.currency
    );
    let rows: Vec<(String, f64)> = if v.group_by.is_empty() {
        v.totals
            .iter()
            .map(|p| (p.start.to_string(), p.cost))
            .collect()
    } else {
        v.series
            .iter()
            .map(|s| {
                let name = if s.other {
                    "(other)".to_string()
                } else {
                    s.key
                        .iter()
                        .map(|k| k.clone().unwrap_or_else(|| "(none)".into()))
                        .collect::<Vec<_>>()
                        .join(" / ")
                };
                (name, s.total)
            })
            .collect()
    };
    let max = rows.iter().map(|(_, c)| *c).fold(0.0, f64::max);
    table(
        &["", "COST", "SHARE", ""],
        rows.iter()
            .map(|(name, cost)| {
                vec![
                    name.clone(),
                    format!("{cost:.2}"),
                    if v.total.abs() > 0.0 {
                        format!("{:.1}%", cost / v.total * 100.0)
                    } else {
                        "-".into()
                    },
                    bar(*cost, max, 30),
                ]
            })
            .collect(),
    );
}

pub async fn spend(args: SpendArgs) -> Result<()> {
    match args.command {
        Some(SpendCommand::Export {
            from,
            to,
            output,
            api,
        }) => export(&api, from, to, output).await,
        None => {
            let q = args.query;
            let Some(token) = q.token.clone() else {
                bail!("no API token: pass --token or set CLOUDKEEP_TOKEN");
            };
            let api = &Api {
                url: q.url.clone(),
                token,
                json: q.json,
            };
            let view: SpendView = call_as(
                api,
                reqwest::Method::GET,
                &format!("/api/v1/spend?{}", query_string(&q)),
                None,
            )
            .await?;
            if api.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                print_view(&view);
            }
            Ok(())
        }
    }
}

/// Streams the export chunk by chunk to its destination.
async fn export(
    api: &Api,
    from: Option<String>,
    to: Option<String>,
    output: Option<std::path::PathBuf>,
) -> Result<()> {
    let mut query = vec!["format=focus-csv".to_string()];
    for (k, v) in [("from", from), ("to", to)] {
        if let Some(v) = v {
            query.push(format!("{k}={}", url_escape(&v)));
        }
    }
    let url = format!(
        "{}/api/v1/spend/export?{}",
        api.url.trim_end_matches('/'),
        query.join("&")
    );
    let mut response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&api.token)
        .send()
        .await
        .with_context(|| format!("calling {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        bail!("{status}: {text}");
    }
    let mut out: Box<dyn Write> = match &output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let mut bytes = 0u64;
    while let Some(chunk) = response.chunk().await.context("reading the export")? {
        out.write_all(&chunk)?;
        bytes += chunk.len() as u64;
    }
    out.flush()?;
    if let Some(path) = output {
        eprintln!("wrote {bytes} bytes of FOCUS 1.2 CSV to {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_scale_to_the_largest() {
        assert_eq!(bar(10.0, 10.0, 4), "████");
        assert_eq!(bar(5.0, 10.0, 4), "██");
        assert_eq!(bar(0.0, 10.0, 4), "");
        assert_eq!(bar(1.0, 8.0, 1), "▏");
    }
}
