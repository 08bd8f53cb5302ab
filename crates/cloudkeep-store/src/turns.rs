//! Turns to compute a kept answer: when many readers miss the same kept
//! answer at once (every dashboard after a write, or on a cold start), one
//! computes it while the others wait for its turn and then read what it
//! kept, instead of all of them running the same query at once and
//! holding every connection of the pool.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

/// Past this many keys, turns nobody holds or waits for are dropped.
const TURNS: usize = 1024;

#[derive(Debug)]
pub(crate) struct Turns<K> {
    turns: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K> Default for Turns<K> {
    fn default() -> Self {
        Turns {
            turns: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Hash + Eq + Clone> Turns<K> {
    /// Waits for `key`'s turn; the turn is held until the guard drops.
    pub(crate) async fn take(&self, key: &K) -> tokio::sync::OwnedMutexGuard<()> {
        let turn = {
            let mut turns = self.turns.lock().unwrap_or_else(|e| e.into_inner());
            if turns.len() >= TURNS && !turns.contains_key(key) {
                turns.retain(|_, t| Arc::strong_count(t) > 1);
            }
            turns.entry(key.clone()).or_default().clone()
        };
        turn.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_of_a_key_at_a_time_and_other_keys_pass() {
        let turns: Arc<Turns<&str>> = Arc::default();
        let held = turns.take(&"a").await;
        // Another key is not held up.
        let _b = turns.take(&"b").await;
        let waiter = {
            let turns = turns.clone();
            tokio::spawn(async move { turns.take(&"a").await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second reader of a key waits");
        drop(held);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
            .await
            .expect("the turn passes once released")
            .expect("task");
    }
}
