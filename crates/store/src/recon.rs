//! Reconciliation and time travel: the journal of position changes, the history of channel
//! availability and of delivered values, and reconciliation runs with their variances.

use serde::{Deserialize, Serialize};

use crate::{Result, SentRow, StoreError};

/// Bucket names in the order of [`ChangeRow::delta`] (and of the positions table).
pub const BUCKETS: [&str; 10] = [
    "on_hand",
    "quarantined",
    "damaged",
    "returns_pending",
    "picked",
    "allocated",
    "reserved",
    "in_transit",
    "incoming",
    "safety_stock",
];

/// What one applied input changed at one position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    pub partition: u32,
    /// Ledger sequence the change was applied at.
    pub seq: u64,
    /// Order within the batch (a released held input shares the sequence of the one that
    /// released it).
    pub n: u32,
    pub item: String,
    pub location: String,
    /// `""` without a lot.
    pub lot: String,
    /// Event time of the input.
    pub time_us: i64,
    /// When the hub committed it.
    pub at_us: i64,
    /// `after - before` per bucket, in [`BUCKETS`] order.
    pub delta: [i64; 10],
}

/// A channel availability the ledger computed, and the one before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtsRow {
    pub item: String,
    pub channel: String,
    pub at_us: i64,
    pub seq: u64,
    pub ats: i64,
    /// `None` when the channel had no value for the item before.
    pub previous: Option<i64>,
}

type StoredChange = (u64, u32, String, String, String, i64, Vec<(u8, i64)>);

/// One journal row's entries as stored (JSON of tuples: compact, and decoded only for reads).
#[derive(Serialize, Deserialize)]
struct Entries {
    /// `(seq, n, item, location, lot, time_us, [(bucket, delta)])`, only the buckets that
    /// changed (in [`BUCKETS`] order).
    c: Vec<StoredChange>,
    /// `(item, channel, seq, ats, previous)`
    a: Vec<(String, String, u64, i64, Option<i64>)>,
}

/// A commit's journal row: `(at_us, max_time_us, entries)`, or `None` when it changed nothing.
pub(crate) fn encode_journal(changes: &[ChangeRow], ats: &[AtsRow]) -> Option<(i64, i64, String)> {
    if changes.is_empty() && ats.is_empty() {
        return None;
    }
    let at_us = changes
        .iter()
        .map(|c| c.at_us)
        .chain(ats.iter().map(|a| a.at_us))
        .max()
        .unwrap_or_default();
    let max_time_us = changes.iter().map(|c| c.time_us).max().unwrap_or(i64::MIN);
    let entries = Entries {
        c: changes
            .iter()
            .map(|c| {
                (
                    c.seq,
                    c.n,
                    c.item.clone(),
                    c.location.clone(),
                    c.lot.clone(),
                    c.time_us,
                    c.delta
                        .iter()
                        .enumerate()
                        .filter(|(_, d)| **d != 0)
                        .map(|(i, d)| (i as u8, *d))
                        .collect(),
                )
            })
            .collect(),
        a: ats
            .iter()
            .map(|a| (a.item.clone(), a.channel.clone(), a.seq, a.ats, a.previous))
            .collect(),
    };
    let text = serde_json::to_string(&entries).expect("journal entries serialize");
    Some((at_us, max_time_us, text))
}

