//! The store's story suite, run against SQLite always and against
//! PostgreSQL when `CLOUDKEEP_TEST_POSTGRES_URL` is set (each test in a
//! schema of its own; see `cloudkeep_testkit::both_backends!`).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::Duration;
use cloudkeep_domain::crypto::{KeyProvider, LocalKeyFile};
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::report::RunReport;
use cloudkeep_domain::{
    AuthMethod, ConnectionId, ConnectionStatus, ManualClock, OrgId, Role, RunStatus, SecretString,
    SubscriptionId, SyncLevel, SyncTrigger, TagEditState, TokenId,
};
use cloudkeep_store::{
    AuditEntry, AuditEvent, AuditFilter, AuditProblemKind, Connection, ConnectionCredential,
    InventoryCounts, InventoryWrite, LevelChangeCounts, NewConnection, NewOrganisation,
    NewSubscription, NewTagEdit, NewUser, ObservedResource, OrgScope, PageRequest, ResourceFilter,
    ResourceRecord, RunFilter, Store, StoreError, SubscriptionRecord, SyncRun, TagChange, TagEdit,
    TagEditFilter, Tags,
};
use cloudkeep_testkit::{TestStore, both_backends};
use serde_json::json;
use uuid::Uuid;

#[path = "store/anomalies.rs"]
mod anomalies;
#[path = "store/assessments.rs"]
mod assessments;
#[path = "store/budgets.rs"]
mod budgets;
#[path = "store/coverage.rs"]
mod coverage;
#[path = "store/evidence.rs"]
mod evidence;
#[path = "store/inventory.rs"]
mod inventory;
#[path = "store/spend.rs"]
mod spend;
#[path = "store/tag_aliases.rs"]
mod tag_aliases;

/// Tags are read and stored; a mass deletion is refused.
const WITH_TAGS: InventoryWrite<'static> = InventoryWrite {
    tags_read: true,
    deletions_confirmed: false,
    scope_tags: None,
};
/// Tags are not read.
const WITHOUT_TAGS: InventoryWrite<'static> = InventoryWrite {
    tags_read: false,
    deletions_confirmed: false,
    scope_tags: None,
};

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", uuid::Uuid::new_v4().simple())
}

async fn org(store: &Store, owner: &str) -> (OrgScope, cloudkeep_store::User) {
    let (scope, _, user) = store
        .create_organisation(NewOrganisation {
            name: "Acme".into(),
            owner_email: owner.into(),
            owner_name: "Owner".into(),
            owner_password_hash: hash_password(&SecretString::new("correct horse battery"))
                .expect("hash"),
            actor: "system:test".into(),
        })
        .await
        .expect("org");
    (scope, user)
}

/// A store on a clock the test moves.
fn on_manual_clock(b: TestStore) -> (TestStore, ManualClock) {
    let clock = ManualClock::starting_now();
    (b.with_clock(Arc::new(clock.clone())), clock)
}

/// Every audit event matching `filter`, read a page at a time.
async fn all_events(store: &Store, scope: &OrgScope, filter: &AuditFilter) -> Vec<AuditEvent> {
    let mut out = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let got = store
            .audit_events(scope, filter, &page)
            .await
            .expect("audit events");
        out.extend(got.items);
        match got.next {
            Some(next) => page.after = Some(next),
            None => return out,
        }
    }
}

/// The events of one action.
async fn events_of(store: &Store, scope: &OrgScope, action: &str) -> Vec<AuditEvent> {
    all_events(
        store,
        scope,
        &AuditFilter {
            action: Some(action.into()),
            ..Default::default()
        },
    )
    .await
}

/// A connection's runs, newest first.
async fn runs_of(store: &Store, scope: &OrgScope, connection: ConnectionId) -> Vec<SyncRun> {
    store
        .sync_runs(
            scope,
            &RunFilter {
                connection: Some(connection),
                ..Default::default()
            },
            &PageRequest::first(10),
        )
        .await
        .expect("runs")
        .items
}

both_backends!(logins_tokens_and_sessions);
async fn logins_tokens_and_sessions(b: TestStore) {
    let store = &b.store;
    let email = unique("owner");
    let (scope, owner) = org(store, &email).await;
    assert_eq!(owner.role, Role::Owner);

    let candidate = store
        .find_login(&email.to_uppercase())
        .await
        .expect("lookup")
        .expect("found");
    assert!(
        store
            .find_login(&email)
            .await
            .expect("lookup")
            .expect("found")
            .verify(&SecretString::new("wrong password!!"))
            .is_err()
    );
    let auth = candidate
        .verify(&SecretString::new("correct horse battery"))
        .expect("password ok");
    assert_eq!(auth.scope, scope);
    assert!(
        store
            .find_login("nobody@example.com")
            .await
            .expect("lookup")
            .is_none()
    );

    let (token, secret) = store
        .create_api_token(&scope, owner.id, "ci", None, "system:test")
        .await
        .expect("token");
    let via_token = store
        .authenticate_token(&secret)
        .await
        .expect("auth")
        .expect("valid");
    assert_eq!(via_token.user.id, owner.id);
    assert!(
        store
            .authenticate_token(&SecretString::new("ck_garbage"))
            .await
            .expect("auth")
            .is_none()
    );
    store
        .revoke_api_token(&scope, token.id, "system:test")
        .await
        .expect("revoke");
    assert!(
        store
            .authenticate_token(&secret)
            .await
            .expect("auth")
            .is_none(),
        "revoked tokens stop working"
    );
    assert!(
        store
            .api_token(&scope, token.id)
            .await
            .expect("token")
            .revoked_at
            .is_some()
    );
    let (_, expired) = store
        .create_api_token(
            &scope,
            owner.id,
            "old",
            Some(store.now() - Duration::seconds(1)),
            "system:test",
        )
        .await
        .expect("token");
    assert!(
        store
            .authenticate_token(&expired)
            .await
            .expect("auth")
            .is_none(),
        "expired tokens stop working"
    );
    assert_eq!(
        store
            .api_tokens(&scope, Some(owner.id), &PageRequest::default())
            .await
            .expect("tokens")
            .items
            .len(),
        2
    );

    let (session, csrf) = store
        .create_session(&auth, Duration::hours(1))
        .await
        .expect("session");
    let via_session = store
        .authenticate_session(&session)
        .await
        .expect("auth")
        .expect("valid");
    assert!(
        matches!(via_session.credential, cloudkeep_store::Credential::Session { csrf_token, organisation } if csrf_token == csrf && organisation == "Acme")
    );
    store.delete_session(&session).await.expect("logout");
    assert!(
        store
            .authenticate_session(&session)
            .await
            .expect("auth")
            .is_none()
    );

    let dup = store
        .create_user(
            &scope,
            NewUser {
                email: email.clone(),
                name: "Again".into(),
                role: Role::Viewer,
                password_hash: None,
            },
            "system:test",
        )
        .await;
    assert!(matches!(dup, Err(StoreError::Conflict { .. })), "{dup:?}");
    let bad = store
        .create_user(
            &scope,
            NewUser {
                email: "not-an-email".into(),
                name: "X".into(),
                role: Role::Viewer,
                password_hash: None,
            },
            "t",
        )
        .await;
    assert!(matches!(bad, Err(StoreError::Invalid(_))));
    let viewer = store
        .create_user(
            &scope,
            NewUser {
                email: unique("viewer"),
                name: "Viewer".into(),
                role: Role::Viewer,
                password_hash: None,
            },
            "system:test",
        )
        .await
        .expect("viewer");
    let editor = store
        .set_role(&scope, viewer.id, Role::Editor, "system:test")
        .await
        .expect("role");
    assert_eq!(editor.role, Role::Editor);
    assert_eq!(
        store
            .users(&scope, &PageRequest::default())
            .await
            .expect("users")
            .items
            .len(),
        2
    );
}

