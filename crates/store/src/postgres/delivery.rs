//! [`DeliveryStore`] on PostgreSQL.

use ::postgres::{Row, Transaction};
use crossdock_model::event::OWN_CORRELATION_PREFIX;
use crossdock_model::{ExceptionRecord, ExceptionStatus};

use super::{PgStore, Statements, select};
use crate::common;
use crate::{
    Ack, AuditRow, DeadLetter, DeadLetterAction, DeadLetterFilter, DeadLetterStatus, DeliveryStore,
    NewDeadLetter, OutboxKind, OutboxRow, Result, SentRow, StoreError,
};

const RAISE_EXCEPTION: &str = concat!(
    "INSERT INTO exceptions (",
    exception_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO UPDATE SET \
     status = excluded.status, reason = excluded.reason, raw = excluded.raw, \
     updated_at_us = excluded.updated_at_us, actor = '', note = '' \
     WHERE exceptions.status NOT IN ('open', 'acknowledged')"
);

/// [`SELECT_DEAD_LETTERS`] locking the rows, for acting on them.
const SELECT_DEAD_LETTERS_FOR_UPDATE: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE ($1::BIGINT[] IS NULL OR id = ANY($1)) \
     AND ($2::TEXT IS NULL OR endpoint = $2) AND ($3::TEXT IS NULL OR key = $3) \
     AND ($4::TEXT IS NULL OR status = $4) ORDER BY id LIMIT $5 FOR UPDATE"
);

const SELECT_BACKLOG: &str = "SELECT partition, endpoint, key, ledger_seq, priority, kind, payload, \
     correlation_id, created_at_us FROM outbox WHERE endpoint = $1 ORDER BY id";

const SELECT_SENT: &str = "SELECT endpoint, key, ledger_seq, value, sent_at_us FROM delivery_sent \
     WHERE endpoint = $1";

const DELETE_LATEST: &str = "DELETE FROM outbox WHERE endpoint = $1 AND key = $2 AND kind = 'latest' \
     AND ledger_seq <= $3";

const DELETE_ORDERED: &str = "DELETE FROM outbox WHERE endpoint = $1 AND key = $2 AND kind = 'ordered' \
     AND ledger_seq = $3";

/// A value written again at the same sequence (a resync after drift) records its new time.
const UPSERT_SENT: &str = "INSERT INTO delivery_sent (endpoint, key, ledger_seq, value, sent_at_us) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (endpoint, key) DO UPDATE SET \
     ledger_seq = excluded.ledger_seq, value = excluded.value, sent_at_us = excluded.sent_at_us \
     WHERE excluded.ledger_seq >= delivery_sent.ledger_seq";

const INSERT_DELIVERY_LOG: &str = "INSERT INTO delivery_log (correlation_id, endpoint, key, \
     ledger_seq, outcome, value, at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Closes the exceptions of the letters [`SUPERSEDE`] is about to retire.
const CLOSE_SUPERSEDED: &str = "UPDATE exceptions SET status = 'resolved', updated_at_us = $3, \
     actor = 'delivery', note = 'superseded by a newer value for the same key' \
     WHERE status IN ('open', 'acknowledged') AND id IN (SELECT exception_id FROM dead_letters \
     WHERE endpoint = $1 AND key = $2 AND kind = 'latest' AND status = 'parked' AND ledger_seq < $4)";

const SUPERSEDE: &str = "UPDATE dead_letters SET status = 'superseded', updated_at_us = $3 \
     WHERE endpoint = $1 AND key = $2 AND kind = 'latest' AND status = 'parked' AND ledger_seq < $4";

const INSERT_DEAD_LETTER: &str = "INSERT INTO dead_letters (partition, endpoint, key, kind, ledger_seq, \
     priority, payload, correlation_id, created_at_us, status, reason, attempts, last_status, \
     last_response, exception_id, parked_at_us, updated_at_us) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'parked', $10, $11, $12, $13, $14, $15, $15)";

const SELECT_DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE ($1::BIGINT[] IS NULL OR id = ANY($1)) \
     AND ($2::TEXT IS NULL OR endpoint = $2) AND ($3::TEXT IS NULL OR key = $3) \
     AND ($4::TEXT IS NULL OR status = $4) ORDER BY id LIMIT $5"
);

