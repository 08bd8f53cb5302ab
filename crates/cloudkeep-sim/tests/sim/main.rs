//! End-to-end tests of the simulator over HTTPS: Entra ID, ARM, throttling,
//! faults, the control API, and conformance with Microsoft's examples.

mod arm;
mod conformance;
mod control;
mod cost;
mod entra;
mod harness;
mod throttling;
