//! SQLite store: one file, WAL, `synchronous=FULL`.
//!
//! Several instances may open the same file at once (one per writer thread plus readers). Every
//! write transaction takes the write lock up front (`BEGIN IMMEDIATE`) and waits up to
//! [`BUSY_TIMEOUT`] for it, so concurrent writers queue instead of failing on lock upgrade.
//! Reads that must agree with each other run in one read transaction (a WAL snapshot).

use std::path::Path;
use std::time::Duration;

use crossdock_model::event::key_hash;
use crossdock_model::{ExceptionKind, ExceptionRecord, Timestamp};
use rusqlite::{Connection, OptionalExtension, Params, Row, TransactionBehavior, params};

mod delivery;
mod exceptions;
mod recon;
mod trace;
mod workflow;

use crate::common::{self, Migration, PARTITIONS_KEY};
use crate::{
    CommitBatch, EventRow, ExceptionFilter, ItemStateRow, OutboxRow, PartitionSnapshot,
    PositionRow, ReservationRow, Result, SourceSeqRow, StateRow, StepRow, Store, StoredOutbox,
    TimerRow, WorkflowFilter, WorkflowRow, parse_exception_kind, parse_exception_status,
};

/// How long a statement waits for another connection's lock before failing with `SQLITE_BUSY`.
pub const BUSY_TIMEOUT: Duration = Duration::from_millis(5000);

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/sqlite/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "delivery",
        sql: include_str!("../migrations/sqlite/0002_delivery.sql"),
    },
    Migration {
        version: 3,
        name: "edi",
        sql: include_str!("../migrations/sqlite/0003_edi.sql"),
    },
    Migration {
        version: 4,
        name: "workflows",
        sql: include_str!("../migrations/sqlite/0004_workflows.sql"),
    },
    Migration {
        version: 5,
        name: "exception_queue",
        sql: include_str!("../migrations/sqlite/0005_exception_queue.sql"),
    },
    Migration {
        version: 6,
        name: "reconciliation",
        sql: include_str!("../migrations/sqlite/0006_reconciliation.sql"),
    },
    Migration {
        version: 7,
        name: "trace",
        sql: include_str!("../migrations/sqlite/0007_trace.sql"),
    },
    Migration {
        version: 8,
        name: "forwarding",
        sql: include_str!("../migrations/sqlite/0008_forwarding.sql"),
    },
];

/// Enough for every statement this module prepares, so none is ever evicted and re-prepared.
const STATEMENT_CACHE: usize = 96;

/// Page cache of a connection, in KiB (`cache_size` takes a negative number for KiB).
const CACHE_KIB: i64 = -32768;
/// Page cache while a whole table is read once (see [`SqliteStore::bulk_read`]).
const BULK_CACHE_KIB: i64 = -2048;

const INSERT_EVENT: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
);

const UPDATE_EVENT_STATUS: &str = "UPDATE events SET status = ?3 WHERE partition = ?1 AND seq = ?2";

const UPSERT_POSITION: &str = concat!(
    "INSERT INTO positions (",
    position_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16) \
     ON CONFLICT (item, location, lot) DO UPDATE SET partition = excluded.partition, \
     on_hand = excluded.on_hand, quarantined = excluded.quarantined, damaged = excluded.damaged, \
     returns_pending = excluded.returns_pending, picked = excluded.picked, allocated = excluded.allocated, \
     reserved = excluded.reserved, in_transit = excluded.in_transit, incoming = excluded.incoming, \
     safety_stock = excluded.safety_stock, extra = excluded.extra, updated_seq = excluded.updated_seq"
);

const UPSERT_ITEM: &str = "INSERT INTO item_state (partition, item, state) VALUES (?1, ?2, ?3) \
     ON CONFLICT (item) DO UPDATE SET partition = excluded.partition, state = excluded.state";

const UPSERT_RESERVATION: &str = concat!(
    "INSERT INTO reservations (",
    reservation_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
     ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, channel = excluded.channel, \
     status = excluded.status, lines = excluded.lines, request_hash = excluded.request_hash, \
     expires_at_us = excluded.expires_at_us, created_seq = excluded.created_seq, updated_seq = excluded.updated_seq"
);

