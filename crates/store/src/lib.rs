//! Durable storage for the engine: one relational schema, two implementations.
//!
//! * [`sqlite::SqliteStore`]: the embedded default. One file, WAL, `synchronous=FULL`.
//! * [`postgres::PgStore`]: scale-out. Same tables, same semantics.
//!
//! The engine talks to a [`Store`] only through plain row types defined here, so the store knows
//! nothing about ledger rules. Architecture invariant: [`Store::commit`] is all-or-nothing and
//! durable when it returns `Ok` (fsync / COMMIT); nothing else writes ledger state.

#[macro_use]
mod common;
pub mod delivery;
#[macro_use]
pub mod exceptions;
pub mod lock;
pub mod postgres;
pub mod recon;
pub mod sqlite;
pub mod thread;
pub mod trace;

pub use delivery::{
    Ack, AuditRow, DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterStatus, DeliveryStore,
    NewDeadLetter, SentRow,
};
pub use exceptions::{Cursor, ExceptionQuery, ExceptionStore, QueueMark, QueueRecord, Transition};
pub use lock::{Holder, HubLock};
pub use recon::{AtsRow, BUCKETS, ChangeRow, ReconStore, RunRow, VarianceRow};
pub use trace::{DeliveryLogRow, TraceRows, TraceStore};

use crossdock_model::{ExceptionKind, ExceptionRecord, ExceptionStatus};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] ::postgres::Error),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The data directory was created with another partition count.
    #[error("{0}")]
    Config(String),
    /// Another hub holds the store ([`lock::HubLock`]); the message names it.
    #[error("{0}")]
    Held(String),
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Outcome of an event as recorded in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventStatus {
    Applied,
    Quarantined,
    /// Held by the resequencer, waiting for a missing sequence number.
    Held,
    /// In line for its resequenced source and handed to the partitions of its items (as
    /// copies, `<id>#fwd`); becomes `applied` or `quarantined` as the copies were.
    Forwarding,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Applied => "applied",
            EventStatus::Quarantined => "quarantined",
            EventStatus::Held => "held",
            EventStatus::Forwarding => "forwarding",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "applied" => Some(EventStatus::Applied),
            "quarantined" => Some(EventStatus::Quarantined),
            "held" => Some(EventStatus::Held),
            "forwarding" => Some(EventStatus::Forwarding),
            _ => None,
        }
    }
}

/// One row of the event log. `(partition, seq)` is the log position; `(source, id)` is unique
/// and is the idempotency key.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub partition: u32,
    pub seq: u64,
    pub source: String,
    pub id: String,
    pub ty: String,
    pub time_us: i64,
    pub received_at_us: i64,
    pub correlation_id: String,
    pub payload_hash: u64,
    pub status: EventStatus,
    /// The whole CloudEvents envelope as JSON, enough to replay the event.
    pub envelope: String,
}

/// A position: one (item, location, lot). `lot` is `""` when the stock has no lot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionRow {
    pub partition: u32,
    pub item: String,
    pub location: String,
    pub lot: String,
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
    /// Ledger bookkeeping that is not a bucket (latest count mark, deltas since it), as JSON.
    pub extra: String,
    /// Ledger sequence of the last change.
    pub updated_seq: u64,
}

/// A workflow's latest state; `doc` is the whole workflow as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkflowRow {
    pub partition: u32,
    /// `<kind>:<id>`.
    pub key: String,
    pub kind: String,
    pub id: String,
    pub state: String,
    /// No step can change it any more; it is not loaded at start.
    pub is_final: bool,
    pub doc: String,
    pub updated_at_us: i64,
    pub updated_seq: u64,
}

/// One step of a workflow's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepRow {
    pub key: String,
    pub n: u32,
    pub from: String,
    pub to: String,
    pub at_us: i64,
    pub seq: u64,
    pub cause: String,
    pub correlation_id: String,
    pub note: String,
}

/// Which workflows to list.
#[derive(Debug, Clone, Default)]
pub struct WorkflowFilter {
    pub kind: String,
    pub state: Option<String>,
    pub limit: u32,
}

/// A reservation (soft hold) and, once committed, the allocation it became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub partition: u32,
    pub id: String,
    pub channel: String,
    /// `held`, `committed`, `released` or `expired`.
    pub status: String,
    /// JSON array of `{item, location, qty}`.
    pub lines: String,
    /// Hash of the request, so a repeat with other lines is a conflict.
    pub request_hash: u64,
    pub expires_at_us: i64,
    pub created_seq: u64,
    pub updated_seq: u64,
}

