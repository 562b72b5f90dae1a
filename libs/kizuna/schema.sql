-- Kizuna event store: one per service database. Append-only; nothing here is ever updated or deleted
-- except the checkpoint, inbox and stream-head bookkeeping tables (stream_heads: dropped by migration 0002).
CREATE TABLE IF NOT EXISTS events (
    global_position bigserial PRIMARY KEY,
    -- The writer's transaction id: readers only take rows below the oldest transaction still in flight,
    -- so a transaction that committed late can never be skipped (see docs/architecture.md).
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    stream_id       text        NOT NULL,
    stream_version  bigint      NOT NULL CHECK (stream_version > 0),
    event_id        uuid        NOT NULL UNIQUE,
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL,
    recorded_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX IF NOT EXISTS events_commit_order ON events (transaction_id, global_position);
CREATE INDEX IF NOT EXISTS events_category ON events ((split_part(stream_id, '-', 1)), global_position);

CREATE TABLE IF NOT EXISTS stream_heads (
    stream_id text   PRIMARY KEY,
    version   bigint NOT NULL
);

CREATE TABLE IF NOT EXISTS checkpoints (
    name            text   PRIMARY KEY,
    transaction_id  xid8   NOT NULL,
    global_position bigint NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Inbox: one row per (consumer, event) applied; written in the same transaction as the effect.
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     uuid        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
