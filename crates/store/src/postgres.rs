//! PostgreSQL store: the same tables and semantics as the SQLite store.
//!
//! A commit is one transaction of a few statements: every part of a batch is sent as one array
//! per column and expanded server-side with `UNNEST`, so a batch costs a round trip per table, not
//! per row. Statements are prepared once per connection and reused. Text is ordered with
//! `COLLATE "C"` (byte order, like SQLite) whatever the database's collation.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use ::postgres::fallible_iterator::FallibleIterator;
use ::postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};
use crossdock_model::event::key_hash;
use crossdock_model::{ExceptionKind, ExceptionRecord, Timestamp};

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

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        sql: include_str!("../migrations/postgres/0001_init.sql"),
    },
    Migration {
        version: 2,
        name: "delivery",
        sql: include_str!("../migrations/postgres/0002_delivery.sql"),
    },
    Migration {
        version: 3,
        name: "edi",
        sql: include_str!("../migrations/postgres/0003_edi.sql"),
    },
    Migration {
        version: 4,
        name: "workflows",
        sql: include_str!("../migrations/postgres/0004_workflows.sql"),
    },
    Migration {
        version: 5,
        name: "exception_queue",
        sql: include_str!("../migrations/postgres/0005_exception_queue.sql"),
    },
    Migration {
        version: 6,
        name: "reconciliation",
        sql: include_str!("../migrations/postgres/0006_reconciliation.sql"),
    },
    Migration {
        version: 7,
        name: "trace",
        sql: include_str!("../migrations/postgres/0007_trace.sql"),
    },
    Migration {
        version: 8,
        name: "forwarding",
        sql: include_str!("../migrations/postgres/0008_forwarding.sql"),
    },
];

const INSERT_EVENTS: &str = concat!(
    "INSERT INTO events (",
    event_columns!(),
    ") SELECT * FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], \
     $7::BIGINT[], $8::TEXT[], $9::BIGINT[], $10::TEXT[], $11::TEXT[])"
);

const UPDATE_EVENT_STATUS: &str = "UPDATE events SET status = u.status \
     FROM UNNEST($1::BIGINT[], $2::BIGINT[], $3::TEXT[]) AS u (partition, seq, status) \
     WHERE events.partition = u.partition AND events.seq = u.seq";

const UPSERT_POSITIONS: &str = concat!(
    "INSERT INTO positions (",
    position_columns!(),
    ") SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::BIGINT[], $6::BIGINT[], \
     $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::BIGINT[], $11::BIGINT[], $12::BIGINT[], $13::BIGINT[], \
     $14::BIGINT[], $15::TEXT[], $16::BIGINT[]) \
     ON CONFLICT (item, location, lot) DO UPDATE SET partition = excluded.partition, \
     on_hand = excluded.on_hand, quarantined = excluded.quarantined, damaged = excluded.damaged, \
     returns_pending = excluded.returns_pending, picked = excluded.picked, allocated = excluded.allocated, \
     reserved = excluded.reserved, in_transit = excluded.in_transit, incoming = excluded.incoming, \
     safety_stock = excluded.safety_stock, extra = excluded.extra, updated_seq = excluded.updated_seq"
);

const UPSERT_ITEMS: &str = "INSERT INTO item_state (partition, item, state) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[]) \
     ON CONFLICT (item) DO UPDATE SET partition = excluded.partition, state = excluded.state";

const UPSERT_RESERVATIONS: &str = concat!(
    "INSERT INTO reservations (",
    reservation_columns!(),
    ") SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], \
     $7::BIGINT[], $8::BIGINT[], $9::BIGINT[]) \
     ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, channel = excluded.channel, \
     status = excluded.status, lines = excluded.lines, request_hash = excluded.request_hash, \
     expires_at_us = excluded.expires_at_us, created_seq = excluded.created_seq, updated_seq = excluded.updated_seq"
);

const UPSERT_SOURCE_SEQS: &str = "INSERT INTO source_seqs (partition, source, next_expected) \
     SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) \
     ON CONFLICT (partition, source) DO UPDATE SET next_expected = excluded.next_expected";

