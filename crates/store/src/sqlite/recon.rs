//! Reconciliation and time-travel tables on SQLite.

use rusqlite::{Connection, Row, params};

use super::{SqliteStore, select};
use crate::recon::{AtsRow, ChangeRow, ReconStore, RunRow, VarianceRow};
use crate::{CommitBatch, Result, SentRow, common};

const CHANGE_COLUMNS: &str = "partition, seq, n, item, location, lot, time_us, at_us, on_hand, \
     quarantined, damaged, returns_pending, picked, allocated, reserved, in_transit, incoming, \
     safety_stock";

const INSERT_CHANGE: &str = "INSERT INTO position_changes (partition, seq, n, item, location, lot, \
     time_us, at_us, on_hand, quarantined, damaged, returns_pending, picked, allocated, reserved, \
     in_transit, incoming, safety_stock) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, \
     ?12, ?13, ?14, ?15, ?16, ?17, ?18) ON CONFLICT DO NOTHING";

const INSERT_ATS: &str = "INSERT INTO ats_history (item, channel, at_us, seq, ats) \
     VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO UPDATE SET ats = excluded.ats";

const RUN_COLUMNS: &str = "id, source, kind, started_by, as_of_us, started_at_us, finished_at_us, \
     status, rows, counts, digest, error";

const VARIANCE_COLUMNS: &str = "run_id, n, item, location, lot, class, source_qty, ledger_qty, \
     delta, detail, action, reference";

pub(super) fn write(tx: &Connection, b: &CommitBatch) -> Result<()> {
    if !b.changes.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_CHANGE)?;
        for c in &b.changes {
            let d = &c.delta;
            stmt.execute(params![
                i64::from(c.partition),
                c.seq as i64,
                i64::from(c.n),
                c.item,
                c.location,
                c.lot,
                c.time_us,
                c.at_us,
                d[0],
                d[1],
                d[2],
                d[3],
                d[4],
                d[5],
                d[6],
                d[7],
                d[8],
                d[9],
            ])?;
        }
    }
    if !b.ats.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_ATS)?;
        for a in &b.ats {
            stmt.execute(params![a.item, a.channel, a.at_us, a.seq as i64, a.ats])?;
        }
    }
    Ok(())
}

impl ReconStore for SqliteStore {
    fn changes_since(
        &mut self,
        partition: u32,
        since_us: i64,
        after_time_us: i64,
        up_to_seq: u64,
    ) -> Result<Vec<ChangeRow>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM position_changes WHERE at_us >= ?1 AND time_us > ?2 \
             AND partition = ?3 AND seq <= ?4 ORDER BY seq, n"
        );
        select(
            &self.conn,
            &sql,
            params![
                since_us,
                after_time_us,
                i64::from(partition),
                up_to_seq as i64
            ],
            change_row,
        )
    }

    fn item_changes_after(&mut self, item: &str, after_us: i64) -> Result<Vec<ChangeRow>> {
        let sql = format!(
            "SELECT {CHANGE_COLUMNS} FROM position_changes WHERE item = ?1 AND at_us > ?2 \
             ORDER BY at_us, partition, seq, n"
        );
        select(&self.conn, &sql, params![item, after_us], change_row)
    }

    fn ats_at(&mut self, item: &str, at_us: i64) -> Result<Vec<AtsRow>> {
        // Per channel, the newest row at or before the time (SQLite's bare-column rule for MAX).
        select(
            &self.conn,
            "SELECT item, channel, MAX(at_us), seq, ats FROM ats_history \
             WHERE item = ?1 AND at_us <= ?2 GROUP BY channel ORDER BY channel",
            params![item, at_us],
            |r| {
                Ok(AtsRow {
                    item: r.get(0)?,
                    channel: r.get(1)?,
                    at_us: r.get(2)?,
                    seq: r.get::<_, i64>(3)? as u64,
                    ats: r.get(4)?,
                })
            },
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
}

fn change_row(r: &Row<'_>) -> Result<ChangeRow> {
    let mut delta = [0i64; 10];
    for (i, d) in delta.iter_mut().enumerate() {
        *d = r.get(8 + i)?;
    }
    Ok(ChangeRow {
        partition: common::partition(r.get(0)?)?,
        seq: r.get::<_, i64>(1)? as u64,
        n: r.get::<_, i64>(2)? as u32,
        item: r.get(3)?,
        location: r.get(4)?,
        lot: r.get(5)?,
        time_us: r.get(6)?,
        at_us: r.get(7)?,
        delta,
    })
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
