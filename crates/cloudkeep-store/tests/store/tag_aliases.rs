//! Tag aliases added one at a time, at once, on both backends: each add
//! reads and writes inside the organisation's audited transaction, so none
//! is lost to another, and each is one audit event.

use cloudkeep_store::StoreError;
use cloudkeep_testkit::{TestStore, both_backends};

use super::{events_of, one_subscription};

both_backends!(aliases_added_at_once_are_all_kept);
async fn aliases_added_at_once_are_all_kept(b: TestStore) {
    let store = &b.store;
    let (scope, _, _dir) = one_subscription(store, "aliases").await;
    let mut adds = tokio::task::JoinSet::new();
    for i in 0..12 {
        let (store, scope) = (store.clone(), scope.clone());
        adds.spawn(async move {
            store
                .add_spend_tag_alias(&scope, &format!("Env{i}"), "ENV", "tester")
                .await
        });
    }
    while let Some(added) = adds.join_next().await {
        added.expect("task").expect("added");
    }
    let aliases = store.spend_tag_aliases(&scope).await.expect("aliases");
    assert_eq!(aliases.len(), 12, "{aliases:?}");
    assert!(
        aliases
            .iter()
            .all(|(a, k)| a.starts_with("env") && k == "env")
    );
    assert_eq!(
        events_of(store, &scope, "spend_tag_alias.added")
            .await
            .len(),
        12
    );

    // Pointing an alias elsewhere is a state conflict; chains are refused.
    assert!(matches!(
        store
            .add_spend_tag_alias(&scope, "env0", "stage", "tester")
            .await,
        Err(StoreError::State(_))
    ));
    assert!(matches!(
        store
            .add_spend_tag_alias(&scope, "stage", "env1", "tester")
            .await,
        Err(StoreError::Invalid(_))
    ));
    store
        .remove_spend_tag_alias(&scope, "ENV0", "tester")
        .await
        .expect("removed");
    assert!(matches!(
        store.remove_spend_tag_alias(&scope, "env0", "tester").await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(
        store
            .spend_tag_aliases(&scope)
            .await
            .expect("aliases")
            .len(),
        11
    );
    assert_eq!(
        events_of(store, &scope, "spend_tag_alias.removed")
            .await
            .len(),
        1
    );
}
