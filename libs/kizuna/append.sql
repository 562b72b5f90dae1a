-- One round trip per append: lock the stream, check the expected version, insert, and recognise a
-- retried append (its ids are stored already), run server-side. The advisory lock comes first, before
-- this function writes anything (the ordering guarantee in eventstore.py's docstring); a transaction that
-- wrote before appending and holds an older id than the stream's last writer is refused with 40001
-- (migration 0003, libs/kizuna/append_0003.sql, whose steps this keeps unchanged).
--
-- Migration 0005: every event records the version of its payload's shape (schema_version, kizuna.upcasting);
-- rows stored before have version 1, the column's default. The function takes one more array, the
-- versions. Its 0003 form (seven arguments) stays: during a rolling upgrade the replicas still running the
-- code before this migration call it, and their events are version 1, which the default records. A later
-- migration may drop it once no such replica can run.
--
-- Errors carry their own SQLSTATEs so the caller can turn them into typed exceptions:
--   KZ409 the stream is not at the expected version (DETAIL: the current version)
--   KZ410 some event ids are already stored in another append (DETAIL: those ids)
ALTER TABLE events ADD COLUMN IF NOT EXISTS schema_version int NOT NULL DEFAULT 1 CHECK (schema_version > 0);

CREATE OR REPLACE FUNCTION kizuna_append(p_stream text, p_expected bigint, p_ids uuid[], p_types text[],
                                         p_versions int[], p_data text[], p_metadata text[], p_notify boolean)
RETURNS TABLE (global_position bigint, transaction_id bigint, stream_version bigint, event_id uuid,
               recorded_at timestamptz, event_type text, schema_version int, data jsonb, metadata jsonb)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_current  bigint;
    v_inserted bigint;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    -- Under the stream's lock, in a fresh snapshot: the previous writer has committed. A backward scan
    -- of the (stream_id, stream_version) index instead of a separate head row to update.
    SELECT max(e.stream_version) INTO v_current FROM events e WHERE e.stream_id = p_stream;
    v_current := coalesce(v_current, 0);
    IF p_expected = -1 OR v_current = p_expected THEN
        IF v_current > 0 AND EXISTS (SELECT 1 FROM events e WHERE e.stream_id = p_stream
                                        AND e.stream_version = v_current
                                        AND e.transaction_id > pg_current_xact_id()) THEN
            RAISE EXCEPTION 'stream % was written by a later transaction; retry in a new one', p_stream
                USING ERRCODE = '40001';
        END IF;
        RETURN QUERY
            WITH inserted AS (
                INSERT INTO events AS e (stream_id, stream_version, event_id, event_type, schema_version, data,
                                         metadata)
                SELECT p_stream, v_current + batch.ord, batch.id, batch.type, batch.version, batch.data::jsonb,
                       batch.metadata::jsonb
                  FROM unnest(p_ids, p_types, p_versions, p_data, p_metadata) WITH ORDINALITY
                       AS batch(id, type, version, data, metadata, ord)
                ON CONFLICT (event_id) DO NOTHING
                RETURNING e.global_position, e.transaction_id::text::bigint, e.stream_version, e.event_id,
                          e.recorded_at)
            SELECT i.*, NULL::text, NULL::int, NULL::jsonb, NULL::jsonb FROM inserted i ORDER BY i.stream_version;
        GET DIAGNOSTICS v_inserted = ROW_COUNT;
        IF v_inserted = cardinality(p_ids) THEN
            IF p_notify THEN
                PERFORM pg_notify('kizuna_events', p_stream);
            END IF;
            RETURN;
        END IF;
        IF v_inserted > 0 THEN  -- some of the ids are new, some stored: undo this append
            RAISE EXCEPTION 'event ids already stored in another append' USING ERRCODE = 'KZ410',
                DETAIL = (SELECT array_to_string(array_agg(e.event_id), ',') FROM events e
                           WHERE e.event_id = ANY(p_ids) AND e.transaction_id <> pg_current_xact_id());
        END IF;
    END IF;
    -- The stream is elsewhere than expected, or every id is stored already: a retried append returns what
    -- it stored; otherwise it is a conflict.
    IF (SELECT count(*) FROM events e WHERE e.event_id = ANY(p_ids) AND e.stream_id = p_stream) = cardinality(p_ids) THEN
        RETURN QUERY
            SELECT e.global_position, e.transaction_id::text::bigint, e.stream_version, e.event_id,
                   e.recorded_at, e.event_type, e.schema_version, e.data, e.metadata
              FROM events e WHERE e.event_id = ANY(p_ids) ORDER BY e.global_position;
        RETURN;
    END IF;
    IF EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY(p_ids)) THEN
        RAISE EXCEPTION 'event ids already stored in another append' USING ERRCODE = 'KZ410',
            DETAIL = (SELECT array_to_string(array_agg(e.event_id), ',') FROM events e WHERE e.event_id = ANY(p_ids));
    END IF;
    RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'KZ409', DETAIL = v_current::text;
END
$$;
