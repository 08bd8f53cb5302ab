//! The suite's setup is the shared test kit's: the server, the simulator
//! and a fresh store on free ports.

pub use cloudkeep_testkit::app::PARTNER_ID;
pub use cloudkeep_testkit::{App, Org, spawn_app};

/// The app on a clock the test moves (the store, the sync engine and the
/// scheduler read it).
pub async fn spawn_app_on(clock: &cloudkeep_domain::ManualClock) -> App {
    cloudkeep_testkit::spawn_app_with(cloudkeep_testkit::AppOptions {
        clock: Some(std::sync::Arc::new(clock.clone())),
        ..Default::default()
    })
    .await
}
