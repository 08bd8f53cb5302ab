//! CLI clients for the API: `connections`, `subscriptions`, `sync`,
//! `resources` and `tags` (and, in `evidence`, `evidence`, `controls` and
//! `alerts`; in `assessments`, `assessments`). Human tables (and progress bars) by default,
//! `--json` for scripts.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cloudkeep_domain::report::StepReport;
use cloudkeep_domain::{RunStatus, StepState};
use cloudkeep_server::Page;
use cloudkeep_server::wire::{ConnectionView, SyncRunView};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub mod anomalies;
pub mod assessments;
pub mod budgets;
pub mod coverage;
pub mod evidence;
pub mod spend;

#[derive(Args, Clone)]
pub struct Api {
    /// The server's URL.
    #[arg(long, env = "CLOUDKEEP_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// An API token (`ck_...`).
    #[arg(long, env = "CLOUDKEEP_TOKEN", hide_env_values = true)]
    token: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Where a client secret comes from: never the command line, where other
/// users and the shell history would see it.
#[derive(Args, Clone)]
pub struct SecretSource {
    /// Read the client secret from the first line of standard input
    /// (otherwise from CLOUDKEEP_CLIENT_SECRET).
    #[arg(long)]
    client_secret_stdin: bool,
}

impl SecretSource {
    fn read(&self) -> Result<String> {
        if self.client_secret_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the client secret from standard input")?;
            return Ok(line.trim_end_matches(['\r', '\n']).to_string());
        }
        std::env::var("CLOUDKEEP_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .context("no client secret: set CLOUDKEEP_CLIENT_SECRET or pass --client-secret-stdin")
    }
}

#[derive(Subcommand)]
pub enum ConnectionsCommand {
    /// List connections with their subscriptions.
    List(Api),
    /// Connect a tenant with a service principal (validated before anything is stored).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        tenant_id: String,
        #[arg(long)]
        client_id: String,
        /// Connect only these subscriptions (repeatable); all it sees by default.
        #[arg(long = "subscription")]
        subscriptions: Vec<String>,
        #[command(flatten)]
        secret: SecretSource,
        #[command(flatten)]
        api: Api,
    },
    /// Replace a connection's client secret after validating it.
    Reauth {
        id: String,
        #[command(flatten)]
        secret: SecretSource,
        #[command(flatten)]
        api: Api,
    },
    /// Revoke a connection: its credential is destroyed, its history kept.
    Revoke {
        id: String,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
pub enum SubscriptionsCommand {
    /// Set a subscription's sync level: no_resources, no_tags, read_tags_only or read_write_tags.
    SetLevel {
        /// cloudkeep's subscription id (see `connections list`).
        id: String,
        level: String,
        #[command(flatten)]
        api: Api,
    },
}

async fn call(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value> {
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(&api.token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.with_context(|| {
        format!("cannot reach {url}: is the server running? (--url or CLOUDKEEP_URL)")
    })?;
    let status = r.status();
    let text = r.text().await?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        return Err(api_error(status, &value));
    }
    Ok(value)
}

/// An error answer as the API words it.
fn api_error(status: reqwest::StatusCode, value: &Value) -> anyhow::Error {
    let message = value["error"]["message"].as_str().unwrap_or("no message");
    let code = value["error"]["code"].as_str().unwrap_or("error");
    anyhow::anyhow!("{message} ({code}, HTTP {})", status.as_u16())
}

/// A call whose answer is one of the API's wire types.
async fn call_as<T: DeserializeOwned>(
    api: &Api,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<T> {
    let value = call(api, method, path, body).await?;
    serde_json::from_value(value).with_context(|| format!("reading the answer of {path}"))
}

/// Every page of a list (`path` may carry a query already).
async fn all_pages<T: DeserializeOwned>(api: &Api, path: &str) -> Result<Vec<T>> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page_path = match &after {
            Some(a) => format!("{path}{sep}limit=1000&after={}", url_escape(a)),
            None => format!("{path}{sep}limit=1000"),
        };
        let page: Page<T> = call_as(api, reqwest::Method::GET, &page_path, None).await?;
        all.extend(page.items);
        match page.next {
            Some(a) => after = Some(a),
            None => return Ok(all),
        }
    }
}

/// Prints rows as an aligned table.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", padded.join("  ").trim_end());
    };
    line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_connections(list: &[ConnectionView]) {
    let mut rows = Vec::new();
    for c in list {
        for sub in &c.subscriptions {
            let missing: Vec<&str> = sub
                .permissions
                .roles_missing
                .iter()
                .map(|m| m.role.as_str())
                .collect();
            rows.push(vec![
                c.id.to_string(),
                c.name.clone(),
                c.status.to_string(),
                sub.id.to_string(),
                sub.subscription_id.clone(),
                sub.display_name.clone(),
                match sub.detached_at {
                    Some(_) => "(left this connection)".into(),
                    None => sub.sync_level.to_string(),
                },
                if missing.is_empty() {
                    "-".into()
                } else {
                    missing.join(", ")
                },
            ]);
        }
        if c.subscriptions.is_empty() {
            rows.push(vec![
                c.id.to_string(),
                c.name.clone(),
                c.status.to_string(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    table(
        &[
            "CONNECTION",
            "NAME",
            "STATUS",
            "SUBSCRIPTION",
            "AZURE SUBSCRIPTION",
            "DISPLAY NAME",
            "SYNC LEVEL",
            "MISSING ROLES",
        ],
        rows,
    );
}

/// Prints a wire value as JSON (`--json`) or for people.
fn output_as<T: serde::Serialize>(api: &Api, value: &T, human: impl FnOnce(&T)) {
    if api.json {
        println!("{}", serde_json::to_value(value).unwrap_or(Value::Null));
    } else {
        human(value);
    }
}

fn output(api: &Api, value: &Value, human: impl FnOnce(&Value)) {
    if api.json {
        println!("{value}");
    } else {
        human(value);
    }
}

pub async fn connections(cmd: ConnectionsCommand) -> Result<()> {
    match cmd {
        ConnectionsCommand::List(api) => {
            let list: Vec<ConnectionView> = all_pages(&api, "/api/v1/connections").await?;
            output_as(&api, &list, |v| print_connections(v));
        }
        ConnectionsCommand::Add {
            name,
            tenant_id,
            client_id,
            subscriptions,
            secret,
            api,
        } => {
            let mut body = json!({"name": name, "tenant_id": tenant_id, "client_id": client_id, "client_secret": secret.read()?});
            if !subscriptions.is_empty() {
                body["subscription_ids"] = json!(subscriptions);
            }
            let created: ConnectionView = call_as(
                &api,
                reqwest::Method::POST,
                "/api/v1/connections",
                Some(body),
            )
            .await?;
            output_as(&api, &created, |v| {
                print_connections(std::slice::from_ref(v))
            });
        }
        ConnectionsCommand::Reauth { id, secret, api } => {
            let body = json!({"client_secret": secret.read()?});
            let updated: ConnectionView = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/connections/{id}/reauth"),
                Some(body),
            )
            .await?;
            output_as(&api, &updated, |v| {
                print_connections(std::slice::from_ref(v))
            });
        }
        ConnectionsCommand::Revoke { id, api } => {
            let revoked = call(
                &api,
                reqwest::Method::DELETE,
                &format!("/api/v1/connections/{id}"),
                None,
            )
            .await?;
            output(&api, &revoked, |v| {
                println!(
                    "connection {} revoked at {}; its credential is destroyed",
                    s(&v["id"]),
                    s(&v["deleted_at"])
                )
            });
        }
    }
    Ok(())
}

pub async fn subscriptions(cmd: SubscriptionsCommand) -> Result<()> {
    match cmd {
        SubscriptionsCommand::SetLevel { id, level, api } => {
            let updated = call(
                &api,
                reqwest::Method::PATCH,
                &format!("/api/v1/subscriptions/{id}"),
                Some(json!({"sync_level": level})),
            )
            .await?;
            output(&api, &updated, |v| {
                println!(
                    "{} ({}): sync level {}",
                    s(&v["display_name"]),
                    s(&v["subscription_id"]),
                    s(&v["sync_level"])
                );
                let removed: Vec<String> = v["removed"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter(|(_, n)| n.as_u64().is_some_and(|n| n > 0))
                            .map(|(k, n)| format!("{} {}", s(n), k.replace('_', " ")))
                            .collect()
                    })
                    .unwrap_or_default();
                if !removed.is_empty() {
                    println!(
                        "the lower level took effect at once: {}",
                        removed.join(", ")
                    );
                }
            });
        }
    }
    Ok(())
}

#[derive(Subcommand)]
pub enum SyncCommand {
    /// Start a sync of a connection now; with --wait, follow it (a progress
    /// bar per subscription) and print what each collector did.
    Run {
        #[arg(long)]
        connection: String,
        /// Wait for the run to end, showing its progress.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: Api,
    },
    /// Recent sync runs.
    Runs {
        #[arg(long)]
        connection: Option<String>,
        #[command(flatten)]
        api: Api,
    },
}

#[derive(Subcommand)]
pub enum ResourcesCommand {
    /// List resources, all pages, with filters.
    List {
        /// cloudkeep's subscription id.
        #[arg(long)]
        subscription: Option<String>,
        #[arg(long)]
        resource_group: Option<String>,
        #[arg(long = "type")]
        resource_type: Option<String>,
        #[arg(long)]
        location: Option<String>,
        /// Part of the name.
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        has_tag: Option<String>,
        /// key=value
        #[arg(long)]
        tag: Option<String>,
        #[arg(long)]
        missing_tag: Option<String>,
        #[arg(long)]
        include_deleted: bool,
        #[command(flatten)]
        api: Api,
    },
}

/// A step as a table cell: its figures, progress, or why it was skipped or failed.
fn step_detail(step: &StepReport) -> String {
    let figures: Vec<String> = step
        .counts
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let progress = step
        .progress
        .as_ref()
        .map(|p| format!("{}/{} {}", p.done, p.total, p.unit));
    match step.state {
        StepState::Skipped => format!("skipped: {}", step.reason.as_deref().unwrap_or("-")),
        StepState::Failed => format!("failed: {}", step.reason.as_deref().unwrap_or("-")),
        StepState::Pending | StepState::Running => {
            let mut text = step.state.to_string();
            if let Some(p) = progress {
                text = format!("{text} {p}");
            }
            text
        }
        StepState::Succeeded => figures.join(" "),
    }
}

fn print_run(run: &SyncRunView) {
    println!("run {} ({}): {}", run.id, run.trigger, run.status);
    let mut rows = Vec::new();
    for sub in &run.report.subscriptions {
        for step in &sub.steps {
            rows.push(vec![
                sub.subscription_id.clone(),
                step.step.clone(),
                step_detail(step),
            ]);
        }
    }
    for e in &run.report.errors {
        rows.push(vec![
            e.subscription.clone().unwrap_or_else(|| "-".into()),
            e.collector.clone().unwrap_or_else(|| "-".into()),
            format!("ERROR {}: {}", e.kind, e.message),
        ]);
    }
    table(&["SUBSCRIPTION", "STEP", "RESULT"], rows);
}

/// Polls a run until it ends, with a progress bar per subscription (on a
/// terminal, and not with --json); answers the finished run.
async fn follow(api: &Api, run: SyncRunView) -> Result<SyncRunView> {
    use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
    let path = format!("/api/v1/sync-runs/{}", run.id);
    let target = if api.json {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    };
    let bars = MultiProgress::with_draw_target(target);
    let style = ProgressStyle::with_template("{prefix:38} [{bar:30}] {pos}/{len} {msg}")
        .map_err(|e| anyhow::anyhow!("progress template: {e}"))?
        .progress_chars("=> ");
    let mut shown: std::collections::BTreeMap<String, ProgressBar> = Default::default();
    let mut run = run;
    // A run has an hour; one still running well after that was lost with
    // its server (a restart), and the server will mark it so.
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(75 * 60);
    loop {
        for sub in &run.report.subscriptions {
            let counted: Vec<&StepReport> = sub
                .steps
                .iter()
                .filter(|s| s.state != StepState::Skipped)
                .collect();
            let done = counted.iter().filter(|s| !s.state.is_active()).count();
            let bar = shown.entry(sub.subscription_id.clone()).or_insert_with(|| {
                let bar = bars.add(ProgressBar::new(counted.len() as u64));
                bar.set_style(style.clone());
                bar.set_prefix(sub.subscription_id.clone());
                bar
            });
            bar.set_length(counted.len() as u64);
            bar.set_position(done as u64);
            let failed = run
                .report
                .errors
                .iter()
                .any(|e| e.subscription.as_deref() == Some(sub.subscription_id.as_str()));
            // The step under way, with how far it has come (a backfill's months).
            let current = counted
                .iter()
                .find(|s| s.state == StepState::Running)
                .or_else(|| counted.iter().find(|s| s.state.is_active()))
                .map(|s| match &s.progress {
                    Some(p) => format!("{} {}/{} {}", s.step, p.done, p.total, p.unit),
                    None => s.step.clone(),
                });
            bar.set_message(match (current, failed) {
                (Some(step), false) => step,
                (Some(step), true) => format!("{step} (errors so far)"),
                (None, false) => "done".to_string(),
                (None, true) => "done, with errors".to_string(),
            });
        }
        if run.status != RunStatus::Running {
            break;
        }
        if std::time::Instant::now() > give_up {
            bail!(
                "run {} has not ended after 75 minutes: its server may have stopped during it; see `cloudkeep sync runs`",
                run.id
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        run = call_as(api, reqwest::Method::GET, &path, None).await?;
    }
    for bar in shown.values() {
        bar.finish();
    }
    if !bars.is_hidden() {
        // The summary starts on a line of its own, below the bars.
        eprintln!();
    }
    Ok(run)
}

pub async fn sync(cmd: SyncCommand) -> Result<()> {
    match cmd {
        SyncCommand::Run {
            connection,
            wait,
            api,
        } => {
            let started: SyncRunView = call_as(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/connections/{connection}/sync?wait=false"),
                None,
            )
            .await?;
            if !wait {
                output_as(&api, &started, |run| {
                    println!(
                        "run {} started; follow it with `cloudkeep sync runs` or `sync run --wait`",
                        run.id
                    );
                });
                return Ok(());
            }
            let run = follow(&api, started).await?;
            output_as(&api, &run, print_run);
            if run.status == RunStatus::Failed {
                let why: Vec<String> = run
                    .report
                    .errors
                    .iter()
                    .map(|e| e.message.clone())
                    .collect();
                bail!("the sync failed: {}", why.join("; "));
            }
        }
        SyncCommand::Runs { connection, api } => {
            let path = match connection {
                Some(c) => format!("/api/v1/sync-runs?connection={}&limit=50", url_escape(&c)),
                None => "/api/v1/sync-runs?limit=50".to_string(),
            };
            let runs: Page<SyncRunView> = call_as(&api, reqwest::Method::GET, &path, None).await?;
            output_as(&api, &runs.items, |runs| {
                let rows = runs
                    .iter()
                    .map(|r| {
                        vec![
                            r.id.to_string(),
                            r.connection_id.to_string(),
                            r.trigger.to_string(),
                            r.status.to_string(),
                            r.started_at.to_rfc3339(),
                            r.finished_at
                                .map(|t| t.to_rfc3339())
                                .unwrap_or_else(|| "-".into()),
                        ]
                    })
                    .collect();
                table(
                    &[
                        "RUN",
                        "CONNECTION",
                        "TRIGGER",
                        "STATUS",
                        "STARTED",
                        "FINISHED",
                    ],
                    rows,
                );
            });
        }
    }
    Ok(())
}

pub async fn resources(cmd: ResourcesCommand) -> Result<()> {
    let ResourcesCommand::List {
        subscription,
        resource_group,
        resource_type,
        location,
        name,
        has_tag,
        tag,
        missing_tag,
        include_deleted,
        api,
    } = cmd;
    let query = form_query(&[
        ("subscription", subscription),
        ("resource_group", resource_group),
        ("type", resource_type),
        ("location", location),
        ("name", name),
        ("has_tag", has_tag),
        ("tag", tag),
        ("missing_tag", missing_tag),
        (
            "include_deleted",
            include_deleted.then(|| "true".to_string()),
        ),
    ]);
    let all: Vec<Value> = all_pages(&api, &format!("/api/v1/resources?{query}")).await?;
    let list = Value::Array(all);
    output(&api, &list, |v| {
        let rows = v
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|r| {
                let tags = match r["tags"].as_object() {
                    Some(t) => t
                        .iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(","),
                    None => "(not read)".into(),
                };
                vec![
                    s(&r["name"]),
                    s(&r["type"]),
                    s(&r["resource_group"]),
                    s(&r["location"]),
                    tags,
                    if r["deleted_at"].is_null() {
                        "-".into()
                    } else {
                        "deleted".into()
                    },
                ]
            })
            .collect();
        table(
            &[
                "NAME",
                "TYPE",
                "RESOURCE GROUP",
                "LOCATION",
                "TAGS",
                "STATE",
            ],
            rows,
        );
        println!("{} resources", v.as_array().map(Vec::len).unwrap_or(0));
    });
    Ok(())
}

fn form_query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", url_escape(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes a query value.
pub(crate) fn url_escape(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Which resources a tag command edits: one, or every one a filter matches.
#[derive(Args, Clone)]
pub struct TagTarget {
    /// cloudkeep's resource id.
    #[arg(long)]
    resource: Option<String>,
    /// Every live resource of this subscription (cloudkeep's id)...
    #[arg(long)]
    subscription: Option<String>,
    #[arg(long)]
    resource_group: Option<String>,
    #[arg(long = "type")]
    resource_type: Option<String>,
    #[arg(long)]
    has_tag: Option<String>,
    #[arg(long)]
    missing_tag: Option<String>,
}

impl TagTarget {
    fn body(&self) -> Result<Value> {
        if let Some(r) = &self.resource {
            return Ok(json!({ "resource_id": r }));
        }
        let filter = json!({
            "subscription": self.subscription, "resource_group": self.resource_group, "type": self.resource_type,
            "has_tag": self.has_tag, "missing_tag": self.missing_tag,
        });
        if filter
            .as_object()
            .is_some_and(|m| m.values().all(Value::is_null))
        {
            bail!(
                "name the resources: --resource ID, or a filter (--subscription, --resource-group, --type, --has-tag, --missing-tag)"
            );
        }
        let filter: serde_json::Map<String, Value> = filter
            .as_object()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .collect();
        Ok(json!({ "filter": filter }))
    }
}

#[derive(Subcommand)]
pub enum TagsCommand {
    /// Set tags (`KEY=VALUE`, repeatable) on one resource or on a filter's resources.
    Set {
        #[arg(required = true)]
        tags: Vec<String>,
        #[command(flatten)]
        target: TagTarget,
        #[command(flatten)]
        api: Api,
    },
    /// Remove tags by name.
    Remove {
        #[arg(required = true)]
        names: Vec<String>,
        #[command(flatten)]
        target: TagTarget,
        #[command(flatten)]
        api: Api,
    },
    /// List conflicts, or resolve one with --resolve ID and --keep-mine or --take-theirs.
    Conflicts {
        #[arg(long)]
        resolve: Option<String>,
        #[arg(long, conflicts_with = "take_theirs")]
        keep_mine: bool,
        #[arg(long)]
        take_theirs: bool,
        #[command(flatten)]
        api: Api,
    },
}

fn print_edits(v: &Value) {
    let rows = v
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            let set = e["set"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", s(v)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let remove = e["remove"]
                .as_array()
                .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
                .unwrap_or_default();
            vec![
                s(&e["id"]),
                s(&e["resource_id"]),
                s(&e["state"]),
                set,
                remove,
                s(&e["reason"]),
            ]
        })
        .collect();
    table(
        &["EDIT", "RESOURCE", "STATE", "SET", "REMOVE", "REASON"],
        rows,
    );
}

/// New edits, and the resources a bulk edit left alone.
fn print_created(v: &Value) {
    print_edits(&v["edits"]);
    let skipped = v["skipped"].as_array().map(Vec::len).unwrap_or(0);
    if skipped > 0 {
        println!(
            "{skipped} matching resources were left alone: {}",
            s(&v["skipped"][0]["reason"])
        );
    }
}

pub async fn tags(cmd: TagsCommand) -> Result<()> {
    match cmd {
        TagsCommand::Set { tags, target, api } => {
            let mut set = serde_json::Map::new();
            for t in &tags {
                let (k, v) = t
                    .split_once('=')
                    .with_context(|| format!("'{t}' is not KEY=VALUE"))?;
                set.insert(k.to_string(), json!(v));
            }
            let mut body = target.body()?;
            body["set"] = Value::Object(set);
            let created =
                call(&api, reqwest::Method::POST, "/api/v1/tag-edits", Some(body)).await?;
            output(&api, &created, print_created);
        }
        TagsCommand::Remove { names, target, api } => {
            let mut body = target.body()?;
            body["remove"] = json!(names);
            let created =
                call(&api, reqwest::Method::POST, "/api/v1/tag-edits", Some(body)).await?;
            output(&api, &created, print_created);
        }
        TagsCommand::Conflicts {
            resolve: Some(id),
            keep_mine,
            take_theirs,
            api,
        } => {
            let resolution = match (keep_mine, take_theirs) {
                (true, false) => "keep_mine",
                (false, true) => "take_theirs",
                _ => bail!("say how: --keep-mine or --take-theirs"),
            };
            let done = call(
                &api,
                reqwest::Method::POST,
                &format!("/api/v1/tag-edits/{id}/resolve"),
                Some(json!({ "resolution": resolution })),
            )
            .await?;
            output(&api, &done, |v| match v["edit"].as_object() {
                Some(_) => println!(
                    "kept yours: edit {} will be written at the next sync",
                    s(&v["edit"]["id"])
                ),
                None => println!("kept Azure's value"),
            });
        }
        TagsCommand::Conflicts {
            resolve: None, api, ..
        } => {
            let list: Vec<Value> = all_pages(&api, "/api/v1/tag-edits?state=conflict").await?;
            output(&api, &Value::Array(list), print_edits);
        }
    }
    Ok(())
}
