//! cloudkeep's domain: identifiers, platform roles and what they permit,
//! sync levels, connection, edit and run states, the run report, the
//! policies that decide what cloudkeep may do, the clock, the redacting
//! secret type, passwords and API tokens, and envelope encryption of
//! credentials.
//!
//! This crate knows nothing of storage, HTTP or Azure; every other crate
//! speaks its types.

pub mod anomaly;
pub mod assessment;
pub mod budget;
pub mod clock;
pub mod crypto;
pub mod evidence;
mod ids;
pub mod login;
mod model;
mod names;
pub mod password;
pub mod policy;
pub mod report;
mod secret;
pub mod spend;
mod states;
pub mod tags;

pub use clock::{Clock, ManualClock, SystemClock};
pub use ids::{ConnectionId, EventId, OrgId, SubscriptionId, TokenId, UserId};
pub use model::{AuthMethod, ConnectionStatus, OperatorApp, Permission, Role, SyncLevel};
pub use names::ParseError;
pub use secret::SecretString;
pub use states::{ErrorKind, Resolution, RunStatus, StepState, SyncTrigger, TagEditState};
