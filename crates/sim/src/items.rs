//! The quantities a simulated platform shows, per external item id, with the history of what
//! requests applied.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most values kept in one item's history; older ones are dropped first.
pub const HISTORY_MAX: usize = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct ItemBook {
    items: HashMap<String, Item>,
}

#[derive(Debug, Default)]
struct Item {
    quantity: i64,
    /// Every value requests applied, oldest first (seeds and edits by hand are not in it).
    history: VecDeque<i64>,
}

impl ItemBook {
    pub fn quantity(&self, id: &str) -> Option<i64> {
        self.items.get(id).map(|item| item.quantity)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.items.contains_key(id)
    }

    /// Sets a quantity outside the API (a seed, a person editing the channel by hand): no
    /// history entry.
    pub fn set_by_hand(&mut self, id: &str, quantity: i64) {
        self.items.entry(id.to_owned()).or_default().quantity = quantity;
    }

    /// Applies a value a request set; returns the quantity before it (`None` for a new item).
    pub fn apply(&mut self, id: &str, quantity: i64) -> Option<i64> {
        let before = self.quantity(id);
        let item = self.items.entry(id.to_owned()).or_default();
        item.quantity = quantity;
        if item.history.len() == HISTORY_MAX {
            item.history.pop_front();
        }
        item.history.push_back(quantity);
        before
    }

    pub fn history(&self, id: &str) -> Vec<i64> {
        self.items
            .get(id)
            .map(|item| item.history.iter().copied().collect())
            .unwrap_or_default()
    }

    pub fn quantities(&self) -> BTreeMap<String, i64> {
        self.items
            .iter()
            .map(|(id, item)| (id.clone(), item.quantity))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_holds_applied_values_only() {
        let mut book = ItemBook::default();
        book.set_by_hand("A", 5);
        assert_eq!(book.apply("A", 7), Some(5));
        book.set_by_hand("A", 1);
        assert_eq!(book.apply("A", 9), Some(1));
        assert_eq!(book.apply("B", 2), None);
        assert_eq!(book.quantity("A"), Some(9));
        assert_eq!(book.history("A"), vec![7, 9]);
        assert_eq!(book.history("C"), Vec::<i64>::new());
        assert_eq!(book.quantities().len(), 2);
    }

    #[test]
    fn history_is_bounded() {
        let mut book = ItemBook::default();
        for q in 0..(HISTORY_MAX as i64 + 3) {
            book.apply("A", q);
        }
        let history = book.history("A");
        assert_eq!(history.len(), HISTORY_MAX);
        assert_eq!(history[0], 3);
    }
}
