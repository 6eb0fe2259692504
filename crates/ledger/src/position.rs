//! A position: the buckets of one (item, location, lot), the formulas of DESIGN section 3, and the
//! event-time rule that lets counts and late deltas converge.

use crossdock_model::event::{QTY_MAX, qty_in_bound};
use crossdock_model::{Lot, Timestamp};
use serde::{Deserialize, Serialize};

use crate::policy::LocIdx;

/// Deltas remembered per position after its latest count, so that a count arriving late can be
/// placed exactly. Older deltas are folded away; a count older than the fold is refused loudly.
pub const RECENT_DELTAS_MAX: usize = 32;

/// Every bucket of a position, in base units. `on_hand` includes the unsellable buckets and
/// `picked`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Buckets {
    pub on_hand: i64,
    pub quarantined: i64,
    pub damaged: i64,
    pub returns_pending: i64,
    pub picked: i64,
    pub allocated: i64,
    pub reserved: i64,
    pub in_transit: i64,
    pub incoming: i64,
    pub safety_stock: i64,
}

impl Buckets {
    /// Every bucket with its name, in the store's column order.
    pub fn named(&self) -> [(&'static str, i64); 10] {
        [
            ("on_hand", self.on_hand),
            ("quarantined", self.quarantined),
            ("damaged", self.damaged),
            ("returns_pending", self.returns_pending),
            ("picked", self.picked),
            ("allocated", self.allocated),
            ("reserved", self.reserved),
            ("in_transit", self.in_transit),
            ("incoming", self.incoming),
            ("safety_stock", self.safety_stock),
        ]
    }

    /// Bucket by bucket `self - other`. Buckets lie within `±QTY_MAX`, so the difference cannot
    /// overflow; it saturates rather than wraps all the same.
    pub fn minus(&self, other: &Buckets) -> Buckets {
        let d = |a: i64, b: i64| a.saturating_sub(b);
        Buckets {
            on_hand: d(self.on_hand, other.on_hand),
            quarantined: d(self.quarantined, other.quarantined),
            damaged: d(self.damaged, other.damaged),
            returns_pending: d(self.returns_pending, other.returns_pending),
            picked: d(self.picked, other.picked),
            allocated: d(self.allocated, other.allocated),
            reserved: d(self.reserved, other.reserved),
            in_transit: d(self.in_transit, other.in_transit),
            incoming: d(self.incoming, other.incoming),
            safety_stock: d(self.safety_stock, other.safety_stock),
        }
    }

    pub fn committed(&self) -> i64 {
        self.allocated.saturating_add(self.picked)
    }
    pub fn unsellable(&self) -> i64 {
        self.quarantined
            .saturating_add(self.damaged)
            .saturating_add(self.returns_pending)
    }
    /// `on_hand - unsellable - committed - reserved - safety_stock`; negative is a signal.
    /// With every bucket within `±QTY_MAX` no term can overflow; the arithmetic saturates
    /// rather than wraps all the same.
    pub fn available(&self) -> i64 {
        self.on_hand
            .saturating_sub(self.unsellable())
            .saturating_sub(self.committed())
            .saturating_sub(self.reserved)
            .saturating_sub(self.safety_stock)
    }

    /// What a new hold or allocation may take here: `available` (never below 0), and no more
    /// than keeps `allocated + reserved` within `QTY_MAX`, so holds and allocations (and a
    /// hold committed into an allocation) never leave the bound.
    pub fn free(&self) -> i64 {
        let held = self.allocated.max(0).saturating_add(self.reserved.max(0));
        self.available().min(QTY_MAX.saturating_sub(held)).max(0)
    }

    /// The first bucket outside `±QTY_MAX`, with its value.
    pub fn out_of_bound(&self) -> Option<(&'static str, i64)> {
        self.named().into_iter().find(|(_, v)| !qty_in_bound(*v))
    }
}

/// The latest count applied to a position: `on_hand` was `qty` as of `time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountMark {
    pub time: Timestamp,
    /// Orders two counts with the same time, so every arrival order picks the same one.
    pub tiebreak: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delta {
    pub time: Timestamp,
    pub qty: i64,
}

/// Bookkeeping beside the buckets, persisted with the position. Most positions have no deltas
/// to remember, so the window is boxed and absent for them (a million positions are held in memory).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeRule {
    pub count: Option<CountMark>,
    pub window: Option<Box<DeltaWindow>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeltaWindow {
    /// on_hand deltas applied after `count` (or ever, with no count), oldest first.
    pub recent: Vec<Delta>,
    /// Deltas at or before this time were folded out of `recent`.
    pub folded_to: Option<Timestamp>,
}

impl TimeRule {
    pub fn recent(&self) -> &[Delta] {
        self.window.as_ref().map_or(&[], |w| &w.recent)
    }
    pub fn folded_to(&self) -> Option<Timestamp> {
        self.window.as_ref().and_then(|w| w.folded_to)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub location: LocIdx,
    pub lot: Option<Lot>,
    /// The buckets, read with [`Position::b`] and changed through [`Position::b_mut`].
    stored: StoredBuckets,
    pub rule: TimeRule,
}

/// The buckets as held in memory. Most positions only ever see counts and receipts, so
/// `on_hand` alone is kept inline while every other bucket is zero; the first other bucket that
/// is not moves all ten behind one pointer (a million positions are held in memory).
/// Normalised on every write, so equal buckets are always stored alike (`PartialEq` holds).
#[derive(Debug, Clone, PartialEq, Eq)]
enum StoredBuckets {
    OnHand(i64),
    All(Box<Buckets>),
}

impl StoredBuckets {
    fn get(&self) -> Buckets {
        match self {
            StoredBuckets::OnHand(on_hand) => Buckets {
                on_hand: *on_hand,
                ..Buckets::default()
            },
            StoredBuckets::All(b) => **b,
        }
    }

