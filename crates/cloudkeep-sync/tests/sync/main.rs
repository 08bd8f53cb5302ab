//! The sync engine's integration tests, in one binary: the scheduler
//! (`scheduler`) and the fault matrix (`faults`), each against the
//! simulator over HTTPS and a real store.

mod faults;
mod scheduler;
