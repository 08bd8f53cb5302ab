//! cloudkeep's HTTP API: a JSON API under `/api/v1` with one error shape,
//! an OpenAPI document generated from the handlers, sessions and API tokens,
//! request ids, structured logs, health and Prometheus metrics.
//!
//! **API boundary:** only this crate knows HTTP and the JSON wire types;
//! the store and domain types never reach the wire directly.

pub mod api;
mod auth;
mod connect;
mod error;
pub mod export;
mod list;
mod metrics;
mod passwords;
mod router;
mod tls;
pub mod wire;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use cloudkeep_azure::AzureClient;
use cloudkeep_domain::OperatorApp;
use cloudkeep_domain::crypto::KeyProvider;
use cloudkeep_store::Store;
use tokio::net::TcpListener;

pub use auth::{
    CSRF_HEADER, Caller, SESSION_COOKIE, cookie, session_cookie, session_cookie_cleared,
};
pub use error::{ApiError, Body, ErrorBody, Params};
pub use list::{Page, page_request};
pub use passwords::{ClientAddr, PasswordPool};
pub use router::no_such_route;
pub use tls::TlsFiles;

/// Settings the server needs beyond its collaborators.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// How long a browser session lasts.
    pub session_lifetime: chrono::Duration,
    /// Set `Secure` on cookies (on when serving HTTPS or behind a TLS proxy).
    pub secure_cookies: bool,
    /// Limit failed sign-ins per client address as well as per email (off
    /// behind a proxy, where every client has the proxy's address).
    pub limit_sign_ins_by_address: bool,
    /// Default sync cadence and stale threshold of new connections.
    pub default_cadence: Duration,
    pub default_stale_after: Duration,
    /// The operator's application, for the consent flow and the syncs of
    /// the connections it makes; without it the consent flow is off.
    pub operator: Option<OperatorApp>,
    /// The URL browsers reach this server at, for the consent flow's
    /// redirect URI (e.g. "https://cloudkeep.example.com").
    pub public_url: Option<String>,
    /// Where webhooks may point (public HTTPS receivers unless the operator
    /// allows private networks).
    pub webhooks: cloudkeep_sync::webhooks::WebhookPolicy,
    /// Where syncs do their work (`serve`: a runtime at a lower priority).
    pub background: cloudkeep_sync::Background,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            session_lifetime: chrono::Duration::hours(12),
            secure_cookies: false,
            limit_sign_ins_by_address: true,
            default_cadence: Duration::from_secs(86_400),
            default_stale_after: Duration::from_secs(2 * 86_400),
            operator: None,
            public_url: None,
            webhooks: Default::default(),
            background: cloudkeep_sync::Background::inline(),
        }
    }
}

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub keys: Arc<dyn KeyProvider>,
    pub azure: AzureClient,
    pub settings: ServerSettings,
    metrics: Arc<metrics::Metrics>,
    /// Consent flows under way, in memory only (they hold delegated tokens).
    consent: Arc<api::consent::Flows>,
    /// Where password hashes are made and checked.
    pub passwords: PasswordPool,
}

/// The longest a request answered while someone waits (checking a
/// credential, listing a tenant's subscriptions) sleeps on Azure's
/// throttling before answering that Azure is busy; a sync's calls get what
/// is left of their hour instead.
pub const INTERACTIVE_THROTTLE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

impl AppState {
    pub fn new(
        store: Store,
        keys: Arc<dyn KeyProvider>,
        azure: AzureClient,
        settings: ServerSettings,
    ) -> Self {
        AppState {
            store,
            keys,
            azure: azure.with_max_throttle_wait(INTERACTIVE_THROTTLE_WAIT),
            settings,
            metrics: Arc::default(),
            consent: Arc::default(),
            passwords: PasswordPool::default(),
        }
    }

    /// What the sync engine needs, from this state.
    pub fn sync_deps(&self) -> cloudkeep_sync::SyncDeps {
        cloudkeep_sync::SyncDeps {
            store: self.store.clone(),
            azure: self
                .azure
                .clone()
                .with_max_throttle_wait(cloudkeep_azure::DEFAULT_MAX_THROTTLE_WAIT),
            keys: self.keys.clone(),
            operator: self.settings.operator.clone(),
            background: self.settings.background.clone(),
        }
    }
}

/// The router with every route, middleware and the OpenAPI document.
pub fn app(state: AppState) -> Router {
    router::router(state, None)
}

/// The API's router with `pages` beside it (the web UI): `pages` answers
/// what the API does not, including unknown paths (its fallback), and
/// shares the API's request ids, tracing and metrics.
pub fn app_with(state: AppState, pages: Router<AppState>) -> Router {
    router::router(state, Some(pages))
}

/// The OpenAPI document, as served at `/api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router::openapi()
}

/// Serves the API until `shutdown` completes, then finishes open requests.
/// With `tls`, serves HTTPS.
pub async fn run(
    listener: TcpListener,
    state: AppState,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = app(state.clone());
    serve(listener, state, router, tls, shutdown).await
}

/// Serves `router` (made by [`app`] or [`app_with`] from `state`) until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    router: Router,
    tls: Option<TlsFiles>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Consent flows hold user tokens: drop expired ones even when no one
    // starts another flow. Expired sessions and old sign-in failures go
    // too, every ten minutes.
    let sweeper = {
        let flows = state.consent.clone();
        let store = state.store.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            let mut ticks = 0u64;
            loop {
                every.tick().await;
                flows.sweep();
                if ticks % 20 == 0 {
                    let quiet = store.now() - cloudkeep_domain::login::PER_ACCOUNT.window;
                    if let Err(e) = store.sweep_logins(quiet).await {
                        tracing::warn!(error = %e, "sweeping expired sessions");
                    }
                }
                ticks += 1;
            }
        })
    };
    let served = match tls {
        None => {
            let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(files) => {
            // Browsers that reached us over HTTPS keep to it.
            let router = router.layer(axum::middleware::map_response(
                |mut r: axum::response::Response| async move {
                    r.headers_mut().insert(
                        axum::http::header::STRICT_TRANSPORT_SECURITY,
                        axum::http::HeaderValue::from_static("max-age=31536000"),
                    );
                    r
                },
            ));
            tls::serve(listener, router, files, shutdown).await
        }
    };
    sweeper.abort();
    served
}