const COUNT_PARKED: &str = "SELECT endpoint, COUNT(*) FROM dead_letters WHERE status = 'parked' \
     GROUP BY endpoint ORDER BY endpoint";

const UPDATE_DEAD_LETTER: &str =
    "UPDATE dead_letters SET status = $2, updated_at_us = $3, actor = $4, note = $5 WHERE id = $1";

const CLOSE_EXCEPTION: &str = "UPDATE exceptions SET status = $2, updated_at_us = $3, actor = $4, \
     note = $5 WHERE id = $1 AND status IN ('open', 'acknowledged')";

const INSERT_OUTBOX_ONE: &str = "INSERT INTO outbox (partition, endpoint, key, ledger_seq, priority, \
     kind, payload, correlation_id, created_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)";

const INSERT_AUDIT: &str = "INSERT INTO audit (at_us, actor, action, subject, note, detail) \
     VALUES ($1, $2, $3, $4, $5, $6)";

const SELECT_AUDIT: &str = "SELECT id, at_us, actor, action, subject, note, detail FROM audit \
     ORDER BY id DESC LIMIT $1";

impl DeliveryStore for PgStore {
    fn lane_backlog(&mut self, endpoint: &str) -> Result<Vec<OutboxRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_BACKLOG,
            &[&endpoint],
            backlog_row,
        )
    }

    fn sent_values(&mut self, endpoint: &str) -> Result<Vec<SentRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_SENT,
            &[&endpoint],
            |row| {
                Ok(SentRow {
                    endpoint: row.try_get(0)?,
                    key: row.try_get(1)?,
                    ledger_seq: row.try_get::<_, i64>(2)? as u64,
                    value: row.try_get(3)?,
                    sent_at_us: row.try_get(4)?,
                })
            },
        )
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
        let mut tx = self.client.transaction()?;
        let st = &mut self.statements;
        let raise = st.get(&mut tx, RAISE_EXCEPTION)?;
        for x in exceptions.iter().chain(parks.iter().map(|l| &l.exception)) {
            tx.execute(
                &raise,
                &[
                    &x.id,
                    &x.kind.as_str(),
                    &x.status.as_str(),
                    &x.entity,
                    &x.correlation_id,
                    &x.reason,
                    &x.raw,
                    &x.created_at.as_micros(),
                    &x.updated_at.as_micros(),
                ],
            )?;
        }
        park_in(&mut tx, st, parks)?;
        acks_in(&mut tx, st, endpoint, acks, at_us)?;
        tx.commit()?;
        Ok(())
    }

    fn dead_letters(&mut self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let status = filter.status.map(DeadLetterStatus::as_str);
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_DEAD_LETTERS,
            &[
                &filter.ids,
                &filter.endpoint,
                &filter.key,
                &status,
                &i64::from(filter.limit),
            ],
            dead_letter_row,
        )
    }

    fn dead_letter_counts(&mut self) -> Result<Vec<(String, u64)>> {
        select(
            &mut self.client,
            &mut self.statements,
            COUNT_PARKED,
            &[],
            |row| Ok((row.try_get(0)?, row.try_get::<_, i64>(1)? as u64)),
        )
    }

    fn act_on_dead_letters(
        &mut self,
        filter: &DeadLetterFilter,
        action: DeadLetterAction,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Vec<DeadLetter>> {
        let mut tx = self.client.transaction()?;
        let st = &mut self.statements;
        let parked = Some(DeadLetterStatus::Parked.as_str());
        let mut letters = select(
            &mut tx,
            st,
            SELECT_DEAD_LETTERS_FOR_UPDATE,
            &[
                &filter.ids,
                &filter.endpoint,
                &filter.key,
                &parked,
                &i64::from(filter.limit),
            ],
            dead_letter_row,
        )?;
        let (status, exception_status) = match action {
            DeadLetterAction::Retry => (DeadLetterStatus::Retried, ExceptionStatus::Replayed),
            DeadLetterAction::Discard => (DeadLetterStatus::Discarded, ExceptionStatus::Discarded),
        };
        let update = st.get(&mut tx, UPDATE_DEAD_LETTER)?;
        let close = st.get(&mut tx, CLOSE_EXCEPTION)?;
        let outbox = st.get(&mut tx, INSERT_OUTBOX_ONE)?;
        for l in &mut letters {
            tx.execute(&update, &[&l.id, &status.as_str(), &at_us, &actor, &note])?;
            tx.execute(
                &close,
                &[
                    &l.exception_id,
                    &exception_status.as_str(),
                    &at_us,
                    &actor,
                    &note,
                ],
            )?;
            if action == DeadLetterAction::Retry {
                let r = &l.row;
                tx.execute(
                    &outbox,
                    &[
                        &i64::from(r.partition),
                        &r.endpoint,
                        &r.key,
                        &(r.ledger_seq as i64),
                        &i64::from(r.priority),
                        &r.kind.as_str(),
                        &r.payload,
                        &r.correlation_id,
                        &r.created_at_us,
                    ],
                )?;
            }
            l.status = status;
            l.updated_at_us = at_us;
            l.actor = actor.to_string();
            l.note = note.to_string();
        }
        if !letters.is_empty() {
            let ids: Vec<i64> = letters.iter().map(|l| l.id).collect();
            let detail = serde_json::json!({ "ids": ids }).to_string();
            let audit = st.get(&mut tx, INSERT_AUDIT)?;
            tx.execute(
                &audit,
                &[
                    &at_us,
                    &actor,
                    &action.as_str(),
                    &"dead_letters",
                    &note,
                    &detail,
                ],
            )?;
        }
        tx.commit()?;
        Ok(letters)
    }

    fn webhook_receipt(&mut self, channel: &str, id: &str) -> Result<Option<String>> {
        let stmt = self.statements.get(
            &mut self.client,
            "SELECT outcome FROM webhook_receipts WHERE channel = $1 AND id = $2",
        )?;
        let rows = self.client.query(&stmt, &[&channel, &id])?;
        Ok(match rows.first() {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        })
    }

    fn next_control_numbers(&mut self, scope: &str, count: u32, max: u64) -> Result<u64> {
        let mut tx = self.client.transaction()?;
        // Inserting first takes the row lock, so concurrent callers queue instead of racing.
        tx.execute(
            "INSERT INTO control_numbers (scope, last) VALUES ($1, 0) ON CONFLICT (scope) DO NOTHING",
            &[&scope],
        )?;
        let last: i64 = tx
            .query_one(
                "SELECT last FROM control_numbers WHERE scope = $1 FOR UPDATE",
                &[&scope],
            )?
            .try_get(0)?;
        let (first, last) = common::control_range(last as u64, count, max);
        tx.execute(
            "UPDATE control_numbers SET last = $2 WHERE scope = $1",
            &[&scope, &(last as i64)],
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
        let mut tx = self.client.transaction()?;
        let rows = tx.query(
            concat!(
                "UPDATE exceptions SET status = $2, updated_at_us = $3, actor = $4, note = $5 \
                 WHERE id = $1 RETURNING ",
                exception_columns!()
            ),
            &[&id, &status.as_str(), &at_us, &actor, &note],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let record = super::exception_row(row)?;
        let subject = format!("exception:{id}");
        tx.execute(
            INSERT_AUDIT,
            &[&at_us, &actor, &status.as_str(), &subject, &note, &"{}"],
        )?;
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
        let stmt = self.statements.get(
            &mut self.client,
            "INSERT INTO webhook_receipts (channel, id, topic, outcome, received_at_us) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (channel, id) DO NOTHING",
        )?;
        self.client
            .execute(&stmt, &[&channel, &id, &topic, &outcome, &at_us])?;
        Ok(())
    }

    fn audit_log(&mut self, limit: u32) -> Result<Vec<AuditRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_AUDIT,
            &[&i64::from(limit)],
            |row| {
                Ok(AuditRow {
                    id: row.try_get(0)?,
                    at_us: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    subject: row.try_get(4)?,
                    note: row.try_get(5)?,
                    detail: row.try_get(6)?,
                })
            },
        )
    }
}

