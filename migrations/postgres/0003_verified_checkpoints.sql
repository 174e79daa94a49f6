-- Where a sound `audit verify` stopped, so the next one checks only the events after it
-- (see ledger/src/checkpoint.rs and docs/operations.md, "Verifying the ledger").
-- One row per recording; `state` is the audit state needed to go on from `position` (its
-- sha256 in `state_hash`). Only the newest row keeps its state: recording a new one sets the
-- older rows' `state` to NULL, so the table keeps the history of verifications (position,
-- head hash, time, tool version) at a few bytes each.
CREATE TABLE verified_checkpoints (
    id            BIGSERIAL   PRIMARY KEY,
    position      BIGINT      NOT NULL CHECK (position >= 0),
    head_hash     BYTEA       NOT NULL CHECK (length(head_hash) = 32),
    verified_at   TIMESTAMPTZ NOT NULL,
    tool_version  TEXT        NOT NULL,
    state_hash    BYTEA       NOT NULL CHECK (length(state_hash) = 32),
    state         BYTEA
);
