-- Events a partition sequenced for a resequenced source and handed to the partitions of their
-- items: loaded at start with the held ones, so the index covers both. Keep in step with
-- ../postgres/0008_forwarding.sql.
DROP INDEX events_held;
CREATE INDEX events_waiting ON events (partition, seq) WHERE status IN ('held', 'forwarding');