    fn set(&mut self, b: Buckets) {
        let on_hand_only = Buckets {
            on_hand: b.on_hand,
            ..Buckets::default()
        };
        match self {
            _ if b == on_hand_only => *self = StoredBuckets::OnHand(b.on_hand),
            StoredBuckets::All(stored) => **stored = b,
            StoredBuckets::OnHand(_) => *self = StoredBuckets::All(Box::new(b)),
        }
    }
}

/// The buckets of a position being changed: a copy, stored back (compactly) when dropped.
pub struct BucketsMut<'a> {
    stored: &'a mut StoredBuckets,
    b: Buckets,
}

impl std::ops::Deref for BucketsMut<'_> {
    type Target = Buckets;
    fn deref(&self) -> &Buckets {
        &self.b
    }
}

impl std::ops::DerefMut for BucketsMut<'_> {
    fn deref_mut(&mut self) -> &mut Buckets {
        &mut self.b
    }
}

impl Drop for BucketsMut<'_> {
    fn drop(&mut self) {
        self.stored.set(self.b);
    }
}

/// What the event-time rule did with an on_hand delta or a count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeEffect {
    Applied,
    /// At or before the latest count: the count already includes it.
    AbsorbedByCount,
    /// A count older than the latest count: superseded.
    Superseded,
    /// A count older than the remembered delta window: cannot be placed exactly.
    BeyondWindow,
}

impl Position {
    pub fn new(location: LocIdx, lot: Option<Lot>) -> Self {
        Position {
            location,
            lot,
            stored: StoredBuckets::OnHand(0),
            rule: TimeRule::default(),
        }
    }

    /// Every bucket.
    pub fn b(&self) -> Buckets {
        self.stored.get()
    }

