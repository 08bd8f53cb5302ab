//! What the evidence collectors (`rbac`, `defender`, `storage`,
//! `keyvault`) share: turning a refused read into "not collected (needs
//! the role)" evidence instead of a failure, the facts of one ARM field
//! (with whether Azure left it out), and recording a subscription's
//! observations; and what happens to evidence after a run and at every
//! scheduler pass: staleness alerts and the controls' daily history.

use cloudkeep_azure::AzureError;
use cloudkeep_domain::evidence::{AlertKind, CheckId, EvidenceResult, EvidenceSource};
use cloudkeep_domain::report::Counts;
use cloudkeep_domain::{ConnectionId, RunStatus};
use cloudkeep_store::{NewAlert, Observation, OrgScope, Store, StoreError, SyncHealth, SyncRun};
use serde_json::{Value, json};

use crate::{CollectContext, CollectError};

/// Why a read was not made or was refused: what it needs and what Azure
/// (or the permission check) said. Stable from one sync to the next, so an
/// unchanged refusal extends its evidence rather than adding rows.
#[derive(Debug, Clone)]
pub(crate) struct NotCollected {
    /// The role (or API) it needs.
    needs: String,
    /// What was read.
    read: &'static str,
    /// Azure's error code, or why no call was made.
    said: String,
    /// Whether the connection's permission check already knew the role was missing.
    known_missing: bool,
}

impl NotCollected {
    /// A read Azure refused (403), or another error (returned as is).
    pub(crate) fn from_error(
        ctx: &CollectContext<'_>,
        source: EvidenceSource,
        read: &'static str,
        e: AzureError,
    ) -> Result<NotCollected, CollectError> {
        match e {
            AzureError::Forbidden { code, .. } => Ok(Self::refused(ctx, source, read, &code)),
            other => Err(other.into()),
        }
    }

    fn refused(
        ctx: &CollectContext<'_>,
        source: EvidenceSource,
        read: &'static str,
        code: &str,
    ) -> NotCollected {
        let needs = CheckId::of(source)
            .next()
            .map(|c| c.needs())
            .unwrap_or_default();
        let present = &ctx.subscription.permissions.roles_present;
        NotCollected {
            needs: needs
                .first()
                .map(|r| r.as_str().to_string())
                .unwrap_or_else(|| "Reader".into()),
            read,
            said: if code.is_empty() {
                "AuthorizationFailed".into()
            } else {
                code.to_string()
            },
            known_missing: !needs.iter().any(|r| present.contains(r)),
        }
    }

    /// Something cloudkeep does not ask for at all (Microsoft Graph).
    pub(crate) fn never_asked(needs: &str, read: &'static str, why: &str) -> NotCollected {
        NotCollected {
            needs: needs.into(),
            read,
            said: why.into(),
            known_missing: false,
        }
    }

    fn reason(&self) -> String {
        let known = if self.known_missing {
            format!(
                "; the connection's permission check found no role that grants it ({} is the least)",
                self.needs
            )
        } else {
            String::new()
        };
        format!(
            "not collected (needs {}): reading {} was refused: {}{known}",
            self.needs, self.read, self.said
        )
    }

    /// The evidence of `check` about `subject`: not collected, and why.
    pub(crate) fn observation(&self, check: CheckId, subject: &str) -> Observation {
        Observation {
            check,
            subject: subject.to_string(),
            facts: json!({"needs": self.needs, "read": self.read, "refused": self.said}),
            result: EvidenceResult::NotCollected,
            reason: Some(self.reason()),
        }
    }
}

/// What a collector answers when its first read is refused: every one of
/// its checks not collected, about the subscription. Another error is
/// answered as it is.
pub(crate) fn all_refused(
    ctx: &CollectContext<'_>,
    source: EvidenceSource,
    read: &'static str,
    e: AzureError,
) -> Result<Vec<Observation>, CollectError> {
    let refused = NotCollected::from_error(ctx, source, read, e)?;
    let subject = subscription_subject(ctx);
    Ok(CheckId::of(source)
        .map(|c| refused.observation(c, &subject))
        .collect())
}

/// A collector's first listing (storage accounts, vaults): its items, or
/// what was recorded instead when there are none to judge (each check not
/// applicable) or Azure refused the read (each check not collected).
pub(crate) enum Listing<T> {
    Items(Vec<T>),
    Recorded(Counts),
}

pub(crate) async fn first_listing<T>(
    ctx: &CollectContext<'_>,
    source: EvidenceSource,
    read: &'static str,
    listed: Result<Vec<T>, AzureError>,
    none: &str,
) -> Result<Listing<T>, CollectError> {
    let instead = match listed {
        Ok(items) if !items.is_empty() => return Ok(Listing::Items(items)),
        Ok(_) => nothing_to_judge(CheckId::of(source), &subscription_subject(ctx), none),
        Err(e) => all_refused(ctx, source, read, e)?,
    };
    Ok(Listing::Recorded(record(ctx, source, &instead).await?))
}

/// The subscription's ARM id, the subject of its own checks.
pub(crate) fn subscription_subject(ctx: &CollectContext<'_>) -> String {
    format!("/subscriptions/{}", ctx.subscription.azure_id)
}

