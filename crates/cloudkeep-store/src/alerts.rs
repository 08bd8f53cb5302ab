//! Alerts and the webhooks that deliver them, built once for every area
//! (evidence staleness now, spend's budgets and anomalies later).
//!
//! **Invariant:** an alert fires once: at most one open or acknowledged
//! alert per kind and scope (a unique index), and each transition (opened,
//! acknowledged, resolved) is stored, audited and queued for delivery to
//! every enabled webhook in one transaction. A delivery is a row and a job
//! (kind `webhook`, whose `connection_id` column holds the delivery's id),
//! so a restart loses none; its body is fixed when queued, and each
//! attempt is logged.

use chrono::{DateTime, Utc};
use cloudkeep_domain::SecretString;
use cloudkeep_domain::crypto::KeyProvider;
use cloudkeep_domain::evidence::{AlertKind, AlertState, DeliveryState};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;
use uuid::Uuid;

use crate::audit::AuditEntry;
use crate::jobs::Job;
use crate::page::{Cursor, Page, PageRequest};
use crate::{AuditedTx, OrgScope, Result, Store, StoreError, parse, time, within};

/// The job kind of a webhook delivery.
pub const WEBHOOK_JOB: &str = "webhook";

/// Attempts a delivery gets before it is given up.
pub const DELIVERY_ATTEMPTS: i64 = 6;

/// What a new alert is about.
#[derive(Debug, Clone)]
pub struct NewAlert {
    pub kind: AlertKind,
    /// What it is about (`connection:{id}`).
    pub scope: String,
    pub title: String,
    /// The numbers behind it.
    pub figures: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub id: Uuid,
    pub kind: AlertKind,
    pub scope: String,
    pub state: AlertState,
    pub title: String,
    pub figures: Value,
    pub opened_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

/// Which alerts to list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub state: Option<AlertState>,
    pub kind: Option<AlertKind>,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub name: String,
    pub url: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub created_by: String,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryAttempt {
    pub attempt: i64,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: i64,
}

/// One event for one webhook, with its attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: Uuid,
    /// `alert.opened`, `alert.acknowledged`, `alert.resolved`, `webhook.test`.
    pub event: String,
    pub alert_id: Option<Uuid>,
    /// The body sent, as JSON text.
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub log: Vec<DeliveryAttempt>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Try again at this time.
    Retry(DateTime<Utc>),
    /// No more attempts.
    GiveUp,
}

const ALERT_COLUMNS: &str = "alert_id, kind, scope, state, title, figures, opened_at, acknowledged_at, acknowledged_by, resolved_at, updated_at";

fn alert(row: &AnyRow) -> Result<Alert> {
    let figures: String = row.try_get("figures")?;
    Ok(Alert {
        id: parse(row, "alert_id")?,
        kind: parse(row, "kind")?,
        scope: row.try_get("scope")?,
        state: parse(row, "state")?,
        title: row.try_get("title")?,
        figures: serde_json::from_str(&figures)
            .map_err(|e| StoreError::Corrupt(format!("alert figures: {e}")))?,
        opened_at: time(row.try_get("opened_at")?),
        acknowledged_at: row.try_get::<Option<i64>, _>("acknowledged_at")?.map(time),
        acknowledged_by: row.try_get("acknowledged_by")?,
        resolved_at: row.try_get::<Option<i64>, _>("resolved_at")?.map(time),
        updated_at: time(row.try_get("updated_at")?),
    })
}

const WEBHOOK_COLUMNS: &str = "webhook_id, name, url, enabled, created_at, created_by, deleted_at";

