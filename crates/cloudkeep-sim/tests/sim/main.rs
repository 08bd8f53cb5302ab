//! End-to-end tests of the simulator over HTTPS: Entra ID, ARM, throttling,
//! faults, the control API, conformance with Microsoft's examples, and
//! what third-party tools read.

mod arm;
mod conformance;
mod control;
mod cost;
mod entra;
mod harness;
mod throttling;
mod tools;
