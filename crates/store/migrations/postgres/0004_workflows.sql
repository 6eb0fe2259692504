-- Workflows (orders, returns, transfers, purchase orders): the latest state of each, written in
-- the same transaction as the ledger changes it caused, and every step of its history.
CREATE TABLE workflows (
    key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    partition BIGINT NOT NULL,
    state TEXT NOT NULL,
    final BOOLEAN NOT NULL,
    doc TEXT NOT NULL,
    updated_at_us BIGINT NOT NULL,
    updated_seq BIGINT NOT NULL
);
CREATE INDEX workflows_live ON workflows (partition) WHERE NOT final;
CREATE INDEX workflows_by_kind ON workflows (kind, state, updated_at_us);

CREATE TABLE workflow_steps (
    key TEXT NOT NULL,
    n BIGINT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    at_us BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    cause TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    note TEXT NOT NULL,
    PRIMARY KEY (key, n)
);
