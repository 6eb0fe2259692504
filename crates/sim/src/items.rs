//! The quantities a simulated platform shows, per external item id, with the history of what
//! requests applied, and the lost updates a test asks for.

use std::collections::{BTreeMap, HashMap, VecDeque};

/// Most values kept in one item's history; older ones are dropped first.
pub const HISTORY_MAX: usize = 1 << 16;

#[derive(Debug, Default)]
pub(crate) struct ItemBook {
    items: HashMap<String, Item>,
    /// Quantity writes still to be lost (acknowledged, not applied).
    lose_next: u64,
}

/// What became of one quantity a request set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Write {
    /// The quantity shown before (`None` for an item the platform did not have).
    pub before: Option<i64>,
    /// True when the write was lost: the request is answered as if it applied, and the item
    /// still shows `before`.
    pub lost: bool,
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

    /// The next `n` quantity writes are lost (replacing any count still due).
    pub fn lose_next(&mut self, n: u64) {
        self.lose_next = n;
    }

    /// Applies a value a request set, unless a lost write is due: then nothing changes and no
    /// history is kept (the value never landed), though the caller answers as if it applied.
    pub fn apply(&mut self, id: &str, quantity: i64) -> Write {
        let before = self.quantity(id);
        if self.lose_next > 0 {
            self.lose_next -= 1;
            return Write { before, lost: true };
        }
        let item = self.items.entry(id.to_owned()).or_default();
        item.quantity = quantity;
        if item.history.len() == HISTORY_MAX {
            item.history.pop_front();
        }
        item.history.push_back(quantity);
        Write {
            before,
            lost: false,
        }
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
        assert_eq!(book.apply("A", 7).before, Some(5));
        book.set_by_hand("A", 1);
        assert_eq!(book.apply("A", 9).before, Some(1));
        assert_eq!(book.apply("B", 2).before, None);
        assert_eq!(book.quantity("A"), Some(9));
        assert_eq!(book.history("A"), vec![7, 9]);
        assert_eq!(book.history("C"), Vec::<i64>::new());
        assert_eq!(book.quantities().len(), 2);
    }

    #[test]
    fn lost_writes_change_nothing_and_are_counted_down() {
        let mut book = ItemBook::default();
        book.set_by_hand("A", 5);
        book.lose_next(2);
        assert_eq!(
            book.apply("A", 7),
            Write {
                before: Some(5),
                lost: true
            }
        );
        assert_eq!(
            book.apply("B", 1),
            Write {
                before: None,
                lost: true
            }
        );
        assert_eq!((book.quantity("A"), book.contains("B")), (Some(5), false));
        assert_eq!(book.history("A"), Vec::<i64>::new());
        assert_eq!(
            book.apply("A", 8),
            Write {
                before: Some(5),
                lost: false
            }
        );
        assert_eq!(book.quantity("A"), Some(8));
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
