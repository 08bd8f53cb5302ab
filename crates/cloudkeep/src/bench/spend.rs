//! `cloudkeep bench spend`: three figures of the spend pillar.
//!
//! 1. A backfill (13 months) of the `large` preset's first subscriptions
//!    with Azure's throttling on, through the real code path (the `spend`
//!    collector alone), against the minimum Cost Management's query-unit
//!    windows allow for the queries it made: with windows of 12 units per
//!    10 s, 60 per minute and 600 per hour and one unit per query (each
//!    asks for a month or less), Q units need at least
//!    max over windows of (ceil(Q / limit) - 1) × window.
//! 2. An ingest of generated FOCUS rows (10 million by default) through
//!    `Store::record_spend_pull` (the collector's path: replacement,
//!    dimensions, totals) against a bulk load of the same rows into the
//!    same engine (`Store::spend_bulk_load`: one plain insert per pull).
//! 3. Three analyses over those rows, 20 runs each (p50, p95), through
//!    the store's SQL path and through its columnar projection (built
//!    first, its build timed apart; neither answered from the kept
//!    answers), side by side with DuckDB (the PyPI package, installed by
//!    the benchmark into its virtualenv under `target/` the first time)
//!    running the same SQL over the same rows (written as CSV);
//!    PostgreSQL's figures too with `--postgres`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use chrono::NaiveDate;
use clap::Args;
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::spend::{
    SpendDimension, SpendGranularity, SpendGroup, SpendMetric, day_number, month_end, months_before,
};
use cloudkeep_store::{
    CostLine, InventoryWrite, MeterInfo, ObservedResource, SpendPull, SpendQuery, Store,
    SubscriptionRecord, resource_key,
};

use super::{SimChild, SyncSetup, mib, verdict, vm_hwm_kib};

#[derive(Args)]
pub struct SpendArgs {
    /// Subscriptions of the `large` preset whose 13 months are backfilled
    /// with throttling on (0 skips it; all 50 take hours: the query-unit
    /// windows allow 600 an hour).
    #[arg(long, default_value_t = 2)]
    backfill_subscriptions: usize,
    /// FOCUS rows generated for the ingest and the analyses.
    #[arg(long, default_value_t = 10_000_000)]
    rows: u64,
    /// Also ingest into and query this PostgreSQL database (a fresh schema is not made: use an empty database).
    #[arg(long)]
    postgres: Option<String>,
    /// The Python with `duckdb` (default: target/bench-venv/bin/python,
    /// made and given `duckdb` from PyPI by the benchmark when it lacks it).
    #[arg(long)]
    duckdb_python: Option<PathBuf>,
    /// Runs of each analysis.
    #[arg(long, default_value_t = 20)]
    runs: usize,
}

/// Cost Management's query-unit windows: (seconds, units).
const QPU_WINDOWS: [(u64, u64); 3] = [(10, 12), (60, 60), (3600, 600)];

/// The least time `units` query units take under the windows.
pub fn qpu_minimum(units: u64) -> Duration {
    let secs = QPU_WINDOWS
        .iter()
        .map(|(window, limit)| (units.div_ceil(*limit)).saturating_sub(1) * window)
        .max()
        .unwrap_or(0);
    Duration::from_secs(secs)
}

