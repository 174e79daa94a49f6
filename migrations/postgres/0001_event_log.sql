-- The event log: append-only, gapless, hash-chained. See ledger/src/store/mod.rs.

CREATE TABLE events (
    position        BIGINT      PRIMARY KEY CHECK (position > 0),
    stream_id       TEXT        NOT NULL,
    stream_version  BIGINT      NOT NULL CHECK (stream_version > 0),
    event_id        UUID        NOT NULL,
    event_type      TEXT        NOT NULL,
    schema_version  INTEGER     NOT NULL CHECK (schema_version > 0),
    -- json, not jsonb: the canonical text is kept byte for byte, and the hash covers it.
    data            JSON        NOT NULL,
    metadata        JSON        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    prev_hash       BYTEA       NOT NULL CHECK (octet_length(prev_hash) = 32),
    hash            BYTEA       NOT NULL CHECK (octet_length(hash) = 32),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_recorded_at_idx ON events (recorded_at);

-- One row: the last position and hash. Appenders lock it (SELECT … FOR UPDATE) for the
-- length of their transaction, which makes positions gapless and commit order position order,
-- across every process that shares this database.
CREATE TABLE ledger_head (
    id        BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    position  BIGINT  NOT NULL,
    hash      BYTEA   NOT NULL CHECK (octet_length(hash) = 32)
);
INSERT INTO ledger_head (id, position, hash) VALUES (TRUE, 0, decode(repeat('00', 32), 'hex'));

-- Events are facts: nobody updates, deletes or truncates them, whatever their privileges.
CREATE FUNCTION events_reject_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'restrict_violation';
END;
$$;

CREATE TRIGGER events_append_only_rows
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_reject_change();

CREATE TRIGGER events_append_only_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_reject_change();