both_backends!(organisations_are_isolated);
async fn organisations_are_isolated(b: TestStore) {
    let store = &b.store;
    let (a, a_owner) = org(store, &unique("a")).await;
    let (bscope, _) = org(store, &unique("b")).await;
    assert!(matches!(
        store.user(&bscope, a_owner.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let (a_token, a_secret) = store
        .create_api_token(&a, a_owner.id, "t", None, "system:test")
        .await
        .expect("token");
    // A's token re-labelled with B's organisation does not authenticate.
    let forged = SecretString::new(a_secret.expose().replacen(
        &a.org().as_uuid().simple().to_string(),
        &bscope.org().as_uuid().simple().to_string(),
        1,
    ));
    assert!(
        store
            .authenticate_token(&forged)
            .await
            .expect("auth")
            .is_none()
    );
    assert!(
        store
            .users(&bscope, &PageRequest::default())
            .await
            .expect("users")
            .items
            .iter()
            .all(|u| u.id != a_owner.id)
    );
    assert!(matches!(
        store.api_token(&bscope, a_token.id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .api_tokens(&bscope, None, &PageRequest::default())
            .await
            .expect("tokens")
            .items
            .is_empty()
    );
    let keys = keyfile();
    let conn = connect(store, &a, &keys.1, "secret-of-a", "SUB-1").await;
    assert!(matches!(
        store.connection(&bscope, conn).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.connections(&bscope).await.expect("list").is_empty());
    assert!(
        all_events(store, &bscope, &AuditFilter::default())
            .await
            .iter()
            .all(|e| !e.target.contains(&conn.to_string()))
    );
}

fn keyfile() -> (tempfile::TempDir, LocalKeyFile) {
    let dir = tempfile::tempdir().expect("dir");
    let file = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("key file");
    (dir, file)
}

fn new_sub(azure_id: &str) -> NewSubscription {
    NewSubscription {
        azure_id: azure_id.into(),
        display_name: azure_id.to_lowercase(),
        sync_level: SyncLevel::default(),
        permissions: Default::default(),
    }
}

/// A connection of one subscription (`azure_id`); within an organisation,
/// a subscription is held by one live connection at a time.
async fn connect(
    store: &Store,
    scope: &OrgScope,
    keys: &dyn KeyProvider,
    secret: &str,
    azure_id: &str,
) -> ConnectionId {
    let prod = NewSubscription {
        display_name: "Prod".into(),
        ..new_sub(azure_id)
    };
    connect_subscriptions(store, scope, keys, secret, vec![prod])
        .await
        .id
}

async fn connect_subscriptions(
    store: &Store,
    scope: &OrgScope,
    keys: &dyn KeyProvider,
    secret: &str,
    subscriptions: Vec<NewSubscription>,
) -> Connection {
    try_connect(
        store,
        scope,
        keys,
        ConnectionId::new(),
        secret,
        subscriptions,
    )
    .await
    .expect("connection")
}

async fn try_connect(
    store: &Store,
    scope: &OrgScope,
    keys: &dyn KeyProvider,
    id: ConnectionId,
    secret: &str,
    subscriptions: Vec<NewSubscription>,
) -> Result<Connection, StoreError> {
    let credential = store
        .seal_credential(scope, keys, id, &SecretString::new(secret))
        .await
        .expect("seal");
    store
        .create_connection(
            scope,
            NewConnection {
                id,
                name: "Contoso".into(),
                tenant_id: "t-1".into(),
                client_id: "c-1".into(),
                principal_id: "p-1".into(),
                credential: ConnectionCredential::ClientSecret(credential),
                cadence_secs: 86_400,
                stale_after_secs: 172_800,
                subscriptions,
                actor: "user:test".into(),
            },
        )
        .await
}

/// An organisation with a connection of one subscription, and its key file.
async fn one_subscription(
    store: &Store,
    who: &str,
) -> (OrgScope, SubscriptionRecord, tempfile::TempDir) {
    let (scope, _) = org(store, &unique(who)).await;
    let (dir, keys) = keyfile();
    let conn = connect(store, &scope, &keys, "x-secret", "SUB-1").await;
    let sub = store
        .connection(&scope, conn)
        .await
        .expect("get")
        .subscriptions[0]
        .clone();
    (scope, sub, dir)
}

/// The subscription of a connection by its Azure id.
fn sub_of(conn: &Connection, azure_id: &str) -> SubscriptionRecord {
    conn.subscriptions
        .iter()
        .find(|s| s.azure_id.eq_ignore_ascii_case(azure_id))
        .cloned()
        .unwrap_or_else(|| panic!("the connection has no subscription {azure_id}"))
}

/// Records an inventory pass as a sync does: with the subscription as it
/// stands now (its last listing time included).
async fn record(
    store: &Store,
    scope: &OrgScope,
    sub: SubscriptionId,
    observed: &[ObservedResource],
    write: InventoryWrite<'_>,
) -> Result<InventoryCounts, StoreError> {
    let current = store.subscription(scope, sub).await.expect("subscription");
    store
        .record_inventory(scope, &current, Uuid::new_v4(), observed, write)
        .await
}

/// Every resource matching a filter, deleted ones too, by name.
async fn by_name(
    store: &Store,
    scope: &OrgScope,
    filter: ResourceFilter,
) -> HashMap<String, ResourceRecord> {
    store
        .all_resources(scope, &filter)
        .await
        .expect("list")
        .into_iter()
        .map(|r| (r.name.clone(), r))
        .collect()
}

/// The names of the resources matching a filter; their count, as the bulk
/// edit page asks it, agrees.
async fn names(store: &Store, scope: &OrgScope, filter: ResourceFilter) -> BTreeSet<String> {
    let all = store.all_resources(scope, &filter).await.expect("list");
    let counted = store.resource_count(scope, &filter).await.expect("count");
    assert_eq!(counted, all.len() as u64, "count of {filter:?}");
    all.into_iter().map(|r| r.name).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| n.to_string()).collect()
}

both_backends!(credentials_are_encrypted_and_bound_to_their_row);
async fn credentials_are_encrypted_and_bound_to_their_row(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("c")).await;
    let (_dir, keys) = keyfile();
    let one = connect(store, &scope, &keys, "first-secret-value", "SUB-1").await;
    let two = connect(store, &scope, &keys, "second-secret-value", "SUB-2").await;
    assert_eq!(
        store
            .open_credential(&scope, &keys, one)
            .await
            .expect("open")
            .expose(),
        "first-secret-value"
    );
    let c = store.connection(&scope, one).await.expect("get");
    assert_eq!(c.status, ConnectionStatus::Active);
    assert_eq!(c.subscriptions[0].sync_level, SyncLevel::ReadWriteTags);
    assert_eq!(c.subscriptions[0].azure_id, "sub-1");
    assert!(c.subscriptions[0].is_live());
    assert!(c.has_credential);

    // A blob copied onto another connection does not decrypt.
    raw_exec(&b.url, &format!("UPDATE connections SET credential = (SELECT credential FROM connections WHERE connection_id = '{one}') WHERE connection_id = '{two}'")).await;
    assert!(matches!(
        store.open_credential(&scope, &keys, two).await,
        Err(StoreError::Crypto(_))
    ));

    // Another organisation's data key does not open it either.
    let (other, _) = org(store, &unique("d")).await;
    let three = connect(store, &other, &keys, "third", "SUB-1").await;
    raw_exec(&b.url, &format!("UPDATE connections SET credential = (SELECT credential FROM connections WHERE connection_id = '{one}') WHERE connection_id = '{three}'")).await;
    assert!(matches!(
        store.open_credential(&other, &keys, three).await,
        Err(StoreError::Crypto(_))
    ));

    let revoked = store
        .revoke_connection(&scope, one, "user:test")
        .await
        .expect("revoke");
    assert!(revoked.deleted_at.is_some() && !revoked.has_credential);
    assert_eq!(revoked.status, ConnectionStatus::Revoked);
    assert!(matches!(
        store.open_credential(&scope, &keys, one).await,
        Err(StoreError::NotFound { .. })
    ));
    let kept = store.connection(&scope, one).await.expect("still readable");
    assert_eq!(kept.subscriptions.len(), 1);
    assert!(
        kept.subscriptions[0].detached_at.is_some(),
        "a revoked connection's subscriptions are detached"
    );
}

both_backends!(keys_rotate_without_losing_credentials);
async fn keys_rotate_without_losing_credentials(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("k")).await;
    let (_dir, mut keys) = keyfile();
    let conn = connect(store, &scope, &keys, "rotating-secret", "SUB-1").await;
    assert_eq!(
        store
            .rotate_data_key(&scope, &keys, "system:test")
            .await
            .expect("rotate"),
        1
    );
    assert_eq!(
        store
            .open_credential(&scope, &keys, conn)
            .await
            .expect("open")
            .expose(),
        "rotating-secret"
    );

    let old_master = keys.current_key_id();
    keys.begin_rotation().expect("new master key");
    assert_eq!(
        store
            .data_keys_wrapped_by_others(&keys.current_key_id())
            .await
            .expect("count"),
        1
    );
    assert_eq!(
        store
            .rewrap_data_keys(&scope, &keys, "system:test")
            .await
            .expect("rewrap"),
        1
    );
    assert_eq!(
        store
            .rewrap_data_keys(&scope, &keys, "system:test")
            .await
            .expect("again"),
        0,
        "idempotent"
    );
    keys.retire_old_keys().expect("retire");
    assert_ne!(keys.current_key_id(), old_master);
    assert_eq!(
        store
            .open_credential(&scope, &keys, conn)
            .await
            .expect("open")
            .expose(),
        "rotating-secret"
    );
    assert!(store.verify_audit(&scope).await.expect("verify").is_ok());
}

both_backends!(audit_chain_detects_tampering);
async fn audit_chain_detects_tampering(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("au")).await;
    for i in 0..5 {
        store
            .audit(
                &scope,
                AuditEntry::new(
                    "user:x",
                    "thing.done",
                    format!("thing:{i}"),
                    json!({"i": i}),
                ),
            )
            .await
            .expect("audit");
    }
    assert_eq!(store.verify_audit(&scope).await.expect("verify"), Ok(7));
    assert_eq!(events_of(store, &scope, "thing.done").await.len(), 5);
    // The log in pages: the page after the fifth event holds the last two.
    let first = store
        .audit_events(&scope, &AuditFilter::default(), &PageRequest::first(5))
        .await
        .expect("page");
    assert_eq!(
        first.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let page = store
        .audit_events(
            &scope,
            &AuditFilter::default(),
            &PageRequest {
                after: Some(first.next.expect("a next page")),
                limit: 5,
            },
        )
        .await
        .expect("page");
    assert_eq!(
        page.items.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![6, 7]
    );
    assert!(page.next.is_none());

    // No code path may change events; the database refuses too.
    let org = scope.org();
    assert!(
        try_exec(
            &b.url,
            &format!("UPDATE audit_events SET actor = 'x' WHERE org_id = '{org}'")
        )
        .await
        .is_err()
    );

    // An attacker with the database disables the guard and edits an event.
    disable_guard(&b.url).await;
    raw_exec(
        &b.url,
        &format!(
            "UPDATE audit_events SET details = '{{\"i\":99}}' WHERE org_id = '{org}' AND seq = 4"
        ),
    )
    .await;
    assert_eq!(
        store
            .verify_audit(&scope)
            .await
            .expect("verify")
            .map_err(|p| (p.seq, p.kind)),
        Err((4, AuditProblemKind::Changed))
    );
}

both_backends!(audit_chain_detects_deletion_and_swaps);
async fn audit_chain_detects_deletion_and_swaps(b: TestStore) {
    let store = &b.store;
    let (deleted, _) = org(store, &unique("del")).await;
    let (swapped, _) = org(store, &unique("swap")).await;
    for scope in [&deleted, &swapped] {
        for i in 0..4 {
            store
                .audit(
                    scope,
                    AuditEntry::new(
                        "user:x",
                        "thing.done",
                        format!("thing:{i}"),
                        json!({"i": i}),
                    ),
                )
                .await
                .expect("audit");
        }
    }
    disable_guard(&b.url).await;
    let d = deleted.org();
    raw_exec(
        &b.url,
        &format!("DELETE FROM audit_events WHERE org_id = '{d}' AND seq = 3"),
    )
    .await;
    assert_eq!(
        store
            .verify_audit(&deleted)
            .await
            .expect("verify")
            .map_err(|p| (p.seq, p.kind)),
        Err((4, AuditProblemKind::Removed))
    );

    let s = swapped.org();
    // Swap the contents of events 3 and 4, keeping their positions.
    raw_exec(
        &b.url,
        &format!("UPDATE audit_events SET seq = -1 WHERE org_id = '{s}' AND seq = 3"),
    )
    .await;
    raw_exec(
        &b.url,
        &format!("UPDATE audit_events SET seq = 3 WHERE org_id = '{s}' AND seq = 4"),
    )
    .await;
    raw_exec(
        &b.url,
        &format!("UPDATE audit_events SET seq = 4 WHERE org_id = '{s}' AND seq = -1"),
    )
    .await;
    let problem = store
        .verify_audit(&swapped)
        .await
        .expect("verify")
        .expect_err("detected");
    assert_eq!(problem.seq, 3);
    assert!(matches!(
        problem.kind,
        AuditProblemKind::Changed | AuditProblemKind::Reordered
    ));

    // Removing the newest event is caught by the head the organisation keeps.
    let (tail, _) = org(store, &unique("tail")).await;
    let t = tail.org();
    raw_exec(
        &b.url,
        &format!("DELETE FROM audit_events WHERE org_id = '{t}' AND seq = 2"),
    )
    .await;
    assert_eq!(
        store
            .verify_audit(&tail)
            .await
            .expect("verify")
            .map_err(|p| p.kind),
        Err(AuditProblemKind::Removed)
    );
}

both_backends!(a_sealed_chain_cannot_be_rewritten_without_its_key);
async fn a_sealed_chain_cannot_be_rewritten_without_its_key(b: TestStore) {
    let dir = tempfile::tempdir().expect("dir");
    let key_file = dir.path().join("audit.key");
    let keys = Arc::new(LocalKeyFile::open_or_create(&key_file).expect("keys"));
    let sealed = b.store.clone().with_chain_keys(keys.clone());
    let (scope, _) = org(&sealed, &unique("sealed")).await;
    let note = |i: i64| {
        AuditEntry::new(
            "user:x",
            "thing.done",
            format!("thing:{i}"),
            json!({"i": i}),
        )
    };
    for i in 0..3 {
        sealed.audit(&scope, note(i)).await.expect("audit");
    }
    // The organisation's own two events, then three.
    assert_eq!(sealed.verify_audit(&scope).await.expect("verify"), Ok(5));

    // Without the key (or with another), the chain cannot be checked.
    let other =
        Arc::new(LocalKeyFile::open_or_create(&dir.path().join("other.key")).expect("keys"));
    for store in [b.store.clone(), b.store.clone().with_chain_keys(other)] {
        assert_eq!(
            store
                .verify_audit(&scope)
                .await
                .expect("verify")
                .map_err(|p| (p.seq, p.kind)),
            Err((1, AuditProblemKind::UnknownKey))
        );
    }

    // A rotated key seals new events; the old key still checks the old ones.
    let mut rotated = LocalKeyFile::open_or_create(&key_file).expect("keys");
    let new_id = rotated.begin_rotation().expect("rotate");
    let sealed = b.store.clone().with_chain_keys(Arc::new(rotated));
    sealed.audit(&scope, note(3)).await.expect("audit");
    assert_eq!(sealed.verify_audit(&scope).await.expect("verify"), Ok(6));

    // Someone with the database but not the key rewrites event 3 and
    // every hash after it, consistently, as an unkeyed chain would be.
    disable_guard(&b.url).await;
    let unkeyed = b.store.clone();
    let (forged, _) = org(&unkeyed, &unique("forger")).await;
    for i in 0..5 {
        unkeyed.audit(&forged, note(i)).await.expect("audit");
    }
    let o = scope.org();
    let f = forged.org();
    // Graft the forger's own (self-consistent, unkeyed) events 3..=5 onto
    // the sealed organisation: the forged chain needs no key.
    raw_exec(
        &b.url,
        &format!("DELETE FROM audit_events WHERE org_id = '{o}' AND seq >= 3"),
    )
    .await;
    raw_exec(
        &b.url,
        &format!(
            "INSERT INTO audit_events (org_id, seq, event_id, at, actor, action, target, details, prev_hash, hash, key_id) \
             SELECT '{o}', seq, event_id, at, actor, action, target, details, prev_hash, hash, key_id FROM audit_events WHERE org_id = '{f}' AND seq >= 3"
        ),
    )
    .await;
    assert_eq!(
        sealed
            .verify_audit(&scope)
            .await
            .expect("verify")
            .map_err(|p| (p.seq, p.kind)),
        Err((3, AuditProblemKind::Unsealed))
    );
    assert!(!new_id.is_empty());
}

both_backends!(a_chain_from_before_audit_keys_is_sealed_once_and_stays_anchored);
async fn a_chain_from_before_audit_keys_is_sealed_once_and_stays_anchored(b: TestStore) {
    let note = |i: i64| {
        AuditEntry::new(
            "user:x",
            "thing.done",
            format!("thing:{i}"),
            json!({"i": i}),
        )
    };
    // Written before the installation had audit keys: plain SHA-256.
    let plain = b.store.clone();
    let (scope, _) = org(&plain, &unique("old")).await;
    for i in 0..3 {
        plain.audit(&scope, note(i)).await.expect("audit");
    }
    let (broken, _) = org(&plain, &unique("broken")).await;
    disable_guard(&b.url).await;
    raw_exec(
        &b.url,
        &format!(
            "UPDATE audit_events SET details = '{{\"changed\":true}}' WHERE org_id = '{}' AND seq = 2",
            broken.org()
        ),
    )
    .await;

    let dir = tempfile::tempdir().expect("dir");
    let keys = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("audit.key")).expect("keys"));
    let sealed = b.store.clone().with_chain_keys(keys);
    let verify = |scope: &OrgScope| {
        let (store, scope) = (sealed.clone(), scope.clone());
        async move {
            store
                .verify_audit(&scope)
                .await
                .expect("verify")
                .map_err(|p| (p.seq, p.kind))
        }
    };
    // Nothing anchors a chain with no sealed event yet.
    assert_eq!(verify(&scope).await, Err((1, AuditProblemKind::Unsealed)));
    // An organisation made with keys is sealed from its first event.
    let (new, _) = org(&sealed, &unique("new")).await;
    assert_eq!(verify(&new).await, Ok(2));

    // The operator seals: the intact chain gets its sealed event; the
    // changed one is named and left alone.
    let report = sealed
        .seal_audit_chains("operator:test")
        .await
        .expect("seal");
    assert!(report.sealed.contains(&scope.org()), "{report:?}");
    assert!(!report.sealed.contains(&new.org()), "{report:?}");
    let refused: Vec<_> = report
        .refused
        .iter()
        .map(|(o, p)| (*o, p.seq, p.kind))
        .collect();
    assert!(
        refused.contains(&(broken.org(), 2, AuditProblemKind::Changed)),
        "{report:?}"
    );
    assert_eq!(verify(&scope).await, Ok(6));
    let again = sealed
        .seal_audit_chains("operator:test")
        .await
        .expect("seal again");
    assert!(!again.sealed.contains(&scope.org()), "once: {again:?}");
    let events = sealed
        .audit_events(&scope, &AuditFilter::default(), &PageRequest::first(100))
        .await
        .expect("events");
    assert_eq!(
        events.items.last().map(|e| e.action.as_str()),
        Some("audit.sealed")
    );

    // Rewriting the plain events consistently (new content, hashes
    // recomputed) is caught at the sealed event after them.
    let o = scope.org();
    raw_exec(
        &b.url,
        &format!(
            "CREATE TABLE kept_seal AS SELECT * FROM audit_events WHERE org_id = '{o}' AND seq = 6"
        ),
    )
    .await;
    raw_exec(
        &b.url,
        &format!("DELETE FROM audit_events WHERE org_id = '{o}'"),
    )
    .await;
    raw_exec(
        &b.url,
        &format!("UPDATE organisations SET audit_seq = 0, audit_head = '' WHERE org_id = '{o}'"),
    )
    .await;
    for i in 10..15 {
        plain.audit(&scope, note(i)).await.expect("rewrite");
    }
    raw_exec(&b.url, "INSERT INTO audit_events SELECT * FROM kept_seal").await;
    raw_exec(
        &b.url,
        &format!(
            "UPDATE organisations SET audit_seq = 6, audit_head = (SELECT hash FROM kept_seal) WHERE org_id = '{o}'"
        ),
    )
    .await;
    assert_eq!(verify(&scope).await, Err((6, AuditProblemKind::Reordered)));
}

both_backends!(concurrent_appends_keep_one_chain);
async fn concurrent_appends_keep_one_chain(b: TestStore) {
    let store = b.store.clone();
    let (scope, _) = org(&store, &unique("cc")).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            store
                .audit(
                    &scope,
                    AuditEntry::new("user:x", "parallel", format!("n:{i}"), json!({})),
                )
                .await
                .expect("audit")
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(store.verify_audit(&scope).await.expect("verify"), Ok(22));
}

both_backends!(sync_levels_change_with_an_audit_event);
async fn sync_levels_change_with_an_audit_event(b: TestStore) {
    let store = &b.store;
    let (scope, sub, _keys) = one_subscription(store, "sl").await;
    let (changed, counts) = store
        .set_sync_level(&scope, sub.id, SyncLevel::ReadTagsOnly, "user:test")
        .await
        .expect("set");
    assert_eq!(changed.sync_level, SyncLevel::ReadTagsOnly);
    assert_eq!(counts, LevelChangeCounts::default(), "nothing stored yet");
    assert_eq!(
        store
            .subscription(&scope, sub.id)
            .await
            .expect("subscription")
            .sync_level,
        SyncLevel::ReadTagsOnly
    );
    let events = events_of(store, &scope, "subscription.sync_level_changed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].details["from"], "read_write_tags");
    assert_eq!(events[0].details["to"], "read_tags_only");
    let missing = store
        .set_sync_level(
            &scope,
            SubscriptionId::new(),
            SyncLevel::NoTags,
            "user:test",
        )
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound { .. })));
    assert!(
        store
            .operator_scopes()
            .await
            .expect("scopes")
            .contains(&scope)
    );
    assert!(matches!(
        store.operator_scope(OrgId::new()).await,
        Err(StoreError::NotFound { .. })
    ));
}

