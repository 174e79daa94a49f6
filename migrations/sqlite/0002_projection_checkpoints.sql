-- Where each projector stands in the log (see migrations/postgres/0002).
CREATE TABLE projection_checkpoints (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL CHECK (position >= 0),
    updated_at  INTEGER NOT NULL
);
