//! The fingerprints of every logged `(source, id)`, shared by all partitions' writers.
//!
//! A writer asks the store whether an input was logged before only when its fingerprint is
//! here, so the set must hold every logged input, wherever it was logged: an input sent again
//! may be routed to another partition than the first time (a shipment that ran wide while its
//! order was live is split by item once the order has finished), and must still be recognised.
//! Sharded, so writers adding a batch's keys rarely wait for each other.

use std::collections::HashSet;
use std::sync::Mutex;

const SHARDS: usize = 64;

pub(crate) struct Keys {
    shards: Vec<Mutex<HashSet<u64>>>,
}

impl Keys {
    pub fn new() -> Self {
        Keys {
            shards: (0..SHARDS).map(|_| Mutex::new(HashSet::new())).collect(),
        }
    }

    fn shard(&self, fingerprint: u64) -> &Mutex<HashSet<u64>> {
        // The high bits: the low ones pick the slot inside a shard's table.
        &self.shards[(fingerprint >> 58) as usize % SHARDS]
    }

    pub fn contains(&self, fingerprint: u64) -> bool {
        self.shard(fingerprint)
            .lock()
            .expect("keys lock")
            .contains(&fingerprint)
    }

    pub fn extend(&self, fingerprints: impl IntoIterator<Item = u64>) {
        for f in fingerprints {
            self.shard(f).lock().expect("keys lock").insert(f);
        }
    }
}
