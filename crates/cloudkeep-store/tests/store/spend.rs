//! Spend stories on both backends: a pull replaces its days (a restated
//! day is not counted twice), a day's difference from Azure's total is an
//! explicit reconciliation row, tags come from the inventory, analyses
//! group, filter and rank within one organisation, and the export pages
//! through every row.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::spend::{
    SpendDimension, SpendFilter, SpendGranularity, SpendGroup, SpendMetric,
};
use cloudkeep_store::{
    Backfill, CostLine, DayTotal, InventoryWrite, MeterInfo, SpendPull, SpendQuery,
};
use cloudkeep_testkit::{TestStore, both_backends};

use super::{one_subscription, org, record, resource};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn usage(service: &str) -> MeterInfo {
    MeterInfo {
        meter: format!("{service} meter"),
        service_name: Some(service.into()),
        charge_category: "Usage".into(),
        pricing_category: Some("Standard".into()),
        commitment_status: None,
        charge_type: "Usage".into(),
    }
}

fn line(day: &str, resource: Option<&str>, service: &str, billed: f64) -> CostLine {
    CostLine {
        day: d(day),
        resource_id: resource.map(str::to_ascii_lowercase),
        meter: usage(service),
        billed,
        effective: billed,
    }
}

fn position() -> Backfill {
    Backfill {
        start_month: d("2025-12-01"),
        next_month: None,
        months_done: 13,
        months_total: 13,
        pulled_through: Some(d("2026-11-30")),
    }
}

fn query(groups: Vec<SpendGroup>, filters: Vec<SpendFilter>) -> SpendQuery {
    SpendQuery {
        metric: SpendMetric::Billed,
        granularity: SpendGranularity::Day,
        from: d("2026-11-01"),
        to: d("2026-11-30"),
        groups,
        filters,
        top: 10,
    }
}

