//! [`DeliveryStore`] on SQLite.

use crossdock_model::event::OWN_CORRELATION_PREFIX;
use crossdock_model::{ExceptionRecord, ExceptionStatus};
use rusqlite::{OptionalExtension, Row, Transaction, TransactionBehavior, params};

use super::{INSERT_OUTBOX, SqliteStore, select, text};
use crate::common;
use crate::delivery::ids_json;
use crate::{
    Ack, AuditRow, DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterStatus, DeliveryStore,
    NewDeadLetter, OutboxKind, OutboxRow, Result, SentRow, StoreError,
};

const RAISE_EXCEPTION: &str = concat!(
    "INSERT INTO exceptions (",
    exception_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO UPDATE SET \
     status = excluded.status, reason = excluded.reason, raw = excluded.raw, \
     updated_at_us = excluded.updated_at_us, actor = '', note = '' \
     WHERE exceptions.status NOT IN ('open', 'acknowledged')"
);

const SELECT_EXCEPTION: &str = concat!(
    "SELECT ",
    exception_columns!(),
    " FROM exceptions WHERE id = ?1"
);

const SELECT_BACKLOG: &str = "SELECT partition, endpoint, key, ledger_seq, priority, kind, payload, \
     correlation_id, created_at_us FROM outbox WHERE endpoint = ?1 ORDER BY id";

const SELECT_SENT: &str = "SELECT endpoint, key, ledger_seq, value, sent_at_us FROM delivery_sent \
     WHERE endpoint = ?1";

const DELETE_LATEST: &str = "DELETE FROM outbox WHERE endpoint = ?1 AND key = ?2 AND kind = 'latest' \
     AND ledger_seq <= ?3";

const DELETE_ORDERED: &str = "DELETE FROM outbox WHERE endpoint = ?1 AND key = ?2 AND kind = 'ordered' \
     AND ledger_seq = ?3";

/// A value written again at the same sequence (a resync after drift) records its new time.
const UPSERT_SENT: &str = "INSERT INTO delivery_sent (endpoint, key, ledger_seq, value, sent_at_us) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (endpoint, key) DO UPDATE SET \
     ledger_seq = excluded.ledger_seq, value = excluded.value, sent_at_us = excluded.sent_at_us \
     WHERE excluded.ledger_seq >= delivery_sent.ledger_seq";

const INSERT_DELIVERY_LOG: &str = "INSERT INTO delivery_log (correlation_id, endpoint, key, \
     ledger_seq, outcome, value, at_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Closes the exceptions of the letters [`SUPERSEDE`] is about to retire.
const CLOSE_SUPERSEDED: &str = "UPDATE exceptions SET status = 'resolved', updated_at_us = ?3, \
     actor = 'delivery', note = 'superseded by a newer value for the same key' \
     WHERE status IN ('open', 'acknowledged') AND id IN (SELECT exception_id FROM dead_letters \
     WHERE endpoint = ?1 AND key = ?2 AND kind = 'latest' AND status = 'parked' AND ledger_seq < ?4)";

const SUPERSEDE: &str = "UPDATE dead_letters SET status = 'superseded', updated_at_us = ?3 \
     WHERE endpoint = ?1 AND key = ?2 AND kind = 'latest' AND status = 'parked' AND ledger_seq < ?4";

const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (partition, endpoint, key, kind, ledger_seq, \
     priority, payload, correlation_id, created_at_us, status, reason, attempts, last_status, \
     last_response, exception_id, parked_at_us, updated_at_us) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'parked', ?10, ?11, ?12, ?13, ?14, ?15, ?15)";

const SELECT_DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE (?1 IS NULL OR id IN (SELECT value FROM json_each(?1))) \
     AND (?2 IS NULL OR endpoint = ?2) AND (?3 IS NULL OR key = ?3) AND (?4 IS NULL OR status = ?4) \
     ORDER BY id LIMIT ?5"
);

const COUNT_PARKED: &str = "SELECT endpoint, COUNT(*) FROM dead_letters WHERE status = 'parked' \
     GROUP BY endpoint ORDER BY endpoint";