/// Per-item ledger state that is not a position: last published ATS per channel, open supply,
/// the oversell hold. JSON, owned by the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemStateRow {
    pub partition: u32,
    pub item: String,
    pub state: String,
}

/// Per-source resequencer state (next expected sequence number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSeqRow {
    pub partition: u32,
    pub source: String,
    pub next_expected: u64,
}

/// A message for a delivery lane. `key` groups "latest value" messages (for channel availability:
/// the item), and `ledger_seq` orders them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub partition: u32,
    pub endpoint: String,
    pub key: String,
    pub ledger_seq: u64,
    /// 0: crosses zero; 1: at or below the low-stock level; 2: the rest.
    pub priority: u8,
    pub kind: OutboxKind,
    pub payload: String,
    pub correlation_id: Option<String>,
    pub created_at_us: i64,
}

/// How an outbox message relates to others with the same `(endpoint, key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum OutboxKind {
    /// Only the newest pending value is sent (channel availability).
    Latest,
    /// Every message is sent, in ledger order per key (documents, postings, event feeds).
    Ordered,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Latest => "latest",
            OutboxKind::Ordered => "ordered",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "latest" => Some(OutboxKind::Latest),
            "ordered" => Some(OutboxKind::Ordered),
            _ => None,
        }
    }
}

/// An outbox row as read back, with its store-assigned id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOutbox {
    pub id: i64,
    pub row: OutboxRow,
}

/// A durable timer. `id` is unique and derived from what it is for, so setting it twice is harmless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerRow {
    pub partition: u32,
    pub id: String,
    pub due_at_us: i64,
    /// The hub command to submit when it fires, as a CloudEvents envelope JSON.
    pub command: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionStatusChange {
    pub id: String,
    pub status: ExceptionStatus,
    pub at_us: i64,
    pub actor: String,
    pub note: String,
}

/// Everything one group commit writes, in one transaction.
#[derive(Debug, Clone, Default)]
pub struct CommitBatch {
    pub partition: u32,
    pub events: Vec<EventRow>,
    /// Held events released by the resequencer: `(partition, seq, new status)`.
    pub event_status: Vec<(u32, u64, EventStatus)>,
    pub positions: Vec<PositionRow>,
    pub items: Vec<ItemStateRow>,
    pub reservations: Vec<ReservationRow>,
    pub source_seqs: Vec<SourceSeqRow>,
    pub outbox: Vec<OutboxRow>,
    /// Inserted if their id is new; an existing record is left as it is.
    pub exceptions: Vec<ExceptionRecord>,
    /// Status changes the ledger makes itself (an oversell hold that cleared resolves its record).
    pub exception_status: Vec<ExceptionStatusChange>,
    pub timers_set: Vec<TimerRow>,
    pub timers_done: Vec<String>,
    pub workflows: Vec<WorkflowRow>,
    pub steps: Vec<StepRow>,
    /// The journal of what the batch's inputs changed per position.
    pub changes: Vec<ChangeRow>,
    /// Channel availabilities the batch changed.
    pub ats: Vec<AtsRow>,
    /// The partition's ledger sequence after this batch.
    pub last_seq: u64,
}

impl CommitBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.event_status.is_empty()
            && self.positions.is_empty()
            && self.items.is_empty()
            && self.reservations.is_empty()
            && self.source_seqs.is_empty()
            && self.outbox.is_empty()
            && self.exceptions.is_empty()
            && self.exception_status.is_empty()
            && self.timers_set.is_empty()
            && self.timers_done.is_empty()
            && self.workflows.is_empty()
            && self.steps.is_empty()
            && self.changes.is_empty()
            && self.ats.is_empty()
    }
}

/// What a partition's writer needs to start: its state as of its last commit.
#[derive(Debug, Clone, Default)]
pub struct PartitionSnapshot {
    pub last_seq: u64,
    /// Empty from [`Store::load_partition_with`], which hands these rows over as it reads them.
    pub positions: Vec<PositionRow>,
    /// Empty from [`Store::load_partition_with`], like `positions`.
    pub items: Vec<ItemStateRow>,
    /// Only reservations in status `held` or `committed`.
    pub reservations: Vec<ReservationRow>,
    pub source_seqs: Vec<SourceSeqRow>,
    /// Events still in status `held` or `forwarding`, in log order.
    pub held_events: Vec<EventRow>,
    pub timers: Vec<TimerRow>,
    /// Workflows still in progress.
    pub workflows: Vec<WorkflowRow>,
}

/// One row of a partition's item state, as [`Store::load_partition_with`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRow {
    Position(PositionRow),
    Item(ItemStateRow),
}

