//! Evidence of storage accounts' exposure, one check per setting:
//! anonymous blob access and network exposure are separate findings (an
//! account can be private on the network and still allow anonymous blobs,
//! and the reverse). A setting Azure leaves out is judged by the default
//! documented for the api-version read, and the facts say it was absent.
//! It lists resources, so it runs wherever the sync level reads them.

use cloudkeep_azure::{STORAGE_API_VERSION, StorageAccount};
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::evidence::{CheckId, EvidenceSource};
use cloudkeep_domain::report::Counts;
use cloudkeep_store::Observation;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::evidence::{Listing, field, first_listing, judged, record};
use crate::{CollectContext, CollectError, Collector};

pub struct Storage;

impl Collector for Storage {
    fn name(&self) -> &'static str {
        "storage"
    }

    fn runs_at(&self, level: SyncLevel) -> bool {
        level.reads_resources()
    }

    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> BoxFuture<'a, Result<Counts, CollectError>> {
        Box::pin(async move {
            let listed = ctx
                .azure
                .storage_accounts(&ctx.current_token().await, &ctx.subscription.azure_id)
                .all()
                .await;
            let accounts = match first_listing(
                &ctx,
                EvidenceSource::Storage,
                "Microsoft.Storage/storageAccounts",
                listed,
                "the subscription has no storage accounts",
            )
            .await?
            {
                Listing::Items(a) => a,
                Listing::Recorded(counts) => return Ok(counts),
            };
            let observations: Vec<Observation> = accounts.iter().flat_map(judge).collect();
            record(&ctx, EvidenceSource::Storage, &observations).await
        })
    }
}

/// TLS versions from 1.2 up pass.
fn tls_ok(version: &str) -> bool {
    matches!(version, "TLS1_2" | "TLS1_3")
}

/// Every check of one account.
fn judge(a: &StorageAccount) -> Vec<Observation> {
    let f =
        |name: &str, value: serde_json::Value| field(name, value, &a.absent, STORAGE_API_VERSION);
    let id = a.id.as_str();
    vec![
        judged(
            CheckId::StorageAnonymousBlobAccess,
            id,
            f("allowBlobPublicAccess", json!(a.allow_blob_public_access)),
            !a.allow_blob_public_access,
            || "containers may allow anonymous reads (allowBlobPublicAccess is true)".into(),
        ),
        judged(
            CheckId::StoragePublicNetworkAccess,
            id,
            f("publicNetworkAccess", json!(a.public_network_access)),
            matches!(
                a.public_network_access.as_str(),
                "Disabled" | "SecuredByPerimeter"
            ),
            || {
                format!(
                    "public network access is {} (Disabled or SecuredByPerimeter passes)",
                    a.public_network_access
                )
            },
        ),
        judged(
            CheckId::StorageNetworkDefaultDeny,
            id,
            f("networkAcls.defaultAction", json!(a.network_default_action)),
            a.network_default_action == "Deny",
            || {
                format!(
                    "the network rules' default action is {}, not Deny",
                    a.network_default_action
                )
            },
        ),
        judged(
            CheckId::StorageHttpsOnly,
            id,
            f("supportsHttpsTrafficOnly", json!(a.https_only)),
            a.https_only,
            || "plain HTTP is accepted (supportsHttpsTrafficOnly is false)".into(),
        ),
        judged(
            CheckId::StorageMinimumTls,
            id,
            f("minimumTlsVersion", json!(a.minimum_tls_version)),
            tls_ok(&a.minimum_tls_version),
            || {
                format!(
                    "the minimum TLS version is {}, below TLS1_2",
                    a.minimum_tls_version
                )
            },
        ),
        judged(
            CheckId::StorageSharedKeyAccess,
            id,
            f("allowSharedKeyAccess", json!(a.allow_shared_key_access)),
            !a.allow_shared_key_access,
            || "requests may authorise with the account's shared keys".into(),
        ),
    ]
}