const UPDATE_DEAD_LETTER: &str =
    "UPDATE dead_letters SET status = ?2, updated_at_us = ?3, actor = ?4, note = ?5 WHERE id = ?1";

const CLOSE_EXCEPTION: &str = "UPDATE exceptions SET status = ?2, updated_at_us = ?3, actor = ?4, \
     note = ?5 WHERE id = ?1 AND status IN ('open', 'acknowledged')";

const INSERT_AUDIT: &str = "INSERT INTO audit (at_us, actor, action, subject, note, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

const SELECT_AUDIT: &str = "SELECT id, at_us, actor, action, subject, note, detail FROM audit \
     ORDER BY id DESC LIMIT ?1";

impl DeliveryStore for SqliteStore {
    fn lane_backlog(&mut self, endpoint: &str) -> Result<Vec<OutboxRow>> {
        select(&self.conn, SELECT_BACKLOG, [endpoint], backlog_row)
    }

    fn sent_values(&mut self, endpoint: &str) -> Result<Vec<SentRow>> {
        select(&self.conn, SELECT_SENT, [endpoint], |row| {
            Ok(SentRow {
                endpoint: row.get(0)?,
                key: row.get(1)?,
                ledger_seq: row.get::<_, i64>(2)? as u64,
                value: row.get(3)?,
                sent_at_us: row.get(4)?,
            })
        })
    }

    fn record_results(
        &mut self,
        endpoint: &str,
        exceptions: &[ExceptionRecord],
        parks: &[NewDeadLetter],
        acks: &[Ack],
        at_us: i64,
    ) -> Result<()> {
        if exceptions.is_empty() && parks.is_empty() && acks.is_empty() {
            return Ok(());
        }
        let tx = self.write_tx()?;
        raise_exceptions(
            &tx,
            exceptions.iter().chain(parks.iter().map(|l| &l.exception)),
        )?;
        park_in(&tx, parks)?;
        acks_in(&tx, endpoint, acks, at_us)?;
        tx.commit()?;
        Ok(())
    }

    fn dead_letters(&mut self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        select(
            &self.conn,
            SELECT_DEAD_LETTERS,
            params![
                ids_json(&filter.ids),
                filter.endpoint,
                filter.key,
                filter.status.map(DeadLetterStatus::as_str),
                i64::from(filter.limit),
            ],
            dead_letter_row,
        )
    }

    fn dead_letter_counts(&mut self) -> Result<Vec<(String, u64)>> {
        select(&self.conn, COUNT_PARKED, [], |row| {
            Ok((row.get(0)?, row.get::<_, i64>(1)? as u64))
        })
    }

