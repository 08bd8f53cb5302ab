//! Evidence of Key Vault posture: each vault's deletion protection,
//! authorisation model and network exposure, each key's rotation policy
//! and expiry, each secret's expiry. Keys and secrets are read through ARM
//! (metadata only, never a secret's value), never the data plane, so a
//! private vault is judged like any other rather than failing to answer.
//! It lists resources, so it runs wherever the sync level reads them.

use cloudkeep_azure::{KEYVAULT_API_VERSION, KeyVault, VaultKey, VaultSecret};
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::evidence::{CheckId, EvidenceResult, EvidenceSource};
use cloudkeep_domain::report::Counts;
use cloudkeep_store::Observation;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::evidence::{
    Listing, NotCollected, field, first_listing, judged, nothing_to_judge, record,
};
use crate::{CollectContext, CollectError, Collector};

pub struct KeyVaults;

/// Vaults whose keys and secrets are listed at once.
const VAULTS_AT_ONCE: usize = 8;

const VAULT_CHECKS: [CheckId; 3] = [
    CheckId::KeyVaultDeletionProtection,
    CheckId::KeyVaultRbacAuthorization,
    CheckId::KeyVaultPublicNetworkAccess,
];
const KEY_CHECKS: [CheckId; 2] = [CheckId::KeyVaultKeyRotation, CheckId::KeyVaultKeyExpiry];

impl Collector for KeyVaults {
    fn name(&self) -> &'static str {
        "keyvault"
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
                .key_vaults(&ctx.current_token().await, &ctx.subscription.azure_id)
                .all()
                .await;
            let vaults = match first_listing(
                &ctx,
                EvidenceSource::KeyVault,
                "Microsoft.KeyVault/vaults",
                listed,
                "the subscription has no key vaults",
            )
            .await?
            {
                Listing::Items(v) => v,
                Listing::Recorded(counts) => return Ok(counts),
            };
            let total = vaults.len() as u64;
            let reads: Vec<_> = vaults.iter().map(|v| judge_vault(&ctx, v)).collect();
            let mut judged_vaults =
                futures_util::stream::iter(reads).buffer_unordered(VAULTS_AT_ONCE);
            let mut observations = Vec::new();
            let mut done = 0;
            while let Some(vault) = judged_vaults.next().await {
                observations.extend(vault?);
                done += 1;
                ctx.progress(done, total, "vaults");
            }
            record(&ctx, EvidenceSource::KeyVault, &observations).await
        })
    }
}

/// A vault's own checks, then its keys' and secrets'.
async fn judge_vault(
    ctx: &CollectContext<'_>,
    v: &KeyVault,
) -> Result<Vec<Observation>, CollectError> {
    let f =
        |name: &str, value: serde_json::Value| field(name, value, &v.absent, KEYVAULT_API_VERSION);
    let id = v.id.as_str();
    let mut out = vec![
        judged(
            VAULT_CHECKS[0],
            id,
            json!({
                "enableSoftDelete": f("enableSoftDelete", json!(v.soft_delete)),
                "enablePurgeProtection": f("enablePurgeProtection", json!(v.purge_protection)),
            }),
            v.soft_delete && v.purge_protection,
            || {
                match (v.soft_delete, v.purge_protection) {
                (false, _) => "soft delete is off: deleted keys and secrets are gone at once".into(),
                _ => "purge protection is off: a deleted vault or key can be purged before its retention ends".into(),
            }
            },
        ),
        judged(
            VAULT_CHECKS[1],
            id,
            f("enableRbacAuthorization", json!(v.rbac_authorization)),
            v.rbac_authorization,
            || "access is granted by access policies, not Azure RBAC".into(),
        ),
        judged(
            VAULT_CHECKS[2],
            id,
            f("publicNetworkAccess", json!(v.public_network_access)),
            v.public_network_access == "Disabled",
            || format!("public network access is {}", v.public_network_access),
        ),
    ];
    match ctx
        .azure
        .vault_keys(&ctx.current_token().await, id)
        .all()
        .await
    {
        Ok(keys) if keys.is_empty() => {
            out.extend(nothing_to_judge(KEY_CHECKS, id, "the vault has no keys"))
        }
        Ok(keys) => out.extend(keys.iter().flat_map(judge_key)),
        Err(e) => {
            let refused = NotCollected::from_error(
                ctx,
                EvidenceSource::KeyVault,
                "Microsoft.KeyVault/vaults/keys",
                e,
            )?;
            out.extend(KEY_CHECKS.iter().map(|c| refused.observation(*c, id)));
        }
    }
    match ctx
        .azure
        .vault_secrets(&ctx.current_token().await, id)
        .all()
        .await
    {
        Ok(secrets) if secrets.is_empty() => out.extend(nothing_to_judge(
            [CheckId::KeyVaultSecretExpiry],
            id,
            "the vault has no secrets",
        )),
        Ok(secrets) => out.extend(secrets.iter().map(judge_secret)),
        Err(e) => {
            let refused = NotCollected::from_error(
                ctx,
                EvidenceSource::KeyVault,
                "Microsoft.KeyVault/vaults/secrets",
                e,
            )?;
            out.push(refused.observation(CheckId::KeyVaultSecretExpiry, id));
        }
    }
    Ok(out)
}

fn judge_key(k: &VaultKey) -> Vec<Observation> {
    let policy = k.rotation_policy.as_ref().map(|p| {
        json!({
            "rotate_after_create": p.rotate_after_create, "rotate_before_expiry": p.rotate_before_expiry,
            "notify_before_expiry": p.notify_before_expiry, "expiry_time": p.expiry_time,
        })
    });
    let rotates = k.rotation_policy.as_ref().is_some_and(|p| p.rotates());
    let rotation = judged(
        CheckId::KeyVaultKeyRotation,
        &k.id,
        json!({"rotation_policy": policy}),
        rotates,
        || match &k.rotation_policy {
            None => "the key has no rotation policy".into(),
            Some(_) => "the key's rotation policy only notifies: it has no rotate action".into(),
        },
    );
    vec![
        rotation,
        expiry(
            CheckId::KeyVaultKeyExpiry,
            &k.id,
            k.enabled,
            k.times.expires,
        ),
    ]
}

fn judge_secret(s: &VaultSecret) -> Observation {
    expiry(
        CheckId::KeyVaultSecretExpiry,
        &s.id,
        s.enabled,
        s.times.expires,
    )
}

/// An enabled key or secret has an expiry; a disabled one is not judged.
fn expiry(
    check: CheckId,
    subject: &str,
    enabled: bool,
    expires: Option<chrono::DateTime<chrono::Utc>>,
) -> Observation {
    let facts = json!({"enabled": enabled, "expires": expires});
    if !enabled {
        return Observation {
            check,
            subject: subject.to_string(),
            facts,
            result: EvidenceResult::NotApplicable,
            reason: Some("disabled: it cannot be used, so its expiry is not judged".into()),
        };
    }
    judged(check, subject, facts, expires.is_some(), || {
        "enabled with no expiry date".into()
    })
}