async fn backfill(n: usize) -> Result<()> {
    let sim = SimChild::start("large", 1, "azure").await?;
    let setup = SyncSetup::new(&sim, n, SyncLevel::NoResources)
        .await?
        .only(&["spend"]);
    let since = sim.last_seq().await?;
    let (run, wall) = setup.sync().await?;
    let log = sim.requests_since(since).await?;
    let cost: Vec<_> = log
        .iter()
        .filter(|e| {
            e["path"]
                .as_str()
                .is_some_and(|p| p.ends_with("Microsoft.CostManagement/query"))
        })
        .collect();
    let charged = cost
        .iter()
        .filter(|e| !e["query"].as_str().unwrap_or("").contains("skiptoken"))
        .filter(|e| e["status"] != 429)
        .count() as u64;
    let refused = cost.iter().filter(|e| e["status"] == 429).count();
    let rows = run.report.total("spend", "rows");
    let minimum = qpu_minimum(charged);
    // The backfill is the run's collection: from its start to its end,
    // before the reviews that follow a run (budgets, anomalies) read what
    // it stored; those are printed apart.
    let collection = run
        .finished_at
        .and_then(|f| (f - run.started_at).to_std().ok())
        .unwrap_or(wall);
    let ratio = collection.as_secs_f64() / minimum.as_secs_f64().max(1e-9);
    println!(
        "backfill of {n} subscriptions x 13 months (throttle on, qpu headers): {:.1}s wall ({:.1}s more for the reviews after the run); {} cost requests, {charged} queries charged a unit each, {refused} answered 429",
        collection.as_secs_f64(),
        wall.saturating_sub(collection).as_secs_f64(),
        cost.len()
    );
    println!(
        "  minimum for {charged} units under 12/10s, 60/min, 600/h: {:.1}s (max over windows of (ceil(units/limit) - 1) x window); wall / minimum = {ratio:.2} (target 1.2: {})",
        minimum.as_secs_f64(),
        verdict(ratio <= 1.2 || minimum.is_zero())
    );
    println!(
        "  {rows} rows stored, {:.0} rows/s",
        rows as f64 / collection.as_secs_f64().max(1e-9)
    );
    if let Some(kib) = vm_hwm_kib("/proc/self/status") {
        println!(
            "  peak memory of this process, VmHWM: {:.1} MiB (target 512: {})",
            mib(kib),
            verdict(kib < 512 * 1024)
        );
    }
    Ok(())
}

/// The generated estate: per subscription, resources with one or two meters.
struct Estate {
    subs: Vec<SubscriptionRecord>,
    /// Resource-meter pairs per subscription.
    per_sub: usize,
    from: NaiveDate,
    to: NaiveDate,
}

const SERVICES: [&str; 8] = [
    "Virtual Machines",
    "Storage",
    "SQL Database",
    "Azure App Service",
    "Log Analytics",
    "Virtual Network",
    "Azure Cosmos DB",
    "Key Vault",
];
const REGIONS: [&str; 4] = ["westeurope", "northeurope", "eastus", "uksouth"];
const ENVS: [Option<&str>; 4] = [Some("prod"), Some("dev"), Some("test"), None];

fn arm_id(sub: &str, i: usize) -> String {
    format!(
        "/subscriptions/{sub}/resourceGroups/rg-{}/providers/Microsoft.Compute/virtualMachines/vm-{i}",
        i % 40
    )
}

/// A pair's cost on a day, in whole micro-units so every sum is exact.
fn cost(i: usize, m: usize, day: i64) -> f64 {
    let base = ((i * 7919 + m * 104_729) % 20_000) as i64 + 100;
    let wobble = (day * 31 + i as i64 * 17) % 13;
    (base * (100 + wobble)) as f64 / 1e6
}

fn meter(i: usize, m: usize) -> MeterInfo {
    let service = SERVICES[(i + m) % SERVICES.len()];
    MeterInfo {
        meter: format!("{service} meter {m}"),
        service_name: Some(service.into()),
        charge_category: "Usage".into(),
        pricing_category: Some("Standard".into()),
        commitment_status: None,
        charge_type: "Usage".into(),
    }
}

fn pairs(per_sub: usize) -> impl Iterator<Item = (usize, usize)> {
    // Four resources in five have one meter, the fifth two.
    (0..)
        .flat_map(|i| (0..if i % 5 == 4 { 2 } else { 1 }).map(move |m| (i, m)))
        .take(per_sub)
}

/// The pulls of one subscription, a month at a time.
fn pulls<'a>(e: &'a Estate, sub: &SubscriptionRecord) -> impl Iterator<Item = SpendPull> + 'a {
    let sub_id = sub.azure_id.clone();
    let mut month = e.from;
    std::iter::from_fn(move || {
        if month > e.to {
            return None;
        }
        let to = month_end(month).min(e.to);
        let mut lines = Vec::new();
        let mut d = month;
        while d <= to {
            let n = day_number(d);
            for (i, m) in pairs(e.per_sub) {
                lines.push(CostLine {
                    day: d,
                    resource_id: Some(arm_id(&sub_id, i).to_ascii_lowercase()),
                    meter: meter(i, m),
                    billed: cost(i, m, n),
                    effective: cost(i, m, n),
                });
            }
            d += chrono::Duration::days(1);
        }
        let pull = SpendPull {
            from: month,
            to,
            currency: "USD".into(),
            lines,
            totals: Vec::new(),
        };
        month = to + chrono::Duration::days(1);
        Some(pull)
    })
}

