//! Trace reads on SQLite.

use rusqlite::{OptionalExtension, params};

use super::delivery::dead_letter_row;
use super::workflow::step_row;
use super::{SqliteStore, event_row, outbox_row, select};
use crossdock_model::event::own_correlation_keys;

use crate::trace::{DeliveryLogRow, TraceRows, TraceStore, by_partition, journal_of_events};
use crate::{Result, SentRow};

const EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE correlation_id = ?1 AND substr(correlation_id, 1, 6) <> 'event:' \
     ORDER BY received_at_us, partition, seq LIMIT ?2"
);

/// The input whose own key is its correlation id (`event:<source>/<id>`).
const EVENT_BY_KEY: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE source = ?1 AND id = ?2 AND correlation_id = ?3"
);

/// The journal row holding ledger sequence `?2`: the first commit ending at or after it.
const JOURNAL_AT: &str = "SELECT at_us, entries, last_seq FROM journal WHERE partition = ?1 \
     AND last_seq >= ?2 ORDER BY last_seq LIMIT 1";

const STEPS: &str = "SELECT key, n, from_state, to_state, at_us, seq, cause, correlation_id, \
     note FROM workflow_steps WHERE correlation_id = ?1 ORDER BY at_us, key, n LIMIT ?2";

const OUTBOX: &str = "SELECT id, partition, endpoint, key, ledger_seq, priority, kind, payload, \
     correlation_id, created_at_us FROM outbox WHERE correlation_id = ?1 ORDER BY id LIMIT ?2";

const DELIVERIES: &str = "SELECT endpoint, key, ledger_seq, outcome, value, at_us FROM \
     delivery_log WHERE correlation_id = ?1 ORDER BY id LIMIT ?2";

/// The first value delivered for `(endpoint, key)` at or after a ledger sequence.
const CARRIED: &str = "SELECT endpoint, key, ledger_seq, value, sent_at_us FROM delivery_sent_log \
     WHERE key = ?1 AND endpoint = ?2 AND ledger_seq >= ?3 ORDER BY sent_at_us, ledger_seq LIMIT 1";

const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE correlation_id = ?1 ORDER BY id LIMIT ?2"
);

impl TraceStore for SqliteStore {
    fn trace(&mut self, correlation_id: &str, limit: u32) -> Result<TraceRows> {
        let limit = i64::from(limit);
        let own = own_correlation_keys(correlation_id);
        let events = if own.is_empty() {
            select(
                &self.conn,
                EVENTS,
                params![correlation_id, limit],
                event_row,
            )?
        } else {
            let mut found = Vec::new();
            for (source, id) in own {
                found.extend(select(
                    &self.conn,
                    EVENT_BY_KEY,
                    params![source, id, correlation_id],
                    event_row,
                )?);
            }
            found
        };
        let mut journal = (Vec::new(), Vec::new());
        for (partition, seqs) in by_partition(&events) {
            let mut covered = None;
            for &seq in &seqs {
                if covered.is_some_and(|last| seq <= last) {
                    continue;
                }
                let row: Option<(i64, String, i64)> = self
                    .conn
                    .prepare_cached(JOURNAL_AT)?
                    .query_row(params![i64::from(partition), seq as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?;
                let Some((at_us, text, last_seq)) = row else {
                    break;
                };
                journal_of_events(partition, at_us, &text, &seqs, &mut journal)?;
                covered = Some(last_seq as u64);
            }
        }
        let mut carried = Vec::with_capacity(journal.1.len());
        for a in &journal.1 {
            carried.push(
                self.conn
                    .prepare_cached(CARRIED)?
                    .query_row(params![a.item, a.channel, a.seq as i64], |r| {
                        Ok(SentRow {
                            endpoint: r.get(0)?,
                            key: r.get(1)?,
                            ledger_seq: r.get::<_, i64>(2)? as u64,
                            value: r.get(3)?,
                            sent_at_us: r.get(4)?,
                        })
                    })
                    .optional()?,
            );
        }
        Ok(TraceRows {
            events,
            carried,
            changes: journal.0,
            ats: journal.1,
            steps: select(&self.conn, STEPS, params![correlation_id, limit], step_row)?,
            outbox: select(
                &self.conn,
                OUTBOX,
                params![correlation_id, limit],
                outbox_row,
            )?
            .into_iter()
            .map(|o| o.row)
            .collect(),
            deliveries: select(
                &self.conn,
                DELIVERIES,
                params![correlation_id, limit],
                |r| {
                    Ok(DeliveryLogRow {
                        endpoint: r.get(0)?,
                        key: r.get(1)?,
                        ledger_seq: r.get::<_, i64>(2)? as u64,
                        outcome: r.get(3)?,
                        value: r.get(4)?,
                        at_us: r.get(5)?,
                    })
                },
            )?,
            dead_letters: select(
                &self.conn,
                DEAD_LETTERS,
                params![correlation_id, limit],
                dead_letter_row,
            )?,
        })
    }
}
