//! Writing pending tag edits back to Azure with a three-way merge per key:
//! the tags the edit was based on, the tags the user wants, and the tags
//! live in Azure now. A key changed in Azure since the edit was based on it
//! is a conflict, kept for the user, never overwritten.

use cloudkeep_azure::AzureError;
use cloudkeep_azure::write::TagWriter;
use cloudkeep_domain::TagEditState;
use cloudkeep_domain::report::Counts;
use cloudkeep_domain::tags::{Tags, get};
use cloudkeep_store::TagEdit;
use serde_json::json;

use crate::{CollectContext, CollectError};

/// What to do for one edit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Merge these, then delete these (each with its live value).
    Write { merge: Tags, delete: Tags },
    /// Keys changed in Azure since the edit's base: (key, base, live).
    Conflict(Vec<(String, Option<String>, Option<String>)>),
}

/// The three-way merge of one edit against the live tags.
pub fn plan(base: &Tags, live: &Tags, set: &Tags, remove: &[String]) -> Plan {
    let mut merge = Tags::new();
    let mut delete = Tags::new();
    let mut conflicts = Vec::new();
    for (k, v) in set {
        let (b, l) = (get(base, k), get(live, k));
        if l == Some(v) {
            continue; // already so (also after a crash between write and record)
        }
        if l == b {
            merge.insert(k.clone(), v.clone());
        } else {
            conflicts.push((k.clone(), b.cloned(), l.cloned()));
        }
    }
    for k in remove {
        let (b, l) = (get(base, k), get(live, k));
        match l {
            None => {}
            Some(lv) if l == b => {
                // Azure deletes by name and value; use the live spelling of the name.
                let name = live
                    .keys()
                    .find(|n| n.eq_ignore_ascii_case(k))
                    .cloned()
                    .unwrap_or_else(|| k.clone());
                delete.insert(name, lv.clone());
            }
            Some(_) => conflicts.push((k.clone(), b.cloned(), l.cloned())),
        }
    }
    if conflicts.is_empty() {
        Plan::Write { merge, delete }
    } else {
        Plan::Conflict(conflicts)
    }
}

fn confirmed(after: &Tags, set: &Tags, remove: &[String]) -> bool {
    set.iter().all(|(k, v)| get(after, k) == Some(v))
        && remove.iter().all(|k| get(after, k).is_none())
}

/// What a write-back did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBackCounts {
    pub pending: u64,
    pub applied: u64,
    pub conflicts: u64,
    pub failed: u64,
}

impl From<WriteBackCounts> for Counts {
    fn from(c: WriteBackCounts) -> Counts {
        Counts::new()
            .with("pending", c.pending)
            .with("applied", c.applied)
            .with("conflicts", c.conflicts)
            .with("failed", c.failed)
    }
}

/// Applies a subscription's pending edits; answers counts.
pub async fn apply(ctx: &CollectContext<'_>, actor: &str) -> Result<Counts, CollectError> {
    let edits = ctx
        .store
        .pending_tag_edits(ctx.scope, ctx.subscription.id)
        .await?;
    let mut counts = WriteBackCounts {
        pending: edits.len() as u64,
        ..Default::default()
    };
    let writer = TagWriter::new(&ctx.azure);
    for edit in &edits {
        // The token as it stands for each edit: a long write-back (many
        // edits, throttled) outlasts the token it started with.
        let token = ctx.current_token().await;
        match apply_one(ctx, &token, &writer, edit, actor).await? {
            Outcome::Applied => counts.applied += 1,
            Outcome::Conflict => counts.conflicts += 1,
            Outcome::Failed => counts.failed += 1,
        }
    }
    Ok(counts.into())
}

enum Outcome {
    Applied,
    Conflict,
    Failed,
}

