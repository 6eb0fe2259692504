//! Workflow rows and steps on SQLite.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{SqliteStore, select, text};
use crate::{CommitBatch, Result, StepRow, WorkflowFilter, WorkflowRow};

const COLUMNS: &str = "partition, key, kind, id, state, final, doc, updated_at_us, updated_seq";

const UPSERT: &str = "INSERT INTO workflows (partition, key, kind, id, state, final, doc, \
     updated_at_us, updated_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (key) DO UPDATE SET partition = excluded.partition, state = excluded.state, \
     final = excluded.final, doc = excluded.doc, updated_at_us = excluded.updated_at_us, \
     updated_seq = excluded.updated_seq";

const INSERT_STEP: &str = "INSERT INTO workflow_steps (key, n, from_state, to_state, at_us, seq, \
     cause, correlation_id, note) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (key, n) DO NOTHING";

const SELECT_LIVE: &str = "SELECT partition, key, kind, id, state, final, doc, updated_at_us, \
     updated_seq FROM workflows WHERE partition = ?1 AND final = 0 ORDER BY key";

const SELECT_ONE: &str = "SELECT partition, key, kind, id, state, final, doc, updated_at_us, \
     updated_seq FROM workflows WHERE key = ?1";

const SELECT_STEPS: &str = "SELECT key, n, from_state, to_state, at_us, seq, cause, \
     correlation_id, note FROM workflow_steps WHERE key = ?1 ORDER BY n";

pub(super) fn write(tx: &Connection, b: &CommitBatch) -> Result<()> {
    if !b.workflows.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT)?;
        for w in &b.workflows {
            stmt.execute(params![
                i64::from(w.partition),
                w.key,
                w.kind,
                w.id,
                w.state,
                i64::from(w.is_final),
                w.doc,
                w.updated_at_us,
                w.updated_seq as i64,
            ])?;
        }
    }
    if !b.steps.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_STEP)?;
        for s in &b.steps {
            stmt.execute(params![
                s.key,
                i64::from(s.n),
                s.from,
                s.to,
                s.at_us,
                s.seq as i64,
                s.cause,
                s.correlation_id,
                s.note,
            ])?;
        }
    }
    Ok(())
}

pub(super) fn live(tx: &Connection, partition: i64) -> Result<Vec<WorkflowRow>> {
    select(tx, SELECT_LIVE, [partition], workflow_row)
}

impl SqliteStore {
    pub(super) fn workflow(&mut self, key: &str) -> Result<Option<(WorkflowRow, Vec<StepRow>)>> {
        let row = self
            .conn
            .prepare_cached(SELECT_ONE)?
            .query_row([key], |r| Ok(workflow_row(r)))
            .optional()?
            .transpose()?;
        let Some(row) = row else { return Ok(None) };
        let steps = select(&self.conn, SELECT_STEPS, [key], step_row)?;
        Ok(Some((row, steps)))
    }

    pub(super) fn workflows(&mut self, f: &WorkflowFilter) -> Result<Vec<WorkflowRow>> {
        let limit = i64::from(f.limit);
        match &f.state {
            Some(state) => select(
                &self.conn,
                &format!(
                    "SELECT {COLUMNS} FROM workflows WHERE kind = ?1 AND state = ?2 \
                     ORDER BY updated_at_us DESC, key LIMIT ?3"
                ),
                params![f.kind, state, limit],
                workflow_row,
            ),
            None => select(
                &self.conn,
                &format!(
                    "SELECT {COLUMNS} FROM workflows WHERE kind = ?1 \
                     ORDER BY updated_at_us DESC, key LIMIT ?2"
                ),
                params![f.kind, limit],
                workflow_row,
            ),
        }
    }
}

fn workflow_row(row: &Row<'_>) -> Result<WorkflowRow> {
    Ok(WorkflowRow {
        partition: row.get::<_, i64>(0)? as u32,
        key: text(row, 1)?.to_string(),
        kind: text(row, 2)?.to_string(),
        id: text(row, 3)?.to_string(),
        state: text(row, 4)?.to_string(),
        is_final: row.get::<_, i64>(5)? != 0,
        doc: text(row, 6)?.to_string(),
        updated_at_us: row.get(7)?,
        updated_seq: row.get::<_, i64>(8)? as u64,
    })
}

pub(super) fn step_row(row: &Row<'_>) -> Result<StepRow> {
    Ok(StepRow {
        key: text(row, 0)?.to_string(),
        n: row.get::<_, i64>(1)? as u32,
        from: text(row, 2)?.to_string(),
        to: text(row, 3)?.to_string(),
        at_us: row.get(4)?,
        seq: row.get::<_, i64>(5)? as u64,
        cause: text(row, 6)?.to_string(),
        correlation_id: text(row, 7)?.to_string(),
        note: text(row, 8)?.to_string(),
    })
}
