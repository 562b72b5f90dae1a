-- Migration 0001 as it shipped (kept unchanged: applied migrations are history). The current definition
-- is libs/kizuna/append.sql (migration 0002).
-- One round trip per append: lock the stream, recognise a retried append, check the expected
-- version, insert, move the stream head and notify — the same steps and guarantees as before,
-- run server-side. The advisory lock still comes first, before this transaction writes anything.
-- Errors carry their own SQLSTATEs so the caller can turn them into typed exceptions:
--   KZ409 the stream is not at the expected version (DETAIL: the current version)
--   KZ410 some event ids are already stored in another append (DETAIL: those ids)
CREATE OR REPLACE FUNCTION kizuna_append(p_stream text, p_expected bigint, p_ids uuid[], p_types text[],
                                         p_data text[], p_metadata text[])
RETURNS TABLE (global_position bigint, transaction_id bigint, stream_id text, stream_version bigint,
               event_id uuid, event_type text, data jsonb, metadata jsonb, recorded_at timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
    v_current bigint;
    v_known   uuid[];
BEGIN
    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));
    SELECT array_agg(e.event_id) INTO v_known FROM events e WHERE e.event_id = ANY(p_ids);
    IF v_known IS NOT NULL THEN
        IF cardinality(v_known) = cardinality(p_ids)
           AND NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = ANY(p_ids) AND e.stream_id <> p_stream) THEN
            RETURN QUERY
                SELECT e.global_position, e.transaction_id::text::bigint, e.stream_id, e.stream_version, e.event_id,
                       e.event_type, e.data, e.metadata, e.recorded_at
                  FROM events e WHERE e.event_id = ANY(p_ids) ORDER BY e.global_position;
            RETURN;
        END IF;
        RAISE EXCEPTION 'event ids already stored in another append' USING ERRCODE = 'KZ410',
            DETAIL = array_to_string(v_known, ',');
    END IF;
    SELECT h.version INTO v_current FROM stream_heads h WHERE h.stream_id = p_stream;
    v_current := coalesce(v_current, 0);
    IF p_expected <> -1 AND v_current <> p_expected THEN
        RAISE EXCEPTION 'wrong expected version' USING ERRCODE = 'KZ409', DETAIL = v_current::text;
    END IF;
    RETURN QUERY
        WITH inserted AS (
            INSERT INTO events AS e (stream_id, stream_version, event_id, event_type, data, metadata)
            SELECT p_stream, v_current + batch.ord, batch.id, batch.type, batch.data::jsonb, batch.metadata::jsonb
              FROM unnest(p_ids, p_types, p_data, p_metadata) WITH ORDINALITY
                   AS batch(id, type, data, metadata, ord)
            RETURNING e.global_position, e.transaction_id::text::bigint, e.stream_id, e.stream_version, e.event_id,
                      e.event_type, e.data, e.metadata, e.recorded_at)
        SELECT * FROM inserted ORDER BY inserted.stream_version;
    INSERT INTO stream_heads AS h (stream_id, version) VALUES (p_stream, v_current + cardinality(p_ids))
        ON CONFLICT ON CONSTRAINT stream_heads_pkey DO UPDATE SET version = EXCLUDED.version;
    PERFORM pg_notify('kizuna_events', p_stream);
END
$$;
