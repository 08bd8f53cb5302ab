//! The sync engine: one run reads a connection's subscriptions through every
//! registered collector, honouring each subscription's sync level, and
//! records what it saw, what it could not read and why.
//!
//! Failures become state, not crashes: a credential Entra ID refuses moves
//! the connection to "needs re-auth"; a 403 on one subscription is recorded
//! as a missing permission and the rest of the run goes on.

pub mod collectors;
pub mod scheduler;
pub mod writeback;

use std::sync::Arc;

use cloudkeep_azure::{AccessToken, AzureClient, AzureError};
use cloudkeep_domain::crypto::KeyProvider;
use cloudkeep_domain::{
    AuthMethod, ConnectionId, ConnectionStatus, OperatorApp, SecretString, SyncLevel,
};
use cloudkeep_store::{OrgScope, Store, StoreError, SubscriptionRecord, SyncRun};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value, json};

/// What a run needs from the rest of cloudkeep.
#[derive(Clone)]
pub struct SyncDeps {
    pub store: Store,
    pub azure: AzureClient,
    pub keys: Arc<dyn KeyProvider>,
    /// The operator's application, for connections made by consent.
    pub operator: Option<OperatorApp>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("the connection was revoked; it no longer syncs")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a collector is given for one subscription.
pub struct CollectContext<'a> {
    pub store: &'a Store,
    pub azure: &'a AzureClient,
    pub scope: &'a OrgScope,
    pub token: &'a AccessToken,
    pub run: &'a SyncRun,
    pub subscription: &'a SubscriptionRecord,
}

