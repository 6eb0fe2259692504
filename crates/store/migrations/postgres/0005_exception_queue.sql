-- The exceptions work queue: filters and paging over the records, and what the queue did with
-- each record by its kind's policy. Keep in step with ../sqlite/0005_exception_queue.sql.

-- Automatic replays so far (policy `retry`) and when the last one ran.
ALTER TABLE exceptions ADD COLUMN attempts BIGINT NOT NULL DEFAULT 0;
ALTER TABLE exceptions ADD COLUMN attempted_at_us BIGINT;
-- When the queue handed the record to a person (policy `hold`, retries used up, nothing to
-- replay, nothing the hub corrects).
ALTER TABLE exceptions ADD COLUMN held_at_us BIGINT;
-- When the configured webhook answered 2xx to the notification; NULL until then, so a failed
-- notification is sent again on the next scan.
ALTER TABLE exceptions ADD COLUMN notified_at_us BIGINT;
-- When the queue saw the hub correct what the record is about while policy `hold` kept it open.
ALTER TABLE exceptions ADD COLUMN corrected_at_us BIGINT;

-- Newest (or oldest) first, paged by (created_at_us, id).
CREATE INDEX exceptions_created ON exceptions (created_at_us, id COLLATE "C");
CREATE INDEX exceptions_entity ON exceptions (entity COLLATE "C");
CREATE INDEX exceptions_correlation ON exceptions (correlation_id);
