//! Everything the simulator holds while it runs.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::faults::{Fault, Faults, RoleRemoval};
use crate::log::RequestLog;
use crate::throttle::Throttle;
use crate::token::Signer;
use crate::world::{self, World};
use crate::{SimConfig, SimError, arm};

/// An authorisation code issued by `/authorize`, waiting to be redeemed.
#[derive(Debug, Clone)]
pub struct AuthCode {
    pub tenant_id: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub code_challenge_method: String,
    pub user_object_id: String,
    pub scope: String,
    pub nonce: Option<String>,
    pub issued: Instant,
    pub redeemed: bool,
}

/// An accepted (202) write the client polls for.
#[derive(Debug, Clone)]
pub struct PendingOperation {
    pub polls_left: u32,
    pub result: serde_json::Value,
}

pub struct SimState {
    pub config: SimConfig,
    world: RwLock<World>,
    log: Mutex<RequestLog>,
    faults: Mutex<Faults>,
    pub throttle: Throttle,
    pub signer: Signer,
    codes: Mutex<HashMap<String, AuthCode>>,
    operations: Mutex<HashMap<String, PendingOperation>>,
    pub cost_cache: Mutex<arm::cost::Cache>,
    rng: Mutex<ChaCha8Rng>,
    /// How many times each call (method, path, query) was made since the
    /// faults were last set: the occurrence a seeded fault draw is keyed by.
    calls: Mutex<HashMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a lock leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimState {
    pub fn new(config: SimConfig) -> Result<Self, SimError> {
        config.faults.validate()?;
        let world = world::generate(config.preset, config.seed, chrono::Utc::now().date_naive());
        Ok(SimState {
            world: RwLock::new(world),
            log: Mutex::new(RequestLog::default()),
            faults: Mutex::new(config.faults.clone()),
            throttle: Throttle::default(),
            signer: Signer::new()?,
            codes: Mutex::new(HashMap::new()),
            operations: Mutex::new(HashMap::new()),
            cost_cache: Mutex::new(arm::cost::Cache::default()),
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(config.seed ^ 0x5eed)),
            calls: Mutex::new(HashMap::new()),
            config,
        })
    }

    pub fn world(&self) -> RwLockReadGuard<'_, World> {
        self.world.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn world_mut(&self) -> RwLockWriteGuard<'_, World> {
        self.world.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn log(&self) -> MutexGuard<'_, RequestLog> {
        lock(&self.log)
    }

    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    pub fn set_faults(&self, faults: Faults) {
        *lock(&self.faults) = faults;
        lock(&self.calls).clear();
    }

    /// What to do to one simulated call (`arm`: not Entra ID's), and the
    /// fault settings it was chosen under. Counts down the 429 burst and the
    /// role removal, which it carries out when it is due.
    pub fn fault_for(&self, method: &str, path: &str, query: &str, arm: bool) -> (Fault, Faults) {
        let (faults, removal, burst) = {
            let mut f = lock(&self.faults);
            let mut removal = None;
            if let Some(r) = f.remove_roles.as_mut() {
                let under = path
                    .to_ascii_lowercase()
                    .starts_with(&r.scope.trim_end_matches('/').to_ascii_lowercase());
                if under && r.after == 0 {
                    removal = f.remove_roles.take();
                } else if under {
                    r.after -= 1;
                }
            }
            let burst = arm && f.burst_429 > 0;
            if burst {
                f.burst_429 -= 1;
            }
            (f.clone(), removal, burst)
        };
        // The world's lock is taken with the faults' released: handlers
        // read the faults while they hold the world.
        if let Some(r) = removal {
            self.remove_roles(&r);
        }
        if burst {
            return (Fault::Status429, faults);
        }
        let draw = match faults.seed {
            Some(seed) => {
                let key = format!("{method} {path}?{query}");
                let occurrence = {
                    let mut calls = lock(&self.calls);
                    let n = calls.entry(key.clone()).or_insert(0);
                    *n += 1;
                    *n - 1
                };
                Faults::keyed_draw(seed, &key, occurrence)
            }
            None => self.draw(),
        };
        (faults.pick(draw), faults)
    }

    /// Removes a principal's assignments of some roles at one scope.
    fn remove_roles(&self, r: &RoleRemoval) {
        let mut world = self.world_mut();
        let roles: Vec<String> = r
            .roles
            .iter()
            .filter_map(|name| world.resolve_role(name).map(|(id, _)| id))
            .collect();
        let scope = r.scope.trim_end_matches('/');
        world.role_assignments.retain(|a| {
            !(a.principal_id.eq_ignore_ascii_case(&r.principal_id)
                && a.scope.eq_ignore_ascii_case(scope)
                && roles.contains(&a.role_definition_id))
        });
    }

    /// Whether this listing of `path` is to answer empty (the
    /// `empty_listings` fault); counts it down.
    pub fn take_empty_listing(&self, path: &str) -> bool {
        let mut f = lock(&self.faults);
        let matches = f
            .empty_listings_path
            .as_deref()
            .is_none_or(|p| path.to_ascii_lowercase().contains(&p.to_ascii_lowercase()));
        if f.empty_listings > 0 && matches {
            f.empty_listings -= 1;
            return true;
        }
        false
    }

    pub fn codes(&self) -> MutexGuard<'_, HashMap<String, AuthCode>> {
        lock(&self.codes)
    }

    pub fn operations(&self) -> MutexGuard<'_, HashMap<String, PendingOperation>> {
        lock(&self.operations)
    }

    /// A uniform draw in [0, 1) for fault injection.
    pub fn draw(&self) -> f64 {
        lock(&self.rng).random::<f64>()
    }

    /// Random bytes for opaque identifiers (codes, request ids).
    pub fn random_id(&self) -> String {
        let bytes: [u8; 16] = lock(&self.rng).random();
        uuid::Builder::from_random_bytes(bytes)
            .into_uuid()
            .to_string()
    }

    pub fn token_lifetime_secs(&self) -> u64 {
        self.faults()
            .token_lifetime_secs
            .unwrap_or(self.config.token_lifetime_secs)
    }

    /// Back to the seeded scenario: world, log, faults, buckets, codes.
    pub fn reset(&self) {
        let fresh = world::generate(
            self.config.preset,
            self.config.seed,
            chrono::Utc::now().date_naive(),
        );
        *self.world_mut() = fresh;
        self.log().clear();
        self.set_faults(self.config.faults.clone());
        self.throttle.reset();
        self.codes().clear();
        self.operations().clear();
        lock(&self.cost_cache).clear();
    }
}
