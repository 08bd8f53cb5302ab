//! Tag coverage stories on both backends: required keys (lower-cased,
//! refused twice or beyond 50, audited), coverage cost-weighted and by
//! resource count through aliases, broken down and day by day, untagged
//! spend ranked by cost with suggestions from the resource group, the
//! subscription and a strict majority of siblings, and group and
//! subscription tags kept only while the level reads tags.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use cloudkeep_domain::spend::SpendDimension;
use cloudkeep_domain::{SyncLevel, TagEditState};
use cloudkeep_store::{
    Backfill, CostLine, CoverageQuery, CoverageScope, DayTotal, InventoryWrite, MeterInfo,
    NewTagEdit, ScopeTags, SpendPull, StoreError, SuggestionSource, Tags, UntaggedQuery,
};
use cloudkeep_testkit::{TestStore, both_backends};

use super::{events_of, one_subscription, record, resource};

fn d(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date")
}

fn meter(service: &str, category: &str) -> MeterInfo {
    MeterInfo {
        meter: format!("{service} meter"),
        service_name: Some(service.into()),
        charge_category: category.into(),
        pricing_category: Some("Standard".into()),
        commitment_status: None,
        charge_type: category.into(),
    }
}

fn arm(group: &str, kind: &str, name: &str) -> String {
    format!("/subscriptions/SUB-1/resourceGroups/{group}/providers/{kind}/{name}")
}

