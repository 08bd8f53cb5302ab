//! `cloudkeep bench anomalies`: the anomaly detector against ground truth.
//!
//! The simulator (the `large` preset by default: 13 months of cost) gets a
//! fixed list of spikes (4× to 10×, one to three days) through its control
//! API before the first sync, each on a service of a subscription (every
//! resource with a meter of that service: the control API spikes one
//! resource a call), services large and small (at least 1% of the
//! subscription's spend).
//! The spend collector backfills the first subscriptions, and the detector
//! then runs over every day the data covers (`anomalies::review_with`,
//! alerts off). Printed: detection time and its peak memory (the
//! process's high-water mark reset just before), recall (injected spikes
//! found: an anomaly incident on the spiked resource's subscription and
//! one of its services, overlapping its days) and incidents where nothing
//! was injected, per subscription per month.
//!
//! The simulator's generator also makes rare 4–10× days of its own (3 in a
//! thousand resource-days): the benchmark builds the same world in-process
//! (same preset, seed and day) to tell those apart, and prints the false
//! incidents with and without them.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use chrono::{Datelike, Duration, NaiveDate};
use clap::Args;
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::anomaly::{Direction, IncidentKind};
use cloudkeep_sim::world::cost::{EventKind, catalogue};
use cloudkeep_sim::world::{Preset, Resource, World, mix};
use cloudkeep_store::Incident;
use cloudkeep_sync::anomalies::{ReviewOptions, review_with};
use serde_json::json;

use super::{SimChild, SyncSetup, mib, verdict, vm_hwm_kib};

#[derive(Args)]
pub struct AnomaliesArgs {
    /// The simulator's preset: `large` (13 months, 2,000 resources a
    /// subscription) or `demo` (90 days, 100).
    #[arg(long, default_value = "large")]
    preset: String,
    /// Subscriptions backfilled and judged (each of `large` is about a
    /// million cost rows).
    #[arg(long, default_value_t = 3)]
    subscriptions: usize,
    /// Spikes injected per subscription.
    #[arg(long, default_value_t = 4)]
    spikes_per_subscription: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Incidents where nothing was injected shown one by one (at most).
    #[arg(long, default_value_t = 10)]
    show: usize,
}

/// The fixed list's factors and lengths, taken in turn.
const FACTORS: [f64; 6] = [4.0, 10.0, 6.0, 5.0, 8.0, 4.0];
const LENGTHS: [i64; 3] = [1, 3, 2];

/// One injected spike.
#[derive(Debug, Clone)]
struct Spike {
    subscription: String,
    resources: Vec<String>,
    /// Every service of the resources' meters (a VM's bandwidth spikes too).
    services: BTreeSet<String>,
    /// The service the resource was chosen for, and its share of the
    /// subscription's spend.
    service: String,
    service_share: f64,
    from: NaiveDate,
    to: NaiveDate,
    factor: f64,
}

/// A resource's base daily cost per service.
fn service_costs(r: &Resource) -> Vec<(&'static str, f64)> {
    catalogue::meters(&r.resource_type)
        .iter()
        .map(|m| (m.service_name, r.cost.daily * m.share))
        .collect()
}

fn alive(r: &Resource, from: NaiveDate, to: NaiveDate) -> bool {
    r.created.date_naive() < from - Duration::days(60) && r.deleted.is_none_or(|d| d > to)
}

/// The simulator's own rare 4–10× day of a resource (the generator's
/// rule in `world::cost::resource_day_cost`, repeated here as ground truth).
fn generated_spike(r: &Resource, date: NaiveDate) -> bool {
    if r.cost.daily <= 0.0 {
        return false;
    }
    let d = date.num_days_from_ce() as i64;
    let h = mix(r.cost_seed ^ (d as u64).wrapping_mul(0x9e37_79b9));
    mix(h) % 1000 < 3
}