both_backends!(inventory_is_recorded_while_another_connection_writes);
/// A sync records its inventory while the scheduler's heartbeat writes the
/// job's lease on another connection; the recording must not fail for it.
async fn inventory_is_recorded_while_another_connection_writes(b: TestStore) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = b.store.clone();
    let (scope, _) = org(&store, &unique("hb")).await;
    let (_dir, keys) = keyfile();
    let id = connect(&store, &scope, &keys, "s3cret", "SUB-1").await;
    let now = store.now() + Duration::seconds(1);
    store.enqueue_due_syncs(&scope, now).await.expect("enqueue");
    let job = store
        .claim_job(&scope, "w", now, Duration::seconds(60))
        .await
        .expect("claim")
        .expect("a job");
    let subscription = store
        .connection(&scope, id)
        .await
        .expect("connection")
        .subscriptions[0]
        .clone();
    let run = store
        .begin_sync_run(
            &scope,
            id,
            SyncTrigger::Schedule,
            store.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    let beating = Arc::new(AtomicBool::new(true));
    let heartbeat = {
        let (store, scope, beating) = (store.clone(), scope.clone(), beating.clone());
        tokio::spawn(async move {
            let mut beats = 0;
            while beating.load(Ordering::Relaxed) {
                assert!(
                    store
                        .heartbeat_job(&scope, job.id, "w", store.now(), Duration::seconds(60))
                        .await
                        .expect("heartbeat")
                );
                beats += 1;
                tokio::task::yield_now().await;
            }
            beats
        })
    };
    for round in 0..20 {
        let observed: Vec<ObservedResource> = (0..50)
            .map(|i| ObservedResource {
                arm_id: format!("/subscriptions/SUB-1/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/s{i}"),
                name: format!("s{i}"),
                resource_type: "Microsoft.Storage/storageAccounts".into(),
                location: "westeurope".into(),
                resource_group: "rg".into(),
                tags: [("round".to_string(), round.to_string())].into(),
                created: None,
                changed: None,
            })
            .collect();
        store
            .record_inventory(&scope, &subscription, run.id, &observed, WITH_TAGS)
            .await
            .expect("recorded while the heartbeat writes");
    }
    beating.store(false, Ordering::Relaxed);
    assert!(heartbeat.await.expect("heartbeat task") > 0);
}

