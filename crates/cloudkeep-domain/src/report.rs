//! A sync run's report: per subscription, each step's state, counts and
//! progress, and the run's errors. The sync engine writes it, the store
//! keeps it, the API answers it and the CLI draws it, all through these
//! types. A collector names its own figures (`Counts`), so adding one adds
//! nothing here, to the API or to the CLI.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::states::{ErrorKind, StepState};

/// Named figures of a step, in the order its collector lists them
/// (`seen`, `added`, ...). On the wire, a JSON object of integers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts(Vec<(String, u64)>);

impl Counts {
    pub fn new() -> Self {
        Counts::default()
    }

    /// Adds (or replaces) a figure.
    pub fn with(mut self, name: &str, value: u64) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: u64) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_string(), value)),
        }
    }

    pub fn get(&self, name: &str) -> Option<u64> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| *v)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.0.iter().map(|(n, v)| (n.as_str(), *v))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Counts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Counts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Counts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of named counts")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Counts, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, u64>()? {
                    out.push((k, v));
                }
                Ok(Counts(out))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// How far a long step has come (a backfill's months, say).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// What is counted ("months", "resources").
    pub unit: String,
}

/// One step (a collector, or `write_back`) of one subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StepReport {
    /// The collector's name, or `write_back`.
    pub step: String,
    pub state: StepState,
    /// What the step did, named by its collector.
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    pub counts: Counts,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Why it was skipped or failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl StepReport {
    pub fn new(step: &str, state: StepState) -> Self {
        StepReport {
            step: step.to_string(),
            state,
            counts: Counts::new(),
            progress: None,
            reason: None,
        }
    }

    pub fn skipped(step: &str, reason: impl Into<String>) -> Self {
        StepReport {
            reason: Some(reason.into()),
            ..StepReport::new(step, StepState::Skipped)
        }
    }

    pub fn succeeded(step: &str, counts: Counts) -> Self {
        StepReport {
            counts,
            ..StepReport::new(step, StepState::Succeeded)
        }
    }

    pub fn failed(step: &str, reason: impl Into<String>) -> Self {
        StepReport {
            reason: Some(reason.into()),
            ..StepReport::new(step, StepState::Failed)
        }
    }
}

/// One subscription's steps, in the order the run takes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SubscriptionReport {
    /// The Azure subscription id.
    pub subscription_id: String,
    pub steps: Vec<StepReport>,
}

impl SubscriptionReport {
    pub fn step(&self, name: &str) -> Option<&StepReport> {
        self.steps.iter().find(|s| s.step == name)
    }

    /// Replaces the step of that name (or adds it).
    pub fn set(&mut self, step: StepReport) {
        match self.steps.iter_mut().find(|s| s.step == step.step) {
            Some(slot) => *slot = step,
            None => self.steps.push(step),
        }
    }
}

/// Something a run could not do, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunError {
    pub kind: ErrorKind,
    /// The Azure subscription id, when the error is one subscription's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription: Option<String>,
    /// The step that failed, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    pub message: String,
}

/// What a run did: every subscription's steps and every error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RunReport {
    pub subscriptions: Vec<SubscriptionReport>,
    pub errors: Vec<RunError>,
}

impl RunReport {
    pub fn subscription(&self, azure_id: &str) -> Option<&SubscriptionReport> {
        self.subscriptions
            .iter()
            .find(|s| s.subscription_id.eq_ignore_ascii_case(azure_id))
    }

    /// One step of one subscription.
    pub fn step(&self, azure_id: &str, step: &str) -> Option<&StepReport> {
        self.subscription(azure_id).and_then(|s| s.step(step))
    }

    /// A figure summed over every subscription's step of that name.
    pub fn total(&self, step: &str, figure: &str) -> u64 {
        self.subscriptions
            .iter()
            .filter_map(|s| s.step(step))
            .filter_map(|s| s.counts.get(figure))
            .sum()
    }

    /// Whether any step is still pending or running.
    pub fn is_active(&self) -> bool {
        self.subscriptions
            .iter()
            .flat_map(|s| &s.steps)
            .any(|s| s.state.is_active())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_keep_their_order_on_the_wire() {
        let report = RunReport {
            subscriptions: vec![SubscriptionReport {
                subscription_id: "s1".into(),
                steps: vec![
                    StepReport::succeeded(
                        "inventory",
                        Counts::new().with("seen", 3).with("added", 1),
                    ),
                    StepReport::skipped("write_back", "sync level read_tags_only"),
                ],
            }],
            errors: vec![RunError {
                kind: ErrorKind::PermissionMissing,
                subscription: Some("s1".into()),
                collector: Some("spend".into()),
                message: "403".into(),
            }],
        };
        let json = serde_json::to_string(&report).expect("json");
        assert!(json.contains(r#""counts":{"seen":3,"added":1}"#), "{json}");
        let back: RunReport = serde_json::from_str(&json).expect("parse");
        assert_eq!(back, report);
        assert_eq!(back.total("inventory", "seen"), 3);
        assert_eq!(
            back.step("S1", "write_back").map(|s| s.state),
            Some(StepState::Skipped)
        );
    }
}
