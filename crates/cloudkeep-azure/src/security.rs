//! Microsoft Defender for Cloud's secure score and its controls
//! (Microsoft.Security, api-version 2020-01-01).

use serde_json::Value;

use crate::client::AzureClient;
use crate::error::AzureError;
use crate::fields::{count, identity, number, text_at};
use crate::paging::Paged;
use crate::token::AccessToken;

const PROVIDER: &str = "Microsoft.Security";
const SECURITY_API: &str = "2020-01-01";

/// A score: points reached out of the points possible.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Score {
    pub max: f64,
    pub current: f64,
    /// `current / max` as a fraction from 0 to 1 (Azure's `percentage`).
    pub fraction: f64,
}

/// A subscription's secure score (`ascScore` is the overall one).
#[derive(Debug, Clone, PartialEq)]
pub struct SecureScore {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub score: Score,
    /// How many resources the score weighs.
    pub weight: u64,
}

/// One control of the secure score and the resources it assessed.
#[derive(Debug, Clone, PartialEq)]
pub struct SecureScoreControl {
    pub id: String,
    /// The control's GUID.
    pub name: String,
    pub display_name: String,
    pub healthy: u64,
    pub unhealthy: u64,
    pub not_applicable: u64,
    pub score: Score,
    pub weight: u64,
}

/// `properties.score`: numbers may come as strings, and the fraction is
/// computed when missing. A value above 1 is a percentage from an answer
/// that did not follow the 0–1 convention.
fn score_of(props: &Value) -> Score {
    let score = props.get("score").unwrap_or(&Value::Null);
    let max = number(score.get("max")).unwrap_or(0.0);
    let current = number(score.get("current")).unwrap_or(0.0);
    let fraction = match number(score.get("percentage")) {
        Some(p) if p > 1.0 => p / 100.0,
        Some(p) => p,
        None if max > 0.0 => current / max,
        None => 0.0,
    };
    Score {
        max,
        current,
        fraction,
    }
}

/// What a score and a control share: names, score and weight.
fn scored(item: &Value, what: &str) -> Result<SecureScore, AzureError> {
    let (id, name) = identity(item, what)?;
    let props = item.get("properties").unwrap_or(&Value::Null);
    Ok(SecureScore {
        display_name: text_at(props, "/displayName").unwrap_or_else(|| name.clone()),
        score: score_of(props),
        weight: count(props.get("weight")),
        id,
        name,
    })
}

fn secure_score_from(item: &Value) -> Result<SecureScore, AzureError> {
    scored(item, "a secure score")
}

fn control_from(item: &Value) -> Result<SecureScoreControl, AzureError> {
    let SecureScore {
        id,
        name,
        display_name,
        score,
        weight,
    } = scored(item, "a secure score control")?;
    let props = item.get("properties").unwrap_or(&Value::Null);
    Ok(SecureScoreControl {
        id,
        name,
        display_name,
        healthy: count(props.get("healthyResourceCount")),
        unhealthy: count(props.get("unhealthyResourceCount")),
        not_applicable: count(props.get("notApplicableResourceCount")),
        score,
        weight,
    })
}

impl AzureClient {
    /// The subscription's secure scores
    /// (`/subscriptions/{s}/providers/Microsoft.Security/secureScores`).
    pub fn secure_scores<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, SecureScore> {
        let path = [PROVIDER, "secureScores"];
        self.provider_list(
            token,
            subscription_id,
            &path,
            SECURITY_API,
            secure_score_from,
        )
    }

    /// The subscription's overall secure score (`.../secureScores/ascScore`).
    pub async fn secure_score(
        &self,
        token: &AccessToken,
        subscription_id: &str,
    ) -> Result<SecureScore, AzureError> {
        let path = [PROVIDER, "secureScores", "ascScore"];
        let url = self.provider_url(subscription_id, &path, SECURITY_API);
        secure_score_from(&self.get_object(token, url).await?)
    }

    /// The controls of the subscription's secure score
    /// (`.../providers/Microsoft.Security/secureScoreControls`).
    pub fn secure_score_controls<'a>(
        &'a self,
        token: &'a AccessToken,
        subscription_id: &str,
    ) -> Paged<'a, SecureScoreControl> {
        let path = [PROVIDER, "secureScoreControls"];
        self.provider_list(token, subscription_id, &path, SECURITY_API, control_from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_scores_as_the_examples_give_them() {
        // SecureScores_List.json
        let s = secure_score_from(&json!({
            "id": "/subscriptions/20ff7fc3-e762-44dd-bd96-b71116dcdc23/providers/Microsoft.Security/secureScores/ascScore",
            "name": "ascScore", "type": "Microsoft.Security/secureScores",
            "properties": {"displayName": "ASC score", "score": {"max": 39, "current": 23.53, "percentage": 0.6033}, "weight": 67}
        }))
        .expect("score");
        assert_eq!(
            (s.name.as_str(), s.display_name.as_str()),
            ("ascScore", "ASC score")
        );
        assert_eq!(
            s.score,
            Score {
                max: 39.0,
                current: 23.53,
                fraction: 0.6033
            }
        );
        assert_eq!(s.weight, 67);
        // SecureScoreControls_List.json, with drifted types.
        let c = control_from(&json!({
            "id": "/subscriptions/s/providers/Microsoft.Security/secureScores/ascScore/secureScoreControls/27b24961-75ba-4fe4-8909-97286d5dd5ee",
            "properties": {"displayName": "Enable auditing and logging", "healthyResourceCount": 1,
                "unhealthyResourceCount": "4", "notApplicableResourceCount": 0,
                "score": {"max": 1, "current": "0.2"}, "weight": 5}
        }))
        .expect("control");
        assert_eq!(c.name, "27b24961-75ba-4fe4-8909-97286d5dd5ee");
        assert_eq!((c.healthy, c.unhealthy, c.not_applicable), (1, 4, 0));
        assert!((c.score.fraction - 0.2).abs() < 1e-9, "{c:?}");
        assert_eq!(
            score_of(&json!({"score": {"max": 10, "current": 5, "percentage": 50}})).fraction,
            0.5
        );
        assert!(control_from(&json!({"properties": {}})).is_err());
    }
}
