//! Reconciliation and time-travel tables on SQLite.

use rusqlite::{Connection, Row, params};

use super::{SqliteStore, select};
use crate::recon::{
    AtsRow, ChangeRow, ReconStore, RunRow, VarianceRow, decode_journal, encode_journal,
};
use crate::{CommitBatch, Result, SentRow};

const INSERT_JOURNAL: &str = "INSERT INTO journal (partition, at_us, last_seq, max_time_us, \
     entries) VALUES (?1, ?2, ?3, ?4, ?5)";

const SELECT_JOURNAL_SINCE: &str = "SELECT at_us, entries FROM journal WHERE partition = ?1 \
     AND at_us >= ?2 AND max_time_us > ?3 AND last_seq <= ?4 ORDER BY at_us, id";

const SELECT_JOURNAL_AFTER: &str = "SELECT at_us, entries FROM journal WHERE partition = ?1 \
     AND at_us > ?2 ORDER BY at_us, id";

const VARIANCE_COUNTS: &str = "SELECT location, class, COUNT(*) FROM recon_variances \
     WHERE run_id = ?1 GROUP BY location, class ORDER BY location, class";

const RUN_COLUMNS: &str = "id, source, kind, started_by, as_of_us, started_at_us, finished_at_us, \
     status, rows, counts, digest, error";

const VARIANCE_COLUMNS: &str = "run_id, n, item, location, lot, class, source_qty, ledger_qty, \
     delta, detail, action, reference";

pub(super) fn write(tx: &Connection, b: &CommitBatch) -> Result<()> {
    if let Some((at_us, max_time_us, entries)) = encode_journal(&b.changes, &b.ats) {
        tx.prepare_cached(INSERT_JOURNAL)?.execute(params![
            i64::from(b.partition),
            at_us,
            b.last_seq as i64,
            max_time_us,
            entries
        ])?;
    }
    Ok(())
}

impl SqliteStore {
    fn journal(
        &mut self,
        partition: u32,
        sql: &str,
        args: impl rusqlite::Params,
        keep_change: impl Fn(&ChangeRow) -> bool,
        keep_ats: impl Fn(&AtsRow) -> bool,
    ) -> Result<(Vec<ChangeRow>, Vec<AtsRow>)> {
        let mut out = (Vec::new(), Vec::new());
        let mut stmt = self.conn.prepare_cached(sql)?;
        let mut rows = stmt.query(args)?;
        while let Some(r) = rows.next()? {
            let at_us: i64 = r.get(0)?;
            let text: &str = r.get_ref(1)?.as_str().map_err(rusqlite::Error::from)?;
            decode_journal(partition, at_us, text, &keep_change, &keep_ats, &mut out)?;
        }
        Ok(out)
    }
}

impl ReconStore for SqliteStore {
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
            params![
                i64::from(partition),
                since_us,
                after_time_us,
                up_to_seq as i64
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
            params![i64::from(partition), after_us],
            |c| c.item == item,
            |a| a.item == item,
        )
    }

    fn sent_as_of(&mut self, key: &str, at_us: i64) -> Result<Vec<SentRow>> {
        select(
            &self.conn,
            "SELECT endpoint, key, ledger_seq, value, MAX(sent_at_us) FROM delivery_sent_log \
             WHERE key = ?1 AND sent_at_us <= ?2 GROUP BY endpoint ORDER BY endpoint",
            params![key, at_us],
            |r| {
                Ok(SentRow {
                    endpoint: r.get(0)?,
                    key: r.get(1)?,
                    ledger_seq: r.get::<_, i64>(2)? as u64,
                    value: r.get(3)?,
                    sent_at_us: r.get(4)?,
                })
            },
        )
    }

    fn save_run(&mut self, run: &RunRow, variances: &[VarianceRow]) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute(
            &format!(
                "INSERT INTO recon_runs ({RUN_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ),
            params![
                run.id,
                run.source,
                run.kind,
                run.started_by,
                run.as_of_us,
                run.started_at_us,
                run.finished_at_us,
                run.status,
                run.rows as i64,
                run.counts,
                run.digest,
                run.error,
            ],
        )?;
        {
            let mut stmt = tx.prepare_cached(&format!(
                "INSERT INTO recon_variances ({VARIANCE_COLUMNS}) VALUES \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?;
            for v in variances {
                stmt.execute(params![
                    v.run_id,
                    i64::from(v.n),
                    v.item,
                    v.location,
                    v.lot,
                    v.class,
                    v.source_qty,
                    v.ledger_qty,
                    v.delta,
                    v.detail,
                    v.action,
                    v.reference,
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn find_run(&mut self, id: &str) -> Result<Option<RunRow>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM recon_runs WHERE id = ?1");
        Ok(select(&self.conn, &sql, [id], run_row)?.pop())
    }

    fn list_runs(&mut self, source: Option<&str>, limit: u32) -> Result<Vec<RunRow>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM recon_runs WHERE (?1 IS NULL OR source = ?1) \
             ORDER BY started_at_us DESC, id DESC LIMIT ?2"
        );
        select(&self.conn, &sql, params![source, i64::from(limit)], run_row)
    }

    fn run_variances(
        &mut self,
        id: &str,
        after_n: Option<u32>,
        limit: u32,
    ) -> Result<Vec<VarianceRow>> {
        let sql = format!(
            "SELECT {VARIANCE_COLUMNS} FROM recon_variances WHERE run_id = ?1 AND n > ?2 \
             ORDER BY n LIMIT ?3"
        );
        let after = after_n.map_or(-1, i64::from);
        select(
            &self.conn,
            &sql,
            params![id, after, i64::from(limit)],
            variance_row,
        )
    }

    fn run_variance_counts(&mut self, id: &str) -> Result<Vec<(String, String, u64)>> {
        select(&self.conn, VARIANCE_COUNTS, params![id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
        })
    }
}

fn run_row(r: &Row<'_>) -> Result<RunRow> {
    Ok(RunRow {
        id: r.get(0)?,
        source: r.get(1)?,
        kind: r.get(2)?,
        started_by: r.get(3)?,
        as_of_us: r.get(4)?,
        started_at_us: r.get(5)?,
        finished_at_us: r.get(6)?,
        status: r.get(7)?,
        rows: r.get::<_, i64>(8)? as u64,
        counts: r.get(9)?,
        digest: r.get(10)?,
        error: r.get(11)?,
    })
}

fn variance_row(r: &Row<'_>) -> Result<VarianceRow> {
    Ok(VarianceRow {
        run_id: r.get(0)?,
        n: r.get::<_, i64>(1)? as u32,
        item: r.get(2)?,
        location: r.get(3)?,
        lot: r.get(4)?,
        class: r.get(5)?,
        source_qty: r.get(6)?,
        ledger_qty: r.get(7)?,
        delta: r.get(8)?,
        detail: r.get(9)?,
        action: r.get(10)?,
        reference: r.get(11)?,
    })
}
