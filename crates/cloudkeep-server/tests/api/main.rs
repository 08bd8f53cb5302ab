//! The API end to end: the server on a free port, a real store, and the
//! Azure simulator behind it.

mod alerts;
mod anomalies;
mod assessments;
mod budgets;
mod connections;
mod consent;
mod coverage;
mod evidence;
mod harness;
mod isolation;
mod kept;
mod levels;
mod lists;
mod logins;
mod openapi;
mod sessions;
mod snapshots;
mod spend;
mod sync;
mod tags;