/// The entries of a journal row, keeping the changes and availabilities `keep` selects.
pub(crate) fn decode_journal(
    partition: u32,
    at_us: i64,
    text: &str,
    keep_change: impl Fn(&ChangeRow) -> bool,
    keep_ats: impl Fn(&AtsRow) -> bool,
    out: &mut (Vec<ChangeRow>, Vec<AtsRow>),
) -> Result<()> {
    let entries: Entries = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("journal row at {at_us}: {e}")))?;
    for (seq, n, item, location, lot, time_us, sparse) in entries.c {
        let mut delta = [0; 10];
        for (i, d) in sparse {
            let slot = delta.get_mut(usize::from(i)).ok_or_else(|| {
                StoreError::Corrupt(format!("journal row at {at_us}: bucket {i}"))
            })?;
            *slot = d;
        }
        let c = ChangeRow {
            partition,
            seq,
            n,
            item,
            location,
            lot,
            time_us,
            at_us,
            delta,
        };
        if keep_change(&c) {
            out.0.push(c);
        }
    }
    for (item, channel, seq, ats, previous) in entries.a {
        let a = AtsRow {
            item,
            channel,
            at_us,
            seq,
            ats,
            previous,
        };
        if keep_ats(&a) {
            out.1.push(a);
        }
    }
    Ok(())
}

/// One reconciliation run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRow {
    pub id: String,
    /// The configured source's name.
    pub source: String,
    /// `csv`, `x12_846` or the channel kind (`shopify`, `amazon`, `woocommerce`).
    pub kind: String,
    /// `api`, `cli`, `schedule`.
    pub started_by: String,
    pub as_of_us: i64,
    pub started_at_us: i64,
    pub finished_at_us: i64,
    /// `done` or `failed`.
    pub status: String,
    /// Snapshot rows compared.
    pub rows: u64,
    /// Counts by class, JSON object.
    pub counts: String,
    /// Hash of the snapshot's content (hex): the same snapshot reconciled twice has one digest.
    pub digest: String,
    /// Why a failed run failed; empty otherwise.
    pub error: String,
}

/// A row of a run that is not a match, and what the run did about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarianceRow {
    pub run_id: String,
    pub n: u32,
    pub item: String,
    pub location: String,
    pub lot: String,
    pub class: String,
    pub source_qty: Option<i64>,
    pub ledger_qty: Option<i64>,
    pub delta: i64,
    /// What else the comparison knows (status names, the value last sent to a channel).
    pub detail: String,
    /// `reported`, `exception`, `corrected`, `repaired`.
    pub action: String,
    /// The exception id or correcting event id, when there is one.
    pub reference: String,
}

pub trait ReconStore {
    /// Changes of `partition` committed at or after `since_us` by inputs that happened after
    /// `after_time_us`, up to ledger sequence `up_to_seq`, in ledger order.
    fn changes_since(
        &mut self,
        partition: u32,
        since_us: i64,
        after_time_us: i64,
        up_to_seq: u64,
    ) -> Result<Vec<ChangeRow>>;
    /// What was committed after `after_us` in `partition` about `item`: its position changes
    /// and channel availabilities, in commit order. Reads every journal row since then (cost
    /// grows with the partition's activity since `after_us`).
    fn item_journal_after(
        &mut self,
        partition: u32,
        item: &str,
        after_us: i64,
    ) -> Result<(Vec<ChangeRow>, Vec<AtsRow>)>;
    /// Per endpoint, the latest value of `key` delivered at or before `at_us`.
    fn sent_as_of(&mut self, key: &str, at_us: i64) -> Result<Vec<SentRow>>;
    /// Stores a finished run and its variances in one transaction.
    fn save_run(&mut self, run: &RunRow, variances: &[VarianceRow]) -> Result<()>;
    fn find_run(&mut self, id: &str) -> Result<Option<RunRow>>;
    /// Newest first; `source` `None` for every source.
    fn list_runs(&mut self, source: Option<&str>, limit: u32) -> Result<Vec<RunRow>>;
    /// Variances in row order from `after_n` (exclusive), at most `limit`.
    fn run_variances(
        &mut self,
        id: &str,
        after_n: Option<u32>,
        limit: u32,
    ) -> Result<Vec<VarianceRow>>;
    /// A run's variance rows counted by `(location, class)`, sorted by location then class
    /// (one row per pair, however many variances the run has).
    fn run_variance_counts(&mut self, id: &str) -> Result<Vec<(String, String, u64)>>;
}