/// Why a collection failed: Azure's answer, or the store.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error(transparent)]
    Azure(#[from] AzureError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A kind of data read from Azure. Adding one is a new file in
/// `collectors/` and a line in `collectors::all`. See `docs/collectors.md`.
pub trait Collector: Send + Sync {
    /// Named after what it reads (`inventory`, `spend`, ...).
    fn name(&self) -> &'static str;
    /// Whether it runs for a subscription at this sync level.
    fn runs_at(&self, level: SyncLevel) -> bool;
    /// Reads one subscription and stores what it saw; answers its counts.
    fn collect<'a>(&'a self, ctx: CollectContext<'a>)
    -> BoxFuture<'a, Result<Value, CollectError>>;
}

/// A token this close to its end is renewed before the next step.
const TOKEN_MARGIN: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs one sync of a connection now and records it. The credential stays
/// in memory for the run, to renew the token when it runs out.
pub async fn sync_connection(
    deps: &SyncDeps,
    scope: &OrgScope,
    connection: ConnectionId,
    trigger: &str,
    actor: &str,
) -> Result<SyncRun, SyncError> {
    let conn = deps.store.connection(scope, connection).await?;
    if conn.deleted_at.is_some() {
        return Err(SyncError::Revoked);
    }
    let run = deps
        .store
        .begin_sync_run(scope, connection, trigger)
        .await?;
    let Some(secret) = credential(deps, scope, &conn).await? else {
        let detail = "this connection was made by consent and syncs with the operator's application, \
                      which this server is not configured with (or whose client id changed): \
                      set CLOUDKEEP_OPERATOR_CLIENT_ID and CLOUDKEEP_OPERATOR_CLIENT_SECRET";
        deps.store
            .set_connection_status(
                scope,
                connection,
                ConnectionStatus::Failing,
                Some(detail),
                actor,
            )
            .await?;
        let errors = json!([{ "kind": "operator_app_missing", "message": detail }]);
        return Ok(deps
            .store
            .finish_sync_run(scope, &run, "failed", &json!({}), &errors, actor)
            .await?);
    };
    let mut token = match deps
        .azure
        .client_credentials_token(&conn.tenant_id, &conn.client_id, &secret)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let (status, kind) = match &e {
                AzureError::Credential { .. } => {
                    (ConnectionStatus::NeedsReauth, "credential_rejected")
                }
                _ => (ConnectionStatus::Failing, "token_unavailable"),
            };
            let detail = e.to_string();
            deps.store
                .set_connection_status(scope, connection, status, Some(&detail), actor)
                .await?;
            let errors = json!([{ "kind": kind, "message": detail }]);
            return Ok(deps
                .store
                .finish_sync_run(scope, &run, "failed", &json!({}), &errors, actor)
                .await?);
        }
    };

    let collectors = collectors::all();
    let mut counts = Map::new();
    let mut errors = Vec::new();
    let mut successes = 0;
    for sub in &conn.subscriptions {
        let mut per_sub = Map::new();
        for c in &collectors {
            if !c.runs_at(sub.sync_level) {
                per_sub.insert(
                    c.name().into(),
                    json!({ "skipped": format!("sync level {}", sub.sync_level) }),
                );
                continue;
            }
            let ctx = CollectContext {
                store: &deps.store,
                azure: &deps.azure,
                scope,
                token: &token,
                run: &run,
                subscription: sub,
            };
            match c.collect(ctx).await {
                Ok(v) => {
                    successes += 1;
                    per_sub.insert(c.name().into(), v);
                }
                Err(e) => errors.push(failure(sub, c.name(), &e)),
            }
        }
        // Then the user's tag edits, where the level writes tags.
        if sub.sync_level.writes_tags() {
            if token.expires_within(TOKEN_MARGIN) {
                if let Ok(t) = deps
                    .azure
                    .client_credentials_token(&conn.tenant_id, &conn.client_id, &secret)
                    .await
                {
                    token = t;
                }
            }
            let ctx = CollectContext {
                store: &deps.store,
                azure: &deps.azure,
                scope,
                token: &token,
                run: &run,
                subscription: sub,
            };
            match writeback::apply(&ctx, actor).await {
                Ok(v) => {
                    successes += 1;
                    per_sub.insert("write_back".into(), v);
                }
                Err(e) => errors.push(failure(sub, "write_back", &e)),
            }
        }
        counts.insert(sub.azure_id.clone(), Value::Object(per_sub));
    }
    let status = match (errors.is_empty(), successes) {
        (true, _) => "succeeded",
        (false, 0) => "failed",
        (false, _) => "partial",
    };
    if status != "failed" && conn.status != ConnectionStatus::Active {
        deps.store
            .set_connection_status(scope, connection, ConnectionStatus::Active, None, actor)
            .await?;
    }
    Ok(deps
        .store
        .finish_sync_run(
            scope,
            &run,
            status,
            &json!({ "subscriptions": counts }),
            &Value::Array(errors),
            actor,
        )
        .await?)
}

/// The secret a connection signs in with, in memory: its own sealed one, or
/// the operator's application's (`None` when this server has none for it).
async fn credential(
    deps: &SyncDeps,
    scope: &OrgScope,
    conn: &cloudkeep_store::Connection,
) -> Result<Option<SecretString>, SyncError> {
    Ok(match conn.auth_method {
        AuthMethod::ClientSecret => Some(
            deps.store
                .open_credential(scope, deps.keys.as_ref(), conn.id)
                .await?,
        ),
        AuthMethod::OperatorApp => deps
            .operator
            .as_ref()
            .filter(|op| op.client_id.eq_ignore_ascii_case(&conn.client_id))
            .map(|op| op.client_secret.clone()),
    })
}

fn failure(sub: &SubscriptionRecord, step: &str, e: &CollectError) -> Value {
    let kind = match e {
        CollectError::Azure(AzureError::Forbidden { .. }) => "permission_missing",
        CollectError::Azure(AzureError::Throttled { .. }) => "throttled",
        _ => "error",
    };
    tracing::warn!(step, subscription = %sub.azure_id, error = %e, "sync step failed");
    json!({ "subscription": sub.azure_id, "collector": step, "kind": kind, "message": e.to_string() })
}