async fn try_exec(url: &str, sql: &str) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut c).await.map(|_| ())
    } else {
        let mut c = sqlx::PgConnection::connect(url).await?;
        sqlx::query(sql).execute(&mut c).await.map(|_| ())
    }
}

async fn raw_exec(url: &str, sql: &str) {
    try_exec(url, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn disable_guard(url: &str) {
    if url.starts_with("sqlite:") {
        raw_exec(url, "DROP TRIGGER IF EXISTS audit_events_no_update").await;
        raw_exec(url, "DROP TRIGGER IF EXISTS audit_events_no_delete").await;
    } else {
        raw_exec(
            url,
            "DROP TRIGGER IF EXISTS audit_events_no_change ON audit_events",
        )
        .await;
    }
}

both_backends!(consent_connections_store_no_secret_and_grow);
async fn consent_connections_store_no_secret_and_grow(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("cs")).await;
    let (_dir, keys) = keyfile();
    let sub = |id: &str| NewSubscription {
        sync_level: SyncLevel::ReadWriteTags,
        ..new_sub(id)
    };
    let created = store
        .create_connection(
            &scope,
            NewConnection {
                id: ConnectionId::new(),
                name: "By consent".into(),
                tenant_id: "t-1".into(),
                client_id: "operator-app".into(),
                principal_id: "sp-1".into(),
                credential: ConnectionCredential::OperatorApp,
                cadence_secs: 86_400,
                stale_after_secs: 172_800,
                subscriptions: vec![sub("SUB-1")],
                actor: "user:test".into(),
            },
        )
        .await
        .expect("connection");
    assert_eq!(created.auth_method, AuthMethod::OperatorApp);
    assert!(
        !created.has_credential,
        "the operator's secret is not stored"
    );
    assert!(matches!(
        store.open_credential(&scope, &keys, created.id).await,
        Err(StoreError::NotFound { .. })
    ));
    // Adding a known subscription (any case) and a new one adds only the new one.
    let grown = store
        .add_subscriptions(
            &scope,
            created.id,
            &[sub("sub-1"), sub("SUB-2")],
            &[],
            "user:test",
        )
        .await
        .expect("add");
    let ids: Vec<&str> = grown
        .subscriptions
        .iter()
        .map(|s| s.azure_id.as_str())
        .collect();
    assert_eq!(ids, vec!["sub-1", "sub-2"]);
    let same = store
        .add_subscriptions(&scope, created.id, &[sub("SUB-2")], &[], "user:test")
        .await
        .expect("again");
    assert_eq!(same.subscriptions.len(), 2);
    let events = events_of(store, &scope, "connection.subscriptions_added").await;
    assert_eq!(events.len(), 1, "nothing added, nothing audited");
    assert_eq!(events[0].details["subscriptions"], json!(["SUB-2"]));
    // Another organisation cannot add to it.
    let (other, _) = org(store, &unique("cs2")).await;
    assert!(matches!(
        store
            .add_subscriptions(&other, created.id, &[sub("SUB-3")], &[], "user:x")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    // Nor can anyone once it is revoked.
    store
        .revoke_connection(&scope, created.id, "user:test")
        .await
        .expect("revoke");
    assert!(matches!(
        store
            .add_subscriptions(&scope, created.id, &[sub("SUB-3")], &[], "user:test")
            .await,
        Err(StoreError::Invalid(_))
    ));
}

/// `n` disks of subscription `SUB-1`, tagged `env={tag}`.
fn observed(n: usize, tag: &str) -> Vec<ObservedResource> {
    observed_in("SUB-1", n, tag)
}

/// `n` disks `d0`, `d1`, ... of a subscription, tagged `env={tag}`.
fn observed_in(azure_id: &str, n: usize, tag: &str) -> Vec<ObservedResource> {
    (0..n)
        .map(|i| ObservedResource {
            arm_id: format!(
                "/subscriptions/{azure_id}/resourceGroups/rg/providers/Microsoft.Compute/disks/d{i}"
            ),
            name: format!("d{i}"),
            resource_type: "Microsoft.Compute/disks".into(),
            location: "westeurope".into(),
            resource_group: "rg".into(),
            tags: [("env".to_string(), tag.to_string())].into(),
            created: None,
            changed: None,
        })
        .collect()
}

both_backends!(inventory_records_only_what_changed);
async fn inventory_records_only_what_changed(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, sub, _keys) = one_subscription(store, "inv").await;
    let run = store
        .begin_sync_run(
            &scope,
            sub.connection_id,
            SyncTrigger::Manual,
            store.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    let record = |seen: Vec<ObservedResource>, tags_read| {
        let (store, scope, clock) = (store.clone(), scope.clone(), clock.clone());
        async move {
            // Each pass a second later, so last_seen moves visibly.
            clock.advance(Duration::seconds(1));
            // As a sync reads it: with its last listing time.
            let sub = store.subscription(&scope, sub.id).await.expect("sub");
            let write = InventoryWrite {
                tags_read,
                deletions_confirmed: false,
                scope_tags: None,
            };
            let c: InventoryCounts = store
                .record_inventory(&scope, &sub, run.id, &seen, write)
                .await
                .expect("record");
            (c.seen, c.added, c.tag_changes, c.deleted)
        }
    };
    // Every resource by name, deleted ones too.
    let list = || {
        by_name(
            store,
            &scope,
            ResourceFilter {
                include_deleted: true,
                ..Default::default()
            },
        )
    };
    let history = |id| {
        let (store, scope) = (store.clone(), scope.clone());
        async move { store.resource(&scope, id).await.expect("one").1 }
    };

    // More than one multi-row insert's worth.
    let first = observed(120, "dev");
    assert_eq!(record(first.clone(), true).await, (120, 120, 0, 0));
    let before = list().await;
    assert_eq!(before.len(), 120);
    let env = |r: &ResourceRecord| r.tags.as_ref().and_then(|t| t.get("env")).cloned();
    assert_eq!(env(&before["d7"]).as_deref(), Some("dev"));

    // Nothing changed: nothing counted, every row seen again.
    assert_eq!(record(first.clone(), true).await, (120, 0, 0, 0));
    let again = list().await;
    assert!(
        again
            .values()
            .all(|r| r.last_seen > before[&r.name].last_seen
                && r.first_seen == before[&r.name].first_seen)
    );
    assert!(
        history(again["d0"].id).await.is_empty(),
        "no spurious history"
    );

    // A tag change, a move, a deletion and a duplicate in Azure's list.
    let mut changed = first.clone();
    changed[0].tags.insert("env".into(), "prod".into());
    changed[1].location = "northeurope".into();
    changed.remove(2);
    changed.push(changed[3].clone());
    assert_eq!(record(changed, true).await, (119, 0, 1, 1));
    let now = list().await;
    let d0 = history(now["d0"].id).await;
    assert_eq!(d0.len(), 1);
    assert_eq!(d0[0].new.get("env").map(String::as_str), Some("prod"));
    assert_eq!(now["d1"].location, "northeurope");
    assert!(now["d2"].deleted_at.is_some());
    assert_eq!(
        now["d2"].last_seen, again["d2"].last_seen,
        "last seen before it went"
    );
    assert!(now["d3"].last_seen > again["d3"].last_seen);

    // Back again; then read without tags, which clears them without history.
    assert_eq!(record(first.clone(), true).await, (120, 0, 1, 0));
    let back = list().await;
    assert!(back["d2"].deleted_at.is_none() && back["d2"].last_seen > now["d2"].last_seen);
    assert_eq!(record(first, false).await, (120, 0, 0, 0));
    assert!(list().await.values().all(|r| r.tags.is_none()));
    assert_eq!(
        history(back["d0"].id).await.len(),
        2,
        "no history for tags no longer read"
    );
}

/// An organisation with a connection of `n` subscriptions (`SUB-0`...),
/// a run of it under way, and its key file.
async fn subscriptions_in_a_run(
    store: &Store,
    who: &str,
    n: usize,
) -> (OrgScope, Connection, SyncRun, tempfile::TempDir) {
    let (scope, _) = org(store, &unique(who)).await;
    let (dir, keys) = keyfile();
    let subscriptions = (0..n)
        .map(|i| NewSubscription {
            display_name: format!("S{i}"),
            ..new_sub(&format!("SUB-{i}"))
        })
        .collect();
    let conn = connect_subscriptions(store, &scope, &keys, "x-secret", subscriptions).await;
    let run = store
        .begin_sync_run(
            &scope,
            conn.id,
            SyncTrigger::Manual,
            store.now() - Duration::hours(2),
        )
        .await
        .expect("run");
    (scope, conn, run, dir)
}

both_backends!(concurrent_inventories_of_subscriptions_all_land);
async fn concurrent_inventories_of_subscriptions_all_land(b: TestStore) {
    let store = &b.store;
    let (scope, conn, run, _dir) = subscriptions_in_a_run(store, "inv", 4).await;
    // Each reads its subscription's rows before writing: on SQLite, a
    // transaction that began by reading could not write after another's.
    let mut tasks = Vec::new();
    for sub in conn.subscriptions {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            let seen = observed_in(&sub.azure_id, 60, "dev");
            for _ in 0..3 {
                store
                    .record_inventory(&scope, &sub, run.id, &seen, WITH_TAGS)
                    .await
                    .expect("record");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = store
        .all_resources(&scope, &ResourceFilter::default())
        .await
        .expect("list");
    assert_eq!(all.len(), 240);
}

/// SQLite writes one at a time, and the process's writes take turns in
/// the order they come: a run's progress, written while three
/// subscriptions' inventories write back to back, waits for the writes
/// queued before it. Left to SQLite's lock it waited for a lucky poll,
/// and during a large sync lost for ten seconds and failed with
/// "database is locked".
#[tokio::test]
async fn writes_take_turns_in_the_order_they_come() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let b = cloudkeep_testkit::sqlite_store().await;
    let store = &b.store;
    let (scope, conn, run, _dir) = subscriptions_in_a_run(store, "turns", 3).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for sub in conn.subscriptions {
        let (store, scope, stop) = (store.clone(), scope.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            // Every pass changes every resource's tag: a write of seconds
            // in all, one after another with no pause between.
            let mut passes = 0u32;
            while !stop.load(Ordering::SeqCst) {
                let tag = if passes % 2 == 0 { "dev" } else { "prod" };
                store
                    .record_inventory(
                        &scope,
                        &sub,
                        run.id,
                        &observed_in(&sub.azure_id, 600, tag),
                        WITH_TAGS,
                    )
                    .await
                    .expect("inventory");
                passes += 1;
            }
            passes
        }));
    }
    let mut waits = Vec::new();
    for _ in 0..20 {
        let asked = std::time::Instant::now();
        store
            .record_sync_progress(&scope, &run, &run.report)
            .await
            .expect("the progress is written in its turn");
        waits.push(asked.elapsed());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::SeqCst);
    let mut passes = 0;
    for w in writers {
        passes += w.await.expect("writer");
    }
    let longest = waits.iter().max().copied().unwrap_or_default();
    eprintln!("{passes} inventory passes; the progress waited at most {longest:?}");
    assert!(
        passes >= 6,
        "the inventories wrote meanwhile ({passes} passes)"
    );
    // Three writes queued before it, each well under a second.
    assert!(
        longest < std::time::Duration::from_secs(5),
        "a write waited {longest:?} behind three others: {waits:?}"
    );
}

both_backends!(a_connection_runs_one_sync_at_a_time);
async fn a_connection_runs_one_sync_at_a_time(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("one")).await;
    let (_dir, keys) = keyfile();
    let conn = connect(store, &scope, &keys, "x-secret", "SUB-1").await;
    let long_ago = store.now() - Duration::hours(2);
    let first = store
        .begin_sync_run(&scope, conn, SyncTrigger::Manual, long_ago)
        .await
        .expect("first");
    assert_eq!(
        (first.trigger, first.status),
        (SyncTrigger::Manual, RunStatus::Running)
    );
    match store
        .begin_sync_run(&scope, conn, SyncTrigger::Schedule, long_ago)
        .await
    {
        Err(StoreError::Conflict { value, .. }) => assert_eq!(value, first.id.to_string()),
        other => panic!("a second run while one runs: {other:?}"),
    }
    // A run older than any run may take died with its process: it is
    // marked interrupted, and a new one begins.
    let second = store
        .begin_sync_run(
            &scope,
            conn,
            SyncTrigger::Schedule,
            store.now() + Duration::seconds(1),
        )
        .await
        .expect("a stale run does not block");
    let runs = runs_of(store, &scope, conn).await;
    let status = |id| {
        runs.iter()
            .find(|r| r.id == id)
            .map(|r| r.status)
            .expect("run")
    };
    assert_eq!(status(first.id), RunStatus::Interrupted);
    assert_eq!(status(second.id), RunStatus::Running);
    // Finishing an interrupted run does not revive it.
    store
        .finish_sync_run(
            &scope,
            &first,
            RunStatus::Succeeded,
            &RunReport::default(),
            "user:test",
        )
        .await
        .expect("finish");
    let runs = runs_of(store, &scope, conn).await;
    assert_eq!(
        runs.iter().find(|r| r.id == first.id).map(|r| r.status),
        Some(RunStatus::Interrupted)
    );
    // Two starts at once, with none running: exactly one begins.
    store
        .finish_sync_run(
            &scope,
            &second,
            RunStatus::Succeeded,
            &RunReport::default(),
            "user:test",
        )
        .await
        .expect("finish");
    let (x, y) = tokio::join!(
        store.begin_sync_run(&scope, conn, SyncTrigger::Manual, long_ago),
        store.begin_sync_run(&scope, conn, SyncTrigger::Manual, long_ago)
    );
    assert_eq!(
        usize::from(x.is_ok()) + usize::from(y.is_ok()),
        1,
        "{x:?} {y:?}"
    );
    // Another organisation's connection id is not found, not started.
    let (other, _) = org(store, &unique("one2")).await;
    assert!(matches!(
        store
            .begin_sync_run(&other, conn, SyncTrigger::Manual, long_ago)
            .await,
        Err(StoreError::NotFound { .. })
    ));
}

/// What the store holds of one subscription: its record, its resources
/// (deleted ones too) with their tag history, and its tag edits.
#[derive(Debug, PartialEq)]
struct Held {
    subscription: SubscriptionRecord,
    resources: Vec<(ResourceRecord, Vec<TagChange>)>,
    edits: Vec<TagEdit>,
}

async fn held(store: &Store, scope: &OrgScope, sub: SubscriptionId) -> Held {
    let mut resources = Vec::new();
    let filter = ResourceFilter {
        subscription: Some(sub),
        include_deleted: true,
        ..Default::default()
    };
    for r in store.all_resources(scope, &filter).await.expect("list") {
        let (r, history) = store.resource(scope, r.id).await.expect("resource");
        resources.push((r, history));
    }
    resources.sort_by_key(|(r, _)| r.id);
    let mut edits = store
        .tag_edits(
            scope,
            &TagEditFilter {
                subscription: Some(sub),
                ..Default::default()
            },
            &PageRequest::first(PageRequest::MAX_LIMIT),
        )
        .await
        .expect("edits")
        .items;
    edits.sort_by_key(|e| e.id);
    Held {
        subscription: store.subscription(scope, sub).await.expect("subscription"),
        resources,
        edits,
    }
}

/// A subscription's edits, by the name of their resource and their state
/// when made.
async fn edits_by_origin(
    store: &Store,
    scope: &OrgScope,
    sub: SubscriptionId,
    origin: &HashMap<Uuid, &'static str>,
) -> HashMap<&'static str, TagEdit> {
    held(store, scope, sub)
        .await
        .edits
        .into_iter()
        .map(|e| (origin[&e.id], e))
        .collect()
}

