//! The registry of collectors: every kind of data a sync reads.

mod defender;
mod inventory;
mod keyvault;
mod rbac;
mod spend;
mod storage;

use crate::Collector;

/// Every collector, in the order a run calls them.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![
        Box::new(inventory::Inventory),
        Box::new(rbac::Rbac),
        Box::new(defender::Defender),
        Box::new(storage::Storage),
        Box::new(keyvault::KeyVaults),
        Box::new(spend::Spend),
    ]
}

/// The collectors of these names, in the order a run calls them (for a
/// run of one kind of collection: `sync_connection_with`).
pub fn named(names: &[&str]) -> Vec<Box<dyn Collector>> {
    all()
        .into_iter()
        .filter(|c| names.contains(&c.name()))
        .collect()
}

/// The evidence collectors' names.
pub const EVIDENCE: [&str; 4] = ["rbac", "defender", "storage", "keyvault"];