fn webhook(row: &AnyRow) -> Result<Webhook> {
    Ok(Webhook {
        id: parse(row, "webhook_id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        enabled: row.try_get::<i64, _>("enabled")? != 0,
        created_at: time(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        deleted_at: row.try_get::<Option<i64>, _>("deleted_at")?.map(time),
    })
}

const DELIVERY_COLUMNS: &str = "delivery_id, webhook_id, event, alert_id, payload, state, attempts, created_at, next_attempt_at, \
     delivered_at, last_status, last_error";

fn status_of(v: Option<i64>) -> Option<u16> {
    v.and_then(|s| u16::try_from(s).ok())
}

fn delivery(row: &AnyRow) -> Result<Delivery> {
    Ok(Delivery {
        id: parse(row, "delivery_id")?,
        webhook_id: parse(row, "webhook_id")?,
        event: row.try_get("event")?,
        alert_id: row
            .try_get::<Option<String>, _>("alert_id")?
            .map(|a| a.parse())
            .transpose()
            .map_err(|_| StoreError::Corrupt("delivery alert id".into()))?,
        payload: row.try_get("payload")?,
        state: parse(row, "state")?,
        attempts: row.try_get("attempts")?,
        created_at: time(row.try_get("created_at")?),
        next_attempt_at: row.try_get::<Option<i64>, _>("next_attempt_at")?.map(time),
        delivered_at: row.try_get::<Option<i64>, _>("delivered_at")?.map(time),
        last_status: status_of(row.try_get("last_status")?),
        last_error: row.try_get("last_error")?,
        log: Vec::new(),
    })
}

/// The body an alert's transition is delivered with.
fn alert_payload(delivery: Uuid, event: &str, org: &str, a: &Alert, at: DateTime<Utc>) -> String {
    json!({
        "id": delivery,
        "event": event,
        "created_at": at,
        "organisation_id": org,
        "alert": {
            "id": a.id, "kind": a.kind, "scope": a.scope, "state": a.state, "title": a.title,
            "figures": a.figures, "opened_at": a.opened_at, "acknowledged_at": a.acknowledged_at,
            "acknowledged_by": a.acknowledged_by, "resolved_at": a.resolved_at,
        },
    })
    .to_string()
}

/// A webhook's name: 1 to 200 characters.
fn webhook_name(raw: &str) -> Result<String> {
    let name = raw.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(StoreError::Invalid(
            "a webhook name is 1 to 200 characters".into(),
        ));
    }
    Ok(name.to_string())
}

impl Store {
    /// Opens an alert, unless one of its kind and scope is open or
    /// acknowledged already (it fires once): answers the new alert, or
    /// `None`. Audited (`alert.opened`) and queued for every webhook.
    pub async fn open_alert(
        &self,
        scope: &OrgScope,
        new: NewAlert,
        actor: &str,
    ) -> Result<Option<Alert>> {
        let now = self.now_ms();
        // The audit lock first: opens of one organisation take turns, so the
        // check below holds until the insert.
        let mut tx = self.begin_audited(scope).await?;
        let (opened, entry) = within(async {
            let active = sqlx::query(
                "SELECT alert_id FROM alerts WHERE org_id = $1 AND kind = $2 AND scope = $3 AND state <> 'resolved'",
            )
            .bind(scope.id())
            .bind(new.kind.as_str())
            .bind(&new.scope)
            .fetch_optional(&mut **tx)
            .await?;
            if active.is_some() {
                return Ok((None, None));
            }
            let id = Uuid::new_v4();
            sqlx::query(
                "INSERT INTO alerts (org_id, alert_id, kind, scope, state, title, figures, opened_at, updated_at) \
                 VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $7)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(new.kind.as_str())
            .bind(&new.scope)
            .bind(&new.title)
            .bind(new.figures.to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            let a = fetch_alert(&mut tx, scope, id).await?;
            self.queue_deliveries(&mut tx, scope, "alert.opened", &a).await?;
            let entry = AuditEntry::new(
                actor,
                "alert.opened",
                format!("alert:{id}"),
                json!({"kind": a.kind, "scope": a.scope, "title": a.title, "figures": a.figures}),
            );
            Ok((Some(a), Some(entry)))
        })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        Ok(opened)
    }

    /// Resolves the open (or acknowledged) alert of a kind and scope, if
    /// any: answers it. Audited (`alert.resolved`) and queued.
    pub async fn resolve_alert(
        &self,
        scope: &OrgScope,
        kind: AlertKind,
        alert_scope: &str,
        figures: Value,
        actor: &str,
    ) -> Result<Option<Alert>> {
        let now = self.now_ms();
        let mut tx = self.begin_audited(scope).await?;
        let (resolved, entry) = within(async {
            let Some(row) = sqlx::query(
                "SELECT alert_id FROM alerts WHERE org_id = $1 AND kind = $2 AND scope = $3 AND state <> 'resolved'",
            )
            .bind(scope.id())
            .bind(kind.as_str())
            .bind(alert_scope)
            .fetch_optional(&mut **tx)
            .await?
            else {
                return Ok((None, None));
            };
            let id: Uuid = parse(&row, "alert_id")?;
            sqlx::query(
                "UPDATE alerts SET state = 'resolved', resolved_at = $3, updated_at = $3, figures = $4 WHERE org_id = $1 AND alert_id = $2",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(now)
            .bind(figures.to_string())
            .execute(&mut **tx)
            .await?;
            let a = fetch_alert(&mut tx, scope, id).await?;
            self.queue_deliveries(&mut tx, scope, "alert.resolved", &a).await?;
            let entry = AuditEntry::new(
                actor,
                "alert.resolved",
                format!("alert:{id}"),
                json!({"kind": a.kind, "scope": a.scope, "figures": a.figures}),
            );
            Ok((Some(a), Some(entry)))
        })
        .await?;
        if let Some(entry) = entry {
            self.record(&mut tx, scope, &entry).await?;
        }
        tx.commit_recorded().await?;
        Ok(resolved)
    }

    /// Acknowledges an open alert (audited, `alert.acknowledged`, and
    /// queued). One already acknowledged is answered as it is; a resolved
    /// one cannot be acknowledged.
    pub async fn acknowledge_alert(
        &self,
        scope: &OrgScope,
        id: Uuid,
        actor: &str,
    ) -> Result<Alert> {
        let current = self.alert(scope, id).await?;
        match current.state {
            AlertState::Acknowledged => return Ok(current),
            AlertState::Resolved => {
                return Err(StoreError::Invalid(
                    "the alert is resolved: its cause cleared, so there is nothing to acknowledge"
                        .into(),
                ));
            }
            AlertState::Open => {}
        }
        let now = self.now_ms();
        let entry = AuditEntry::new(
            actor,
            "alert.acknowledged",
            format!("alert:{id}"),
            json!({"kind": current.kind, "scope": current.scope}),
        );
        let mut tx = self.audited(scope, entry).await?;
        let a = within(async {
            let done = sqlx::query(
                "UPDATE alerts SET state = 'acknowledged', acknowledged_at = $3, acknowledged_by = $4, updated_at = $3 \
                 WHERE org_id = $1 AND alert_id = $2 AND state = 'open'",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(now)
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            if done.rows_affected() == 0 {
                return Err(StoreError::Invalid(
                    "the alert changed meanwhile (it was resolved or acknowledged): read it again".into(),
                ));
            }
            let a = fetch_alert(&mut tx, scope, id).await?;
            self.queue_deliveries(&mut tx, scope, "alert.acknowledged", &a)
                .await?;
            Ok(a)
        })
        .await?;
        tx.commit().await?;
        Ok(a)
    }

    /// The open and acknowledged alerts of a kind (a read: `open_alert` and
    /// `resolve_alert` decide again under the lock).
    pub async fn active_alerts(&self, scope: &OrgScope, kind: AlertKind) -> Result<Vec<Alert>> {
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = $1 AND kind = $2 AND state <> 'resolved' ORDER BY opened_at, alert_id"
        ))
        .bind(scope.id())
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alert).collect()
    }

    pub async fn alert(&self, scope: &OrgScope, id: Uuid) -> Result<Alert> {
        let row = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = $1 AND alert_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "alert" })?;
        alert(&row)
    }

    /// Alerts, newest first, filtered and paged in SQL.
    pub async fn alerts(
        &self,
        scope: &OrgScope,
        filter: &AlertFilter,
        page: &PageRequest,
    ) -> Result<Page<Alert>> {
        let (before_ms, after_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = $1 AND ($2 = '' OR state = $2) AND ($3 = '' OR kind = $3) \
             AND ($4 = '' OR scope = $4) AND (opened_at < $5 OR (opened_at = $5 AND alert_id > $6)) \
             ORDER BY opened_at DESC, alert_id LIMIT $7"
        ))
        .bind(scope.id())
        .bind(filter.state.map(|s| s.as_str()).unwrap_or(""))
        .bind(filter.kind.map(|k| k.as_str()).unwrap_or(""))
        .bind(filter.scope.clone().unwrap_or_default())
        .bind(before_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(alert).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |a| {
            Cursor::of(&[
                &a.opened_at.timestamp_millis().to_string(),
                &a.id.to_string(),
            ])
        }))
    }

    /// Queues `event` about `a` for every enabled webhook, in the caller's
    /// transaction.
    async fn queue_deliveries(
        &self,
        tx: &mut AuditedTx,
        scope: &OrgScope,
        event: &str,
        a: &Alert,
    ) -> Result<()> {
        let hooks = sqlx::query(
            "SELECT webhook_id FROM webhooks WHERE org_id = $1 AND enabled = 1 AND deleted_at IS NULL ORDER BY created_at, webhook_id",
        )
        .bind(scope.id())
        .fetch_all(&mut ***tx)
        .await?;
        for h in hooks {
            let hook: Uuid = parse(&h, "webhook_id")?;
            let id = Uuid::new_v4();
            let payload = alert_payload(id, event, &scope.id(), a, self.now());
            queue_delivery(tx, self, scope, id, hook, event, Some(a.id), &payload).await?;
        }
        Ok(())
    }

    /// Adds a webhook with a new signing secret (sealed with the
    /// organisation's data key); answers it and the secret, shown this once.
    /// The caller checks the URL first (`cloudkeep_sync::webhooks`).
    pub async fn create_webhook(
        &self,
        scope: &OrgScope,
        provider: &dyn KeyProvider,
        name: &str,
        url: &str,
        actor: &str,
    ) -> Result<(Webhook, SecretString)> {
        let name = webhook_name(name)?;
        let id = Uuid::new_v4();
        let secret = cloudkeep_domain::password::random_token("whsec_");
        let sealed = self
            .seal_webhook_secret(scope, provider, id, &secret)
            .await?;
        let entry = AuditEntry::new(
            actor,
            "webhook.created",
            format!("webhook:{id}"),
            json!({"name": name, "url": url}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            sqlx::query(
                "INSERT INTO webhooks (org_id, webhook_id, name, url, secret, data_key_version, enabled, created_at, created_by) \
                 VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(&name)
            .bind(url)
            .bind(sealed.blob)
            .bind(sealed.data_key_version)
            .bind(self.now_ms())
            .bind(actor)
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok((self.webhook(scope, id).await?, secret))
    }

    pub async fn webhook(&self, scope: &OrgScope, id: Uuid) -> Result<Webhook> {
        let row = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 AND webhook_id = $2 AND deleted_at IS NULL"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "webhook" })?;
        webhook(&row)
    }

    /// The organisation's webhooks (not deleted), oldest first.
    pub async fn webhooks(&self, scope: &OrgScope, page: &PageRequest) -> Result<Page<Webhook>> {
        let (after_ms, after_id) = page.time_and_id(i64::MIN)?;
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE org_id = $1 AND deleted_at IS NULL \
             AND (created_at > $2 OR (created_at = $2 AND webhook_id > $3)) ORDER BY created_at, webhook_id LIMIT $4"
        ))
        .bind(scope.id())
        .bind(after_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let items = rows.iter().map(webhook).collect::<Result<Vec<_>>>()?;
        Ok(Page::from_rows(items, page, |w| {
            Cursor::of(&[
                &w.created_at.timestamp_millis().to_string(),
                &w.id.to_string(),
            ])
        }))
    }

    /// Renames a webhook, points it elsewhere (the caller checks the URL),
    /// or turns it off or on; audited (`webhook.updated`).
    pub async fn update_webhook(
        &self,
        scope: &OrgScope,
        id: Uuid,
        name: Option<&str>,
        url: Option<&str>,
        enabled: Option<bool>,
        actor: &str,
    ) -> Result<Webhook> {
        let name = name.map(webhook_name).transpose()?;
        let entry = AuditEntry::new(
            actor,
            "webhook.updated",
            format!("webhook:{id}"),
            json!({"name": name, "url": url, "enabled": enabled}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE webhooks SET name = COALESCE($3, name), url = COALESCE($4, url), enabled = COALESCE($5, enabled) \
                 WHERE org_id = $1 AND webhook_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(name.as_deref())
            .bind(url)
            .bind(enabled.map(i64::from))
            .execute(&mut **tx)
            .await?;
            crate::access::found(done.rows_affected(), "webhook")
        })
        .await?;
        tx.commit().await?;
        self.webhook(scope, id).await
    }

    /// Deletes a webhook: its secret is destroyed, its deliveries still
    /// pending fail, its delivery log stays. Audited (`webhook.deleted`).
    pub async fn delete_webhook(&self, scope: &OrgScope, id: Uuid, actor: &str) -> Result<()> {
        let now = self.now_ms();
        let entry = AuditEntry::new(actor, "webhook.deleted", format!("webhook:{id}"), json!({}));
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            let done = sqlx::query(
                "UPDATE webhooks SET deleted_at = $3, enabled = 0, secret = $4 WHERE org_id = $1 AND webhook_id = $2 AND deleted_at IS NULL",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .bind(now)
            .bind(Vec::<u8>::new())
            .execute(&mut **tx)
            .await?;
            crate::access::found(done.rows_affected(), "webhook")?;
            sqlx::query(
                "UPDATE webhook_deliveries SET state = 'failed', next_attempt_at = NULL, last_error = 'the webhook was deleted' \
                 WHERE org_id = $1 AND webhook_id = $2 AND state = 'pending'",
            )
            .bind(scope.id())
            .bind(id.to_string())
            .execute(&mut **tx)
            .await?;
            Ok(())
        })
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Queues a `webhook.test` delivery to a webhook; audited
    /// (`webhook.test_queued`). Answers the delivery.
    pub async fn queue_test_delivery(
        &self,
        scope: &OrgScope,
        id: Uuid,
        actor: &str,
    ) -> Result<Delivery> {
        let hook = self.webhook(scope, id).await?;
        let delivery = Uuid::new_v4();
        let payload = json!({
            "id": delivery, "event": "webhook.test", "created_at": self.now(),
            "organisation_id": scope.id(), "webhook": {"id": hook.id, "name": hook.name},
        })
        .to_string();
        let entry = AuditEntry::new(
            actor,
            "webhook.test_queued",
            format!("webhook:{id}"),
            json!({"delivery": delivery}),
        );
        let mut tx = self.audited(scope, entry).await?;
        within(async {
            queue_delivery(
                &mut tx,
                self,
                scope,
                delivery,
                id,
                "webhook.test",
                None,
                &payload,
            )
            .await
        })
        .await?;
        tx.commit().await?;
        self.delivery(scope, delivery).await
    }

    /// One delivery with its attempts.
    pub async fn delivery(&self, scope: &OrgScope, id: Uuid) -> Result<Delivery> {
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND delivery_id = $2"
        ))
        .bind(scope.id())
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound { what: "delivery" })?;
        let mut d = delivery(&row)?;
        d.log = self.attempts(scope, id).await?;
        Ok(d)
    }

    async fn attempts(&self, scope: &OrgScope, delivery: Uuid) -> Result<Vec<DeliveryAttempt>> {
        let rows = sqlx::query(
            "SELECT attempt, at, status, error, duration_ms FROM webhook_attempts WHERE org_id = $1 AND delivery_id = $2 ORDER BY attempt",
        )
        .bind(scope.id())
        .bind(delivery.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryAttempt {
                    attempt: r.try_get("attempt")?,
                    at: time(r.try_get("at")?),
                    status: status_of(r.try_get("status")?),
                    error: r.try_get("error")?,
                    duration_ms: r.try_get("duration_ms")?,
                })
            })
            .collect()
    }

    /// A webhook's delivery log, newest first, each with its attempts.
    pub async fn deliveries(
        &self,
        scope: &OrgScope,
        webhook: Uuid,
        page: &PageRequest,
    ) -> Result<Page<Delivery>> {
        // Deleted webhooks keep their log, but are not found by id here.
        self.webhook(scope, webhook).await?;
        let (before_ms, after_id) = page.time_and_id(i64::MAX)?;
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE org_id = $1 AND webhook_id = $2 \
             AND (created_at < $3 OR (created_at = $3 AND delivery_id > $4)) ORDER BY created_at DESC, delivery_id LIMIT $5"
        ))
        .bind(scope.id())
        .bind(webhook.to_string())
        .bind(before_ms)
        .bind(after_id)
        .bind(page.fetch())
        .fetch_all(&self.pool)
        .await?;
        let mut items = rows.iter().map(delivery).collect::<Result<Vec<_>>>()?;
        for d in &mut items {
            d.log = self.attempts(scope, d.id).await?;
        }
        Ok(Page::from_rows(items, page, |d| {
            Cursor::of(&[
                &d.created_at.timestamp_millis().to_string(),
                &d.id.to_string(),
            ])
        }))
    }

    /// The delivery a `webhook` job carries, and its webhook (`None` when
    /// the webhook was deleted since).
    pub async fn delivery_of_job(
        &self,
        scope: &OrgScope,
        job: &Job,
    ) -> Result<(Delivery, Option<Webhook>)> {
        let d = self.delivery(scope, job.connection_id.as_uuid()).await?;
        let hook = match self.webhook(scope, d.webhook_id).await {
            Ok(h) => Some(h),
            Err(StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e),
        };
        Ok((d, hook))
    }

    /// Logs an attempt at a delivery and settles it: delivered, to be
    /// retried at a time (the job's `run_at`, set by the caller's
    /// `fail_job`), or failed.
    pub async fn record_delivery_attempt(
        &self,
        scope: &OrgScope,
        delivery: Uuid,
        attempt: &DeliveryAttempt,
        outcome: &AttemptOutcome,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO webhook_attempts (org_id, delivery_id, attempt, at, status, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (org_id, delivery_id, attempt) DO NOTHING",
        )
        .bind(scope.id())
        .bind(delivery.to_string())
        .bind(attempt.attempt)
        .bind(attempt.at.timestamp_millis())
        .bind(attempt.status.map(i64::from))
        .bind(attempt.error.as_deref())
        .bind(attempt.duration_ms)
        .execute(&mut *tx)
        .await?;
        let (state, next, delivered) = match outcome {
            AttemptOutcome::Delivered => (
                DeliveryState::Delivered,
                None,
                Some(attempt.at.timestamp_millis()),
            ),
            AttemptOutcome::Retry(at) => {
                (DeliveryState::Pending, Some(at.timestamp_millis()), None)
            }
            AttemptOutcome::GiveUp => (DeliveryState::Failed, None, None),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET state = $3, attempts = $4, next_attempt_at = $5, delivered_at = $6, last_status = $7, last_error = $8 \
             WHERE org_id = $1 AND delivery_id = $2",
        )
        .bind(scope.id())
        .bind(delivery.to_string())
        .bind(state.as_str())
        .bind(attempt.attempt)
        .bind(next)
        .bind(delivered)
        .bind(attempt.status.map(i64::from))
        .bind(attempt.error.as_deref())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

async fn fetch_alert(tx: &mut AuditedTx, scope: &OrgScope, id: Uuid) -> Result<Alert> {
    let row = sqlx::query(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE org_id = $1 AND alert_id = $2"
    ))
    .bind(scope.id())
    .bind(id.to_string())
    .fetch_one(&mut ***tx)
    .await?;
    alert(&row)
}

/// A delivery row and its job, due now.
#[allow(clippy::too_many_arguments)]
async fn queue_delivery(
    tx: &mut AuditedTx,
    store: &Store,
    scope: &OrgScope,
    id: Uuid,
    webhook: Uuid,
    event: &str,
    alert: Option<Uuid>,
    payload: &str,
) -> Result<()> {
    let now = store.now_ms();
    sqlx::query(
        "INSERT INTO webhook_deliveries (org_id, delivery_id, webhook_id, event, alert_id, payload, state, attempts, created_at, next_attempt_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)",
    )
    .bind(scope.id())
    .bind(id.to_string())
    .bind(webhook.to_string())
    .bind(event)
    .bind(alert.map(|a| a.to_string()))
    .bind(payload)
    .bind(now)
    .execute(&mut ***tx)
    .await?;
    sqlx::query(
        "INSERT INTO jobs (org_id, job_id, kind, connection_id, status, run_at, created_at) VALUES ($1, $2, $3, $4, 'queued', $5, $5)",
    )
    .bind(scope.id())
    .bind(Uuid::new_v4().to_string())
    .bind(WEBHOOK_JOB)
    .bind(id.to_string())
    .bind(now)
    .execute(&mut ***tx)
    .await?;
    Ok(())
}