async fn inventory(store: &Store, setup: &SyncSetup, e: &Estate) -> Result<()> {
    for sub in &e.subs {
        let resources: Vec<ObservedResource> = pairs(e.per_sub)
            .filter(|(_, m)| *m == 0)
            .map(|(i, _)| ObservedResource {
                arm_id: arm_id(&sub.azure_id, i),
                name: format!("vm-{i}"),
                resource_type: "Microsoft.Compute/virtualMachines".into(),
                location: REGIONS[i % REGIONS.len()].into(),
                resource_group: format!("rg-{}", i % 40),
                tags: ENVS[i % ENVS.len()]
                    .map(|v| [("env".to_string(), v.to_string())].into())
                    .unwrap_or_default(),
                created: None,
                changed: None,
            })
            .collect();
        store
            .record_inventory(
                &setup.scope,
                sub,
                uuid::Uuid::new_v4(),
                &resources,
                InventoryWrite {
                    tags_read: true,
                    deletions_confirmed: true,
                    scope_tags: None,
                },
            )
            .await?;
    }
    Ok(())
}

/// Ingests every pull; answers the wall time.
async fn ingest(store: &Store, setup: &SyncSetup, e: &Estate, bulk: bool) -> Result<Duration> {
    let started = Instant::now();
    let position = cloudkeep_store::Backfill {
        start_month: e.from,
        next_month: None,
        months_done: 13,
        months_total: 13,
        pulled_through: Some(e.to),
    };
    for sub in &e.subs {
        for pull in pulls(e, sub) {
            if bulk {
                store.spend_bulk_load(&setup.scope, sub, &pull).await?;
            } else {
                store
                    .record_spend_pull(&setup.scope, sub, &pull, &position)
                    .await?;
            }
        }
        if !bulk {
            store.refresh_spend_tags(&setup.scope, sub).await?;
        }
    }
    Ok(started.elapsed())
}

