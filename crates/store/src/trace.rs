//! What one correlation id touched, read back for a trace: its events (the inputs as received),
//! what each changed in the ledger (from the journal), the workflow steps it caused, the outbox
//! messages still waiting, the messages delivered or superseded, and the parked ones.

use crate::{AtsRow, ChangeRow, DeadLetter, EventRow, OutboxRow, Result, SentRow, StepRow};

/// A finished outbox message, as `delivery_log` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryLogRow {
    pub endpoint: String,
    pub key: String,
    pub ledger_seq: u64,
    /// `delivered` or `superseded` (dropped unsent: a newer value for its key went instead).
    pub outcome: String,
    pub value: Option<i64>,
    pub at_us: i64,
}

/// Everything stored under one correlation id, each list in the order it happened.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TraceRows {
    pub events: Vec<EventRow>,
    /// The position changes of those events (from their commits' journal rows).
    pub changes: Vec<ChangeRow>,
    /// The channel availabilities those events changed.
    pub ats: Vec<AtsRow>,
    pub steps: Vec<StepRow>,
    /// Messages not yet finished.
    pub outbox: Vec<OutboxRow>,
    pub deliveries: Vec<DeliveryLogRow>,
    /// For each availability change (same order as `ats`), the first value delivered to the
    /// channel that includes it: the change's own, or a later one it was coalesced into.
    pub carried: Vec<Option<SentRow>>,
    pub dead_letters: Vec<DeadLetter>,
}

pub trait TraceStore {
    /// The rows stored under `correlation_id`, at most `limit` of each kind (events first: the
    /// changes are those of the events returned).
    fn trace(&mut self, correlation_id: &str, limit: u32) -> Result<TraceRows>;
}

/// Keeps, of a commit's journal row, what the events `seqs` changed.
pub(crate) fn journal_of_events(
    partition: u32,
    at_us: i64,
    text: &str,
    seqs: &[u64],
    out: &mut (Vec<ChangeRow>, Vec<AtsRow>),
) -> Result<()> {
    crate::recon::decode_journal(
        partition,
        at_us,
        text,
        |c| seqs.contains(&c.seq),
        |a| seqs.contains(&a.seq),
        out,
    )
}

/// Groups events by the journal row that holds them: `(partition, seqs)` with the events of
/// one partition in ledger order, so each journal row is read once.
pub(crate) fn by_partition(events: &[EventRow]) -> Vec<(u32, Vec<u64>)> {
    let mut groups: Vec<(u32, Vec<u64>)> = Vec::new();
    for e in events {
        match groups.iter_mut().find(|(p, _)| *p == e.partition) {
            Some((_, seqs)) => seqs.push(e.seq),
            None => groups.push((e.partition, vec![e.seq])),
        }
    }
    for (_, seqs) in &mut groups {
        seqs.sort_unstable();
        seqs.dedup();
    }
    groups
}