/// Four tagged disks (`env`, `owner`), two of whose `env` changed since
/// (two history entries), and one edit in each of the states pending
/// (two), local, conflict and applied. Answers each edit's origin.
async fn seed_tags_and_edits(
    store: &Store,
    clock: &ManualClock,
    scope: &OrgScope,
    sub: &SubscriptionRecord,
) -> HashMap<Uuid, &'static str> {
    let mut seen = observed_in(&sub.azure_id, 4, "dev");
    for o in &mut seen {
        o.tags.insert("owner".into(), "alice".into());
    }
    record(store, scope, sub.id, &seen, WITH_TAGS)
        .await
        .expect("first pass");
    clock.advance(Duration::seconds(1));
    seen[0].tags.insert("env".into(), "prod".into());
    seen[1].tags.insert("env".into(), "prod".into());
    let c = record(store, scope, sub.id, &seen, WITH_TAGS)
        .await
        .expect("second pass");
    assert_eq!(c.tag_changes, 2);
    let by_name = by_name(
        store,
        scope,
        ResourceFilter {
            subscription: Some(sub.id),
            ..Default::default()
        },
    )
    .await;
    let edit = |name: &str, state: TagEditState| NewTagEdit {
        resource_id: by_name[name].id,
        subscription_id: sub.id,
        set: [("cost-centre".to_string(), "42".to_string())].into(),
        remove: vec!["owner".into()],
        base: by_name[name].tags.clone().unwrap_or_default(),
        state,
        reason: (state == TagEditState::Local).then(|| "made at read_tags_only".to_string()),
    };
    let plan = [
        ("pending-0", "d0", TagEditState::Pending),
        ("pending-1", "d1", TagEditState::Pending),
        ("local", "d2", TagEditState::Local),
        ("conflict", "d3", TagEditState::Conflict),
        ("applied", "d0", TagEditState::Applied),
    ];
    let made = store
        .create_tag_edits(
            scope,
            plan.iter().map(|(_, r, s)| edit(r, *s)).collect(),
            "user:test",
        )
        .await
        .expect("edits");
    made.iter()
        .zip(plan)
        .map(|(e, (origin, _, _))| (e.id, origin))
        .collect()
}