    fn act_on_dead_letters(
        &mut self,
        filter: &DeadLetterFilter,
        action: DeadLetterAction,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Vec<DeadLetter>> {
        let tx = self.write_tx()?;
        let mut letters = select(
            &tx,
            SELECT_DEAD_LETTERS,
            params![
                ids_json(&filter.ids),
                filter.endpoint,
                filter.key,
                DeadLetterStatus::Parked.as_str(),
                i64::from(filter.limit),
            ],
            dead_letter_row,
        )?;
        let (status, exception_status) = match action {
            DeadLetterAction::Retry => (DeadLetterStatus::Retried, ExceptionStatus::Replayed),
            DeadLetterAction::Discard => (DeadLetterStatus::Discarded, ExceptionStatus::Discarded),
        };
        {
            let mut update = tx.prepare_cached(UPDATE_DEAD_LETTER)?;
            let mut close = tx.prepare_cached(CLOSE_EXCEPTION)?;
            let mut outbox = tx.prepare_cached(INSERT_OUTBOX)?;
            for l in &mut letters {
                update.execute(params![l.id, status.as_str(), at_us, actor, note])?;
                close.execute(params![
                    l.exception_id,
                    exception_status.as_str(),
                    at_us,
                    actor,
                    note
                ])?;
                if action == DeadLetterAction::Retry {
                    let r = &l.row;
                    outbox.execute(params![
                        i64::from(r.partition),
                        r.endpoint,
                        r.key,
                        r.ledger_seq as i64,
                        i64::from(r.priority),
                        r.kind.as_str(),
                        r.payload,
                        r.correlation_id,
                        r.created_at_us,
                    ])?;
                }
                l.status = status;
                l.updated_at_us = at_us;
                l.actor = actor.to_string();
                l.note = note.to_string();
            }
        }
        if !letters.is_empty() {
            let ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
            tx.execute(
                INSERT_AUDIT,
                params![
                    at_us,
                    actor,
                    action.as_str(),
                    "dead_letters",
                    note,
                    serde_json::json!({ "ids": ids }).to_string()
                ],
            )?;
        }
        tx.commit()?;
        Ok(letters)
    }

    fn webhook_receipt(&mut self, channel: &str, id: &str) -> Result<Option<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT outcome FROM webhook_receipts WHERE channel = ?1 AND id = ?2",
        )?;
        let mut rows = stmt.query(params![channel, id])?;
        Ok(match rows.next()? {
            Some(row) => Some(row.get(0)?),
            None => None,
        })
    }

    fn next_control_numbers(&mut self, scope: &str, count: u32, max: u64) -> Result<u64> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx
            .query_row(
                "SELECT last FROM control_numbers WHERE scope = ?1",
                [scope],
                |row| row.get(0),
            )
            .optional()?;
        let (first, last) = common::control_range(last.unwrap_or(0) as u64, count, max);
        tx.execute(
            "INSERT INTO control_numbers (scope, last) VALUES (?1, ?2) \
             ON CONFLICT (scope) DO UPDATE SET last = excluded.last",
            params![scope, last as i64],
        )?;
        tx.commit()?;
        Ok(first)
    }

    fn set_exception_status(
        &mut self,
        id: &str,
        status: ExceptionStatus,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Option<ExceptionRecord>> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE exceptions SET status = ?2, updated_at_us = ?3, actor = ?4, note = ?5 \
             WHERE id = ?1",
            params![id, status.as_str(), at_us, actor, note],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        tx.execute(
            INSERT_AUDIT,
            params![
                at_us,
                actor,
                status.as_str(),
                format!("exception:{id}"),
                note,
                "{}"
            ],
        )?;
        let record =
            tx.query_row(SELECT_EXCEPTION, [id], |row| Ok(super::exception_row(row)))??;
        tx.commit()?;
        Ok(Some(record))
    }

    fn record_webhook(
        &mut self,
        channel: &str,
        id: &str,
        topic: &str,
        outcome: &str,
        at_us: i64,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO webhook_receipts (channel, id, topic, outcome, received_at_us) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (channel, id) DO NOTHING",
            params![channel, id, topic, outcome, at_us],
        )?;
        Ok(())
    }

    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditRow>> {
        select(&self.conn, SELECT_AUDIT, [i64::from(limit)], |row| {
            Ok(AuditRow {
                id: row.get(0)?,
                at_us: row.get(1)?,
                actor: row.get(2)?,
                action: row.get(3)?,
                subject: row.get(4)?,
                note: row.get(5)?,
                detail: row.get(6)?,
            })
        })
    }
}

impl SqliteStore {
    fn write_tx(&mut self) -> Result<Transaction<'_>> {
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }
}

/// Records exceptions raised by delivery. A record that was closed (a retried message refused
/// again) opens again with the new reason; an open one is left as it is.
fn raise_exceptions<'a>(
    tx: &Transaction<'_>,
    records: impl Iterator<Item = &'a ExceptionRecord>,
) -> Result<()> {
    let mut stmt = tx.prepare_cached(RAISE_EXCEPTION)?;
    for x in records {
        stmt.execute(params![
            x.id,
            x.kind.as_str(),
            x.status.as_str(),
            x.entity,
            x.correlation_id,
            x.reason,
            x.raw,
            x.created_at.as_micros(),
            x.updated_at.as_micros(),
        ])?;
    }
    Ok(())
}

