//! The suite's setup is the shared test kit's: the server, the simulator
//! and a fresh store on free ports.

pub use cloudkeep_testkit::app::PARTNER_ID;
pub use cloudkeep_testkit::{App, Org, spawn_app};
