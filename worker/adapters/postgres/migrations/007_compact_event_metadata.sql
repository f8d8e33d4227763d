-- Metadata stored once per batch: what every event of one ingest transaction shares (worker version, source
-- topic, a traceparent or change origin they have in common...) is one `event_batches` row; an event row keeps
-- only its own fields, minus what its other fields already say (codes in its "~" key: t, s, T = the change's
-- transaction key, sequence number and commit timestamp, read from the payload's `change`; c = the correlation
-- id, equal to the transaction key; k = the causation id, source_topic:source_partition:source_offset). The event
-- id is its column. `event_metadata()` puts every field back; `events_with_metadata` is the events table with the
-- whole metadata, as it was stored before this migration. Rows written before it (batch_id NULL) are unchanged.
CREATE TABLE event_batches (
    id          bigserial   PRIMARY KEY,
    metadata    jsonb       NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now()
);

-- No foreign key: a batch row is written in the same transaction, before its events, and never deleted; the
-- check would cost a lookup per appended event.
ALTER TABLE events ADD COLUMN batch_id bigint;

-- The payload as compact JSON text: smaller than jsonb for these small documents, and written as the worker
-- encoded it (nothing queries inside it on the hot path). The outbox keeps the same type (copied as it is).
ALTER TABLE events ALTER COLUMN payload TYPE json USING payload::json;
ALTER TABLE outbox ALTER COLUMN payload TYPE json USING payload::json;

CREATE FUNCTION event_metadata(shared jsonb, own jsonb, event_id uuid, payload json) RETURNS jsonb
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    m     jsonb := coalesce(shared, '{}'::jsonb) || (own - '~');
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
    SELECT e.global_position, e.stream_id, e.version, e.event_id, e.event_type, e.schema_version, e.payload,
           event_metadata(b.metadata, e.metadata, e.event_id, e.payload) AS metadata, e.recorded_at, e.batch_id
    FROM events e LEFT JOIN event_batches b ON b.id = e.batch_id;