async fn apply_one(
    ctx: &CollectContext<'_>,
    token: &cloudkeep_azure::AccessToken,
    writer: &TagWriter<'_>,
    edit: &TagEdit,
    actor: &str,
) -> Result<Outcome, CollectError> {
    let (resource, _) = ctx.store.resource(ctx.scope, edit.resource_id).await?;
    let arm_id = resource.arm_id.clone();
    let fail = |reason: String| {
        let arm_id = arm_id.clone();
        async move {
            ctx.store
                .settle_tag_edit(
                    ctx.scope,
                    edit.id,
                    TagEditState::Failed,
                    Some(&reason),
                    json!({"resource": arm_id}),
                    actor,
                )
                .await
                .map(|_| Outcome::Failed)
        }
    };
    if resource.deleted_at.is_some() {
        return Ok(fail("the resource was deleted in Azure".into()).await?);
    }
    let live = match ctx.azure.tags_at(token, &resource.arm_id).await {
        Ok(t) => t,
        Err(AzureError::NotFound { .. }) => {
            return Ok(fail("the resource no longer exists in Azure".into()).await?);
        }
        Err(e) => return Err(e.into()),
    };
    match plan(&edit.base, &live, &edit.set, &edit.remove) {
        Plan::Conflict(keys) => {
            let reason = keys
                .iter()
                .map(|(k, b, l)| {
                    format!(
                        "'{k}' was {} when edited and is {} in Azure now",
                        b.as_deref()
                            .map(|v| format!("'{v}'"))
                            .unwrap_or("absent".into()),
                        l.as_deref()
                            .map(|v| format!("'{v}'"))
                            .unwrap_or("absent".into())
                    )
                })
                .collect::<Vec<_>>()
                .join("; ");
            ctx.store
                .settle_tag_edit(
                    ctx.scope,
                    edit.id,
                    TagEditState::Conflict,
                    Some(&reason),
                    json!({"resource": resource.arm_id, "live": live}),
                    actor,
                )
                .await?;
            ctx.store
                .observe_tags(ctx.scope, resource.id, &live)
                .await?;
            Ok(Outcome::Conflict)
        }
        Plan::Write { merge, delete } => {
            // Each PATCH answers the tags Azure holds after it: the last
            // answer is the read-back, so no GET is spent on confirming.
            let mut written = Ok(None);
            if !merge.is_empty() {
                written = writer
                    .merge(token, &resource.arm_id, &merge)
                    .await
                    .map(Some);
            }
            if written.is_ok() && !delete.is_empty() {
                written = writer
                    .delete(token, &resource.arm_id, &delete)
                    .await
                    .map(Some);
            }
            let after = match written {
                // Nothing written: what Azure holds is what was just read.
                Ok(after) => after.unwrap_or(live),
                // Azure refused this edit (a policy, a rule): it is settled, the others go on.
                Err(AzureError::Service {
                    status,
                    code,
                    message,
                }) if (400..500).contains(&status) => {
                    let state = if code.contains("Policy") {
                        TagEditState::Rejected
                    } else {
                        TagEditState::Failed
                    };
                    ctx.store
                        .settle_tag_edit(
                            ctx.scope,
                            edit.id,
                            state,
                            Some(&format!("Azure refused the write ({code}): {message}")),
                            json!({"resource": resource.arm_id}),
                            actor,
                        )
                        .await?;
                    return Ok(Outcome::Failed);
                }
                Err(AzureError::Forbidden { code, message }) if code.contains("Policy") => {
                    let reason = format!("an Azure Policy refused the write ({code}): {message}");
                    ctx.store
                        .settle_tag_edit(
                            ctx.scope,
                            edit.id,
                            TagEditState::Rejected,
                            Some(&reason),
                            json!({"resource": resource.arm_id}),
                            actor,
                        )
                        .await?;
                    return Ok(Outcome::Failed);
                }
                // A missing permission, throttling, an outage: stop here; the
                // edit stays pending for the next run.
                Err(e) => return Err(e.into()),
            };
            ctx.store
                .observe_tags(ctx.scope, resource.id, &after)
                .await?;
            if confirmed(&after, &edit.set, &edit.remove) {
                ctx.store
                    .settle_tag_edit(
                        ctx.scope,
                        edit.id,
                        TagEditState::Applied,
                        None,
                        json!({"resource": resource.arm_id, "merged": merge, "deleted": delete}),
                        actor,
                    )
                    .await?;
                Ok(Outcome::Applied)
            } else {
                Ok(fail(format!(
                    "Azure holds {} after the write",
                    serde_json::to_string(&after).unwrap_or_default()
                ))
                .await?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(pairs: &[(&str, &str)]) -> Tags {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn three_way_merge_per_key() {
        let base = t(&[("env", "dev"), ("owner", "a"), ("old", "x")]);
        // Azure changed an unrelated key only: our keys are written, theirs kept.
        let live = t(&[
            ("env", "dev"),
            ("owner", "a"),
            ("old", "x"),
            ("portal", "yes"),
        ]);
        assert_eq!(
            plan(&base, &live, &t(&[("env", "prod")]), &["old".into()]),
            Plan::Write {
                merge: t(&[("env", "prod")]),
                delete: t(&[("old", "x")])
            }
        );
        // Azure changed a key we edit differently: conflict.
        let live = t(&[("env", "test"), ("owner", "a")]);
        assert!(
            matches!(plan(&base, &live, &t(&[("env", "prod")]), &[]), Plan::Conflict(k) if k[0].0 == "env")
        );
        // Azure already has what we want (e.g. a crash after the write): nothing to do.
        let live = t(&[("env", "prod"), ("owner", "a")]);
        assert_eq!(
            plan(&base, &live, &t(&[("env", "prod")]), &["old".into()]),
            Plan::Write {
                merge: Tags::new(),
                delete: Tags::new()
            }
        );
        // A removal of a key someone changed in Azure: conflict.
        let live = t(&[("owner", "b")]);
        assert!(matches!(
            plan(&base, &live, &Tags::new(), &["owner".into()]),
            Plan::Conflict(_)
        ));
        // Names compare case-insensitively.
        let live = t(&[("ENV", "dev")]);
        assert_eq!(
            plan(&base, &live, &t(&[("env", "prod")]), &[]),
            Plan::Write {
                merge: t(&[("env", "prod")]),
                delete: Tags::new()
            }
        );
    }
}