/// Moves messages from the outbox to the dead-letter queue; an older parked "latest" letter of
/// the same key is superseded (and its record resolved).
fn park_in(tx: &mut Transaction<'_>, st: &mut Statements, letters: &[NewDeadLetter]) -> Result<()> {
    if letters.is_empty() {
        return Ok(());
    }
    let latest = st.get(tx, DELETE_LATEST)?;
    let ordered = st.get(tx, DELETE_ORDERED)?;
    let supersede = st.get(tx, SUPERSEDE)?;
    let close = st.get(tx, CLOSE_SUPERSEDED)?;
    let insert = st.get(tx, INSERT_DEAD_LETTER)?;
    for l in letters {
        let r = &l.row;
        let seq = r.ledger_seq as i64;
        let at = l.exception.created_at.as_micros();
        match r.kind {
            OutboxKind::Latest => {
                tx.execute(&latest, &[&r.endpoint, &r.key, &seq])?;
                tx.execute(&close, &[&r.endpoint, &r.key, &at, &seq])?;
                tx.execute(&supersede, &[&r.endpoint, &r.key, &at, &seq])?;
            }
            OutboxKind::Ordered => {
                tx.execute(&ordered, &[&r.endpoint, &r.key, &seq])?;
            }
        }
        tx.execute(
            &insert,
            &[
                &i64::from(r.partition),
                &r.endpoint,
                &r.key,
                &r.kind.as_str(),
                &seq,
                &i64::from(r.priority),
                &r.payload,
                &r.correlation_id,
                &r.created_at_us,
                &l.reason,
                &i64::from(l.attempts),
                &l.last_status.map(i64::from),
                &l.last_response,
                &l.exception.id,
                &at,
            ],
        )?;
    }
    Ok(())
}

