//! The registry of collectors: every kind of data a sync reads.

mod defender;
mod inventory;
mod keyvault;
mod rbac;
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
    ]
}