fn line(day: &str, id: Option<&str>, service: &str, category: &str, cost: f64) -> CostLine {
    CostLine {
        day: d(day),
        resource_id: id.map(str::to_ascii_lowercase),
        meter: meter(service, category),
        billed: cost,
        effective: cost,
    }
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

const VM: &str = "Microsoft.Compute/virtualMachines";
const ST: &str = "Microsoft.Storage/storageAccounts";
const DB: &str = "Microsoft.Sql/servers";

both_backends!(coverage_counts_cost_and_resources_and_suggests_values);
async fn coverage_counts_cost_and_resources_and_suggests_values(b: TestStore) {
    let store = &b.store;
    let (scope, sub, _dir) = one_subscription(store, "coverage").await;
    assert_eq!(sub.sync_level, SyncLevel::ReadWriteTags);
    let res = |name: &str, kind: &str, group: &str, t: &[(&str, &str)]| {
        resource("SUB-1", name, kind, "westeurope", group, t)
    };
    record(
        store,
        &scope,
        sub.id,
        &[
            res("vm1", VM, "web", &[("Owner", "ann"), ("env", "prod")]),
            res("vm2", VM, "web", &[("environment", "dev")]),
            res("st1", ST, "data", &[]),
            res("db1", DB, "data", &[("owner", "bob")]),
            res("db2", DB, "data", &[("owner", "bob")]),
            res("db3", DB, "data", &[("owner", "carl")]),
        ],
        InventoryWrite {
            tags_read: true,
            deletions_confirmed: false,
            scope_tags: Some(&ScopeTags {
                subscription: tags(&[("Env", "prod"), ("cost-center", "CC-1")]),
                resource_groups: BTreeMap::from([
                    ("Web".to_string(), tags(&[("owner", "web-team")])),
                    ("data".to_string(), Tags::new()),
                ]),
            }),
        },
    )
    .await
    .expect("inventory");
    let stored = store.scope_tags(&scope, sub.id).await.expect("scope tags");
    assert_eq!(
        stored.subscription.len()
            + stored
                .resource_groups
                .values()
                .map(Tags::len)
                .sum::<usize>(),
        3
    );

    let (vm1, vm2, st1) = (
        arm("web", VM, "vm1"),
        arm("web", VM, "vm2"),
        arm("data", ST, "st1"),
    );
    let (db1, db2, db3) = (
        arm("data", DB, "db1"),
        arm("data", DB, "db2"),
        arm("data", DB, "db3"),
    );
    let lines = vec![
        line("2026-11-01", Some(&vm1), "Virtual Machines", "Usage", 10.0),
        line("2026-11-02", Some(&vm1), "Virtual Machines", "Usage", 10.0),
        // Not usage: neither side of the share.
        line(
            "2026-11-01",
            Some(&vm1),
            "Virtual Machines",
            "Purchase",
            100.0,
        ),
        line("2026-11-01", Some(&vm2), "Virtual Machines", "Usage", 5.0),
        line("2026-11-02", Some(&vm2), "Virtual Machines", "Usage", 5.0),
        line("2026-11-01", Some(&st1), "Storage", "Usage", 2.0),
        line("2026-11-02", Some(&st1), "Storage", "Usage", 2.0),
        line("2026-11-01", Some(&db1), "SQL Database", "Usage", 1.0),
        line("2026-11-01", Some(&db2), "SQL Database", "Usage", 1.0),
        line("2026-11-01", Some(&db3), "SQL Database", "Usage", 1.0),
        // Usage without a resource: in the denominator, never covered.
        line("2026-11-02", None, "Marketplace", "Usage", 1.0),
    ];
    let total = |day: &str| DayTotal {
        day: d(day),
        billed: lines
            .iter()
            .filter(|l| l.day == d(day))
            .map(|l| l.billed)
            .sum(),
        effective: lines
            .iter()
            .filter(|l| l.day == d(day))
            .map(|l| l.effective)
            .sum(),
    };
    let pull = SpendPull {
        from: d("2026-11-01"),
        to: d("2026-11-02"),
        currency: "EUR".into(),
        totals: vec![total("2026-11-01"), total("2026-11-02")],
        lines: lines.clone(),
    };
    let position = Backfill {
        start_month: d("2025-12-01"),
        next_month: None,
        months_done: 13,
        months_total: 13,
        pulled_through: Some(d("2026-11-30")),
    };
    store
        .record_spend_pull(&scope, &sub, &pull, &position)
        .await
        .expect("pull");
    store.refresh_spend_tags(&scope, &sub).await.expect("tags");

    // Required keys: lower case, in order, once each, at most 50; audited.
    let set = store
        .set_required_tag_keys(&scope, &["Owner".into(), " env ".into()], "user:test")
        .await
        .expect("keys");
    assert_eq!(set, vec!["owner".to_string(), "env".to_string()]);
    for bad in [
        vec!["env".to_string(), "ENV".to_string()],
        vec![String::new()],
        vec!["k".repeat(513)],
        (0..51).map(|i| format!("k{i}")).collect(),
    ] {
        match store.set_required_tag_keys(&scope, &bad, "user:test").await {
            Err(StoreError::Invalid(_)) => {}
            other => panic!("{bad:?}: {other:?}"),
        }
    }
    assert_eq!(store.required_tag_keys(&scope).await.expect("keys"), set);
    assert_eq!(
        events_of(store, &scope, "required_tags.changed")
            .await
            .len(),
        1
    );
    store
        .set_spend_tag_aliases(
            &scope,
            &BTreeMap::from([("environment".to_string(), "env".to_string())]),
            "user:test",
        )
        .await
        .expect("aliases");

    let q = |by: Option<SpendDimension>, scope_: CoverageScope, keys: Vec<String>| CoverageQuery {
        from: d("2026-11-01"),
        to: d("2026-11-30"),
        scope: scope_,
        keys,
        by,
    };
    let all = store
        .required_tag_coverage(&scope, &q(None, CoverageScope::default(), vec![]))
        .await
        .expect("coverage");
    assert_eq!(all.keys, vec!["owner".to_string(), "env".to_string()]);
    assert_eq!(all.currencies, vec!["EUR".to_string()]);
    let t = &all.total;
    assert!(close(t.cost, 38.0), "{t:?}");
    assert_eq!(t.resources, 6);
    // owner: vm1, db1..3; env: vm1, and vm2 through the alias.
    assert!(
        close(t.keys[0].cost, 23.0) && t.keys[0].resources == 4,
        "{t:?}"
    );
    assert!(
        close(t.keys[1].cost, 30.0) && t.keys[1].resources == 2,
        "{t:?}"
    );
    assert!(close(t.all.cost, 20.0) && t.all.resources == 1, "{t:?}");
    assert_eq!(all.daily.len(), 2);
    assert!(close(all.daily[0].cost, 20.0) && close(all.daily[0].all, 10.0));
    assert!(close(all.daily[1].cost, 18.0) && close(all.daily[1].keys[1], 15.0));

    let by_group = store
        .required_tag_coverage(
            &scope,
            &q(
                Some(SpendDimension::ResourceGroup),
                CoverageScope::default(),
                vec![],
            ),
        )
        .await
        .expect("by group");
    let keys: Vec<Option<&str>> = by_group.groups.iter().map(|g| g.key.as_deref()).collect();
    assert_eq!(keys, vec![Some("web"), Some("data"), None]);
    let data = &by_group.groups[1].figures;
    assert!(close(data.cost, 7.0) && data.resources == 4);
    assert!(close(data.keys[0].cost, 3.0) && data.keys[0].resources == 3);
    assert!(close(data.keys[1].cost, 0.0) && data.all.resources == 0);

    // Scope filters compare without case; a key filter through its alias.
    let web = store
        .required_tag_coverage(
            &scope,
            &q(
                None,
                CoverageScope {
                    resource_group: Some("WEB".into()),
                    ..Default::default()
                },
                vec!["Environment".into()],
            ),
        )
        .await
        .expect("web");
    assert_eq!(web.keys, vec!["env".to_string()]);
    assert!(close(web.total.cost, 30.0) && close(web.total.all.cost, 30.0));
    let storage = store
        .required_tag_coverage(
            &scope,
            &q(
                None,
                CoverageScope {
                    service: Some("storage".into()),
                    ..Default::default()
                },
                vec![],
            ),
        )
        .await
        .expect("storage");
    assert!(close(storage.total.cost, 4.0) && storage.total.keys[0].resources == 0);
    for bad in [
        q(None, CoverageScope::default(), vec!["colour".into()]),
        q(
            Some(SpendDimension::Region),
            CoverageScope::default(),
            vec![],
        ),
        CoverageQuery {
            from: d("2026-11-30"),
            to: d("2026-11-01"),
            ..q(None, CoverageScope::default(), vec![])
        },
    ] {
        match store.required_tag_coverage(&scope, &bad).await {
            Err(StoreError::Invalid(m)) => {
                assert!(m.contains("allowed") || m.contains("after"), "{m}")
            }
            other => panic!("{bad:?}: {other:?}"),
        }
    }

    // Untagged spend by cost, with suggestions.
    let uq = |keys: Vec<String>, resources: Vec<String>, top: usize| UntaggedQuery {
        from: d("2026-11-01"),
        to: d("2026-11-30"),
        scope: CoverageScope::default(),
        keys,
        resources,
        top,
    };
    let list = store
        .untagged_spend(&scope, &uq(vec![], vec![], 10))
        .await
        .expect("untagged");
    assert_eq!(list.resources, 5);
    assert!(close(list.cost, 17.0));
    let names: Vec<&str> = list
        .items
        .iter()
        .map(|i| i.name.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(names, vec!["vm2", "st1", "db1", "db2", "db3"]);
    assert!(
        list.items
            .iter()
            .all(|i| i.resource.is_some() && i.subscription == Some(sub.id))
    );
    let suggestion = |name: &str, key: &str| {
        let item = list
            .items
            .iter()
            .find(|i| i.name.as_deref() == Some(name))
            .expect("item");
        item.missing
            .iter()
            .find(|m| m.key == key)
            .unwrap_or_else(|| panic!("{name} lacks {key}: {item:?}"))
            .suggestion
            .clone()
            .map(|s| (s.value, s.source))
    };
    let vm2_item = &list.items[0];
    assert_eq!(
        vm2_item.missing.len(),
        1,
        "env through its alias: {vm2_item:?}"
    );
    assert!(close(vm2_item.cost, 10.0));
    assert_eq!(
        suggestion("vm2", "owner"),
        Some(("web-team".into(), SuggestionSource::ResourceGroup))
    );
    // Two of the three siblings carrying owner say bob.
    assert_eq!(
        suggestion("st1", "owner"),
        Some(("bob".into(), SuggestionSource::Siblings))
    );
    assert_eq!(
        suggestion("st1", "env"),
        Some(("prod".into(), SuggestionSource::Subscription))
    );
    assert_eq!(
        suggestion("db1", "env"),
        Some(("prod".into(), SuggestionSource::Subscription))
    );

    let owners = store
        .untagged_spend(&scope, &uq(vec!["owner".into()], vec![], 1))
        .await
        .expect("owner");
    assert_eq!(owners.resources, 2);
    assert!(close(owners.cost, 14.0));
    assert_eq!(owners.items.len(), 1, "top 1");
    let one = store
        .untagged_spend(&scope, &uq(vec![], vec![st1.to_uppercase()], 10))
        .await
        .expect("one");
    assert_eq!(one.items.len(), 1);
    assert_eq!(one.items[0].arm_id, st1.to_ascii_lowercase());

    // An open edit of a listed resource is found by its id (a fix skips
    // the keys it sets).
    let vm2_id = vm2_item.resource.expect("vm2 in the inventory");
    let made = store
        .create_tag_edits(
            &scope,
            vec![NewTagEdit {
                resource_id: vm2_id,
                subscription_id: sub.id,
                set: tags(&[("owner", "web-team")]),
                remove: Vec::new(),
                base: tags(&[("environment", "dev")]),
                state: TagEditState::Pending,
                reason: None,
            }],
            "user:test",
        )
        .await
        .expect("edit");
    let open = store
        .open_tag_edits(&scope, &[vm2_id, list.items[1].resource.expect("st1")])
        .await
        .expect("open");
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].id, made[0].id);

    // Group and subscription tags go with the level: none once it no
    // longer reads tags, and so no suggestion.
    assert_eq!(
        store
            .scope_tags(&scope, sub.id)
            .await
            .expect("tags")
            .resource_groups
            .len(),
        1
    );
    store
        .set_sync_level(&scope, sub.id, SyncLevel::NoTags, "user:test")
        .await
        .expect("level");
    assert_eq!(
        store.scope_tags(&scope, sub.id).await.expect("tags"),
        ScopeTags::default()
    );
    let sub = store.subscription(&scope, sub.id).await.expect("sub");
    store.refresh_spend_tags(&scope, &sub).await.expect("tags");
    let none = store
        .required_tag_coverage(&scope, &q(None, CoverageScope::default(), vec![]))
        .await
        .expect("coverage");
    assert!(close(none.total.all.cost, 0.0) && close(none.total.cost, 38.0));
    let list = store
        .untagged_spend(&scope, &uq(vec![], vec![], 10))
        .await
        .expect("untagged");
    assert_eq!(list.resources, 6);
    assert!(
        list.items
            .iter()
            .flat_map(|i| &i.missing)
            .all(|m| m.suggestion.is_none())
    );
}

