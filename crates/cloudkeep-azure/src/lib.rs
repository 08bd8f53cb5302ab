//! cloudkeep's Azure client: client-credentials and authorisation-code
//! tokens from Entra ID and typed reads from Azure Resource Manager
//! (subscriptions, role assignments, resources, tags), over HTTPS with
//! retries and pacing; `write` holds the only operations that change Azure.
//!
//! The server uses it to validate a service principal when a connection is
//! made and in the consent flow; the sync engine's collectors read through
//! it. Both hosts
//! are configurable so that tests and the demo can point it at the
//! simulator.
//!
//! Modules: `client` holds the configuration and the shared HTTP machinery
//! (retries, backoff, nextLink checks), `token` the Entra ID token requests,
//! `arm` the Resource Manager operations, `error` the error type and the
//! defensive parsing of Azure's error bodies.

mod arm;
mod client;
mod error;
mod inventory;
mod pacing;
mod token;
pub mod write;

pub use arm::{AzureSubscription, RoleAssignment};
pub use client::{AzureClient, AzureConfig};
pub use error::{AzureError, CredentialErrorKind};
pub use inventory::AzureResource;
pub use token::{ARM_USER_SCOPE, AccessToken, CodeRedemption, Pkce};
