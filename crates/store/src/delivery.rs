//! What delivery lanes keep in the store beside the outbox the engine fills: the newest value
//! delivered per `(endpoint, key)`, the dead-letter queue and the audit log of operator actions.
//!
//! Delivery has its own connection (its writes never share a transaction with a ledger commit),
//! so every method here is one short transaction of its own.

use crossdock_model::{ExceptionRecord, ExceptionStatus};

use crate::{OutboxKind, OutboxRow, Result};

/// The newest value delivered for a key. Its `ledger_seq` only ever grows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentRow {
    pub endpoint: String,
    pub key: String,
    pub ledger_seq: u64,
    /// The quantity sent, for availability messages.
    pub value: Option<i64>,
    pub sent_at_us: i64,
}

/// A message a lane is finished with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    pub key: String,
    pub kind: OutboxKind,
    pub ledger_seq: u64,
    /// `false` when it was dropped unsent because a newer value was already delivered.
    pub delivered: bool,
    pub value: Option<i64>,
    /// The correlation id of the change the message carried: the message is kept in
    /// `delivery_log` under it, so a trace shows where the change went.
    pub correlation_id: Option<String>,
}

impl Ack {
    /// How the message ended, as `delivery_log` keeps it.
    pub fn outcome(&self) -> &'static str {
        if self.delivered {
            "delivered"
        } else {
            "superseded"
        }
    }
}

/// A message a lane gives up on, with why.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDeadLetter {
    pub row: OutboxRow,
    pub reason: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_response: String,
    /// The `delivery_failed` record an operator sees.
    pub exception: ExceptionRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterStatus {
    Parked,
    /// Put back in the outbox by an operator.
    Retried,
    Discarded,
    /// A newer value for the same key was parked after it: retrying this one could only move the
    /// target backwards.
    Superseded,
}

impl DeadLetterStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterStatus::Parked => "parked",
            DeadLetterStatus::Retried => "retried",
            DeadLetterStatus::Discarded => "discarded",
            DeadLetterStatus::Superseded => "superseded",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "parked" => Some(DeadLetterStatus::Parked),
            "retried" => Some(DeadLetterStatus::Retried),
            "discarded" => Some(DeadLetterStatus::Discarded),
            "superseded" => Some(DeadLetterStatus::Superseded),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub id: i64,
    pub row: OutboxRow,
    pub status: DeadLetterStatus,
    pub reason: String,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_response: String,
    pub exception_id: String,
    pub parked_at_us: i64,
    pub updated_at_us: i64,
    /// Who made the last status change and why; empty while parked.
    pub actor: String,
    pub note: String,
}

/// Selects dead letters; every given condition must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadLetterFilter {
    pub ids: Option<Vec<i64>>,
    pub endpoint: Option<String>,
    pub key: Option<String>,
    pub status: Option<DeadLetterStatus>,
    pub limit: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadLetterAction {
    /// Back into the outbox, to be sent again.
    Retry,
    Discard,
}

impl DeadLetterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterAction::Retry => "dlq.retry",
            DeadLetterAction::Discard => "dlq.discard",
        }
    }
}

/// One operator action, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub id: i64,
    pub at_us: i64,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub note: String,
    /// JSON: what the action touched.
    pub detail: String,
}

pub trait DeliveryStore {
    /// Every pending outbox row of an endpoint, oldest first (a lane's backlog at start).
    fn lane_backlog(&mut self, endpoint: &str) -> Result<Vec<OutboxRow>>;
    fn sent_values(&mut self, endpoint: &str) -> Result<Vec<SentRow>>;
    /// Records a lane's results in one transaction: exceptions raised (a closed record of the
    /// same id opens again), messages parked (moved from the outbox to the dead-letter queue; an
    /// older parked "latest" letter of the same key becomes superseded and its record resolved),
    /// and messages finished (a "latest" ack removes every row of its key up to its sequence and
    /// records the value delivered).
    fn record_results(
        &mut self,
        endpoint: &str,
        exceptions: &[ExceptionRecord],
        parks: &[NewDeadLetter],
        acks: &[Ack],
        at_us: i64,
    ) -> Result<()>;
    fn record_acks(&mut self, endpoint: &str, acks: &[Ack], at_us: i64) -> Result<()> {
        self.record_results(endpoint, &[], &[], acks, at_us)
    }
    fn park(&mut self, letters: &[NewDeadLetter]) -> Result<()> {
        self.record_results("", &[], letters, &[], 0)
    }
    /// Records exceptions raised outside a ledger commit.
    fn add_exceptions(&mut self, records: &[ExceptionRecord]) -> Result<()> {
        self.record_results("", records, &[], &[], 0)
    }
    fn dead_letters(&mut self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>>;
    /// Parked letters per endpoint.
    fn dead_letter_counts(&mut self) -> Result<Vec<(String, u64)>>;
    /// Retries or discards the parked letters `filter` selects (its status is ignored), closes
    /// their exception records and writes one audit row; returns the letters as changed.
    fn act_on_dead_letters(
        &mut self,
        filter: &DeadLetterFilter,
        action: DeadLetterAction,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Vec<DeadLetter>>;
    /// The newest audit rows first.
    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditRow>>;
    /// The answer given to an inbound webhook already handled, if it was.
    fn webhook_receipt(&mut self, channel: &str, id: &str) -> Result<Option<String>>;
    /// Takes the next `count` control numbers of `scope` (1, 2, ... after the last one taken),
    /// durably, wrapping to 1 after `max`; returns the first. A number is never handed out twice
    /// before the wrap, also across restarts and between processes sharing the store.
    fn next_control_numbers(&mut self, scope: &str, count: u32, max: u64) -> Result<u64>;
    /// Sets the status of exception `id` with the actor and note of the change and one audit
    /// row; returns the record as changed, `None` when there is no such exception.
    fn set_exception_status(
        &mut self,
        id: &str,
        status: ExceptionStatus,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Option<ExceptionRecord>>;
    /// Records a handled inbound webhook (the first record of an id stays).
    fn record_webhook(
        &mut self,
        channel: &str,
        id: &str,
        topic: &str,
        outcome: &str,
        at_us: i64,
    ) -> Result<()>;
}

pub(crate) fn ids_json(ids: &Option<Vec<i64>>) -> Option<String> {
    ids.as_ref()
        .map(|ids| serde_json::to_string(ids).expect("ids serialize"))
}
