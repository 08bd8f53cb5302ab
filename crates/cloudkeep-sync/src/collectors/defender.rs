//! Evidence from Microsoft Defender for Cloud: the secure score against
//! the organisation's threshold, each scored secure-score control, and the
//! Defender plans for Storage, Key Vault and CSPM. Runs at every sync
//! level: it reads Defender's assessment of the subscription, not its
//! resources or tags.

use cloudkeep_azure::{AzureError, DefenderPlan};
use cloudkeep_domain::SyncLevel;
use cloudkeep_domain::evidence::{CheckId, EvidenceResult, EvidenceSource};
use cloudkeep_domain::report::Counts;
use cloudkeep_store::Observation;
use futures_util::future::BoxFuture;
use serde_json::json;

use crate::evidence::{NotCollected, judged, nothing_to_judge, record, subscription_subject};
use crate::{CollectContext, CollectError, Collector};

pub struct Defender;

/// The plans checked: (check, plan name as Azure lists it).
const PLANS: &[(CheckId, &str)] = &[
    (CheckId::DefenderPlanStorage, "StorageAccounts"),
    (CheckId::DefenderPlanKeyVault, "KeyVaults"),
    (CheckId::DefenderPlanCspm, "CloudPosture"),
];

impl Collector for Defender {
    fn name(&self) -> &'static str {
        "defender"
    }

    fn runs_at(&self, _level: SyncLevel) -> bool {
        true
    }

    fn collect<'a>(
        &'a self,
        ctx: CollectContext<'a>,
    ) -> BoxFuture<'a, Result<Counts, CollectError>> {
        Box::pin(async move {
            let mut observations = score(&ctx).await?;
            observations.extend(plans(&ctx).await?);
            record(&ctx, EvidenceSource::Defender, &observations).await
        })
    }
}

/// The secure score and its controls.
async fn score(ctx: &CollectContext<'_>) -> Result<Vec<Observation>, CollectError> {
    let sub = &ctx.subscription.azure_id;
    let subscription = subscription_subject(ctx);
    let checks = [CheckId::DefenderSecureScore, CheckId::DefenderScoreControl];
    let read = "Microsoft.Security/secureScores";
    let score = match ctx
        .azure
        .secure_score(&ctx.current_token().await, sub)
        .await
    {
        Ok(s) => s,
        // A subscription Defender has not assessed has no score to judge.
        Err(AzureError::NotFound { code, .. }) => {
            return Ok(not_assessed(&checks, &subscription, &code));
        }
        Err(e) => {
            let refused = NotCollected::from_error(ctx, EvidenceSource::Defender, read, e)?;
            return Ok(checks
                .iter()
                .map(|c| refused.observation(*c, &subscription))
                .collect());
        }
    };
    let threshold = ctx
        .store
        .evidence_settings(ctx.scope)
        .await?
        .secure_score_threshold;
    let fraction = score.score.fraction;
    let subject = if score.id.is_empty() {
        format!("{subscription}/providers/Microsoft.Security/secureScores/ascScore")
    } else {
        score.id.clone()
    };
    let mut out = vec![judged(
        CheckId::DefenderSecureScore,
        &subject,
        // Azure's weight is not the controls' resource counts: kept as given.
        json!({
            "max": score.score.max, "current": score.score.current, "percentage": fraction,
            "weight": score.weight, "threshold": threshold,
        }),
        fraction >= threshold,
        || {
            format!(
                "the secure score is {:.0}%, below the organisation's threshold of {:.0}%",
                fraction * 100.0,
                threshold * 100.0
            )
        },
    )];
    let controls = match ctx
        .azure
        .secure_score_controls(&ctx.current_token().await, sub)
        .all()
        .await
    {
        Ok(c) => c,
        Err(e) => {
            let refused = NotCollected::from_error(
                ctx,
                EvidenceSource::Defender,
                "Microsoft.Security/secureScoreControls",
                e,
            )?;
            out.push(refused.observation(CheckId::DefenderScoreControl, &subscription));
            return Ok(out);
        }
    };
    if controls.is_empty() {
        out.extend(nothing_to_judge(
            [CheckId::DefenderScoreControl],
            &subject,
            "the secure score has no controls",
        ));
    }
    for c in controls {
        let facts = json!({
            "name": c.display_name, "max": c.score.max, "current": c.score.current,
            "healthy": c.healthy, "unhealthy": c.unhealthy, "not_applicable": c.not_applicable,
        });
        let control_subject = if c.id.is_empty() {
            format!("{subject}/secureScoreControls/{}", c.name)
        } else {
            c.id.clone()
        };
        if c.score.max <= 0.0 {
            // Not scored: not applicable, never a 0% fail.
            out.push(Observation {
                check: CheckId::DefenderScoreControl,
                subject: control_subject,
                facts,
                result: EvidenceResult::NotApplicable,
                reason: Some("not scored: the control's max is 0".into()),
            });
            continue;
        }
        let unhealthy = c.unhealthy;
        let name = c.display_name.clone();
        out.push(judged(
            CheckId::DefenderScoreControl,
            &control_subject,
            facts,
            unhealthy == 0,
            || format!("'{name}' has {unhealthy} unhealthy resources"),
        ));
    }
    Ok(out)
}

fn not_assessed(checks: &[CheckId], subject: &str, code: &str) -> Vec<Observation> {
    checks
        .iter()
        .map(|c| Observation {
            check: *c,
            subject: subject.to_string(),
            facts: json!({"secure_score": null, "azure_said": code}),
            result: EvidenceResult::Fail,
            reason: Some(format!(
                "Defender for Cloud has no secure score for the subscription ({code}): it is not assessed"
            )),
        })
        .collect()
}

/// The Defender plans for Storage, Key Vault and CSPM.
async fn plans(ctx: &CollectContext<'_>) -> Result<Vec<Observation>, CollectError> {
    let sub = &ctx.subscription.azure_id;
    let subscription = subscription_subject(ctx);
    let listed: Vec<DefenderPlan> = match ctx
        .azure
        .defender_plans(&ctx.current_token().await, sub)
        .all()
        .await
    {
        Ok(p) => p,
        Err(e) => {
            let refused = NotCollected::from_error(
                ctx,
                EvidenceSource::Defender,
                "Microsoft.Security/pricings",
                e,
            )?;
            return Ok(PLANS
                .iter()
                .map(|(c, _)| refused.observation(*c, &subscription))
                .collect());
        }
    };
    Ok(PLANS
        .iter()
        .map(|(check, plan)| {
            let found = listed.iter().find(|p| p.name.eq_ignore_ascii_case(plan));
            let subject = found
                .map(|p| p.id.clone())
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| {
                    format!("{subscription}/providers/Microsoft.Security/pricings/{plan}")
                });
            let tier = found
                .map_or("Free", |p| p.pricing_tier.as_str())
                .to_string();
            judged(
                *check,
                &subject,
                json!({
                    "plan": plan, "pricing_tier": tier,
                    "sub_plan": found.and_then(|p| p.sub_plan.clone()),
                    "absent": found.is_none(),
                }),
                tier == "Standard",
                || format!("Defender plan {plan} is on the {tier} tier, not Standard"),
            )
        })
        .collect())
}
