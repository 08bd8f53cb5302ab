//! The store's story suite, run against SQLite always and against
//! PostgreSQL when `CLOUDKEEP_TEST_POSTGRES_URL` is set (each test in a
//! schema of its own).

use chrono::{Duration, Utc};
use cloudkeep_domain::crypto::{KeyProvider, LocalKeyFile};
use cloudkeep_domain::password::hash_password;
use cloudkeep_domain::{
    AuthMethod, ConnectionId, ConnectionStatus, OrgId, Role, SecretString, SyncLevel,
};
use cloudkeep_store::{
    AuditEntry, AuditFilter, AuditProblemKind, NewConnection, NewOrganisation, NewSubscription,
    NewUser, ObservedResource, OrgScope, Store, StoreError,
};
use serde_json::json;

struct Backend {
    store: Store,
    url: String,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("cloudkeep.db").display());
    Backend {
        store: Store::open(&url).await.expect("sqlite store"),
        url,
        _dir: Some(dir),
    }
}

/// Drops a test's PostgreSQL schema once the test is done with it.
struct Cleanup {
    base: String,
    schema: String,
}

impl Cleanup {
    async fn run(self) {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(&self.base).await {
            let _ = sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
                .execute(&mut c)
                .await;
        }
    }
}

/// A fresh schema in the test database, or `None` (the test says it skips).
async fn postgres() -> Option<(Backend, Cleanup)> {
    let Ok(base) = std::env::var("CLOUDKEEP_TEST_POSTGRES_URL") else {
        eprintln!("skipped: CLOUDKEEP_TEST_POSTGRES_URL is not set");
        return None;
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    {
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&base).await.expect("postgres");
        sqlx::query(&format!("CREATE SCHEMA {schema}"))
            .execute(&mut c)
            .await
            .expect("schema");
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
    let cleanup = Cleanup {
        base: base.clone(),
        schema: schema.clone(),
    };
    Some((
        Backend {
            store: Store::open(&url).await.expect("postgres store"),
            url,
            _dir: None,
        },
        cleanup,
    ))
}

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::sqlite().await).await;
            }

            #[tokio::test]
            async fn postgres() {
                if let Some((b, cleanup)) = super::postgres().await {
                    super::$name(b).await;
                    cleanup.run().await;
                }
            }
        }
    };
}

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

