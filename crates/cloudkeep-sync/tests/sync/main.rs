//! The sync engine's integration tests, in one binary: the scheduler
//! (`scheduler`), the fault matrix (`faults`) and what a run leaves ready
//! after its collectors (`after_run`), each against the simulator over
//! HTTPS and a real store.

mod after_run;
mod faults;
mod scheduler;