const UPSERT_SOURCE_SEQ: &str = "INSERT INTO source_seqs (partition, source, next_expected) VALUES (?1, ?2, ?3) \
     ON CONFLICT (partition, source) DO UPDATE SET next_expected = excluded.next_expected";

const INSERT_OUTBOX: &str = "INSERT INTO outbox \
     (partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, created_at_us) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

const INSERT_EXCEPTION: &str = concat!(
    "INSERT INTO exceptions (",
    exception_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING"
);

const UPDATE_EXCEPTION_STATUS: &str =
    "UPDATE exceptions SET status = ?2, updated_at_us = ?3, actor = ?4, note = ?5 WHERE id = ?1";

const UPSERT_TIMER: &str = "INSERT INTO timers (id, partition, due_at_us, command) VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, due_at_us = excluded.due_at_us, \
     command = excluded.command";

const DELETE_TIMER: &str = "DELETE FROM timers WHERE id = ?1";

const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

const SELECT_META: &str = "SELECT value FROM meta WHERE key = ?1";

const SELECT_POSITIONS: &str = concat!(
    "SELECT ",
    position_columns!(),
    " FROM positions WHERE partition = ?1 ORDER BY item, location, lot"
);

const SELECT_ITEMS: &str =
    "SELECT partition, item, state FROM item_state WHERE partition = ?1 ORDER BY item";

const SELECT_LIVE_RESERVATIONS: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE partition = ?1 AND status IN ('held', 'committed', 'preparing') ORDER BY id"
);

const SELECT_SOURCE_SEQS: &str =
    "SELECT partition, source, next_expected FROM source_seqs WHERE partition = ?1 ORDER BY source";

const SELECT_HELD_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = ?1 AND status IN ('held', 'forwarding') ORDER BY seq"
);

const SELECT_TIMERS: &str = "SELECT partition, id, due_at_us, command FROM timers WHERE partition = ?1 ORDER BY due_at_us, id";

const SELECT_EVENT_BY_KEY: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE source = ?1 AND id = ?2"
);

const SELECT_EVENT_KEYS: &str = "SELECT source, id FROM events WHERE partition = ?1";

const SELECT_EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
);

// `instr` is a case-sensitive substring test (LIKE would ignore ASCII case and need escaping).
const SELECT_EVENTS_NAMING: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = ?1 AND seq >= ?2 AND instr(envelope, ?3) > 0 \
     ORDER BY seq DESC LIMIT ?4"
);

const SELECT_RESERVATION: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE id = ?1"
);

const SELECT_EXCEPTIONS: &str = concat!(
    "SELECT ",
    exception_columns!(),
    " FROM exceptions WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR status = ?2) \
     ORDER BY created_at_us DESC, id LIMIT ?3"
);

const SELECT_EXCEPTION_COUNTS: &str = "SELECT kind, COUNT(*) FROM exceptions \
     WHERE status IN ('open', 'acknowledged') GROUP BY kind ORDER BY kind";

macro_rules! outbox_select {
    ($filter:literal) => {
        concat!(
            "SELECT id, partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, created_at_us FROM outbox ",
            $filter,
            " ORDER BY id LIMIT ?"
        )
    };
}

const SELECT_OUTBOX: &str = outbox_select!("");
const SELECT_OUTBOX_FOR: &str = outbox_select!("WHERE endpoint = ?");

/// WAL pages after which a committing connection checkpoints by itself.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8_192;