/// Facts of one ARM field: its value as judged and whether Azure left it
/// out (then the value is the default documented for `api_version`).
pub(crate) fn field(name: &str, value: Value, absent: &[&str], api_version: &str) -> Value {
    if absent.contains(&name) {
        json!({"field": name, "value": value, "absent": true, "default_of_api_version": api_version})
    } else {
        json!({"field": name, "value": value, "absent": false})
    }
}

/// A pass or a fail, with the reason for a fail.
pub(crate) fn judged(
    check: CheckId,
    subject: &str,
    facts: Value,
    pass: bool,
    fail_reason: impl FnOnce() -> String,
) -> Observation {
    Observation {
        check,
        subject: subject.to_string(),
        facts,
        result: if pass {
            EvidenceResult::Pass
        } else {
            EvidenceResult::Fail
        },
        reason: (!pass).then(fail_reason),
    }
}

/// Nothing to judge: `checks` are not applicable to `subject`, and why.
pub(crate) fn nothing_to_judge(
    checks: impl IntoIterator<Item = CheckId>,
    subject: &str,
    why: &str,
) -> Vec<Observation> {
    checks
        .into_iter()
        .map(|check| Observation {
            check,
            subject: subject.to_string(),
            facts: json!({"none": why}),
            result: EvidenceResult::NotApplicable,
            reason: Some(why.to_string()),
        })
        .collect()
}

/// Records a collector's observations of the subscription; answers its counts.
pub(crate) async fn record(
    ctx: &CollectContext<'_>,
    source: EvidenceSource,
    observations: &[Observation],
) -> Result<Counts, CollectError> {
    let counts = ctx
        .store
        .record_evidence(
            ctx.scope,
            ctx.subscription,
            ctx.run.id,
            ctx.run.started_at,
            source,
            observations,
        )
        .await?;
    Ok(Counts::from(counts))
}

/// The scope of a connection's staleness alert.
fn alert_scope(connection: ConnectionId) -> String {
    format!("connection:{connection}")
}

fn figures(h: &SyncHealth) -> Value {
    json!({
        "connection_id": h.connection_id, "connection": h.name,
        "last_successful_sync": h.last_success, "stale_after_hours": h.stale_after_secs / 3600,
        "stale_since": h.stale_from(),
    })
}

/// What one review of an organisation's evidence changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Review {
    pub alerts_opened: u64,
    pub alerts_resolved: u64,
    pub history_written: bool,
}

/// Looks at an organisation's evidence now: opens an `evidence_stale`
/// alert for each connection past its stale threshold (once: an open one
/// stays), resolves the alerts of connections that synced since (or were
/// revoked), and
/// writes the controls' daily history when something changed or today has
/// none yet. The scheduler calls it at every pass; a finished run calls it
/// too (`after_sync`).
pub async fn review(store: &Store, scope: &OrgScope, actor: &str) -> Result<Review, StoreError> {
    let now = store.now();
    let mut out = Review::default();
    let mut active: Vec<String> = store
        .active_alerts(scope, AlertKind::EvidenceStale)
        .await?
        .into_iter()
        .map(|a| a.scope)
        .collect();
    for h in store.sync_health(scope).await? {
        let key = alert_scope(h.connection_id);
        let was = active
            .iter()
            .position(|a| *a == key)
            .map(|i| active.remove(i));
        let stale = h.is_stale(now);
        if stale == was.is_some() {
            continue; // as it should be: nothing to write
        }
        if stale {
            let new = NewAlert {
                kind: AlertKind::EvidenceStale,
                scope: key,
                title: format!(
                    "Evidence of connection '{}' is stale: no successful sync for more than {} hours",
                    h.name,
                    h.stale_after_secs / 3600
                ),
                figures: figures(&h),
            };
            if store.open_alert(scope, new, actor).await?.is_some() {
                out.alerts_opened += 1;
            }
        } else if store
            .resolve_alert(scope, AlertKind::EvidenceStale, &key, figures(&h), actor)
            .await?
            .is_some()
        {
            out.alerts_resolved += 1;
        }
    }
    // Alerts of connections no longer live (revoked): their cause is gone.
    for key in active {
        let figures = json!({"connection": key, "resolved_because": "the connection was revoked"});
        if store
            .resolve_alert(scope, AlertKind::EvidenceStale, &key, figures, actor)
            .await?
            .is_some()
        {
            out.alerts_resolved += 1;
        }
    }
    let changed = out.alerts_opened + out.alerts_resolved > 0;
    if changed || !store.control_history_written(scope).await? {
        let coverage = store.coverage(scope).await?;
        store.record_control_history(scope, &coverage).await?;
        out.history_written = true;
    }
    Ok(out)
}

/// After a run that did some of its work: its connection's staleness
/// clears, and today's history takes the new evidence in. Failing here
/// does not fail the run (the scheduler's next pass reviews again).
pub async fn after_sync(store: &Store, scope: &OrgScope, run: &SyncRun, actor: &str) {
    if !matches!(run.status, RunStatus::Succeeded | RunStatus::Partial) {
        return;
    }
    let result = async {
        if !review(store, scope, actor).await?.history_written {
            let coverage = store.coverage(scope).await?;
            store.record_control_history(scope, &coverage).await?;
        }
        Ok::<(), StoreError>(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(run = %run.id, error = %e, "could not review the evidence after a run");
    }
}
