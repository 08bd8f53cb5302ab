//! The registry of collectors: every kind of data a sync reads.

mod inventory;

use crate::Collector;

/// Every collector, in the order a run calls them.
pub fn all() -> Vec<Box<dyn Collector>> {
    vec![Box::new(inventory::Inventory)]
}