/// Ordered by position in the batch, so ids follow batch order.
const INSERT_OUTBOX: &str = "INSERT INTO outbox \
     (partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, created_at_us) \
     SELECT partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, created_at_us \
     FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::TEXT[], $4::BIGINT[], $5::BIGINT[], $6::TEXT[], $7::TEXT[], \
     $8::TEXT[], $9::BIGINT[]) \
     WITH ORDINALITY AS u (partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, \
     created_at_us, n) ORDER BY n";

const INSERT_EXCEPTIONS: &str = concat!(
    "INSERT INTO exceptions (",
    exception_columns!(),
    ") SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[], $7::TEXT[], \
     $8::BIGINT[], $9::BIGINT[]) ON CONFLICT (id) DO NOTHING"
);

const UPDATE_EXCEPTION_STATUS: &str = "UPDATE exceptions \
     SET status = u.status, updated_at_us = u.at_us, actor = u.actor, note = u.note \
     FROM UNNEST($1::TEXT[], $2::TEXT[], $3::BIGINT[], $4::TEXT[], $5::TEXT[]) AS u (id, status, at_us, actor, note) \
     WHERE exceptions.id = u.id";

const UPSERT_TIMERS: &str = "INSERT INTO timers (id, partition, due_at_us, command) \
     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[]) \
     ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, due_at_us = excluded.due_at_us, \
     command = excluded.command";

const DELETE_TIMERS: &str = "DELETE FROM timers WHERE id = ANY($1::TEXT[])";

const UPSERT_META: &str = "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value";

const SELECT_META: &str = "SELECT value FROM meta WHERE key = $1";

const SELECT_POSITIONS: &str = concat!(
    "SELECT ",
    position_columns!(),
    " FROM positions WHERE partition = $1 ORDER BY item COLLATE \"C\", location COLLATE \"C\", lot COLLATE \"C\""
);

const SELECT_ITEMS: &str = "SELECT partition, item, state FROM item_state WHERE partition = $1 ORDER BY item COLLATE \"C\"";

const SELECT_LIVE_RESERVATIONS: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE partition = $1 AND status IN ('held', 'committed', 'preparing') ORDER BY id COLLATE \"C\""
);

const SELECT_SOURCE_SEQS: &str = "SELECT partition, source, next_expected FROM source_seqs WHERE partition = $1 ORDER BY source COLLATE \"C\"";

const SELECT_HELD_EVENTS: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = $1 AND status IN ('held', 'forwarding') ORDER BY seq"
);

const SELECT_TIMERS: &str = "SELECT partition, id, due_at_us, command FROM timers WHERE partition = $1 ORDER BY due_at_us, id COLLATE \"C\"";

const SELECT_EVENT_BY_KEY: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE source = $1 AND id = $2"
);

const SELECT_EVENT_KEYS: &str = "SELECT source, id FROM events WHERE partition = $1";

const SELECT_EVENTS_AFTER: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = $1 AND seq > $2 ORDER BY seq LIMIT $3"
);

// `strpos` is a case-sensitive substring test (LIKE would need escaping).
const SELECT_EVENTS_NAMING: &str = concat!(
    "SELECT ",
    event_columns!(),
    " FROM events WHERE partition = $1 AND seq >= $2 AND strpos(envelope, $3) > 0 \
     ORDER BY seq DESC LIMIT $4"
);

const SELECT_RESERVATION: &str = concat!(
    "SELECT ",
    reservation_columns!(),
    " FROM reservations WHERE id = $1"
);

const SELECT_EXCEPTIONS: &str = concat!(
    "SELECT ",
    exception_columns!(),
    " FROM exceptions WHERE ($1::TEXT IS NULL OR kind = $1) AND ($2::TEXT IS NULL OR status = $2) \
     ORDER BY created_at_us DESC, id COLLATE \"C\" LIMIT $3"
);

const SELECT_EXCEPTION_COUNTS: &str = "SELECT kind, COUNT(*) FROM exceptions \
     WHERE status IN ('open', 'acknowledged') GROUP BY kind ORDER BY kind COLLATE \"C\"";

macro_rules! outbox_select {
    ($filter:literal, $limit:literal) => {
        concat!(
            "SELECT id, partition, endpoint, key, ledger_seq, priority, kind, payload, correlation_id, created_at_us FROM outbox ",
            $filter,
            " ORDER BY id LIMIT ",
            $limit
        )
    };
}

