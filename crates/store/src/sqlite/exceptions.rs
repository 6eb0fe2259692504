//! [`ExceptionStore`] on SQLite. Writes take the write lock up front (`BEGIN IMMEDIATE`), so a
//! conditional update and the audit row it earns are one step for every other connection.

use crossdock_model::{ExceptionKind, ExceptionStatus};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params, params_from_iter};

use super::{SqliteStore, text};
use crate::exceptions::{
    Arg, ExceptionQuery, ExceptionStore, QueueMark, QueueRecord, Transition, audit_action,
    count_sql, select_sql,
};
use crate::{Result, parse_exception_kind, parse_exception_status};

const SELECT_ONE: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM exceptions WHERE id = ?1"
);

const MOVE: &str = "UPDATE exceptions SET status = ?2, updated_at_us = ?3, actor = ?4, note = ?5 \
     WHERE id = ?1 AND status IN (SELECT value FROM json_each(?6))";

const INSERT_AUDIT: &str = "INSERT INTO audit (at_us, actor, action, subject, note, detail) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

fn param(n: usize) -> String {
    format!("?{n}")
}

fn plain(column: &str) -> String {
    column.to_string()
}

fn values(args: Vec<Arg>) -> Vec<SqlValue> {
    args.into_iter()
        .map(|a| match a {
            Arg::Int(i) => SqlValue::Integer(i),
            Arg::Text(t) => SqlValue::Text(t),
        })
        .collect()
}

impl ExceptionStore for SqliteStore {
    fn query_exceptions(&mut self, query: &ExceptionQuery) -> Result<Vec<QueueRecord>> {
        let (sql, args) = select_sql(query, &param, &plain);
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(values(args)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(queue_row(row)?);
        }
        Ok(out)
    }

    fn count_exceptions(
        &mut self,
        query: &ExceptionQuery,
    ) -> Result<Vec<(ExceptionKind, ExceptionStatus, u64)>> {
        let (sql, args) = count_sql(query, &param, &plain);
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query(params_from_iter(values(args)))?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push((
                parse_exception_kind(text(row, 0)?)?,
                parse_exception_status(text(row, 1)?)?,
                row.get::<_, i64>(2)? as u64,
            ));
        }
        Ok(out)
    }

    fn transition_exceptions(
        &mut self,
        ids: &[String],
        to: ExceptionStatus,
        from: &[ExceptionStatus],
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Vec<Transition>> {
        let from_json = serde_json::to_string(&from.iter().map(|s| s.as_str()).collect::<Vec<_>>())
            .expect("statuses serialize");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let before: Option<String> = tx
                .query_row("SELECT status FROM exceptions WHERE id = ?1", [id], |r| {
                    r.get(0)
                })
                .optional()?;
            let Some(before) = before else {
                out.push(Transition::Missing);
                continue;
            };
            let moved = tx.execute(
                MOVE,
                params![id, to.as_str(), at_us, actor, note, from_json],
            )?;
            if moved == 1 {
                tx.execute(
                    INSERT_AUDIT,
                    params![
                        at_us,
                        actor,
                        audit_action(to),
                        format!("exception:{id}"),
                        note,
                        serde_json::json!({ "from": before }).to_string()
                    ],
                )?;
            }
            let record = one(&tx, id)?.ok_or_else(|| {
                crate::StoreError::Corrupt(format!("exception {id} vanished in a transaction"))
            })?;
            out.push(if moved == 1 {
                Transition::Changed(record)
            } else {
                Transition::Refused(record)
            });
        }
        tx.commit()?;
        Ok(out)
    }

    fn note_exception(
        &mut self,
        id: &str,
        actor: &str,
        note: &str,
        at_us: i64,
    ) -> Result<Option<QueueRecord>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE exceptions SET updated_at_us = ?2, actor = ?3, note = ?4 WHERE id = ?1",
            params![id, at_us, actor, note],
        )?;
        if changed == 0 {
            return Ok(None);
        }
        tx.execute(
            INSERT_AUDIT,
            params![at_us, actor, "noted", format!("exception:{id}"), note, "{}"],
        )?;
        let record = one(&tx, id)?;
        tx.commit()?;
        Ok(record)
    }

    fn mark_exception(
        &mut self,
        id: &str,
        mark: QueueMark,
        note: Option<(&str, &str)>,
        at_us: i64,
    ) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let column = mark.column();
        let changed = match note {
            None => tx.execute(
                &format!("UPDATE exceptions SET {column} = ?2 WHERE id = ?1 AND {column} IS NULL"),
                params![id, at_us],
            )?,
            Some((actor, text)) => {
                let n = tx.execute(
                    &format!(
                        "UPDATE exceptions SET {column} = ?2, updated_at_us = ?2, actor = ?3, note = ?4 \
                         WHERE id = ?1 AND {column} IS NULL"
                    ),
                    params![id, at_us, actor, text],
                )?;
                if n == 1 {
                    tx.execute(
                        INSERT_AUDIT,
                        params![
                            at_us,
                            actor,
                            format!("queue.{}", column.trim_end_matches("_at_us")),
                            format!("exception:{id}"),
                            text,
                            "{}"
                        ],
                    )?;
                }
                n
            }
        };
        tx.commit()?;
        Ok(changed == 1)
    }

    fn count_attempt(&mut self, id: &str, at_us: i64) -> Result<u32> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE exceptions SET attempts = attempts + 1, attempted_at_us = ?2 WHERE id = ?1",
            params![id, at_us],
        )?;
        let attempts: Option<i64> = tx
            .query_row("SELECT attempts FROM exceptions WHERE id = ?1", [id], |r| {
                r.get(0)
            })
            .optional()?;
        tx.commit()?;
        Ok(attempts.unwrap_or(0) as u32)
    }

    fn parked_letter_of(&mut self, exception_id: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT id FROM dead_letters WHERE exception_id = ?1 AND status = 'parked' \
                 ORDER BY id LIMIT 1",
                [exception_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn sent_at(&mut self, endpoint: &str, key: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .query_row(
                "SELECT sent_at_us FROM delivery_sent WHERE endpoint = ?1 AND key = ?2",
                [endpoint, key],
                |r| r.get(0),
            )
            .optional()?)
    }
}

fn one(conn: &Connection, id: &str) -> Result<Option<QueueRecord>> {
    let mut stmt = conn.prepare_cached(SELECT_ONE)?;
    let mut rows = stmt.query([id])?;
    rows.next()?.map(queue_row).transpose()
}

fn queue_row(row: &Row<'_>) -> Result<QueueRecord> {
    Ok(QueueRecord {
        record: super::exception_row(row)?,
        actor: row.get(9)?,
        note: row.get(10)?,
        attempts: row.get::<_, i64>(11)? as u32,
        attempted_at_us: row.get(12)?,
        held_at_us: row.get(13)?,
        notified_at_us: row.get(14)?,
        corrected_at_us: row.get(15)?,
    })
}