/// Removes finished messages from the outbox and records delivered values.
fn acks_in(
    tx: &mut Transaction<'_>,
    st: &mut Statements,
    endpoint: &str,
    acks: &[Ack],
    at_us: i64,
) -> Result<()> {
    if acks.is_empty() {
        return Ok(());
    }
    let latest = st.get(tx, DELETE_LATEST)?;
    let ordered = st.get(tx, DELETE_ORDERED)?;
    let sent = st.get(tx, UPSERT_SENT)?;
    let log = st.get(tx, INSERT_DELIVERY_LOG)?;
    for a in acks {
        let seq = a.ledger_seq as i64;
        let delete = match a.kind {
            OutboxKind::Latest => &latest,
            OutboxKind::Ordered => &ordered,
        };
        tx.execute(delete, &[&endpoint, &a.key, &seq])?;
        if a.delivered && a.kind == OutboxKind::Latest {
            tx.execute(&sent, &[&endpoint, &a.key, &seq, &a.value, &at_us])?;
        }
        if let Some(c) = a
            .correlation_id
            .as_ref()
            .filter(|c| !c.starts_with(OWN_CORRELATION_PREFIX))
        {
            tx.execute(
                &log,
                &[c, &endpoint, &a.key, &seq, &a.outcome(), &a.value, &at_us],
            )?;
        }
    }
    Ok(())
}

fn backlog_row(row: &Row) -> Result<OutboxRow> {
    Ok(OutboxRow {
        partition: common::partition(row.try_get(0)?)?,
        endpoint: row.try_get(1)?,
        key: row.try_get(2)?,
        ledger_seq: row.try_get::<_, i64>(3)? as u64,
        priority: common::priority(row.try_get(4)?)?,
        kind: common::outbox_kind(row.try_get(5)?)?,
        payload: row.try_get(6)?,
        correlation_id: row.try_get(7)?,
        created_at_us: row.try_get(8)?,
    })
}

pub(super) fn dead_letter_row(row: &Row) -> Result<DeadLetter> {
    let status: &str = row.try_get(10)?;
    Ok(DeadLetter {
        id: row.try_get(0)?,
        row: OutboxRow {
            partition: common::partition(row.try_get(1)?)?,
            endpoint: row.try_get(2)?,
            key: row.try_get(3)?,
            kind: common::outbox_kind(row.try_get(4)?)?,
            ledger_seq: row.try_get::<_, i64>(5)? as u64,
            priority: common::priority(row.try_get(6)?)?,
            payload: row.try_get(7)?,
            correlation_id: row.try_get(8)?,
            created_at_us: row.try_get(9)?,
        },
        status: DeadLetterStatus::parse(status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown dead letter status {status:?}")))?,
        reason: row.try_get(11)?,
        attempts: row.try_get::<_, i64>(12)? as u32,
        last_status: row.try_get::<_, Option<i64>>(13)?.map(|s| s as u16),
        last_response: row.try_get(14)?,
        exception_id: row.try_get(15)?,
        parked_at_us: row.try_get(16)?,
        updated_at_us: row.try_get(17)?,
        actor: row.try_get(18)?,
        note: row.try_get(19)?,
    })
}
