//! Reconciliation: another system's stock (a snapshot as of a time) compared with the ledger's
//! positions as of the same time, each (item, location) classified.
//!
//! Pure: the caller brings both sides (the ledger side already backed out to the snapshot's
//! `as_of`) and gets a report; policies (report, open an exception, auto-correct) act on it.
//!
//! A snapshot covers the locations it names: a ledger position at a location the snapshot does
//! not mention is not "missing in the source".

pub mod channel;
pub mod snapshot;

use std::collections::BTreeMap;

use crossdock_model::event::StockStatus;
use crossdock_model::{ItemId, LocationId, Lot, Timestamp};
use serde::Serialize;

/// One row of another system's stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRow {
    pub item: ItemId,
    pub location: LocationId,
    pub qty: i64,
    /// The bucket the quantity is in; sellable when the source does not say.
    pub status: Option<StockStatus>,
    pub lot: Option<Lot>,
}

/// The ledger's position of an item at a location (one lot or none), as of the snapshot's time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub item: ItemId,
    pub location: LocationId,
    pub lot: Option<Lot>,
    pub on_hand: i64,
    pub quarantined: i64,
    pub damaged: i64,
}

/// How far apart the two sides may be and still match: within `units`, or within `percent` of
/// the larger side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tolerance {
    pub units: i64,
    pub percent: u8,
}

impl Tolerance {
    pub fn accepts(&self, source: i64, ledger: i64) -> bool {
        let delta = (source - ledger).unsigned_abs();
        let base = source.unsigned_abs().max(ledger.unsigned_abs());
        delta <= self.units.unsigned_abs()
            || u128::from(delta) * 100 <= u128::from(base) * u128::from(self.percent)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Match,
    QuantityVariance,
    StatusVariance,
    LotVariance,
    MissingInSource,
    MissingInCrossdock,
    Stale,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Match,
        Class::QuantityVariance,
        Class::StatusVariance,
        Class::LotVariance,
        Class::MissingInSource,
        Class::MissingInCrossdock,
        Class::Stale,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Match => "match",
            Class::QuantityVariance => "quantity_variance",
            Class::StatusVariance => "status_variance",
            Class::LotVariance => "lot_variance",
            Class::MissingInSource => "missing_in_source",
            Class::MissingInCrossdock => "missing_in_crossdock",
            Class::Stale => "stale",
        }
    }
}

/// One (item, location) that is not a match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variance {
    pub item: ItemId,
    pub location: LocationId,
    pub class: Class,
    /// On hand by the source and by the ledger (all statuses, all lots); `None` when that side
    /// has no row.
    pub source_qty: Option<i64>,
    pub ledger_qty: Option<i64>,
    /// What would make the ledger agree: source − ledger.
    pub delta: i64,
    /// Either side split the quantity by lot (a single count cannot correct it).
    pub has_lots: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Report {
    pub counts: BTreeMap<Class, u64>,
    /// Every row that is not a match, ordered by item then location (none for a stale
    /// snapshot: its count says how many rows it had).
    pub variances: Vec<Variance>,
}

/// What one side says about an (item, location).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Side {
    by_status: [i64; 3],
    /// Only once some row names a lot: quantities by lot, the lot-less quantity under `None`.
    by_lot: Option<Vec<(Option<Lot>, i64)>>,
    status_given: bool,
}

impl Side {
    fn total(&self) -> i64 {
        self.by_status.iter().sum()
    }

    fn add(&mut self, lot: Option<&Lot>, by_status: [i64; 3]) {
        let qty: i64 = by_status.iter().sum();
        if lot.is_some() && self.by_lot.is_none() {
            let before = self.total();
            let mut lots = Vec::new();
            if before != 0 {
                lots.push((None, before));
            }
            self.by_lot = Some(lots);
        }
        if let Some(lots) = &mut self.by_lot {
            match lots.iter_mut().find(|(l, _)| l.as_ref() == lot) {
                Some((_, q)) => *q += qty,
                None => lots.push((lot.cloned(), qty)),
            }
        }
        for (total, q) in self.by_status.iter_mut().zip(by_status) {
            *total += q;
        }
    }
}

fn status_index(s: StockStatus) -> usize {
    match s {
        StockStatus::Sellable => 0,
        StockStatus::Quarantined => 1,
        StockStatus::Damaged => 2,
    }
}

/// One row of either side, compact: the location is an index into the snapshot's locations.
#[derive(Debug, Clone)]
struct Row {
    item: ItemId,
    loc: u16,
    lot: Option<Lot>,
    by_status: [i64; 3],
    status_given: bool,
}

impl Row {
    fn key(&self) -> (&str, u16) {
        (self.item.as_str(), self.loc)
    }
}

