-- Traces: what a correlation id touched, found without scanning. Keep in step with
-- ../sqlite/0007_trace.sql.

-- The inputs and events of a business document. An input that names no correlation id gets its
-- own key as one (`event:<source>/<id>`) and is found through the idempotency index instead, so
-- feeds without correlation ids add nothing to this index (random keys would make every commit
-- pay for a B-tree insert far from the last).
CREATE INDEX events_correlation ON events (correlation_id)
    WHERE substr(correlation_id, 1, 6) <> 'event:';
-- The journal row of an event's commit (the first with last_seq at or after the event's).
CREATE INDEX journal_partition_seq ON journal (partition, last_seq);
CREATE INDEX workflow_steps_correlation ON workflow_steps (correlation_id);
CREATE INDEX dead_letters_correlation ON dead_letters (correlation_id);

-- Every outbox message a lane finished with, by the correlation id of the change it carried:
-- delivered (with the value sent) or superseded unsent by a newer value for its key. Messages of
-- inputs with their own key as correlation id are not kept (their availability deliveries are
-- found in delivery_sent_log).
CREATE TABLE delivery_log (
    id BIGSERIAL PRIMARY KEY,
    correlation_id TEXT NOT NULL,
    endpoint TEXT NOT NULL,
    key TEXT NOT NULL,
    ledger_seq BIGINT NOT NULL,
    outcome TEXT NOT NULL,
    value BIGINT,
    at_us BIGINT NOT NULL
);
CREATE INDEX delivery_log_correlation ON delivery_log (correlation_id);