async fn spend_rows_replace_reconcile_and_answer_analyses(b: TestStore) {
    let store = &b.store;
    let (scope, sub, _dir) = one_subscription(store, "spend").await;
    let vm =
        "/subscriptions/SUB-1/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/vm1";
    let st =
        "/subscriptions/SUB-1/resourceGroups/data/providers/Microsoft.Storage/storageAccounts/st1";
    record(
        store,
        &scope,
        sub.id,
        &[
            resource(
                "SUB-1",
                "vm1",
                "Microsoft.Compute/virtualMachines",
                "westeurope",
                "web",
                &[("Env", "prod")],
            ),
            resource(
                "SUB-1",
                "st1",
                "Microsoft.Storage/storageAccounts",
                "northeurope",
                "data",
                &[("environment", "dev")],
            ),
        ],
        InventoryWrite {
            tags_read: true,
            deletions_confirmed: false,
        },
    )
    .await
    .expect("inventory");
    let pull = SpendPull {
        from: d("2026-11-01"),
        to: d("2026-11-02"),
        currency: "EUR".into(),
        lines: vec![
            line("2026-11-01", Some(vm), "Virtual Machines", 10.0),
            line("2026-11-01", Some(st), "Storage", 2.5),
            line("2026-11-02", Some(vm), "Virtual Machines", 11.0),
            line("2026-11-02", None, "Marketplace", 1.0),
        ],
        // The 2nd: Azure's total is 0.75 more than its grouped rows.
        totals: vec![
            DayTotal {
                day: d("2026-11-01"),
                billed: 12.5,
                effective: 12.5,
            },
            DayTotal {
                day: d("2026-11-02"),
                billed: 12.75,
                effective: 12.0,
            },
        ],
    };
    let counts = store
        .record_spend_pull(&scope, &sub, &pull, &position())
        .await
        .expect("pull");
    assert_eq!(counts.days, 2);
    assert_eq!(counts.reconciled, 1);
    assert_eq!(
        store.spend_backfill(&scope, &sub).await.expect("state"),
        Some(position())
    );
    store.refresh_spend_tags(&scope, &sub).await.expect("tags");
    let totals = store
        .spend_daily_totals(&scope, d("2026-11-01"), d("2026-11-30"))
        .await
        .expect("totals");
    assert_eq!(totals.len(), 2);
    assert!((totals[1].2 - 12.75).abs() < 1e-9, "{totals:?}");
    let rec = store
        .spend_reconciliation(&scope, d("2026-11-01"), d("2026-11-30"), Some("sub-1"))
        .await
        .expect("rec");
    assert!((rec[1].billed_total - rec[1].billed_rows - 0.75).abs() < 1e-9);

    // A restated day replaces what was stored, never adds to it.
    let restated = SpendPull {
        from: d("2026-11-02"),
        to: d("2026-11-02"),
        lines: vec![line("2026-11-02", Some(vm), "Virtual Machines", 20.0)],
        totals: vec![DayTotal {
            day: d("2026-11-02"),
            billed: 20.0,
            effective: 20.0,
        }],
        ..pull.clone()
    };
    store
        .record_spend_pull(&scope, &sub, &restated, &position())
        .await
        .expect("again");
    let all = store
        .spend_analysis(&scope, &query(vec![], vec![]))
        .await
        .expect("all");
    assert!((all.total - 32.5).abs() < 1e-9, "{all:?}");
    assert_eq!(all.currencies, vec!["EUR".to_string()]);

    // By service; by tag through an alias; filters.
    let by = store
        .spend_analysis(
            &scope,
            &query(vec![SpendGroup::Dimension(SpendDimension::Service)], vec![]),
        )
        .await
        .expect("by service");
    assert_eq!(by.series[0].key, vec![Some("Virtual Machines".to_string())]);
    assert!((by.series[0].total - 30.0).abs() < 1e-9);
    store
        .set_spend_tag_aliases(
            &scope,
            &BTreeMap::from([("environment".to_string(), "env".to_string())]),
            "user:test",
        )
        .await
        .expect("aliases");
    let by_env = store
        .spend_analysis(&scope, &query(vec![SpendGroup::Tag("env".into())], vec![]))
        .await
        .expect("by env");
    let keys: Vec<_> = by_env.series.iter().map(|s| s.key[0].clone()).collect();
    assert_eq!(
        keys,
        vec![Some("prod".to_string()), Some("dev".to_string())]
    );
    let lacking = store
        .spend_analysis(
            &scope,
            &query(vec![], vec![SpendFilter::LacksTag("env".into())]),
        )
        .await
        .expect("lacking");
    assert!(
        lacking.total.abs() < 1e-9,
        "every resource has env or an alias: {lacking:?}"
    );
    let in_region = store
        .spend_analysis(
            &scope,
            &query(
                vec![],
                vec![SpendFilter::Is(
                    SpendDimension::Region,
                    "NorthEurope".into(),
                )],
            ),
        )
        .await
        .expect("region");
    assert!((in_region.total - 2.5).abs() < 1e-9);
    let top1 = store
        .spend_analysis(
            &scope,
            &SpendQuery {
                top: 1,
                granularity: SpendGranularity::Month,
                ..query(
                    vec![SpendGroup::Dimension(SpendDimension::Resource)],
                    vec![],
                )
            },
        )
        .await
        .expect("top");
    assert_eq!(top1.series.len(), 2);
    assert!(top1.series[1].other);
    assert_eq!(top1.buckets.len(), 1);

    // At no_tags the inventory holds none, and so cost rows carry none.
    store
        .set_sync_level(&scope, sub.id, SyncLevel::NoTags, "user:test")
        .await
        .expect("level");
    store.refresh_spend_tags(&scope, &sub).await.expect("tags");
    let page = store
        .spend_export_page(&scope, d("2026-11-01"), d("2026-11-30"), None, 2)
        .await
        .expect("page");
    assert_eq!(page.len(), 2);
    assert!(page.iter().all(|r| r.tags.is_empty()));
    let last = page.last().expect("row");
    let rest = store
        .spend_export_page(
            &scope,
            d("2026-11-01"),
            d("2026-11-30"),
            Some((last.day, last.resource_key, last.meter_key)),
            100,
        )
        .await
        .expect("rest");
    assert_eq!(page.len() + rest.len(), 3, "every row once");

    // Another organisation sees none of it.
    let (other, _) = org(store, "other@example.com").await;
    let theirs = store
        .spend_analysis(&other, &query(vec![], vec![]))
        .await
        .expect("other");
    assert_eq!(theirs.total, 0.0);
    assert!(
        store
            .spend_export_page(&other, d("2026-11-01"), d("2026-11-30"), None, 10)
            .await
            .expect("other export")
            .is_empty()
    );
}
both_backends!(spend_rows_replace_reconcile_and_answer_analyses);

