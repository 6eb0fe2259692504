//! Reconciliation and time-travel tables on PostgreSQL.

use ::postgres::{Row, Transaction};

use super::{PgStore, Statements, col, select};
use crate::recon::{AtsRow, ChangeRow, ReconStore, RunRow, VarianceRow};
use crate::{CommitBatch, Result, SentRow, common};

macro_rules! change_columns {
    () => {
        "partition, seq, n, item, location, lot, time_us, at_us, on_hand, quarantined, damaged, \
         returns_pending, picked, allocated, reserved, in_transit, incoming, safety_stock"
    };
}

macro_rules! run_columns {
    () => {
        "id, source, kind, started_by, as_of_us, started_at_us, finished_at_us, status, rows, \
         counts, digest, error"
    };
}

macro_rules! variance_columns {
    () => {
        "run_id, n, item, location, lot, class, source_qty, ledger_qty, delta, detail, action, \
         reference"
    };
}

const INSERT_CHANGES: &str = concat!(
    "INSERT INTO position_changes (",
    change_columns!(),
    ") SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[], \
     $6::TEXT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], \
     $12::BIGINT[], $13::BIGINT[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[], $17::BIGINT[], \
     $18::BIGINT[]) ON CONFLICT DO NOTHING"
);

const INSERT_ATS: &str = "INSERT INTO ats_history (item, channel, at_us, seq, ats) \
     SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::BIGINT[], $5::BIGINT[]) \
     ON CONFLICT (item, channel, at_us, seq) DO UPDATE SET ats = excluded.ats";

const CHANGES_SINCE: &str = concat!(
    "SELECT ",
    change_columns!(),
    " FROM position_changes WHERE at_us >= $1 AND time_us > $2 AND partition = $3 AND seq <= $4 \
     ORDER BY seq, n"
);

const ITEM_CHANGES_AFTER: &str = concat!(
    "SELECT ",
    change_columns!(),
    " FROM position_changes WHERE item = $1 AND at_us > $2 ORDER BY at_us, partition, seq, n"
);

const ATS_AT: &str = "SELECT DISTINCT ON (channel) item, channel, at_us, seq, ats FROM ats_history \
     WHERE item = $1 AND at_us <= $2 ORDER BY channel, at_us DESC, seq DESC";

const SENT_AT: &str = "SELECT DISTINCT ON (endpoint) endpoint, key, ledger_seq, value, sent_at_us \
     FROM delivery_sent_log WHERE key = $1 AND sent_at_us <= $2 \
     ORDER BY endpoint, sent_at_us DESC, ledger_seq DESC";

const INSERT_RUN: &str = concat!(
    "INSERT INTO recon_runs (",
    run_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
);

const INSERT_VARIANCES: &str = concat!(
    "INSERT INTO recon_variances (",
    variance_columns!(),
    ") SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], \
     $6::TEXT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[], $12::TEXT[])"
);

const FIND_RUN: &str = concat!("SELECT ", run_columns!(), " FROM recon_runs WHERE id = $1");

const LIST_RUNS: &str = concat!(
    "SELECT ",
    run_columns!(),
    " FROM recon_runs WHERE ($1::TEXT IS NULL OR source = $1) \
     ORDER BY started_at_us DESC, id DESC LIMIT $2"
);

const RUN_VARIANCES: &str = concat!(
    "SELECT ",
    variance_columns!(),
    " FROM recon_variances WHERE run_id = $1 AND n > $2 ORDER BY n LIMIT $3"
);

pub(super) fn write(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    b: &CommitBatch,
) -> Result<()> {
    if !b.changes.is_empty() {
        let c = b.changes.as_slice();
        let stmt = statements.get(tx, INSERT_CHANGES)?;
        let d = |i: usize| col(c, move |c| c.delta[i]);
        tx.execute(
            &stmt,
            &[
                &col(c, |c| i64::from(c.partition)),
                &col(c, |c| c.seq as i64),
                &col(c, |c| i64::from(c.n)),
                &col(c, |c| c.item.as_str()),
                &col(c, |c| c.location.as_str()),
                &col(c, |c| c.lot.as_str()),
                &col(c, |c| c.time_us),
                &col(c, |c| c.at_us),
                &d(0),
                &d(1),
                &d(2),
                &d(3),
                &d(4),
                &d(5),
                &d(6),
                &d(7),
                &d(8),
                &d(9),
            ],
        )?;
    }
    if !b.ats.is_empty() {
        let a = b.ats.as_slice();
        let stmt = statements.get(tx, INSERT_ATS)?;
        tx.execute(
            &stmt,
            &[
                &col(a, |a| a.item.as_str()),
                &col(a, |a| a.channel.as_str()),
                &col(a, |a| a.at_us),
                &col(a, |a| a.seq as i64),
                &col(a, |a| a.ats),
            ],
        )?;
    }
    Ok(())
}