#[derive(Debug, Clone, Default)]
pub struct ExceptionFilter {
    pub kind: Option<ExceptionKind>,
    pub status: Option<ExceptionStatus>,
    pub limit: u32,
}

/// Storage for the engine. One instance per writer thread (plus one for reads); implementations
/// are synchronous because writers are dedicated threads.
pub trait Store: DeliveryStore + ExceptionStore + ReconStore + TraceStore + Send {
    /// Creates or upgrades the schema and checks the partition count the data was written with.
    fn migrate(&mut self, partitions: u32) -> Result<()>;
    /// A partition's state as of its last commit, one consistent read. Its positions and item
    /// states are not collected but handed to `rows` one at a time as they are read, every
    /// position first, then every item state, each in item order, so a million positions never
    /// sit in memory as rows beside the state built from them. An error from `rows` ends the
    /// load with that error.
    fn load_partition_with(
        &mut self,
        partition: u32,
        rows: &mut dyn FnMut(StateRow) -> Result<()>,
    ) -> Result<PartitionSnapshot>;

    /// [`Store::load_partition_with`] with the positions and item states collected into the
    /// snapshot.
    fn load_partition(&mut self, partition: u32) -> Result<PartitionSnapshot> {
        let (mut positions, mut items) = (Vec::new(), Vec::new());
        let mut snapshot = self.load_partition_with(partition, &mut |row| {
            match row {
                StateRow::Position(row) => positions.push(row),
                StateRow::Item(row) => items.push(row),
            }
            Ok(())
        })?;
        snapshot.positions = positions;
        snapshot.items = items;
        Ok(snapshot)
    }
    /// Writes the whole batch in one transaction, durably, or nothing.
    fn commit(&mut self, batch: &CommitBatch) -> Result<()>;

    /// Commits several batches (of several partitions) in one transaction: all or none.
    /// Stores whose writers serialize on one lock (SQLite) commit partitions together this way.
    fn commit_all(&mut self, batches: &[&CommitBatch]) -> Result<()>;
    /// The partition count the data was written with (`None`: a new store). Reads only: it
    /// never creates or migrates the schema.
    fn recorded_partitions(&mut self) -> Result<Option<u32>>;
    /// The idempotency key lookup.
    fn find_event(&mut self, source: &str, id: &str) -> Result<Option<EventRow>>;
    /// Fingerprints `key_hash(source, id)` of every logged event of a partition.
    fn key_hashes(&mut self, partition: u32) -> Result<Vec<u64>>;
    /// The log of a partition after `after_seq`, in order, at most `limit` rows.
    fn read_events(&mut self, partition: u32, after_seq: u64, limit: u32) -> Result<Vec<EventRow>>;
    /// Events of `partition` logged at ledger sequence `from_seq` or later whose envelope names
    /// `item` (an `"item":"<item>"` member anywhere in it, as the engine writes envelopes:
    /// compact JSON), newest first, at most `limit`. The caller bounds the rows read by
    /// choosing `from_seq` (an item's timeline looks at the newest part of the log only).
    fn events_naming(
        &mut self,
        partition: u32,
        item: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>>;
    fn find_reservation(&mut self, id: &str) -> Result<Option<ReservationRow>>;
    fn list_exceptions(&mut self, filter: &ExceptionFilter) -> Result<Vec<ExceptionRecord>>;
    /// Open (status `open` or `acknowledged`) exceptions by kind.
    fn exception_counts(&mut self) -> Result<Vec<(ExceptionKind, u64)>>;
    /// A workflow and its history, oldest step first.
    fn find_workflow(&mut self, key: &str) -> Result<Option<(WorkflowRow, Vec<StepRow>)>>;
    /// Workflows of a kind, most recently changed first.
    fn list_workflows(&mut self, filter: &WorkflowFilter) -> Result<Vec<WorkflowRow>>;
    /// Pending outbox rows, oldest first.
    fn outbox(&mut self, endpoint: Option<&str>, limit: u32) -> Result<Vec<StoredOutbox>>;
}

/// What an envelope naming `item` contains: `"item":` and the item as a JSON string, exactly
/// as `serde_json` writes it (both dialects search for this text, case-sensitively).
pub(crate) fn item_member(item: &str) -> String {
    format!(
        "\"item\":{}",
        serde_json::to_string(item).expect("a string serializes")
    )
}

pub fn parse_exception_kind(raw: &str) -> Result<ExceptionKind> {
    ExceptionKind::parse(raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown exception kind {raw:?}")))
}

pub fn parse_exception_status(raw: &str) -> Result<ExceptionStatus> {
    ExceptionStatus::parse(raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown exception status {raw:?}")))
}