/// Copies the WAL back into the database file from its own thread and connection, so commits
/// never wait for it: a `PASSIVE` checkpoint every `every`, which neither blocks nor waits for
/// writers and readers. Stops when dropped.
#[derive(Debug)]
pub struct Checkpointer {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Checkpointer {
    pub fn spawn(path: &Path, every: Duration) -> Result<Checkpointer> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let store = SqliteStore::open(path)?;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                let tick = Duration::from_millis(20).min(every);
                let mut waited = Duration::ZERO;
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(tick);
                    waited += tick;
                    if waited < every {
                        continue;
                    }
                    waited = Duration::ZERO;
                    let done = store
                        .conn
                        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                            Ok((
                                r.get::<_, i64>(0)?,
                                r.get::<_, i64>(1)?,
                                r.get::<_, i64>(2)?,
                            ))
                        });
                    if let Err(e) = done {
                        tracing::warn!(error = %e, "WAL checkpoint failed; the next one retries");
                    }
                }
            })
            .map_err(|e| {
                crate::StoreError::Config(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Checkpointer {
            stop,
            handle: Some(handle),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The embedded store. One instance per thread; open as many as needed on the same file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
}

impl SqliteStore {
    /// Runs a read of a whole table (a partition's load, every event key) through a small page
    /// cache: it reads each page once, and the 32 MiB a full cache takes would stay with the
    /// process after (SQLite's memory comes from the C allocator, which keeps what is freed).
    fn bulk_read<T>(&mut self, read: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.conn
            .pragma_update(None, "cache_size", BULK_CACHE_KIB)?;
        let result = read(&mut self.conn);
        self.conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        result
    }

    /// Opens (creating if needed) the database file and configures the connection. Call
    /// [`Store::migrate`] before anything else on a new file.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        // First, so that switching the journal mode waits for other connections too.
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // 4 KiB pages: a small group commit (a few dozen reservations) touches scattered index
        // pages, and each goes to the WAL whole; 8 KiB pages measured 10-15% slower there and no
        // faster for 10,000-event batches.
        conn.pragma_update(None, "page_size", 4096)?;
        let mode: String =
            conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), mode, "SQLite did not switch to WAL journal mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", false)?;
        conn.pragma_update(None, "cache_size", CACHE_KIB)?;
        // The WAL is copied back by a [`Checkpointer`] thread, off the commit path: a
        // checkpoint in the committing connection (copy back + fsync of tens of MiB) stalled
        // every commit behind it for tens of milliseconds. Under steady writes that thread never
        // catches the last frames, so the WAL would only grow; past this limit (32 MiB) the
        // committing connection checkpoints what little is left and the WAL starts over.
        conn.pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(SqliteStore { conn })
    }
}

