//! Workflow rows and steps on PostgreSQL.

use ::postgres::{GenericClient, Row, Transaction};

use super::{PgStore, Statements, col, last_per_key, select};
use crate::{CommitBatch, Result, StepRow, WorkflowFilter, WorkflowRow};

const UPSERT: &str = "INSERT INTO workflows (partition, key, kind, id, state, final, doc, \
     updated_at_us, updated_seq) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
     $6::BOOLEAN[], $7::TEXT[], $8::BIGINT[], $9::BIGINT[]) \
     ON CONFLICT (key) DO UPDATE SET partition = excluded.partition, state = excluded.state, \
     final = excluded.final, doc = excluded.doc, updated_at_us = excluded.updated_at_us, \
     updated_seq = excluded.updated_seq";

const INSERT_STEPS: &str = "INSERT INTO workflow_steps (key, n, from_state, to_state, at_us, seq, \
     cause, correlation_id, note) \
     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], \
     $6::BIGINT[], $7::TEXT[], $8::TEXT[], $9::TEXT[]) \
     ON CONFLICT (key, n) DO NOTHING";

const SELECT_LIVE: &str = "SELECT partition, key, kind, id, state, final, doc, updated_at_us, \
     updated_seq FROM workflows WHERE partition = $1 AND NOT final ORDER BY key COLLATE \"C\"";

const SELECT_ONE: &str = "SELECT partition, key, kind, id, state, final, doc, updated_at_us, \
     updated_seq FROM workflows WHERE key = $1";

const SELECT_STEPS: &str = "SELECT key, n, from_state, to_state, at_us, seq, cause, \
     correlation_id, note FROM workflow_steps WHERE key = $1 ORDER BY n";

const SELECT_BY_KIND: &str = "SELECT partition, key, kind, id, state, final, doc, updated_at_us, \
     updated_seq FROM workflows WHERE kind = $1 AND ($2::TEXT IS NULL OR state = $2) \
     ORDER BY updated_at_us DESC, key COLLATE \"C\" LIMIT $3";

pub(super) fn write(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    b: &CommitBatch,
) -> Result<()> {
    if !b.workflows.is_empty() {
        let w = last_per_key(&b.workflows, |w| w.key.as_str());
        let stmt = statements.get(tx, UPSERT)?;
        tx.execute(
            &stmt,
            &[
                &col(&w, |w| i64::from(w.partition)),
                &col(&w, |w| w.key.as_str()),
                &col(&w, |w| w.kind.as_str()),
                &col(&w, |w| w.id.as_str()),
                &col(&w, |w| w.state.as_str()),
                &col(&w, |w| w.is_final),
                &col(&w, |w| w.doc.as_str()),
                &col(&w, |w| w.updated_at_us),
                &col(&w, |w| w.updated_seq as i64),
            ],
        )?;
    }
    if !b.steps.is_empty() {
        let s = b.steps.as_slice();
        let stmt = statements.get(tx, INSERT_STEPS)?;
        tx.execute(
            &stmt,
            &[
                &col(s, |s| s.key.as_str()),
                &col(s, |s| i64::from(s.n)),
                &col(s, |s| s.from.as_str()),
                &col(s, |s| s.to.as_str()),
                &col(s, |s| s.at_us),
                &col(s, |s| s.seq as i64),
                &col(s, |s| s.cause.as_str()),
                &col(s, |s| s.correlation_id.as_str()),
                &col(s, |s| s.note.as_str()),
            ],
        )?;
    }
    Ok(())
}

pub(super) fn live(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    partition: i64,
) -> Result<Vec<WorkflowRow>> {
    select(client, statements, SELECT_LIVE, &[&partition], workflow_row)
}

impl PgStore {
    pub(super) fn workflow(&mut self, key: &str) -> Result<Option<(WorkflowRow, Vec<StepRow>)>> {
        let stmt = self.statements.get(&mut self.client, SELECT_ONE)?;
        let Some(row) = self.client.query_opt(&stmt, &[&key])? else {
            return Ok(None);
        };
        let row = workflow_row(&row)?;
        let steps = select(
            &mut self.client,
            &mut self.statements,
            SELECT_STEPS,
            &[&key],
            step_row,
        )?;
        Ok(Some((row, steps)))
    }

    pub(super) fn workflows(&mut self, f: &WorkflowFilter) -> Result<Vec<WorkflowRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_BY_KIND,
            &[&f.kind, &f.state, &i64::from(f.limit)],
            workflow_row,
        )
    }
}

fn workflow_row(row: &Row) -> Result<WorkflowRow> {
    Ok(WorkflowRow {
        partition: row.try_get::<_, i64>(0)? as u32,
        key: row.try_get(1)?,
        kind: row.try_get(2)?,
        id: row.try_get(3)?,
        state: row.try_get(4)?,
        is_final: row.try_get(5)?,
        doc: row.try_get(6)?,
        updated_at_us: row.try_get(7)?,
        updated_seq: row.try_get::<_, i64>(8)? as u64,
    })
}

pub(super) fn step_row(row: &Row) -> Result<StepRow> {
    Ok(StepRow {
        key: row.try_get(0)?,
        n: row.try_get::<_, i64>(1)? as u32,
        from: row.try_get(2)?,
        to: row.try_get(3)?,
        at_us: row.try_get(4)?,
        seq: row.try_get::<_, i64>(5)? as u64,
        cause: row.try_get(6)?,
        correlation_id: row.try_get(7)?,
        note: row.try_get(8)?,
    })
}
