-- An outbox of references. A row held a whole copy of its event (≈ 700 bytes of heap and WAL written, then
-- deleted and vacuumed: a large part of PostgreSQL's work per event); now it says which event to publish and
-- in which order, and the relay reads the event from `events` (and its batch's shared metadata from
-- `event_batches`) through the unique index on events.global_position: one index lookup per row it reads.
--
-- * position:       the publication order (the same sequence: positions go on where they were).
-- * event_position: events.global_position of the event.
-- * created_at:     the backlog's age (worker_outbox_oldest_age_seconds).
-- * stream_id:      kept (≈ 20 bytes of the row's ≈ 70): the relay leaves out the streams it holds back (parked)
--                   on the outbox row itself, without looking their events up (a rolling deploy can park many
--                   streams with long backlogs at the head of the queue), and can park the stream of a row
--                   whose event is not found (it never should be: events are never deleted) instead of
--                   publishing that stream's later events past it.
--
-- The table is made anew, not altered: a dropped column stays in every later row as a null (a null bitmap that
-- takes the header from 24 to 32 bytes) and in the catalog, and a new table starts without the old one's dead
-- space. Rows waiting at the upgrade keep their position and created_at; their event is the one with their
-- (stream_id, version), the events' primary key, and their event id. A row whose event is not found stops the
-- migration (it could never be published; nothing is changed). The lock keeps ingest from adding rows between
-- the copy and the switch: its transactions wait, then fail on the new table. An ingest or relay of the
-- previous version cannot use this table (it stops on the error, committing nothing: no offset, no delete), so
-- roll the workloads right after this migration, as after any.
LOCK TABLE outbox IN ACCESS EXCLUSIVE MODE;

DO $$
DECLARE
    lost bigint;
    first_lost bigint[];
BEGIN
    SELECT count(*), (array_agg(o.position ORDER BY o.position))[1:5] INTO lost, first_lost
    FROM outbox o
    WHERE NOT EXISTS (SELECT 1 FROM events e
                      WHERE e.stream_id = o.stream_id AND e.version = o.version AND e.event_id = o.event_id);
    IF lost > 0 THEN
        RAISE EXCEPTION '% outbox row(s) refer to no stored event (positions %...): nothing was changed', lost,
            first_lost;
    END IF;
END
$$;

CREATE TABLE outbox_references (
    position       bigint      NOT NULL DEFAULT nextval('outbox_position_seq'),
    event_position bigint      NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    stream_id      text        NOT NULL
);

INSERT INTO outbox_references (position, event_position, created_at, stream_id)
SELECT o.position, e.global_position, o.created_at, o.stream_id
FROM outbox o JOIN events e ON e.stream_id = o.stream_id AND e.version = o.version AND e.event_id = o.event_id;

ALTER SEQUENCE outbox_position_seq OWNED BY outbox_references.position;
DROP TABLE outbox;
ALTER TABLE outbox_references RENAME TO outbox;
ALTER TABLE outbox ADD CONSTRAINT outbox_pkey PRIMARY KEY (position);
