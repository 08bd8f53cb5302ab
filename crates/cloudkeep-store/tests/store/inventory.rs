//! The inventory's kept answers (resource pages and tag coverage, see
//! `InventoryCache`) on both backends: asked again, the same; after any
//! change by another instance (its own store on the same database) to the
//! resources, their tags, their deletion or the subscription's level, the
//! new answer at once.

use cloudkeep_domain::SyncLevel;
use cloudkeep_store::{
    ObservedResource, OrgScope, PageRequest, ResourceFilter, ResourceRecord, Store, TagCoverage,
    Tags,
};
use cloudkeep_testkit::{TestStore, both_backends};

use super::{WITH_TAGS, one_subscription, org, record, resource, st1, unique, vm1};

async fn page(store: &Store, scope: &OrgScope) -> Vec<ResourceRecord> {
    store
        .resources(scope, &ResourceFilter::default(), &PageRequest::first(100))
        .await
        .expect("resources")
        .items
}

async fn coverage(store: &Store, scope: &OrgScope) -> TagCoverage {
    store.tag_coverage(scope, 10).await.expect("tag coverage")
}

/// The tests' virtual machine, tagged `env`.
fn vm(env: &str) -> ObservedResource {
    vm1(&[("env", env)])
}

/// `owner=ops` written back to the storage account `st1` of `page` (as
/// the write-back records it, not through an inventory pass).
async fn owner_written_back(on: &Store, scope: &OrgScope, page: &[ResourceRecord]) {
    let st = page.iter().find(|r| r.name == "st1").expect("st1");
    on.observe_tags(
        scope,
        st.id,
        &Tags::from([("owner".to_string(), "ops".to_string())]),
    )
    .await
    .expect("written back");
}

fn tags_of<'a>(page: &'a [ResourceRecord], name: &str) -> Option<&'a Tags> {
    page.iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("{name} is not listed: {page:?}"))
        .tags
        .as_ref()
}

both_backends!(kept_inventory_answers_follow_every_write_of_every_instance);
async fn kept_inventory_answers_follow_every_write_of_every_instance(b: TestStore) {
    let (b, clock) = super::on_manual_clock(b);
    let store = &b.store;
    let other = Store::open(&b.url).await.expect("a second instance");
    let (scope, sub, _dir) = one_subscription(store, "kept-inventory").await;
    let st = st1("northeurope", &[]);
    record(store, &scope, sub.id, &[vm("prod"), st.clone()], WITH_TAGS)
        .await
        .expect("inventory");
    let first = page(store, &scope).await;
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(
        tags_of(&first, "vm1").and_then(|t| t.get("env")),
        Some(&"prod".to_string())
    );
    let c = coverage(store, &scope).await;
    assert_eq!((c.resources, c.tags_read, c.tagged), (2, 2, 1), "{c:?}");
    assert_eq!(page(store, &scope).await, first, "asked again: the same");
    assert_eq!(coverage(store, &scope).await, c, "asked again: the same");

    // Listed again as it was, later: the same answers, and the kept
    // page's resources were last seen at this listing, as a fresh read
    // (the other instance's) has them.
    clock.advance(chrono::Duration::minutes(5));
    record(store, &scope, sub.id, &[vm("prod"), st.clone()], WITH_TAGS)
        .await
        .expect("listed again");
    let again = page(store, &scope).await;
    assert_eq!(again, page(&other, &scope).await, "as read afresh");
    for (a, f) in again.iter().zip(&first) {
        assert_eq!(
            a.last_seen - f.last_seen,
            chrono::Duration::minutes(5),
            "{a:?}"
        );
    }
    assert_eq!(coverage(store, &scope).await, c);

    // The other instance's sync re-tags the machine.
    record(&other, &scope, sub.id, &[vm("test"), st.clone()], WITH_TAGS)
        .await
        .expect("re-tagged");
    let retagged = page(store, &scope).await;
    assert_eq!(
        tags_of(&retagged, "vm1").and_then(|t| t.get("env")),
        Some(&"test".to_string()),
        "not the kept prod"
    );

    // It writes a tag back to the storage account.
    owner_written_back(&other, &scope, &retagged).await;
    assert_eq!(
        tags_of(&page(store, &scope).await, "st1").and_then(|t| t.get("owner")),
        Some(&"ops".to_string())
    );
    let c = coverage(store, &scope).await;
    assert_eq!((c.resources, c.tagged), (2, 2), "{c:?}");
    assert!(c.keys.iter().any(|(k, n)| k == "owner" && *n == 1), "{c:?}");

    // The storage account is gone from Azure.
    record(&other, &scope, sub.id, &[vm("test")], WITH_TAGS)
        .await
        .expect("deleted");
    let names: Vec<String> = page(store, &scope)
        .await
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["vm1"]);
    assert_eq!(coverage(store, &scope).await.resources, 1);

    // The subscription stops reading tags: they are purged.
    other
        .set_sync_level(&scope, sub.id, SyncLevel::NoTags, "user:test")
        .await
        .expect("lowered");
    assert_eq!(tags_of(&page(store, &scope).await, "vm1"), None);
    let c = coverage(store, &scope).await;
    assert_eq!((c.resources, c.tags_read, c.tagged), (1, 0, 0), "{c:?}");
    assert!(c.keys.is_empty(), "{c:?}");

    // Another organisation's question is its own.
    let (elsewhere, _) = org(store, &unique("kept-inventory-other")).await;
    assert!(page(store, &elsewhere).await.is_empty());
    assert_eq!(coverage(store, &elsewhere).await, TagCoverage::default());
    other.close().await;
}

