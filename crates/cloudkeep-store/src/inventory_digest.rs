//! What an inventory pass compares Azure's listing with, kept per
//! subscription revision: for every stored resource, a hash of its Azure id,
//! a hash of the fields a pass compares, its id and whether it is deleted.
//!
//! A pass over an unchanged subscription then reads no resource row: only
//! the resources whose hashes differ are read (and compared field by field,
//! as without the digest). A digest is made from the rows a pass reads when
//! none is kept, and updated with what the pass wrote; it is used only at
//! the `resources_rev` it was made at, which every change to a
//! subscription's resources moves in its transaction, so another instance's
//! write (or a tag edit, a purge) sends the next pass back to the rows.
//!
//! Hashes are keyed per process (`RandomState`). Two Azure ids with one
//! hash are found (in the rows or in the listing) and send the pass to the
//! rows; a new resource is taken for a stored one only if both its id's
//! and its fields' hashes equal that one's (2^-128).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;

use cloudkeep_domain::SubscriptionId;
use uuid::Uuid;

/// At most this many resources' entries are kept over every subscription
/// (40 bytes each); past it, what was kept is dropped and made again
/// at the next pass of each subscription, as the other caches start over.
const KEPT_ENTRIES: usize = 250_000;

#[derive(Debug, Default)]
pub(crate) struct Digests {
    ids: RandomState,
    fields: RandomState,
    kept: Mutex<HashMap<(String, SubscriptionId), (i64, Digest)>>,
}

/// One subscription's stored resources, by the hash of their Azure id:
/// sorted by it (40 bytes an entry; a hash map took twice that).
#[derive(Debug, Clone, Default)]
pub(crate) struct Digest {
    entries: Vec<(u64, Entry)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) id: Uuid,
    pub(crate) fields: u64,
    pub(crate) deleted: bool,
}

/// The fields of a resource a pass compares (`Known::same_as` and the
/// tags' text).
#[derive(Hash)]
pub(crate) struct Fields<'a> {
    pub(crate) arm_id: &'a str,
    pub(crate) name: &'a str,
    pub(crate) resource_type: &'a str,
    pub(crate) location: &'a str,
    pub(crate) resource_group: &'a str,
    pub(crate) tags: Option<&'a str>,
    pub(crate) changed: Option<i64>,
}

impl Digest {
    /// `None` if two entries share an id hash.
    pub(crate) fn of(mut entries: Vec<(u64, Entry)>) -> Option<Digest> {
        entries.sort_unstable_by_key(|(h, _)| *h);
        let distinct = entries.windows(2).all(|w| w[0].0 != w[1].0);
        distinct.then_some(Digest { entries })
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    pub(crate) fn get(&self, id_hash: u64) -> Option<&Entry> {
        let at = self
            .entries
            .binary_search_by_key(&id_hash, |(h, _)| *h)
            .ok()?;
        Some(&self.entries[at].1)
    }

    pub(crate) fn get_mut(&mut self, id_hash: u64) -> Option<&mut Entry> {
        let at = self
            .entries
            .binary_search_by_key(&id_hash, |(h, _)| *h)
            .ok()?;
        Some(&mut self.entries[at].1)
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &Entry)> {
        self.entries.iter().map(|(h, e)| (*h, e))
    }

    /// Adds new resources' entries (whose id hashes are not in it).
    pub(crate) fn add(&mut self, new: impl IntoIterator<Item = (u64, Entry)>) {
        self.entries.extend(new);
        self.entries.sort_unstable_by_key(|(h, _)| *h);
    }
}

impl Digests {
    /// The hash of an Azure id (lower-case, as `resources.azure_id`).
    pub(crate) fn id_hash(&self, azure_id: &str) -> u64 {
        self.ids.hash_one(azure_id)
    }

    pub(crate) fn fields_hash(&self, fields: &Fields<'_>) -> u64 {
        self.fields.hash_one(fields)
    }

    /// Takes the subscription's digest if it was made at `rev` (a pass
    /// gives it back, updated, once its write has committed).
    pub(crate) fn take(&self, org: &str, sub: SubscriptionId, rev: i64) -> Option<Digest> {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let key = (org.to_string(), sub);
        let (at, digest) = kept.remove(&key)?;
        (at == rev).then_some(digest)
    }

    /// Keeps the digest of the subscription's resources at `rev`.
    pub(crate) fn keep(&self, org: &str, sub: SubscriptionId, rev: i64, digest: Digest) {
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let held: usize = kept.values().map(|(_, d)| d.len()).sum();
        if held + digest.len() > KEPT_ENTRIES {
            kept.clear();
            if digest.len() > KEPT_ENTRIES {
                return;
            }
        }
        kept.insert((org.to_string(), sub), (rev, digest));
    }
}
