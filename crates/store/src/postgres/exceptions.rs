//! [`ExceptionStore`] on PostgreSQL. A move locks its row (`FOR UPDATE`) and updates it only
//! from the allowed statuses, so concurrent moves of one record serialize and the second is
//! refused.

use ::postgres::types::ToSql;
use ::postgres::{GenericClient, Row};
use crossdock_model::{ExceptionKind, ExceptionStatus};

use super::PgStore;
use crate::exceptions::{
    Arg, ExceptionQuery, ExceptionStore, QueueMark, QueueRecord, Transition, audit_action,
    count_sql, select_sql,
};
use crate::{Result, parse_exception_kind, parse_exception_status};

const SELECT_ONE: &str = concat!(
    "SELECT ",
    queue_columns!(),
    " FROM exceptions WHERE id = $1"
);

const MOVE: &str = "UPDATE exceptions SET status = $2, updated_at_us = $3, actor = $4, note = $5 \
     WHERE id = $1 AND status = ANY($6)";

const INSERT_AUDIT: &str = "INSERT INTO audit (at_us, actor, action, subject, note, detail) \
     VALUES ($1, $2, $3, $4, $5, $6)";

fn param(n: usize) -> String {
    format!("${n}")
}

/// Byte order, as SQLite compares text.
fn bytewise(column: &str) -> String {
    format!("{column} COLLATE \"C\"")
}

fn boxed(args: Vec<Arg>) -> Vec<Box<dyn ToSql + Sync>> {
    args.into_iter()
        .map(|a| -> Box<dyn ToSql + Sync> {
            match a {
                Arg::Int(i) => Box::new(i),
                Arg::Text(t) => Box::new(t),
            }
        })
        .collect()
}

fn refs(args: &[Box<dyn ToSql + Sync>]) -> Vec<&(dyn ToSql + Sync)> {
    args.iter().map(|b| b.as_ref()).collect()
}

impl ExceptionStore for PgStore {
    fn query_exceptions(&mut self, query: &ExceptionQuery) -> Result<Vec<QueueRecord>> {
        let (sql, args) = select_sql(query, &param, &bytewise);
        let args = boxed(args);
        self.client
            .query(&sql, &refs(&args))?
            .iter()
            .map(queue_row)
            .collect()
    }

    fn count_exceptions(
        &mut self,
        query: &ExceptionQuery,
    ) -> Result<Vec<(ExceptionKind, ExceptionStatus, u64)>> {
        let (sql, args) = count_sql(query, &param, &bytewise);
        let args = boxed(args);
        self.client
            .query(&sql, &refs(&args))?
            .iter()
            .map(|row| {
                Ok((
                    parse_exception_kind(row.try_get(0)?)?,
                    parse_exception_status(row.try_get(1)?)?,
                    row.try_get::<_, i64>(2)? as u64,
                ))
            })
            .collect()
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
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let mut tx = self.client.transaction()?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let Some(before) = tx.query_opt(
                "SELECT status FROM exceptions WHERE id = $1 FOR UPDATE",
                &[id],
            )?
            else {
                out.push(Transition::Missing);
                continue;
            };
            let before: String = before.try_get(0)?;
            let moved = tx.execute(MOVE, &[id, &to.as_str(), &at_us, &actor, &note, &from])?;
            if moved == 1 {
                let subject = format!("exception:{id}");
                let detail = serde_json::json!({ "from": before }).to_string();
                tx.execute(
                    INSERT_AUDIT,
                    &[&at_us, &actor, &audit_action(to), &subject, &note, &detail],
                )?;
            }
            let record = one(&mut tx, id)?.ok_or_else(|| {
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
        let mut tx = self.client.transaction()?;
        let Some(row) = tx.query_opt(
            concat!(
                "UPDATE exceptions SET updated_at_us = $2, actor = $3, note = $4 WHERE id = $1 \
                 RETURNING ",
                queue_columns!()
            ),
            &[&id, &at_us, &actor, &note],
        )?
        else {
            return Ok(None);
        };
        let record = queue_row(&row)?;
        let subject = format!("exception:{id}");
        tx.execute(
            INSERT_AUDIT,
            &[&at_us, &actor, &"noted", &subject, &note, &"{}"],
        )?;
        tx.commit()?;
        Ok(Some(record))
    }

    fn mark_exception(
        &mut self,
        id: &str,
        mark: QueueMark,
        note: Option<(&str, &str)>,
        at_us: i64,
    ) -> Result<bool> {
        let column = mark.column();
        let mut tx = self.client.transaction()?;
        let changed = match note {
            None => tx.execute(
                &format!("UPDATE exceptions SET {column} = $2 WHERE id = $1 AND {column} IS NULL"),
                &[&id, &at_us],
            )?,
            Some((actor, text)) => {
                let n = tx.execute(
                    &format!(
                        "UPDATE exceptions SET {column} = $2, updated_at_us = $2, actor = $3, note = $4 \
                         WHERE id = $1 AND {column} IS NULL"
                    ),
                    &[&id, &at_us, &actor, &text],
                )?;
                if n == 1 {
                    let action = format!("queue.{}", column.trim_end_matches("_at_us"));
                    let subject = format!("exception:{id}");
                    tx.execute(
                        INSERT_AUDIT,
                        &[&at_us, &actor, &action, &subject, &text, &"{}"],
                    )?;
                }
                n
            }
        };
        tx.commit()?;
        Ok(changed == 1)
    }

    fn count_attempt(&mut self, id: &str, at_us: i64) -> Result<u32> {
        let row = self.client.query_opt(
            "UPDATE exceptions SET attempts = attempts + 1, attempted_at_us = $2 WHERE id = $1 \
             RETURNING attempts",
            &[&id, &at_us],
        )?;
        Ok(match row {
            Some(r) => r.try_get::<_, i64>(0)? as u32,
            None => 0,
        })
    }

    fn parked_letter_of(&mut self, exception_id: &str) -> Result<Option<i64>> {
        Ok(self
            .client
            .query_opt(
                "SELECT id FROM dead_letters WHERE exception_id = $1 AND status = 'parked' \
                 ORDER BY id LIMIT 1",
                &[&exception_id],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }

    fn sent_at(&mut self, endpoint: &str, key: &str) -> Result<Option<i64>> {
        Ok(self
            .client
            .query_opt(
                "SELECT sent_at_us FROM delivery_sent WHERE endpoint = $1 AND key = $2",
                &[&endpoint, &key],
            )?
            .map(|r| r.try_get(0))
            .transpose()?)
    }
}

fn one(client: &mut impl GenericClient, id: &str) -> Result<Option<QueueRecord>> {
    client
        .query_opt(SELECT_ONE, &[&id])?
        .as_ref()
        .map(queue_row)
        .transpose()
}

fn queue_row(row: &Row) -> Result<QueueRecord> {
    Ok(QueueRecord {
        record: super::exception_row(row)?,
        actor: row.try_get(9)?,
        note: row.try_get(10)?,
        attempts: row.try_get::<_, i64>(11)? as u32,
        attempted_at_us: row.try_get(12)?,
        held_at_us: row.try_get(13)?,
        notified_at_us: row.try_get(14)?,
        corrected_at_us: row.try_get(15)?,
    })
}