both_backends!(a_pass_through_the_kept_digest_decides_as_one_through_the_rows);
/// An instance keeps each subscription's digest (hashes of what a pass
/// compares) at the revision it wrote; its next pass reads only the rows
/// whose hashes differ. Every change it must still see: its own and
/// another instance's syncs, a tag written back, a resource gone and back.
async fn a_pass_through_the_kept_digest_decides_as_one_through_the_rows(b: TestStore) {
    let store = &b.store;
    let other = Store::open(&b.url).await.expect("a second instance");
    let (scope, sub, _dir) = one_subscription(store, "kept-digest").await;
    let st = |location: &str| st1(location, &[]);
    let kv = resource(
        "SUB-1",
        "kv1",
        "Microsoft.KeyVault/vaults",
        "westeurope",
        "sec",
        &[("owner", "sec")],
    );
    let extra = resource(
        "SUB-1",
        "extra",
        "Microsoft.Web/sites",
        "westeurope",
        "web",
        &[],
    );
    let pass = |on: &'static str, listing: Vec<ObservedResource>| {
        let (scope, other) = (scope.clone(), other.clone());
        async move {
            let on = if on == "this" { store } else { &other };
            record(on, &scope, sub.id, &listing, WITH_TAGS)
                .await
                .expect("inventory pass")
        }
    };
    let counts = |c: cloudkeep_store::InventoryCounts| (c.seen, c.added, c.deleted, c.tag_changes);
    let live = |page: &[ResourceRecord]| {
        let mut names: Vec<String> = page.iter().map(|r| r.name.clone()).collect();
        names.sort();
        names
    };

    let c = pass("this", vec![vm("prod"), st("northeurope"), kv.clone()]).await;
    assert_eq!(counts(c), (3, 3, 0, 0));
    // Unchanged: nothing to write.
    let c = pass("this", vec![vm("prod"), st("northeurope"), kv.clone()]).await;
    assert_eq!(counts(c), (3, 0, 0, 0));
    // A tag changed, a location moved, a vault gone.
    let c = pass("this", vec![vm("test"), st("westeurope")]).await;
    assert_eq!(counts(c), (2, 0, 1, 1));
    let now = page(store, &scope).await;
    assert_eq!(live(&now), ["st1", "vm1"]);
    assert_eq!(
        now.iter()
            .find(|r| r.name == "st1")
            .map(|r| r.location.as_str()),
        Some("westeurope")
    );
    assert_eq!(now, page(&other, &scope).await, "as read afresh");

    // A tag written back (not through a pass) is compared as stored: the
    // listing without it is a tag change.
    owner_written_back(store, &scope, &now).await;
    let c = pass("this", vec![vm("test"), st("westeurope")]).await;
    assert_eq!(
        counts(c),
        (2, 0, 0, 1),
        "the written-back tag is gone again"
    );
    assert_eq!(
        tags_of(&page(store, &scope).await, "st1"),
        Some(&Tags::new())
    );

    // Another instance's pass brings the vault back and re-tags the machine;
    // this one's next pass, listing the same, changes nothing.
    let c = pass("other", vec![vm("prod"), st("westeurope"), kv.clone()]).await;
    assert_eq!(counts(c), (3, 0, 0, 1));
    let c = pass("this", vec![vm("prod"), st("westeurope"), kv.clone()]).await;
    assert_eq!(counts(c), (3, 0, 0, 0));

    // Added, then gone with the vault, then the vault back: through this
    // instance's digest each time.
    let c = pass(
        "this",
        vec![vm("prod"), st("westeurope"), kv.clone(), extra.clone()],
    )
    .await;
    assert_eq!(counts(c), (4, 1, 0, 0));
    let c = pass("this", vec![vm("prod"), st("westeurope")]).await;
    assert_eq!(counts(c), (2, 0, 2, 0));
    let c = pass("this", vec![vm("prod"), st("westeurope"), kv.clone()]).await;
    assert_eq!(counts(c), (3, 0, 0, 0));
    let now = page(store, &scope).await;
    assert_eq!(live(&now), ["kv1", "st1", "vm1"], "the vault is back");
    assert_eq!(now, page(&other, &scope).await, "as read afresh");
    other.close().await;
}

/// The inventory's writer does not checkpoint SQLite's log itself (its
/// commits would wait for the copy into the database file and the disk):
/// a task beside it does, so the database file takes the rows with no
/// other write coming after.
#[tokio::test]
async fn the_inventorys_commits_reach_the_sqlite_database_file_through_a_checkpoint_beside_it() {
    let b = cloudkeep_testkit::sqlite_store().await;
    let store = &b.store;
    let (scope, sub, _dir) = one_subscription(store, "checkpoint").await;
    let path = std::path::PathBuf::from(b.url.trim_start_matches("sqlite://"));
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let before = size(&path);
    let listing: Vec<ObservedResource> = (0..3000)
        .map(|i| {
            resource(
                "SUB-1",
                &format!("vm-{i:05}"),
                "Microsoft.Compute/virtualMachines",
                "westeurope",
                "web",
                &[("env", "prod"), ("owner", "ann")],
            )
        })
        .collect();
    record(store, &scope, sub.id, &listing, WITH_TAGS)
        .await
        .expect("inventory");
    let wal = path.with_extension("db-wal");
    assert!(size(&wal) > 2_000_000, "the rows went to the log first");
    cloudkeep_testkit::eventually(
        std::time::Duration::from_secs(20),
        "the rows checkpointed into the database file",
        || async {
            match size(&path) {
                n if n >= before + 2_000_000 => Ok(()),
                n => Err(format!("database file {n} bytes, log {} bytes", size(&wal))),
            }
        },
    )
    .await;
}