/// The fixed list of spikes over the first subscriptions.
fn plan(world: &World, subs: &[String], per_sub: usize) -> Vec<Spike> {
    let today = world.today();
    let start = world.cost_start();
    // Days a spike may start on: after the detector's 42 days of history
    // and its 4 weeks of expected values, before the last 3 days.
    let first = start + Duration::days(72);
    let span = (today - Duration::days(3) - first).num_days().max(1);
    let mut out = Vec::new();
    let mut n = 0usize;
    for sub in subs {
        let mine: Vec<&Resource> = world
            .resources
            .iter()
            .filter(|r| r.subscription_id.eq_ignore_ascii_case(sub) && r.cost.daily > 0.0)
            .collect();
        let mut by_service: BTreeMap<&str, f64> = BTreeMap::new();
        for r in &mine {
            for (s, c) in service_costs(r) {
                *by_service.entry(s).or_default() += c;
            }
        }
        let total: f64 = by_service.values().sum();
        // Services of at least 1% of the subscription's spend.
        let mut services: Vec<(&str, f64)> = by_service
            .iter()
            .filter(|(_, c)| **c >= 0.01 * total)
            .map(|(s, c)| (*s, *c / total))
            .collect();
        services.sort_by(|a, b| b.1.total_cmp(&a.1));
        if services.is_empty() {
            continue;
        }
        // Large and small in turn: the largest, the smallest, the second, ...
        let mut order = Vec::new();
        let (mut lo, mut hi) = (0usize, services.len() - 1);
        while lo <= hi && order.len() < per_sub {
            order.push(lo);
            if hi != lo && order.len() < per_sub {
                order.push(hi);
            }
            lo += 1;
            if hi == 0 {
                break;
            }
            hi -= 1;
        }
        for (j, i) in order.into_iter().enumerate() {
            let (service, share) = services[i];
            let factor = FACTORS[n % FACTORS.len()];
            let len = LENGTHS[n % LENGTHS.len()];
            // Spread over the months, apart from one another in a subscription.
            let offset = ((n as i64 * 53) + j as i64 * 17) % span;
            let from = first + Duration::days(offset);
            let to = (from + Duration::days(len - 1)).min(today - Duration::days(1));
            n += 1;
            let on: Vec<&&Resource> = mine
                .iter()
                .filter(|r| service_costs(r).iter().any(|(x, _)| *x == service))
                .filter(|r| alive(r, from, to))
                .collect();
            if on.is_empty() {
                continue;
            }
            out.push(Spike {
                subscription: sub.to_ascii_lowercase(),
                resources: on.iter().map(|r| r.id.clone()).collect(),
                services: on
                    .iter()
                    .flat_map(|r| service_costs(r))
                    .map(|(s, _)| s.to_string())
                    .collect(),
                service: service.to_string(),
                service_share: share,
                from,
                to,
                factor,
            });
        }
    }
    out
}

/// The simulator's own spikes (the demo's runaway database) on these subscriptions.
fn preset_events(world: &World, subs: &[String]) -> Vec<Spike> {
    world
        .cost_events
        .iter()
        .filter(|e| e.kind == EventKind::Spike)
        .filter_map(|e| {
            let r = world.resources.iter().find(|r| r.id == e.scope)?;
            subs.iter()
                .any(|s| s.eq_ignore_ascii_case(&r.subscription_id))
                .then(|| Spike {
                    subscription: r.subscription_id.to_ascii_lowercase(),
                    resources: vec![r.id.clone()],
                    services: service_costs(r)
                        .iter()
                        .map(|(s, _)| s.to_string())
                        .collect(),
                    service: service_costs(r)
                        .first()
                        .map(|(s, _)| s.to_string())
                        .unwrap_or_default(),
                    service_share: 0.0,
                    from: e.from,
                    to: e.to,
                    factor: e.factor,
                })
        })
        .collect()
}

fn overlaps(i: &Incident, from: NaiveDate, to: NaiveDate) -> bool {
    i.first_day <= to && from <= i.last_day
}

