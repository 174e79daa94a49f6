-- Where each projector stands in the log. A projector advances its checkpoint in the same
-- transaction as the read-model rows it wrote, so each event takes effect exactly once.
-- The read-model tables themselves are created by the projections code (they are disposable
-- and rebuilt blue/green under generated names; see projections/src/store/).
CREATE TABLE projection_checkpoints (
    name        TEXT        PRIMARY KEY,
    position    BIGINT      NOT NULL CHECK (position >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