const SELECT_OUTBOX: &str = outbox_select!("", "$1");
const SELECT_OUTBOX_FOR: &str = outbox_select!("WHERE endpoint = $1", "$2");

/// The scale-out store: one connection. Open one per writer thread plus one for reads.
pub struct PgStore {
    client: Client,
    statements: Statements,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("prepared", &self.statements.0.len())
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects without TLS. With `schema`, creates it if needed and works inside it (search path);
    /// otherwise uses the connection's default search path. Call [`Store::migrate`] before anything
    /// else on a new database or schema.
    pub fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut client = Client::connect(url, NoTls)?;
        if let Some(schema) = schema {
            let schema = quote_ident(schema);
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {schema}; SET search_path TO {schema}"
            ))?;
        }
        Ok(PgStore {
            client,
            statements: Statements::default(),
        })
    }
}

impl Store for PgStore {
    fn migrate(&mut self, partitions: u32) -> Result<()> {
        let mut tx = self.client.transaction()?;
        // Serializes concurrent migrations of the same schema; released at commit or rollback.
        tx.batch_execute(
            "SELECT pg_advisory_xact_lock(hashtext('crossdock migrate ' || current_schema()))",
        )?;
        let tracked: bool = tx
            .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])?
            .try_get(0)?;
        let current: i64 = if tracked {
            tx.query_one(
                "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                &[],
            )?
            .try_get(0)?
        } else {
            0
        };
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.batch_execute(m.sql)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at_us) VALUES ($1, $2, $3)",
                &[&m.version, &m.name, &Timestamp::now().as_micros()],
            )?;
            tracing::info!(
                version = m.version,
                name = m.name,
                "applied PostgreSQL migration"
            );
        }
        match tx.query_opt(SELECT_META, &[&PARTITIONS_KEY])? {
            Some(row) => common::check_partitions(row.try_get(0)?, partitions)?,
            None => {
                tx.execute(UPSERT_META, &[&PARTITIONS_KEY, &partitions.to_string()])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn recorded_partitions(&mut self) -> Result<Option<u32>> {
        let has_meta: bool = self
            .client
            .query_one("SELECT to_regclass('meta') IS NOT NULL", &[])?
            .try_get(0)?;
        if !has_meta {
            return Ok(None);
        }
        match self.client.query_opt(SELECT_META, &[&PARTITIONS_KEY])? {
            Some(row) => Ok(Some(common::parse_partitions(row.try_get(0)?)?)),
            None => Ok(None),
        }
    }

    fn load_partition_with(
        &mut self,
        partition: u32,
        rows: &mut dyn FnMut(StateRow) -> Result<()>,
    ) -> Result<PartitionSnapshot> {
        let p = i64::from(partition);
        let statements = &mut self.statements;
        // One snapshot for every table, so the parts agree with each other.
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let stmt = statements.get(&mut tx, SELECT_META)?;
        let last_seq = match tx.query_opt(&stmt, &[&common::last_seq_key(partition)])? {
            Some(row) => common::parse_u64(row.try_get(0)?, "last_seq")?,
            None => 0,
        };
        for_each(&mut tx, statements, SELECT_POSITIONS, &[&p], |row| {
            rows(StateRow::Position(position_row(row)?))
        })?;
        for_each(&mut tx, statements, SELECT_ITEMS, &[&p], |row| {
            rows(StateRow::Item(item_row(row)?))
        })?;
        let snapshot = PartitionSnapshot {
            last_seq,
            positions: Vec::new(),
            items: Vec::new(),
            reservations: select(
                &mut tx,
                statements,
                SELECT_LIVE_RESERVATIONS,
                &[&p],
                reservation_row,
            )?,
            source_seqs: select(
                &mut tx,
                statements,
                SELECT_SOURCE_SEQS,
                &[&p],
                source_seq_row,
            )?,
            held_events: select(&mut tx, statements, SELECT_HELD_EVENTS, &[&p], event_row)?,
            timers: select(&mut tx, statements, SELECT_TIMERS, &[&p], timer_row)?,
            workflows: workflow::live(&mut tx, statements, p)?,
        };
        tx.commit()?;
        Ok(snapshot)
    }

    /// An empty batch (see [`CommitBatch::is_empty`]) writes nothing, not even `last_seq`.
    fn commit(&mut self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut tx = self.client.transaction()?;
        write_batch(&mut tx, &mut self.statements, batch)?;
        // Dropping the transaction on an error above rolls it back.
        tx.commit()?;
        Ok(())
    }

    fn commit_all(&mut self, batches: &[&CommitBatch]) -> Result<()> {
        let mut tx = self.client.transaction()?;
        for batch in batches {
            write_batch(&mut tx, &mut self.statements, batch)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn find_event(&mut self, source: &str, id: &str) -> Result<Option<EventRow>> {
        let stmt = self.statements.get(&mut self.client, SELECT_EVENT_BY_KEY)?;
        self.client
            .query_opt(&stmt, &[&source, &id])?
            .as_ref()
            .map(event_row)
            .transpose()
    }

    fn key_hashes(&mut self, partition: u32) -> Result<Vec<u64>> {
        let stmt = self.statements.get(&mut self.client, SELECT_EVENT_KEYS)?;
        let mut rows = self.client.query_raw(&stmt, [i64::from(partition)])?;
        let mut hashes = Vec::new();
        while let Some(row) = rows.next()? {
            hashes.push(key_hash(row.try_get(0)?, row.try_get(1)?));
        }
        Ok(hashes)
    }

    fn read_events(&mut self, partition: u32, after_seq: u64, limit: u32) -> Result<Vec<EventRow>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_EVENTS_AFTER,
            &[
                &i64::from(partition),
                &(after_seq as i64),
                &i64::from(limit),
            ],
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
            &mut self.client,
            &mut self.statements,
            SELECT_EVENTS_NAMING,
            &[
                &i64::from(partition),
                &(from_seq as i64),
                &crate::item_member(item),
                &i64::from(limit),
            ],
            event_row,
        )
    }

    fn find_reservation(&mut self, id: &str) -> Result<Option<ReservationRow>> {
        let stmt = self.statements.get(&mut self.client, SELECT_RESERVATION)?;
        self.client
            .query_opt(&stmt, &[&id])?
            .as_ref()
            .map(reservation_row)
            .transpose()
    }

    fn list_exceptions(&mut self, filter: &ExceptionFilter) -> Result<Vec<ExceptionRecord>> {
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_EXCEPTIONS,
            &[
                &filter.kind.map(ExceptionKind::as_str),
                &filter.status.map(|s| s.as_str()),
                &i64::from(filter.limit),
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
        select(
            &mut self.client,
            &mut self.statements,
            SELECT_EXCEPTION_COUNTS,
            &[],
            |row| {
                Ok((
                    parse_exception_kind(row.try_get(0)?)?,
                    row.try_get::<_, i64>(1)? as u64,
                ))
            },
        )
    }

    fn outbox(&mut self, endpoint: Option<&str>, limit: u32) -> Result<Vec<StoredOutbox>> {
        let limit = i64::from(limit);
        match endpoint {
            Some(endpoint) => select(
                &mut self.client,
                &mut self.statements,
                SELECT_OUTBOX_FOR,
                &[&endpoint, &limit],
                outbox_row,
            ),
            None => select(
                &mut self.client,
                &mut self.statements,
                SELECT_OUTBOX,
                &[&limit],
                outbox_row,
            ),
        }
    }
}

/// Writes every part of a batch inside the caller's transaction, one statement per part. The
/// order matters where parts touch the same rows: events before their status changes, exceptions
/// before theirs, timers set before timers done. Upserts and updates keep the last row per key,
/// as applying the rows one by one would (PostgreSQL refuses to change a row twice in one
/// statement).
fn write_batch(
    tx: &mut Transaction<'_>,
    statements: &mut Statements,
    b: &CommitBatch,
) -> Result<()> {
    if !b.events.is_empty() {
        let e = b.events.as_slice();
        let stmt = statements.get(tx, INSERT_EVENTS)?;
        tx.execute(
            &stmt,
            &[
                &col(e, |e| i64::from(e.partition)),
                &col(e, |e| e.seq as i64),
                &col(e, |e| e.source.as_str()),
                &col(e, |e| e.id.as_str()),
                &col(e, |e| e.ty.as_str()),
                &col(e, |e| e.time_us),
                &col(e, |e| e.received_at_us),
                &col(e, |e| e.correlation_id.as_str()),
                &col(e, |e| e.payload_hash as i64),
                &col(e, |e| e.status.as_str()),
                &col(e, |e| e.envelope.as_str()),
            ],
        )?;
    }
    if !b.event_status.is_empty() {
        let s = last_per_key(&b.event_status, |&(partition, seq, _)| (partition, seq));
        let stmt = statements.get(tx, UPDATE_EVENT_STATUS)?;
        tx.execute(
            &stmt,
            &[
                &col(&s, |s| i64::from(s.0)),
                &col(&s, |s| s.1 as i64),
                &col(&s, |s| s.2.as_str()),
            ],
        )?;
    }
    if !b.positions.is_empty() {
        let p = last_per_key(&b.positions, |p| {
            (p.item.as_str(), p.location.as_str(), p.lot.as_str())
        });
        let stmt = statements.get(tx, UPSERT_POSITIONS)?;
        tx.execute(
            &stmt,
            &[
                &col(&p, |p| i64::from(p.partition)),
                &col(&p, |p| p.item.as_str()),
                &col(&p, |p| p.location.as_str()),
                &col(&p, |p| p.lot.as_str()),
                &col(&p, |p| p.on_hand),
                &col(&p, |p| p.quarantined),
                &col(&p, |p| p.damaged),
                &col(&p, |p| p.returns_pending),
                &col(&p, |p| p.picked),
                &col(&p, |p| p.allocated),
                &col(&p, |p| p.reserved),
                &col(&p, |p| p.in_transit),
                &col(&p, |p| p.incoming),
                &col(&p, |p| p.safety_stock),
                &col(&p, |p| p.extra.as_str()),
                &col(&p, |p| p.updated_seq as i64),
            ],
        )?;
    }
    if !b.items.is_empty() {
        let i = last_per_key(&b.items, |i| i.item.as_str());
        let stmt = statements.get(tx, UPSERT_ITEMS)?;
        tx.execute(
            &stmt,
            &[
                &col(&i, |i| i64::from(i.partition)),
                &col(&i, |i| i.item.as_str()),
                &col(&i, |i| i.state.as_str()),
            ],
        )?;
    }
    if !b.reservations.is_empty() {
        let r = last_per_key(&b.reservations, |r| r.id.as_str());
        let stmt = statements.get(tx, UPSERT_RESERVATIONS)?;
        tx.execute(
            &stmt,
            &[
                &col(&r, |r| i64::from(r.partition)),
                &col(&r, |r| r.id.as_str()),
                &col(&r, |r| r.channel.as_str()),
                &col(&r, |r| r.status.as_str()),
                &col(&r, |r| r.lines.as_str()),
                &col(&r, |r| r.request_hash as i64),
                &col(&r, |r| r.expires_at_us),
                &col(&r, |r| r.created_seq as i64),
                &col(&r, |r| r.updated_seq as i64),
            ],
        )?;
    }
    if !b.source_seqs.is_empty() {
        let s = last_per_key(&b.source_seqs, |s| (s.partition, s.source.as_str()));
        let stmt = statements.get(tx, UPSERT_SOURCE_SEQS)?;
        tx.execute(
            &stmt,
            &[
                &col(&s, |s| i64::from(s.partition)),
                &col(&s, |s| s.source.as_str()),
                &col(&s, |s| s.next_expected as i64),
            ],
        )?;
    }
    if !b.outbox.is_empty() {
        let o = b.outbox.as_slice();
        let stmt = statements.get(tx, INSERT_OUTBOX)?;
        tx.execute(
            &stmt,
            &[
                &col(o, |o| i64::from(o.partition)),
                &col(o, |o| o.endpoint.as_str()),
                &col(o, |o| o.key.as_str()),
                &col(o, |o| o.ledger_seq as i64),
                &col(o, |o| i64::from(o.priority)),
                &col(o, |o| o.kind.as_str()),
                &col(o, |o| o.payload.as_str()),
                &col(o, |o| o.correlation_id.as_deref()),
                &col(o, |o| o.created_at_us),
            ],
        )?;
    }
    if !b.exceptions.is_empty() {
        // A repeated id keeps its first record, like a second `INSERT .. DO NOTHING` would.
        let x = b.exceptions.as_slice();
        let stmt = statements.get(tx, INSERT_EXCEPTIONS)?;
        tx.execute(
            &stmt,
            &[
                &col(x, |x| x.id.as_str()),
                &col(x, |x| x.kind.as_str()),
                &col(x, |x| x.status.as_str()),
                &col(x, |x| x.entity.as_str()),
                &col(x, |x| x.correlation_id.as_deref()),
                &col(x, |x| x.reason.as_str()),
                &col(x, |x| x.raw.as_deref()),
                &col(x, |x| x.created_at.as_micros()),
                &col(x, |x| x.updated_at.as_micros()),
            ],
        )?;
    }
    if !b.exception_status.is_empty() {
        let c = last_per_key(&b.exception_status, |c| c.id.as_str());
        let stmt = statements.get(tx, UPDATE_EXCEPTION_STATUS)?;
        tx.execute(
            &stmt,
            &[
                &col(&c, |c| c.id.as_str()),
                &col(&c, |c| c.status.as_str()),
                &col(&c, |c| c.at_us),
                &col(&c, |c| c.actor.as_str()),
                &col(&c, |c| c.note.as_str()),
            ],
        )?;
    }
    if !b.timers_set.is_empty() {
        let t = last_per_key(&b.timers_set, |t| t.id.as_str());
        let stmt = statements.get(tx, UPSERT_TIMERS)?;
        tx.execute(
            &stmt,
            &[
                &col(&t, |t| t.id.as_str()),
                &col(&t, |t| i64::from(t.partition)),
                &col(&t, |t| t.due_at_us),
                &col(&t, |t| t.command.as_str()),
            ],
        )?;
    }
    if !b.timers_done.is_empty() {
        let stmt = statements.get(tx, DELETE_TIMERS)?;
        tx.execute(&stmt, &[&b.timers_done])?;
    }
    workflow::write(tx, statements, b)?;
    recon::write(tx, statements, b)?;
    let stmt = statements.get(tx, UPSERT_META)?;
    tx.execute(
        &stmt,
        &[&common::last_seq_key(b.partition), &b.last_seq.to_string()],
    )?;
    Ok(())
}

/// Prepared statements of one connection, by SQL text.
#[derive(Default)]
struct Statements(HashMap<&'static str, Statement>);

impl Statements {
    fn get(&mut self, client: &mut impl GenericClient, sql: &'static str) -> Result<Statement> {
        if let Some(stmt) = self.0.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = client.prepare(sql)?;
        self.0.insert(sql, stmt.clone());
        Ok(stmt)
    }
}

/// Runs a prepared query and decodes every row.
fn select<T>(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    sql: &'static str,
    params: &[&(dyn ::postgres::types::ToSql + Sync)],
    decode: fn(&Row) -> Result<T>,
) -> Result<Vec<T>> {
    let stmt = statements.get(client, sql)?;
    client.query(&stmt, params)?.iter().map(decode).collect()
}

/// Runs a prepared query and hands every row to `f` as it arrives, without collecting them.
fn for_each(
    client: &mut impl GenericClient,
    statements: &mut Statements,
    sql: &'static str,
    params: &[&(dyn ::postgres::types::ToSql + Sync)],
    mut f: impl FnMut(&Row) -> Result<()>,
) -> Result<()> {
    let stmt = statements.get(client, sql)?;
    let mut rows = client.query_raw(&stmt, params.iter().copied())?;
    while let Some(row) = rows.next()? {
        f(&row)?;
    }
    Ok(())
}

/// One column of a batch, as an array parameter.
fn col<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

/// The last row for each key, in batch order.
fn last_per_key<'a, T, K: Eq + Hash>(rows: &'a [T], key: impl Fn(&'a T) -> K) -> Vec<&'a T> {
    let mut seen = HashSet::with_capacity(rows.len());
    let mut kept: Vec<&T> = rows
        .iter()
        .rev()
        .filter(|row| seen.insert(key(row)))
        .collect();
    kept.reverse();
    kept
}

/// Quotes an SQL identifier (a schema name from configuration).
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn event_row(row: &Row) -> Result<EventRow> {
    Ok(EventRow {
        partition: common::partition(row.try_get(0)?)?,
        seq: row.try_get::<_, i64>(1)? as u64,
        source: row.try_get(2)?,
        id: row.try_get(3)?,
        ty: row.try_get(4)?,
        time_us: row.try_get(5)?,
        received_at_us: row.try_get(6)?,
        correlation_id: row.try_get(7)?,
        payload_hash: row.try_get::<_, i64>(8)? as u64,
        status: common::event_status(row.try_get(9)?)?,
        envelope: row.try_get(10)?,
    })
}

fn position_row(row: &Row) -> Result<PositionRow> {
    Ok(PositionRow {
        partition: common::partition(row.try_get(0)?)?,
        item: row.try_get(1)?,
        location: row.try_get(2)?,
        lot: row.try_get(3)?,
        on_hand: row.try_get(4)?,
        quarantined: row.try_get(5)?,
        damaged: row.try_get(6)?,
        returns_pending: row.try_get(7)?,
        picked: row.try_get(8)?,
        allocated: row.try_get(9)?,
        reserved: row.try_get(10)?,
        in_transit: row.try_get(11)?,
        incoming: row.try_get(12)?,
        safety_stock: row.try_get(13)?,
        extra: row.try_get(14)?,
        updated_seq: row.try_get::<_, i64>(15)? as u64,
    })
}

fn item_row(row: &Row) -> Result<ItemStateRow> {
    Ok(ItemStateRow {
        partition: common::partition(row.try_get(0)?)?,
        item: row.try_get(1)?,
        state: row.try_get(2)?,
    })
}

fn reservation_row(row: &Row) -> Result<ReservationRow> {
    Ok(ReservationRow {
        partition: common::partition(row.try_get(0)?)?,
        id: row.try_get(1)?,
        channel: row.try_get(2)?,
        status: row.try_get(3)?,
        lines: row.try_get(4)?,
        request_hash: row.try_get::<_, i64>(5)? as u64,
        expires_at_us: row.try_get(6)?,
        created_seq: row.try_get::<_, i64>(7)? as u64,
        updated_seq: row.try_get::<_, i64>(8)? as u64,
    })
}

fn source_seq_row(row: &Row) -> Result<SourceSeqRow> {
    Ok(SourceSeqRow {
        partition: common::partition(row.try_get(0)?)?,
        source: row.try_get(1)?,
        next_expected: row.try_get::<_, i64>(2)? as u64,
    })
}

fn timer_row(row: &Row) -> Result<TimerRow> {
    Ok(TimerRow {
        partition: common::partition(row.try_get(0)?)?,
        id: row.try_get(1)?,
        due_at_us: row.try_get(2)?,
        command: row.try_get(3)?,
    })
}

fn exception_row(row: &Row) -> Result<ExceptionRecord> {
    Ok(ExceptionRecord {
        id: row.try_get(0)?,
        kind: parse_exception_kind(row.try_get(1)?)?,
        status: parse_exception_status(row.try_get(2)?)?,
        entity: row.try_get(3)?,
        correlation_id: row.try_get(4)?,
        reason: row.try_get(5)?,
        raw: row.try_get(6)?,
        created_at: Timestamp::from_micros(row.try_get(7)?),
        updated_at: Timestamp::from_micros(row.try_get(8)?),
    })
}

fn outbox_row(row: &Row) -> Result<StoredOutbox> {
    Ok(StoredOutbox {
        id: row.try_get(0)?,
        row: OutboxRow {
            partition: common::partition(row.try_get(1)?)?,
            endpoint: row.try_get(2)?,
            key: row.try_get(3)?,
            ledger_seq: row.try_get::<_, i64>(4)? as u64,
            priority: common::priority(row.try_get(5)?)?,
            kind: common::outbox_kind(row.try_get(6)?)?,
            payload: row.try_get(7)?,
            correlation_id: row.try_get(8)?,
            created_at_us: row.try_get(9)?,
        },
    })
}
