//! Password work (argon2id, tens of milliseconds of CPU each) on its own
//! few threads at a lower scheduling priority: sign-ins queue behind each
//! other, and when the CPU is busy the other requests go first. Hashing on
//! the request threads let 64 connections of wrong passwords stall every
//! other request; on a bounded pool at the same priority it still took a
//! core from them.

use std::net::{IpAddr, SocketAddr};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use cloudkeep_domain::SecretString;
use cloudkeep_store::{Authenticated, LoginCandidate};

use crate::ApiError;

/// At most this many password checks at once, whatever the number of
/// cores: each takes one core for its duration.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().div_ceil(2))
        .unwrap_or(1)
        .max(1)
}

/// The niceness-mapped priority of the password threads (0 is the lowest,
/// 50 the default): about `nice 10`, so a busy request thread gets
/// roughly ten times their share of a core.
const PRIORITY: u8 = 25;

type Job = Box<dyn FnOnce() + Send>;

/// The password threads' queue, shared by every request of a server.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::Sender<Job>,
}

impl Default for PasswordPool {
    fn default() -> Self {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for i in 0..threads() {
            let queue = queue.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("cloudkeep-passwords-{i}"))
                .spawn(move || {
                    if let Ok(p) = thread_priority::ThreadPriorityValue::try_from(PRIORITY)
                        && let Err(e) = thread_priority::set_current_thread_priority(
                            thread_priority::ThreadPriority::Crossplatform(p),
                        )
                    {
                        tracing::warn!(error = ?e, "password threads keep the default priority");
                    }
                    loop {
                        // The lock is held only to take the next job.
                        let next = queue.lock().map(|q| q.recv());
                        match next {
                            Ok(Ok(job)) => job(),
                            // Every sender dropped (the server is gone), or a
                            // thread panicked holding the lock: stop.
                            _ => return,
                        }
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "starting a password thread");
            }
        }
        PasswordPool { jobs }
    }
}

impl PasswordPool {
    /// Runs `work` on a password thread and answers its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (answer, answered) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = answer.send(work());
            }))
            .map_err(|e| ApiError::internal("the password threads", e))?;
        answered
            .await
            .map_err(|e| ApiError::internal("a password check", e))
    }

    /// Checks a password against an account found by email.
    pub async fn verify(
        &self,
        candidate: LoginCandidate,
        password: &SecretString,
    ) -> Result<Result<Authenticated, LoginCandidate>, ApiError> {
        let password = password.clone();
        self.run(move || candidate.verify(&password)).await
    }

    /// Spends the work of a check when no account has the email, so that
    /// timing does not tell which emails exist.
    pub async fn verify_nothing(&self, password: &SecretString) -> Result<(), ApiError> {
        let password = password.clone();
        self.run(move || {
            cloudkeep_domain::password::verify_password(&password, dummy_hash());
        })
        .await
    }

    /// An argon2id hash of a new password (a weak one is a 422 that says why).
    pub async fn hash(&self, password: &SecretString) -> Result<String, ApiError> {
        let password = password.clone();
        self.run(move || cloudkeep_domain::password::hash_password(&password))
            .await?
            .map_err(|e| ApiError::unprocessable("weak_password", e.to_string()))
    }
}

/// An argon2id hash of a random password, checked when an email is unknown
/// (made once, on first use).
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        cloudkeep_domain::password::hash_password(&cloudkeep_domain::password::random_password())
            .unwrap_or_default()
    })
}

/// The address a request came from (its TCP peer), when the server knows
/// it; tests that call a handler directly have none.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}
