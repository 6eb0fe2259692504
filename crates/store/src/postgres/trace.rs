//! Trace reads on PostgreSQL.

use crossdock_model::event::own_correlation_keys;

use super::delivery::dead_letter_row;
use super::workflow::step_row;
use super::{PgStore, event_row, outbox_row, select};
use crate::trace::{DeliveryLogRow, TraceRows, TraceStore, by_partition, journal_of_events};
use crate::{Result, SentRow};

const EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE correlation_id = $1 AND substr(correlation_id, 1, 6) <> 'event:' \
     ORDER BY received_at_us, partition, seq LIMIT $2"
);

/// The input whose own key is its correlation id (`event:<source>/<id>`).
const EVENT_BY_KEY: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE source = $1 AND id = $2 AND correlation_id = $3"
);

/// The journal row holding ledger sequence `$2`: the first commit ending at or after it.
const JOURNAL_AT: &str = "SELECT at_us, entries, last_seq FROM journal WHERE partition = $1 \
     AND last_seq >= $2 ORDER BY last_seq LIMIT 1";

const STEPS: &str = "SELECT key, n, from_state, to_state, at_us, seq, cause, correlation_id, \
     note FROM workflow_steps WHERE correlation_id = $1 ORDER BY at_us, key, n LIMIT $2";

const OUTBOX: &str = "SELECT id, partition, endpoint, key, ledger_seq, priority, kind, payload, \
     correlation_id, created_at_us FROM outbox WHERE correlation_id = $1 ORDER BY id LIMIT $2";

const DELIVERIES: &str = "SELECT endpoint, key, ledger_seq, outcome, value, at_us FROM \
     delivery_log WHERE correlation_id = $1 ORDER BY id LIMIT $2";

/// The first value delivered for `(endpoint, key)` at or after a ledger sequence.
const CARRIED: &str = "SELECT endpoint, key, ledger_seq, value, sent_at_us FROM delivery_sent_log \
     WHERE key = $1 AND endpoint = $2 AND ledger_seq >= $3 ORDER BY sent_at_us, ledger_seq LIMIT 1";

const DEAD_LETTERS: &str = concat!(
    "SELECT ",
    dead_letter_columns!(),
    " FROM dead_letters WHERE correlation_id = $1 ORDER BY id LIMIT $2"
);

impl TraceStore for PgStore {
    fn trace(&mut self, correlation_id: &str, limit: u32) -> Result<TraceRows> {
        let limit = i64::from(limit);
        let (client, st) = (&mut self.client, &mut self.statements);
        let own = own_correlation_keys(correlation_id);
        let events = if own.is_empty() {
            select(client, st, EVENTS, &[&correlation_id, &limit], event_row)?
        } else {
            let mut found = Vec::new();
            for (source, id) in own {
                found.extend(select(
                    client,
                    st,
                    EVENT_BY_KEY,
                    &[&source, &id, &correlation_id],
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
                let stmt = st.get(client, JOURNAL_AT)?;
                let Some(r) = client.query_opt(&stmt, &[&i64::from(partition), &(seq as i64)])?
                else {
                    break;
                };
                let (at_us, text, last_seq): (i64, &str, i64) =
                    (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                journal_of_events(partition, at_us, text, &seqs, &mut journal)?;
                covered = Some(last_seq as u64);
            }
        }
        let mut carried = Vec::with_capacity(journal.1.len());
        for a in &journal.1 {
            let stmt = st.get(client, CARRIED)?;
            let row = client.query_opt(&stmt, &[&a.item, &a.channel, &(a.seq as i64)])?;
            carried.push(match row {
                Some(r) => Some(SentRow {
                    endpoint: r.try_get(0)?,
                    key: r.try_get(1)?,
                    ledger_seq: r.try_get::<_, i64>(2)? as u64,
                    value: r.try_get(3)?,
                    sent_at_us: r.try_get(4)?,
                }),
                None => None,
            });
        }
        let args: [&(dyn ::postgres::types::ToSql + Sync); 2] = [&correlation_id, &limit];
        Ok(TraceRows {
            events,
            carried,
            changes: journal.0,
            ats: journal.1,
            steps: select(client, st, STEPS, &args, step_row)?,
            outbox: select(client, st, OUTBOX, &args, outbox_row)?
                .into_iter()
                .map(|o| o.row)
                .collect(),
            deliveries: select(client, st, DELIVERIES, &args, |r| {
                Ok(DeliveryLogRow {
                    endpoint: r.try_get(0)?,
                    key: r.try_get(1)?,
                    ledger_seq: r.try_get::<_, i64>(2)? as u64,
                    outcome: r.try_get(3)?,
                    value: r.try_get(4)?,
                    at_us: r.try_get(5)?,
                })
            })?,
            dead_letters: select(client, st, DEAD_LETTERS, &args, dead_letter_row)?,
        })
    }
}
