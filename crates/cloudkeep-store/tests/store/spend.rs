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

use super::{one_subscription, org, record, resource, st1, vm1};

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
            vm1(&[("Env", "prod")]),
            st1("northeurope", &[("environment", "dev")]),
        ],
        InventoryWrite {
            tags_read: true,
            deletions_confirmed: false,
            scope_tags: None,
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
/// the rows are cleared, the new figures at once (in one view, at the
/// view's end).
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
            vm1(&[("env", vm_env)]),
            st1("northeurope", &[("environment", "dev")]),
        ]
    };
    let write = InventoryWrite {
        tags_read: true,
        deletions_confirmed: false,
        scope_tags: None,
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

    // In one view (a page), answers stand at the revision read first: the
    // other instance restating the day meanwhile shows after the view.
    let (before, during) = cloudkeep_store::in_one_view(async {
        let before = total(store).await;
        let (other, scope, sub, pull) = (other.clone(), scope.clone(), sub.clone(), day_pull(20.0));
        tokio::spawn(async move {
            other
                .record_spend_pull(&scope, &sub, &pull, &position())
                .await
        })
        .await
        .expect("joined")
        .expect("restated");
        (before, total(store).await)
    })
    .await;
    assert!(
        (before - 12.5).abs() < 1e-9 && (during - 12.5).abs() < 1e-9,
        "{before} {during}"
    );
    assert!((total(store).await - 22.5).abs() < 1e-9, "after the view");

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

/// A projection asked for while one is being built in the background (the
/// anomaly review after a sync whose pages already asked) waits for that
/// build and takes it: the rows are read once, not twice side by side.
async fn one_build_of_a_projection_at_a_time(b: TestStore) {
    let store = &b.store;
    let (scope, sub, _dir) = one_subscription(store, "one-build").await;
    let vm =
        "/subscriptions/SUB-1/resourceGroups/web/providers/Microsoft.Compute/virtualMachines/vm1";
    let days = [("2026-11-01", 10.0), ("2026-11-02", 11.0)];
    let pull = SpendPull {
        from: d(days[0].0),
        to: d(days[1].0),
        currency: "EUR".into(),
        lines: days
            .iter()
            .map(|(day, cost)| line(day, Some(vm), "Virtual Machines", *cost))
            .collect(),
        totals: days
            .iter()
            .map(|(day, cost)| DayTotal {
                day: d(day),
                billed: *cost,
                effective: *cost,
            })
            .collect(),
    };
    store
        .record_spend_pull(&scope, &sub, &pull, &position())
        .await
        .expect("pull");
    let before = store.spend_columns_builds();
    // The first analysis answers through SQL and starts a build in the
    // background; the warm asked for at once finds it running.
    let all = query(vec![], vec![]);
    let sql = store.spend_analysis(&scope, &all).await.expect("analysis");
    let stats = store.spend_columns_warm(&scope).await.expect("warm");
    assert_eq!(stats.rows, 2, "{stats:?}");
    assert_eq!(
        store.spend_columns_builds() - before,
        1,
        "the rows were read by one build"
    );
    let projected = store
        .spend_analysis_columns(&scope, &all)
        .await
        .expect("projected");
    same(&projected, &sql, "after one build");
}
both_backends!(one_build_of_a_projection_at_a_time);

/// A cost line of any meter.
fn priced(day: NaiveDate, resource: Option<&str>, meter: &MeterInfo, billed: f64) -> CostLine {
    CostLine {
        day,
        resource_id: resource.map(str::to_ascii_lowercase),
        meter: meter.clone(),
        billed,
        // Purchases are spread in amortised cost, so effective differs.
        effective: if meter.charge_category == "Purchase" {
            0.0
        } else {
            billed * 0.75
        },
    }
}

/// Two answers agree: the same groups in the same order with the same
/// buckets, sums equal to a millionth.
fn same(a: &cloudkeep_store::SpendAnswer, b: &cloudkeep_store::SpendAnswer, what: &str) {
    let close = |x: f64, y: f64| (x - y).abs() <= 1e-6 * x.abs().max(y.abs()).max(1e-3);
    let points_agree = |p: &[(NaiveDate, f64)], q: &[(NaiveDate, f64)]| {
        p.len() == q.len() && p.iter().zip(q).all(|(x, y)| x.0 == y.0 && close(x.1, y.1))
    };
    assert_eq!(a.currencies, b.currencies, "{what}");
    assert!(close(a.total, b.total), "{what}: {a:?}\n{b:?}");
    assert!(points_agree(&a.buckets, &b.buckets), "{what}: {a:?}\n{b:?}");
    assert_eq!(a.series.len(), b.series.len(), "{what}: {a:?}\n{b:?}");
    for (x, y) in a.series.iter().zip(&b.series) {
        assert_eq!((&x.key, x.other), (&y.key, y.other), "{what}: {a:?}\n{b:?}");
        assert!(close(x.total, y.total), "{what}: {x:?} {y:?}");
        assert!(points_agree(&x.points, &y.points), "{what}: {x:?} {y:?}");
    }
}

/// Every analysis the columnar projection answers equals the SQL path's:
/// each dimension and tag grouping (aliased keys, several values on one
/// resource), every filter kind, each granularity, top N with ties and
/// "other", both metrics and currencies; this instance's pulls patch it
/// in place (restated, new resources, meters and currencies, earlier and
/// later days) and a tag refresh that changes nothing leaves it standing;
/// after another instance's write the stale projection answers nothing
/// (SQL does, with the new rows) until it is rebuilt in the background;
/// an organisation over the row bound is answered by SQL only.
async fn the_column_projection_answers_as_sql_does(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &super::unique("columns")).await;
    let (_dir, keys) = super::keyfile();
    let conn = super::connect_subscriptions(
        store,
        &scope,
        &keys,
        "x-secret",
        vec![super::new_sub("SUB-1"), super::new_sub("SUB-2")],
    )
    .await;
    let (s1, s2) = (super::sub_of(&conn, "SUB-1"), super::sub_of(&conn, "SUB-2"));
    let write = InventoryWrite {
        tags_read: true,
        deletions_confirmed: false,
        scope_tags: None,
    };
    let vm = "Microsoft.Compute/virtualMachines";
    // Two aliased keys on vm1 with values whose order depends on the
    // database's collation ("Prod" before "dev" in bytes, not in en_US).
    record(
        store,
        &scope,
        s1.id,
        &[
            resource(
                "SUB-1",
                "vm1",
                vm,
                "WestEurope",
                "Web",
                &[("Env", "Prod"), ("environment", "dev"), ("owner", "alice")],
            ),
            st1("northeurope", &[("environment", "dev"), ("Owner", "Bob")]),
            resource(
                "SUB-1",
                "db1",
                "Microsoft.Sql/servers",
                "westeurope",
                "data",
                &[],
            ),
        ],
        write,
    )
    .await
    .expect("inventory 1");
    record(
        store,
        &scope,
        s2.id,
        &[
            resource("SUB-2", "vm2", vm, "eastus", "web", &[("env", "prod")]),
            resource(
                "SUB-2",
                "app2",
                "Microsoft.Web/sites",
                "eastus",
                "Web",
                &[("ENV", "TEST")],
            ),
        ],
        write,
    )
    .await
    .expect("inventory 2");
    let id = |sub: &str, rg: &str, kind: &str, name: &str| {
        format!("/subscriptions/{sub}/resourceGroups/{rg}/providers/{kind}/{name}")
    };
    let vm1 = id("SUB-1", "Web", vm, "vm1");
    let st1 = id("SUB-1", "data", "Microsoft.Storage/storageAccounts", "st1");
    let db1 = id("SUB-1", "data", "Microsoft.Sql/servers", "db1");
    let vm2 = id("SUB-2", "web", vm, "vm2");
    let app2 = id("SUB-2", "Web", "Microsoft.Web/sites", "app2");
    // Not in the inventory: its dimensions come from its id alone.
    let ip = id(
        "SUB-2",
        "Other",
        "Microsoft.Network/publicIPAddresses",
        "ip1",
    );
    let purchase = MeterInfo {
        meter: "Reserved VM instance".into(),
        service_name: Some("Virtual Machines".into()),
        charge_category: "Purchase".into(),
        pricing_category: Some("Committed".into()),
        commitment_status: None,
        charge_type: "Purchase".into(),
    };
    // Appears in the later pulls only: a new resource and a new meter.
    let disk = id("SUB-1", "new", "Microsoft.Compute/disks", "disk9");
    let (from, to) = (d("2026-09-20"), d("2026-11-10"));
    let pull_in = |sub: &str, currency: &str, scale: f64, from: NaiveDate, to: NaiveDate| {
        let mut lines = Vec::new();
        let mut totals = Vec::new();
        let mut day = from;
        let mut k = 0u32;
        while day <= to {
            let w = f64::from(1 + k % 5) * 0.25 * scale;
            let mut add = |r: Option<&str>, m: &MeterInfo, c: f64| {
                lines.push(priced(day, r, m, c));
            };
            if sub == "SUB-1" {
                add(Some(&vm1), &usage("Virtual Machines"), 8.0 * w);
                add(Some(&vm1), &usage("Bandwidth"), 0.5 * w);
                add(Some(&st1), &usage("Storage"), 2.0 * w);
                // db1 and ip1 cost the same: a tie ranked by key.
                add(Some(&db1), &usage("SQL Database"), 3.0);
                if k % 10 == 0 {
                    add(None, &purchase, 40.0);
                }
                if scale > 4.0 {
                    add(Some(&disk), &usage("Managed Disks"), 1.5);
                }
            } else {
                add(Some(&vm2), &usage("Virtual Machines"), 6.0 * w);
                add(Some(&app2), &usage("Azure App Service"), 1.5 * w);
                add(Some(&ip), &usage("Virtual Network"), 3.0);
                add(None, &usage("Marketplace"), 0.25);
            }
            let sum: f64 = lines
                .iter()
                .filter(|l| l.day == day)
                .map(|l| l.billed)
                .sum();
            let eff: f64 = lines
                .iter()
                .filter(|l| l.day == day)
                .map(|l| l.effective)
                .sum();
            // Some days Azure's total differs (a reconciliation row,
            // with no service), once downwards.
            let extra = match k % 7 {
                3 => 1.25,
                5 => -0.5,
                _ => 0.0,
            };
            totals.push(DayTotal {
                day,
                billed: sum + extra,
                effective: eff + extra,
            });
            day += chrono::Duration::days(1);
            k += 1;
        }
        SpendPull {
            from,
            to,
            currency: currency.into(),
            lines,
            totals,
        }
    };
    let pull = |sub: &str, currency: &str, scale: f64| pull_in(sub, currency, scale, from, to);
    store
        .record_spend_pull(&scope, &s1, &pull("SUB-1", "EUR", 1.0), &position())
        .await
        .expect("pull 1");
    store
        .record_spend_pull(&scope, &s2, &pull("SUB-2", "USD", 1.0), &position())
        .await
        .expect("pull 2");
    for s in [&s1, &s2] {
        store.refresh_spend_tags(&scope, s).await.expect("tags");
    }
    store
        .set_spend_tag_aliases(
            &scope,
            &BTreeMap::from([("environment".to_string(), "env".to_string())]),
            "user:test",
        )
        .await
        .expect("aliases");

    let dim = |d: SpendDimension| SpendGroup::Dimension(d);
    let tag = |k: &str| SpendGroup::Tag(k.into());
    let mut groupings: Vec<Vec<SpendGroup>> = vec![vec![]];
    for d in [
        SpendDimension::Subscription,
        SpendDimension::ResourceGroup,
        SpendDimension::Service,
        SpendDimension::ServiceCategory,
        SpendDimension::Region,
        SpendDimension::ResourceType,
        SpendDimension::Resource,
        SpendDimension::ChargeCategory,
    ] {
        groupings.push(vec![dim(d)]);
    }
    groupings.extend([
        vec![tag("env")],
        vec![tag("environment")],
        vec![tag("owner")],
        vec![tag("nobody-has-this")],
        vec![dim(SpendDimension::Service), tag("env")],
        vec![tag("env"), dim(SpendDimension::Region)],
        vec![
            dim(SpendDimension::Subscription),
            dim(SpendDimension::ChargeCategory),
        ],
        vec![
            dim(SpendDimension::ResourceGroup),
            dim(SpendDimension::ResourceType),
        ],
    ]);
    let is = |d: SpendDimension, v: &str| SpendFilter::Is(d, v.into());
    let filterings: Vec<Vec<SpendFilter>> = vec![
        vec![],
        vec![is(SpendDimension::Region, "WestEurope")],
        vec![
            is(SpendDimension::Service, "virtual machines"),
            is(SpendDimension::Service, "STORAGE"),
        ],
        vec![is(SpendDimension::Subscription, "Sub-2")],
        vec![is(SpendDimension::ChargeCategory, "usage")],
        vec![is(
            SpendDimension::ResourceType,
            "MICROSOFT.COMPUTE/VIRTUALMACHINES",
        )],
        vec![is(SpendDimension::Resource, &vm1.to_uppercase())],
        vec![is(SpendDimension::ServiceCategory, "compute")],
        vec![is(SpendDimension::ResourceGroup, "WEB")],
        vec![SpendFilter::HasTag("env".into(), None)],
        vec![SpendFilter::HasTag("env".into(), Some("PROD".into()))],
        vec![SpendFilter::HasTag("owner".into(), Some("bob".into()))],
        vec![SpendFilter::LacksTag("env".into())],
        vec![
            SpendFilter::LacksTag("owner".into()),
            is(SpendDimension::Region, "eastus"),
        ],
    ];
    let mut queries = Vec::new();
    for (i, groups) in groupings.iter().enumerate() {
        for (j, filters) in filterings.iter().enumerate() {
            for (k, granularity) in [
                SpendGranularity::Day,
                SpendGranularity::Week,
                SpendGranularity::Month,
            ]
            .into_iter()
            .enumerate()
            {
                let n = i + j + k;
                queries.push(SpendQuery {
                    metric: if n % 2 == 0 {
                        SpendMetric::Billed
                    } else {
                        SpendMetric::Effective
                    },
                    granularity,
                    // Periods that cut weeks and months.
                    from: if n % 3 == 0 {
                        d("2026-09-24")
                    } else {
                        d("2026-10-01")
                    },
                    to: if n % 4 == 0 {
                        d("2026-11-30")
                    } else {
                        d("2026-11-04")
                    },
                    groups: groups.clone(),
                    filters: filters.clone(),
                    top: [100, 2, 1][n % 3],
                });
            }
        }
    }
    let warm = store.spend_columns_warm(&scope).await.expect("warm");
    assert!(warm.built_in.is_some(), "built by this call: {warm:?}");
    assert!(warm.rows > 200, "{warm:?}");
    assert_eq!(store.spend_columns_revision(&scope), Some(warm.rev));
    let check_all = |qs: Vec<SpendQuery>| {
        let scope = scope.clone();
        async move {
            for q in &qs {
                let sql = store.spend_analysis_sql(&scope, q).await.expect("sql");
                let cols = store
                    .spend_analysis_columns(&scope, q)
                    .await
                    .expect("columns");
                same(&cols, &sql, &format!("{q:?}"));
            }
        }
    };
    check_all(queries.clone()).await;
    // The answers were not all empty: the suite means something.
    let all = store
        .spend_analysis_sql(&scope, &queries[0])
        .await
        .expect("all");
    assert_eq!(all.currencies, vec!["EUR".to_string(), "USD".to_string()]);
    assert!(all.total > 100.0, "{all:?}");
    let by_env = SpendQuery {
        groups: vec![tag("env")],
        ..queries[0].clone()
    };
    let envs = store
        .spend_analysis_columns(&scope, &by_env)
        .await
        .expect("env");
    assert!(envs.series.len() >= 4, "{envs:?}");

    // This instance's pulls patch the projection in place, to answers
    // equal to SQL's: a restated period, one that cuts segments with a new
    // resource, meter and currency, an earlier month before every segment,
    // and days after the last.
    let wide = |q: &SpendQuery| SpendQuery {
        from: d("2026-08-01"),
        to: d("2026-12-31"),
        ..q.clone()
    };
    let mut rev = warm.rev;
    for (step, (sub, currency, scale, period)) in [
        (&s1, "EUR", 2.0, (from, to)),
        (&s1, "GBP", 5.0, (d("2026-10-03"), d("2026-10-14"))),
        (&s2, "USD", 0.5, (d("2026-08-01"), d("2026-08-31"))),
        (&s1, "GBP", 5.0, (d("2026-11-05"), d("2026-11-21"))),
    ]
    .into_iter()
    .enumerate()
    {
        let name = if sub.id == s1.id { "SUB-1" } else { "SUB-2" };
        store
            .record_spend_pull(
                &scope,
                sub,
                &pull_in(name, currency, scale, period.0, period.1),
                &position(),
            )
            .await
            .expect("pull");
        let patched = store.spend_columns_warm(&scope).await.expect("patched");
        assert!(
            patched.rev == rev + 1 && patched.built_in.is_none(),
            "step {step}: patched, not rebuilt: {patched:?}"
        );
        rev = patched.rev;
        check_all(queries.iter().skip(step).step_by(11).map(wide).collect()).await;
        check_all(queries.iter().skip(step).step_by(13).cloned().collect()).await;
    }
    // Tags as they were: nothing written, the revision stays.
    for s in [&s1, &s2] {
        store
            .refresh_spend_tags(&scope, s)
            .await
            .expect("tags again");
    }
    let kept = store.spend_columns_warm(&scope).await.expect("kept");
    assert!(kept.rev == rev && kept.built_in.is_none(), "{kept:?}");
    // The last pull again, as Azure answered it before: nothing rewritten,
    // the revision stays. (Every step above wrote a pull that differed.)
    let again = store
        .record_spend_pull(
            &scope,
            &s1,
            &pull_in("SUB-1", "GBP", 5.0, d("2026-11-05"), d("2026-11-21")),
            &position(),
        )
        .await
        .expect("the same pull");
    assert!(again.unchanged && again.rows > 0, "{again:?}");
    let kept = store.spend_columns_warm(&scope).await.expect("kept");
    assert!(kept.rev == rev && kept.built_in.is_none(), "{kept:?}");
    // A window across the turn of a month is pulled as two periods, each
    // found unchanged the next time (with the one above, which neither
    // overlaps); a period overlapping a stored one is written again.
    let periods = [
        (d("2026-10-28"), d("2026-10-31")),
        (d("2026-11-01"), d("2026-11-04")),
    ];
    for (round, unchanged) in [(0, false), (1, true)] {
        for (from, to) in periods {
            let c = store
                .record_spend_pull(
                    &scope,
                    &s1,
                    &pull_in("SUB-1", "GBP", 5.0, from, to),
                    &position(),
                )
                .await
                .expect("a period");
            assert_eq!(c.unchanged, unchanged, "round {round}, {from}: {c:?}");
        }
    }
    rev += 2;
    for (period, unchanged) in [
        ((d("2026-11-05"), d("2026-11-21")), true),
        ((d("2026-11-04"), d("2026-11-05")), false),
        ((d("2026-11-05"), d("2026-11-21")), false),
    ] {
        let c = store
            .record_spend_pull(
                &scope,
                &s1,
                &pull_in("SUB-1", "GBP", 5.0, period.0, period.1),
                &position(),
            )
            .await
            .expect("a period");
        assert_eq!(c.unchanged, unchanged, "{period:?}: {c:?}");
        rev += i64::from(!unchanged);
    }
    let kept = store.spend_columns_warm(&scope).await.expect("kept");
    assert!(kept.rev == rev && kept.built_in.is_none(), "{kept:?}");
    let patched = store
        .spend_analysis_sql(&scope, &wide(&queries[0]))
        .await
        .expect("all");
    // A pull names every resource of its subscription: all in GBP now.
    assert_eq!(patched.currencies, ["GBP", "USD"]);
    assert!(
        patched.buckets.first().is_some_and(|b| b.0 < from),
        "{patched:?}"
    );

    // Another instance's write leaves this projection stale: it answers
    // nothing, SQL answers the new rows at once.
    let before = store
        .spend_analysis(&scope, &queries[0])
        .await
        .expect("before");
    let writer = cloudkeep_store::Store::open(&b.url)
        .await
        .expect("another instance");
    writer
        .record_spend_pull(&scope, &s1, &pull("SUB-1", "EUR", 6.0), &position())
        .await
        .expect("restated");
    writer.close().await;
    assert_eq!(store.spend_columns_revision(&scope), Some(rev), "stale");
    let after = store
        .spend_analysis(&scope, &queries[0])
        .await
        .expect("after");
    same(
        &after,
        &store
            .spend_analysis_sql(&scope, &queries[0])
            .await
            .expect("sql"),
        "after the write",
    );
    assert!(after.total > before.total + 100.0, "{before:?} {after:?}");
    // That analysis started a rebuild in the background.
    let mut waited = 0;
    while store.spend_columns_revision(&scope) == Some(rev)
        || store.spend_columns_revision(&scope).is_none()
    {
        assert!(waited < 500, "the projection was not rebuilt");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        waited += 1;
    }
    let rebuilt = store.spend_columns_warm(&scope).await.expect("rebuilt");
    assert!(
        rebuilt.rev > rev && rebuilt.built_in.is_none(),
        "{rebuilt:?}"
    );
    // The production path reads it now (a question not kept before).
    same(
        &store.spend_analysis(&scope, &by_env).await.expect("by env"),
        &store
            .spend_analysis_sql(&scope, &by_env)
            .await
            .expect("sql"),
        "from the rebuilt projection",
    );
    check_all(queries.iter().step_by(7).cloned().collect()).await;

    // Aliases are part of what the projection stands for.
    store
        .set_spend_tag_aliases(&scope, &BTreeMap::new(), "user:test")
        .await
        .expect("no aliases");
    check_all(
        queries
            .iter()
            .filter(|q| {
                q.groups.iter().any(|g| matches!(g, SpendGroup::Tag(_)))
                    || q.filters.iter().any(|f| !matches!(f, SpendFilter::Is(..)))
            })
            .cloned()
            .collect(),
    )
    .await;

    // Over the row bound: SQL only, and the same answers.
    let bounded = cloudkeep_store::Store::open(&b.url)
        .await
        .expect("another instance")
        .with_spend_column_rows(10);
    assert!(
        bounded
            .spend_analysis_columns(&scope, &queries[0])
            .await
            .is_err()
    );
    same(
        &bounded
            .spend_analysis(&scope, &queries[0])
            .await
            .expect("bounded"),
        &store
            .spend_analysis_sql(&scope, &queries[0])
            .await
            .expect("sql"),
        "over the bound",
    );
    assert_eq!(bounded.spend_columns_revision(&scope), None);
    // A revision refused for its size is not read again (the anomaly
    // review asks after every sync): with its rows out of reach, asking
    // again answers the bound, not the database's error.
    super::raw_exec(&b.url, "ALTER TABLE spend_costs RENAME TO spend_costs_away").await;
    let again = bounded.spend_columns_warm(&scope).await;
    super::raw_exec(&b.url, "ALTER TABLE spend_costs_away RENAME TO spend_costs").await;
    let again = again.expect_err("refused again").to_string();
    assert!(again.contains("bound of 10 rows"), "{again}");
    let off = cloudkeep_store::Store::open(&b.url)
        .await
        .expect("an instance without projections")
        .with_spend_column_rows(0);
    let off_err = off
        .spend_columns_warm(&scope)
        .await
        .expect_err("off")
        .to_string();
    assert!(off_err.contains("turned off"), "{off_err}");
    off.close().await;
    // The anomaly reviews' reads too: every usage series, and the first
    // days by service and by region.
    store.spend_columns_warm(&scope).await.expect("warm");
    let firsts = |mut f: Vec<cloudkeep_store::FirstUsage>| {
        f.sort_by_key(|f| format!("{f:?}"));
        f
    };
    let projected = firsts(store.spend_first_usage(&scope).await.expect("firsts"));
    assert_eq!(
        projected,
        firsts(bounded.spend_first_usage(&scope).await.expect("sql"))
    );
    assert!(
        projected
            .iter()
            .any(|f| f.kind == cloudkeep_domain::anomaly::IncidentKind::NewRegion),
        "{projected:?}"
    );
    for from in [d("2026-08-01"), d("2026-10-01"), d("2026-11-20")] {
        let all = store
            .spend_usage_series(&scope, from, d("2026-12-31"))
            .await
            .expect("series");
        assert!(!all.is_empty(), "from {from}");
        assert_eq!(
            all,
            bounded
                .spend_usage_series(&scope, from, d("2026-12-31"))
                .await
                .expect("sql"),
            "from {from}"
        );
    }
    bounded.close().await;

    // Another organisation's projection is its own.
    let (other, _) = org(store, &super::unique("columns-other")).await;
    let theirs = store
        .spend_analysis_columns(&other, &queries[0])
        .await
        .expect("other");
    assert_eq!(theirs.total, 0.0);
    assert!(theirs.series.is_empty() && theirs.currencies.is_empty());
}
both_backends!(the_column_projection_answers_as_sql_does);