both_backends!(group_and_subscription_tags_are_written_with_the_inventory);
async fn group_and_subscription_tags_are_written_with_the_inventory(b: TestStore) {
    let store = &b.store;
    let (scope, sub, _dir) = one_subscription(store, "scope-with-inventory").await;
    let listing = [resource(
        "SUB-1",
        "vm1",
        VM,
        "westeurope",
        "Web",
        &[("env", "prod")],
    )];
    let first = ScopeTags {
        subscription: tags(&[("Cost-Center", "CC-1")]),
        resource_groups: BTreeMap::from([("Web".to_string(), tags(&[("owner", "web-team")]))]),
    };
    let write = |scope_tags| InventoryWrite {
        tags_read: true,
        deletions_confirmed: false,
        scope_tags,
    };
    let stored = || async { store.scope_tags(&scope, sub.id).await.expect("scope tags") };
    let as_stored = |t: &ScopeTags| ScopeTags {
        subscription: t.subscription.clone(),
        resource_groups: t
            .resource_groups
            .iter()
            .map(|(g, t)| (g.to_lowercase(), t.clone()))
            .collect(),
    };

    record(store, &scope, sub.id, &listing, write(Some(&first)))
        .await
        .expect("inventory");
    assert_eq!(stored().await, as_stored(&first));
    assert_eq!(
        store
            .resource_count(&scope, &Default::default())
            .await
            .expect("count"),
        1,
        "the resources went in with them"
    );

    // Not read this time (Azure failed to answer): the stored ones stay.
    record(store, &scope, sub.id, &listing, write(None))
        .await
        .expect("inventory");
    assert_eq!(stored().await, as_stored(&first));

    // Read again and changed: replaced, the group gone from Azure too.
    let second = ScopeTags {
        subscription: tags(&[("cost-center", "CC-2"), ("env", "prod")]),
        resource_groups: BTreeMap::new(),
    };
    record(store, &scope, sub.id, &listing, write(Some(&second)))
        .await
        .expect("inventory");
    assert_eq!(stored().await, second);

    // Recorded at a level, then read back at one that reads tags.
    let recorded_at = |level: SyncLevel, w| {
        let (scope, listing) = (&scope, &listing);
        async move {
            for l in [level, SyncLevel::ReadWriteTags] {
                store
                    .set_sync_level(scope, sub.id, l, "user:test")
                    .await
                    .expect("level");
                if l == level {
                    record(store, scope, sub.id, listing, w)
                        .await
                        .expect("inventory");
                }
            }
            store.scope_tags(scope, sub.id).await.expect("scope tags")
        }
    };
    // Where tags are not read, none are kept, whatever is given.
    let untagged = InventoryWrite {
        tags_read: false,
        deletions_confirmed: false,
        scope_tags: Some(&first),
    };
    assert_eq!(
        recorded_at(SyncLevel::ReadWriteTags, untagged).await,
        ScopeTags::default()
    );
    // Nor at a level below them, even when tags are given as read.
    let read = InventoryWrite {
        tags_read: true,
        ..untagged
    };
    assert_eq!(
        recorded_at(SyncLevel::NoTags, read).await,
        ScopeTags::default(),
        "nothing is kept at no_tags"
    );
}
