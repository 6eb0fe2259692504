//! Reconciliation and time travel: the journal of position changes, the history of channel
//! availability and of delivered values, and reconciliation runs with their variances.

use crate::{Result, SentRow};

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

/// A channel availability the ledger computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtsRow {
    pub item: String,
    pub channel: String,
    pub at_us: i64,
    pub seq: u64,
    pub ats: i64,
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
    /// Changes of `item` committed after `after_us`, in commit order.
    fn item_changes_after(&mut self, item: &str, after_us: i64) -> Result<Vec<ChangeRow>>;
    /// Per channel, the latest availability of `item` computed at or before `at_us`.
    fn ats_at(&mut self, item: &str, at_us: i64) -> Result<Vec<AtsRow>>;
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
}