fn matches(i: &Incident, s: &Spike) -> bool {
    i.subscription == s.subscription && s.services.contains(&i.subject) && overlaps(i, s.from, s.to)
}

/// A `/proc/.../status` figure in KiB (`VmRSS:`, ...).
fn vm_kib(file: &str, field: &str) -> Option<u64> {
    std::fs::read_to_string(file)
        .ok()?
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Resets the process's peak resident memory (Linux: `clear_refs` 5).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

pub async fn run(args: AnomaliesArgs) -> Result<()> {
    let preset = Preset::by_name(&args.preset)
        .with_context(|| format!("no preset '{}': use large or demo", args.preset))?;
    let sim = SimChild::start(&args.preset, args.seed, "off").await?;
    let today = sim.scenario["today"]
        .as_str()
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        .context("the scenario's today")?;
    // The same world in-process: where to inject, and the generator's own spikes.
    let world = cloudkeep_sim::world::generate(preset, args.seed, today);
    let subs: Vec<String> = sim
        .subscription_ids()
        .into_iter()
        .take(args.subscriptions)
        .collect();
    let spikes = plan(&world, &subs, args.spikes_per_subscription);
    if spikes.is_empty() {
        bail!("no service fits a spike");
    }
    let mut calls = 0;
    for s in &spikes {
        for resource in &s.resources {
            let response = sim
                .http
                .post(format!("{}/_sim/cost/events", sim.url))
                .json(
                    &json!({"kind": "spike", "resource_id": resource, "factor": s.factor,
                    "from": s.from.to_string(), "to": s.to.to_string(), "note": "bench: injected"}),
                )
                .send()
                .await?;
            if !response.status().is_success() {
                bail!(
                    "injecting a spike answered {}: {}",
                    response.status(),
                    response.text().await.unwrap_or_default()
                );
            }
            calls += 1;
        }
    }
    let mut truth = spikes.clone();
    truth.extend(preset_events(&world, &subs));
    let shares: Vec<f64> = spikes.iter().map(|s| s.service_share).collect();
    println!(
        "injected {} spikes ({}x to {}x, 1 to 3 days; {calls} control calls, one per resource) on {} subscriptions, on services of {:.1}% to {:.1}% of their subscription's spend",
        spikes.len(),
        FACTORS.iter().cloned().fold(f64::MAX, f64::min),
        FACTORS.iter().cloned().fold(0.0, f64::max),
        subs.len(),
        shares.iter().cloned().fold(f64::MAX, f64::min) * 100.0,
        shares.iter().cloned().fold(0.0, f64::max) * 100.0,
    );

    let setup = SyncSetup::new(&sim, subs.len(), SyncLevel::NoResources)
        .await?
        .only(&["spend"]);
    let (run, wall) = setup.sync().await?;
    println!(
        "backfill of {} subscriptions ({} days of cost, spend collector only, throttle off): {:.1}s, {} rows",
        subs.len(),
        (today - world.cost_start()).num_days() + 1,
        wall.as_secs_f64(),
        run.report.total("spend", "rows")
    );
    // Not in the detection's peak: built again for the tally.
    drop(world);

    let store = &setup.deps.store;
    let before = vm_kib("/proc/self/status", "VmRSS:");
    let reset = reset_peak();
    let started = Instant::now();
    let review = review_with(
        store,
        &setup.scope,
        "system:bench",
        &ReviewOptions {
            days: None,
            alerts: false,
            ..ReviewOptions::default()
        },
    )
    .await?;
    let took = started.elapsed();
    let peak = vm_hwm_kib("/proc/self/status");
    println!(
        "detection over every day: {} series (subscription x service), {} series-days, {:.2}s; {} incidents",
        review.series,
        review.days,
        took.as_secs_f64(),
        review.incidents.len()
    );
    if let Some(kib) = peak {
        println!(
            "  peak memory during detection, VmHWM{}: {:.1} MiB; resident before it (the backfill's heap, kept by the allocator): {:.1} MiB",
            if reset {
                " (reset before it)"
            } else {
                " (of the whole process: could not reset)"
            },
            mib(kib),
            before.map(mib).unwrap_or(f64::NAN)
        );
    }

    // Recall over this benchmark's spikes.
    let anomalies: Vec<&Incident> = review
        .incidents
        .iter()
        .filter(|i| i.kind == IncidentKind::Anomaly)
        .collect();
    let mut missed = Vec::new();
    for s in &spikes {
        if !anomalies
            .iter()
            .any(|i| i.direction == Direction::Up && matches(i, s))
        {
            missed.push(s);
        }
    }
    let found = spikes.len() - missed.len();
    println!(
        "recall: {found}/{} injected spikes found (target: every spike of at least 4x on a service of at least 1% of its subscription's spend: {})",
        spikes.len(),
        verdict(missed.is_empty())
    );
    for s in &missed {
        println!(
            "  missed: {}x on {} in {} ({:.1}% of the subscription) {} to {}",
            s.factor,
            s.service,
            s.subscription,
            s.service_share * 100.0,
            s.from,
            s.to
        );
    }

    // Incidents where nothing was injected.
    let world = cloudkeep_sim::world::generate(preset, args.seed, today);
    let unexplained: Vec<&&Incident> = anomalies
        .iter()
        .filter(|i| !truth.iter().any(|s| matches(i, s)))
        .collect();
    let generated = unexplained
        .iter()
        .filter(|i| {
            world.resources.iter().any(|r| {
                r.subscription_id.eq_ignore_ascii_case(&i.subscription)
                    && service_costs(r).iter().any(|(s, _)| *s == i.subject)
                    && {
                        let mut d = i.first_day;
                        let mut any = false;
                        while d <= i.last_day {
                            any |= generated_spike(r, d);
                            d += Duration::days(1);
                        }
                        any
                    }
            })
        })
        .count();
    // Months judged: from the detector's 42 days of history to today.
    let judged_days = ((today - world.cost_start()).num_days() + 1 - 42).max(1) as f64;
    let sub_months = subs.len() as f64 * judged_days / 30.44;
    let rate = unexplained.len() as f64 / sub_months;
    let rate_net = (unexplained.len() - generated) as f64 / sub_months;
    println!(
        "incidents where nothing was injected: {} over {sub_months:.1} subscription-months = {rate:.2} per subscription per month (target at most 1: {})",
        unexplained.len(),
        verdict(rate <= 1.0)
    );
    println!(
        "  of which {generated} fall on the simulator's own generated 4-10x days (real anomalies in its data); without them {rate_net:.2} per subscription per month (target at most 1: {})",
        verdict(rate_net <= 1.0)
    );
    for i in unexplained.iter().take(args.show) {
        let top = i.resources().next();
        let created = top.and_then(|c| {
            world
                .resources
                .iter()
                .find(|r| r.id.eq_ignore_ascii_case(&c.item))
                .map(|r| (r.created.date_naive(), r.deleted))
        });
        println!(
            "  {} {} {} to {}: expected {:.2}, actual {:.2}, z {:.1}; mostly {} ({:.0}%){}",
            i.subscription_name,
            i.subject,
            i.first_day,
            i.last_day,
            i.expected,
            i.actual,
            i.max_z.unwrap_or(0.0),
            top.map(|c| c.item.rsplit('/').next().unwrap_or(""))
                .unwrap_or("-"),
            top.map(|c| c.share * 100.0).unwrap_or(0.0),
            created
                .map(|(c, d)| format!(
                    ", created {c}{}",
                    d.map(|d| format!(", deleted {d}")).unwrap_or_default()
                ))
                .unwrap_or_default()
        );
    }
    let new_usage = review.incidents.len() - anomalies.len();
    println!(
        "new usage incidents (first cost on a service or in a region; not counted above): {new_usage}"
    );
    Ok(())
}
