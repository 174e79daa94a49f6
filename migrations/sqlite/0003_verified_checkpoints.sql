-- Where a sound `audit verify` stopped (see migrations/postgres/0003).
CREATE TABLE verified_checkpoints (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    position      INTEGER NOT NULL CHECK (position >= 0),
    head_hash     BLOB    NOT NULL CHECK (length(head_hash) = 32),
    verified_at   INTEGER NOT NULL,
    tool_version  TEXT    NOT NULL,
    state_hash    BLOB    NOT NULL CHECK (length(state_hash) = 32),
    state         BLOB
);