impl Store for SqliteStore {
    fn migrate(&mut self, partitions: u32) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let tracked: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations')",
            [],
            |row| row.get(0),
        )?;
        let current: i64 = if tracked {
            tx.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                [],
                |row| row.get(0),
            )?
        } else {
            0
        };
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, Timestamp::now().as_micros()],
            )?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied SQLite migration"
            );
        }
        let stored: Option<String> = tx
            .query_row(SELECT_META, [PARTITIONS_KEY], |row| row.get(0))
            .optional()?;
        match stored {
            Some(stored) => common::check_partitions(&stored, partitions)?,
            None => {
                tx.execute(UPSERT_META, params![PARTITIONS_KEY, partitions.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn recorded_partitions(&mut self) -> Result<Option<u32>> {
        let has_meta: bool = self.conn.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |row| row.get(0),
        )?;
        if !has_meta {
            return Ok(None);
        }
        let stored: Option<String> = self
            .conn
            .query_row(SELECT_META, [PARTITIONS_KEY], |row| row.get(0))
            .optional()?;
        stored.map(|s| common::parse_partitions(&s)).transpose()
    }

    fn load_partition_with(
        &mut self,
        partition: u32,
        rows: &mut dyn FnMut(StateRow) -> Result<()>,
    ) -> Result<PartitionSnapshot> {
        self.bulk_read(|conn| load_partition(conn, partition, rows))
    }

    /// An empty batch (see [`CommitBatch::is_empty`]) writes nothing, not even `last_seq`.
    fn commit(&mut self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        write_batch(&tx, batch)?;
        // Dropping the transaction on an error above rolls it back.
        tx.commit()?;
        Ok(())
    }

    fn commit_all(&mut self, batches: &[&CommitBatch]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for batch in batches {
            write_batch(&tx, batch)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn find_event(&mut self, source: &str, id: &str) -> Result<Option<EventRow>> {
        let mut stmt = self.conn.prepare_cached(SELECT_EVENT_BY_KEY)?;
        let mut rows = stmt.query([source, id])?;
        rows.next()?.map(event_row).transpose()
    }

    fn key_hashes(&mut self, partition: u32) -> Result<Vec<u64>> {
        self.bulk_read(|conn| {
            let mut hashes = Vec::new();
            for_each(conn, SELECT_EVENT_KEYS, [i64::from(partition)], |row| {
                hashes.push(key_hash(text(row, 0)?, text(row, 1)?));
                Ok(())
            })?;
            Ok(hashes)
        })
    }

    fn read_events(&mut self, partition: u32, after_seq: u64, limit: u32) -> Result<Vec<EventRow>> {
        select(
            &self.conn,
            SELECT_EVENTS_AFTER,
            params![i64::from(partition), after_seq as i64, i64::from(limit)],
            event_row,
        )
    }

    fn events_naming(
        &mut self,
        partition: u32,
        item: &str,
        from_seq: u64,
        limit: u32,
    ) -> Result<Vec<EventRow>> {
        select(
            &self.conn,
            SELECT_EVENTS_NAMING,
            params![
                i64::from(partition),
                from_seq as i64,
                crate::item_member(item),
                i64::from(limit)
            ],
            event_row,
        )
    }

    fn find_reservation(&mut self, id: &str) -> Result<Option<ReservationRow>> {
        let mut stmt = self.conn.prepare_cached(SELECT_RESERVATION)?;
        let mut rows = stmt.query([id])?;
        rows.next()?.map(reservation_row).transpose()
    }

    fn list_exceptions(&mut self, filter: &ExceptionFilter) -> Result<Vec<ExceptionRecord>> {
        select(
            &self.conn,
            SELECT_EXCEPTIONS,
            params![
                filter.kind.map(ExceptionKind::as_str),
                filter.status.map(|s| s.as_str()),
                i64::from(filter.limit)
            ],
            exception_row,
        )
    }

    fn find_workflow(&mut self, key: &str) -> Result<Option<(WorkflowRow, Vec<StepRow>)>> {
        self.workflow(key)
    }

    fn list_workflows(&mut self, filter: &WorkflowFilter) -> Result<Vec<WorkflowRow>> {
        self.workflows(filter)
    }

    fn exception_counts(&mut self) -> Result<Vec<(ExceptionKind, u64)>> {
        select(&self.conn, SELECT_EXCEPTION_COUNTS, [], |row| {
            Ok((
                parse_exception_kind(text(row, 0)?)?,
                row.get::<_, i64>(1)? as u64,
            ))
        })
    }

    fn outbox(&mut self, endpoint: Option<&str>, limit: u32) -> Result<Vec<StoredOutbox>> {
        let limit = i64::from(limit);
        match endpoint {
            Some(endpoint) => select(
                &self.conn,
                SELECT_OUTBOX_FOR,
                params![endpoint, limit],
                outbox_row,
            ),
            None => select(&self.conn, SELECT_OUTBOX, [limit], outbox_row),
        }
    }
}

/// Writes every part of a batch inside the caller's transaction. The order matters where parts
/// touch the same rows: events before their status changes, exceptions before theirs, timers set
/// before timers done.
fn write_batch(tx: &Connection, b: &CommitBatch) -> Result<()> {
    if !b.events.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_EVENT)?;
        for e in &b.events {
            stmt.execute(params![
                i64::from(e.partition),
                e.seq as i64,
                e.source,
                e.id,
                e.ty,
                e.time_us,
                e.received_at_us,
                e.correlation_id,
                e.payload_hash as i64,
                e.status.as_str(),
                e.envelope,
            ])?;
        }
    }
    if !b.event_status.is_empty() {
        let mut stmt = tx.prepare_cached(UPDATE_EVENT_STATUS)?;
        for &(partition, seq, status) in &b.event_status {
            stmt.execute(params![i64::from(partition), seq as i64, status.as_str()])?;
        }
    }
    if !b.positions.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_POSITION)?;
        for p in &b.positions {
            stmt.execute(params![
                i64::from(p.partition),
                p.item,
                p.location,
                p.lot,
                p.on_hand,
                p.quarantined,
                p.damaged,
                p.returns_pending,
                p.picked,
                p.allocated,
                p.reserved,
                p.in_transit,
                p.incoming,
                p.safety_stock,
                p.extra,
                p.updated_seq as i64,
            ])?;
        }
    }
    if !b.items.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_ITEM)?;
        for i in &b.items {
            stmt.execute(params![i64::from(i.partition), i.item, i.state])?;
        }
    }
    if !b.reservations.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_RESERVATION)?;
        for r in &b.reservations {
            stmt.execute(params![
                i64::from(r.partition),
                r.id,
                r.channel,
                r.status,
                r.lines,
                r.request_hash as i64,
                r.expires_at_us,
                r.created_seq as i64,
                r.updated_seq as i64,
            ])?;
        }
    }
    if !b.source_seqs.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_SOURCE_SEQ)?;
        for s in &b.source_seqs {
            stmt.execute(params![
                i64::from(s.partition),
                s.source,
                s.next_expected as i64
            ])?;
        }
    }
    if !b.outbox.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_OUTBOX)?;
        for o in &b.outbox {
            stmt.execute(params![
                i64::from(o.partition),
                o.endpoint,
                o.key,
                o.ledger_seq as i64,
                i64::from(o.priority),
                o.kind.as_str(),
                o.payload,
                o.correlation_id,
                o.created_at_us,
            ])?;
        }
    }
    if !b.exceptions.is_empty() {
        let mut stmt = tx.prepare_cached(INSERT_EXCEPTION)?;
        for x in &b.exceptions {
            stmt.execute(params![
                x.id,
                x.kind.as_str(),
                x.status.as_str(),
                x.entity,
                x.correlation_id,
                x.reason,
                x.raw,
                x.created_at.as_micros(),
                x.updated_at.as_micros(),
            ])?;
        }
    }
    if !b.exception_status.is_empty() {
        let mut stmt = tx.prepare_cached(UPDATE_EXCEPTION_STATUS)?;
        for c in &b.exception_status {
            stmt.execute(params![c.id, c.status.as_str(), c.at_us, c.actor, c.note])?;
        }
    }
    if !b.timers_set.is_empty() {
        let mut stmt = tx.prepare_cached(UPSERT_TIMER)?;
        for t in &b.timers_set {
            stmt.execute(params![
                t.id,
                i64::from(t.partition),
                t.due_at_us,
                t.command
            ])?;
        }
    }
    if !b.timers_done.is_empty() {
        let mut stmt = tx.prepare_cached(DELETE_TIMER)?;
        for id in &b.timers_done {
            stmt.execute([id])?;
        }
    }
    workflow::write(tx, b)?;
    recon::write(tx, b)?;
    tx.prepare_cached(UPSERT_META)?.execute(params![
        common::last_seq_key(b.partition),
        b.last_seq.to_string()
    ])?;
    Ok(())
}

