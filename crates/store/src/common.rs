//! Pieces both implementations share: migration bookkeeping, meta keys and row decoding helpers.

use crate::{EventStatus, Result, StoreError};

// Column lists both dialects share, in the order their statements bind them.
macro_rules! event_columns {
    () => {
        "partition, seq, source, id, type, time_us, received_at_us, correlation_id, payload_hash, status, envelope"
    };
}

macro_rules! position_columns {
    () => {
        "partition, item, location, lot, on_hand, quarantined, damaged, returns_pending, picked, allocated, \
         reserved, in_transit, incoming, safety_stock, extra, updated_seq"
    };
}

macro_rules! reservation_columns {
    () => {
        "partition, id, channel, status, lines, request_hash, expires_at_us, created_seq, updated_seq"
    };
}

macro_rules! exception_columns {
    () => {
        "id, kind, status, entity, correlation_id, reason, raw, created_at_us, updated_at_us"
    };
}

macro_rules! dead_letter_columns {
    () => {
        "id, partition, endpoint, key, kind, ledger_seq, priority, payload, correlation_id, created_at_us, \
         status, reason, attempts, last_status, last_response, exception_id, parked_at_us, updated_at_us, \
         actor, note"
    };
}

/// One schema migration; applied in `version` order and recorded in `schema_migrations`.
pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The `meta` key holding the partition count the data was written with.
pub(crate) const PARTITIONS_KEY: &str = "partitions";

/// The `meta` key holding a partition's ledger sequence after its last commit.
pub(crate) fn last_seq_key(partition: u32) -> String {
    format!("last_seq:{partition}")
}

/// Checks the stored partition count (if any) against the configured one.
pub(crate) fn parse_partitions(stored: &str) -> Result<u32> {
    stored
        .parse()
        .map_err(|_| StoreError::Corrupt(format!("meta {PARTITIONS_KEY} is {stored:?}")))
}

pub(crate) fn check_partitions(stored: &str, configured: u32) -> Result<()> {
    let stored = parse_partitions(stored)?;
    if stored == configured {
        return Ok(());
    }
    Err(StoreError::Config(format!(
        "the store was created with {stored} partitions but {configured} are configured; \
         the partition count cannot change once data is written (configure {stored} partitions or start a new store)"
    )))
}

pub(crate) fn parse_u64(raw: &str, what: &str) -> Result<u64> {
    raw.parse()
        .map_err(|_| StoreError::Corrupt(format!("{what} is {raw:?}, not a number")))
}

pub(crate) fn partition(raw: i64) -> Result<u32> {
    u32::try_from(raw).map_err(|_| StoreError::Corrupt(format!("partition {raw} is out of range")))
}

pub(crate) fn priority(raw: i64) -> Result<u8> {
    u8::try_from(raw)
        .map_err(|_| StoreError::Corrupt(format!("outbox priority {raw} is out of range")))
}

pub(crate) fn outbox_kind(raw: &str) -> Result<crate::OutboxKind> {
    crate::OutboxKind::parse(raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown outbox kind {raw:?}")))
}

pub(crate) fn event_status(raw: &str) -> Result<EventStatus> {
    EventStatus::parse(raw)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown event status {raw:?}")))
}

/// The control numbers after `last`: `count` of them, wrapping to 1 after `max`. Returns the
/// first and the new last.
pub(crate) fn control_range(last: u64, count: u32, max: u64) -> (u64, u64) {
    let max = max.max(1);
    let next = |n: u64| if n >= max { 1 } else { n + 1 };
    let first = next(last);
    let mut end = first;
    for _ in 1..count {
        end = next(end);
    }
    (first, end)
}