/// A comparison being built: every source row first ([`Comparison::add_source`]), then every
/// ledger position ([`Comparison::add_ledger`]), in any order within each; then
/// [`Comparison::finish`] sorts both sides by (item, location) and merges them. Rows are kept
/// compact (ids shared, locations as indexes), so a million item-locations cost about 64 bytes
/// a side each, and no hash table is built.
pub struct Comparison {
    source: Vec<Row>,
    ledger: Vec<Row>,
    /// Locations the snapshot names: the only ones it speaks for.
    covered: Vec<LocationId>,
}

impl Comparison {
    /// `rows`: about how many snapshot rows to expect.
    pub fn with_capacity(rows: usize) -> Self {
        Comparison {
            source: Vec::with_capacity(rows),
            ledger: Vec::new(),
            covered: Vec::new(),
        }
    }

    /// Room for `positions` more ledger positions.
    pub fn reserve_ledger(&mut self, positions: usize) {
        self.ledger.reserve_exact(positions);
    }

    /// Declares that the snapshot speaks for `location` even if no row names it (the source
    /// is responsible for it): ledger stock there with no row is missing in the source.
    pub fn cover(&mut self, location: LocationId) {
        if !self.covered.contains(&location) {
            self.covered.push(location);
        }
    }

    /// Snapshot rows seen so far.
    pub fn rows(&self) -> usize {
        self.source.len()
    }

    pub fn add_source(&mut self, r: SnapshotRow) {
        let loc = match self.covered.iter().position(|l| *l == r.location) {
            Some(i) => i,
            None => {
                self.covered.push(r.location);
                self.covered.len() - 1
            }
        };
        let mut by_status = [0; 3];
        by_status[status_index(r.status.unwrap_or(StockStatus::Sellable))] = r.qty;
        self.source.push(Row {
            item: r.item,
            loc: u16::try_from(loc).expect("fewer than 65,536 locations in a snapshot"),
            lot: r.lot,
            by_status,
            status_given: r.status.is_some(),
        });
    }

    /// One ledger position as of the snapshot's time. Positions at locations the snapshot does
    /// not name are ignored, so call this after every source row.
    pub fn add_ledger(
        &mut self,
        item: &ItemId,
        location: &LocationId,
        lot: Option<&Lot>,
        on_hand: i64,
        quarantined: i64,
        damaged: i64,
    ) {
        let Some(loc) = self.covered.iter().position(|l| l == location) else {
            return;
        };
        self.ledger.push(Row {
            item: item.clone(),
            loc: loc as u16,
            lot: lot.cloned(),
            by_status: [on_hand - quarantined - damaged, quarantined, damaged],
            status_given: true,
        });
    }

    /// Classifies every key. A snapshot older than `stale_after_s` at `now` is stale as a whole
    /// (nothing in it is trusted).
    pub fn finish(
        mut self,
        tolerance: Tolerance,
        as_of: Timestamp,
        now: Timestamp,
        stale_after_s: u64,
    ) -> Report {
        let stale =
            now.as_micros() - as_of.as_micros() > (stale_after_s as i64).saturating_mul(1_000_000);
        self.source.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        self.ledger.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
        let mut report = Report::default();
        let mut counts = [0u64; 7];
        let (mut i, mut j) = (0, 0);
        let (src, led) = (&self.source, &self.ledger);
        while i < src.len() || j < led.len() {
            let key = match (src.get(i), led.get(j)) {
                (Some(a), Some(b)) => a.key().min(b.key()),
                (Some(a), None) => a.key(),
                (None, Some(b)) => b.key(),
                (None, None) => unreachable!("the loop condition"),
            };
            let (s, first_s) = side_of(src, &mut i, key);
            let (l, first_l) = side_of(led, &mut j, key);
            let class = match (&s, &l) {
                _ if stale => Class::Stale,
                (Some(s), Some(l)) => classify(s, l, tolerance),
                (Some(s), None) if s.total() == 0 => Class::Match,
                (Some(_), None) => Class::MissingInCrossdock,
                (None, Some(l)) if l.total() == 0 => Class::Match,
                (None, Some(_)) => Class::MissingInSource,
                (None, None) => unreachable!("the key came from one side"),
            };
            counts[Class::ALL
                .iter()
                .position(|c| *c == class)
                .expect("a class")] += 1;
            if class == Class::Match || stale {
                continue;
            }
            let row = first_s.or(first_l).expect("a side has the key");
            let (source_qty, ledger_qty) =
                (s.as_ref().map(Side::total), l.as_ref().map(Side::total));
            report.variances.push(Variance {
                item: row.item.clone(),
                location: self.covered[row.loc as usize].clone(),
                class,
                source_qty,
                ledger_qty,
                delta: source_qty.unwrap_or(0) - ledger_qty.unwrap_or(0),
                has_lots: s.is_some_and(|s| s.by_lot.is_some())
                    || l.is_some_and(|l| l.by_lot.is_some()),
            });
        }
        report.counts = Class::ALL
            .iter()
            .zip(counts)
            .filter(|(_, n)| *n > 0)
            .map(|(c, n)| (*c, n))
            .collect();
        report
            .variances
            .sort_unstable_by(|a, b| (&a.item, &a.location).cmp(&(&b.item, &b.location)));
        report
    }
}

