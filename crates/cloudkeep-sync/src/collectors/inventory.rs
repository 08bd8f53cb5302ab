//! Inventory and tags: every resource of a subscription, with its tags when
//! the sync level reads them.

use cloudkeep_domain::SyncLevel;
use cloudkeep_store::ObservedResource;
use futures_util::future::BoxFuture;
use serde_json::{Value, json};

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
    ) -> BoxFuture<'a, Result<Value, CollectError>> {
        Box::pin(async move {
            let listed = ctx
                .azure
                .resources(ctx.token, &ctx.subscription.azure_id)
                .await?;
            let tags_read = ctx.subscription.sync_level.reads_tags();
            let observed: Vec<ObservedResource> = listed
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
                .collect();
            let counts = ctx
                .store
                .record_inventory(
                    ctx.scope,
                    ctx.subscription,
                    ctx.run.id,
                    &observed,
                    tags_read,
                )
                .await?;
            Ok(
                json!({ "seen": counts.seen, "added": counts.added, "deleted": counts.deleted, "tag_changes": counts.tag_changes }),
            )
        })
    }
}
