-- Reconciliation and time travel: the journal of what every commit changed, every value
-- delivered, and the reconciliation runs with their variances. Keep in step with ../sqlite/0006_reconciliation.sql.

-- The journal: one row per commit, appended, holding what each applied input changed per
-- position (`after - before` of every bucket, with the input's event time) and every channel
-- availability the commit changed (with the value before), as JSON. `at_us` is when the hub
-- committed it (item history as of a time); `max_time_us` is the latest event time in it, so a
-- reconciliation backing out inputs that happened after a snapshot skips rows with none.
-- One row per commit keeps the commit path to one sequential append.
-- A rowid table: rows are large (tens of KB), appended, and found through the index.
CREATE TABLE journal (
    id BIGSERIAL PRIMARY KEY,
    partition BIGINT NOT NULL,
    at_us BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    max_time_us BIGINT NOT NULL,
    entries TEXT NOT NULL
);
CREATE INDEX journal_partition_at ON journal (partition, at_us);

-- Every value delivered to a channel, kept by a trigger on delivery_sent (which holds only the
-- newest per key).
CREATE TABLE delivery_sent_log (
    key TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    sent_at_us BIGINT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    value BIGINT,
    PRIMARY KEY (key, endpoint, sent_at_us, ledger_seq)
);
CREATE FUNCTION delivery_sent_logged() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO delivery_sent_log (key, endpoint, sent_at_us, ledger_seq, value)
    VALUES (NEW.key, NEW.endpoint, NEW.sent_at_us, NEW.ledger_seq, NEW.value)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END;
$$;
CREATE TRIGGER delivery_sent_logged AFTER INSERT OR UPDATE ON delivery_sent
    FOR EACH ROW EXECUTE FUNCTION delivery_sent_logged();

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
);