impl ReconStore for PgStore {
    fn changes_since(
        &mut self,
        partition: u32,
        since_us: i64,
        after_time_us: i64,
        up_to_seq: u64,
    ) -> Result<Vec<ChangeRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            CHANGES_SINCE,
            &[
                &since_us,
                &after_time_us,
                &i64::from(partition),
                &(up_to_seq as i64),
            ],
            change_row,
        )
    }

    fn item_changes_after(&mut self, item: &str, after_us: i64) -> Result<Vec<ChangeRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            ITEM_CHANGES_AFTER,
            &[&item, &after_us],
            change_row,
        )
    }

    fn ats_at(&mut self, item: &str, at_us: i64) -> Result<Vec<AtsRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            ATS_AT,
            &[&item, &at_us],
            |r| {
                Ok(AtsRow {
                    item: r.try_get(0)?,
                    channel: r.try_get(1)?,
                    at_us: r.try_get(2)?,
                    seq: r.try_get::<_, i64>(3)? as u64,
                    ats: r.try_get(4)?,
                })
            },
        )
    }

    fn sent_as_of(&mut self, key: &str, at_us: i64) -> Result<Vec<SentRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SENT_AT,
            &[&key, &at_us],
            |r| {
                Ok(SentRow {
                    endpoint: r.try_get(0)?,
                    key: r.try_get(1)?,
                    ledger_seq: r.try_get::<_, i64>(2)? as u64,
                    value: r.try_get(3)?,
                    sent_at_us: r.try_get(4)?,
                })
            },
        )
    }

    fn save_run(&mut self, run: &RunRow, variances: &[VarianceRow]) -> Result<()> {
        let mut tx = self.client.transaction()?;
        let insert_run = self.statements.get(&mut tx, INSERT_RUN)?;
        tx.execute(
            &insert_run,
            &[
                &run.id,
                &run.source,
                &run.kind,
                &run.started_by,
                &run.as_of_us,
                &run.started_at_us,
                &run.finished_at_us,
                &run.status,
                &(run.rows as i64),
                &run.counts,
                &run.digest,
                &run.error,
            ],
        )?;
        if !variances.is_empty() {
            let v = variances;
            let stmt = self.statements.get(&mut tx, INSERT_VARIANCES)?;
            tx.execute(
                &stmt,
                &[
                    &col(v, |v| v.run_id.as_str()),
                    &col(v, |v| i64::from(v.n)),
                    &col(v, |v| v.item.as_str()),
                    &col(v, |v| v.location.as_str()),
                    &col(v, |v| v.lot.as_str()),
                    &col(v, |v| v.class.as_str()),
                    &col(v, |v| v.source_qty),
                    &col(v, |v| v.ledger_qty),
                    &col(v, |v| v.delta),
                    &col(v, |v| v.detail.as_str()),
                    &col(v, |v| v.action.as_str()),
                    &col(v, |v| v.reference.as_str()),
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    fn find_run(&mut self, id: &str) -> Result<Option<RunRow>> {
        Ok(select(
            &mut self.client,
            &mut self.statements,
            FIND_RUN,
            &[&id],
            run_row,
        )?
        .pop())
    }

    fn list_runs(&mut self, source: Option<&str>, limit: u32) -> Result<Vec<RunRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            LIST_RUNS,
            &[&source, &i64::from(limit)],
            run_row,
        )
    }

    fn run_variances(
        &mut self,
        id: &str,
        after_n: Option<u32>,
        limit: u32,
    ) -> Result<Vec<VarianceRow>> {
        let after = after_n.map_or(-1, i64::from);
        select(
            &mut self.client,
            &mut self.statements,
            RUN_VARIANCES,
            &[&id, &after, &i64::from(limit)],
            variance_row,
        )
    }
}

fn change_row(r: &Row) -> Result<ChangeRow> {
    let mut delta = [0i64; 10];
    for (i, d) in delta.iter_mut().enumerate() {
        *d = r.try_get(8 + i)?;
    }
    Ok(ChangeRow {
        partition: common::partition(r.try_get(0)?)?,
        seq: r.try_get::<_, i64>(1)? as u64,
        n: r.try_get::<_, i64>(2)? as u32,
        item: r.try_get(3)?,
        location: r.try_get(4)?,
        lot: r.try_get(5)?,
        time_us: r.try_get(6)?,
        at_us: r.try_get(7)?,
        delta,
    })
}

fn run_row(r: &Row) -> Result<RunRow> {
    Ok(RunRow {
        id: r.try_get(0)?,
        source: r.try_get(1)?,
        kind: r.try_get(2)?,
        started_by: r.try_get(3)?,
        as_of_us: r.try_get(4)?,
        started_at_us: r.try_get(5)?,
        finished_at_us: r.try_get(6)?,
        status: r.try_get(7)?,
        rows: r.try_get::<_, i64>(8)? as u64,
        counts: r.try_get(9)?,
        digest: r.try_get(10)?,
        error: r.try_get(11)?,
    })
}

fn variance_row(r: &Row) -> Result<VarianceRow> {
    Ok(VarianceRow {
        run_id: r.try_get(0)?,
        n: r.try_get::<_, i64>(1)? as u32,
        item: r.try_get(2)?,
        location: r.try_get(3)?,
        lot: r.try_get(4)?,
        class: r.try_get(5)?,
        source_qty: r.try_get(6)?,
        ledger_qty: r.try_get(7)?,
        delta: r.try_get(8)?,
        detail: r.try_get(9)?,
        action: r.try_get(10)?,
        reference: r.try_get(11)?,
    })
}