both!(logins_tokens_and_sessions);
async fn logins_tokens_and_sessions(b: Backend) {
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
    let (_, expired) = store
        .create_api_token(
            &scope,
            owner.id,
            "old",
            Some(Utc::now() - Duration::seconds(1)),
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
        matches!(via_session.credential, cloudkeep_store::Credential::Session { csrf_token } if csrf_token == csrf)
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
    assert_eq!(store.users(&scope).await.expect("users").len(), 2);
}

both!(organisations_are_isolated);
async fn organisations_are_isolated(b: Backend) {
    let store = &b.store;
    let (a, a_owner) = org(store, &unique("a")).await;
    let (bscope, _) = org(store, &unique("b")).await;
    assert!(matches!(
        store.user(&bscope, a_owner.id).await,
        Err(StoreError::NotFound { .. })
    ));
    let (_, a_token) = store
        .create_api_token(&a, a_owner.id, "t", None, "system:test")
        .await
        .expect("token");
    // A's token re-labelled with B's organisation does not authenticate.
    let forged = SecretString::new(a_token.expose().replacen(
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
            .users(&bscope)
            .await
            .expect("users")
            .iter()
            .all(|u| u.id != a_owner.id)
    );
    let keys = keyfile();
    let conn = connect(store, &a, &keys.1, "secret-of-a").await;
    assert!(matches!(
        store.connection(&bscope, conn).await,
        Err(StoreError::NotFound { .. })
    ));
    assert!(store.connections(&bscope).await.expect("list").is_empty());
    assert!(
        store
            .audit_events(&bscope, &AuditFilter::default())
            .await
            .expect("audit")
            .iter()
            .all(|e| !e.target.contains(&conn.to_string()))
    );
}

fn keyfile() -> (tempfile::TempDir, LocalKeyFile) {
    let dir = tempfile::tempdir().expect("dir");
    let file = LocalKeyFile::open_or_create(&dir.path().join("master.key")).expect("key file");
    (dir, file)
}

async fn connect(
    store: &Store,
    scope: &OrgScope,
    keys: &dyn KeyProvider,
    secret: &str,
) -> ConnectionId {
    let prod = NewSubscription {
        azure_id: "SUB-1".into(),
        display_name: "Prod".into(),
        sync_level: SyncLevel::default(),
        permissions: json!({"missing": []}),
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
) -> cloudkeep_store::Connection {
    let id = ConnectionId::new();
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
                credential: cloudkeep_store::ConnectionCredential::ClientSecret(credential),
                cadence_secs: 86_400,
                stale_after_secs: 172_800,
                subscriptions,
                actor: "user:test".into(),
            },
        )
        .await
        .expect("connection")
}

/// An organisation with a connection of one subscription, and its key file.
async fn one_subscription(
    store: &Store,
    who: &str,
) -> (
    OrgScope,
    cloudkeep_store::SubscriptionRecord,
    tempfile::TempDir,
) {
    let (scope, _) = org(store, &unique(who)).await;
    let (dir, keys) = keyfile();
    let conn = connect(store, &scope, &keys, "x-secret").await;
    let sub = store
        .connection(&scope, conn)
        .await
        .expect("get")
        .subscriptions[0]
        .clone();
    (scope, sub, dir)
}

both!(credentials_are_encrypted_and_bound_to_their_row);
async fn credentials_are_encrypted_and_bound_to_their_row(b: Backend) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("c")).await;
    let (_dir, keys) = keyfile();
    let one = connect(store, &scope, &keys, "first-secret-value").await;
    let two = connect(store, &scope, &keys, "second-secret-value").await;
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
    assert!(c.has_credential);

    // A blob copied onto another connection does not decrypt.
    raw_exec(&b.url, &format!("UPDATE connections SET credential = (SELECT credential FROM connections WHERE connection_id = '{one}') WHERE connection_id = '{two}'")).await;
    assert!(matches!(
        store.open_credential(&scope, &keys, two).await,
        Err(StoreError::Crypto(_))
    ));

    // Another organisation's data key does not open it either.
    let (other, _) = org(store, &unique("d")).await;
    let three = connect(store, &other, &keys, "third").await;
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
    assert_eq!(
        store
            .connection(&scope, one)
            .await
            .expect("still readable")
            .subscriptions
            .len(),
        1
    );
}

both!(keys_rotate_without_losing_credentials);
async fn keys_rotate_without_losing_credentials(b: Backend) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("k")).await;
    let (_dir, mut keys) = keyfile();
    let conn = connect(store, &scope, &keys, "rotating-secret").await;
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

both!(audit_chain_detects_tampering);
async fn audit_chain_detects_tampering(b: Backend) {
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
    let events = store
        .audit_events(
            &scope,
            &AuditFilter {
                action: Some("thing.done".into()),
                ..Default::default()
            },
        )
        .await
        .expect("list");
    assert_eq!(events.len(), 5);
    let page = store
        .audit_events(
            &scope,
            &AuditFilter {
                after_seq: Some(5),
                ..Default::default()
            },
        )
        .await
        .expect("page");
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![6, 7]);

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

