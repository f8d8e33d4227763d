-- Compact events (≈ half the bytes per event), every field still recoverable:
--
-- * Metadata stored once per batch: what every event of one ingest transaction shares (worker version, source
--   topic, a traceparent or change origin they have in common...) is one `event_batches` row, and what every
--   event of one type shares in it (the command, the change type) sits under "~types" -> event type. An event
--   row keeps only its own fields, minus what its other fields already say: codes in its "~" key, t, s, T = the
--   change's transaction key, sequence number and commit timestamp (the payload's `change` has them), c = the
--   correlation id (the transaction key), k = the causation id (source_topic:source_partition:source_offset).
--   The event id is its column.
-- * The payload as compact JSON text (`json`: smaller than jsonb for these small documents; a CHECK refuses the
--   one thing jsonb refuses and json does not, an escaped NUL), its `change` reference as a positional array
--   under "~c" [commit_number, sequence_number, transaction_key, last_modified_ms, commit_timestamp_ms] when its
--   record id is the stream's.
--
-- `event_payload()` and `event_metadata()` put every field back; `events_with_metadata` is the events table as
-- it was stored before this migration (payload and metadata whole). Rows written before it are unchanged.
CREATE TABLE event_batches (
    id          bigserial   PRIMARY KEY,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- No foreign key: a batch row is written in the same transaction, before its events, and never deleted; the
-- check would cost a lookup per appended event.
ALTER TABLE events ADD COLUMN batch_id bigint;
-- The outbox is filled from the batch's events by batch id: a small index (one deduplicated entry per batch)
-- instead of the unique index on random event ids (their uniqueness comes from how they are made).
CREATE INDEX events_batch ON events (batch_id) WHERE batch_id IS NOT NULL;
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_event_id_key;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;

-- The outbox holds rows as the events table stores them (the relay makes them whole with their batch's row).
ALTER TABLE outbox ADD COLUMN batch_id bigint;

-- An escaped NUL (\u0000 after an even number of backslashes): jsonb, the projections and Avro refuse it.
ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::json,
    ADD CONSTRAINT events_payload_without_nul CHECK (payload::text !~ '(^|[^\\])(\\\\)*\\u0000');
ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json;

CREATE FUNCTION event_payload(stream_id text, stored json) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN json_typeof(stored) = 'object' AND stored -> '~c' IS NOT NULL THEN
        jsonb_build_object('change', jsonb_build_object(
            'record_id', stream_id, 'commit_number', stored -> '~c' -> 0, 'sequence_number', stored -> '~c' -> 1,
            'transaction_key', stored -> '~c' -> 2, 'last_modified_ms', stored -> '~c' -> 3,
            'commit_timestamp_ms', stored -> '~c' -> 4))
        || (stored::jsonb - '~c')
    ELSE stored::jsonb END
$$;

-- ``payload``: the whole payload (event_payload()).
CREATE FUNCTION event_metadata(shared jsonb, own jsonb, event_id uuid, event_type text, payload jsonb) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m     jsonb := (coalesce(shared, '{}'::jsonb) - '~types') || coalesce(shared -> '~types' -> event_type, '{}')
                   || (own - '~');
    codes text  := coalesce(own ->> '~', '');
BEGIN
    IF codes <> '' THEN
        IF strpos(codes, 't') > 0 THEN
            m := m || jsonb_build_object('transaction_key', payload -> 'change' -> 'transaction_key');
        END IF;
        IF strpos(codes, 's') > 0 THEN
            m := m || jsonb_build_object('sequence_number', payload -> 'change' -> 'sequence_number');
        END IF;
        IF strpos(codes, 'T') > 0 THEN
            m := m || jsonb_build_object('commit_timestamp', payload -> 'change' -> 'commit_timestamp_ms');
        END IF;
        IF strpos(codes, 'c') > 0 THEN
            m := m || jsonb_build_object('correlation_id', m -> 'transaction_key');
        END IF;
        IF strpos(codes, 'k') > 0 THEN
            m := m || jsonb_build_object('causation_id',
                concat(m ->> 'source_topic', ':', m ->> 'source_partition', ':', m ->> 'source_offset'));
        END IF;
    END IF;
    RETURN m || jsonb_build_object('event_id', event_id::text);
END
$$;

CREATE VIEW events_with_metadata AS
    SELECT e.global_position, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, w.payload,
           event_metadata(b.metadata, e.metadata, e.event_id, e.event_type, w.payload) AS metadata, e.recorded_at,
           e.batch_id
    FROM events e
    LEFT JOIN event_batches b ON b.id = e.batch_id
    CROSS JOIN LATERAL (SELECT event_payload(e.stream_id, e.payload) AS payload) w;
