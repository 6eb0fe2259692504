//! Reconciliation and time-travel tables on PostgreSQL.

use ::postgres::{Row, Transaction};

use super::{PgStore, Statements, col, select};
use crate::recon::{
    AtsRow, ChangeRow, ReconStore, RunRow, VarianceRow, decode_journal, encode_journal,
};
use crate::{CommitBatch, Result, SentRow};

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

const INSERT_JOURNAL: &str = "INSERT INTO journal (partition, at_us, last_seq, max_time_us, \
     entries) VALUES ($1, $2, $3, $4, $5)";

const SELECT_JOURNAL_SINCE: &str = "SELECT at_us, entries FROM journal WHERE partition = $1 \
     AND at_us >= $2 AND max_time_us > $3 AND last_seq <= $4 ORDER BY at_us, id";

const SELECT_JOURNAL_AFTER: &str = "SELECT at_us, entries FROM journal WHERE partition = $1 \
     AND at_us > $2 ORDER BY at_us, id";

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

const VARIANCE_COUNTS: &str = "SELECT location, class, COUNT(*) FROM recon_variances \
     WHERE run_id = $1 GROUP BY location, class ORDER BY location COLLATE \"C\", class COLLATE \"C\"";

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
    if let Some((at_us, max_time_us, entries)) = encode_journal(&b.changes, &b.ats) {
        let stmt = statements.get(tx, INSERT_JOURNAL)?;
        tx.execute(
            &stmt,
            &[
                &i64::from(b.partition),
                &at_us,
                &(b.last_seq as i64),
                &max_time_us,
                &entries,
            ],
        )?;
    }
    Ok(())
}

impl PgStore {
    fn journal(
        &mut self,
        partition: u32,
        sql: &'static str,
        args: &[&(dyn ::postgres::types::ToSql + Sync)],
        keep_change: impl Fn(&ChangeRow) -> bool,
        keep_ats: impl Fn(&AtsRow) -> bool,
    ) -> Result<(Vec<ChangeRow>, Vec<AtsRow>)> {
        let stmt = self.statements.get(&mut self.client, sql)?;
        let mut out = (Vec::new(), Vec::new());
        for r in self.client.query(&stmt, args)? {
            let at_us: i64 = r.try_get(0)?;
            let text: &str = r.try_get(1)?;
            decode_journal(partition, at_us, text, &keep_change, &keep_ats, &mut out)?;
        }
        Ok(out)
    }
}

impl ReconStore for PgStore {
    fn changes_since(
        &mut self,
        partition: u32,
        since_us: i64,
        after_time_us: i64,
        up_to_seq: u64,
    ) -> Result<Vec<ChangeRow>> {
        let (changes, _) = self.journal(
            partition,
            SELECT_JOURNAL_SINCE,
            &[
                &i64::from(partition),
                &since_us,
                &after_time_us,
                &(up_to_seq as i64),
            ],
            |c| c.time_us > after_time_us && c.seq <= up_to_seq,
            |_| false,
        )?;
        Ok(changes)
    }

    fn item_journal_after(
        &mut self,
        partition: u32,
        item: &str,
        after_us: i64,
    ) -> Result<(Vec<ChangeRow>, Vec<AtsRow>)> {
        self.journal(
            partition,
            SELECT_JOURNAL_AFTER,
            &[&i64::from(partition), &after_us],
            |c| c.item == item,
            |a| a.item == item,
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

    fn run_variance_counts(&mut self, id: &str) -> Result<Vec<(String, String, u64)>> {
        select(
            &mut self.client,
            &mut self.statements,
            VARIANCE_COUNTS,
            &[&id],
            |r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<_, i64>(2)? as u64)),
        )
    }
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