both_backends!(lowering_a_sync_level_purges_what_it_no_longer_allows);
async fn lowering_a_sync_level_purges_what_it_no_longer_allows(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, _) = org(store, &unique("lvl")).await;
    let (_dir, keys) = keyfile();
    let conn = connect_subscriptions(
        store,
        &scope,
        &keys,
        "x-secret",
        ["SUB-RO", "SUB-NT", "SUB-NR", "SUB-KEEP"]
            .into_iter()
            .map(new_sub)
            .collect(),
    )
    .await;
    let (ro, nt, nr, keep) = (
        sub_of(&conn, "SUB-RO"),
        sub_of(&conn, "SUB-NT"),
        sub_of(&conn, "SUB-NR"),
        sub_of(&conn, "SUB-KEEP"),
    );
    let mut origin = HashMap::new();
    for s in [&ro, &nt, &nr, &keep] {
        origin.extend(seed_tags_and_edits(store, &clock, &scope, s).await);
    }
    let (ro_before, nt_before, kept_before) = (
        held(store, &scope, ro.id).await,
        held(store, &scope, nt.id).await,
        held(store, &scope, keep.id).await,
    );
    assert_eq!(kept_before.resources.len(), 4);
    assert_eq!(kept_before.edits.len(), 5);
    clock.advance(Duration::seconds(1));

    // Each change is one audit event with what it did.
    let change = |sub: SubscriptionRecord, level: SyncLevel| {
        let scope = scope.clone();
        async move {
            let (record, counts) = store
                .set_sync_level(&scope, sub.id, level, "user:test")
                .await
                .expect("set level");
            assert_eq!(record.sync_level, level);
            let events = all_events(
                store,
                &scope,
                &AuditFilter {
                    action: Some("subscription.sync_level_changed".into()),
                    target: Some(format!("subscription:{}", sub.id)),
                    ..Default::default()
                },
            )
            .await;
            assert_eq!(events.len(), 1, "{events:?}");
            let d = &events[0].details;
            assert_eq!(d["from"], "read_write_tags");
            assert_eq!(d["to"], level.as_str());
            for (field, n) in [
                ("resources_purged", counts.resources_purged),
                ("tags_purged", counts.tags_purged),
                ("history_purged", counts.history_purged),
                ("edits_cancelled", counts.edits_cancelled),
                ("edits_made_local", counts.edits_made_local),
            ] {
                assert_eq!(d[field], json!(n), "{field} in {d}");
            }
            counts
        }
    };

    // read_tags_only: pending edits become local; nothing else changes.
    let counts = change(ro.clone(), SyncLevel::ReadTagsOnly).await;
    assert_eq!(
        counts,
        LevelChangeCounts {
            edits_made_local: 2,
            ..Default::default()
        }
    );
    let ro_after = held(store, &scope, ro.id).await;
    assert_eq!(ro_after.resources, ro_before.resources);
    let edits = edits_by_origin(store, &scope, ro.id, &origin).await;
    for pending in ["pending-0", "pending-1"] {
        assert_eq!(edits[pending].state, TagEditState::Local);
        assert!(
            edits[pending]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("read_tags_only")),
            "{:?}",
            edits[pending].reason
        );
    }
    for (origin, state) in [
        ("local", TagEditState::Local),
        ("conflict", TagEditState::Conflict),
        ("applied", TagEditState::Applied),
    ] {
        let before = ro_before
            .edits
            .iter()
            .find(|e| e.id == edits[origin].id)
            .expect("edit");
        assert_eq!(&edits[origin], before, "{origin} is left as it was");
        assert_eq!(edits[origin].state, state);
    }

    // no_tags: tags and their history go, resources stay; open edits are
    // cancelled, closed ones kept.
    let counts = change(nt.clone(), SyncLevel::NoTags).await;
    assert_eq!(
        counts,
        LevelChangeCounts {
            tags_purged: 8,
            history_purged: 2,
            edits_cancelled: 4,
            ..Default::default()
        }
    );
    let nt_after = held(store, &scope, nt.id).await;
    assert_eq!(nt_after.resources.len(), 4);
    for ((after, history), (before, _)) in nt_after.resources.iter().zip(&nt_before.resources) {
        assert_eq!(after.id, before.id);
        assert!(after.deleted_at.is_none(), "{} still exists", after.name);
        assert_eq!(after.tags, None, "{} has no tags stored", after.name);
        assert!(history.is_empty(), "{} has no tag history", after.name);
    }
    let in_nt = |f: ResourceFilter| ResourceFilter {
        subscription: Some(nt.id),
        ..f
    };
    for filter in [
        in_nt(ResourceFilter {
            has_tag: Some("env".into()),
            ..Default::default()
        }),
        in_nt(ResourceFilter {
            tag: Some(("owner".into(), "alice".into())),
            ..Default::default()
        }),
        in_nt(ResourceFilter {
            missing_tag: Some("env".into()),
            ..Default::default()
        }),
    ] {
        assert!(
            names(store, &scope, filter.clone()).await.is_empty(),
            "{filter:?}"
        );
    }
    assert_eq!(
        names(store, &scope, in_nt(Default::default())).await.len(),
        4
    );
    let edits = edits_by_origin(store, &scope, nt.id, &origin).await;
    for open in ["pending-0", "pending-1", "local", "conflict"] {
        assert_eq!(edits[open].state, TagEditState::Cancelled, "{open}");
        assert!(
            edits[open]
                .reason
                .as_deref()
                .is_some_and(|r| r.contains("no_tags")),
            "{open}: {:?}",
            edits[open].reason
        );
    }
    assert_eq!(edits["applied"].state, TagEditState::Applied);

    // no_resources: the resources go with their tags and history; open
    // edits are cancelled.
    let nr_resources: Vec<Uuid> = held(store, &scope, nr.id)
        .await
        .resources
        .iter()
        .map(|(r, _)| r.id)
        .collect();
    let counts = change(nr.clone(), SyncLevel::NoResources).await;
    assert_eq!(
        counts,
        LevelChangeCounts {
            resources_purged: 4,
            tags_purged: 8,
            history_purged: 2,
            edits_cancelled: 4,
            ..Default::default()
        }
    );
    let nr_after = held(store, &scope, nr.id).await;
    assert!(nr_after.resources.is_empty());
    assert_eq!(
        nr_after.subscription.inventory_at, None,
        "never listed at this level"
    );
    for id in nr_resources {
        assert!(matches!(
            store.resource(&scope, id).await,
            Err(StoreError::NotFound { .. })
        ));
    }
    let edits = edits_by_origin(store, &scope, nr.id, &origin).await;
    for open in ["pending-0", "pending-1", "local", "conflict"] {
        assert_eq!(edits[open].state, TagEditState::Cancelled, "{open}");
        assert!(edits[open].reason.is_some(), "{open}");
    }
    assert_eq!(edits["applied"].state, TagEditState::Applied);

    // Three changes, three events; the fourth subscription is untouched.
    assert_eq!(
        events_of(store, &scope, "subscription.sync_level_changed")
            .await
            .len(),
        3
    );
    assert_eq!(held(store, &scope, keep.id).await, kept_before);
    assert_eq!(
        names(
            store,
            &scope,
            ResourceFilter {
                has_tag: Some("env".into()),
                subscription: Some(keep.id),
                ..Default::default()
            }
        )
        .await
        .len(),
        4
    );
    assert!(store.verify_audit(&scope).await.expect("verify").is_ok());
}

both_backends!(a_subscription_has_one_live_connection);
async fn a_subscription_has_one_live_connection(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("live")).await;
    let (_dir, keys) = keyfile();
    let first = connect_subscriptions(
        store,
        &scope,
        &keys,
        "s",
        vec![new_sub("SUB-1"), new_sub("SUB-2")],
    )
    .await;
    let old_sub = sub_of(&first, "SUB-1");
    record(
        store,
        &scope,
        old_sub.id,
        &observed_in("SUB-1", 3, "dev"),
        WITH_TAGS,
    )
    .await
    .expect("inventory");
    let events_before = all_events(store, &scope, &AuditFilter::default()).await;

    // A second connection with an overlapping subscription (in any case) is
    // refused, naming the connection that holds it; nothing is stored.
    let refused_id = ConnectionId::new();
    match try_connect(
        store,
        &scope,
        &keys,
        refused_id,
        "s",
        vec![new_sub("SUB-3"), new_sub("sub-2")],
    )
    .await
    {
        Err(StoreError::AlreadyConnected {
            subscription,
            connection,
        }) => {
            assert_eq!(subscription, "sub-2");
            assert_eq!(connection, first.id);
        }
        other => panic!("an overlapping connection: {other:?}"),
    }
    assert!(matches!(
        store.connection(&scope, refused_id).await,
        Err(StoreError::NotFound { .. })
    ));
    assert_eq!(store.connections(&scope).await.expect("list").len(), 1);
    assert_eq!(store.subscriptions(&scope).await.expect("subs").len(), 2);
    assert_eq!(
        store
            .subscription_holders(&scope, &["SUB-2".into(), "SUB-3".into()])
            .await
            .expect("holders"),
        vec![("sub-2".to_string(), first.id)]
    );
    assert_eq!(
        all_events(store, &scope, &AuditFilter::default()).await,
        events_before
    );

    // The rule is per organisation.
    let (other, _) = org(store, &unique("live2")).await;
    connect(store, &other, &keys, "s", "SUB-1").await;

    // Two connections of one subscription at once: exactly one is made.
    let (race, _) = org(store, &unique("race")).await;
    let (x, y) = tokio::join!(
        try_connect(
            store,
            &race,
            &keys,
            ConnectionId::new(),
            "s",
            vec![new_sub("SUB-9")]
        ),
        try_connect(
            store,
            &race,
            &keys,
            ConnectionId::new(),
            "s",
            vec![new_sub("sub-9")]
        )
    );
    let (won, lost) = match (x, y) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        (x, y) => panic!("exactly one may hold it: {x:?} {y:?}"),
    };
    assert!(
        matches!(&lost, StoreError::AlreadyConnected { connection, .. } if *connection == won.id),
        "{lost:?}"
    );
    assert_eq!(store.connections(&race).await.expect("list").len(), 1);

    // Revoking the first detaches its subscriptions: the tenant can be
    // connected again, and what the first read stays its history.
    let revoked = store
        .revoke_connection(&scope, first.id, "user:test")
        .await
        .expect("revoke");
    assert!(revoked.subscriptions.iter().all(|s| !s.is_live()));
    assert_eq!(revoked.live_subscriptions().count(), 0);
    let again = connect_subscriptions(
        store,
        &scope,
        &keys,
        "s",
        vec![new_sub("SUB-1"), new_sub("SUB-2")],
    )
    .await;
    let new_sub1 = sub_of(&again, "SUB-1");
    assert_ne!(new_sub1.id, old_sub.id);
    assert!(new_sub1.is_live());
    // A health summary counts each live connection's subscriptions, per
    // organisation: the revoked one is gone from it.
    let counted = |scope: OrgScope| async move {
        store
            .live_connections_with_counts(&scope)
            .await
            .expect("live connections")
            .iter()
            .map(|(c, n)| (c.id, *n))
            .collect::<Vec<_>>()
    };
    assert_eq!(counted(scope.clone()).await, vec![(again.id, 2)]);
    let others = store.connections(&other).await.expect("others");
    assert_eq!(counted(other.clone()).await, vec![(others[0].id, 1)]);
    assert!(
        names(store, &scope, ResourceFilter::default())
            .await
            .is_empty(),
        "a revoked connection's resources are not listed by default"
    );
    record(
        store,
        &scope,
        new_sub1.id,
        &observed_in("SUB-1", 2, "dev"),
        WITH_TAGS,
    )
    .await
    .expect("inventory");
    let listed = store
        .all_resources(&scope, &ResourceFilter::default())
        .await
        .expect("list");
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|r| r.connection_id == again.id));
    let history = store
        .all_resources(
            &scope,
            &ResourceFilter {
                connection: Some(first.id),
                ..Default::default()
            },
        )
        .await
        .expect("history");
    assert_eq!(history.len(), 3);
    assert!(
        history
            .iter()
            .all(|r| r.connection_id == first.id && r.subscription_id == old_sub.id)
    );
    assert!(
        names(
            store,
            &scope,
            ResourceFilter {
                subscription: Some(old_sub.id),
                ..Default::default()
            }
        )
        .await
        .is_empty(),
        "nor by its detached subscription, without naming the connection"
    );

    // A subscription another live connection holds moves only when asked.
    let fourth = connect(store, &scope, &keys, "s", "SUB-4").await;
    let held_sub = sub_of(
        &store.connection(&scope, fourth).await.expect("fourth"),
        "SUB-4",
    );
    record(
        store,
        &scope,
        held_sub.id,
        &observed_in("SUB-4", 2, "dev"),
        WITH_TAGS,
    )
    .await
    .expect("inventory");
    let events_before = all_events(store, &scope, &AuditFilter::default()).await;
    let again_before = store.connection(&scope, again.id).await.expect("again");
    match store
        .add_subscriptions(&scope, again.id, &[new_sub("SUB-4")], &[], "user:test")
        .await
    {
        Err(StoreError::AlreadyConnected {
            subscription,
            connection,
        }) => {
            assert_eq!(subscription, "sub-4");
            assert_eq!(connection, fourth);
        }
        other => panic!("taking a held subscription unasked: {other:?}"),
    }
    assert_eq!(
        store
            .connection(&scope, again.id)
            .await
            .expect("again")
            .subscriptions,
        again_before.subscriptions
    );
    assert_eq!(
        all_events(store, &scope, &AuditFilter::default()).await,
        events_before
    );
    let moved = store
        .add_subscriptions(
            &scope,
            again.id,
            &[new_sub("SUB-4")],
            &["sub-4".to_string()],
            "user:test",
        )
        .await
        .expect("move");
    let arrived = sub_of(&moved, "SUB-4");
    assert_eq!(
        arrived.id, held_sub.id,
        "the subscription moves, not a copy"
    );
    assert!(arrived.is_live());
    assert!(
        store
            .connection(&scope, fourth)
            .await
            .expect("fourth")
            .live_subscriptions()
            .next()
            .is_none()
    );
    assert_eq!(
        store
            .subscription_holders(&scope, &["SUB-4".into()])
            .await
            .expect("holders"),
        vec![("sub-4".to_string(), again.id)]
    );
    let of = |connection| ResourceFilter {
        connection: Some(connection),
        subscription: Some(held_sub.id),
        ..Default::default()
    };
    assert_eq!(names(store, &scope, of(again.id)).await, set(&["d0", "d1"]));
    assert!(names(store, &scope, of(fourth)).await.is_empty());
    let moves = events_of(store, &scope, "subscription.moved").await;
    assert_eq!(moves.len(), 1);
    assert_eq!(moves[0].target, format!("subscription:{}", held_sub.id));
    assert_eq!(moves[0].details["from"], json!(fourth));
    assert_eq!(moves[0].details["to"], json!(again.id));
}