    /// The buckets to change in place; the change is stored when the returned guard is dropped.
    pub fn b_mut(&mut self) -> BucketsMut<'_> {
        BucketsMut {
            b: self.stored.get(),
            stored: &mut self.stored,
        }
    }

    /// Replaces every bucket.
    pub fn set_b(&mut self, b: Buckets) {
        self.stored.set(b);
    }

    /// `on_hand`, without copying the other buckets.
    pub fn on_hand(&self) -> i64 {
        match &self.stored {
            StoredBuckets::OnHand(on_hand) => *on_hand,
            StoredBuckets::All(b) => b.on_hand,
        }
    }

    fn set_on_hand(&mut self, on_hand: i64) {
        match &mut self.stored {
            StoredBuckets::OnHand(stored) => *stored = on_hand,
            // Some other bucket is not zero, so the buckets stay boxed.
            StoredBuckets::All(b) => b.on_hand = on_hand,
        }
    }

    /// Applies an on_hand delta that happened at `time`, unless the latest count includes it.
    pub fn on_hand_delta(&mut self, time: Timestamp, qty: i64) -> TimeEffect {
        if let Some(c) = self.rule.count
            && time <= c.time
        {
            return TimeEffect::AbsorbedByCount;
        }
        self.set_on_hand(self.on_hand().saturating_add(qty));
        let window = self.rule.window.get_or_insert_default();
        let at = window.recent.partition_point(|d| d.time <= time);
        window.recent.insert(at, Delta { time, qty });
        if window.recent.len() > RECENT_DELTAS_MAX {
            let dropped = window.recent.remove(0);
            window.folded_to = Some(
                window
                    .folded_to
                    .map_or(dropped.time, |f| f.max(dropped.time)),
            );
        }
        TimeEffect::Applied
    }

    /// Sets on_hand to `qty` as of `mark.time`, re-adding the deltas that happened after it.
    pub fn count(&mut self, mark: CountMark, qty: i64) -> TimeEffect {
        if let Some(c) = self.rule.count
            && (mark.time, mark.tiebreak) <= (c.time, c.tiebreak)
        {
            return TimeEffect::Superseded;
        }
        if let Some(folded) = self.rule.folded_to()
            && mark.time < folded
        {
            return TimeEffect::BeyondWindow;
        }
        let later: i64 = self
            .rule
            .recent()
            .iter()
            .filter(|d| d.time > mark.time)
            .fold(0i64, |sum, d| sum.saturating_add(d.qty));
        if let Some(w) = &mut self.rule.window {
            w.recent.retain(|d| d.time > mark.time);
            w.folded_to = None;
            if w.recent.is_empty() {
                self.rule.window = None;
            }
        }
        self.rule.count = Some(mark);
        self.set_on_hand(qty.saturating_add(later));
        TimeEffect::Applied
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_micros(s * 1_000_000)
    }

    #[test]
    fn available_follows_the_formula() {
        let b = Buckets {
            on_hand: 100,
            quarantined: 5,
            damaged: 3,
            returns_pending: 2,
            picked: 10,
            allocated: 20,
            reserved: 7,
            in_transit: 50,
            incoming: 40,
            safety_stock: 4,
        };
        assert_eq!(b.unsellable(), 10);
        assert_eq!(b.committed(), 30);
        assert_eq!(b.available(), 100 - 10 - 30 - 7 - 4);
    }

    #[test]
    fn late_delta_is_absorbed_by_count_and_late_count_keeps_later_deltas() {
        let mut p = Position::new(LocIdx(0), None);
        assert_eq!(p.on_hand_delta(t(10), 5), TimeEffect::Applied);
        assert_eq!(
            p.count(
                CountMark {
                    time: t(20),
                    tiebreak: 1
                },
                100
            ),
            TimeEffect::Applied
        );
        assert_eq!(p.on_hand(), 100);
        assert_eq!(p.on_hand_delta(t(15), 7), TimeEffect::AbsorbedByCount);
        assert_eq!(p.on_hand_delta(t(20), 7), TimeEffect::AbsorbedByCount);
        assert_eq!(p.on_hand_delta(t(30), -4), TimeEffect::Applied);
        assert_eq!(p.on_hand(), 96);
        // A count between the first count and the later delta: the later delta stays on top.
        assert_eq!(
            p.count(
                CountMark {
                    time: t(25),
                    tiebreak: 1
                },
                50
            ),
            TimeEffect::Applied
        );
        assert_eq!(p.on_hand(), 46);
        assert_eq!(
            p.count(
                CountMark {
                    time: t(22),
                    tiebreak: 1
                },
                999
            ),
            TimeEffect::Superseded
        );
        assert_eq!(p.on_hand(), 46);
    }

    #[test]
    fn count_older_than_the_window_is_refused() {
        let mut p = Position::new(LocIdx(0), None);
        for i in 0..(RECENT_DELTAS_MAX as i64 + 5) {
            p.on_hand_delta(t(100 + i), 1);
        }
        assert_eq!(
            p.count(
                CountMark {
                    time: t(101),
                    tiebreak: 0
                },
                10
            ),
            TimeEffect::BeyondWindow
        );
        assert_eq!(
            p.count(
                CountMark {
                    time: t(1000),
                    tiebreak: 0
                },
                10
            ),
            TimeEffect::Applied
        );
        assert_eq!(p.on_hand(), 10);
    }
}
