-- Delivery: what kind of message each outbox row is, what was last delivered per key, the
-- dead-letter queue and the audit log of operator actions.

ALTER TABLE outbox ADD COLUMN kind TEXT NOT NULL DEFAULT 'latest';
ALTER TABLE outbox ADD COLUMN correlation_id TEXT;
CREATE INDEX outbox_key ON outbox (endpoint, key, ledger_seq);

-- The newest value delivered per (endpoint, key): a value from an older ledger sequence never
-- replaces it, and it is the compare-and-set "from" value of the next write.
CREATE TABLE delivery_sent (
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    value BIGINT,
    sent_at_us BIGINT NOT NULL,
    PRIMARY KEY (endpoint, key)
) WITHOUT ROWID;

CREATE TABLE dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    partition BIGINT NOT NULL,
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    priority BIGINT NOT NULL,
    payload TEXT NOT NULL,
    correlation_id TEXT,
    created_at_us BIGINT NOT NULL,
    -- parked | retried | discarded | superseded
    status TEXT NOT NULL,
    reason TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    last_status BIGINT,
    last_response TEXT NOT NULL,
    exception_id TEXT NOT NULL,
    parked_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    actor TEXT NOT NULL DEFAULT '',
    note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX dead_letters_lane ON dead_letters (endpoint, status, id);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_us BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    subject TEXT NOT NULL,
    note TEXT NOT NULL,
    detail TEXT NOT NULL
);

-- Inbound channel webhooks already handled, by the platform's delivery id, with the answer
-- given, so a redelivery is answered the same and applied once.
CREATE TABLE webhook_receipts (
    channel TEXT NOT NULL,
    id TEXT NOT NULL,
    topic TEXT NOT NULL,
    outcome TEXT NOT NULL,
    received_at_us BIGINT NOT NULL,
    PRIMARY KEY (channel, id)
);
