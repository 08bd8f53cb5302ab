//! `cloudkeep coverage`: tag coverage of usage cost by the required keys
//! (per key and overall, optionally by subscription, resource group or
//! service); `coverage required-tags` shows or sets the keys; `coverage
//! untagged` ranks the untagged spend with suggested values; `coverage
//! fix` turns a coverage query into tag edits. Tables, or `--json`.

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use cloudkeep_server::wire::{RequiredTagCoverage, RequiredTags, UntaggedView};
use serde_json::{Value, json};

use super::{Api, call, call_as, table, url_escape};

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CoverageArgs {
    #[command(subcommand)]
    command: Option<CoverageCommand>,
    #[command(flatten)]
    scope: ScopeArgs,
    /// A breakdown: subscription, resource_group or service.
    #[arg(long)]
    by: Option<String>,
    // The API's options (as `Api`), optional here so that the subcommands
    // (with their own) do not ask for them twice.
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

/// Which usage cost: a period and filters.
#[derive(Args, Clone, Default)]
pub struct ScopeArgs {
    /// The first day (YYYY-MM-DD; default 29 days before --to).
    #[arg(long)]
    from: Option<String>,
    /// The last day (default today).
    #[arg(long)]
    to: Option<String>,
    /// One Azure subscription id.
    #[arg(long)]
    subscription: Option<String>,
    /// One resource group (any case).
    #[arg(long)]
    resource_group: Option<String>,
    /// A service name (FOCUS ServiceName).
    #[arg(long)]
    service: Option<String>,
    /// Required keys (or aliases) to look at; all of them by default (repeat the flag).
    #[arg(long = "key")]
    keys: Vec<String>,
}

impl ScopeArgs {
    fn query(&self) -> Vec<String> {
        let mut parts = Vec::new();
        for (k, v) in [
            ("from", &self.from),
            ("to", &self.to),
            ("subscription", &self.subscription),
            ("resource_group", &self.resource_group),
            ("service", &self.service),
        ] {
            if let Some(v) = v {
                parts.push(format!("{k}={}", url_escape(v)));
            }
        }
        for k in &self.keys {
            parts.push(format!("key={}", url_escape(k)));
        }
        parts
    }
}

#[derive(Subcommand)]
pub enum CoverageCommand {
    /// Show the required tag keys, or replace them with --set.
    RequiredTags {
        /// The new required keys (repeat the flag); without it, show them.
        #[arg(long = "set")]
        set: Vec<String>,
        /// Remove every required key.
        #[arg(long, conflicts_with = "set")]
        clear: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Resources with usage cost lacking required keys, largest cost first,
    /// with suggested values.
    Untagged {
        #[command(flatten)]
        scope: ScopeArgs,
        /// Resources shown (1 to 1000; default 50).
        #[arg(long)]
        top: Option<u32>,
        #[command(flatten)]
        api: Api,
    },
    /// Make tag edits for the untagged resources of a query: pending at
    /// read_write_tags (written at the next sync), local at read_tags_only.
    Fix {
        #[command(flatten)]
        scope: ScopeArgs,
        /// The top resources by cost (1 to 1000)...
        #[arg(long)]
        top: Option<u32>,
        /// ...or these resources (cloudkeep's ids; repeat the flag).
        #[arg(long = "resource")]
        resources: Vec<String>,
        /// Give each missing key its suggested value.
        #[arg(long)]
        use_suggested: bool,
        /// key=value, over suggestions (repeat the flag).
        #[arg(long = "value")]
        values: Vec<String>,
        #[command(flatten)]
        api: Api,
    },
}

fn percent(share: Option<f64>) -> String {
    share
        .map(|s| format!("{:.1}%", s * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn print_coverage(v: &RequiredTagCoverage) {
    if v.required_keys.is_empty() {
        println!(
            "No required tag keys: set them with `cloudkeep coverage required-tags --set env --set owner`."
        );
        return;
    }
    println!(
        "Tag coverage of usage cost {} to {}: {:.2} {} on {} resources",
        v.from, v.to, v.total.cost, v.currency, v.total.resources
    );
    let mut rows = vec![vec![
        "(all keys)".to_string(),
        percent(v.total.overall.cost_share),
        format!("{:.2}", v.total.overall.cost),
        percent(v.total.overall.resource_share),
        v.total.overall.resources.to_string(),
    ]];
    for k in &v.total.keys {
        rows.push(vec![
            k.key.clone(),
            percent(k.covered.cost_share),
            format!("{:.2}", k.covered.cost),
            percent(k.covered.resource_share),
            k.covered.resources.to_string(),
        ]);
    }
    table(
        &[
            "KEY",
            "COST COVERED",
            "COST",
            "RESOURCES COVERED",
            "RESOURCES",
        ],
        rows,
    );
    if let Some(by) = &v.by {
        println!();
        let mut headers = vec![by.to_uppercase(), "COST".into(), "ALL KEYS".into()];
        headers.extend(v.keys.iter().map(|k| k.to_uppercase()));
        let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
        table(
            &headers,
            v.groups
                .iter()
                .map(|g| {
                    let mut row = vec![
                        g.key.clone().unwrap_or_else(|| "(none)".into()),
                        format!("{:.2}", g.figures.cost),
                        percent(g.figures.overall.cost_share),
                    ];
                    row.extend(g.figures.keys.iter().map(|k| percent(k.covered.cost_share)));
                    row
                })
                .collect(),
        );
    }
}

fn print_untagged(v: &UntaggedView) {
    println!(
        "{} resources lack {} ({:.2} {} of usage cost, {} to {}); the top {}:",
        v.resources,
        v.keys.join(" or "),
        v.cost,
        v.currency,
        v.from,
        v.to,
        v.items.len()
    );
    table(
        &["RESOURCE", "RESOURCE GROUP", "COST", "MISSING", "SUGGESTED"],
        v.items
            .iter()
            .map(|i| {
                let suggested: Vec<String> = i
                    .missing
                    .iter()
                    .map(|m| match &m.suggestion {
                        Some(s) => format!(
                            "{}={} ({})",
                            m.key,
                            s.value,
                            serde_json::to_value(s.source)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        ),
                        None => format!("{}: none", m.key),
                    })
                    .collect();
                vec![
                    i.name.clone().unwrap_or_else(|| i.arm_id.clone()),
                    i.resource_group.clone().unwrap_or_default(),
                    format!("{:.2}", i.cost),
                    i.missing
                        .iter()
                        .map(|m| m.key.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    suggested.join("; "),
                ]
            })
            .collect(),
    );
}

fn print_fix(v: &Value) {
    let empty = Vec::new();
    let created = v["created"].as_array().unwrap_or(&empty);
    let skipped = v["skipped"].as_array().unwrap_or(&empty);
    println!(
        "{} tag edits made, {} skipped",
        created.len(),
        skipped.len()
    );
    table(
        &["RESOURCE", "SET", "STATE"],
        created
            .iter()
            .map(|c| {
                let set = c["edit"]["set"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| {
                                format!(
                                    "{k}={} ({})",
                                    v.as_str().unwrap_or_default(),
                                    c["sources"][k].as_str().unwrap_or_default()
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    })
                    .unwrap_or_default();
                vec![
                    c["name"].as_str().unwrap_or_default().to_string(),
                    set,
                    c["edit"]["state"].as_str().unwrap_or_default().to_string(),
                ]
            })
            .collect(),
    );
    if !skipped.is_empty() {
        println!();
        table(
            &["SKIPPED", "KEY", "WHY"],
            skipped
                .iter()
                .map(|s| {
                    vec![
                        s["arm_id"].as_str().unwrap_or_default().to_string(),
                        s["key"].as_str().unwrap_or("(all)").to_string(),
                        s["reason"].as_str().unwrap_or_default().to_string(),
                    ]
                })
                .collect(),
        );
    }
}

pub async fn coverage(args: CoverageArgs) -> Result<()> {
    match args.command {
        Some(CoverageCommand::RequiredTags { set, clear, api }) => {
            let keys: RequiredTags = if set.is_empty() && !clear {
                call_as(
                    &api,
                    reqwest::Method::GET,
                    "/api/v1/settings/required-tags",
                    None,
                )
                .await?
            } else {
                call_as(
                    &api,
                    reqwest::Method::PUT,
                    "/api/v1/settings/required-tags",
                    Some(json!({ "keys": set })),
                )
                .await?
            };
            if api.json {
                println!("{}", serde_json::to_string(&keys)?);
            } else if keys.keys.is_empty() {
                println!("No required tag keys.");
            } else {
                println!("Required tag keys: {}", keys.keys.join(", "));
            }
        }
        Some(CoverageCommand::Untagged { scope, top, api }) => {
            let mut q = scope.query();
            if let Some(t) = top {
                q.push(format!("top={t}"));
            }
            let view: UntaggedView = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/coverage/untagged?{}", q.join("&")),
                None,
            )
            .await?;
            if api.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                print_untagged(&view);
            }
        }
        Some(CoverageCommand::Fix {
            scope,
            top,
            resources,
            use_suggested,
            values,
            api,
        }) => {
            let mut given = serde_json::Map::new();
            for v in &values {
                let Some((k, val)) = v.split_once('=') else {
                    bail!("--value takes key=value, not '{v}'");
                };
                given.insert(k.trim().to_string(), Value::String(val.to_string()));
            }
            let body = json!({
                "subscription": scope.subscription,
                "resource_group": scope.resource_group,
                "service": scope.service,
                "keys": scope.keys,
                "from": scope.from,
                "to": scope.to,
                "top": top,
                "resource_ids": resources,
                "use_suggested": use_suggested,
                "values": given,
            });
            let answer = call(
                &api,
                reqwest::Method::POST,
                "/api/v1/coverage/fix",
                Some(body),
            )
            .await?;
            if api.json {
                println!("{answer}");
            } else {
                print_fix(&answer);
            }
        }
        None => {
            let Some(token) = args.token.clone() else {
                bail!("no API token: pass --token or set CLOUDKEEP_TOKEN");
            };
            let api = Api {
                url: args.url.clone(),
                token,
                json: args.json,
            };
            let mut q = args.scope.query();
            if let Some(by) = &args.by {
                q.push(format!("by={}", url_escape(by)));
            }
            let view: RequiredTagCoverage = call_as(
                &api,
                reqwest::Method::GET,
                &format!("/api/v1/coverage?{}", q.join("&")),
                None,
            )
            .await?;
            if api.json {
                println!("{}", serde_json::to_string(&view)?);
            } else {
                print_coverage(&view);
            }
        }
    }
    Ok(())
}
