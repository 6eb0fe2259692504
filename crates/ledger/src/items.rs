//! The items of a partition: one hash table of shared item states, each found by the id it holds.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;

use crossdock_model::ItemId;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::state::ItemState;

/// Item states by id. The id lives in the state, so a slot of the table is one pointer where a
/// `HashMap<ItemId, Arc<ItemState>>` slot is three words; the ledger and its read view each keep a
/// table of every item (a million items are held in memory).
#[derive(Debug, Clone, Default)]
pub struct ItemMap {
    table: HashTable<Arc<ItemState>>,
    hasher: RandomState,
}

impl ItemMap {
    pub fn get(&self, id: &ItemId) -> Option<&Arc<ItemState>> {
        self.table.find(self.hasher.hash_one(id), |s| s.id() == id)
    }

    pub fn get_mut(&mut self, id: &ItemId) -> Option<&mut Arc<ItemState>> {
        let hash = self.hasher.hash_one(id);
        self.table.find_mut(hash, |s| s.id() == id)
    }

    /// The state of `id`, an empty one put in first if there is none.
    pub fn get_or_insert(&mut self, id: &ItemId) -> &mut Arc<ItemState> {
        let hasher = &self.hasher;
        self.table
            .entry(
                hasher.hash_one(id),
                |s| s.id() == id,
                |s| hasher.hash_one(s.id()),
            )
            .or_insert_with(|| Arc::new(ItemState::new(id.clone())))
            .into_mut()
    }

    /// Puts `state` in under its id; returns the state it replaces.
    pub fn insert(&mut self, state: Arc<ItemState>) -> Option<Arc<ItemState>> {
        let hasher = &self.hasher;
        let entry = self.table.entry(
            hasher.hash_one(state.id()),
            |s| s.id() == state.id(),
            |s| hasher.hash_one(s.id()),
        );
        match entry {
            Entry::Occupied(mut e) => Some(std::mem::replace(e.get_mut(), state)),
            Entry::Vacant(e) => {
                e.insert(state);
                None
            }
        }
    }

    pub fn remove(&mut self, id: &ItemId) -> Option<Arc<ItemState>> {
        let hash = self.hasher.hash_one(id);
        let entry = self.table.find_entry(hash, |s| s.id() == id).ok()?;
        Some(entry.remove().0)
    }

    /// Every item, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<ItemState>> {
        self.table.iter()
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ItemId {
        ItemId::new(s).unwrap()
    }

    /// What a million items cost in memory rests on these (see BENCHMARKS.md, `bench memory`):
    /// an item with two positions and two channels is one allocation of this size (plus the
    /// `Arc`'s two counts), with no other allocation while only `on_hand` and counts are kept.
    #[test]
    fn states_stay_compact() {
        assert!(std::mem::size_of::<crate::Position>() <= 72);
        assert!(std::mem::size_of::<ItemState>() <= 240);
    }

    #[test]
    fn finds_replaces_and_removes_by_the_id_each_state_holds() {
        let mut items = ItemMap::default();
        assert!(items.get(&id("a")).is_none());
        Arc::make_mut(items.get_or_insert(&id("a"))).last_seq = 1;
        items.get_or_insert(&id("b"));
        assert_eq!(items.len(), 2);
        assert_eq!(items.get(&id("a")).unwrap().last_seq, 1);
        let mut a = ItemState::new(id("a"));
        a.last_seq = 2;
        let old = items.insert(Arc::new(a)).unwrap();
        assert_eq!(old.last_seq, 1);
        assert_eq!(items.get(&id("a")).unwrap().last_seq, 2);
        assert_eq!(items.get_or_insert(&id("a")).last_seq, 2, "not replaced");
        assert_eq!(items.remove(&id("a")).unwrap().last_seq, 2);
        assert!(items.remove(&id("a")).is_none());
        let left: Vec<_> = items.iter().map(|s| s.id().as_str()).collect();
        assert_eq!(left, ["b"]);
    }
}
