//! cloudkeep's domain: identifiers, platform roles and what they permit,
//! sync levels, connection states, the redacting secret type, passwords and
//! API tokens, and envelope encryption of credentials.
//!
//! This crate knows nothing of storage, HTTP or Azure; every other crate
//! speaks its types.

pub mod crypto;
mod ids;
mod model;
pub mod password;
mod secret;
pub mod tags;

pub use ids::{ConnectionId, EventId, OrgId, SubscriptionId, TokenId, UserId};
pub use model::{
    AuthMethod, ConnectionStatus, OperatorApp, ParseError, Permission, Role, SyncLevel,
};
pub use secret::SecretString;
