//! Inventory and tags: every resource of a subscription, with its tags when
//! the sync level reads them.

use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::report::Counts;
use cloudkeep_store::{InventoryWrite, ObservedResource, ScopeTags, StoreError};
use futures_util::future::BoxFuture;

use crate::{CollectContext, CollectError, Collector};

pub struct Inventory;

impl Collector for Inventory {
    fn name(&self) -> &'static str {
        "inventory"
    }

    fn runs_at(&self, level: SyncLevel) -> bool {
        level.reads_resources()
    }

    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> BoxFuture<'a, Result<Counts, CollectError>> {
        Box::pin(async move {
            let tags_read = ctx.subscription.sync_level.reads_tags();
            // The subscription's and its groups' tags are read beside the
            // listing and written with it: one turn at the store's writer
            // per subscription, not two.
            let (observed, scope_tags) =
                tokio::join!(list(&ctx, tags_read), read_scope_tags(&ctx, tags_read));
            let observed = observed?;
            let write = InventoryWrite {
                tags_read,
                deletions_confirmed: false,
                scope_tags: scope_tags.as_ref(),
            };
            let counts = match ctx
                .store
                .record_inventory(ctx.scope, ctx.subscription, ctx.run.id, &observed, write)
                .await
            {
                // Azure can answer a listing with nothing (an empty page with
                // a next link, then an empty page): read it again before
                // marking most of the subscription deleted. The second
                // reading is applied either way: if it agrees, the
                // resources are gone; if not, it is the sound one.
                Err(StoreError::MassDeletion { would_delete, live }) => {
                    tracing::warn!(
                        subscription = %ctx.subscription.azure_id, would_delete, live,
                        "a listing would delete most of the subscription; reading it again"
                    );
                    let again = list(&ctx, tags_read).await?;
                    let confirmed = InventoryWrite {
                        deletions_confirmed: true,
                        ..write
                    };
                    let mut counts = ctx
                        .store
                        .record_inventory(
                            ctx.scope,
                            ctx.subscription,
                            ctx.run.id,
                            &again,
                            confirmed,
                        )
                        .await?;
                    counts.relisted = 1;
                    counts
                }
                other => other?,
            };
            Ok(Counts::from(counts))
        })
    }
}

/// The tags of the subscription and its resource groups, where a missing
/// resource tag's suggested value comes from (tag coverage): read only when
/// the level reads tags. A failed read is logged and answers `None`, which
/// keeps what was stored: the resources are still recorded, and a
/// suggestion one sync old is still a suggestion.
async fn read_scope_tags(ctx: &CollectContext<'_>, tags_read: bool) -> Option<ScopeTags> {
    if !tags_read {
        return None;
    }
    let sub = &ctx.subscription.azure_id;
    let read = async {
        let groups = ctx
            .azure
            .resource_groups(&ctx.current_token().await, sub)
            .await?;
        let own = ctx
            .azure
            .subscription_tags(&ctx.current_token().await, sub)
            .await?;
        Ok::<_, cloudkeep_azure::AzureError>(ScopeTags {
            subscription: own,
            resource_groups: groups.into_iter().map(|g| (g.name, g.tags)).collect(),
        })
    };
    match read.await {
        Ok(tags) => Some(tags),
        Err(error) => {
            tracing::warn!(subscription = %sub, %error, "resource group and subscription tags not read; keeping the stored ones");
            None
        }
    }
}

/// The subscription's resources as Azure lists them now.
async fn list(
    ctx: &CollectContext<'_>,
    tags_read: bool,
) -> Result<Vec<ObservedResource>, CollectError> {
    let listed = ctx
        .azure
        .resources(&ctx.current_token().await, &ctx.subscription.azure_id)
        .await?;
    Ok(listed
        .into_iter()
        .map(|r| ObservedResource {
            arm_id: r.id,
            name: r.name,
            resource_type: r.resource_type,
            location: r.location,
            resource_group: r.resource_group,
            // Below "read tags", tags never leave this function.
            tags: if tags_read {
                r.tags
            } else {
                Default::default()
            },
            created: r.created,
            changed: r.changed,
        })
        .collect())
}
