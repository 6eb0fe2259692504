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

use std::collections::{BTreeMap, HashMap, HashSet};

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
    /// Every row that is not a match, ordered by item then location.
    pub variances: Vec<Variance>,
}

/// What one side says about an (item, location).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Side {
    total: i64,
    by_status: [i64; 3],
    /// Only when some row names a lot: quantities by lot (no allocation for the common case).
    by_lot: Option<Vec<(Option<Lot>, i64)>>,
    status_given: bool,
}

impl Side {
    fn add_lot(&mut self, lot: &Option<Lot>, qty: i64) {
        let lots = self.by_lot.get_or_insert_with(Vec::new);
        match lots.iter_mut().find(|(l, _)| l == lot) {
            Some((_, q)) => *q += qty,
            None => lots.push((lot.clone(), qty)),
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

/// Hashes keys with xxh3: the keys are ids we hold, not attacker-chosen input to a server map.
#[derive(Default, Clone, Copy)]
struct Xxh3Build;

impl std::hash::BuildHasher for Xxh3Build {
    type Hasher = xxhash_rust::xxh3::Xxh3;
    fn build_hasher(&self) -> Self::Hasher {
        xxhash_rust::xxh3::Xxh3::new()
    }
}

type Key<'a> = (&'a str, &'a str);

/// Compares a snapshot taken `as_of` with the ledger as of the same time. A snapshot older than
/// `stale_after_s` at `now` is classified stale as a whole (nothing in it is trusted).
pub fn compare(
    snapshot: &[SnapshotRow],
    ledger: &[LedgerRow],
    tolerance: Tolerance,
    as_of: Timestamp,
    now: Timestamp,
    stale_after_s: u64,
) -> Report {
    let stale =
        now.as_micros() - as_of.as_micros() > (stale_after_s as i64).saturating_mul(1_000_000);
    let mut source: HashMap<Key<'_>, (Side, &SnapshotRow), Xxh3Build> =
        HashMap::with_capacity_and_hasher(snapshot.len(), Xxh3Build);
    for r in snapshot {
        let (side, _) = source
            .entry((r.item.as_str(), r.location.as_str()))
            .or_insert_with(|| (Side::default(), r));
        side.total += r.qty;
        side.by_status[status_index(r.status.unwrap_or(StockStatus::Sellable))] += r.qty;
        side.status_given |= r.status.is_some();
        if r.lot.is_some() || side.by_lot.is_some() {
            side.add_lot(&r.lot, r.qty);
        }
    }
    let covered: HashSet<&str> = snapshot.iter().map(|r| r.location.as_str()).collect();
    let mut ours: HashMap<Key<'_>, (Side, &LedgerRow), Xxh3Build> =
        HashMap::with_capacity_and_hasher(ledger.len(), Xxh3Build);
    for r in ledger
        .iter()
        .filter(|r| covered.contains(r.location.as_str()))
    {
        let (side, _) = ours
            .entry((r.item.as_str(), r.location.as_str()))
            .or_insert_with(|| (Side::default(), r));
        side.total += r.on_hand;
        side.by_status[0] += r.on_hand - r.quarantined - r.damaged;
        side.by_status[1] += r.quarantined;
        side.by_status[2] += r.damaged;
        if r.lot.is_some() || side.by_lot.is_some() {
            side.add_lot(&r.lot, r.on_hand);
        } else if side.total != r.on_hand {
            // A second lot-less row of the same key cannot happen (one position per lot).
            side.add_lot(&None, r.on_hand);
        }
    }
    let mut report = Report::default();
    let mut counts = [0u64; 7];
    let mut note =
        |class: Class, item: &ItemId, location: &LocationId, s: Option<&Side>, l: Option<&Side>| {
            counts[Class::ALL
                .iter()
                .position(|c| *c == class)
                .expect("a class")] += 1;
            if class != Class::Match {
                let (source_qty, ledger_qty) = (s.map(|s| s.total), l.map(|l| l.total));
                let has_lots =
                    s.is_some_and(|s| s.by_lot.is_some()) || l.is_some_and(|l| l.by_lot.is_some());
                report.variances.push(Variance {
                    item: item.clone(),
                    location: location.clone(),
                    class,
                    source_qty,
                    ledger_qty,
                    delta: source_qty.unwrap_or(0) - ledger_qty.unwrap_or(0),
                    has_lots,
                });
            }
        };
    for (key, (s, row)) in &source {
        let l = ours.get(key).map(|(side, _)| side);
        let class = match l {
            _ if stale => Class::Stale,
            None if s.total == 0 => Class::Match,
            None => Class::MissingInCrossdock,
            Some(l) => classify(s, l, tolerance),
        };
        note(class, &row.item, &row.location, Some(s), l);
    }
    for (key, (l, row)) in &ours {
        if source.contains_key(key) {
            continue;
        }
        let class = if stale {
            Class::Stale
        } else if l.total == 0 {
            Class::Match
        } else {
            Class::MissingInSource
        };
        note(class, &row.item, &row.location, None, Some(l));
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

/// Both sides have the (item, location): quantity first, then the status split (when the
/// source gave statuses), then the lot split (when the source gave lots).
fn classify(s: &Side, l: &Side, t: Tolerance) -> Class {
    if !t.accepts(s.total, l.total) {
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
    let (s_all, l_all) = (vec![(None, s.total)], vec![(None, l.total)]);
    let (sl, ll) = (
        s.by_lot.as_ref().unwrap_or(&s_all),
        l.by_lot.as_ref().unwrap_or(&l_all),
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
        assert_eq!(classes(&r), [("A".into(), Class::Stale)]);
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
