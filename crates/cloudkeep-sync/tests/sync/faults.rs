//! The fault matrix: every collector and the tag write-back run against the
//! simulator with Azure's failures injected (5xx, 429s with `Retry-After`,
//! dropped connections, truncated bodies, tokens that expire within the
//! run, all at once, and a role removed mid-run), each for several seeds
//! (the simulator's `seed` fault makes a seed's faults repeat). What the
//! store holds afterwards (resources and tags, spend per subscription and
//! day, current evidence, the edits' outcomes) and the tags Azure holds
//! must equal what a clean run leaves. Waits are short (`retry_after_ms`),
//! and the cases run side by side, so the matrix stays within CI's time.
//! On PostgreSQL, all the faults at once for a few seeds (the store's
//! writes are what differ between the backends; the faults' paths are the
//! sync's, tested on SQLite case by case).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloudkeep_domain::crypto::LocalKeyFile;
use cloudkeep_domain::evidence::EvidenceResult;
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::report::RunReport;
use cloudkeep_domain::{
    ConnectionId, ErrorKind, RunStatus, SecretString, StepState, SyncLevel, SyncTrigger,
    TagEditState,
};
use cloudkeep_store::{
    ConnectionCredential, EvidenceFilter, NewConnection, NewOrganisation, NewSubscription,
    NewTagEdit, OrgScope, PageRequest, ResourceFilter, TagEditFilter,
};
use cloudkeep_sync::{SyncDeps, collectors, sync_connection, sync_connection_with};
use cloudkeep_testkit::{SimOptions, TestSim, TestStore, postgres_store, sqlite_store};
use reqwest::Method;
use serde_json::{Value, json};

/// The world every case reads (the simulator's scenario seed).
const WORLD_SEED: u64 = 11;
/// Resources per subscription given a tag edit.
const EDITS_PER_SUBSCRIPTION: usize = 3;

/// One organisation connected to the whole simulated tenant at
/// `read_write_tags`, on a store and a simulator of its own.
pub(super) struct Env {
    pub(super) deps: SyncDeps,
    sim: TestSim,
    pub(super) scope: OrgScope,
    connection: ConnectionId,
    pub(super) store: TestStore,
    _keys: tempfile::TempDir,
}

pub(super) async fn env() -> Env {
    env_on(sqlite_store().await).await
}