both_backends!(a_listing_that_empties_a_subscription_is_confirmed_first);
async fn a_listing_that_empties_a_subscription_is_confirmed_first(b: TestStore) {
    let (b, clock) = on_manual_clock(b);
    let store = &b.store;
    let (scope, sub, _keys) = one_subscription(store, "mass").await;
    let all = observed(100, "dev");
    let confirmed = InventoryWrite {
        deletions_confirmed: true,
        ..WITH_TAGS
    };
    let live = || async {
        store
            .all_resources(
                &scope,
                &ResourceFilter {
                    subscription: Some(sub.id),
                    ..Default::default()
                },
            )
            .await
            .expect("list")
            .len()
    };
    assert_eq!(
        record(store, &scope, sub.id, &all, WITH_TAGS)
            .await
            .expect("first")
            .added,
        100
    );

    // An empty listing, or one without most of the resources, is refused
    // and changes nothing.
    for (kept, gone) in [(0, 100), (49, 51)] {
        clock.advance(Duration::seconds(1));
        let before = held(store, &scope, sub.id).await;
        match record(store, &scope, sub.id, &all[..kept], WITH_TAGS).await {
            Err(StoreError::MassDeletion { would_delete, live }) => {
                assert_eq!((would_delete, live), (gone, 100));
            }
            other => panic!("{gone} of 100 deleted unconfirmed: {other:?}"),
        }
        assert_eq!(held(store, &scope, sub.id).await, before);
    }

    // A tenth goes without confirmation, as does exactly half.
    clock.advance(Duration::seconds(1));
    let c = record(store, &scope, sub.id, &all[..90], WITH_TAGS)
        .await
        .expect("a tenth");
    assert_eq!((c.seen, c.deleted), (90, 10));
    assert_eq!(live().await, 90);
    clock.advance(Duration::seconds(1));
    record(store, &scope, sub.id, &all, WITH_TAGS)
        .await
        .expect("back");
    assert_eq!(live().await, 100);
    clock.advance(Duration::seconds(1));
    let c = record(store, &scope, sub.id, &all[..50], WITH_TAGS)
        .await
        .expect("half");
    assert_eq!(c.deleted, 50);

    // Confirmed (Azure's listing read twice), the empty listing applies.
    clock.advance(Duration::seconds(1));
    assert!(matches!(
        record(store, &scope, sub.id, &[], WITH_TAGS).await,
        Err(StoreError::MassDeletion {
            would_delete: 50,
            live: 50
        })
    ));
    clock.advance(Duration::seconds(1));
    let c = record(store, &scope, sub.id, &[], confirmed)
        .await
        .expect("confirmed");
    assert_eq!((c.seen, c.deleted), (0, 50));
    assert_eq!(live().await, 0);
    let everything = by_name(
        store,
        &scope,
        ResourceFilter {
            include_deleted: true,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(everything.len(), 100);
    assert!(everything.values().all(|r| r.deleted_at.is_some()));

    // A small subscription may empty: 20 resources are not "many".
    let (small_scope, small, _keys) = one_subscription(store, "small").await;
    record(
        store,
        &small_scope,
        small.id,
        &observed(20, "dev"),
        WITH_TAGS,
    )
    .await
    .expect("small");
    let c = record(store, &small_scope, small.id, &[], WITHOUT_TAGS)
        .await
        .expect("twenty go unconfirmed");
    assert_eq!(c.deleted, 20);
}

/// The tests' virtual machine: `vm1` of `SUB-1`, group `web`, West Europe.
fn vm1(tags: &[(&str, &str)]) -> ObservedResource {
    resource(
        "SUB-1",
        "vm1",
        "Microsoft.Compute/virtualMachines",
        "westeurope",
        "web",
        tags,
    )
}

/// The tests' storage account: `st1` of `SUB-1`, group `data`, in `location`.
fn st1(location: &str, tags: &[(&str, &str)]) -> ObservedResource {
    resource(
        "SUB-1",
        "st1",
        "Microsoft.Storage/storageAccounts",
        location,
        "data",
        tags,
    )
}

/// A resource of a subscription with the given attributes.
fn resource(
    azure_id: &str,
    name: &str,
    resource_type: &str,
    location: &str,
    group: &str,
    tags: &[(&str, &str)],
) -> ObservedResource {
    ObservedResource {
        arm_id: format!(
            "/subscriptions/{azure_id}/resourceGroups/{group}/providers/{resource_type}/{name}"
        ),
        name: name.into(),
        resource_type: resource_type.into(),
        location: location.into(),
        resource_group: group.into(),
        tags: tags
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<Tags>(),
        created: None,
        changed: None,
    }
}

both_backends!(resource_filters_are_answered_in_sql);
async fn resource_filters_are_answered_in_sql(b: TestStore) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("filters")).await;
    let (_dir, keys) = keyfile();
    let conn = connect_subscriptions(
        store,
        &scope,
        &keys,
        "s",
        vec![
            new_sub("SUB-TAGS"),
            NewSubscription {
                sync_level: SyncLevel::NoTags,
                ..new_sub("SUB-NOTAGS")
            },
            new_sub("SUB-MANY"),
        ],
    )
    .await;
    let (tagged, untagged, many) = (
        sub_of(&conn, "SUB-TAGS"),
        sub_of(&conn, "SUB-NOTAGS"),
        sub_of(&conn, "SUB-MANY"),
    );
    const VM: &str = "Microsoft.Compute/virtualMachines";
    const STORAGE: &str = "Microsoft.Storage/storageAccounts";
    let s = "SUB-TAGS";
    let listing = vec![
        resource(
            s,
            "web_1",
            VM,
            "westeurope",
            "RG-App",
            &[("Env", "prod"), ("Owner", "alice")],
        ),
        resource(
            s,
            "webx1",
            &VM.to_lowercase(),
            "WestEurope",
            "rg-app",
            &[("env", "dev")],
        ),
        resource(
            s,
            "web%2",
            STORAGE,
            "northeurope",
            "rg-data",
            &[("ENV", "prod")],
        ),
        resource(s, "webzz2", STORAGE, "northeurope", "rg-data", &[]),
        resource(s, "old_1", VM, "westeurope", "rg-app", &[("Env", "prod")]),
    ];
    record(store, &scope, tagged.id, &listing, WITH_TAGS)
        .await
        .expect("inventory");
    // `old_1` goes.
    record(store, &scope, tagged.id, &listing[..4], WITH_TAGS)
        .await
        .expect("inventory");
    // Tags not read: such a resource neither has nor lacks a tag we know of.
    record(
        store,
        &scope,
        untagged.id,
        &[resource(
            "SUB-NOTAGS",
            "other_1",
            VM,
            "westeurope",
            "rg-other",
            &[("env", "prod")],
        )],
        WITHOUT_TAGS,
    )
    .await
    .expect("inventory");

    let f = ResourceFilter::default;
    let cases: Vec<(ResourceFilter, &[&str])> = vec![
        // Tag names compare in any case.
        (
            ResourceFilter {
                has_tag: Some("env".into()),
                ..f()
            },
            &["web_1", "webx1", "web%2"],
        ),
        (
            ResourceFilter {
                has_tag: Some("ENV".into()),
                ..f()
            },
            &["web_1", "webx1", "web%2"],
        ),
        (
            ResourceFilter {
                tag: Some(("eNv".into(), "prod".into())),
                ..f()
            },
            &["web_1", "web%2"],
        ),
        (
            ResourceFilter {
                tag: Some(("env".into(), "dev".into())),
                ..f()
            },
            &["webx1"],
        ),
        (
            ResourceFilter {
                missing_tag: Some("OWNER".into()),
                ..f()
            },
            &["webx1", "web%2", "webzz2"],
        ),
        (
            ResourceFilter {
                missing_tag: Some("owner".into()),
                ..f()
            },
            &["webx1", "web%2", "webzz2"],
        ),
        // Azure's names compare in any case.
        (
            ResourceFilter {
                resource_type: Some(VM.to_uppercase()),
                ..f()
            },
            &["web_1", "webx1", "other_1"],
        ),
        (
            ResourceFilter {
                location: Some("WESTEUROPE".into()),
                ..f()
            },
            &["web_1", "webx1", "other_1"],
        ),
        (
            ResourceFilter {
                resource_group: Some("rg-APP".into()),
                ..f()
            },
            &["web_1", "webx1"],
        ),
        // A name's text is matched literally, in any case.
        (
            ResourceFilter {
                name_contains: Some("B_1".into()),
                ..f()
            },
            &["web_1"],
        ),
        (
            ResourceFilter {
                name_contains: Some("_1".into()),
                ..f()
            },
            &["web_1", "other_1"],
        ),
        (
            ResourceFilter {
                name_contains: Some("b%2".into()),
                ..f()
            },
            &["web%2"],
        ),
        (
            ResourceFilter {
                name_contains: Some("%".into()),
                ..f()
            },
            &["web%2"],
        ),
        (
            ResourceFilter {
                name_contains: Some("WEB".into()),
                ..f()
            },
            &["web_1", "webx1", "web%2", "webzz2"],
        ),
        // Deleted resources only when asked for.
        (
            ResourceFilter {
                has_tag: Some("env".into()),
                include_deleted: true,
                ..f()
            },
            &["web_1", "webx1", "web%2", "old_1"],
        ),
        // Conditions combine.
        (
            ResourceFilter {
                has_tag: Some("env".into()),
                location: Some("northeurope".into()),
                ..f()
            },
            &["web%2"],
        ),
        (
            ResourceFilter {
                subscription: Some(untagged.id),
                resource_type: Some(VM.into()),
                ..f()
            },
            &["other_1"],
        ),
        (
            ResourceFilter {
                subscription: Some(tagged.id),
                name_contains: Some("_1".into()),
                include_deleted: true,
                ..f()
            },
            &["web_1", "old_1"],
        ),
    ];
    for (filter, expected) in cases {
        assert_eq!(
            names(store, &scope, filter.clone()).await,
            set(expected),
            "{filter:?}"
        );
    }

    // Keyset paging through a filtered list returns every match once.
    let listing: Vec<ObservedResource> = (0..250)
        .map(|i| {
            let team = if i % 3 == 0 { "a" } else { "b" };
            let tags: &[(&str, &str)] = if i % 5 == 0 { &[] } else { &[("Team", team)] };
            resource("SUB-MANY", &format!("m{i}"), VM, "westeurope", "rg", tags)
        })
        .collect();
    record(store, &scope, many.id, &listing, WITH_TAGS)
        .await
        .expect("inventory");
    let expect = |keep: &dyn Fn(usize) -> bool| -> BTreeSet<String> {
        (0..250)
            .filter(|i| keep(*i))
            .map(|i| format!("m{i}"))
            .collect()
    };
    let in_many = |f: ResourceFilter| ResourceFilter {
        subscription: Some(many.id),
        ..f
    };
    let paged_cases: Vec<(ResourceFilter, BTreeSet<String>)> = vec![
        (
            in_many(ResourceFilter {
                has_tag: Some("team".into()),
                ..f()
            }),
            expect(&|i| i % 5 != 0),
        ),
        (
            in_many(ResourceFilter {
                tag: Some(("TEAM".into(), "a".into())),
                ..f()
            }),
            expect(&|i| i % 5 != 0 && i % 3 == 0),
        ),
        (
            in_many(ResourceFilter {
                missing_tag: Some("team".into()),
                ..f()
            }),
            expect(&|i| i % 5 == 0),
        ),
    ];
    for (filter, expected) in paged_cases {
        for limit in [7, 50] {
            let mut seen = Vec::new();
            let mut page = PageRequest::first(limit);
            loop {
                let got = store.resources(&scope, &filter, &page).await.expect("page");
                assert!(got.items.len() <= limit);
                seen.extend(got.items.into_iter().map(|r| r.name));
                match got.next {
                    Some(next) => page.after = Some(next),
                    None => break,
                }
            }
            let unique: BTreeSet<String> = seen.iter().cloned().collect();
            assert_eq!(unique.len(), seen.len(), "no match twice: {filter:?}");
            assert_eq!(unique, expected, "every match: {filter:?} by {limit}");
        }
        assert_eq!(names(store, &scope, filter.clone()).await, expected);
    }
}

