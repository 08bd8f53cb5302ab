//! cloudkeep's Azure client: client-credentials and authorisation-code
//! tokens from Entra ID and typed reads from Azure Resource Manager, over
//! HTTPS with retries and pacing; `write` holds the only operations that
//! change Azure.
//!
//! Reads: subscriptions, tenants, role assignments and definitions (those
//! of one principal; every one at a subscription with its custom roles in
//! `rbac`), resources and tags (`inventory`, and Resource Graph for the
//! estate at scale), Cost Management queries (`cost`), Defender's secure
//! score and controls (`security`) and plans (`defender`), storage
//! accounts (`storage`), key vaults with their keys and secrets
//! (`keyvault`). Each answers a small struct with
//! the fields cloudkeep needs, read defensively (`fields`): a field Azure
//! leaves out carries Azure's documented default, never a guess.
//!
//! Lists are `Paged` streams: a page is asked for only when the previous
//! one has been taken, so memory stays one page and a stream dropped early
//! asks for nothing more; `Paged::all` collects one. ARM lists follow
//! `nextLink`, cost queries post the same body to theirs, Resource Graph
//! sends its `$skipToken` in the body (`paging`).
//!
//! Calls are paced (`pacing`): ARM reads and writes on a subscription by
//! the remaining quota per subscription and principal, cost queries by the
//! remaining query units per tenant (Resource Graph and tenant-level calls
//! only by retrying a 429). A throttling wait longer than the client's bound
//! (`AzureClient::with_max_throttle_wait`) is reported as
//! `AzureError::Throttled` instead of slept.
//!
//! The server uses it to validate a service principal when a connection is
//! made and in the consent flow; the sync engine's collectors read through
//! it. Both hosts are configurable so that tests and the demo can point it
//! at the simulator.
//!
//! Modules: `client` holds the configuration and the shared HTTP machinery
//! (retries, backoff, pacing, nextLink checks), `token` the Entra ID token
//! requests, `paging` the streams, `arm` and the provider modules the
//! operations, `error` the error type and the defensive parsing of Azure's
//! error bodies.

mod arm;
mod client;
mod cost;
mod defender;
mod error;
mod fields;
mod graph;
mod inventory;
mod keyvault;
mod pacing;
mod paging;
mod rbac;
mod security;
mod storage;
mod token;
pub mod write;

pub use arm::{AzureSubscription, AzureTenant, RoleAssignment, RoleDefinition};
pub use client::{AzureClient, AzureConfig, DEFAULT_MAX_THROTTLE_WAIT};
pub use cost::{CostFilter, CostGranularity, CostGrouping, CostQuery, CostRow, CostType};
pub use defender::DefenderPlan;
pub use error::{AzureError, CredentialErrorKind};
pub use graph::GraphQuery;
pub use inventory::{AzureResource, AzureResourceGroup};
pub use keyvault::{
    ItemTimes, KEYVAULT_API_VERSION, KeyVault, RotationPolicy, VaultKey, VaultSecret,
};
pub use paging::Paged;
pub use rbac::SubscriptionRoleAssignment;
pub use security::{Score, SecureScore, SecureScoreControl};
pub use storage::{STORAGE_API_VERSION, StorageAccount};
pub use token::{ARM_USER_SCOPE, AccessToken, CodeRedemption, Pkce};