/// Folds the rows of `rows` from `*at` that have `key` into one side (advancing `*at`).
fn side_of<'a>(
    rows: &'a [Row],
    at: &mut usize,
    key: (&str, u16),
) -> (Option<Side>, Option<&'a Row>) {
    let first = rows.get(*at).filter(|r| r.key() == key);
    if first.is_none() {
        return (None, None);
    }
    let mut side = Side::default();
    while let Some(r) = rows.get(*at).filter(|r| r.key() == key) {
        side.status_given |= r.status_given;
        side.add(r.lot.as_ref(), r.by_status);
        *at += 1;
    }
    (Some(side), first)
}

/// Compares a snapshot taken `as_of` with the ledger as of the same time (see [`Comparison`]).
pub fn compare(
    snapshot: &[SnapshotRow],
    ledger: &[LedgerRow],
    tolerance: Tolerance,
    as_of: Timestamp,
    now: Timestamp,
    stale_after_s: u64,
) -> Report {
    let mut c = Comparison::with_capacity(snapshot.len());
    c.reserve_ledger(ledger.len());
    for r in snapshot {
        c.add_source(r.clone());
    }
    for r in ledger {
        c.add_ledger(
            &r.item,
            &r.location,
            r.lot.as_ref(),
            r.on_hand,
            r.quarantined,
            r.damaged,
        );
    }
    c.finish(tolerance, as_of, now, stale_after_s)
}

/// Both sides have the (item, location): quantity first, then the status split (when the
/// source gave statuses), then the lot split (when the source gave lots).
fn classify(s: &Side, l: &Side, t: Tolerance) -> Class {
    if !t.accepts(s.total(), l.total()) {
        Class::QuantityVariance
    } else if s.status_given && !(0..3).all(|i| t.accepts(s.by_status[i], l.by_status[i])) {
        Class::StatusVariance
    } else if s.by_lot.is_some() && !lots_agree(s, l, t) {
        Class::LotVariance
    } else {
        Class::Match
    }
}