/// Makes every audit append fail (as a full disk or a lost connection
/// would at that moment), or lets them through again.
async fn refuse_audit_events(url: &str, refuse: bool) {
    let sqlite = url.starts_with("sqlite:");
    let statements: &[&str] = match (sqlite, refuse) {
        (true, true) => &[
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events BEGIN SELECT RAISE(ABORT, 'audit refused'); END",
        ],
        (true, false) => &["DROP TRIGGER refuse_audit"],
        (false, true) => &[
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'audit refused'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ],
        (false, false) => &["DROP TRIGGER refuse_audit ON audit_events"],
    };
    for s in statements {
        raw_exec(url, s).await;
    }
}

both_backends!(an_audited_change_and_its_event_are_kept_together);
async fn an_audited_change_and_its_event_are_kept_together(b: TestStore) {
    let store = &b.store;
    let (scope, owner) = org(store, &unique("together")).await;
    let (_dir, keys) = keyfile();
    let conn = connect(store, &scope, &keys, "s", "SUB-1").await;
    let sub = sub_of(&store.connection(&scope, conn).await.expect("c"), "SUB-1").id;
    record(store, &scope, sub, &observed(3, "dev"), WITH_TAGS)
        .await
        .expect("inventory");
    // As it stands after its listing.
    let sub = store.subscription(&scope, sub).await.expect("sub");
    let viewer = store
        .create_user(
            &scope,
            NewUser {
                email: unique("viewer"),
                name: "Viewer".into(),
                role: Role::Viewer,
                password_hash: None,
            },
            "system:test",
        )
        .await
        .expect("viewer");
    let (token, secret) = store
        .create_api_token(&scope, owner.id, "ci", None, "system:test")
        .await
        .expect("token");
    let events = all_events(store, &scope, &AuditFilter::default()).await;

    // Changes that find nothing to change record nothing.
    assert!(matches!(
        store
            .revoke_api_token(&scope, TokenId::new(), "user:test")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_role(
                &scope,
                cloudkeep_domain::UserId::new(),
                Role::Admin,
                "user:test"
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .revoke_connection(&scope, ConnectionId::new(), "user:test")
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .set_connection_status(
                &scope,
                ConnectionId::new(),
                ConnectionStatus::Failing,
                None,
                "user:test"
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store
            .create_api_token(
                &scope,
                cloudkeep_domain::UserId::new(),
                "nobody's",
                None,
                "user:test"
            )
            .await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        !store
            .settle_tag_edit(
                &scope,
                Uuid::new_v4(),
                TagEditState::Applied,
                None,
                json!({}),
                "user:test"
            )
            .await
            .expect("settle"),
        "no pending edit, nothing settled"
    );
    assert_eq!(
        all_events(store, &scope, &AuditFilter::default()).await,
        events
    );
    assert_eq!(
        store
            .api_tokens(&scope, None, &PageRequest::default())
            .await
            .expect("tokens")
            .items
            .len(),
        1,
        "no token for a user that is not there"
    );

    // A change whose event cannot be written is not kept either.
    refuse_audit_events(&b.url, true).await;
    assert!(
        store
            .revoke_api_token(&scope, token.id, "user:test")
            .await
            .is_err()
    );
    assert!(
        store
            .set_role(&scope, viewer.id, Role::Admin, "user:test")
            .await
            .is_err()
    );
    assert!(
        store
            .set_sync_level(&scope, sub.id, SyncLevel::NoResources, "user:test")
            .await
            .is_err()
    );
    let refused = ConnectionId::new();
    assert!(
        try_connect(store, &scope, &keys, refused, "s", vec![new_sub("SUB-2")])
            .await
            .is_err()
    );
    assert!(
        store
            .audit(
                &scope,
                AuditEntry::new("user:test", "thing.done", "thing:1", json!({}))
            )
            .await
            .is_err()
    );
    refuse_audit_events(&b.url, false).await;
    assert!(
        store
            .authenticate_token(&secret)
            .await
            .expect("auth")
            .is_some(),
        "the token was not revoked"
    );
    assert_eq!(
        store
            .api_token(&scope, token.id)
            .await
            .expect("token")
            .revoked_at,
        None
    );
    assert_eq!(
        store.user(&scope, viewer.id).await.expect("user").role,
        Role::Viewer
    );
    let kept = store.subscription(&scope, sub.id).await.expect("sub");
    assert_eq!(kept, sub, "the sync level and the inventory time are kept");
    assert_eq!(
        names(
            store,
            &scope,
            ResourceFilter {
                subscription: Some(sub.id),
                ..Default::default()
            }
        )
        .await
        .len(),
        3,
        "nothing was purged"
    );
    assert!(matches!(
        store.connection(&scope, refused).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(
        store
            .subscription_holders(&scope, &["SUB-2".into()])
            .await
            .expect("holders")
            .is_empty()
    );
    assert_eq!(
        all_events(store, &scope, &AuditFilter::default()).await,
        events
    );
    assert_eq!(
        store.verify_audit(&scope).await.expect("verify"),
        Ok(events.len() as i64),
        "the chain has no gap where the refused events were"
    );

    // Once events can be written, the change and its event go in together.
    store
        .revoke_api_token(&scope, token.id, "user:test")
        .await
        .expect("revoke");
    assert!(matches!(
        store.revoke_api_token(&scope, token.id, "user:test").await,
        Err(StoreError::NotFound { .. })
    ));
    let revoked = events_of(store, &scope, "token.revoked").await;
    assert_eq!(revoked.len(), 1, "one revocation, one event");
    assert_eq!(revoked[0].target, format!("token:{}", token.id));
    assert_eq!(
        store.verify_audit(&scope).await.expect("verify"),
        Ok(events.len() as i64 + 1)
    );
}