/// Analyses are kept in memory per organisation and revision: asked again,
/// the same answer; after a write by another instance (its own store on
/// the same database) of a restated day, of tags or of aliases, or after
/// the rows are cleared, the new figures at once.
async fn a_kept_analysis_follows_every_write_of_every_instance(b: TestStore) {
    let store = &b.store;
    let other = cloudkeep_store::Store::open(&b.url)
        .await
        .expect("a second instance");
    let (scope, sub, _dir) = one_subscription(store, "kept").await;
    let vm =
        "/subscriptions/SUB-1/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/vm1";
    let st =
        "/subscriptions/SUB-1/resourceGroups/data/providers/Microsoft.Storage/storageAccounts/st1";
    let inventory = |vm_env: &'static str| {
        [
            resource(
                "SUB-1",
                "vm1",
                "Microsoft.Compute/virtualMachines",
                "westeurope",
                "web",
                &[("env", vm_env)],
            ),
            resource(
                "SUB-1",
                "st1",
                "Microsoft.Storage/storageAccounts",
                "northeurope",
                "data",
                &[("environment", "dev")],
            ),
        ]
    };
    let write = InventoryWrite {
        tags_read: true,
        deletions_confirmed: false,
    };
    record(store, &scope, sub.id, &inventory("prod"), write)
        .await
        .expect("inventory");
    let day_pull = |vm_cost: f64| SpendPull {
        from: d("2026-11-01"),
        to: d("2026-11-01"),
        currency: "EUR".into(),
        lines: vec![
            line("2026-11-01", Some(vm), "Virtual Machines", vm_cost),
            line("2026-11-01", Some(st), "Storage", 2.5),
        ],
        totals: vec![DayTotal {
            day: d("2026-11-01"),
            billed: vm_cost + 2.5,
            effective: vm_cost + 2.5,
        }],
    };
    store
        .record_spend_pull(&scope, &sub, &day_pull(10.0), &position())
        .await
        .expect("pull");
    store.refresh_spend_tags(&scope, &sub).await.expect("tags");
    let all = query(vec![], vec![]);
    let by_env = query(vec![SpendGroup::Tag("env".into())], vec![]);
    let total = |s: &cloudkeep_store::Store| {
        let (s, scope, all) = (s.clone(), scope.clone(), all.clone());
        async move { s.spend_analysis(&scope, &all).await.expect("all").total }
    };
    let envs = |s: &cloudkeep_store::Store| {
        let (s, scope, by_env) = (s.clone(), scope.clone(), by_env.clone());
        async move {
            let a = s.spend_analysis(&scope, &by_env).await.expect("by env");
            a.series
                .iter()
                .map(|x| (x.key[0].clone().unwrap_or_default(), x.total))
                .collect::<BTreeMap<String, f64>>()
        }
    };
    assert!((total(store).await - 12.5).abs() < 1e-9);
    let first = envs(store).await;
    assert_eq!(first.get("prod"), Some(&10.0), "{first:?}");
    assert_eq!(envs(store).await, first, "asked again: the same");

    // The other instance restates the day.
    other
        .record_spend_pull(&scope, &sub, &day_pull(20.0), &position())
        .await
        .expect("restated");
    assert!(
        (total(store).await - 22.5).abs() < 1e-9,
        "not the kept 12.5"
    );

    // It re-tags the machine and refreshes the cost rows' tags.
    record(&other, &scope, sub.id, &inventory("test"), write)
        .await
        .expect("re-tagged");
    other.refresh_spend_tags(&scope, &sub).await.expect("tags");
    let retagged = envs(store).await;
    assert_eq!(retagged.get("test"), Some(&20.0), "{retagged:?}");
    assert_eq!(retagged.get("prod"), None, "{retagged:?}");

    // It makes `environment` mean `env`.
    other
        .set_spend_tag_aliases(
            &scope,
            &BTreeMap::from([("environment".to_string(), "env".to_string())]),
            "user:test",
        )
        .await
        .expect("aliases");
    let aliased = envs(store).await;
    assert_eq!(aliased.get("dev"), Some(&2.5), "{aliased:?}");

    // Another organisation's question is its own.
    let (elsewhere, _) = org(store, "kept-other@example.com").await;
    assert_eq!(
        store
            .spend_analysis(&elsewhere, &all)
            .await
            .expect("other org")
            .total,
        0.0
    );

    // It clears the rows.
    other.spend_clear(&scope).await.expect("clear");
    assert_eq!(total(store).await, 0.0);
    other.close().await;
}
both_backends!(a_kept_analysis_follows_every_write_of_every_instance);