fn lots_agree(s: &Side, l: &Side, t: Tolerance) -> bool {
    // A side without lots holds its whole quantity under no lot.
    let (s_all, l_all) = (vec![(None, s.total())], vec![(None, l.total())]);
    let (sl, ll) = (
        s.by_lot.as_deref().unwrap_or(&s_all),
        l.by_lot.as_deref().unwrap_or(&l_all),
    );
    let qty = |list: &[(Option<Lot>, i64)], lot: &Option<Lot>| {
        list.iter()
            .filter(|(x, _)| x == lot)
            .map(|(_, q)| q)
            .sum::<i64>()
    };
    sl.iter()
        .chain(ll.iter())
        .all(|(lot, _)| t.accepts(qty(sl, lot), qty(ll, lot)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(i: &str) -> ItemId {
        ItemId::new(i).unwrap()
    }
    fn loc(l: &str) -> LocationId {
        LocationId::new(l).unwrap()
    }
    fn snap(i: &str, l: &str, qty: i64) -> SnapshotRow {
        SnapshotRow {
            item: item(i),
            location: loc(l),
            qty,
            status: None,
            lot: None,
        }
    }
    fn ours(i: &str, l: &str, on_hand: i64) -> LedgerRow {
        LedgerRow {
            item: item(i),
            location: loc(l),
            lot: None,
            on_hand,
            quarantined: 0,
            damaged: 0,
        }
    }
    const T0: Timestamp = Timestamp::from_micros(1_000_000_000);

    fn run(s: &[SnapshotRow], l: &[LedgerRow], t: Tolerance) -> Report {
        compare(s, l, t, T0, T0, 3600)
    }

    fn classes(r: &Report) -> Vec<(String, Class)> {
        r.variances
            .iter()
            .map(|v| (v.item.to_string(), v.class))
            .collect()
    }

    #[test]
    fn every_class_is_found_and_nothing_else() {
        let mut quarantined = snap("Q", "A", 3);
        quarantined.status = Some(StockStatus::Quarantined);
        let s = vec![
            snap("M", "A", 5),
            snap("V", "A", 7),
            snap("X", "A", 2),
            snap("Q", "A", 7),
            quarantined,
        ];
        let mut l = vec![
            ours("M", "A", 5),
            ours("V", "A", 5),
            ours("Y", "A", 4),
            ours("Q", "A", 10),
            // Another location the snapshot does not cover: not missing in the source.
            ours("V", "B", 9),
        ];
        l[3].quarantined = 0;
        let r = run(&s, &l, Tolerance::default());
        assert_eq!(
            classes(&r),
            [
                ("Q".into(), Class::StatusVariance),
                ("V".into(), Class::QuantityVariance),
                ("X".into(), Class::MissingInCrossdock),
                ("Y".into(), Class::MissingInSource),
            ]
        );
        assert_eq!(r.counts[&Class::Match], 1);
        let v = r.variances.iter().find(|v| v.item.as_str() == "V").unwrap();
        assert_eq!((v.source_qty, v.ledger_qty, v.delta), (Some(7), Some(5), 2));
    }

    #[test]
    fn tolerances_in_units_and_percent() {
        let s = vec![
            snap("A1", "A", 102),
            snap("A2", "A", 110),
            snap("A3", "A", 3),
        ];
        let l = vec![
            ours("A1", "A", 100),
            ours("A2", "A", 100),
            ours("A3", "A", 1),
        ];
        let r = run(
            &s,
            &l,
            Tolerance {
                units: 2,
                percent: 0,
            },
        );
        assert_eq!(classes(&r), [("A2".into(), Class::QuantityVariance)]);
        let r = run(
            &s,
            &l,
            Tolerance {
                units: 0,
                percent: 10,
            },
        );
        // 2 of 102 and 10 of 110 are within 10%; 2 of 3 is not.
        assert_eq!(classes(&r), [("A3".into(), Class::QuantityVariance)]);
    }

    #[test]
    fn lots_split_differently_is_a_lot_variance() {
        let mut s1 = snap("L", "A", 4);
        s1.lot = Some(Lot::new("L1").unwrap());
        let mut s2 = snap("L", "A", 6);
        s2.lot = Some(Lot::new("L2").unwrap());
        let mut l1 = ours("L", "A", 5);
        l1.lot = Some(Lot::new("L1").unwrap());
        let mut l2 = ours("L", "A", 5);
        l2.lot = Some(Lot::new("L2").unwrap());
        let r = run(&[s1, s2], &[l1, l2], Tolerance::default());
        assert_eq!(classes(&r), [("L".into(), Class::LotVariance)]);
    }

    #[test]
    fn an_old_snapshot_is_stale_as_a_whole() {
        let r = compare(
            &[snap("A", "A", 1)],
            &[ours("A", "A", 1)],
            Tolerance::default(),
            T0,
            T0.plus_secs(7200),
            3600,
        );
        // Counted, with no rows: nothing in a stale snapshot is compared.
        assert_eq!(r.counts, BTreeMap::from([(Class::Stale, 1)]));
        assert!(r.variances.is_empty());
    }

    #[test]
    fn lots_on_one_side_only_after_a_lotless_row_keep_both_quantities() {
        let mut c = Comparison::with_capacity(1);
        c.add_source(snap("A", "L", 5));
        let lot = Lot::new("L1").unwrap();
        let mut with_lot = snap("A", "L", 3);
        with_lot.lot = Some(lot.clone());
        c.add_source(with_lot);
        c.add_ledger(&item("A"), &loc("L"), None, 5, 0, 0);
        c.add_ledger(&item("A"), &loc("L"), Some(&lot), 3, 0, 0);
        // Elsewhere: not covered by the snapshot, ignored.
        c.add_ledger(&item("A"), &loc("OTHER"), None, 9, 0, 0);
        let r = c.finish(Tolerance::default(), T0, T0, 3600);
        assert_eq!(r.counts, BTreeMap::from([(Class::Match, 1)]));
    }

    proptest::proptest! {
        /// Agreeing sides are all matches; changing one quantity makes exactly that row a variance.
        #[test]
        fn exactly_the_injected_variance_is_reported(
            qtys in proptest::collection::vec(0..1000i64, 1..200),
            pick in 0usize..200,
            bump in 1..50i64,
        ) {
            let pick = pick % qtys.len();
            let names: Vec<String> = (0..qtys.len()).map(|i| format!("I{i}")).collect();
            let l: Vec<LedgerRow> = qtys.iter().zip(&names).map(|(q, n)| ours(n, "A", *q)).collect();
            let mut s: Vec<SnapshotRow> = qtys.iter().zip(&names).map(|(q, n)| snap(n, "A", *q)).collect();
            proptest::prop_assert!(run(&s, &l, Tolerance::default()).variances.is_empty());
            s[pick].qty += bump;
            let r = run(&s, &l, Tolerance::default());
            proptest::prop_assert_eq!(r.variances.len(), 1);
            proptest::prop_assert_eq!(r.variances[0].item.as_str(), names[pick].as_str());
            proptest::prop_assert_eq!(r.variances[0].delta, bump);
        }
    }
}
