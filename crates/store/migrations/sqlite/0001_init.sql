-- Crossdock schema, SQLite dialect.
--
-- Keep in step with ../postgres/0001_init.sql: the tables, columns and indexes are the same; only
-- the outbox id column is spelled differently. Only BIGINT and TEXT columns are used. Unsigned
-- 64-bit values (sequences, hashes) are stored as BIGINT with the same bit pattern.

CREATE TABLE schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_us BIGINT NOT NULL
);

-- `partitions`: the partition count the data was written with.
-- `last_seq:<partition>`: the partition's ledger sequence after its last commit.
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- The event log. `(partition, seq)` is the log position, `(source, id)` the idempotency key.
CREATE TABLE events (
    partition BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    received_at_us BIGINT NOT NULL,
    correlation_id TEXT NOT NULL,
    payload_hash BIGINT NOT NULL,
    status TEXT NOT NULL,
    envelope TEXT NOT NULL,
    PRIMARY KEY (partition, seq)
) WITHOUT ROWID; -- clustered by log position: one B-tree fewer per event than a rowid table
-- This unique index is the idempotency-key store.
CREATE UNIQUE INDEX events_idempotency_key ON events (source, id);
-- Covers the key fingerprints a writer loads at start, without reading the envelopes.
CREATE INDEX events_partition_key ON events (partition, source, id);
-- Events held by the resequencer; small, so loading them does not scan the log.
CREATE INDEX events_held ON events (partition, seq) WHERE status = 'held';

CREATE VIEW idempotency_keys AS
    SELECT source, id, payload_hash, status, partition, seq FROM events;

CREATE TABLE positions (
    partition BIGINT NOT NULL,
    item TEXT NOT NULL,
    location TEXT NOT NULL,
    lot TEXT NOT NULL,
    on_hand BIGINT NOT NULL,
    quarantined BIGINT NOT NULL,
    damaged BIGINT NOT NULL,
    returns_pending BIGINT NOT NULL,
    picked BIGINT NOT NULL,
    allocated BIGINT NOT NULL,
    reserved BIGINT NOT NULL,
    in_transit BIGINT NOT NULL,
    incoming BIGINT NOT NULL,
    safety_stock BIGINT NOT NULL,
    extra TEXT NOT NULL,
    updated_seq BIGINT NOT NULL,
    PRIMARY KEY (item, location, lot)
);
CREATE INDEX positions_partition ON positions (partition);

CREATE TABLE item_state (
    partition BIGINT NOT NULL,
    item TEXT PRIMARY KEY,
    state TEXT NOT NULL
);
CREATE INDEX item_state_partition ON item_state (partition);

CREATE TABLE reservations (
    partition BIGINT NOT NULL,
    id TEXT PRIMARY KEY,
    channel TEXT NOT NULL,
    status TEXT NOT NULL,
    lines TEXT NOT NULL,
    request_hash BIGINT NOT NULL,
    expires_at_us BIGINT NOT NULL,
    created_seq BIGINT NOT NULL,
    updated_seq BIGINT NOT NULL
);
CREATE INDEX reservations_partition_status ON reservations (partition, status);

CREATE TABLE source_seqs (
    partition BIGINT NOT NULL,
    source TEXT NOT NULL,
    next_expected BIGINT NOT NULL,
    PRIMARY KEY (partition, source)
);

CREATE TABLE outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    payload TEXT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX outbox_lane ON outbox (endpoint, priority, id);

CREATE TABLE exceptions (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    entity TEXT NOT NULL,
    correlation_id TEXT,
    reason TEXT NOT NULL,
    raw TEXT,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    -- Who made the last status change and why; empty until someone does.
    actor TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX exceptions_status_kind ON exceptions (status, kind);

CREATE TABLE timers (
    id TEXT PRIMARY KEY,
    partition BIGINT NOT NULL,
    due_at_us BIGINT NOT NULL,
    command TEXT NOT NULL
);
CREATE INDEX timers_partition ON timers (partition);
