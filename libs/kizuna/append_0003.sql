-- One round trip per append: lock the stream, check the expected version, insert, and recognise a
-- retried append (its ids are stored already), run server-side. The advisory lock comes first, before
-- this function writes anything (the ordering guarantee in eventstore.py's docstring).
--
-- Migration 0003 (replaces 0002's version, libs/kizuna/append_0002.sql): per-stream order holds on
-- every write path. Events are published in (transaction id, position) order, and PostgreSQL gives a
-- transaction its id at its first write. A transaction that wrote something before appending (a
-- reaction's inbox row, a received federation message) may therefore hold an id older than that of the
-- stream's last writer, which took the lock after it wrote and committed first: its event, the next
-- version, would be published before the one it follows. Such an append is refused with SQLSTATE 40001
-- (serialization_failure); the caller rolls back and runs again in a new transaction, which gets a newer
-- id (tests/foundation/test_stream_order.py). An append that is its transaction's first write takes its
-- id after the lock and is never refused.
--
-- Errors carry their own SQLSTATEs so the caller can turn them into typed exceptions:
--   KZ409 the stream is not at the expected version (DETAIL: the current version)
--   KZ410 some event ids are already stored in another append (DETAIL: those ids)
DROP FUNCTION IF EXISTS kizuna_append(text, bigint, uuid[], text[], text[], text[]);
DROP TABLE IF EXISTS stream_heads;

CREATE OR REPLACE FUNCTION kizuna_append(p_stream text, p_expected bigint, p_ids uuid[], p_types text[],
                                         p_data text[], p_metadata text[], p_notify boolean)
RETURNS TABLE (global_position bigint, transaction_id bigint, stream_version bigint, event_id uuid,
               recorded_at timestamptz, event_type text, data jsonb, metadata jsonb)
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
                INSERT INTO events AS e (stream_id, stream_version, event_id, event_type, data, metadata)
                SELECT p_stream, v_current + batch.ord, batch.id, batch.type, batch.data::jsonb, batch.metadata::jsonb
                  FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY
                       AS batch(id, type, data, metadata, ord)
                ON CONFLICT (event_id) DO NOTHING
                RETURNING e.global_position, e.transaction_id::text::bigint, e.stream_version, e.event_id,
                          e.recorded_at)
            SELECT i.*, NULL::text, NULL::jsonb, NULL::jsonb FROM inserted i ORDER BY i.stream_version;
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
                   e.recorded_at, e.event_type, e.data, e.metadata
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