async fn env_on(store: TestStore) -> Env {
    let sim = TestSim::start_with(SimOptions {
        seed: WORLD_SEED,
        ..SimOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().expect("dir");
    let keys = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("keys");
    let deps = SyncDeps {
        store: store.store.clone(),
        azure: sim.azure(),
        keys: Arc::new(keys),
        operator: None,
        background: cloudkeep_sync::Background::inline(),
    };
    let (scope, _, _) = deps
        .store
        .create_organisation(NewOrganisation {
            name: "Faults".into(),
            owner_email: format!("o-{}@example.com", uuid::Uuid::new_v4().simple()),
            owner_name: "O".into(),
            owner_password_hash: hash_password(&SecretString::new("correct horse battery"))
                .expect("hash"),
            actor: "system:test".into(),
        })
        .await
        .expect("org");
    let scenario = &sim.scenario;
    let sp = scenario.sp("collector");
    let connection = ConnectionId::new();
    let credential = deps
        .store
        .seal_credential(&scope, deps.keys.as_ref(), connection, &sp.secret())
        .await
        .expect("seal");
    deps.store
        .create_connection(
            &scope,
            NewConnection {
                id: connection,
                name: "contoso".into(),
                tenant_id: scenario.tenant().tenant_id.clone(),
                client_id: sp.client_id.clone(),
                principal_id: sp.object_id.clone(),
                credential: ConnectionCredential::ClientSecret(credential),
                cadence_secs: 86_400,
                stale_after_secs: 172_800,
                subscriptions: scenario
                    .subscription_ids()
                    .into_iter()
                    .map(|azure_id| NewSubscription {
                        azure_id,
                        display_name: "s".into(),
                        sync_level: SyncLevel::ReadWriteTags,
                        permissions: Default::default(),
                    })
                    .collect(),
                actor: "system:test".into(),
            },
        )
        .await
        .expect("connection");
    Env {
        deps,
        sim,
        scope,
        connection,
        store,
        _keys: dir,
    }
}

impl Env {
    pub(super) async fn sync(&self) -> cloudkeep_store::SyncRun {
        sync_connection(
            &self.deps,
            &self.scope,
            self.connection,
            SyncTrigger::Manual,
            "system:test",
        )
        .await
        .expect("sync")
    }

    /// A run of the write-back alone (no collector).
    async fn write_back(&self) -> cloudkeep_store::SyncRun {
        sync_connection_with(
            &self.deps,
            &self.scope,
            self.connection,
            SyncTrigger::Manual,
            "system:test",
            collectors::named(&[]),
        )
        .await
        .expect("write-back")
    }

    async fn resources(&self) -> Vec<cloudkeep_store::ResourceRecord> {
        let mut all = self
            .deps
            .store
            .all_resources(
                &self.scope,
                &ResourceFilter {
                    include_deleted: true,
                    ..Default::default()
                },
            )
            .await
            .expect("resources");
        all.sort_by(|a, b| a.arm_id.cmp(&b.arm_id));
        all
    }

    /// Pending edits on the first resources of each subscription: a tag
    /// set, and one of theirs removed. The same edits whatever the faults
    /// (they follow the ARM ids, which the world fixes).
    async fn edit_tags(&self) -> usize {
        let resources = self.resources().await;
        let mut by_sub: BTreeMap<_, Vec<_>> = BTreeMap::new();
        for r in &resources {
            by_sub.entry(r.subscription_id).or_default().push(r);
        }
        let mut edits = Vec::new();
        for rs in by_sub.values() {
            for (i, r) in rs.iter().take(EDITS_PER_SUBSCRIPTION).enumerate() {
                let base = r.tags.clone().unwrap_or_default();
                let mut set = cloudkeep_domain::tags::Tags::new();
                set.insert("cost-center".into(), format!("cc-{i}"));
                edits.push(NewTagEdit {
                    resource_id: r.id,
                    subscription_id: r.subscription_id,
                    set,
                    remove: base.keys().next().cloned().into_iter().collect(),
                    base,
                    state: TagEditState::Pending,
                    reason: None,
                });
            }
        }
        let n = edits.len();
        self.deps
            .store
            .create_tag_edits(&self.scope, edits, "user:test")
            .await
            .expect("edits");
        n
    }

    /// What the store holds, read through its typed API, with nothing
    /// that differs between two stores of the same data (ids, times).
    async fn stored(&self) -> Stored {
        let store = &self.deps.store;
        let resources = self.resources().await;
        let arm_of: BTreeMap<_, _> = resources
            .iter()
            .map(|r| (r.id, r.arm_id.to_ascii_lowercase()))
            .collect();
        let today = chrono::Utc::now().date_naive();
        let spend = store
            .spend_daily_totals(&self.scope, today - chrono::Duration::days(400), today)
            .await
            .expect("spend")
            .into_iter()
            .map(|(sub, day, billed, effective)| {
                (
                    (sub.to_ascii_lowercase(), day),
                    format!("{billed:.6} {effective:.6}"),
                )
            })
            .collect();
        let mut evidence = BTreeMap::new();
        let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
        loop {
            let got = store
                .evidence(
                    &self.scope,
                    &EvidenceFilter {
                        current_only: true,
                        ..Default::default()
                    },
                    &page,
                )
                .await
                .expect("evidence");
            for e in got.items {
                evidence.insert(
                    (
                        e.source.to_string(),
                        e.check.to_string(),
                        e.subject.to_ascii_lowercase(),
                    ),
                    (e.result, e.facts.to_string(), e.reason),
                );
            }
            match got.next {
                Some(next) => page.after = Some(next),
                None => break,
            }
        }
        let edits = store
            .tag_edits(
                &self.scope,
                &TagEditFilter::default(),
                &PageRequest::first(PageRequest::MAX_LIMIT),
            )
            .await
            .expect("edits")
            .items
            .into_iter()
            .map(|e| {
                (
                    arm_of.get(&e.resource_id).cloned().unwrap_or_default(),
                    (e.state, e.reason),
                )
            })
            .collect::<BTreeMap<_, _>>();
        let mut azure_tags = BTreeMap::new();
        for arm in edits.keys() {
            azure_tags.insert(arm.clone(), self.sim.tags(arm).await);
        }
        Stored {
            resources: resources
                .into_iter()
                .map(|r| {
                    (
                        r.arm_id.to_ascii_lowercase(),
                        (
                            r.name,
                            r.resource_type,
                            r.location,
                            r.resource_group,
                            r.tags,
                            r.deleted_at.is_some(),
                        ),
                    )
                })
                .collect(),
            spend,
            evidence,
            edits,
            azure_tags,
        }
    }
}

type ResourceRow = (
    String,
    String,
    String,
    String,
    Option<cloudkeep_domain::tags::Tags>,
    bool,
);

/// Collector, check and subject.
type EvidenceKey = (String, String, String);

/// What a case leaves behind, comparable across stores.
#[derive(Debug, PartialEq)]
struct Stored {
    resources: BTreeMap<String, ResourceRow>,
    spend: BTreeMap<(String, chrono::NaiveDate), String>,
    /// By collector, check and subject: result, facts and reason.
    evidence: BTreeMap<EvidenceKey, (EvidenceResult, String, Option<String>)>,
    edits: BTreeMap<String, (TagEditState, Option<String>)>,
    /// The edited resources' tags as Azure holds them.
    azure_tags: BTreeMap<String, Value>,
}

/// The first entry in which two maps differ, for a readable failure.
fn first_difference<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    a: &BTreeMap<K, V>,
    b: &BTreeMap<K, V>,
) -> String {
    for (k, v) in a {
        match b.get(k) {
            None => return format!("{k:?} only in the faulted run: {v:?}"),
            Some(w) if w != v => return format!("{k:?}: faulted {v:?}, clean {w:?}"),
            _ => {}
        }
    }
    match b.iter().find(|(k, _)| !a.contains_key(k)) {
        Some((k, v)) => format!("{k:?} only in the clean run: {v:?}"),
        None => "none".into(),
    }
}

fn assert_same(case: &str, got: &Stored, clean: &Stored) {
    assert!(
        got.resources == clean.resources,
        "{case}: resources differ ({} vs {}): {}",
        got.resources.len(),
        clean.resources.len(),
        first_difference(&got.resources, &clean.resources)
    );
    // The simulator's spend runs to its today and back a fixed span from
    // it: a run after midnight (UTC) has one day more at the end and one
    // less at the start than a clean run before it. Compared over the
    // clean run's days but its first and last.
    let days: Vec<chrono::NaiveDate> = clean.spend.keys().map(|(_, d)| *d).collect();
    let (first, last) = (days.iter().min(), days.iter().max());
    let within = |spend: &BTreeMap<(String, chrono::NaiveDate), String>| {
        spend
            .iter()
            .filter(|((_, d), _)| first.is_some_and(|f| d > f) && last.is_some_and(|l| d < l))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (got_spend, clean_spend) = (within(&got.spend), within(&clean.spend));
    assert!(
        !clean_spend.is_empty() && got_spend == clean_spend,
        "{case}: spend differs ({} vs {} days): {}",
        got_spend.len(),
        clean_spend.len(),
        first_difference(&got_spend, &clean_spend)
    );
    assert!(
        got.evidence == clean.evidence,
        "{case}: evidence differs ({} vs {}): {}",
        got.evidence.len(),
        clean.evidence.len(),
        first_difference(&got.evidence, &clean.evidence)
    );
    assert!(
        got.edits == clean.edits,
        "{case}: edits differ: {}",
        first_difference(&got.edits, &clean.edits)
    );
    assert!(
        got.azure_tags == clean.azure_tags,
        "{case}: Azure's tags differ: {}",
        first_difference(&got.azure_tags, &clean.azure_tags)
    );
}

/// Every step's state and the run's errors, for a failure message.
fn steps(report: &RunReport) -> String {
    let mut out = String::new();
    for s in &report.subscriptions {
        for step in &s.steps {
            if step.state != StepState::Succeeded {
                out.push_str(&format!(
                    "{} {} {:?} {:?}; ",
                    s.subscription_id, step.step, step.state, step.reason
                ));
            }
        }
    }
    format!("{out}errors: {:?}", report.errors)
}

/// A first sync (inventory, evidence, the spend backfill), tag edits on
/// what it found, then a second sync that also writes them back: with
/// `faults` set before each sync and cleared before the store is read.
async fn scenario(faults: Option<Value>) -> (Stored, Duration, usize) {
    scenario_on(sqlite_store().await, faults).await
}

/// The same on `store` (dropped afterwards).
async fn scenario_on(store: TestStore, faults: Option<Value>) -> (Stored, Duration, usize) {
    let env = env_on(store).await;
    let started = Instant::now();
    for round in 0..2 {
        if let Some(f) = &faults {
            env.sim.faults(f.clone()).await;
        }
        let run = env.sync().await;
        assert_eq!(
            run.status,
            RunStatus::Succeeded,
            "faults {faults:?}, sync {round}: {}",
            steps(&run.report)
        );
        env.sim.faults(json!({})).await;
        if round == 0 {
            env.edit_tags().await;
        }
    }
    let elapsed = started.elapsed();
    // How often Azure refused an expired token (each then renewed).
    let expired = env
        .sim
        .requests(0)
        .await
        .iter()
        .filter(|e| e["status"] == 401)
        .count();
    let stored = env.stored().await;
    env.store.cleanup().await;
    (stored, elapsed, expired)
}

/// The cases: each kind of fault alone, at rates near what Azure shows on
/// a bad day, and all of them at once.
fn cases() -> Vec<(&'static str, Value)> {
    vec![
        ("5xx", json!({"rate_500": 0.025, "rate_503": 0.025})),
        ("429", json!({"rate_429": 0.05, "retry_after_ms": 300})),
        ("dropped connections", json!({"rate_drop": 0.05})),
        ("truncated bodies", json!({"rate_truncate": 0.05})),
        // Scaled to the run: tokens expire several times within it, as an
        // hour's run would see tokens that live a minute.
        ("tokens expiring", json!({"token_lifetime_secs": 3})),
        (
            "all at once",
            json!({"rate_500": 0.02, "rate_503": 0.02, "rate_429": 0.03, "rate_drop": 0.02,
                   "rate_truncate": 0.02, "retry_after_ms": 200, "token_lifetime_secs": 5}),
        ),
    ]
}

const SEEDS: [u64; 2] = [1, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_collector_and_the_write_back_store_what_a_clean_run_stores_whatever_azure_fails() {
    let (clean, clean_time, _) = scenario(None).await;
    assert!(
        !clean.resources.is_empty() && !clean.spend.is_empty() && !clean.evidence.is_empty(),
        "the clean run read something of each kind"
    );
    assert!(
        clean
            .edits
            .values()
            .all(|(state, _)| *state == TagEditState::Applied),
        "{:?}",
        clean.edits
    );
    // A few cases at once: they mostly wait on Azure's answers, and more
    // only queue for the CPU (which slows every case's calls).
    let slots = Arc::new(tokio::sync::Semaphore::new(4));
    let mut runs = tokio::task::JoinSet::new();
    for (name, faults) in cases() {
        for seed in SEEDS {
            let mut faults = faults.clone();
            faults["seed"] = json!(seed);
            let slots = slots.clone();
            runs.spawn(async move {
                let _slot = slots.acquire().await.expect("open");
                let (stored, took, expired) = scenario(Some(faults)).await;
                (format!("{name}, seed {seed}"), stored, took, expired)
            });
        }
    }
    let mut took = Vec::new();
    while let Some(done) = runs.join_next().await {
        let (case, stored, time, expired) = done.expect("a case");
        assert_same(&case, &stored, &clean);
        took.push(format!(
            "{case}: {time:.1?}, {expired} tokens refused as expired"
        ));
    }
    eprintln!("clean: {clean_time:.1?}; {}", took.join("; "));
}

/// Seeds of all the faults at once on PostgreSQL.
const POSTGRES_SEEDS: [u64; 2] = [1, 2];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_too_a_run_under_every_fault_at_once_stores_what_a_clean_run_stores() {
    let Some(store) = postgres_store().await else {
        return;
    };
    let all_at_once = cases()
        .into_iter()
        .find(|(name, _)| *name == "all at once")
        .expect("the case")
        .1;
    let mut runs = tokio::task::JoinSet::new();
    runs.spawn(async move { ("clean".to_string(), scenario_on(store, None).await) });
    for seed in POSTGRES_SEEDS {
        let mut faults = all_at_once.clone();
        faults["seed"] = json!(seed);
        let store = postgres_store().await.expect("PostgreSQL, as above");
        runs.spawn(async move {
            (
                format!("PostgreSQL, all at once, seed {seed}"),
                scenario_on(store, Some(faults)).await,
            )
        });
    }
    let mut done: BTreeMap<String, (Stored, Duration, usize)> = BTreeMap::new();
    while let Some(run) = runs.join_next().await {
        let (case, outcome) = run.expect("a case");
        done.insert(case, outcome);
    }
    let (clean, clean_time, _) = done.remove("clean").expect("the clean run");
    assert!(
        !clean.resources.is_empty() && !clean.spend.is_empty() && !clean.evidence.is_empty(),
        "the clean run read something of each kind"
    );
    let mut took = Vec::new();
    for (case, (stored, time, expired)) in &done {
        assert_same(case, stored, &clean);
        took.push(format!(
            "{case}: {time:.1?}, {expired} tokens refused as expired"
        ));
    }
    eprintln!("PostgreSQL clean: {clean_time:.1?}; {}", took.join("; "));
}

/// The case: a write-back under 10% 429s asking for 2 s gave up
/// after a few retries and the run ended partial. Retries are bounded by
/// what is left of the run's hour, so it finishes; and a streak of 429s
/// longer than a count of retries would allow is waited out too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_back_whose_waits_fit_within_its_hour_finishes() {
    let env = env().await;
    let first = env.sync().await;
    assert_eq!(
        first.status,
        RunStatus::Succeeded,
        "{}",
        steps(&first.report)
    );
    let edits = env.edit_tags().await;
    env.sim
        .faults(json!({"rate_429": 0.1, "retry_after_ms": 2000, "burst_429": 6, "seed": 3}))
        .await;
    let since = env.sim.last_seq().await;
    let run = env.write_back().await;
    env.sim.faults(json!({})).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{}", steps(&run.report));
    assert_eq!(run.report.total("write_back", "applied"), edits as u64);
    let log = env.sim.requests(since).await;
    let throttled = log.iter().filter(|e| e["status"] == 429).count();
    assert!(throttled >= 6, "the streak and some more: {throttled}");
    let stored = env.stored().await;
    assert!(
        stored
            .edits
            .values()
            .all(|(state, _)| *state == TagEditState::Applied),
        "{:?}",
        stored.edits
    );
}

/// An administrator removes cloudkeep's Reader and Security Reader at one
/// subscription while a sync runs (at a seeded point): what those roles
/// gated reads "not collected (needs ...)", what the remaining roles
/// (Tag Contributor, Cost Management Reader) still read is stored, the run
/// is not failed, nothing is deleted for lack of a read, and once the roles
/// are back the next sync stores what a clean sync stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_removed_mid_run_reads_not_collected_and_never_fails_the_run() {
    let reference = {
        let env = env().await;
        let run = env.sync().await;
        assert_eq!(run.status, RunStatus::Succeeded, "{}", steps(&run.report));
        env.stored().await
    };
    let mut cases = tokio::task::JoinSet::new();
    for seed in SEEDS {
        cases.spawn(role_removed(seed));
    }
    for stored in cases.join_all().await {
        let (case, target, during, after) = stored;
        // Nothing deleted because a read was refused; what was stored is right.
        for (arm, row) in &during.resources {
            assert!(!row.5, "{case}: {arm} marked deleted");
            assert_eq!(Some(row), reference.resources.get(arm), "{case}: {arm}");
        }
        let not_collected: Vec<_> = during
            .evidence
            .iter()
            .filter(|(_, (result, _, _))| *result == EvidenceResult::NotCollected)
            .collect();
        // What reads "not collected" and did not in a clean sync is about
        // the subscription that lost its roles, and says which role it needs.
        for ((source, check, subject), (_, _, reason)) in &not_collected {
            let clean = reference
                .evidence
                .get(&(source.clone(), check.clone(), subject.clone()));
            if clean.is_some_and(|c| c.0 == EvidenceResult::NotCollected) {
                continue;
            }
            assert!(
                subject.contains(&target.to_ascii_lowercase())
                    && reason.as_deref().is_some_and(|r| r.contains("(needs ")),
                "{case}: {source} {check} {subject}: {reason:?}"
            );
        }
        assert!(
            not_collected.len()
                > reference
                    .evidence
                    .values()
                    .filter(|(r, _, _)| *r == EvidenceResult::NotCollected)
                    .count(),
            "{case}: the removal was felt: nothing more reads 'not collected'"
        );
        // Once the roles are back. Role assignments are evidence themselves
        // (`rbac`), and the restored ones are new assignments; the rest is
        // as a clean sync reads it.
        let without_rbac = |s: &Stored| -> BTreeMap<_, _> {
            s.evidence
                .iter()
                .filter(|((source, _, _), _)| source != "rbac")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        assert!(
            after.resources == reference.resources,
            "{case}: {}",
            first_difference(&after.resources, &reference.resources)
        );
        assert!(
            after.spend == reference.spend,
            "{case}: {}",
            first_difference(&after.spend, &reference.spend)
        );
        let (a, r) = (without_rbac(&after), without_rbac(&reference));
        assert!(a == r, "{case}: {}", first_difference(&a, &r));
    }
}

/// One seed of the role removal: the store during it, and after a sync
/// with the roles put back.
async fn role_removed(seed: u64) -> (String, String, Stored, Stored) {
    let env = env().await;
    let sp = env.sim.scenario.sp("collector").clone();
    let subs = env.sim.scenario.subscription_ids();
    let target = subs[seed as usize % subs.len()].clone();
    let scope = format!("/subscriptions/{target}");
    // A point within the run: the calls under the subscription, counted from its first.
    let after = 2 + 9 * seed;
    let roles = ["Reader", "Security Reader"];
    env.sim
        .faults(json!({"seed": seed, "remove_roles": {"after": after,
            "principal_id": sp.object_id, "scope": scope, "roles": roles}}))
        .await;
    let run = env.sync().await;
    let case = format!("seed {seed}, {target} after {after} calls");
    assert_ne!(
        run.status,
        RunStatus::Failed,
        "{case}: {}",
        steps(&run.report)
    );
    for e in &run.report.errors {
        assert_eq!(
            (e.kind, e.subscription.as_deref()),
            (ErrorKind::PermissionMissing, Some(target.as_str())),
            "{case}: only the target's reads fail, and only for a permission: {e:?}"
        );
        assert!(
            !collectors::EVIDENCE.contains(&e.collector.as_deref().unwrap_or("")),
            "{case}: an evidence collector reports a refusal as not collected, not as a failure: {e:?}"
        );
    }
    let during = env.stored().await;
    let (_, left) = env.sim.control(Method::GET, "/_sim/faults", None).await;
    assert!(
        left["remove_roles"].is_null(),
        "{case}: the run reached the removal: {left}"
    );
    for role in roles {
        env.sim
            .control_ok(
                Method::POST,
                "/_sim/role-assignments",
                json!({"principal_id": sp.object_id, "role": role, "scope": scope}),
            )
            .await;
    }
    let again = env.sync().await;
    assert_eq!(
        again.status,
        RunStatus::Succeeded,
        "{case}: {}",
        steps(&again.report)
    );
    (case, target, during, env.stored().await)
}