/// Moves messages from the outbox to the dead-letter queue; an older parked "latest" letter of
/// the same key is superseded (and its record resolved).
fn park_in(tx: &Transaction<'_>, letters: &[NewDeadLetter]) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let mut latest = tx.prepare_cached(DELETE_LATEST)?;
    let mut ordered = tx.prepare_cached(DELETE_ORDERED)?;
    let mut supersede = tx.prepare_cached(SUPERSEDE)?;
    let mut close = tx.prepare_cached(CLOSE_SUPERSEDED)?;
    let mut insert = tx.prepare_cached(INSERT_DEAD_LETTER)?;
    for l in letters {
        let r = &l.row;
        let seq = r.ledger_seq as i64;
        let at = l.exception.created_at.as_micros();
        match r.kind {
            OutboxKind::Latest => {
                latest.execute(params![r.endpoint, r.key, seq])?;
                close.execute(params![r.endpoint, r.key, at, seq])?;
                supersede.execute(params![r.endpoint, r.key, at, seq])?;
            }
            OutboxKind::Ordered => {
                ordered.execute(params![r.endpoint, r.key, seq])?;
            }
        }
        insert.execute(params![
            i64::from(r.partition),
            r.endpoint,
            r.key,
            r.kind.as_str(),
            seq,
            i64::from(r.priority),
            r.payload,
            r.correlation_id,
            r.created_at_us,
            l.reason,
            i64::from(l.attempts),
            l.last_status.map(i64::from),
            l.last_response,
            l.exception.id,
            at,
        ])?;
    }
    Ok(())
}

/// Removes finished messages from the outbox and records delivered values.
fn acks_in(tx: &Transaction<'_>, endpoint: &str, acks: &[Ack], at_us: i64) -> Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    let mut latest = tx.prepare_cached(DELETE_LATEST)?;
    let mut ordered = tx.prepare_cached(DELETE_ORDERED)?;
    let mut sent = tx.prepare_cached(UPSERT_SENT)?;
    let mut log = tx.prepare_cached(INSERT_DELIVERY_LOG)?;
    for a in acks {
        let seq = a.ledger_seq as i64;
        match a.kind {
            OutboxKind::Latest => latest.execute(params![endpoint, a.key, seq])?,
            OutboxKind::Ordered => ordered.execute(params![endpoint, a.key, seq])?,
        };
        if a.delivered && a.kind == OutboxKind::Latest {
            sent.execute(params![endpoint, a.key, seq, a.value, at_us])?;
        }
        if let Some(c) = a
            .correlation_id
            .as_ref()
            .filter(|c| !c.starts_with(OWN_CORRELATION_PREFIX))
        {
            log.execute(params![
                c,
                endpoint,
                a.key,
                seq,
                a.outcome(),
                a.value,
                at_us
            ])?;
        }
    }
    Ok(())
}

fn backlog_row(row: &Row<'_>) -> Result<OutboxRow> {
    Ok(OutboxRow {
        partition: common::partition(row.get(0)?)?,
        endpoint: row.get(1)?,
        key: row.get(2)?,
        ledger_seq: row.get::<_, i64>(3)? as u64,
        priority: common::priority(row.get(4)?)?,
        kind: common::outbox_kind(text(row, 5)?)?,
        payload: row.get(6)?,
        correlation_id: row.get(7)?,
        created_at_us: row.get(8)?,
    })
}

pub(super) fn dead_letter_row(row: &Row<'_>) -> Result<DeadLetter> {
    let status = text(row, 10)?;
    Ok(DeadLetter {
        id: row.get(0)?,
        row: OutboxRow {
            partition: common::partition(row.get(1)?)?,
            endpoint: row.get(2)?,
            key: row.get(3)?,
            kind: common::outbox_kind(text(row, 4)?)?,
            ledger_seq: row.get::<_, i64>(5)? as u64,
            priority: common::priority(row.get(6)?)?,
            payload: row.get(7)?,
            correlation_id: row.get(8)?,
            created_at_us: row.get(9)?,
        },
        status: DeadLetterStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown dead letter status {status:?}")))?,
        reason: row.get(11)?,
        attempts: row.get::<_, i64>(12)? as u32,
        last_status: row.get::<_, Option<i64>>(13)?.map(|s| s as u16),
        last_response: row.get(14)?,
        exception_id: row.get(15)?,
        parked_at_us: row.get(16)?,
        updated_at_us: row.get(17)?,
        actor: row.get(18)?,
        note: row.get(19)?,
    })
}