fn queries(to: NaiveDate) -> [(&'static str, SpendQuery); 3] {
    let q = |days: i64, granularity, group: SpendGroup, top| SpendQuery {
        metric: SpendMetric::Billed,
        granularity,
        from: to - chrono::Duration::days(days - 1),
        to,
        groups: vec![group],
        filters: Vec::new(),
        top,
    };
    [
        (
            "cost by service by day, 30 days",
            q(
                30,
                SpendGranularity::Day,
                SpendGroup::Dimension(SpendDimension::Service),
                100,
            ),
        ),
        (
            "cost by tag:env by month, 90 days",
            q(
                90,
                SpendGranularity::Month,
                SpendGroup::Tag("env".into()),
                100,
            ),
        ),
        (
            "top 10 resources, 30 days",
            q(
                30,
                SpendGranularity::Month,
                SpendGroup::Dimension(SpendDimension::Resource),
                10,
            ),
        ),
    ]
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// How the store answers a timed analysis: never from its kept answers
/// (`SpendCache`), which would time a lookup.
#[derive(Clone, Copy)]
enum Answering {
    /// The SQL `GROUP BY`, as when no projection stands for the revision.
    Sql,
    /// The columnar projection, built before the runs (its build is timed apart).
    Columns,
}

async fn time_queries(
    store: &Store,
    setup: &SyncSetup,
    to: NaiveDate,
    runs: usize,
    path: Answering,
) -> Result<Vec<(f64, f64)>> {
    let mut out = Vec::new();
    for (_, q) in queries(to) {
        let mut ms = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let a = match path {
                Answering::Sql => store.spend_analysis_sql(&setup.scope, &q).await?,
                Answering::Columns => store.spend_analysis_columns(&setup.scope, &q).await?,
            };
            ms.push(t.elapsed().as_secs_f64() * 1000.0);
            if a.series.is_empty() {
                bail!("an analysis answered nothing");
            }
        }
        ms.sort_by(f64::total_cmp);
        out.push((percentile(&ms, 0.5), percentile(&ms, 0.95)));
    }
    Ok(out)
}

/// Writes the rows and dimensions DuckDB reads, as CSV.
fn write_csv(dir: &Path, e: &Estate) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let file = |name: &str| -> Result<std::io::BufWriter<std::fs::File>> {
        Ok(std::io::BufWriter::new(std::fs::File::create(
            dir.join(name),
        )?))
    };
    let (mut costs, mut resources, mut meters, mut tags) = (
        file("costs.csv")?,
        file("resources.csv")?,
        file("meters.csv")?,
        file("tags.csv")?,
    );
    writeln!(costs, "day,resource_key,meter_key,billed,effective")?;
    writeln!(resources, "resource_key,sub,rg,region,rtype,resource_id")?;
    writeln!(meters, "meter_key,service")?;
    writeln!(tags, "resource_key,key_lower,tag_value")?;
    let mut seen_meters = std::collections::BTreeSet::new();
    for sub in &e.subs {
        for (i, m) in pairs(e.per_sub) {
            let id = arm_id(&sub.azure_id, i).to_ascii_lowercase();
            let rk = resource_key(&sub.azure_id, Some(&id));
            let mk = meter_key_of(&meter(i, m));
            if m == 0 {
                writeln!(
                    resources,
                    "{rk},{},rg-{},{},microsoft.compute/virtualmachines,{id}",
                    sub.azure_id.to_ascii_lowercase(),
                    i % 40,
                    REGIONS[i % REGIONS.len()]
                )?;
                if let Some(env) = ENVS[i % ENVS.len()] {
                    writeln!(tags, "{rk},env,{env}")?;
                }
            }
            if seen_meters.insert(mk) {
                writeln!(meters, "{mk},{}", SERVICES[(i + m) % SERVICES.len()])?;
            }
            let mut d = e.from;
            while d <= e.to {
                let n = day_number(d);
                writeln!(costs, "{n},{rk},{mk},{},{}", cost(i, m, n), cost(i, m, n))?;
                d += chrono::Duration::days(1);
            }
        }
    }
    for mut w in [costs, resources, meters, tags] {
        w.flush()?;
    }
    Ok(())
}

/// The meter key the store gives a meter (read back from its export).
fn meter_key_of(m: &MeterInfo) -> i64 {
    cloudkeep_store::meter_key(m)
}

const DUCKDB_SCRIPT: &str = r#"
import duckdb, json, sys, time
d, runs, to = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
con = duckdb.connect()
for t in ["costs", "resources", "meters", "tags"]:
    con.execute(f"CREATE TABLE {t} AS SELECT * FROM read_csv_auto('{d}/{t}.csv', header=true)")
q = [
  f"""SELECT c.day, m.service, SUM(c.billed) FROM costs c JOIN meters m ON m.meter_key = c.meter_key
      WHERE c.day BETWEEN {to - 29} AND {to} GROUP BY 1, 2""",
  f"""SELECT date_trunc('month', DATE '1970-01-01' + CAST(c.day AS INTEGER)) AS b, t.tag_value, SUM(c.billed) FROM costs c
      LEFT JOIN (SELECT resource_key, MIN(tag_value) AS tag_value FROM tags WHERE key_lower = 'env' GROUP BY 1) t
      ON t.resource_key = c.resource_key WHERE c.day BETWEEN {to - 89} AND {to} GROUP BY 1, 2""",
  f"""SELECT r.resource_id, SUM(c.billed) AS s FROM costs c JOIN resources r ON r.resource_key = c.resource_key
      WHERE c.day BETWEEN {to - 29} AND {to} GROUP BY 1 ORDER BY s DESC LIMIT 10""",
]
out = []
for sql in q:
    ms = []
    for _ in range(runs):
        t = time.perf_counter(); con.execute(sql).fetchall(); ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    pct = lambda p: ms[min(len(ms) - 1, round((len(ms) - 1) * p))]
    out.append([pct(0.5), pct(0.95)])
print(json.dumps(out))
"#;

/// The benchmark's own virtualenv for DuckDB, and what it installs there.
const BENCH_VENV: &str = "target/bench-venv";
const DUCKDB_PACKAGE: &str = "duckdb>=1.1,<3";