/// Runs a cached query and decodes every row.
fn select<T, P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    decode: fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(decode(row)?);
    }
    Ok(out)
}

/// A partition's snapshot, its positions and item states handed to `rows` as read.
fn load_partition(
    conn: &mut Connection,
    partition: u32,
    rows: &mut dyn FnMut(StateRow) -> Result<()>,
) -> Result<PartitionSnapshot> {
    let p = i64::from(partition);
    let tx = conn.transaction()?;
    for_each(&tx, SELECT_POSITIONS, [p], |row| {
        rows(StateRow::Position(position_row(row)?))
    })?;
    for_each(&tx, SELECT_ITEMS, [p], |row| {
        rows(StateRow::Item(item_row(row)?))
    })?;
    let last_seq: Option<String> = tx
        .prepare_cached(SELECT_META)?
        .query_row([common::last_seq_key(partition)], |row| row.get(0))
        .optional()?;
    let snapshot = PartitionSnapshot {
        last_seq: last_seq
            .map(|raw| common::parse_u64(&raw, "last_seq"))
            .transpose()?
            .unwrap_or(0),
        positions: Vec::new(),
        items: Vec::new(),
        reservations: select(&tx, SELECT_LIVE_RESERVATIONS, [p], reservation_row)?,
        source_seqs: select(&tx, SELECT_SOURCE_SEQS, [p], source_seq_row)?,
        held_events: select(&tx, SELECT_HELD_EVENTS, [p], event_row)?,
        timers: select(&tx, SELECT_TIMERS, [p], timer_row)?,
        workflows: workflow::live(&tx, p)?,
    };
    tx.commit()?;
    Ok(snapshot)
}

