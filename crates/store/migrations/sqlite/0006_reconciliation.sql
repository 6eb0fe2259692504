-- Reconciliation and time travel: what every applied input changed per position, every channel
-- availability the ledger computed, every value delivered, and the reconciliation runs with
-- their variances. Keep in step with ../postgres/0006_reconciliation.sql.

-- The journal: one row per (applied input, position) it changed, bucket by bucket
-- (`after - before`). `time_us` is the input's event time (reconciliation backs out inputs that
-- happened after a snapshot); `at_us` is when the hub committed it (item history as of a time).
CREATE TABLE position_changes (
    partition BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    n BIGINT NOT NULL,
    item TEXT NOT NULL,
    location TEXT NOT NULL,
    lot TEXT NOT NULL,
    time_us BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
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
    PRIMARY KEY (partition, seq, n)
) WITHOUT ROWID;
CREATE INDEX position_changes_item ON position_changes (item, at_us);
-- Covers the reconciliation scan: committed since a time, happened after another.
CREATE INDEX position_changes_at ON position_changes (at_us, time_us);

-- Every channel availability the ledger computed, when it changed.
CREATE TABLE ats_history (
    item TEXT NOT NULL,
    channel TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    ats BIGINT NOT NULL,
    PRIMARY KEY (item, channel, at_us, seq)
) WITHOUT ROWID;

-- Every value delivered to a channel, kept by a trigger on delivery_sent (which holds only the
-- newest per key).
CREATE TABLE delivery_sent_log (
    key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    sent_at_us BIGINT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    value BIGINT,
    PRIMARY KEY (key, endpoint, sent_at_us, ledger_seq)
) WITHOUT ROWID;
CREATE TRIGGER delivery_sent_logged_insert AFTER INSERT ON delivery_sent BEGIN
    INSERT OR IGNORE INTO delivery_sent_log (key, endpoint, sent_at_us, ledger_seq, value)
    VALUES (NEW.key, NEW.endpoint, NEW.sent_at_us, NEW.ledger_seq, NEW.value);
END;
CREATE TRIGGER delivery_sent_logged_update AFTER UPDATE ON delivery_sent BEGIN
    INSERT OR IGNORE INTO delivery_sent_log (key, endpoint, sent_at_us, ledger_seq, value)
    VALUES (NEW.key, NEW.endpoint, NEW.sent_at_us, NEW.ledger_seq, NEW.value);
END;

-- One reconciliation: which source, its snapshot's time, counts by class (JSON) and outcome.
CREATE TABLE recon_runs (
    id TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    started_by TEXT NOT NULL,
    as_of_us BIGINT NOT NULL,
    started_at_us BIGINT NOT NULL,
    finished_at_us BIGINT NOT NULL,
    status TEXT NOT NULL,
    rows BIGINT NOT NULL,
    counts TEXT NOT NULL,
    digest TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE INDEX recon_runs_source ON recon_runs (source, started_at_us);

-- Every row of a run that is not a match, and what the run did about it.
CREATE TABLE recon_variances (
    run_id TEXT NOT NULL,
    n BIGINT NOT NULL,
    item TEXT NOT NULL,
    location TEXT NOT NULL,
    lot TEXT NOT NULL,
    class TEXT NOT NULL,
    source_qty BIGINT,
    ledger_qty BIGINT,
    delta BIGINT NOT NULL,
    detail TEXT NOT NULL,
    action TEXT NOT NULL,
    reference TEXT NOT NULL,
    PRIMARY KEY (run_id, n)
) WITHOUT ROWID;
