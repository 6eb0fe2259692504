-- EDI: the last control number used per scope (a partner's interchanges, groups, ...), so a
-- number is never reused, also across restarts.
CREATE TABLE control_numbers (
    scope TEXT PRIMARY KEY,
    last BIGINT NOT NULL
) WITHOUT ROWID;