/// Runs a cached query and hands every row to `f`, without collecting them.
fn for_each<P: Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    mut f: impl FnMut(&Row<'_>) -> Result<()>,
) -> Result<()> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(params)?;
    while let Some(row) = rows.next()? {
        f(row)?;
    }
    Ok(())
}

/// Borrows a TEXT column without copying it.
fn text<'r>(row: &'r Row<'_>, idx: usize) -> rusqlite::Result<&'r str> {
    let value = row.get_ref(idx)?;
    value
        .as_str()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(idx, value.data_type(), Box::new(e)))
}

fn event_row(row: &Row<'_>) -> Result<EventRow> {
    Ok(EventRow {
        partition: common::partition(row.get(0)?)?,
        seq: row.get::<_, i64>(1)? as u64,
        source: row.get(2)?,
        id: row.get(3)?,
        ty: row.get(4)?,
        time_us: row.get(5)?,
        received_at_us: row.get(6)?,
        correlation_id: row.get(7)?,
        payload_hash: row.get::<_, i64>(8)? as u64,
        status: common::event_status(text(row, 9)?)?,
        envelope: row.get(10)?,
    })
}

fn position_row(row: &Row<'_>) -> Result<PositionRow> {
    Ok(PositionRow {
        partition: common::partition(row.get(0)?)?,
        item: row.get(1)?,
        location: row.get(2)?,
        lot: row.get(3)?,
        on_hand: row.get(4)?,
        quarantined: row.get(5)?,
        damaged: row.get(6)?,
        returns_pending: row.get(7)?,
        picked: row.get(8)?,
        allocated: row.get(9)?,
        reserved: row.get(10)?,
        in_transit: row.get(11)?,
        incoming: row.get(12)?,
        safety_stock: row.get(13)?,
        extra: row.get(14)?,
        updated_seq: row.get::<_, i64>(15)? as u64,
    })
}

fn item_row(row: &Row<'_>) -> Result<ItemStateRow> {
    Ok(ItemStateRow {
        partition: common::partition(row.get(0)?)?,
        item: row.get(1)?,
        state: row.get(2)?,
    })
}

fn reservation_row(row: &Row<'_>) -> Result<ReservationRow> {
    Ok(ReservationRow {
        partition: common::partition(row.get(0)?)?,
        id: row.get(1)?,
        channel: row.get(2)?,
        status: row.get(3)?,
        lines: row.get(4)?,
        request_hash: row.get::<_, i64>(5)? as u64,
        expires_at_us: row.get(6)?,
        created_seq: row.get::<_, i64>(7)? as u64,
        updated_seq: row.get::<_, i64>(8)? as u64,
    })
}

fn source_seq_row(row: &Row<'_>) -> Result<SourceSeqRow> {
    Ok(SourceSeqRow {
        partition: common::partition(row.get(0)?)?,
        source: row.get(1)?,
        next_expected: row.get::<_, i64>(2)? as u64,
    })
}

fn timer_row(row: &Row<'_>) -> Result<TimerRow> {
    Ok(TimerRow {
        partition: common::partition(row.get(0)?)?,
        id: row.get(1)?,
        due_at_us: row.get(2)?,
        command: row.get(3)?,
    })
}

fn exception_row(row: &Row<'_>) -> Result<ExceptionRecord> {
    Ok(ExceptionRecord {
        id: row.get(0)?,
        kind: parse_exception_kind(text(row, 1)?)?,
        status: parse_exception_status(text(row, 2)?)?,
        entity: row.get(3)?,
        correlation_id: row.get(4)?,
        reason: row.get(5)?,
        raw: row.get(6)?,
        created_at: Timestamp::from_micros(row.get(7)?),
        updated_at: Timestamp::from_micros(row.get(8)?),
    })
}

fn outbox_row(row: &Row<'_>) -> Result<StoredOutbox> {
    Ok(StoredOutbox {
        id: row.get(0)?,
        row: OutboxRow {
            partition: common::partition(row.get(1)?)?,
            endpoint: row.get(2)?,
            key: row.get(3)?,
            ledger_seq: row.get::<_, i64>(4)? as u64,
            priority: common::priority(row.get(5)?)?,
            kind: common::outbox_kind(text(row, 6)?)?,
            payload: row.get(7)?,
            correlation_id: row.get(8)?,
            created_at_us: row.get(9)?,
        },
    })
}