both!(audit_chain_detects_deletion_and_swaps);
async fn audit_chain_detects_deletion_and_swaps(b: Backend) {
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

both!(concurrent_appends_keep_one_chain);
async fn concurrent_appends_keep_one_chain(b: Backend) {
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

both!(sync_levels_change_with_an_audit_event);
async fn sync_levels_change_with_an_audit_event(b: Backend) {
    let store = &b.store;
    let (scope, sub, _keys) = one_subscription(store, "sl").await;
    let changed = store
        .set_sync_level(&scope, sub.id, SyncLevel::ReadTagsOnly, "user:test")
        .await
        .expect("set");
    assert_eq!(changed.sync_level, SyncLevel::ReadTagsOnly);
    let events = store
        .audit_events(
            &scope,
            &AuditFilter {
                action: Some("subscription.sync_level_changed".into()),
                ..Default::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(events[0].details["from"], "read_write_tags");
    assert_eq!(events[0].details["to"], "read_tags_only");
    let missing = store
        .set_sync_level(
            &scope,
            cloudkeep_domain::SubscriptionId::new(),
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

both!(inventory_is_recorded_while_another_connection_writes);
/// A sync records its inventory while the scheduler's heartbeat writes the
/// job's lease on another connection; the recording must not fail for it.
async fn inventory_is_recorded_while_another_connection_writes(b: Backend) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let store = b.store.clone();
    let (scope, _) = org(&store, &unique("hb")).await;
    let (_dir, keys) = keyfile();
    let id = connect(&store, &scope, &keys, "s3cret").await;
    let now = Utc::now() + Duration::seconds(1);
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
        .begin_sync_run(&scope, id, "schedule", Utc::now() - Duration::hours(2))
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
                        .heartbeat_job(&scope, job.id, "w", Utc::now(), Duration::seconds(60))
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
            .record_inventory(&scope, &subscription, run.id, &observed, true)
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

both!(consent_connections_store_no_secret_and_grow);
async fn consent_connections_store_no_secret_and_grow(b: Backend) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("cs")).await;
    let (_dir, keys) = keyfile();
    let sub = |id: &str| NewSubscription {
        azure_id: id.into(),
        display_name: id.to_lowercase(),
        sync_level: SyncLevel::ReadWriteTags,
        permissions: json!({}),
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
                credential: cloudkeep_store::ConnectionCredential::OperatorApp,
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
        .add_subscriptions(&scope, created.id, &[sub("SUB-2")], "user:test")
        .await
        .expect("again");
    assert_eq!(same.subscriptions.len(), 2);
    let events = store
        .audit_events(
            &scope,
            &AuditFilter {
                action: Some("connection.subscriptions_added".into()),
                ..Default::default()
            },
        )
        .await
        .expect("audit");
    assert_eq!(events.len(), 1, "nothing added, nothing audited");
    assert_eq!(events[0].details["subscriptions"], json!(["SUB-2"]));
    // Another organisation cannot add to it.
    let (other, _) = org(store, &unique("cs2")).await;
    assert!(matches!(
        store
            .add_subscriptions(&other, created.id, &[sub("SUB-3")], "user:x")
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
            .add_subscriptions(&scope, created.id, &[sub("SUB-3")], "user:test")
            .await,
        Err(StoreError::Invalid(_))
    ));
}

fn observed(n: usize, tag: &str) -> Vec<cloudkeep_store::ObservedResource> {
    (0..n)
        .map(|i| cloudkeep_store::ObservedResource {
            arm_id: format!(
                "/subscriptions/SUB-1/resourceGroups/rg/providers/Microsoft.Compute/disks/d{i}"
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

both!(inventory_records_only_what_changed);
async fn inventory_records_only_what_changed(b: Backend) {
    use cloudkeep_store::{InventoryCounts, ObservedResource, ResourceFilter};
    let store = &b.store;
    let (scope, sub, _keys) = one_subscription(store, "inv").await;
    let run = store
        .begin_sync_run(
            &scope,
            sub.connection_id,
            "manual",
            Utc::now() - Duration::hours(2),
        )
        .await
        .expect("run");
    let record = |seen: Vec<ObservedResource>, tags_read| {
        let (store, scope, sub) = (store.clone(), scope.clone(), sub.clone());
        async move {
            // Each pass at a later millisecond, so last_seen moves visibly.
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let c: InventoryCounts = store
                .record_inventory(&scope, &sub, run.id, &seen, tags_read)
                .await
                .expect("record");
            (c.seen, c.added, c.tag_changes, c.deleted)
        }
    };
    // Every resource by name, deleted ones too.
    let list = || {
        let (store, scope) = (store.clone(), scope.clone());
        async move {
            let filter = ResourceFilter {
                include_deleted: true,
                ..Default::default()
            };
            let all = store
                .resources(&scope, &filter, None, 1000)
                .await
                .expect("list");
            all.into_iter()
                .map(|r| (r.name.clone(), r))
                .collect::<std::collections::HashMap<_, _>>()
        }
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
    let env =
        |r: &cloudkeep_store::ResourceRecord| r.tags.as_ref().and_then(|t| t.get("env")).cloned();
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

both!(concurrent_inventories_of_subscriptions_all_land);
async fn concurrent_inventories_of_subscriptions_all_land(b: Backend) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("inv")).await;
    let (_dir, keys) = keyfile();
    let subscriptions = (0..4)
        .map(|i| NewSubscription {
            azure_id: format!("SUB-{i}"),
            display_name: format!("S{i}"),
            sync_level: SyncLevel::default(),
            permissions: json!({}),
        })
        .collect();
    let conn = connect_subscriptions(store, &scope, &keys, "x-secret", subscriptions).await;
    let run = store
        .begin_sync_run(&scope, conn.id, "manual", Utc::now() - Duration::hours(2))
        .await
        .expect("run");
    // Each reads its subscription's rows before writing: on SQLite, a
    // transaction that began by reading could not write after another's.
    let mut tasks = Vec::new();
    for sub in conn.subscriptions {
        let (store, scope) = (store.clone(), scope.clone());
        tasks.push(tokio::spawn(async move {
            let seen: Vec<_> = observed(60, "dev")
                .into_iter()
                .map(|mut o| {
                    o.arm_id = o.arm_id.replace("SUB-1", &sub.azure_id);
                    o
                })
                .collect();
            for _ in 0..3 {
                store
                    .record_inventory(&scope, &sub, run.id, &seen, true)
                    .await
                    .expect("record");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let all = store
        .resources(&scope, &Default::default(), None, 1000)
        .await
        .expect("list");
    assert_eq!(all.len(), 240);
}

both!(a_connection_runs_one_sync_at_a_time);
async fn a_connection_runs_one_sync_at_a_time(b: Backend) {
    let store = &b.store;
    let (scope, _) = org(store, &unique("one")).await;
    let (_dir, keys) = keyfile();
    let conn = connect(store, &scope, &keys, "x-secret").await;
    let long_ago = Utc::now() - Duration::hours(2);
    let first = store
        .begin_sync_run(&scope, conn, "manual", long_ago)
        .await
        .expect("first");
    match store
        .begin_sync_run(&scope, conn, "schedule", long_ago)
        .await
    {
        Err(StoreError::Conflict { value, .. }) => assert_eq!(value, first.id.to_string()),
        other => panic!("a second run while one runs: {other:?}"),
    }
    // A run older than any run may take died with its process: it is
    // marked interrupted, and a new one begins.
    let second = store
        .begin_sync_run(&scope, conn, "schedule", Utc::now() + Duration::seconds(1))
        .await
        .expect("a stale run does not block");
    let runs = store.sync_runs(&scope, Some(conn), 10).await.expect("runs");
    let status = |id| {
        runs.iter()
            .find(|r| r.id == id)
            .map(|r| r.status.clone())
            .expect("run")
    };
    assert_eq!(status(first.id), "interrupted");
    assert_eq!(status(second.id), "running");
    // Finishing an interrupted run does not revive it.
    store
        .finish_sync_run(
            &scope,
            &first,
            "succeeded",
            &json!({}),
            &json!([]),
            "user:test",
        )
        .await
        .expect("finish");
    let runs = store.sync_runs(&scope, Some(conn), 10).await.expect("runs");
    assert_eq!(
        runs.iter()
            .find(|r| r.id == first.id)
            .map(|r| r.status.as_str()),
        Some("interrupted")
    );
    // Two starts at once, with none running: exactly one begins.
    store
        .finish_sync_run(
            &scope,
            &second,
            "succeeded",
            &json!({}),
            &json!([]),
            "user:test",
        )
        .await
        .expect("finish");
    let (x, y) = tokio::join!(
        store.begin_sync_run(&scope, conn, "manual", long_ago),
        store.begin_sync_run(&scope, conn, "manual", long_ago)
    );
    assert_eq!(
        usize::from(x.is_ok()) + usize::from(y.is_ok()),
        1,
        "{x:?} {y:?}"
    );
    // Another organisation's connection id is not found, not started.
    let (other, _) = org(store, &unique("one2")).await;
    assert!(matches!(
        store.begin_sync_run(&other, conn, "manual", long_ago).await,
        Err(StoreError::NotFound { .. })
    ));
}
