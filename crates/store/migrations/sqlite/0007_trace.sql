-- Traces: what a correlation id touched, found without scanning. Keep in step with
-- ../postgres/0007_trace.sql.

-- The inputs and events of a business document.
CREATE INDEX events_correlation ON events (correlation_id);
-- The journal row of an event's commit (the first with last_seq at or after the event's).
CREATE INDEX journal_partition_seq ON journal (partition, last_seq);
CREATE INDEX workflow_steps_correlation ON workflow_steps (correlation_id);
CREATE INDEX dead_letters_correlation ON dead_letters (correlation_id);

-- Every outbox message a lane finished with, by the correlation id of the change it carried:
-- delivered (with the value sent) or superseded unsent by a newer value for its key.
CREATE TABLE delivery_log (
    id INTEGER PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    value BIGINT,
    at_us BIGINT NOT NULL
);
CREATE INDEX delivery_log_correlation ON delivery_log (correlation_id);
