//! The states of things that change over time: tag edits, sync runs and
//! their steps, and the kinds of error a run records.

use crate::names::names;

names! {
    /// Where a tag edit stands.
    pub enum TagEditState("tag edit state") {
        /// Waiting to be written to Azure at the next sync (`read_write_tags`).
        Pending = "pending",
        /// Kept in cloudkeep and never written (`read_tags_only`).
        Local = "local",
        /// Written to Azure and confirmed.
        Applied = "applied",
        /// A key it changes was changed in Azure since the edit was based on it.
        Conflict = "conflict",
        /// Azure (a policy) refused the write.
        Rejected = "rejected",
        /// The write failed for another reason.
        Failed = "failed",
        /// A conflict resolved with "keep mine": a new pending edit replaced it.
        Superseded = "superseded",
        /// A conflict resolved with "take theirs": Azure's value is kept.
        Dismissed = "dismissed",
        /// Cancelled because the subscription's sync level was lowered.
        Cancelled = "cancelled",
    }
}

impl TagEditState {
    /// Whether the edit may still change Azure or cloudkeep's view.
    pub fn is_open(self) -> bool {
        matches!(
            self,
            TagEditState::Pending | TagEditState::Local | TagEditState::Conflict
        )
    }
}

names! {
    /// Where a sync run stands.
    pub enum RunStatus("run status") {
        Running = "running",
        /// Every step of every subscription did its work.
        Succeeded = "succeeded",
        /// Some steps failed, others worked.
        Partial = "partial",
        /// Nothing worked (or the credential was refused).
        Failed = "failed",
        /// Its process died (a crash, a restart) before it ended.
        Interrupted = "interrupted",
    }
}

impl RunStatus {
    pub fn is_finished(self) -> bool {
        self != RunStatus::Running
    }
}

names! {
    /// Where one step (a collector, or the write-back) of one subscription stands.
    pub enum StepState("step state") {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        /// Not run, by the subscription's sync level (the reason says which).
        Skipped = "skipped",
    }
}

impl StepState {
    /// Still to come or under way.
    pub fn is_active(self) -> bool {
        matches!(self, StepState::Pending | StepState::Running)
    }
}

names! {
    /// Why a run or a step could not do its work.
    pub enum ErrorKind("error kind") {
        /// Azure answered 403: a role is missing (the message names what was refused).
        PermissionMissing = "permission_missing",
        /// Azure's throttling would have outlasted the run.
        Throttled = "throttled",
        /// Entra ID refused the credential: the connection needs re-authentication.
        CredentialRejected = "credential_rejected",
        /// No token could be had for another reason (Entra ID unreachable).
        TokenUnavailable = "token_unavailable",
        /// A consent connection on a server without the operator's application.
        OperatorAppMissing = "operator_app_missing",
        /// Anything else: Azure's answer, the store, an internal error.
        Error = "error",
    }
}

names! {
    /// What started a sync run.
    pub enum SyncTrigger("sync trigger") {
        /// A user or script, through the API or the CLI.
        Manual = "manual",
        /// The scheduler, at the connection's cadence.
        Schedule = "schedule",
    }
}

names! {
    /// How a tag conflict is resolved.
    pub enum Resolution("resolution") {
        /// Write the edit over Azure's value at the next sync.
        KeepMine = "keep_mine",
        /// Keep Azure's value; the edit is dismissed.
        TakeTheirs = "take_theirs",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_errors_list_the_allowed_values() {
        for s in TagEditState::ALL {
            assert_eq!(s.as_str().parse::<TagEditState>(), Ok(*s));
            assert_eq!(
                serde_json::to_string(s).expect("json"),
                format!("\"{}\"", s.as_str())
            );
        }
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(*s));
        }
        let err = "bogus".parse::<TagEditState>().expect_err("bogus");
        assert_eq!(
            err.to_string(),
            "'bogus' is not a valid tag edit state; expected one of: pending, local, applied, \
             conflict, rejected, failed, superseded, dismissed, cancelled"
        );
        assert!(TagEditState::Conflict.is_open() && !TagEditState::Applied.is_open());
        assert!(StepState::Pending.is_active() && !StepState::Skipped.is_active());
    }
}