/// The Python that runs DuckDB's side, with DuckDB's version: the one
/// asked for; else the benchmark's virtualenv, made and given `duckdb`
/// from PyPI the first time, so the peer's figures come without a set-up
/// step.
fn duckdb_python(asked: Option<&Path>) -> Result<(PathBuf, String)> {
    let version = |python: &Path| -> Option<String> {
        let out = std::process::Command::new(python)
            .args(["-c", "import duckdb; print(duckdb.__version__)"])
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    if let Some(python) = asked {
        let v =
            version(python).ok_or_else(|| anyhow!("{} cannot import duckdb", python.display()))?;
        return Ok((python.to_path_buf(), v));
    }
    let venv = PathBuf::from(BENCH_VENV);
    let python = venv.join("bin").join("python");
    if let Some(v) = version(&python) {
        return Ok((python, v));
    }
    eprintln!(
        "setting up DuckDB for the comparison: a virtualenv at {BENCH_VENV} with {DUCKDB_PACKAGE} from PyPI"
    );
    let run = |what: &str, cmd: &mut std::process::Command| -> Result<()> {
        let out = cmd
            .output()
            .with_context(|| format!("{what}: could not start"))?;
        if !out.status.success() {
            bail!(
                "{what} failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    };
    run(
        "python3 -m venv",
        std::process::Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv),
    )?;
    run(
        "pip install duckdb",
        std::process::Command::new(venv.join("bin").join("pip")).args([
            "install",
            "--quiet",
            DUCKDB_PACKAGE,
        ]),
    )?;
    let v = version(&python).ok_or_else(|| {
        anyhow!(
            "{} cannot import duckdb after installing it",
            python.display()
        )
    })?;
    Ok((python, v))
}

fn duckdb(python: &Path, dir: &Path, runs: usize, to: NaiveDate) -> Result<Vec<(f64, f64)>> {
    let script = dir.join("bench.py");
    std::fs::write(&script, DUCKDB_SCRIPT)?;
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(dir)
        .arg(runs.to_string())
        .arg(day_number(to).to_string())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "DuckDB's run failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let figures: Vec<(f64, f64)> = serde_json::from_slice(&out.stdout)?;
    Ok(figures)
}

/// One engine's analyses: p50 / p95 per query, through SQL and through
/// the projection.
struct Figures {
    sql: Vec<(f64, f64)>,
    columns: Vec<(f64, f64)>,
}

/// Ingests, bulk-loads and queries one engine; prints its figures.
async fn engine(
    name: &str,
    sim: &SimChild,
    url: Option<&str>,
    args: &SpendArgs,
) -> Result<(Figures, NaiveDate, Estate)> {
    let setup = SyncSetup::on(sim, 3, SyncLevel::ReadWriteTags, url).await?;
    let store = setup.deps.store.clone();
    let conn = store.connection(&setup.scope, setup.connection).await?;
    let subs: Vec<SubscriptionRecord> = conn.live_subscriptions().cloned().collect();
    let to = store.now().date_naive();
    let from = months_before(to, 12);
    let days = (to - from).num_days() as u64 + 1;
    let per_sub = (args.rows / days / subs.len() as u64).max(1) as usize;
    let e = Estate {
        subs,
        per_sub,
        from,
        to,
    };
    let rows = per_sub as u64 * days * e.subs.len() as u64;
    inventory(&store, &setup, &e).await?;
    // The baseline first: the same rows bulk-loaded into the same store,
    // then removed before the ingest through the collector's path.
    let bulk_wall = ingest(&store, &setup, &e, true).await?;
    store.spend_clear(&setup.scope).await?;
    let ingest_wall = ingest(&store, &setup, &e, false).await?;
    let ratio = ingest_wall.as_secs_f64() / bulk_wall.as_secs_f64().max(1e-9);
    println!(
        "{name}: ingest of {rows} FOCUS rows ({} subscriptions x {per_sub} resource-meters x {days} days) through record_spend_pull: {:.1}s ({:.0} rows/s); bulk load of the same rows: {:.1}s; ratio {ratio:.2} (target 1.5: {})",
        e.subs.len(),
        ingest_wall.as_secs_f64(),
        rows as f64 / ingest_wall.as_secs_f64().max(1e-9),
        bulk_wall.as_secs_f64(),
        verdict(ratio <= 1.5)
    );
    store.refresh_statistics().await?;
    let sql = time_queries(&store, &setup, to, args.runs, Answering::Sql).await?;
    // The projection a first analysis would start building in the
    // background, built here in the foreground and timed.
    let built = store.spend_columns_warm(&setup.scope).await?;
    println!("{name}: {}", super::projection_built(&built));
    let columns = time_queries(&store, &setup, to, args.runs, Answering::Columns).await?;
    Ok((Figures { sql, columns }, to, e))
}

pub async fn run(args: SpendArgs) -> Result<()> {
    if args.backfill_subscriptions > 0 {
        backfill(args.backfill_subscriptions).await?;
    }
    // Set up before anything is timed, so the install runs beside nothing.
    let duck_python = duckdb_python(args.duckdb_python.as_deref());
    // The ingest needs subscriptions on record only: the demo preset's three.
    let sim = SimChild::start("demo", 1, "off").await?;
    let (sqlite, to, estate) = engine("SQLite (embedded)", &sim, None, &args).await?;
    let postgres = match &args.postgres {
        Some(url) => Some(engine("PostgreSQL", &sim, Some(url), &args).await?.0),
        None => None,
    };
    let dir = super::bench_dir("spend-duckdb");
    write_csv(&dir, &estate)?;
    let duck = match duck_python.and_then(|(python, version)| {
        let figures = duckdb(&python, &dir, args.runs, to)?;
        println!("DuckDB {version} (PyPI), over the same rows written as CSV");
        Ok(figures)
    }) {
        Ok(f) => Some(f),
        Err(e) => {
            println!("DuckDB: not run ({e:#})");
            None
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "analyses, {} runs each, p50 / p95 in ms, never from kept answers (targets: within 2x of DuckDB; p95 under 150 ms for the first on SQLite); \
         SQL is the GROUP BY path, columns the in-memory projection analyses read while it stands for the revision:",
        args.runs
    );
    let cell = |f: Option<&Vec<(f64, f64)>>, i: usize| {
        f.map(|v| format!("{:>8.1} / {:>8.1}", v[i].0, v[i].1))
            .unwrap_or_else(|| format!("{:>19}", "-"))
    };
    for (i, (name, _)) in queries(to).iter().enumerate() {
        println!("  {name}:");
        println!(
            "    SQLite      SQL {}  columns {}",
            cell(Some(&sqlite.sql), i),
            cell(Some(&sqlite.columns), i)
        );
        if let Some(pg) = &postgres {
            println!(
                "    PostgreSQL  SQL {}  columns {}",
                cell(Some(&pg.sql), i),
                cell(Some(&pg.columns), i)
            );
        }
        if let Some(d) = &duck {
            let r = |v: &Vec<(f64, f64)>| v[i].0 / d[i].0.max(1e-9);
            println!(
                "    DuckDB          {}  p50 ratios to DuckDB: SQLite columns {:.2}x ({}), SQLite SQL {:.1}x",
                cell(Some(d), i),
                r(&sqlite.columns),
                verdict(r(&sqlite.columns) <= 2.0),
                r(&sqlite.sql)
            );
        }
    }
    println!(
        "  first analysis p95 on SQLite: columns {:.1} ms (target 150: {}), SQL {:.1} ms",
        sqlite.columns[0].1,
        verdict(sqlite.columns[0].1 < 150.0),
        sqlite.sql[0].1
    );
    if let Some(kib) = vm_hwm_kib("/proc/self/status") {
        println!("peak memory of this process, VmHWM: {:.1} MiB", mib(kib));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minimum_follows_the_tightest_window() {
        assert_eq!(qpu_minimum(12), Duration::ZERO);
        assert_eq!(qpu_minimum(13), Duration::from_secs(10));
        assert_eq!(qpu_minimum(61), Duration::from_secs(60));
        assert_eq!(qpu_minimum(601), Duration::from_secs(3600));
        assert_eq!(qpu_minimum(1300), Duration::from_secs(7200));
    }
}
